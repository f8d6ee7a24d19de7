"""gradflow section 4.3 end to end at smoke scale (Table 2, Figure 5): the runs, their analyses and the two
artefacts, properties the paper's construction guarantees, caching, and the paper configuration's dry run."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, SMOKE, assert_artefacts_built, planned, snakemake
from ticketlab.weights_io import load as load_state

pytestmark = pytest.mark.workflow  # subprocesses: snakemake, training processes, a job server or SLURM

PAPER = str(REPO / "config" / "paper" / "gradflow.yaml")
TARGETS = ["results/tables/gradflow_tab2.md", "results/figures/gradflow_fig5.png"]
RUNS = "results/runs/digits/lenet5_demo/gradflow"
ANALYSIS = "results/analysis/digits/lenet5_demo/gradflow"


@pytest.fixture
def smoke(smoke_run):
    return smoke_run


def test_smoke_builds_table_2_and_figure_5(smoke):
    tab = pd.read_csv(smoke / "results" / "tables" / "gradflow_tab2.csv").set_index(["label", "metric"])
    labels = ["LT", "Scratch", "Scratch (Diff. Init.)", "Prune Restart", "Pruned Soln.", "5 Diff. Pruned"]
    assert list(dict.fromkeys(tab.index.get_level_values(0))) == labels
    assert (tab.xs("test_acc", level=1)["n"] == [2, 2, 2, 2, 1, 2]).all()
    assert tab.loc[("LT", "disagree"), "n"] == 1 and tab.loc[("LT", "disagree_pruned"), "n"] == 2
    assert tab.loc[("5 Diff. Pruned", "disagree_pruned"), "n"] == 1  # seed 1099 against seed 42's solution
    assert tab.loc[("LT", "test_acc"), "paper"] == 98.52 and tab.loc[("5 Diff. Pruned", "ensemble"), "paper"] == 99.07
    md = (smoke / "results" / "tables" / "gradflow_tab2.md").read_text()
    assert "| Pruned Soln. |" in md and "98.53" in md
    fig = pd.read_csv(smoke / "results" / "figures" / "gradflow_fig5.csv")
    d = fig[fig["quantity"] == "d_init"].set_index("variant")
    assert d.loc["basin_lt", "std"] == 0.0  # the replicas share the ticket's initialisation
    assert d.loc["basin_scratch_di", "std"] > 0  # Diff. Init.: each replica its own
    assert d.loc["basin_lt", "paper"] == 13.61
    assert len(fig[fig["quantity"].str.startswith("mds")]) == 2 * 2 * 2 + 1
    assert_artefacts_built(smoke, figures=["gradflow_fig5"])


def test_lottery_ticket_starts_at_the_pruning_runs_init_times_its_mask(smoke, monkeypatch):
    """LT = theta_0 of the pruning run x the mask: rebuilt independently from the pruning run's spec."""
    from ticketlab.analysis.basin import flat_point
    from ticketlab.masks import Mask
    from ticketlab.training import initial_weights
    monkeypatch.chdir(smoke)  # the specs' paths are relative to the workflow's directory
    prune = json.loads((smoke / RUNS / "seed42/dense/s00.00/prune/summary.json").read_text())["spec"]
    theta0 = initial_weights(prune)
    mask = Mask.load("results/masks/digits/lenet5_demo/gradflow/seed42/pruned/s95.00.pt")
    names = [k for k, v in theta0.items() if k.endswith(("weight", "bias"))]
    expect = flat_point({k: theta0[k] * mask[k] if k in mask else theta0[k] for k in names}, mask, names)
    for k in (1, 2):
        with np.load(smoke / ANALYSIS / f"seed42/pruned/s95.00/basin_lt@o{k}/basin_paths.npz") as z:
            assert np.array_equal(z["init"], expect.astype(np.float32))
    # Prune Restart starts from the pruning solution itself: its (masked) final weights
    final = load_state(smoke / RUNS / "seed42/dense/s00.00/prune/final.pt")
    assert all(((final[k] != 0) <= mask[k]).all() for k in mask)  # the solution is exactly on the mask


def test_paths_end_at_the_pruning_solution_and_start_at_the_run(smoke):
    res = json.loads((smoke / ANALYSIS / "seed42/pruned/s95.00/basin_lt@o1/basin_paths.json").read_text())
    pred = json.loads((smoke / ANALYSIS / "seed42/dense/s00.00/prune/basin_predictions.json").read_text())
    assert res["curves"]["init"]["loss"][-1] == res["curves"]["final"]["loss"][-1]  # both end at theta_pruned
    assert res["reference"].endswith("gradflow/seed42/dense/s00.00/prune/final.pt")
    assert res["d_final"] > 0 and pred["examples"] > 0 and 0 <= pred["accuracy"] <= 100


def test_second_invocation_has_nothing_to_do(smoke):
    assert "Nothing to be done" in snakemake(smoke, *TARGETS, "-n", "--configfile", SMOKE)


def test_paper_dry_run_plans_table_2_and_figure_5(tmp_path):
    jobs = planned(snakemake(tmp_path, *TARGETS, "-n", "--configfile", PAPER))
    # dense runs (their init.pt) and pruning runs of 5 seeds; 4 variants x 5 replicas on seed 42's mask;
    # predictions of those 20 and of the 5 pruning runs; distances / paths of 5 LT and 5 scratch runs
    assert jobs == {"prepare_data": 1, "dense_gradflow": 5, "retrain": 5 + 4 * 5, "mask": 1,
                    "analysis_arrays": 20 + 5 + 10, "table": 1, "figure": 1}
