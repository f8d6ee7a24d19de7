"""Load and check a ticketlab configuration: JSON schema (with defaults filled in) first, then the
cross-references the schema cannot express. Every error names the key; nothing runs before this."""
from __future__ import annotations

import copy
import functools
import math
from pathlib import Path

import jsonschema
import yaml

from . import claims
from .catalog import catalog, entry
from .defaults import artefact_variants, imp_sparsity
from .layout import REPLICA, artefact_files

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
IMP_SNAP = 0.02  # a configured imp sparsity may be this far from a level: the papers label IMP levels
                 # loosely ("95%" = 95.6%, tost's "85%" = 86.6%); the run uses the nearest level


class ConfigError(ValueError):
    pass


def _with_defaults(cls):
    validate_properties = cls.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for key, sub in props.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, props, instance, schema)
    return jsonschema.validators.extend(cls, {"properties": properties})


Validator = _with_defaults(jsonschema.Draft202012Validator)


@functools.lru_cache(maxsize=1)
def _schema_text(path: str, mtime: int) -> dict:
    with open(path) as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def config_schema() -> dict:
    """workflow/schemas/config.schema.yaml, parsed once per process (re-read when the file changes); shared:
    read it, do not change it."""
    return _schema_text(str(SCHEMA), SCHEMA.stat().st_mtime_ns)


def _schema_check(schema: dict, instance, where: str = "", validator=jsonschema.Draft202012Validator) -> None:
    """Raise ConfigError at `where` plus the path of the schema's best-matching error, if any."""
    err = jsonschema.exceptions.best_match(validator(schema).iter_errors(instance))
    if err is not None:
        at = ".".join([where] * bool(where) + [str(p) for p in err.absolute_path]) or "<top level>"
        raise ConfigError(f"config error at {at}: {err.message}")


def validate(cfg: dict, schema: dict | None = None) -> dict:
    """Validate `cfg` (a copy is returned with defaults filled) or raise ConfigError naming the key."""
    cfg = copy.deepcopy(dict(cfg))
    schema = schema or config_schema()
    _schema_check(schema, cfg, validator=Validator)
    # defaults of nested objects are filled on the copy the validator walked: walk again for them
    Validator(schema).validate(cfg)
    lth = cfg["variants"].setdefault("lth", {"label": "LTH", "init": "lth", "tweaks": [], "params": {}})
    if lth["init"] != "lth" or lth["tweaks"]:
        raise ConfigError("config error at variants.lth: `lth` is the plain ticket (the IMP chain's own run); "
                          "it takes no tweaks and init lth — give a tweaked variant another name")
    _check_tweaks(cfg)
    _check_analyses(cfg)
    _check_references(cfg)
    _check_sparsities(cfg)
    _check_scale(cfg)
    try:
        claims.check(cfg)
    except claims.ClaimError as e:
        raise ConfigError(f"config error at {e}") from e
    return cfg


def _check_scale(cfg):
    """A paper configuration names what it builds (`targets`), each at the paper's scale (check_scale)."""
    if cfg["scale"] != "paper":
        return
    if "targets" not in cfg:
        raise ConfigError("config error at targets: a paper configuration (scale: paper) lists the artefacts it builds")
    for i, aid in enumerate(cfg["targets"]):
        check_scale(cfg, aid, f"targets[{i}]")


def demo_experiments(cfg, aid: str) -> list[str]:
    """The experiments of artefact `aid` that read the bundled digits (the demo's stand-ins)."""
    exps = cfg["experiments"]
    return [e for e in cfg["artefacts"][aid].get("experiments", [])
            if cfg["datasets"][exps[e]["dataset"]]["source"] == "digits"]


def paper_configs_building(aid: str) -> list[str]:
    """The paper configurations (config/paper/*.yaml) whose `targets` build artefact `aid`."""
    out = []
    for p in sorted((REPO / "config" / "paper").glob("*.yaml")):
        with open(p) as f:
            if aid in (yaml.safe_load(f) or {}).get("targets", []):
                out.append(str(p.relative_to(REPO)))
    return out


