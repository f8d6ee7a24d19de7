"""sanity (sanity checks) end to end at smoke scale (the session's smoke run of the whole demo: tests/smoke.yaml
gives the sanity experiments one sparsity, 36%, and two epochs with rewinding to epoch 1), its caching, and the
paper configuration's dry run with exact job counts."""
import json

import pandas as pd
import pytest
import yaml

from conftest import REPO, SMOKE, assert_artefacts_built, planned, snakemake

pytestmark = pytest.mark.workflow  # subprocesses: snakemake, training processes, a job server or SLURM

PAPER = str(REPO / "config" / "paper" / "sanity.yaml")
TABLES, FIGURES = (["sanity_tab_e1", "sanity_tab_jackpot"],
                   ["sanity_fig_a1", "sanity_fig_d", "sanity_fig_f", "sanity_fig_g"])
TARGETS = [f"results/tables/{t}.md" for t in TABLES] + [f"results/figures/{f}.png" for f in FIGURES]
RUNS = "results/runs/digits/sanity_r20_demo/sanity_lr0.1/seed914"


def test_one_artefact_plans_exactly_what_it_needs(tmp_path):
    jobs = planned(snakemake(tmp_path, "results/tables/sanity_tab_jackpot.md", "-n", "--configfile", SMOKE))
    # per learning rate: the dense run, IMP and OMP masks, LT / RR / WR on both, small-dense on IMP
    assert jobs == {"prepare_data": 1, "dense_sanity_lr0.005": 1, "dense_sanity_lr0.01": 1, "dense_sanity_lr0.1": 1,
                    "mask": 3 * 2, "retrain": 3 * 7, "table": 1}
    assert planned(snakemake(tmp_path, "results/tables/sanity_tab_e1.md", "-n", "--configfile", SMOKE)) == {"table": 1}


def test_smoke_dag_builds_every_sanity_artefact(smoke_run):
    assert_artefacts_built(smoke_run, TABLES, FIGURES)
    jackpot = pd.read_csv(smoke_run / "results" / "tables" / "sanity_tab_jackpot.csv")
    assert sorted(zip(jackpot["mask"], jackpot["ticket"])) == [("sanity_imp", "lth"), ("sanity_imp", "sanity_wr"),
                                                               ("sanity_omp", "lth"), ("sanity_omp", "sanity_wr")]
    assert set(jackpot["paper"]) == {"no (resnet20/cifar10)"} and not jackpot["c1"].any()  # 36% is trivial
    assert jackpot[["a_pre", "a_lt", "a_rr", "a_sd"]].stack().between(0, 100).all()
    assert set(jackpot["lr_lt"]) <= {0.005, 0.01, 0.1} and jackpot["a_sd"].nunique() == 1  # one SD per sparsity
    md = (smoke_run / "results" / "tables" / "sanity_tab_jackpot.md").read_text()
    assert "clear gap = at least 1 points" in md and "| ResNet-20 (digits) | OMP | 36.00% | WR |" in md
    e1 = pd.read_csv(smoke_run / "results" / "tables" / "sanity_tab_e1.csv")
    epochs = e1[e1["hyperparameter"] == "epochs"]
    assert epochs["ours"].astype(int).tolist() == [2, 2, 2] and epochs["paper"].astype(int).tolist() == [160] * 3
    assert "| Batch size | 256 ≠ | 64 |" in (smoke_run / "results" / "tables" / "sanity_tab_e1.md").read_text()
    rp = pd.read_csv(smoke_run / "results" / "figures" / "sanity_fig_g.csv")
    assert rp["series"].nunique() == 3 and rp["experiment"].nunique() == 3 and rp["x"].max() == 1.0
    assert (rp.loc[rp["x"] == 1.0, "mean"] == 1.0).all() and rp["mean"].between(0, 1).all()
    fig_f = pd.read_csv(smoke_run / "results" / "figures" / "sanity_fig_f.csv")
    assert set(fig_f["series"]) == {"LT-IMP", "RR-IMP", "LT-OMP", "RR-OMP", "pretrained dense", "small-dense"}
    assert sorted(fig_f["lr"].unique()) == [0.005, 0.01, 0.1]


