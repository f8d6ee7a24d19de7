"""What every artefact says about the runs behind it: their parameters (non-zero at the end, extras such as
Skip's dense 1x1 conv + BN included) and the numerics they ran in, on hand-made summaries and analysis
results; the dense row of a grid table (tost Table 2's "[No Pruning]")."""
import json
import math

import pandas as pd
import torch

from conftest import REPO
from ticketlab.artefacts import build, extra_tag, numerics_of, params_of, params_tag, read_paper
from ticketlab.training import live_param_counts as param_counts
from ticketlab.masks import Mask
from ticketlab.models.layers import ConvBN
from ticketlab.weights_io import load as load_state

CPU = {"device": "cpu", "precision": "fp32", "channels_last": False, "compile": False}
CUDA = {"device": "cuda", "precision": "bf16", "channels_last": True, "compile": False}
VARIANTS = {"lth": {"label": "LTH"}, "skip": {"label": "LTH + Skip"}, "tost": {"label": "LTH + ToST"}}
# (mask, sparsity, variant) -> non-zero params; skip keeps 300 dense extra weights at every sparsity
PARAMS = {("imp", 0.5, "lth"): 1000, ("imp", 0.9, "lth"): 500, ("imp", 0.5, "skip"): 1300, ("imp", 0.9, "skip"): 800,
          ("imp", 0.5, "tost"): 1000, ("imp", 0.9, "tost"): 500, ("dense", 0.0, "lth"): 2000}


def summaries(tmp_path, cells, experiments=("e",), seeds=(1, 2), numerics=lambda seed: CPU, params=None):
    """Rows of the artefact and a summary.json per run, as training.Run writes them (params, numerics)."""
    rows = []
    for e in experiments:
        for seed in seeds:
            for i, (m, s, v) in enumerate(cells):
                p = tmp_path / f"{e}_{seed}_{m}_{s}_{v}.json"
                acc = 90.0 - 10 * s + seed + i + (e != experiments[0])
                nz = PARAMS[m, s, v] if params is None else params(m, s, v)
                p.write_text(json.dumps({"test_acc_best_val": acc, "numerics": numerics(seed),
                                         "params": {"nonzero": nz, "total": 5000, "masked_kept": None}}))
                rows.append({"experiment": e, "mask": m, "seed": seed, "sparsity": s, "exact": s, "variant": v,
                             "path": str(p)})
    return rows


def out(tmp_path, table=True):
    return [str(tmp_path / f"t.{x}") for x in (("csv", "md") if table else ("png", "pdf", "csv"))]


