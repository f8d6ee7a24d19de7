"""From a checked configuration to file paths and job specs: the one place that knows the layout.

    results/data/{dataset}.npz
    results/runs/{dataset}/{model}/{recipe}/seed{seed}/dense/                      dense training
    results/masks/{dataset}/{model}/{recipe}/seed{seed}/{mask}/s{sparsity}.pt      one mask per sparsity
    results/runs/{dataset}/{model}/{recipe}/seed{seed}/{mask}/s{sparsity}/{variant}/   re-training
    results/analysis/{run}/{analysis}.json       an analysis of a run ({run}: its path under results/runs)
    results/analysis/{run}/{analysis}/           a trajectory analysis's monitored re-run (final.pt, metrics)
    results/tables/{id}.csv|md, results/figures/{id}.png|pdf                       artefacts

Names in paths are configuration keys (dataset, model, recipe, mask set, variant); their settings
travel to the jobs as params, so Snakemake re-runs a job when its settings change. Sparsity is in
percent with two decimals (s36.00). The dense network is the mask set `dense` at s00.00, and its
`lth` variant is the dense run itself; the IMP chain's `lth` run at level k is the run whose
weights give level k+1's mask, so it runs once and serves both.
"""
from __future__ import annotations

from .config import REPO, ConfigError, snap
from .catalog import entry
from .defaults import FAST_DEFAULTS, MONITOR_DEFAULTS, imp_level, imp_sparsity

RESULTS = "results"
TABLE_KINDS = {"sparsity_table", "grid_table", "activation_table", "ensemble_table", "init_table", "jackpot_table",
               "hyperparameter_table"}
FIGURE_KINDS = {"sparsity_lines", "analysis_sparsity", "curve_lines", "landscape", "basin_figure", "series_lines",
                "epoch_lines", "layer_sparsity", "init_signal_lines", "lr_lines", "remaining_lines",
                "correlation_lines"}
# kinds that also get the settings of their experiments (`setup` in their spec: learning rates, groups, Table E.1);
# CONFIG_KINDS read nothing else (no runs: the table is the configuration itself)
SETUP_KINDS = {"jackpot_table", "hyperparameter_table", "lr_lines", "remaining_lines", "correlation_lines"}
CONFIG_KINDS = {"hyperparameter_table"}


def sp_tag(s: float) -> str:
    return f"{100 * s:05.2f}"


def sp_value(tag: str) -> float:
    return float(tag) / 100


def data_path(dataset: str) -> str:
    return f"{RESULTS}/data/{dataset}.npz"


def prefix(dataset, model, recipe, seed) -> str:
    return f"{RESULTS}/runs/{dataset}/{model}/{recipe}/seed{seed}"


def dense_dir(w) -> str:
    return f"{prefix(w.dataset, w.model, w.recipe, w.seed)}/dense"


def mask_path(w, mask: str, s: float) -> str:
    return f"{RESULTS}/masks/{w.dataset}/{w.model}/{w.recipe}/seed{w.seed}/{mask}/s{sp_tag(s)}.pt"


def run_dir(w, mask: str, s: float, variant: str) -> str:
    """s: the exact sparsity (see exact_sparsity)."""
    if mask == "dense" or s == 0:
        return dense_dir(w) if variant == "lth" else f"{dense_dir(w)}/s00.00/{variant}"
    return f"{prefix(w.dataset, w.model, w.recipe, w.seed)}/{mask}/s{sp_tag(s)}/{variant}"


def canonical(obj):
    """Dicts with sorted keys, recursively: Snakemake compares params as text, so the order of keys
    in a YAML file must not look like a change of settings."""
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


class W:
    """Wildcards-like record, so plan functions serve Snakemake and plain Python alike."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def exact_sparsity(cfg, mask: str, s: float) -> float:
    """The sparsity a configured (or path) value stands for: IMP snaps to its nearest level."""
    return 0.0 if mask == "dense" else snap(cfg, mask, s, f"masks.{mask}")


def recipe_for_retrain(cfg, name) -> dict:
    return {k: v for k, v in cfg["recipes"][name].items() if k != "save_epochs"}


def init_weights(cfg, w, epoch: int) -> str:
    return f"{dense_dir(w)}/{'init.pt' if epoch == 0 else f'rewind_e{epoch}.pt'}"


def fast_settings(cfg) -> dict:
    """The device settings (precision, channels_last, compile) that differ from their defaults: only those
    enter a training spec, so adding the settings left every existing run's params (and results) as they were."""
    return {k: cfg[k] for k, v in FAST_DEFAULTS.items() if cfg.get(k, v) != v}