def test_runs_are_the_papers_variants(smoke_run):
    wr = json.loads((smoke_run / RUNS / "sanity_imp/s36.00/sanity_wr/summary.json").read_text())
    assert wr["epochs"] == 1 and wr["spec"]["start_epoch"] == 1  # T - t = 2 - 1
    assert wr["spec"]["init"]["path"].endswith("dense/rewind_e1.pt")
    sd = json.loads((smoke_run / RUNS / "sanity_imp/s36.00/sanity_sd/summary.json").read_text())
    dense = json.loads((smoke_run / RUNS / "dense/summary.json").read_text())
    assert (sd["spec"]["match_params_of"].endswith("sanity_imp/s36.00.pt")
            and sd["params"]["total"] < dense["params"]["total"])
    mask = json.loads((smoke_run / "results/masks/digits/sanity_r20_demo/sanity_lr0.1/seed914/sanity_omp/s36.00.json")
                      .read_text())
    assert abs(mask["sparsity"] - 0.36) < 1e-4 and "conv1.conv.weight" not in mask["layers"]  # the stem stays dense
    rp = json.loads((smoke_run / "results/analysis/digits/sanity_r20_demo/sanity_lr0.1/seed914/dense/sanity_rp.json")
                    .read_text())
    assert rp["curves"]["r_p"]["y"][-1] == 1.0 and "conv1.conv.weight" not in rp["remaining"]


def test_rerun_is_a_noop_and_changed_settings_rebuild_only_their_tables(smoke_run, tmp_path):
    assert "Nothing to be done" in snakemake(smoke_run, *TARGETS, "-n", "--configfile", SMOKE)
    changed = yaml.safe_load(open(SMOKE))
    changed["artefacts"]["sanity_tab_jackpot"] = {"clear_gap": 2.0}
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    assert planned(snakemake(smoke_run, *TARGETS, "-n", "--configfile", str(path))) == {"table": 1}
    changed["recipes"]["sanity_lr0.1"]["momentum"] = 0.8  # Table E.1 reads no run, but shows the recipe
    path.write_text(yaml.safe_dump(changed))
    assert planned(snakemake(smoke_run, "results/tables/sanity_tab_e1.md", "-n", "--configfile",
                             str(path))) == {"table": 1}


def test_paper_dry_run_plans_the_full_graph_without_data(tmp_path):
    out = snakemake(tmp_path, "-n", "--configfile", PAPER)
    assert "results/data/digits.npz" not in out  # a paper config builds nothing at demo scale
    jobs = planned(out)
    experiments, levels = 25, 14     # 3 LRs of ResNet-20 / CIFAR-10, 2 LRs of 11 other networks/datasets; IMP x 14
    assert jobs["prepare_data"] == 3 and sum(v for k, v in jobs.items() if k.startswith("dense_")) == experiments
    assert (jobs["dense_sanity_cifar_lr0.005"], jobs["dense_sanity_cifar_lr0.1"], jobs["dense_sanity_vgg_lr0.1"],
            jobs["dense_sanity_tin_lr0.01"]) == (1, 8, 2, 2)
    assert jobs["mask"] == experiments * 2 * levels                     # IMP and OMP at every level
    # LT on both mask sets (IMP's is the chain), RR and WR on both, small-dense once per level
    assert jobs["retrain"] == experiments * levels * (2 + 2 + 2 + 1)
    assert jobs["analysis"] == 3 * 3 and jobs["table"] == 2 and jobs["figure"] == 4  # R_p: 3 runs x 3 LRs
    assert jobs["claims"] == 1  # sanity_claims
    assert jobs["curves"] == experiments  # the report's training curves, one figure per experiment
    assert sum(jobs.values()) == 3195 + experiments
    for f in ("cifar10", "cifar100", "tinyimagenet"):
        assert f"results/data/{f}.npz" in out
    assert "results/runs/cifar100/vgg16/sanity_vgg_lr0.01/seed914/sanity_omp/s95.60/sanity_wr/final.pt" in out
    assert ("results/analysis/cifar10/resnet20/sanity_cifar_lr0.005/seed914/sanity_imp/s59.04/sanity_rr/"
            "sanity_rp.json") in out