def check_scale(cfg, aid: str, where: str | None = None) -> None:
    """Under a paper configuration (scale: paper) an artefact whose experiments read the digits is refused:
    it would mix the demo's stand-ins into a paper-scale artefact (or be one). The error names the paper
    configuration that builds it. (Also checked when an artefact's runs are planned: plan.artefact_runs.)"""
    demo = demo_experiments(cfg, aid) if cfg.get("scale") == "paper" else []
    if not demo:
        return
    output = entry("artefacts", cfg["artefacts"][aid]["kind"])["output"]
    others, target = paper_configs_building(aid), artefact_files(aid, output)[0]
    hint = (f"{' or '.join(others)} builds it at paper scale: snakemake {target} --configfile {others[0]}" if others
            else "no configuration in config/paper/ builds it at paper scale")
    raise ConfigError(f"config error at {where or 'artefacts.' + aid}: this is a paper configuration (scale: paper) "
                      f"but it configures artefact {aid!r} at demo scale only (experiments {', '.join(demo)} read "
                      f"the bundled digits); {hint}")


def _check_tweaks(cfg):
    tweaks = catalog()["tweaks"]

    def check(where, name, params):
        if name not in tweaks:
            raise ConfigError(f"config error at {where}: unknown tweak {name!r}; known: {sorted(tweaks)}")
        _schema_check({"type": "object", "additionalProperties": False, "properties": tweaks[name]["schema"]},
                      params, where)

    for name, params in cfg["tweaks"].items():
        check(f"tweaks.{name}", name, params)
    for vname, v in cfg["variants"].items():
        for i, t in enumerate(v["tweaks"]):
            check(f"variants.{vname}.tweaks[{i}]", t, {})
        for t, params in v["params"].items():
            if t not in v["tweaks"]:
                raise ConfigError(f"config error at variants.{vname}.params.{t}: "
                                  f"{t!r} is not one of this variant's tweaks")
            check(f"variants.{vname}.params.{t}", t, params)
        if v["init"] == "rewind" and "rewind_epoch" not in v:
            raise ConfigError(f"config error at variants.{vname}: init 'rewind' needs rewind_epoch")
        _check_variant(cfg, vname, v)


def _check_variant(cfg, vname: str, v: dict):
    where = f"variants.{vname}"
    if REPLICA in vname:
        raise ConfigError(f"config error at {where}: {REPLICA!r} is reserved for replicas (variant{REPLICA}<k>)")
    if (v["init"] == "variant") != ("from_variant" in v):
        raise ConfigError(f"config error at {where}: init 'variant' and from_variant go together")
    if "from_variant" in v:
        _need(cfg, f"{where}.from_variant", "variants", v["from_variant"])
        if v["from_variant"] == vname:
            raise ConfigError(f"config error at {where}.from_variant: a variant cannot start from itself")
    if v.get("continue_schedule") and v["init"] != "rewind":
        raise ConfigError(f"config error at {where}.continue_schedule: only for init 'rewind'")
    for key in ("reinit_seed", "replica_init"):
        if key in v and v["init"] != "rr" and v[key] not in (False,):
            raise ConfigError(f"config error at {where}.{key}: only for init 'rr'")
    if v.get("small_dense") and (v["init"] != "lth" or set(v["tweaks"]) - {"sparse_init"}):
        raise ConfigError(f"config error at {where}.small_dense: a small-dense network is freshly initialised "
                          f"(init lth, the default) and takes no tweaks but sparse_init (its initialisation)")
    schema = config_schema()["properties"]["recipes"]["additionalProperties"]
    for rname, r in cfg["recipes"].items():
        _schema_check(schema, {**r, **v["recipe"]}, f"{where}.recipe")


