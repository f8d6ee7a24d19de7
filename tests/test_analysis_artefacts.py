"""Artefact kinds that show analyses, on synthetic analysis results with hand-computed summaries."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from ticketlab.artefacts import build

VARIANTS = {"lth": {"label": "LTH"}, "swish": {"label": "LTH + Swish"}}


def rows_with(tmp_path, make):
    """2 seeds x 2 sparsities x 2 variants; make(seed, sparsity, variant) -> the analysis JSON."""
    rows = []
    for seed in (1, 2):
        for s in (0.36, 0.7379):
            for v in VARIANTS:
                p = tmp_path / f"{seed}_{s}_{v}.json"
                p.write_text(json.dumps(make(seed, s, v)))
                rows.append({"experiment": "spend", "mask": "imp", "seed": seed, "sparsity": s, "exact": s,
                             "variant": v, "path": str(p)})
    return rows


def outputs(tmp_path, table):
    exts = ("csv", "md") if table else ("png", "pdf", "csv")
    return [str(tmp_path / f"out.{e}") for e in exts]


def test_activation_table_means_and_the_papers_values(tmp_path):
    value = {("lth", 1): 40.0, ("lth", 2): 44.0, ("swish", 1): 0.0, ("swish", 2): 0.5}
    rows = rows_with(tmp_path, lambda seed, s, v: {"stages": {f"layer{i}": value[v, seed] + i for i in (1, 2, 3, 4)},
                                                   "order": ["layer1", "layer2", "layer3", "layer4"]})
    spec = {"kind": "activation_table", "title": "A1", "variants": ["lth", "swish"], "rows_by": "sparsity"}
    out = outputs(tmp_path, True)
    build(spec, VARIANTS, rows, [str(REPO / "config/paper_values/spend_tab_a1.csv")], out, "spend_tab_a1")
    tidy = pd.read_csv(out[0])
    cell = tidy[(tidy["variant"] == "lth") & (tidy["stage"] == "layer1") & (tidy["sparsity"] == 0.36)].iloc[0]
    assert cell["mean"] == pytest.approx(43.0) and cell["std"] == pytest.approx(np.std([41, 45], ddof=1)) and cell["n"] == 2
    assert cell["paper"] == 32.29  # Table A1, 36%, ReLU, layer 1
    md = open(out[1]).read()
    assert "| 36.00% | 43.00 ± 2.83 | 32.29 |" in md and "73.79%" in md


def test_activation_table_by_variant_shows_the_papers_single_sparsity(tmp_path):
    rows = [r for r in rows_with(tmp_path, lambda seed, s, v: {"stages": {"layer1": 1.0 * seed}, "order": ["layer1"]})
            if r["sparsity"] == 0.36]
    spec = {"kind": "activation_table", "variants": ["lth", "swish"], "rows_by": "variant"}
    out = outputs(tmp_path, True)
    build(spec, VARIANTS, rows, [str(REPO / "config/paper_values/tost_tab1.csv")], out, "tost_tab1")
    md = open(out[1]).read()
    assert "91.41%" in md and "| LTH | 1.50 ± 0.71 | 27.14 |" in md


def test_analysis_sparsity_averages_seeds(tmp_path):
    rows = rows_with(tmp_path, lambda seed, s, v: {"top_eigenvalue": seed * 10 + s + (v == "swish")})
    for style in ("lines", "bars"):
        out = outputs(tmp_path, False)
        build({"kind": "analysis_sparsity", "variants": ["lth", "swish"], "show": ["top_eigenvalue"], "style": style},
              VARIANTS, rows, [], out, "spend_fig2")
        tidy = pd.read_csv(out[2])
        r = tidy[(tidy["variant"] == "swish") & (tidy["sparsity"] == 0.7379)].iloc[0]
        assert r["mean"] == pytest.approx(15 + 0.7379 + 1) and r["n"] == 2
        assert all(open(p, "rb").read(8) for p in out[:2])


def test_curve_lines_average_each_point_over_seeds(tmp_path):
    def make(seed, s, v):
        return {"curves": {"test_acc": {"x": [1, 2, 3], "y": [seed, 2 * seed, 3 * seed]},
                           "top_eigenvalue": {"x": [1, 2, 3], "y": [10.0, 5.0, 1.0 * seed]}},
                "milestones": [2], "best_val_epoch": 3}
    rows = [r for r in rows_with(tmp_path, make) if r["sparsity"] == 0.36]
    out = outputs(tmp_path, False)
    build({"kind": "curve_lines", "variants": ["lth", "swish"], "show": ["test_acc", "top_eigenvalue"], "twin": True,
           "log": ["top_eigenvalue"]}, VARIANTS, rows, [], out, "spend_fig_a11")
    tidy = pd.read_csv(out[2])
    acc = tidy[(tidy["variant"] == "lth") & (tidy["curve"] == "test_acc")].sort_values("x")
    assert acc["mean"].tolist() == [1.5, 3.0, 4.5] and acc["n"].tolist() == [2, 2, 2]
    eig = tidy[(tidy["variant"] == "swish") & (tidy["curve"] == "top_eigenvalue") & (tidy["x"] == 3)].iloc[0]
    assert eig["mean"] == 1.5 and eig["std"] == pytest.approx(np.std([1, 2], ddof=1))


def test_landscape_keeps_the_whole_grid_of_every_seed(tmp_path):
    def make(seed, s, v):
        xs, ys = [-1.0, 0.0, 1.0], [-1.0, 1.0]
        return {"dims": 2, "x": xs, "y": ys, "loss": [[seed + x * x + y for x in xs] for y in ys],
                "acc": [[50.0] * 3 for _ in ys]}
    rows = [r for r in rows_with(tmp_path, make) if r["sparsity"] == 0.36]
    for style in ("contour", "surface"):
        out = outputs(tmp_path, False)
        build({"kind": "landscape", "variants": ["lth", "swish"], "style": style, "clamp": 2.5, "title": "t"},
              VARIANTS, rows, [], out, "spend_fig8")
        tidy = pd.read_csv(out[2])
        assert len(tidy) == 2 * 2 * 6  # variants x seeds x grid points
        p = tidy[(tidy["seed"] == 2) & (tidy["x"] == 1.0) & (tidy["y"] == 1.0) & (tidy["variant"] == "lth")].iloc[0]
        assert p["loss"] == 4.0  # the CSV keeps the unclamped value
        assert all(open(q, "rb").read(8) for q in out[:2])
