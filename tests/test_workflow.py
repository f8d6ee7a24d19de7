"""The Snakemake workflow end to end at smoke scale, its caching, and the paper dry-run."""
import pandas as pd
import pytest
import yaml

from conftest import REPO, SMOKE, assert_artefacts_built, planned, snakemake

pytestmark = pytest.mark.workflow  # subprocesses: snakemake, training processes, a job server or SLURM

DEMO = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
ARTEFACTS = list(DEMO["artefacts"])
CLAIMS = [a for a, s in DEMO["artefacts"].items() if s["kind"] == "claims"]


def test_one_table_plans_exactly_what_it_needs(tmp_path):
    jobs = planned(snakemake(tmp_path, "results/tables/spend_tab_a2.md", "-n", "--configfile", SMOKE))
    # dense run, 4 tweaks on the dense net, 5 variants at 36%, its one IMP mask, the data, the table
    assert jobs == {"prepare_data": 1, "dense_demo": 1, "retrain": 9, "mask": 1, "table": 1}


def test_smoke_dag_builds_every_artefact(smoke_run):
    assert_artefacts_built(smoke_run, [a for a in ARTEFACTS if "_tab" in a or a in CLAIMS],
                           [a for a in ARTEFACTS if "_tab" not in a and a not in CLAIMS])
    tab = pd.read_csv(smoke_run / "results" / "tables" / "spend_tab_a2.csv")
    assert set(tab["variant"]) == {"lth", "skip", "swish", "scaling", "ls"}
    assert (tab["n"] == 1).all() and tab["mean"].between(0, 100).all()
    dense = tab[(tab["sparsity"] == 0) & (tab["variant"] == "lth")]
    assert dense["paper"].item() == 74.87  # the paper's number beside ours
    md = (smoke_run / "results" / "tables" / "spend_tab_a2.md").read_text()
    assert "74.87" in md and "LTH + Skip (paper)" in md
    mask = yaml.safe_load((next((smoke_run / "results" / "masks").rglob("imp/s36.00.json"))).read_text())
    assert abs(mask["sparsity"] - 0.36) < 1e-5


def test_rerun_is_a_noop_and_a_changed_variant_reruns_only_its_jobs(smoke_run, tmp_path):
    assert "Nothing to be done" in snakemake(smoke_run, "-n", "--configfile", SMOKE)
    changed = yaml.safe_load(open(SMOKE))
    changed["variants"]["ls"] = {"params": {"ls": {"alpha": 0.2}}}  # (safe_dump also re-orders keys: no effect)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    jobs = planned(snakemake(smoke_run, "-n", "--configfile", str(path)))
    # the ls variant at 0% and 36%, and the artefacts that show it (spend Table A2, Figure 1; ToST Table 4);
    # its analyses: the Hessian (Fig. A13), the epoch-1 re-run and its landscape (Fig. 4), the final
    # landscape (Fig. 8 and ToST Fig. 10 share it), and those four figures
    # and the claims that read those artefacts: spend's, tost's and every paper's; the training curves of the two
    # experiments with ls runs (spend, tost_r18)
    assert jobs == {"retrain": 2, "table": 2, "figure": 5, "analysis": 3, "trajectory": 1, "claims": 3, "curves": 2,
                    "all": 1}


def test_report_holds_the_artefacts_and_opens_on_the_claims(smoke_run, tmp_path):
    report = tmp_path / "report.html"
    snakemake(smoke_run, "--report", str(report), "--configfile", SMOKE)
    html = report.read_text(errors="replace")
    for a in ARTEFACTS:
        assert a in html, a
    # one category per paper (its prefix and title, from its claims file), subcategories by output
    from ticketlab import claims as claim_files
    for prefix in ("spend", "tost", "sanity", "dlth", "gradflow"):
        assert f"{prefix}: {claim_files.load(prefix)['paper'].split(' (')[0]}" in html, prefix
    for sub in ("Tables", "Figures", "Claims", "Training curves"):
        assert f'"{sub}"' in html, sub
    # captions from the artefact's config entry: title, id and kind, its runs, the paper's values
    assert ("<strong>Table A2: ResNet-18 tweaks on LTH tickets</strong> (artefact <tt class=\\\"docutils literal\\\">"
            "spend_tab_a2</tt>") in html
    assert "The paper&#x27;s values" in html or "The paper's values" in html
    # each experiment's training curves
    for e in ("spend", "tost_r18", "sanity_r20_lr0.1", "dlth", "gradflow"):
        assert f"results/curves/{e}.png" in html, e
    # the first page (the workflow description): the claims table of what is built, rows linked to artefacts
    first = html[html.index("Does it reproduce?"):]
    first = first[:first.index("</script>")]
    claims = pd.read_csv(smoke_run / "results" / "tables" / "claims.csv")
    for r in claims.to_dict("records"):
        assert r["claim"] in first, r["claim"]
    for aid in set(claims["reads"]):
        assert f"showResultInfo('results/tables/{aid}.csv')" in first or \
            f"showResultInfo('results/figures/{aid}.png')" in first, aid