def dense_spec(cfg, w) -> dict:
    return canonical({"name": dense_dir(w), "data": data_path(w.dataset), "model": cfg["models"][w.model],
            "recipe": recipe_for_retrain(cfg, w.recipe), "seed": int(w.seed), "mask": None,
            "init": {"from": "fresh"}, "tweaks": {}, "teacher": None, "device": cfg["device"], **fast_settings(cfg),
            "save_init": True, "save_epochs": cfg["recipes"][w.recipe]["save_epochs"]})


def dense_outputs(cfg, recipe: str) -> list[str]:
    return ["init.pt", "final.pt", "metrics.csv", "summary.json"] + \
        [f"rewind_e{k}.pt" for k in cfg["recipes"][recipe]["save_epochs"]]


REPLICA = "@o"  # variant@o<k>: replica k of the variant's run, same initialisation and mask, another data order


def replica_names(variant: str, replicas: int) -> list[str]:
    return [f"{variant}{REPLICA}{k}" for k in range(1, replicas + 1)] if replicas else [variant]


def split_replica(name: str) -> tuple[str, int]:
    """'lth@o3' -> ('lth', 3); 'lth' -> ('lth', 0)."""
    base, sep, k = name.partition(REPLICA)
    if sep and not k.isdigit():
        raise ValueError(f"variant {name!r}: replica suffix must be {REPLICA}<number>")
    return base, int(k) if sep else 0


def retrain_spec(cfg, w) -> dict:
    """The spec of re-training `w.variant` on mask set `w.mask` at sparsity `w.sparsity`. A variant name
    with a replica suffix (lth@o3) is that variant's run with data order (and, for variants with
    `replica_init`, random re-initialisation) drawn from the replica number."""
    s = exact_sparsity(cfg, w.mask, sp_value(w.sparsity))
    name, replica = split_replica(w.variant)
    v = cfg["variants"][name]
    seed = int(w.seed)
    extra = {}
    if v["init"] == "rr":
        init = {"from": "fresh", "reinit": True}
        if "reinit_seed" in v or (replica and v.get("replica_init")):
            init["reinit_seed"] = v.get("reinit_seed", seed + 1_000_003) + (replica if v.get("replica_init") else 0)
    elif v["init"] == "final":
        init = {"from": "file", "path": f"{dense_dir(w)}/final.pt"}
    elif v["init"] == "variant":
        src = ("dense", 0.0) if v.get("from_dense") or w.mask == "dense" else (w.mask, s)
        init = {"from": "file", "path": f"{run_dir(w, *src, v['from_variant'])}/final.pt"}
    else:
        epoch = v["rewind_epoch"] if v["init"] == "rewind" else \
            (0 if w.mask == "dense" else cfg["masks"][w.mask]["rewind_epoch"])
        init = {"from": "file", "path": init_weights(cfg, w, epoch)}
        if v.get("continue_schedule"):
            extra["start_epoch"] = epoch
    if replica:
        extra["order_seed"] = 1_000_000 * replica + seed
    mask = None if w.mask == "dense" else mask_path(w, w.mask, s)
    if v.get("small_dense"):
        if mask is None:
            raise ValueError(f"variant {name!r} (small_dense) needs a mask to match, not the dense network")
        init, mask, extra["match_params_of"] = {"from": "fresh"}, None, mask
    tweaks = {t: {**cfg["tweaks"].get(t, {}), **v["params"].get(t, {})} for t in v["tweaks"]}
    teacher = any(entry("tweaks", t)["needs_teacher"] for t in tweaks)
    return canonical({"name": run_dir(w, w.mask, s, w.variant), "data": data_path(w.dataset),
            "model": cfg["models"][w.model],
            "recipe": {**recipe_for_retrain(cfg, w.recipe), **v.get("recipe", {})}, "seed": seed,
            "mask": mask, "init": init, "tweaks": tweaks, **extra,
            "teacher": f"{dense_dir(w)}/final.pt" if teacher else None, "device": cfg["device"], **fast_settings(cfg)})


def spec_inputs(spec: dict) -> dict:
    paths = {"data": spec["data"], "mask": spec["mask"], "init": spec["init"].get("path"), "teacher": spec["teacher"],
             "match": spec.get("match_params_of")}
    return {k: v for k, v in paths.items() if v}