def _check_analyses(cfg):
    for name, a in cfg["analyses"].items():
        where = f"analyses.{name}"
        kind = entry("analyses", a["kind"])
        known = kind["defaults"]
        allowed = set(known) | {"kind"} | (set() if kind["trains"] else {"weights", "reference", "reference_dense"})
        for k, v in a.items():
            if k not in allowed:
                raise ConfigError(f"config error at {where}.{k}: unknown setting for kind {a['kind']!r}; "
                                  f"known: {sorted(allowed - {'kind'})}")
            if (k in known and not isinstance(v, type(known[k]))
                    and not (isinstance(known[k], float) and isinstance(v, int))):
                raise ConfigError(f"config error at {where}.{k}: expected {type(known[k]).__name__}, got {v!r}")
        if a.get("weights"):
            src = cfg["analyses"].get(a["weights"])
            if src is None or not entry("analyses", src["kind"])["trains"]:
                raise ConfigError(f"config error at {where}.weights: {a['weights']!r} is not a trajectory analysis")
        needs = kind["needs_reference"]
        if needs != bool(a.get("reference")):
            raise ConfigError(f"config error at {where}: kind {a['kind']!r} " + (
                "needs `reference` (the variant whose final weights it compares with)" if needs else
                "compares with no reference run; remove `reference`"))
        if a.get("reference"):
            _need(cfg, f"{where}.reference", "variants", a["reference"])


def _check_artefact_analysis(cfg, a: dict, where: str):
    kinds = set(entry("artefacts", a["kind"])["shows"])  # the analysis kinds it can show (artefacts.artefact_kind)
    if not kinds:
        if "analysis" in a:
            raise ConfigError(f"config error at {where}.analysis: kind {a['kind']!r} shows run summaries, not analyses")
        return
    if "analysis" not in a:
        raise ConfigError(f"config error at {where}: kind {a['kind']!r} needs `analysis` "
                          f"(one of analyses: {sorted(cfg['analyses'])})")
    _need(cfg, f"{where}.analysis", "analyses", a["analysis"])
    if cfg["analyses"][a["analysis"]]["kind"] not in kinds:
        raise ConfigError(f"config error at {where}.analysis: {a['kind']} shows {sorted(kinds)} analyses, "
                          f"{a['analysis']!r} is {cfg['analyses'][a['analysis']]['kind']!r}")
    if a["kind"] in ("analysis_sparsity", "curve_lines") and "show" not in a:
        raise ConfigError(f"config error at {where}: kind {a['kind']!r} needs `show` (what to plot)")


KIND_NAMES = {"artefacts": "artefact kind", "masks": "mask method"}


def _check_settings(a: dict, where: str, registry: str, kind: str, common: str, section: str):
    """Every key is one all kinds accept (`common` in the catalog) or one its kind reads (settings= of the
    registry's decorator): the kind would ignore any other. A key the schema fills on every entry (an artefact's
    metric, a mask set's rate) is no one's at its default."""
    own = entry(registry, a[kind])["settings"]
    props = config_schema()["properties"][section]["additionalProperties"]["properties"]
    for k, v in a.items():
        if k not in catalog()[common] and k not in own and not ("default" in props[k] and v == props[k]["default"]):
            raise ConfigError(f"config error at {where}.{k}: {KIND_NAMES[registry]} "
                              f"{a[kind]!r} does not read {k!r} (its settings: {', '.join(own) or 'none'})")


def _need(cfg, where, section, name):
    if name not in cfg[section]:
        raise ConfigError(f"config error at {where}: unknown {section[:-1]} {name!r}; defined: {sorted(cfg[section])}")


def _check_references(cfg):
    """The names each section uses are defined, and the epochs runs start from are saved."""
    _check_experiment_references(cfg)
    _check_mask_references(cfg)
    for rname, r in cfg["recipes"].items():
        for k in r["save_epochs"]:
            if k >= r["epochs"]:
                raise ConfigError(f"config error at recipes.{rname}.save_epochs: "
                                  f"{k} is not before the last epoch ({r['epochs']})")
    for aname, a in cfg["artefacts"].items():
        _check_artefact_references(cfg, aname, a)
    for t in cfg.get("targets", []):
        if t not in cfg["artefacts"]:
            raise ConfigError(f"config error at targets: unknown artefact {t!r}")


