"""From a checked configuration to job specs: what each job reads and with which settings (paths: layout).

Names in paths are configuration keys (dataset, model, recipe, mask set, variant); their settings
travel to the jobs as params, so Snakemake re-runs a job when its settings change; each job's params are
the params form of its typed spec (ticketlab.specs), which checks the keys and leaves new settings at their
defaults out. The dense network
is the mask set `dense` at s00.00, and its `lth` variant is the dense run itself; the IMP chain's
`lth` run at level k is the run whose weights give level k+1's mask, so it runs once and serves both.
"""
from __future__ import annotations

import os

from . import claims, layout
from .catalog import catalog, entry
from .config import REPO, check_scale, snap
from .defaults import FAST_DEFAULTS, artefact_variants, imp_level, imp_sparsity
from .specs import AnalysisJob, ArtefactJob, MaskJob, RunSpec
from .layout import (FINAL, INIT, METRICS, SUMMARY, W, analysis_path, arrays_path, data_path, dense_dir,
                     dense_files, init_weights, mask_path, mask_report, parse_run, replica_names, run_dir, sp_value,
                     split_replica, trajectory_dir)


def exact_sparsity(cfg, mask: str, s: float) -> float:
    """The sparsity a configured (or path) value stands for: IMP snaps to its nearest level."""
    return 0.0 if mask == "dense" else snap(cfg, mask, s, f"masks.{mask}")


def recipe_for_retrain(cfg, name) -> dict:
    return {k: v for k, v in cfg["recipes"][name].items() if k != "save_epochs"}


def fast_settings(cfg) -> dict:
    """The device settings (precision, channels_last, compile) that differ from their defaults: only those
    enter a training spec, so adding the settings left every existing run's params (and results) as they were."""
    return {k: cfg[k] for k, v in FAST_DEFAULTS.items() if cfg.get(k, v) != v}


def dense_spec(cfg, w) -> dict:
    return RunSpec.from_dict({
        "name": dense_dir(w), "data": data_path(w.dataset), "model": cfg["models"][w.model],
        "recipe": recipe_for_retrain(cfg, w.recipe), "seed": int(w.seed), "mask": None,
        "init": {"from": "fresh"}, "tweaks": {}, "teacher": None, "device": cfg["device"], **fast_settings(cfg),
        "save_init": True, "save_epochs": cfg["recipes"][w.recipe]["save_epochs"]}).params()


def dense_outputs(cfg, recipe: str) -> list[str]:
    """The file names the dense run of `recipe` writes in its directory."""
    return dense_files(cfg["recipes"][recipe]["save_epochs"])


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
        init = {"from": "file", "path": f"{dense_dir(w)}/{FINAL}"}
    elif v["init"] == "variant":
        src = ("dense", 0.0) if v.get("from_dense") or w.mask == "dense" else (w.mask, s)
        init = {"from": "file", "path": f"{run_dir(w, *src, v['from_variant'])}/{FINAL}"}
    else:
        epoch = v["rewind_epoch"] if v["init"] == "rewind" else \
            (0 if w.mask == "dense" else cfg["masks"][w.mask]["rewind_epoch"])
        init = {"from": "file", "path": init_weights(w, epoch)}
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
    return RunSpec.from_dict({
        "name": run_dir(w, w.mask, s, w.variant), "data": data_path(w.dataset), "model": cfg["models"][w.model],
        "recipe": {**recipe_for_retrain(cfg, w.recipe), **v.get("recipe", {})}, "seed": seed,
        "mask": mask, "init": init, "tweaks": tweaks, **extra,
        "teacher": f"{dense_dir(w)}/{FINAL}" if teacher else None, "device": cfg["device"],
        **fast_settings(cfg)}).params()


def spec_inputs(spec: dict) -> dict:
    """A training run's named inputs (RunSpec.inputs): the rule's input, what the job reads."""
    return RunSpec.from_dict(spec).inputs()


