"""gradflow part 1 (Table 1, Figures 1c, 2, 3) end to end at smoke scale, its caching, the configuration's
plumbing (the pruning run, its mask set, the lottery ticket) and the paper dry run."""
import copy
import math

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, SMOKE, assert_artefacts_built, config_with, planned, snakemake
from ticketlab import plan
from ticketlab.masks import Mask
from ticketlab.training import initial_weights
from ticketlab.weights_io import load as load_state

pytestmark = pytest.mark.workflow  # subprocesses: snakemake, training processes, a job server or SLURM

PAPER = str(REPO / "config" / "paper" / "gradflow.yaml")
IDS = ["gradflow_tab1", "gradflow_fig1c", "gradflow_fig2", "gradflow_fig3"]
TARGETS = [f"results/tables/{IDS[0]}.md"] + [f"results/figures/{a}.png" for a in IDS[1:]]
W = dict(dataset="digits", model="lenet5_demo", recipe="gradflow", seed="42")


def test_the_pruning_run_its_mask_set_and_the_lottery_ticket_are_wired_as_the_paper_says():
    cfg = config_with()
    prune = plan.retrain_spec(cfg, plan.W(**W, mask="dense", sparsity="00.00", variant="prune"))
    assert prune["name"].endswith("seed42/dense/s00.00/prune") and prune["mask"] is None
    assert set(prune["tweaks"]) == {"gmp", "sparse_init"} and prune["recipe"]["weight_decay"] == 0.0  # Table 3
    mask = plan.mask_spec(cfg, plan.W(**W, mask="pruned", sparsity="95.00"))
    assert mask["weights"] == f"{prune['name']}/final.pt"
    assert (mask["method"], mask["scope"], mask["layers"]) == ("omp", "layer", "conv_linear")
    assert mask["sparsity"] == cfg["tweaks"]["gmp"]["sparsity"]  # the mask set keeps what the run kept
    lottery = plan.retrain_spec(cfg, plan.W(**W, mask="pruned", sparsity="95.00", variant="lottery"))
    assert lottery["seed"] == prune["seed"] and "reinit" not in lottery["init"]  # the same draw (sparse_init)
    assert lottery["recipe"]["weight_decay"] == 5e-4  # Table 4
    for v in ("scratch_dense", "set_liu", "rigl_fanin", "rigl_inverted"):
        s = plan.retrain_spec(cfg, plan.W(**W, mask="pruned", sparsity="95.00", variant=v))
        assert s["init"]["reinit"] and s["mask"] == lottery["mask"]
    small = plan.retrain_spec(cfg, plan.W(**W, mask="pruned", sparsity="95.00", variant="small_dense"))
    assert small["match_params_of"] == lottery["mask"] and small["mask"] is None
    assert small["tweaks"] == {"sparse_init": {"method": "dense", "scale": 1.0, "mode": "fan_avg"}}  # Glorot (B.2)


def test_paper_recipe_is_table_4s_step_count():
    cfg = config_with(PAPER)
    r, d = cfg["recipes"]["gradflow"], cfg["datasets"]["mnist"]
    n_train = 60000 - round(d["val_fraction"] * 60000)
    per_epoch = math.ceil(n_train / r["batch_size"])
    assert n_train == 50000 and math.ceil(30 * n_train / 128) == r["steps"] == 11719
    assert (r["epochs"] - 1) * per_epoch < r["steps"] <= r["epochs"] * per_epoch == 11730
    assert cfg["tweaks"]["gmp"]["end"] < r["steps"]


def test_init_table_lays_out_methods_by_initialisation(tmp_path):
    from ticketlab.artefacts.initialisation import init_table
    rows = [("a0", 0.95, 90.0, 1.0, 2, 91.0), ("a1", 0.95, 80.0, 0.0, 1, float("nan")),
            ("b0", 0.95, 70.0, 2.0, 2, 71.0), ("b1", 0.95, 60.0, 0.5, 2, 61.0), ("base", 0.0, 99.0, 0.1, 2, 99.5)]
    tidy = pd.DataFrame([{"experiment": "e", "mask": "m", "variant": v, "sparsity": s, "mean": m, "std": sd, "n": n,
                          "paper": p, "label": v.upper()} for v, s, m, sd, n, p in rows])
    spec = {"title": "T", "metric": "test_acc_best_val", "experiments": ["e"], "columns": ["I", "II"],
            "grid": [["B", "b0", "b1"], ["A", "a0", "a1"]], "variants": ["a0", "a1", "b0", "b1", "base"]}
    out = [str(tmp_path / "t.csv"), str(tmp_path / "t.md")]
    init_table(spec, tidy, pd.DataFrame(), out)
    md = open(out[1]).read()
    assert "| Method | I | II |\n|---|---|---|\n| B | 70.00 ± 2.00 / 71.00 | 60.00 ± 0.50 / 61.00 |\n" \
           "| A | 90.00 ± 1.00 / 91.00 | 80.00 / – |" in md
    assert "| BASE (0.00%) |\n|---|\n| 99.00 ± 0.10 / 99.50 |" in md
    with pytest.raises(ValueError, match="grid row 'A' needs one variant"):
        init_table({**spec, "grid": [["A", "a0"]]}, tidy, pd.DataFrame(), out)


@pytest.fixture
def smoke(smoke_run):
    return smoke_run


