"""Artefact kinds that show analyses, on synthetic analysis results with hand-computed summaries."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from ticketlab.artefacts import ANALYSIS_ARTEFACTS, ARTEFACTS, build, paper_at, read_paper

VARIANTS = {"lth": {"label": "LTH"}, "swish": {"label": "LTH + Swish"}}
A1 = str(REPO / "config/paper_values/spend_tab_a1.csv")
T1 = str(REPO / "config/paper_values/tost_tab1.csv")


def rows_with(tmp_path, make, sparsities=(0.36, 0.7379)):
    """2 seeds x 2 sparsities x 2 variants; make(seed, sparsity, variant) -> the analysis JSON."""
    rows = []
    for seed in (1, 2):
        for s in sparsities:
            for v in VARIANTS:
                p = tmp_path / f"{seed}_{s}_{v}.json"
                p.write_text(json.dumps(make(seed, s, v)))
                rows.append({"experiment": "spend", "mask": "imp", "seed": seed, "sparsity": s, "exact": s,
                             "variant": v, "path": str(p)})
    return rows


def outputs(tmp_path, table):
    exts = ("csv", "md") if table else ("png", "pdf", "csv")
    return [str(tmp_path / f"out.{e}") for e in exts]


def nonempty(paths):
    return all(open(p, "rb").read(8) for p in paths)


def test_every_kind_is_registered_once_and_routed_to_a_table_a_figure_or_the_claims_rule():
    import yaml

    from ticketlab.plan import artefact_kinds
    TABLE_KINDS, FIGURE_KINDS, CLAIM_KINDS = artefact_kinds("table"), artefact_kinds("figure"), artefact_kinds("claims")
    assert not set(ANALYSIS_ARTEFACTS) & set(ARTEFACTS)  # a kind reads either run summaries or its own files
    assert not TABLE_KINDS & FIGURE_KINDS and not (TABLE_KINDS | FIGURE_KINDS) & CLAIM_KINDS
    assert set(ANALYSIS_ARTEFACTS) | set(ARTEFACTS) == TABLE_KINDS | FIGURE_KINDS | CLAIM_KINDS
    assert CLAIM_KINDS == {"claims"}
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    assert set(
        schema["properties"]["artefacts"]["additionalProperties"]["properties"]["kind"]["enum"]
    ) == TABLE_KINDS | FIGURE_KINDS | CLAIM_KINDS


def test_paper_values_of_the_activation_tables():
    a1, t1 = read_paper([A1]), read_paper([T1])
    assert len(a1) == 6 * 4 * 2 and len(t1) == 3 * 4
    # IMP levels 100 * (1 - 0.8^k), k = 1, 2, 5, 6, 15, 16 (as Table A2 numbers them: 95% = 95.60, 96% = 96.48)
    assert sorted(a1["sparsity"].unique()) == [20.0, 36.0, 67.23, 73.79, 96.48, 97.19]
    assert set(t1["sparsity"]) == {91.41} and set(t1["variant"]) == {"lth", "swish", "mish"}
    row = {"experiment": "spend", "mask": "imp", "sparsity": 0.2, "variant": "lth"}
    assert paper_at(a1, {**row, "stage": "layer1"}) == 28.93
    assert paper_at(a1, {**row, "stage": "layer4", "variant": "swish", "sparsity": 0.9719}) == 0.24
    assert np.isnan(paper_at(a1, {**row, "stage": "layer1", "sparsity": 0.9313}))  # not one of the paper's levels
    assert paper_at(t1, {**row, "stage": "layer3", "variant": "mish", "sparsity": 0.9141}) == 1.03


def test_activation_table_means_and_the_papers_values(tmp_path):
    value = {("lth", 1): 40.0, ("lth", 2): 44.0, ("swish", 1): 0.0, ("swish", 2): 0.5}
    rows = rows_with(tmp_path,
                     lambda seed, s, v: {"stages": {f"layer{i}": value[v, seed] + i + 10 * s for i in (1, 2, 3, 4)},
                                         "order": ["layer1", "layer2", "layer3", "layer4"]},
                     (0.2, 0.36))
    spec = {"kind": "activation_table", "title": "A1", "variants": ["lth", "swish"], "rows_by": "sparsity",
            "analysis": "activations", "analysis_kind": "activations"}
    out = outputs(tmp_path, True)
    build(spec, VARIANTS, rows, [A1], out, "spend_tab_a1")
    tidy = pd.read_csv(out[0])
    assert len(tidy) == 2 * 2 * 4  # sparsity x variant x stage
    cell = tidy[(tidy["variant"] == "lth") & (tidy["stage"] == "layer1") & (tidy["sparsity"] == 0.2)].iloc[0]
    assert (cell["mean"] == pytest.approx(45.0) and cell["std"] == pytest.approx(np.std([43, 47], ddof=1))
            and cell["n"] == 2)
    assert cell["paper"] == 28.93  # Table A1, 20%, ReLU, layer 1
    sw = tidy[(tidy["variant"] == "swish") & (tidy["stage"] == "layer4") & (tidy["sparsity"] == 0.36)].iloc[0]
    assert sw["mean"] == pytest.approx(0.25 + 4 + 3.6) and sw["std"] == pytest.approx(np.std([0, 0.5], ddof=1))
    assert sw["paper"] == 0.16
    md = open(out[1]).read()
    assert "| Sparsity | layer1 LTH (ours) | (paper) | layer1 LTH + Swish (ours) | (paper) | layer2 LTH (ours) |" in md
    assert "| 20.00% | 45.00 ± 2.83 | 28.93 | 3.25 ± 0.35 | 0.33 |" in md
    assert "| 36.00% | 46.60 ± 2.83 | 32.29 |" in md


def test_activation_table_by_variant_shows_the_papers_single_sparsity(tmp_path):
    rows = rows_with(tmp_path, lambda seed, s, v: {"stages": {"layer1": 1.0 * seed, "layer2": 2.0},
                                                   "order": ["layer1", "layer2"]})
    spec = {"kind": "activation_table", "variants": ["lth", "swish"], "rows_by": "variant"}
    out = outputs(tmp_path, True)
    build(spec, VARIANTS, [r for r in rows if r["seed"] == 1 or r["sparsity"] == 0.36], [T1], out, "tost_tab1")
    md = open(out[1]).read()
    assert md.count("the paper's table is at 91.41%") == 2  # one table per sparsity
    assert "| Activation | layer1 (ours) | layer1 (paper) | layer2 (ours) | layer2 (paper) |" in md
    assert "| LTH | 1.50 ± 0.71 | 27.14 | 2.00 ± 0.00 | 39.33 |" in md  # 36%: two seeds
    assert "| LTH + Swish | 1.00 | 0.31 | 2.00 | 0.26 |" in md  # 73.79%: one seed, no std shown
    tidy = pd.read_csv(out[0])
    assert (tidy.loc[tidy["sparsity"] == 0.7379, "n"].eq(1).all()
            and tidy.loc[tidy["sparsity"] == 0.7379, "std"].eq(0).all())


def test_analysis_sparsity_averages_seeds(tmp_path):
    rows = rows_with(tmp_path, lambda seed, s, v: {"top_eigenvalue": seed * 10 + s + (v == "swish"),
                                                   "trace": 3.0 * seed, "density": None})
    for style in ("lines", "bars"):
        out = outputs(tmp_path, False)
        build({"kind": "analysis_sparsity", "variants": ["lth", "swish"], "show": ["top_eigenvalue"], "style": style,
               "analysis": "hessian", "analysis_kind": "hessian", "title": "Figure 2"},
              VARIANTS, rows, [], out, "spend_fig2")
        tidy = pd.read_csv(out[2])
        assert len(tidy) == 4 and set(tidy["field"]) == {"top_eigenvalue"}
        r = tidy[(tidy["variant"] == "swish") & (tidy["sparsity"] == 0.7379)].iloc[0]
        assert r["mean"] == pytest.approx(15 + 0.7379 + 1) and r["std"] == pytest.approx(np.std([10, 20], ddof=1))
        assert r["n"] == 2
        assert nonempty(out)
    out = outputs(tmp_path, False)
    build({"kind": "analysis_sparsity", "variants": ["lth", "swish"], "show": ["trace"]}, VARIANTS, rows, [], out, "x")
    assert pd.read_csv(out[2])["mean"].eq(4.5).all()
    with pytest.raises(KeyError, match="no scalar 'density'"):
        build({"kind": "analysis_sparsity", "show": ["density"]}, VARIANTS, rows, [], out, "x")


def trajectory(seed, s, v):
    return {"curves": {"test_acc": {"x": [1, 2, 3], "y": [seed, 2 * seed, 3 * seed]},
                       "top_eigenvalue": {"x": [1, 2, 3], "y": [10.0, 5.0, 1.0 * seed]},
                       "gradient_flow": {"x": [0, 5, 10, 15], "y": [seed * 1.0, 2.0, 3.0, 4.0 + (v == "swish")]}},
            "milestones": [2], "best_val_epoch": 3, "steps_per_epoch": 6}


def test_curve_lines_average_each_point_over_seeds(tmp_path):
    rows = [r for r in rows_with(tmp_path, trajectory) if r["sparsity"] == 0.36]
    out = outputs(tmp_path, False)
    build({"kind": "curve_lines", "variants": ["lth", "swish"], "show": ["test_acc", "top_eigenvalue"], "twin": True,
           "log": ["top_eigenvalue"], "analysis": "monitored", "analysis_kind": "trajectory"},
          VARIANTS, rows, [], out, "spend_fig_a11")
    tidy = pd.read_csv(out[2])
    assert len(tidy) == 2 * 2 * 3  # variant x curve x epoch
    acc = tidy[(tidy["variant"] == "lth") & (tidy["curve"] == "test_acc")].sort_values("x")
    assert acc["mean"].tolist() == [1.5, 3.0, 4.5] and acc["n"].tolist() == [2, 2, 2]
    assert acc["std"].tolist() == pytest.approx([np.std([1, 2], ddof=1), np.std([2, 4], ddof=1),
                                                 np.std([3, 6], ddof=1)])
    eig = tidy[(tidy["variant"] == "swish") & (tidy["curve"] == "top_eigenvalue") & (tidy["x"] == 3)].iloc[0]
    assert eig["mean"] == 1.5 and eig["std"] == pytest.approx(np.std([1, 2], ddof=1))
    assert nonempty(out)


def test_curve_lines_gradient_flow_perturbation_and_several_sparsities(tmp_path):
    rows = rows_with(tmp_path, trajectory)
    out = outputs(tmp_path, False)
    build({"kind": "curve_lines", "variants": ["lth", "swish"], "show": ["gradient_flow"]},
          VARIANTS, rows, [], out, "tost_fig9")
    tidy = pd.read_csv(out[2])
    assert len(tidy) == 2 * 2 * 4  # sparsity x variant x step
    last = tidy[(tidy["x"] == 15) & (tidy["sparsity"] == 0.7379)].set_index("variant")["mean"]
    assert last["lth"] == 4.0 and last["swish"] == 5.0
    assert nonempty(out)

    def perturbation(seed, s, v):
        d = [-0.5, 0.0, 0.5]
        return {"top_eigenvalue": 10.0 * seed, "curves": {"loss": {"x": d, "y": [1 + seed * x * x for x in d]},
                                                          "acc": {"x": d, "y": [90.0, 95.0, 90.0]}}}
    rows = [r for r in rows_with(tmp_path, perturbation) if r["sparsity"] == 0.36]
    build({"kind": "curve_lines", "variants": ["lth", "swish"], "show": ["loss"], "analysis_kind": "perturbation"},
          VARIANTS, rows, [], out, "tost_fig8")
    tidy = pd.read_csv(out[2])
    assert tidy.set_index(["variant", "x"]).loc[("lth", 0.5), "mean"] == pytest.approx(1 + 1.5 * 0.25)
    with pytest.raises(KeyError, match="no curve 'val_acc'"):
        build({"kind": "curve_lines", "show": ["val_acc"]}, VARIANTS, rows, [], out, "x")


def test_landscape_keeps_the_whole_grid_of_every_seed(tmp_path):
    def make(seed, s, v):
        xs, ys = [-1.0, 0.0, 1.0], [-1.0, 1.0]
        return {"dims": 2, "x": xs, "y": ys, "loss": [[seed + x * x + y for x in xs] for y in ys],
                "acc": [[50.0 + x for x in xs] for _ in ys], "point_seconds": 0.01}
    rows = [r for r in rows_with(tmp_path, make) if r["sparsity"] == 0.36]
    for style in ("contour", "surface"):
        out = outputs(tmp_path, False)
        build({"kind": "landscape", "variants": ["lth", "swish"], "style": style, "clamp": 2.5, "title": "t",
               "analysis": "landscape", "analysis_kind": "landscape"}, VARIANTS, rows, [], out, "spend_fig8")
        tidy = pd.read_csv(out[2])
        assert len(tidy) == 2 * 2 * 6  # variants x seeds x grid points
        p = tidy[(tidy["seed"] == 2) & (tidy["x"] == 1.0) & (tidy["y"] == 1.0) & (tidy["variant"] == "lth")].iloc[0]
        assert p["loss"] == 4.0 and p["acc"] == 51.0  # loss[j][i] is at (x[i], y[j]); the CSV keeps the unclamped value
        q = tidy[(tidy["seed"] == 1) & (tidy["x"] == -1.0) & (tidy["y"] == -1.0) & (tidy["variant"] == "swish")].iloc[0]
        assert q["loss"] == 1.0 and q["acc"] == 49.0
        assert nonempty(out)


def test_landscape_in_one_dimension_and_several_sparsities(tmp_path):
    def make(seed, s, v):
        xs = [-1.0, -0.5, 0.0, 0.5, 1.0]
        return {"dims": 1, "x": xs, "y": None, "loss": [seed + x * x for x in xs], "acc": [90.0] * 5}
    rows = rows_with(tmp_path, make)
    out = outputs(tmp_path, False)
    build({"kind": "landscape", "variants": ["lth", "swish"]}, VARIANTS, rows, [], out, "spend_fig4")
    tidy = pd.read_csv(out[2])
    assert len(tidy) == 2 * 2 * 2 * 5 and tidy["y"].isna().all()
    assert tidy.groupby("seed")["loss"].min().to_dict() == {1: 1.0, 2: 2.0}
    assert nonempty(out)