def mask_spec(cfg, w) -> dict:
    """Inputs and settings of one mask file. Methods that prune a trained network: IMP level k
    prunes the level k-1 `lth` run (the dense run at k=1) under the level k-1 mask; the others prune
    the trained dense run. Methods that prune at initialisation get the dense run's init.pt.
    ratios_from also reads the source mask set's file at the same sparsity."""
    m = cfg["masks"][w.mask]
    s = exact_sparsity(cfg, w.mask, sp_value(w.sparsity))
    weights = f"{dense_dir(w)}/{INIT if entry('masks', m['method'])['weights'] == 'init' else FINAL}"
    if m.get("from_epoch"):      # e.g. Early-Bird: the dense run's weights after that epoch
        weights = init_weights(w, m["from_epoch"])
    elif m.get("from_variant"):  # e.g. the gradual-pruning run of gradflow: that variant's run on the dense network
        weights = f"{run_dir(w, 'dense', 0.0, m['from_variant'])}/{FINAL}"
    previous = source = None
    if m["method"] == "imp":
        level = imp_level(s, m["rate"])
        if level > 1:
            prev = imp_sparsity(level - 1, m["rate"])
            weights = f"{run_dir(w, w.mask, prev, 'lth')}/{FINAL}"
            previous = mask_path(w, w.mask, prev)
    if m.get("source_mask"):
        source = mask_path(w, m["source_mask"], exact_sparsity(cfg, m["source_mask"], s))
    trains = {}
    if m.get("cycle_recipe"):  # lth_iter trains in the mask job: the recipe's settings are the mask's settings
        trains = {"cycle_recipe": recipe_for_retrain(cfg, m["cycle_recipe"]), "device": cfg["device"],
                  **fast_settings(cfg)}
    return MaskJob.from_dict({**m, "sparsity": s, "weights": weights, "previous": previous, "source": source,
                              **trains, "data": data_path(w.dataset), "model": cfg["models"][w.model],
                              "seed": int(w.seed)}, f"masks.{w.mask}").params()


def mask_inputs(spec: dict) -> dict:
    return MaskJob.from_dict(spec).inputs()


def analysis_settings(cfg, name: str) -> dict:
    """An analysis's kind and full settings (the kind's defaults under the configured values)."""
    a = dict(cfg["analyses"][name])
    return {**entry("analyses", a["kind"])["defaults"], **a}


def analysis_rule(cfg, name: str) -> str:
    """The rule that makes an analysis: trajectory (kinds that train: a monitored re-run), analysis_arrays
    (JSON + .npz) or analysis."""
    kind = entry("analyses", cfg["analyses"][name]["kind"])
    return "trajectory" if kind["trains"] else "analysis_arrays" if kind["arrays"] else "analysis"


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
    if entry("analyses", a["kind"])["trains"]:  # a monitored re-run (analysis.trajectory)
        return RunSpec.from_dict({**spec, "name": trajectory_dir(run, name), "monitor": a,
                                  "stop_after": a["epochs"] or None, "export": False}).params()
    weights = f"{spec['name']}/{FINAL}"
    if a.get("weights"):
        src = analysis_settings(cfg, a["weights"])
        weights = f"{trajectory_dir(run, a['weights'])}/{FINAL}"
        epochs = min(epochs, src["epochs"] or epochs)
    kind, extra = entry("analyses", a["kind"]), {}
    if kind["needs_init"]:
        extra["initial"] = True
    if kind["needs_reference"]:
        src = (("dense", 0.0) if a.get("reference_dense")
               else (w.mask, exact_sparsity(cfg, w.mask, sp_value(w.sparsity))))
        extra["reference"] = f"{run_dir(w, *src, a['reference'])}/{FINAL}"
    return AnalysisJob.from_dict({"run": spec, "analysis": a, "weights": weights, "epochs": epochs, **extra},
                                 f"analyses.{name}").params()


def analysis_inputs(spec: dict) -> dict:
    """An analysis job's named inputs; a trajectory's are those of its training re-run."""
    return spec_inputs(spec) if "run" not in spec else AnalysisJob.from_dict(spec).inputs()


def job_group(cfg, rule: str, w) -> str | None:
    """The cluster submission a job shares (its Snakemake `group`): a training job's own run (its run_key), and
    the run whose weights a seconds-long job reads, so one submission trains a run and then makes the masks that
    prune it (IMP level k+1 with the level-k run) and its analyses. None (a submission of its own) for jobs that
    train (lth_iter's masks, trajectories), analyses that also read a reference run, and masks whose source mask
    comes from another submission: a group that a path leaves and re-enters would depend on itself. Jobs that
    read a run finished earlier are each a submission of their own (a group joins connected jobs only)."""
    if rule == "dense":
        return layout.run_key(dense_dir(w))
    if rule == "retrain":
        return layout.run_key(retrain_spec(cfg, w)["name"])
    if rule == "mask":
        m = mask_spec(cfg, w)
        own = _run_of(m["weights"])
        if m.get("cycle_recipe") or (m["source"] and own != job_group(cfg, "mask", layout.parse_mask(m["source"]))):
            return None
        return own
    spec = analysis_spec(cfg, w.run, w.analysis)
    return None if "run" not in spec or spec.get("reference") else _run_of(spec["weights"])


def _run_of(path: str) -> str | None:
    """The run (run_key) a weights file belongs to; None for files outside results/runs (a trajectory's)."""
    run = os.path.dirname(path)
    return layout.run_key(run) if run.startswith(layout.RUNS + "/") else None