def mask_spec(cfg, w) -> dict:
    """Inputs and settings of one mask file. Methods that prune a trained network: IMP level k
    prunes the level k-1 `lth` run (the dense run at k=1) under the level k-1 mask; the others prune
    the trained dense run. Methods that prune at initialisation get the dense run's init.pt.
    ratios_from also reads the source mask set's file at the same sparsity."""
    m = cfg["masks"][w.mask]
    s = exact_sparsity(cfg, w.mask, sp_value(w.sparsity))
    weights = f"{dense_dir(w)}/{'init.pt' if entry('masks', m['method'])['weights'] == 'init' else 'final.pt'}"
    if m.get("from_epoch"):      # e.g. Early-Bird: the dense run's weights after that epoch
        weights = init_weights(cfg, w, m["from_epoch"])
    elif m.get("from_variant"):  # e.g. the gradual-pruning run of seed 004: that variant's run on the dense network
        weights = f"{run_dir(w, 'dense', 0.0, m['from_variant'])}/final.pt"
    previous = source = None
    if m["method"] == "imp":
        level = imp_level(s, m["rate"])
        if level > 1:
            prev = imp_sparsity(level - 1, m["rate"])
            weights = f"{run_dir(w, w.mask, prev, 'lth')}/final.pt"
            previous = mask_path(w, w.mask, prev)
    if m.get("source_mask"):
        source = mask_path(w, m["source_mask"], exact_sparsity(cfg, m["source_mask"], s))
    trains = {}
    if m.get("cycle_recipe"):  # lth_iter trains in the mask job: the recipe's settings are the mask's settings
        trains = {"cycle_recipe": recipe_for_retrain(cfg, m["cycle_recipe"]), "device": cfg["device"],
                  **fast_settings(cfg)}
    return canonical({**m, "sparsity": s, "weights": weights, "previous": previous, "source": source, **trains,
                      "data": data_path(w.dataset), "model": cfg["models"][w.model], "seed": int(w.seed)})


def mask_inputs(spec: dict) -> dict:
    return {k: spec[k] for k in ("weights", "previous", "source", "data") if spec.get(k)}


def analysis_settings(cfg, name: str) -> dict:
    """An analysis's kind and full settings (the kind's defaults under the configured values)."""
    a = dict(cfg["analyses"][name])
    defaults = MONITOR_DEFAULTS if a["kind"] == "trajectory" else entry("analyses", a["kind"])["defaults"]
    return {**defaults, **a}


def analysis_path(run: str, name: str) -> str:
    """run: a run directory (results/runs/...)."""
    return f"{RESULTS}/analysis/{run.removeprefix(RESULTS + '/runs/')}/{name}.json"


def arrays_path(json_path: str) -> str:
    """The .npz beside an analysis JSON, for kinds that write arrays (rule analysis_arrays)."""
    return json_path.removesuffix(".json") + ".npz"


def analysis_rule(cfg, name: str) -> str:
    """The rule that makes an analysis: trajectory (a monitored re-run), analysis_arrays (JSON + .npz) or analysis."""
    kind = cfg["analyses"][name]["kind"]
    if kind == "trajectory":
        return "trajectory"
    return "analysis_arrays" if entry("analyses", kind)["arrays"] else "analysis"


def parse_run(run: str):
    """The wildcards of a run from its path under results/runs (see run_dir): (w, mask, sparsity tag, variant)."""
    parts = run.split("/")
    if len(parts) < 5 or not parts[3].startswith("seed"):
        raise ValueError(f"not a run path: {run!r}")
    w = dict(dataset=parts[0], model=parts[1], recipe=parts[2], seed=parts[3][4:])
    rest = parts[4:]
    if rest == ["dense"]:
        mask, tag, variant = "dense", "00.00", "lth"
    elif len(rest) == 3 and rest[1].startswith("s"):
        mask, tag, variant = rest[0], rest[1][1:], rest[2]
    else:
        raise ValueError(f"not a run path: {run!r}")
    return W(**w, mask=mask, sparsity=tag, variant=variant)