def _check_experiment_references(cfg):
    for ename, e in cfg["experiments"].items():
        for section in ("datasets", "models", "recipes"):
            _need(cfg, f"experiments.{ename}.{section[:-1]}", section, e[section[:-1]])
        recipe = cfg["recipes"][e["recipe"]]
        for mname in e["sparsities"]:
            if mname != "dense":
                _need(cfg, f"experiments.{ename}.sparsities.{mname}", "masks", mname)
                rewind = cfg["masks"][mname]["rewind_epoch"]
                if rewind and rewind not in recipe["save_epochs"]:
                    raise ConfigError(f"config error at masks.{mname}.rewind_epoch: epoch {rewind} is not in "
                                      f"recipes.{e['recipe']}.save_epochs {recipe['save_epochs']}")


def _check_mask_references(cfg):
    for mname, m in cfg["masks"].items():
        _check_settings(m, f"masks.{mname}", "masks", "method", "mask_common", "masks")
        if m.get("source_mask"):
            _need(cfg, f"masks.{mname}.source_mask", "masks", m["source_mask"])
        if m.get("cycle_recipe"):
            _need(cfg, f"masks.{mname}.cycle_recipe", "recipes", m["cycle_recipe"])
        if m.get("from_epoch") or m.get("from_variant"):
            if entry("masks", m["method"])["weights"] != "trained" or m["method"] == "imp":
                raise ConfigError(f"config error at masks.{mname}: from_epoch / from_variant are for one-shot methods "
                                  f"that prune trained weights (omp, l1, ...), not {m['method']!r}")
            if m.get("from_epoch") and m.get("from_variant"):
                raise ConfigError(f"config error at masks.{mname}: give from_epoch or from_variant, not both")
        if m.get("from_variant"):
            _need(cfg, f"masks.{mname}.from_variant", "variants", m["from_variant"])
        if m.get("from_epoch"):
            for ename, e in cfg["experiments"].items():
                if mname in e["sparsities"] and m["from_epoch"] not in cfg["recipes"][e["recipe"]]["save_epochs"]:
                    raise ConfigError(f"config error at masks.{mname}.from_epoch: epoch {m['from_epoch']} is not in "
                                      f"recipes.{e['recipe']}.save_epochs (experiment {ename})")


def _check_artefact_references(cfg, aname: str, a: dict):
    """Also normalises `experiment`/`mask` to the lists (in place)."""
    where = f"artefacts.{aname}"
    if entry("artefacts", a["kind"])["sources"]:  # claims: read other artefacts' CSVs (claims.check checks them)
        return _check_settings(a, where, "artefacts", "kind", "artefact_common", "artefacts")
    _normalise_lists(a, where)
    _check_artefact_analysis(cfg, a, where)  # first: its error says more of a misplaced `analysis`
    _check_settings(a, where, "artefacts", "kind", "artefact_common", "artefacts")
    if a["kind"] == "sparsity_table" and (len(a["experiments"]) > 1 or len(a["masks"]) > 1):
        raise ConfigError(f"config error at {where}: a sparsity_table shows one experiment and one mask "
                          f"(use grid_table for several)")
    for i, s in enumerate(a.get("series", [])):  # series_lines: its points are the runs planned
        for mask, v in s["points"]:
            if mask not in a["masks"] or v not in a["variants"]:
                raise ConfigError(f"config error at {where}.series[{i}]: point [{mask}, {v}] needs {mask!r} in "
                                  f"{where}.masks and {v!r} in {where}.variants")
    _check_artefact_experiments(cfg, a, where)
    names = _check_artefact_variants(cfg, aname, a, where)
    for i, r in enumerate(a.get("rows", [])):
        if r[2:] and r[2] not in a["experiments"]:
            raise ConfigError(f"config error at {where}.rows[{i}]: "
                              f"experiment {r[2]!r} is not in {where}.experiments")
    for v in a["replicas"] if isinstance(a.get("replicas"), dict) else []:
        if v not in names:
            raise ConfigError(f"config error at {where}.replicas.{v}: not a variant this artefact shows")


