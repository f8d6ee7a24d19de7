"""dlth (DLTH) end to end at smoke scale (the session's smoke run of the whole demo), its caching, and the
paper configuration's dry run with exact job counts."""
import json

import pandas as pd
import pytest

from conftest import REPO, SMOKE, assert_artefacts_built, planned, snakemake

pytestmark = pytest.mark.workflow  # subprocesses: snakemake, training processes, a job server or SLURM

PAPER = str(REPO / "config" / "paper" / "dlth.yaml")
TABLES, FIGURES = ["dlth_tab2", "dlth_tab4", "dlth_tab5"], ["dlth_fig3", "dlth_fig4", "dlth_fig9"]
TARGETS = [f"results/tables/{t}.md" for t in TABLES] + [f"results/figures/{f}.png" for f in FIGURES]
RUNS = "results/runs/digits/resnet20_demo/dlth_demo/seed42"


def test_smoke_dag_builds_every_dlth_artefact(smoke_run):
    assert_artefacts_built(smoke_run, TABLES, FIGURES)
    tab2 = pd.read_csv(smoke_run / "results" / "tables" / "dlth_tab2.csv")
    assert len(tab2) == 8 and tab2["mean"].between(0, 100).all()     # the dense network and the seven methods
    rst = tab2[(tab2["mask"] == "dlth_random") & (tab2["variant"] == "rst")]
    assert rst["paper"].item() == 90.41                                # the paper's CIFAR-10 RST at 90% beside ours
    md = (smoke_run / "results" / "tables" / "dlth_tab2.md").read_text()
    assert "93.50" in md and "LTH Iter-5" in md and "RST Iter-5" in md
    tab4 = (smoke_run / "results" / "tables" / "dlth_tab4.md").read_text()
    assert "| Mean |" in tab4 and "| Std |" in tab4 and "/ 90.29" in tab4  # the paper's mean over cycles at 90%
    fig9 = pd.read_csv(smoke_run / "results" / "figures" / "dlth_fig9.csv")
    assert list(fig9["name"])[-1] == "fc.weight" and len(fig9) == 20   # every conv and the FC layer of ResNet-20
    fig4 = pd.read_csv(smoke_run / "results" / "figures" / "dlth_fig4.csv")
    assert sorted(fig4.groupby("series")["x"].apply(list).tolist()) == [[1, 2, 3, 4, 5]] * 2
    fig3 = pd.read_csv(smoke_run / "results" / "figures" / "dlth_fig3.csv")
    assert set(fig3["variant"]) == {"lth", "rst"} and sorted(set(fig3["x"])) == [1, 2]


def test_rst_runs_transform_then_fine_tune_the_random_ticket(smoke_run):
    t = json.loads((smoke_run / RUNS / "dlth_random/s90.00/rst_iter5_t/summary.json").read_text())
    assert t["tweak_log"]["rst"]["cycles"] == 5 and t["mask_sparsity"] == pytest.approx(0.9, abs=1e-3)
    ft = json.loads((smoke_run / RUNS / "dlth_random/s90.00/rst_iter5/summary.json").read_text())
    assert ft["spec"]["init"]["path"].endswith("dlth_random/s90.00/rst_iter5_t/final.pt")
    assert ft["spec"]["recipe"]["warmup"] == {"epochs": 1, "lr": 0.01}
    assert (smoke_run / ("results/masks/digits/resnet20_demo/dlth_demo/seed42/dlth_lthiter/"
                         "s90.00.cycles/cycle5/final.pt")).exists()


def test_rerun_is_a_noop(smoke_run):
    assert "Nothing to be done" in snakemake(smoke_run, *TARGETS, "-n", "--configfile", SMOKE)


def test_paper_dry_run_plans_the_full_graph_without_data(tmp_path):
    out = snakemake(tmp_path, "-n", "--configfile", PAPER)
    assert "results/data/digits.npz" not in out  # a paper config builds nothing at demo scale
    jobs = planned(out)
    seeds, sparsities = 3, 5
    # per CIFAR dataset, seed and sparsity: L1 fine-tuning, LTH, LTH Iter-5, EB, Scratch, GraSP (one run each),
    # RST, RST Iter-5, RST with 1..4 cycles and RST with GraSP's ratios (transformation + fine-tuning each),
    # and LTH with 1..4 cycles at 70% (Fig. 4)
    cifar = 2 * seeds * (sparsities * (6 + 2 * 7) + 4)
    imagenet = 2 + 2 * 2 + 3 + 2 * 3      # Table 3: LTH, RST at 50/70%; Table 6: GraSP, RST at 70/90/95%
    assert jobs["retrain"] == cifar + imagenet
    assert jobs["mask"] == 2 * seeds * (6 * sparsities + 4) + 2 + 2 + 3 + 3
    assert jobs["dense_dlth"] == 2 * seeds and jobs["dense_dlth_in"] == 1 and jobs["prepare_data"] == 3
    assert jobs["table"] == 5 and jobs["figure"] == 3
    for path in ("results/data/cifar100.npz", "results/data/imagenet_subset.npz",
                 "results/masks/cifar10/resnet56/dlth/seed1099/dlth_lthiter/s98.00.pt",
                 "results/runs/cifar100/resnet56/dlth/seed5469/dlth_random/s95.00/rst_c3_t/final.pt",
                 "results/runs/imagenet_subset/resnet18/dlth_in/seed42/dlth_grasp_ratios/s95.00/rst_in/final.pt"):
        assert path in out, path