def analysis_spec(cfg, run: str, name: str) -> dict:
    """What an analysis job needs: the run's spec (model, tweaks, mask, data), the weights analysed
    (the run's final.pt, or the monitored re-run of the trajectory analysis named by `weights`) and
    how many epochs they were trained (tweak state such as ghost gates depends on it); for kinds that
    need them, `initial` (the job rebuilds the run's starting weights from its spec) and `reference`
    (the final weights of the `reference` variant's run at the same mask and sparsity, or on the dense
    network with reference_dense, e.g. the pruning solution)."""
    w = parse_run(run)
    spec = retrain_spec(cfg, w)
    a = analysis_settings(cfg, name)
    epochs = spec["recipe"]["epochs"]
    if a["kind"] == "trajectory":
        return canonical({**spec, "name": f"{RESULTS}/analysis/{run}/{name}", "monitor": a,
                          "stop_after": a["epochs"] or None, "export": False})
    weights = f"{spec['name']}/final.pt"
    if a.get("weights"):
        src = analysis_settings(cfg, a["weights"])
        weights = f"{RESULTS}/analysis/{run}/{a['weights']}/final.pt"
        epochs = min(epochs, src["epochs"] or epochs)
    kind, extra = entry("analyses", a["kind"]), {}
    if kind["needs_init"]:
        extra["initial"] = True
    if kind["needs_reference"]:
        src = (("dense", 0.0) if a.get("reference_dense")
               else (w.mask, exact_sparsity(cfg, w.mask, sp_value(w.sparsity))))
        extra["reference"] = f"{run_dir(w, *src, a['reference'])}/final.pt"
    return canonical({"run": spec, "analysis": a, "weights": weights, "epochs": epochs, **extra})


def analysis_inputs(spec: dict) -> dict:
    if "run" not in spec:  # trajectory: a training run
        return spec_inputs(spec)
    started = spec_inputs(spec["run"]) if spec.get("initial") else {}  # what the run's setup reads
    return {k: v for k, v in {**started, "data": spec["run"]["data"], "mask": spec["run"]["mask"],
                              "weights": spec["weights"], "reference": spec.get("reference")}.items() if v}


def artefact_variants(a: dict) -> list[str]:
    names = list(a["variants"]) + ([a["baseline"]] if "baseline" in a else []) + list(a.get("difference", []))
    for p in a.get("panels", []):
        names += p["variants"] + p.get("mark_crossing", [])
    return list(dict.fromkeys(names))


def demo_experiments(cfg, aid: str) -> list[str]:
    """The experiments of artefact `aid` that read the bundled digits (the demo's stand-ins)."""
    exps = cfg["experiments"]
    return [e for e in cfg["artefacts"][aid].get("experiments", [])
            if cfg["datasets"][exps[e]["dataset"]]["source"] == "digits"]


def paper_configs_building(aid: str) -> list[str]:
    """The paper configurations (config/paper/*.yaml) whose `targets` build artefact `aid`."""
    import yaml

    out = []
    for p in sorted((REPO / "config" / "paper").glob("*.yaml")):
        with open(p) as f:
            if aid in (yaml.safe_load(f) or {}).get("targets", []):
                out.append(str(p.relative_to(REPO)))
    return out


def check_scale(cfg, aid: str, where: str | None = None) -> None:
    """Under a paper configuration (scale: paper) an artefact whose experiments read the digits is refused:
    it would mix the demo's stand-ins into a paper-scale artefact (or be one). The error names the paper
    configuration that builds it."""
    demo = demo_experiments(cfg, aid) if cfg.get("scale") == "paper" else []
    if not demo:
        return
    others, target = paper_configs_building(aid), artefact_files(cfg, aid)[0]
    hint = (f"{' or '.join(others)} builds it at paper scale: snakemake {target} --configfile {others[0]}" if others
            else "no configuration in config/paper/ builds it at paper scale")
    raise ConfigError(f"config error at {where or 'artefacts.' + aid}: this is a paper configuration (scale: paper) "
                      f"but it configures artefact {aid!r} at demo scale only (experiments {', '.join(demo)} read "
                      f"the bundled digits); {hint}")