def test_smoke_dag_gives_a_verdict_with_its_numbers_for_every_claim(smoke_run):
    from ticketlab import claims as claim_files
    from ticketlab.artefacts.claims import VERDICTS
    every = pd.read_csv(smoke_run / "results" / "tables" / "claims.csv")
    for prefix in ("spend", "tost", "sanity", "dlth", "gradflow"):
        t = pd.read_csv(smoke_run / "results" / "tables" / f"{prefix}_claims.csv")
        assert sorted(t["claim"]) == sorted(claim_files.load(prefix)["claims"])  # every claim of the file
        assert t["verdict"].isin(VERDICTS).all()
        judged = t[~t["verdict"].isin(["missing", "not decided"])]
        assert judged["diff"].notna().all() or (judged["cells"] > 0).all()  # numbers beside every verdict
        assert t[t["verdict"] == "missing"]["reason"].str.len().gt(0).all()  # and why where there is none
        assert (every[every["paper"] == prefix]["verdict"].tolist() == t["verdict"].tolist())


def test_paper_dry_run_plans_the_full_graph_without_data(tmp_path):
    out = snakemake(tmp_path, "-n", "--configfile", str(REPO / "config" / "paper" / "spend.yaml"))
    assert "results/data/digits.npz" not in out  # a paper config builds nothing at demo scale
    jobs = planned(out)
    seeds, levels = 3, 16
    tweaked_dense = 5                       # skip, swish, mish, scaling, ls on the dense network
    per_level = 14                          # every variant of the spend artefacts, lth included
    omp = 2 * levels                        # lth and at_trt on each OMP mask
    assert jobs["retrain"] == seeds * (tweaked_dense + per_level * levels + omp)
    assert jobs["mask"] == seeds * 2 * levels and jobs["dense_spend"] == seeds
    assert "results/data/cifar100.npz" in out
    # analyses: Hessian of 3 + 3 more variants at 4 levels (Fig. 2, A13), activations of 2 variants at 6
    # levels (Table A1), perturbation of 4 variants (Fig. 10), and one seed's landscapes of 4 variants,
    # final and at epoch 5 (Fig. 8, 4); re-runs: the 4 epoch-5 models, 2 monitored variants (Fig. A11)
    hessian, activations, perturbation, landscapes = 6 * 4 * seeds, 2 * 6 * seeds, 4 * seeds, 2 * 4
    assert jobs["analysis"] == hessian + activations + perturbation + landscapes
    assert jobs["trajectory"] == 4 + 2 * seeds
    assert "results/analysis/cifar100/resnet18/spend/seed42/imp/s91.41/at_trt/monitored.json" in out


def test_critical_sparsity_is_where_the_lines_cross():
    from ticketlab.artefacts.figures import crossing
    rows = [(0.2, "a", 76.0), (0.2, "b", 75.0), (0.5, "a", 75.5), (0.5, "b", 75.2), (0.8, "a", 73.0), (0.8, "b", 74.0)]
    tidy = pd.DataFrame(rows, columns=["sparsity", "variant", "mean"])
    assert crossing(tidy, "a", "b") == 0.8
    assert crossing(tidy, "b", "a") is None  # b is never ahead and then caught


def test_tost_paper_dry_run_plans_every_experiment_without_data(tmp_path):
    out = snakemake(tmp_path, "-n", "--configfile", str(REPO / "config" / "paper" / "tost.yaml"))
    assert "results/data/digits.npz" not in out  # a paper config builds nothing at demo scale
    jobs = planned(out)
    for ds in ("cifar10", "cifar100", "tinyimagenet"):
        assert f"results/data/{ds}.npz" in out
    # 13 experiments x 3 seeds of dense training; every ToST artefact and spend's A4 / Fig. 5
    assert jobs["dense_tost"] == 13 * 3 and jobs["prepare_data"] == 3
    assert jobs["table"] == 6 and jobs["figure"] == 7
    # Table 1: 3 activations x 3 seeds; Fig. 8: perturbation of 2 variants; Fig. 10: 6 landscapes (seed 42);
    # Fig. 2 / 9: lth and tost re-run with monitors
    assert jobs["analysis"] == 3 * 3 + 2 * 3 + 6 and jobs["trajectory"] == 2 * 3
    assert "results/runs/cifar10/resnet32/tost/seed42/synflow/s98.00/tost/final.pt" in out