def md_row(path, first):
    line = next(x for x in open(path).read().splitlines() if x.startswith(f"| {first}"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_sparsity_table_shows_the_params_of_variants_with_extras_and_the_numerics(tmp_path):
    cells = [("imp", s, v) for s in (0.5, 0.9) for v in ("lth", "skip")]
    o = out(tmp_path)
    build({"kind": "sparsity_table", "metric": "test_acc_best_val", "variants": ["lth", "skip"], "baseline": "lth"},
          VARIANTS, summaries(tmp_path, cells), [], o, "t")
    tidy = pd.read_csv(o[0]).set_index(["sparsity", "variant"])
    assert tidy.loc[(0.9, "skip"), "params"] == 800 and tidy.loc[(0.9, "lth"), "params"] == 500
    assert set(tidy["numerics"]) == {"cpu fp32"}
    md = open(o[1]).read()
    assert "Numerics: cpu fp32" in md and "Params: non-zero trainable parameters" in md
    row = md_row(o[1], "90.00%")
    assert row[1] == "84.50 ± 0.71" and row[3].endswith("[800 params vs 500]")  # LTH untagged, Skip tagged
    assert md_row(o[1], "50.00%")[3].endswith("[1.3k params vs 1.0k]")


def test_mixed_numerics_and_summaries_without_the_keys_are_said(tmp_path):
    cells = [("imp", 0.5, "lth"), ("imp", 0.5, "skip")]
    o = out(tmp_path)
    build({"kind": "sparsity_table", "metric": "test_acc_best_val", "variants": ["lth", "skip"]},
          VARIANTS, summaries(tmp_path, cells, numerics=lambda seed: CPU if seed == 1 else CUDA), [], o, "t")
    assert set(pd.read_csv(o[0])["numerics"]) == {"cpu fp32 + cuda bf16 channels_last"}
    assert "Numerics: cpu fp32 + cuda bf16 channels_last" in open(o[1]).read()
    # summaries from before the keys: params an int (the total, zeros included), no numerics
    rows = summaries(tmp_path, cells)
    for r in rows:
        s = json.loads(open(r["path"]).read())
        s.pop("numerics")
        s["params"] = 5000
        open(r["path"], "w").write(json.dumps(s))
    build({"kind": "sparsity_table", "metric": "test_acc_best_val", "variants": ["lth", "skip"]},
          VARIANTS, rows, [], o, "t")
    tidy = pd.read_csv(o[0])
    assert tidy["params"].isna().all() and set(tidy["numerics"]) == {"unknown"}
    assert "Numerics: unknown" in open(o[1]).read() and "Params: not recorded" in open(o[1]).read()
    assert md_row(o[1], "50.00%")[3] == "87.50 ± 0.71"  # no tag without counts
    # cells that mix numerics: the line says how many rows each
    rows = summaries(tmp_path, cells, numerics=lambda seed: CPU)
    s = json.loads(open(rows[0]["path"]).read())
    open(rows[0]["path"], "w").write(json.dumps({**s, "numerics": CUDA}))
    rows = [r for r in rows if r["seed"] == 1]
    build({"kind": "sparsity_table", "metric": "test_acc_best_val", "variants": ["lth", "skip"]},
          VARIANTS, rows, [], o, "t")
    assert "Numerics: MIXED — cpu fp32 (1 of 2 rows); cuda bf16 channels_last (1 of 2 rows);" in open(o[1]).read()


def test_tags_and_labels_by_hand():
    assert params_tag(1300.0, 1000.0) == " [1.3k params vs 1.0k]" and params_tag(1000.5, 1000.0) == ""
    assert params_tag(math.nan, 1000.0) == "" and params_tag(1.53e6, 335e3) == " [1.53M params vs 335.0k]"
    assert params_tag(1010.0, 1000.0) == " [1,010 params vs 1,000]"  # equal when rounded: exact counts
    assert extra_tag(pd.DataFrame({"params": [1300.0, 800.0], "params_plain": [1000.0, 500.0]})) == " (+300 params)"
    assert extra_tag(pd.DataFrame({"params": [1000.0], "params_plain": [1000.0]})) == ""
    assert (params_of({"params": {"nonzero": 7, "total": 9, "masked_kept": 5}}) == 7
            and math.isnan(params_of({"params": 9})))
    assert numerics_of({"numerics": CPU}) == "cpu fp32"
    assert numerics_of({"numerics": {"trained": CUDA,
                                     "analysed": {**CUDA, "precision": "fp32", "channels_last": False}}}) \
        == "trained cuda bf16 channels_last, analysed cuda fp32"
    assert numerics_of({"numerics": {"trained": CPU, "analysed": CPU}}) == "cpu fp32" and numerics_of({}) == "unknown"


def test_grid_table_dense_row_is_the_unpruned_run_in_each_sparsity_column(tmp_path):
    cells = [("dense", 0.0, "lth")] + [("imp", s, v) for s in (0.5, 0.9) for v in ("lth", "tost")]
    rows = summaries(tmp_path, cells, experiments=("r32", "r50"))
    o = out(tmp_path)
    spec = {"kind": "grid_table", "metric": "test_acc_best_val", "experiments": ["r32", "r50"],
            "masks": ["dense", "imp"], "variants": ["lth", "tost"], "summary_rows": True,
            "rows": [["dense", "lth"], ["imp", "lth"], ["imp", "tost"]],
            "mask_labels": {"dense": "No Pruning", "imp": "LTH"},
            "paper_experiments": {"r32": "tost_r32_c10", "r50": "tost_r50_c10"}}
    build(spec, VARIANTS, rows, [str(REPO / "config/paper_values/tost_tab2.csv")], o, "tost_tab2")
    md = open(o[1]).read()
    assert "| Mask | Training | r32 50% | r32 90% | r50 50% | r50 90% |" in md  # no 0% column for the dense row
    dense = md_row(o[1], "No Pruning")
    # the dense run (seed means 91.5; r50: 92.5) and the paper's [No Pruning] value, in each sparsity column
    assert dense[1] == "" and dense[2:] == ["91.50 ± 0.71 / 94.80"] * 2 + ["92.50 ± 0.71 / 94.90"] * 2
    assert md_row(o[1], "Mean")[2] == f"{(87.5 + 88.5) / 2:.2f} / –"  # the methods only, not the dense row
    tidy = pd.read_csv(o[0])
    assert tidy.loc[tidy["mask"] == "dense", "params"].tolist() == [2000, 2000]


def test_tost_tab2_paper_values_have_the_no_pruning_rows():
    p = read_paper([str(REPO / "config/paper_values/tost_tab2.csv")])
    dense = p[p["mask"] == "dense"].set_index("experiment")
    assert dense["value"].to_dict() == {"tost_r32_c10": 94.80, "tost_r32_c100": 74.64, "tost_r50_c10": 94.90,
                                        "tost_r50_c100": 74.91}
    assert set(dense["sparsity"]) == {0.0} and set(dense["variant"]) == {"lth"}


def analysis_rows(tmp_path, make):
    rows = []
    for seed in (1, 2):
        for v in ("lth", "skip"):
            p = tmp_path / f"a{seed}{v}.json"
            p.write_text(json.dumps(make(seed, v)))
            rows.append({"experiment": "spend", "mask": "imp", "seed": seed, "sparsity": 0.9, "exact": 0.9,
                         "variant": v, "path": str(p)})
    return rows


def analysed(v, **more):
    return {"params": {"nonzero": PARAMS["imp", 0.9, v], "total": 5000, "masked_kept": 450},
            "numerics": {"trained": CUDA, "analysed": {**CPU, "device": "cuda"}}, **more}


def test_analysis_artefacts_read_params_and_numerics_from_the_analysis_json(tmp_path):
    rows = analysis_rows(tmp_path, lambda seed, v: analysed(v, stages={"layer1": 1.0 * seed}, order=["layer1"],
                                                             threshold=0.01))
    o = out(tmp_path)
    build({"kind": "activation_table", "variants": ["lth", "skip"], "rows_by": "variant"}, VARIANTS, rows, [], o, "a")
    tidy = pd.read_csv(o[0]).set_index("variant")
    assert tidy.loc["skip", "params"] == 800 and tidy.loc["skip", "threshold"] == 0.01
    assert tidy.loc["lth", "numerics"] == "trained cuda bf16 channels_last, analysed cuda fp32"
    md = open(o[1]).read()
    assert ("Zero activations: |a| <= 0.01" in md
            and "Numerics: trained cuda bf16 channels_last, analysed cuda fp32" in md)
    assert md_row(o[1], "LTH + Skip")[0] == "LTH + Skip [800 params vs 500]"
    # results from before the setting: exact zeros
    rows = analysis_rows(tmp_path, lambda seed, v: {"stages": {"layer1": 0.0}, "order": ["layer1"]})
    build({"kind": "activation_table", "variants": ["lth", "skip"], "rows_by": "variant"}, VARIANTS, rows, [], o, "a")
    assert "Zero activations: exactly zero (a == 0)" in open(o[1]).read()
    assert set(pd.read_csv(o[0])["threshold"]) == {0.0}

    rows = analysis_rows(tmp_path, lambda seed, v: analysed(v, top_eigenvalue=1.0 * seed))
    o = out(tmp_path, table=False)
    build({"kind": "analysis_sparsity", "variants": ["lth", "skip"], "show": ["top_eigenvalue"]},
          VARIANTS, rows, [], o, "f")
    tidy = pd.read_csv(o[2]).set_index("variant")
    assert tidy.loc["skip", "params"] == 800 and tidy.loc["skip", "params_plain"] == 500
    assert tidy.loc["lth", "numerics"] == "trained cuda bf16 channels_last, analysed cuda fp32"


def test_figures_from_summaries_carry_params_and_numerics(tmp_path):
    cells = [("imp", s, v) for s in (0.5, 0.9) for v in ("lth", "skip")]
    o = out(tmp_path, table=False)
    build({"kind": "sparsity_lines", "metric": "test_acc_best_val", "variants": ["lth", "skip"], "experiments": ["e"],
           "masks": ["imp"]}, VARIANTS, summaries(tmp_path, cells), [], o, "f")
    tidy = pd.read_csv(o[2])
    assert ((tidy["params"] - tidy["params_plain"]).tolist() == [0, 300, 0, 300]
            and set(tidy["numerics"]) == {"cpu fp32"})


def test_epoch_lines_read_the_summary_beside_each_metrics_csv(tmp_path):
    rows = []
    for v in ("lth", "skip"):
        d = tmp_path / v
        d.mkdir()
        pd.DataFrame({"epoch": [1, 2], "lr": [0.1, 0.01], "val_acc": [1, 2],
                      "test_acc": [50, 60]}).to_csv(d / "metrics.csv")
        (d / "summary.json").write_text(json.dumps({"params": {"nonzero": PARAMS["imp", 0.9, v]}, "numerics": CUDA}))
        rows.append({"experiment": "e", "mask": "imp", "seed": 1, "sparsity": 0.9, "exact": 0.9, "variant": v,
                     "path": str(d / "metrics.csv")})
    o = out(tmp_path, table=False)
    build({"kind": "epoch_lines", "variants": ["lth", "skip"], "show": ["test_acc"]}, VARIANTS, rows, [], o, "f")
    tidy = pd.read_csv(o[2])
    assert (set(tidy.loc[tidy["variant"] == "skip", "params"]) == {800}
            and set(tidy["numerics"]) == {"cuda bf16 channels_last"})


def test_param_counts_are_the_non_zero_trainable_weights_of_the_model_analysed():
    torch.manual_seed(0)
    m = ConvBN(2, 3, 3, extra_skip=True)  # conv 54 (masked), bn 3 + 3, extra 1x1 conv 6 (1e-4), its bn 3 + 3
    keep = torch.zeros(54, dtype=torch.bool)
    keep[:20] = True
    mask = Mask({"conv.weight": keep.view(3, 2, 3, 3)})
    mask.apply_(m)
    # non-zero: 20 kept conv weights, the BN weights (1; their biases start at 0) and the dense extra 1x1 conv
    assert param_counts(m, mask) == {"nonzero": 20 + 3 + 6 + 3, "total": 72, "masked_kept": 20}
    m.skip_gate = 0.0  # a ghost skip after its removal: not computed, not counted
    assert param_counts(m, Mask()) == {"nonzero": 20 + 3, "total": 60, "masked_kept": None}


def test_the_analysis_job_writes_params_numerics_and_threshold(tmp_path, digits_npz):
    """jobs.analyse on a trained Skip ticket: params counted on the analysed model (the 1x1 extras included),
    the run's numerics from its summary.json and the job's own (fp32), the activation threshold used."""
    from conftest import tiny_spec
    from ticketlab.jobs import analyse
    from ticketlab.masks import magnitude_prune, prunable
    from ticketlab.training import Run, run
    probe = Run(tiny_spec(digits_npz), str(tmp_path / "probe"))
    mask = magnitude_prune({k: p.detach() for k, p in prunable(probe.model).items()}, 0.8)
    mask.save(str(tmp_path / "m.pt"))
    spec = tiny_spec(digits_npz, mask=str(tmp_path / "m.pt"), tweaks={"skip": {}})
    spec["recipe"] = {**spec["recipe"], "epochs": 1}
    summary = run(spec, str(tmp_path / "r"))
    settings = {"kind": "activations", "split": "test", "batch_size": 1000, "threshold": 0.01}
    res = analyse({"run": spec, "analysis": settings, "weights": str(tmp_path / "r" / "final.pt"), "epochs": 1},
                  str(tmp_path / "a.json"))
    assert json.loads((tmp_path / "a.json").read_text())["params"] == res["params"]
    state = load_state(tmp_path / "r" / "final.pt")
    trained = [k for k in state if k.endswith((".weight", ".bias")) and "running" not in k]
    extras = sum(int((state[k] != 0).sum()) for k in trained if "skip_" in k)
    assert extras > 0 and res["params"]["nonzero"] == sum(int((state[k] != 0).sum()) for k in trained)
    assert res["params"]["masked_kept"] == mask.kept and res["params"]["total"] > mask.total
    assert res["numerics"] == {"trained": summary["numerics"],
                               "analysed": {"device": "cpu", "precision": "fp32", "channels_last": False,
                                            "compile": False, "tf32": False}}
    assert res["threshold"] == 0.01 and numerics_of(res) == "cpu fp32"


def test_a_tweaked_row_without_its_masks_lth_run_is_compared_with_lth_on_another_mask(tmp_path):
    # spend Table A4: Random / GraSP rows train plain (LTH), the IMP row only LTH + AT (dense extras)
    nz = {("random", 0.9, "lth"): 505, ("grasp", 0.9, "lth"): 500, ("imp", 0.9, "skip"): 800}
    rows = summaries(tmp_path, list(nz), params=lambda m, s, v: nz[m, s, v])
    o = out(tmp_path)
    build({"kind": "grid_table", "metric": "test_acc_best_val", "experiments": ["e"],
           "masks": ["random", "grasp", "imp"],
           "variants": ["lth", "skip"], "rows": [["random", "lth"], ["grasp", "lth"], ["imp", "skip"]]},
          VARIANTS, rows, [], o, "spend_tab_a4")
    assert md_row(o[1], "imp")[2].endswith("[800 params vs 500] / –")  # the fewest LTH run at 90%
    assert "params vs" not in md_row(o[1], "random")[2] + md_row(o[1], "grasp")[2]  # each its own mask's LTH