def artefact_runs(cfg, aid: str) -> list[dict]:
    """One row per (experiment, mask, seed, sparsity, variant[, replica]) the artefact needs, with the
    path of the file it reads: the run's summary.json (default), its metrics.csv or its mask's report
    (`reads`), or an analysis's JSON (`analysis`; `arrays`: its .npz, for kinds that write one); `sparsity`
    is the configured (nominal) value, `exact` the run's. With `replicas: N` each variant stands for its N
    replicas (variant@o1..N, column replica); `replicas: {variant: N}` does so for the variants named only.
    A `rows` entry [mask, variant, experiment] shows that pair for that experiment only."""
    check_scale(cfg, aid)
    a = cfg["artefacts"][aid]
    if a["kind"] in CONFIG_KINDS:
        return []
    reps = a.get("replicas", 0)
    arrays = bool(a.get("analysis")) and analysis_rule(cfg, a["analysis"]) == "analysis_arrays"
    shown = a.get("rows") or [p for s in a.get("series", []) for p in s["points"]] or None  # series_lines: its points
    rows = []
    for ename in a["experiments"]:
        e = cfg["experiments"][ename]
        for mask in a["masks"]:
            for seed in [s for s in e["seeds"] if s in a.get("seeds", e["seeds"])]:
                w = W(dataset=e["dataset"], model=e["model"], recipe=e["recipe"], seed=seed)
                for s in [0.0] if mask == "dense" else a.get("sparsities", e["sparsities"][mask]):
                    exact = exact_sparsity(cfg, mask, s)
                    for v in artefact_variants(a):
                        if shown is not None and not any(r[:2] == [mask, v] and r[2:] in ([], [ename]) for r in shown):
                            continue
                        n = reps.get(v, 0) if isinstance(reps, dict) else reps
                        for k, name in enumerate(replica_names(v, n), start=1 if n else 0):
                            run = run_dir(w, mask, exact, name)
                            path = analysis_path(run, a["analysis"]) if a.get("analysis") else {
                                "summary": f"{run}/summary.json", "metrics": f"{run}/metrics.csv",
                                "mask": mask_path(w, mask, exact).removesuffix(".pt") + ".json",
                            }[a.get("reads", "summary")]
                            rows.append({"experiment": ename, "mask": mask, "seed": seed, "sparsity": s, "exact": exact,
                                         "variant": v, "replica": k, "path": path,
                                         **({"arrays": arrays_path(path)} if arrays else {})})
    return rows


def artefact_job(cfg, aid: str) -> dict:
    """What an artefact job reads: its settings, the runs it shows and those runs' variant settings."""
    a = cfg["artefacts"][aid]
    if a.get("analysis"):
        a = {**a, "analysis_kind": cfg["analyses"][a["analysis"]]["kind"]}
    if a["kind"] in SETUP_KINDS:
        a = {**a, "setup": experiment_setup(cfg, a)}
    return canonical({"spec": a, "rows": artefact_runs(cfg, aid),
                      "variants": {v: cfg["variants"][v] for v in artefact_variants(a)}})


def experiment_setup(cfg, a: dict) -> dict:
    """The settings behind an artefact's experiments: each experiment's dataset, model, recipe, seeds and
    sparsities, and the recipes, models, datasets, mask sets and variants they use (for SETUP_KINDS)."""
    exps = {e: cfg["experiments"][e] for e in a["experiments"]}
    masks = ({m for e in exps.values() for m in e["sparsities"]} | set(a["masks"])) - {"dense"}
    return {"experiments": exps, "recipes": {e["recipe"]: cfg["recipes"][e["recipe"]] for e in exps.values()},
            "models": {e["model"]: cfg["models"][e["model"]] for e in exps.values()},
            "datasets": {e["dataset"]: cfg["datasets"][e["dataset"]] for e in exps.values()},
            "masks": {m: cfg["masks"][m] for m in sorted(masks)},
            "variants": {v: cfg["variants"][v] for v in artefact_variants(a)}}


def paper_values(cfg, aid: str) -> list[str]:
    """The paper-value files an artefact shows (`paper:`, default its own id), those that exist."""
    names = cfg["artefacts"][aid].get("paper", [aid])
    paths = [REPO / "config" / "paper_values" / f"{n}.csv" for n in names]
    return [str(p) for p in paths if p.exists()]


def artefact_files(cfg, aid: str) -> list[str]:
    kind = cfg["artefacts"][aid]["kind"]
    if kind in TABLE_KINDS:
        return [f"{RESULTS}/tables/{aid}.csv", f"{RESULTS}/tables/{aid}.md"]
    return [f"{RESULTS}/figures/{aid}.png", f"{RESULTS}/figures/{aid}.pdf", f"{RESULTS}/figures/{aid}.csv"]


def targets(cfg) -> list[str]:
    return [f for aid in cfg.get("targets", cfg["artefacts"]) for f in artefact_files(cfg, aid)]