def test_smoke_builds_table_1_and_figures_1c_2_3(smoke):
    tab = pd.read_csv(smoke / "results" / "tables" / "gradflow_tab1.csv")
    assert set(tab["variant"]) == {"scratch_dense", "scratch_liu", "scratch_fanin", "set_dense", "set_liu", "set_fanin",
                                   "rigl_dense", "rigl_liu", "rigl_fanin", "baseline", "lottery", "small_dense",
                                   "rigl_inverted"}
    assert (tab["n"] == 1).all() and tab["mean"].between(0, 100).all()
    assert tab.set_index("variant").loc["baseline", "paper"] == 99.21
    md = (smoke / "results" / "tables" / "gradflow_tab1.md").read_text()
    assert "| Method | Original | Liu et al. | Ours |" in md and "/ 62.99" in md and "Lottery (95.00%)" in md
    assert md.index("| Scratch |") < md.index("| SET |") < md.index("| RigL |")  # the paper's row order
    assert_artefacts_built(smoke, figures=IDS[1:])
    sig = pd.read_csv(smoke / "results" / "figures" / "gradflow_fig1c.csv").set_index(["init", "sparsity"])
    assert sig.loc[("dense", 0.9), "mean"] < 0.1 * sig.loc[("fanin", 0.9), "mean"]  # the vanishing signal
    flow = pd.read_csv(smoke / "results" / "figures" / "gradflow_fig2.csv")
    assert set(flow["variant"]) == {"scratch_fanin", "rigl_fanin"} and set(flow["curve"]) == {"gradient_flow"}
    assert sorted(flow["x"].unique()) == list(range(0, 33, 4))
    delta = pd.read_csv(smoke / "results" / "figures" / "gradflow_fig3.csv")
    assert set(delta["curve"]) == {"gradient_flow_delta"} and sorted(delta["x"].unique()) == list(range(5, 33, 5))


def test_smoke_pruned_mask_is_the_pruning_runs_mask_and_the_lottery_starts_from_its_init(smoke, monkeypatch):
    run = smoke / "results" / "runs" / "digits" / "lenet5_demo" / "gradflow" / "seed42"
    final = load_state(run / "dense" / "s00.00" / "prune" / "final.pt")
    mask = Mask.load(str(smoke / "results" / "masks" / "digits" / "lenet5_demo" / "gradflow" / "seed42" / "pruned"
                         / "s95.00.pt"))
    for k, m in mask.items():
        assert torch.equal(m, final[k] != 0), k  # the run's own mask, exactly
        assert int((~m).sum()) == round(0.95 * m.numel())
    monkeypatch.chdir(smoke)  # the specs' paths are relative to the workflow's directory
    cfg = config_with(SMOKE)
    start = {v: initial_weights(plan.retrain_spec(cfg, plan.W(**W, mask=mk, sparsity=sp, variant=v)))
             for v, mk, sp in (("prune", "dense", "00.00"), ("lottery", "pruned", "95.00"))}
    for k, m in mask.items():
        assert torch.equal(start["lottery"][k], start["prune"][k] * m), k


def test_smoke_rerun_is_a_noop_and_a_dst_setting_reruns_only_its_runs(smoke, tmp_path):
    assert "Nothing to be done" in snakemake(smoke, *TARGETS, "-n", "--configfile", SMOKE)
    changed = copy.deepcopy(yaml.safe_load(open(SMOKE)))
    changed["tweaks"]["rigl"] = {"every": 6}
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    jobs = planned(snakemake(smoke, *TARGETS, "-n", "--configfile", str(path)))
    # rigl_dense, rigl_liu, rigl_fanin; rigl_fanin's monitored re-run; Table 1 and the two figures showing it
    assert jobs == {"retrain": 3, "trajectory": 1, "table": 1, "figure": 2}


def test_paper_dry_run_plans_every_run_without_data(tmp_path):
    out = snakemake(tmp_path, "-n", "--configfile", PAPER)
    assert "results/data/digits.npz" not in out  # a paper config builds nothing at demo scale
    jobs = planned(out)
    seeds = 5
    # per seed: the dense run; prune and baseline on it; 9 method x init cells, lottery, small dense and RigL
    # inverted on the pruned mask; one mask; Figure 2's 6 and Figure 3's 3 variants re-run with monitors
    # (set_fanin and rigl_fanin shared); Figure 1c's analysis of one dense run. Section 4.3 (Table 2, Figure 5):
    # 4 variants x 5 replicas on seed 42's mask, their predictions and those of the 5 pruning runs, and the
    # distances / paths of 5 LT and 5 scratch runs (tests/test_gradflow_space_workflow.py)
    assert jobs == {"prepare_data": 1, "dense_gradflow": seeds, "retrain": seeds * (2 + 12) + 4 * 5, "mask": seeds,
                    "trajectory": seeds * 7, "analysis": 1, "analysis_arrays": 20 + 5 + 10, "table": 2, "figure": 4,
                    "claims": 1, "curves": 3, "all": 1}  # curves: gradflow, gradflow_43, gradflow_43_seeds
    assert "results/data/mnist.npz" in out
    assert "results/runs/mnist/lenet5/gradflow/seed2020/dense/s00.00/prune/final.pt" in out
    assert "results/analysis/mnist/lenet5/gradflow/seed7/pruned/s95.00/rigl_inverted/gradflow_monitored.json" in out