def _check_artefact_experiments(cfg, a: dict, where: str):
    for i, ename in enumerate(a["experiments"]):
        _need(cfg, f"{where}.experiments[{i}]", "experiments", ename)
        e = cfg["experiments"][ename]
        if not set(a.get("seeds", e["seeds"])) & set(e["seeds"]):
            raise ConfigError(f"config error at {where}.seeds: "
                              f"none of {a['seeds']} is a seed of experiment {ename!r}")
        for mname in a["masks"]:
            if mname != "dense" and mname not in e["sparsities"]:
                raise ConfigError(f"config error at {where}.masks: experiment {ename!r} lists no sparsities "
                                  f"for mask {mname!r} (experiments.{ename}.sparsities)")


def _check_artefact_variants(cfg, aname: str, a: dict, where: str) -> list[str]:
    """The variants an artefact shows (variants, baseline, difference, its panels'): defined, with the rewind
    epochs they need saved by each experiment's recipe. Returns them."""
    names = artefact_variants(a)
    for p in a.get("panels", []):
        if p.get("experiment") and p["experiment"] not in a["experiments"]:
            raise ConfigError(f"config error at {where}.panels: "
                              f"experiment {p['experiment']!r} is not in {where}.experiments")
    for v in names:
        _need(cfg, f"{where}.variants", "variants", v)
        var = cfg["variants"][v]
        for ename in a["experiments"]:
            recipe = cfg["experiments"][ename]["recipe"]
            if var["init"] == "rewind" and var["rewind_epoch"] not in cfg["recipes"][recipe]["save_epochs"]:
                raise ConfigError(f"config error at variants.{v}.rewind_epoch: "
                                  f"epoch {var['rewind_epoch']} is not in "
                                  f"recipes.{recipe}.save_epochs (artefact {aname})")
    return names


def snap(cfg: dict, mask: str, s: float, where: str) -> float:
    """The exact sparsity a configured value stands for (imp: the nearest level)."""
    if s == 0 or mask == "dense" or cfg["masks"][mask]["method"] != "imp":
        return float(s)
    rate = cfg["masks"][mask]["rate"]
    level = max(1, round(math.log(1 - s) / math.log(1 - rate)))
    exact = imp_sparsity(level, rate)
    if abs(exact - s) > IMP_SNAP:
        raise ConfigError(f"config error at {where}: {s} is not an IMP level of masks.{mask} (rate {rate}); "
                          f"nearest is {exact:.4f} (level {level})")
    return exact


def _normalise_lists(a: dict, where: str) -> None:
    """`experiment`/`mask` (one) or `experiments`/`masks` (several): keep the lists."""
    for one, many, default in (("experiment", "experiments", None), ("mask", "masks", ["imp"])):
        if one in a and many in a:
            raise ConfigError(f"config error at {where}: give {one!r} or {many!r}, not both")
        a[many] = [a.pop(one)] if one in a else a.get(many, default)
        if a[many] is None:
            raise ConfigError(f"config error at {where}: needs 'experiment' (or 'experiments')")


def _check_sparsities(cfg):
    """Configured sparsities stay as written (tables show them: "90%"); runs use the exact value
    each stands for (IMP: the nearest level). Two values standing for the same run are an error."""
    for ename, e in cfg["experiments"].items():
        for mname, values in e["sparsities"].items():
            where = f"experiments.{ename}.sparsities.{mname}"
            exact = [snap(cfg, mname, s, where) for s in values]
            if len(set(exact)) < len(exact):
                raise ConfigError(f"config error at {where}: two values stand for the same sparsity "
                                  f"({[v for v, x in zip(values, exact) if exact.count(x) > 1]})")
    for aname, a in cfg["artefacts"].items():
        for ename in a.get("experiments", []):  # (claims artefacts show no experiments)
            e = cfg["experiments"][ename]
            for mname in (m for m in a["masks"] if m != "dense"):
                missing = [s for s in a.get("sparsities", [])
                           if not any(abs(s - t) < 1e-9 for t in e["sparsities"][mname])]
                if missing:
                    raise ConfigError(f"config error at artefacts.{aname}.sparsities: {missing} not in "
                                      f"experiments.{ename}.sparsities.{mname}")


def load(path: str) -> dict:
    with open(path) as f:
        return validate(yaml.safe_load(f))