def artefact_runs(cfg, aid: str) -> list[dict]:
    """One row per (experiment, mask, seed, sparsity, variant[, replica]) the artefact needs, with the
    path of the file it reads: the run's summary.json (default), its metrics.csv or its mask's report
    (`reads`), or an analysis's JSON (`analysis`; `arrays`: its .npz, for kinds that write one); `sparsity`
    is the configured (nominal) value, `exact` the run's. With `replicas: N` each variant stands for its N
    replicas (variant@o1..N, column replica); `replicas: {variant: N}` does so for the variants named only.
    A `rows` entry [mask, variant, experiment] shows that pair for that experiment only."""
    check_scale(cfg, aid)
    a = cfg["artefacts"][aid]
    if entry("artefacts", a["kind"])["sources"]:  # claims: the tidy CSVs of the artefacts its claims read
        return [{"artefact": s, "path": layout.tidy_csv(s, entry("artefacts", cfg["artefacts"][s]["kind"])["output"]),
                 "report": os.path.basename(artefact_files(cfg, s)[0])} for s in claims.sources(cfg, aid)]
    if entry("artefacts", a["kind"])["config_only"]:
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
                                "summary": f"{run}/{SUMMARY}", "metrics": f"{run}/{METRICS}",
                                "mask": mask_report(w, mask, exact),
                            }[a.get("reads", "summary")]
                            rows.append({"experiment": ename, "mask": mask, "seed": seed, "sparsity": s, "exact": exact,
                                         "variant": v, "replica": k, "path": path,
                                         **({"arrays": arrays_path(path)} if arrays else {})})
    return rows


def curve_runs(cfg) -> dict[str, list[str]]:
    """experiment -> the runs (run_key, sorted) that the targeted artefacts show, whose training curves the report
    draws (a figure per experiment: rule curves); artefacts that read only masks or other artefacts show none."""
    out: dict[str, set] = {}
    for aid in cfg.get("targets", cfg["artefacts"]):
        a, kind = cfg["artefacts"][aid], entry("artefacts", cfg["artefacts"][aid]["kind"])
        if kind["sources"] or kind["config_only"] or a.get("reads") == "mask":
            continue
        for r in artefact_runs(cfg, aid):
            out.setdefault(r["experiment"], set()).add(layout.run_of_file(r["path"]))
    return {e: sorted(runs) for e, runs in sorted(out.items())}


def report_category(cfg, name: str) -> str:
    """The report's category of an artefact or experiment: its paper (the id's prefix and the paper's title, as its
    claims file gives it up to the authors), or "All papers" for the claims of every paper."""
    prefix = name.split("_")[0]
    if name == "claims":
        return "All papers"
    try:
        return f"{prefix}: {claims.load(prefix)['paper'].split(' (')[0]}"
    except (KeyError, claims.ClaimError):  # a prefix without a claim file
        return prefix


def artefact_job(cfg, aid: str) -> dict:
    """What an artefact job reads: its settings, the runs it shows and those runs' variant settings."""
    a = cfg["artefacts"][aid]
    if a.get("analysis"):
        a = {**a, "analysis_kind": cfg["analyses"][a["analysis"]]["kind"]}
    if entry("artefacts", a["kind"])["setup"]:
        a = {**a, "setup": experiment_setup(cfg, a)}
    if entry("artefacts", a["kind"])["sources"]:  # claims: the claim files, so that editing a claim re-runs it
        files = {name: claims.load(name) for name in a["claims"]}
        a = {**a, "claim_files": files, "decided": {n: claims.decided(cfg, a, doc) for n, doc in files.items()}}
    return ArtefactJob.from_dict({"spec": a, "rows": artefact_runs(cfg, aid),
                                  "variants": {v: cfg["variants"][v] for v in artefact_variants(a)}},
                                 f"artefacts.{aid}").params()


def experiment_setup(cfg, a: dict) -> dict:
    """The settings behind an artefact's experiments: each experiment's dataset, model, recipe, seeds and
    sparsities, and the recipes, models, datasets, mask sets and variants they use (for kinds flagged setup)."""
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


def targets(cfg) -> list[str]:
    return [f for aid in cfg.get("targets", cfg["artefacts"]) for f in artefact_files(cfg, aid)]


def artefact_files(cfg, aid: str) -> list[str]:
    """The files artefact `aid` writes (layout.artefact_files, by its kind's output)."""
    return layout.artefact_files(aid, entry("artefacts", cfg["artefacts"][aid]["kind"])["output"])


def artefact_kinds(output: str) -> set[str]:
    """The artefact kinds that write a table (rule table), a figure (rule figure) or claims (rule claims)."""
    return {k for k, d in catalog()["artefacts"].items() if d["output"] == output}
