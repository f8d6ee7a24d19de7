"""The params of representative jobs of the demo, pinned: Snakemake re-runs a cached job whose params change, so a
change here means every cached job of that kind runs again. If the change is intended (a new setting that is not
at its default, a fix that must re-run), regenerate the file with TICKETLAB_UPDATE_GOLDEN=1 and let the diff of
tests/golden/params.json show in review what re-runs; a new setting at its default must leave it unchanged."""
import json
import os
import pathlib

import pytest

from ticketlab import plan
from ticketlab.config import load

GOLDEN = pathlib.Path(__file__).parent / "golden" / "params.json"
REPO = pathlib.Path(__file__).resolve().parents[1]

# one of each kind of job and of each way a spec is assembled
JOBS = {
    "dense": ("dense", "digits/resnet18_demo/demo/seed42"),
    "retrain: IMP ticket": ("retrain", "digits/resnet18_demo/demo/seed42/imp/s36.00/lth"),
    "retrain: tweaks + teacher (kd)": ("retrain", "digits/resnet18_demo/demo/seed42/imp/s36.00/at_trt_kd"),
    "retrain: weight rewinding": ("retrain", "digits/resnet18_demo/demo/seed42/imp/s36.00/rewind"),
    "retrain: on the dense network": ("retrain", "digits/resnet18_demo/demo/seed42/dense/s00.00/gsk"),
    "retrain: small dense": ("retrain", "digits/lenet5_demo/gradflow/seed42/pruned/s95.00/small_dense"),
    "retrain: replica (data order)": ("retrain", "digits/lenet5_demo/gradflow/seed42/pruned/s95.00/basin_lt@o1"),
    "mask: IMP level 2": ("mask", "digits/resnet18_demo/demo/42/imp/59.04"),
    "mask: SNIP at init": ("mask", "digits/resnet32_demo/demo/42/snip/90.00"),
    "mask: LTH-Iter (trains)": ("mask", "digits/resnet20_demo/dlth_demo/42/dlth_lthiter/90.00"),
    "analysis: Hessian": ("analysis", "digits/resnet18_demo/demo/seed42/imp/s36.00/lth", "hessian"),
    "analysis: arrays": ("analysis", "digits/lenet5_demo/gradflow/seed42/pruned/s95.00/basin_lt@o1",
                         "basin_predictions"),
    "analysis: trajectory (trains)": ("analysis", "digits/lenet5_demo/gradflow/seed42/pruned/s95.00/lottery",
                                      "gradflow_monitored"),
    "artefact": ("artefact", "gradflow_fig1c"),
}


def params(cfg, job):
    kind, key, *rest = job
    if kind == "dense":
        d, m, r, s = key.split("/")
        return plan.dense_spec(cfg, plan.W(dataset=d, model=m, recipe=r, seed=s.removeprefix("seed")))
    if kind == "retrain":
        return plan.retrain_spec(cfg, plan.parse_run(key))
    if kind == "mask":
        d, m, r, s, mask, sp = key.split("/")
        return plan.mask_spec(cfg, plan.W(dataset=d, model=m, recipe=r, seed=s, mask=mask, sparsity=sp))
    if kind == "analysis":
        return plan.analysis_spec(cfg, key, rest[0])
    return plan.artefact_job(cfg, key)


@pytest.fixture(scope="module")
def current():
    cfg = load(str(REPO / "config" / "config.yaml"))
    return {name: json.loads(json.dumps(params(cfg, job))) for name, job in JOBS.items()}


def test_the_params_of_representative_jobs_are_unchanged(current):
    if os.environ.get("TICKETLAB_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    pinned = json.loads(GOLDEN.read_text())
    assert sorted(pinned) == sorted(current)
    changed = [name for name in JOBS if pinned[name] != current[name]]
    assert not changed, f"params changed (cached jobs of these kinds would re-run): {changed}"


def test_the_golden_jobs_cover_every_rule_kind(current):
    assert {job[0] for job in JOBS.values()} == {"dense", "retrain", "mask", "analysis", "artefact"}
    assert "monitor" in current["analysis: trajectory (trains)"]
    assert current["retrain: tweaks + teacher (kd)"]["teacher"] and current["mask: LTH-Iter (trains)"]["cycle_recipe"]
