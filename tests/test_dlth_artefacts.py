"""dlth's artefact kinds against hand computations: Mean / Std rows (Table 4), curves from metrics.csv
(Fig. 3), accuracy along series of tickets (Fig. 4 / 5), layer-wise sparsity from mask reports (Fig. 9),
and the paper values against the per-run numbers the paper prints."""
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO
from ticketlab.artefacts import ANALYSIS_ARTEFACTS, ARTEFACTS
from ticketlab.artefacts.curves import epoch_curves
from ticketlab.config import ConfigError, validate

PAPER_VALUES = REPO / "config" / "paper_values"


def tidy_frame(cells, labels=None):
    """cells: (experiment, mask, sparsity, variant, mean, paper) -> the tidy frame table kinds receive."""
    t = pd.DataFrame(cells, columns=["experiment", "mask", "sparsity", "variant", "mean", "paper"])
    t["std"], t["n"] = 0.0, 1
    t["label"] = [(labels or {}).get(v, v) for v in t["variant"]]
    return t


def md_row(path, first):
    line = next(x for x in open(path).read().splitlines() if x.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def grid(tmp_path, spec, tidy):
    out = [str(tmp_path / "t.csv"), str(tmp_path / "t.md")]
    ARTEFACTS["grid_table"]({"metric": "test_acc_best_val", "masks": ["r"], "experiments": ["e"], **spec},
                            tidy, None, out)
    return out[1]


def test_summary_rows_are_the_mean_and_population_std_of_the_rows(tmp_path):
    ours = {"a": [90.0, 80.0], "b": [92.0, 81.0], "c": [97.0, 85.0]}
    paper = {"a": [1.0, 10.0], "b": [2.0, None], "c": [6.0, 30.0]}
    cells = [("e", "r", s, v, ours[v][i], paper[v][i] if paper[v][i] is not None else math.nan)
             for v in ours for i, s in enumerate((0.5, 0.9))]
    md = grid(tmp_path, {"variants": ["a", "b", "c"], "summary_rows": True}, tidy_frame(cells))
    # column 50%: ours 90, 92, 97 -> mean 93, std sqrt((9 + 1 + 16) / 3); the paper 1, 2, 6 -> 3, sqrt(14/3)
    assert md_row(md, "Mean")[2:] == ["93.00 / 3.00", "82.00 / –"]  # the paper lacks a row at 90%: no mean
    assert md_row(md, "Std")[2:] == [f"{math.sqrt(26 / 3):.2f} / {math.sqrt(14 / 3):.2f}",
                                     f"{math.sqrt((4 + 1 + 9) / 3):.2f} / –"]
    plain = grid(tmp_path, {"variants": ["a", "b", "c"]}, tidy_frame(cells))
    assert "| Mean |" not in open(plain).read()


@pytest.mark.parametrize("exp, mean, std", [
    ("dlth_c10", ["93.40", "92.64", "90.29", "88.21", "83.73"], ["0.20", "0.09", "0.16", "0.13", "0.16"]),
    ("dlth_c100", ["71.55", "70.35", "65.70", "61.64", "53.97"], ["0.11", "0.18", "0.09", "0.16", "0.35"])])
def test_table_4s_mean_and_std_rows_follow_from_its_cycle_rows(tmp_path, exp, mean, std):
    p = pd.read_csv(PAPER_VALUES / "dlth_tab4.csv")
    p = p[p["experiment"] == exp]
    cells = [("e", "r", s / 100, v, x, x) for s, v, x in zip(p["sparsity"], p["variant"], p["value"])]
    md = grid(tmp_path, {"variants": ["rst_c1", "rst_c2", "rst_c3", "rst_c4", "rst_iter5"], "summary_rows": True},
              tidy_frame(cells))
    assert [c.split(" / ")[1] for c in md_row(md, "Mean")[2:]] == mean  # the paper's printed Mean row
    assert [c.split(" / ")[1] for c in md_row(md, "Std")[2:]] == std    # and Std row (ddof 0 over the 5 cycles)


def test_epoch_curves_find_the_decays_and_the_best_epoch():
    lr = [0.01, 0.1, 0.1, 0.01, 0.01, 0.001]  # a warm-up epoch (a rise, not a decay), decays after epochs 3, 5
    m = pd.DataFrame({"epoch": range(1, 7), "lr": lr, "val_acc": [10, 50, 70, 70, 60, 65],
                      "test_acc": [11, 51, 69, 72, 61, 64]})
    c = epoch_curves(m, ["test_acc"], "x/metrics.csv")
    assert c["milestones"] == [3, 5] and c["best_val_epoch"] == 3  # ties: the earlier epoch, as the run summary
    assert c["curves"]["test_acc"] == {"x": [1, 2, 3, 4, 5, 6], "y": [11, 51, 69, 72, 61, 64]}
    with pytest.raises(KeyError, match="no column"):
        epoch_curves(m, ["top5"], "x/metrics.csv")


def row(mask, variant, seed=1, s=0.7, e="e"):
    return {"experiment": e, "mask": mask, "seed": seed, "sparsity": s, "exact": s, "variant": variant, "replica": 0,
            "path": f"{mask}/{variant}/{seed}/metrics.csv"}


def test_epoch_lines_average_the_runs_per_epoch(tmp_path):
    out = [str(tmp_path / f"f.{x}") for x in ("png", "pdf", "csv")]
    runs = []
    for seed, shift in ((1, 0.0), (2, 2.0)):
        for mask, v, base in (("l1", "lth", 50.0), ("rnd", "rst", 60.0)):
            runs.append((row(mask, v, seed), pd.DataFrame({"epoch": [1, 2], "lr": [0.1, 0.01], "val_acc": [1, 2],
                                                           "test_acc": [base + shift, base + 10 + shift]})))
    ANALYSIS_ARTEFACTS["epoch_lines"]({"id": "f", "show": ["test_acc"], "variants": ["lth", "rst"]}, runs, None,
                                      {"lth": "LTH", "rst": "RST"}, out)
    t = pd.read_csv(out[2]).set_index(["variant", "x"])
    assert t.loc[("rst", 2), "mean"] == 71.0 and t.loc[("lth", 1), "std"] == pytest.approx(np.std([50, 52], ddof=1))
    assert (tmp_path / "f.png").stat().st_size > 0


def test_series_lines_put_each_ticket_at_its_position(tmp_path):
    cells = [("e", f"it{k}", 0.7, "lth", 80.0 + k, math.nan) for k in (1, 2, 3)]
    cells += [("e", "rnd", s, f"c{k}", 70.0 + k + 10 * s, 90.0 + k if s == 0.7 else math.nan)
              for s in (0.5, 0.7) for k in (1, 2, 3)]
    spec = {"metric": "test_acc_best_val", "series": [
        {"label": "LTH-Iter", "points": [["it1", "lth"], ["it2", "lth"], ["it3", "lth"]]},
        {"label": "RST", "points": [["rnd", "c1"], ["rnd", "c2"], ["rnd", "c3"]]}]}
    out = [str(tmp_path / f"f.{x}") for x in ("png", "pdf", "csv")]
    ARTEFACTS["series_lines"](spec, tidy_frame(cells), None, out)
    t = pd.read_csv(out[2])
    lth = t[t["series"] == "LTH-Iter"]
    assert list(lth["x"]) == [1, 2, 3] and list(lth["mean"]) == [81.0, 82.0, 83.0] and set(lth["sparsity"]) == {0.7}
    rst = t[(t["series"] == "RST") & (t["sparsity"] == 0.7)].sort_values("x")
    assert (list(rst["mask"] + "/" + rst["variant"]) == ["rnd/c1", "rnd/c2", "rnd/c3"]
            and list(rst["paper"]) == [91, 92, 93])
    assert len(t[(t["series"] == "RST") & (t["sparsity"] == 0.5)]) == 3  # RST alone in the 50% panel


def test_layer_sparsity_reads_each_layers_density_in_order(tmp_path):
    def report(densities):
        return {"layers": {f"l{i}.weight": {"density": d} for i, d in enumerate(densities)}}
    results = [(row("grasp", "lth", seed=1, s=0.9), report([0.5, 0.1, 0.75])),
               (row("grasp", "lth", seed=2, s=0.9), report([0.3, 0.1, 0.25])),
               (row("grasp", "lth", seed=1, s=0.5), report([0.5, 0.5, 0.5]))]
    out = [str(tmp_path / f"f.{x}") for x in ("png", "pdf", "csv")]
    ANALYSIS_ARTEFACTS["layer_sparsity"]({"id": "f"}, results, None, {}, out)
    t = pd.read_csv(out[2])
    high = t[t["sparsity"] == 0.9].sort_values("layer")
    assert list(high["name"]) == ["l0.weight", "l1.weight", "l2.weight"]
    assert list(high["mean"]) == pytest.approx([60.0, 90.0, 50.0]) and list(high["n"]) == [2, 2, 2]
    assert high["std"].iloc[2] == pytest.approx(np.std([25.0, 75.0], ddof=1))


# Table 7 (CIFAR-10): runs 1..3 per method and sparsity; the paper's Mean ± Std uses ddof 0
TABLE7 = {("dlth_l1", "l1_ft"): [(93.40, 93.22, 93.36), (93.26, 92.31, 92.93), (91.62, 91.57, 91.82),
                                 (90.19, 90.35, 89.85), (85.15, 84.67, 84.52)],
          ("dlth_l1", "lth"): [(92.99, 92.65, 92.37), (92.34, 91.49, 91.82), (89.30, 89.89, 90.14),
                               (88.41, 87.35, 88.40), (84.11, 84.35, 83.08)],
          ("dlth_random", "scratch"): [(92.47, 92.07, 92.93), (92.50, 92.07, 91.84), (89.97, 89.73, 89.98),
                                       (87.66, 86.97, 87.59), (82.82, 82.17, 83.14)],
          ("dlth_random", "rst"): [(92.43, 92.17, 92.42), (92.26, 91.98, 92.57), (90.39, 90.35, 90.48),
                                   (88.36, 88.21, 88.16), (83.94, 83.13, 84.24)]}


def test_table_2_values_are_the_mean_and_std_of_table_7s_runs():
    p = pd.read_csv(PAPER_VALUES / "dlth_tab2.csv")
    p = p[p["experiment"] == "dlth_c10"].set_index(["mask", "variant", "sparsity"])
    for (mask, v), runs in TABLE7.items():
        for s, r in zip((50.0, 70.0, 90.0, 95.0, 98.0), runs):
            assert p.loc[(mask, v, s), "value"] == pytest.approx(np.mean(r), abs=0.006), (mask, v, s)
            assert p.loc[(mask, v, s), "std"] == pytest.approx(np.std(r), abs=0.006), (mask, v, s)


def test_series_points_must_be_among_the_artefacts_masks_and_variants():
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["artefacts"]["dlth_fig4"]["variants"].remove("rst_c3")  # would silently drop the point otherwise
    with pytest.raises(ConfigError, match=r"artefacts\.dlth_fig4\.series\[1\]: point \[dlth_random, rst_c3\]"):
        validate(cfg)
