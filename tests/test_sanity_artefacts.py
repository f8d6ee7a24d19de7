"""sanity: the jackpot conditions on a hand-made tidy table, Table E.1 generated from the demo and paper
configurations, and weight rewinding (WR) as the config plans it: T - t epochs at the LRs of epochs t+1..T."""
import copy
import math

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, tiny_spec
from ticketlab import plan
from ticketlab.artefacts import read_paper
from ticketlab.artefacts.jackpot import _all, jackpot, paper_verdicts
from ticketlab.artefacts.sanity import e1_table
from ticketlab.config import validate
from ticketlab.masks import covered, magnitude_prune
from ticketlab.training import Run, lr_at

PAPER = REPO / "config" / "paper" / "sanity.yaml"  # the demo is config/config.yaml itself


def merged(*fragments) -> dict:
    """config/config.yaml with the fragments applied over it as Snakemake's --configfile does (nested
    mappings merged, everything else replaced), checked."""
    def update(base, over):
        for k, v in over.items():
            base[k] = update(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        return base
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for f in fragments:
        cfg = update(cfg, yaml.safe_load(f.read_text()))
    return validate(cfg)


# ---------------------------------------------------------------------------------------------- jackpot

SETUP = {"experiments": {"e01": {"dataset": "d", "model": "m", "recipe": "r01"},
                         "e1": {"dataset": "d", "model": "m", "recipe": "r1"}},
         "recipes": {"r01": {"lr": 0.01, "epochs": 10}, "r1": {"lr": 0.1, "epochs": 10}},
         "variants": {"lth": {"init": "lth"}, "wr": {"init": "rewind", "rewind_epoch": 1, "continue_schedule": True},
                      "long": {"init": "lth", "recipe": {"epochs": 20}}, "rr": {"init": "rr"},
                      "sd": {"init": "lth", "small_dense": True}}}
SPEC = {"kind": "jackpot_table", "experiments": ["e01", "e1"], "variants": ["lth", "wr", "long", "rr", "sd"],
        "setup": SETUP, "similar": 0.5, "clear_gap": 1.0, "nontrivial_sparsity": 0.5}

# (mask, sparsity, variant): accuracy at LR 0.01, at LR 0.1 (mean over seeds)
CELLS = {("dense", 0.0, "lth"): (90.0, 92.0),
         ("imp", 0.59, "lth"): (91.8, 90.0), ("imp", 0.59, "wr"): (91.0, 92.5), ("imp", 0.59, "long"): (95.0, 95.0),
         ("imp", 0.59, "rr"): (89.0, 90.5), ("imp", 0.59, "sd"): (90.0, 90.6),
         ("imp", 0.36, "lth"): (91.0, 91.5), ("imp", 0.36, "rr"): (91.0, 91.2),
         ("omp", 0.59, "lth"): (90.0, 89.0), ("omp", 0.59, "rr"): (89.5, 88.0)}


def hand_tidy() -> pd.DataFrame:
    rows = [{"experiment": e, "mask": m, "sparsity": s, "variant": v, "mean": acc[i], "std": 0.1, "n": 2,
             "exact_sparsity": s, "label": v} for (m, s, v), acc in CELLS.items() for i, e in enumerate(["e01", "e1"])]
    return pd.DataFrame(rows)


def test_jackpot_conditions_by_hand():
    t = jackpot(SPEC, hand_tidy()).set_index(["mask", "sparsity", "ticket"])
    lt = t.loc[("imp", 0.59, "lth")]
    # A's: best over the two LRs
    assert (lt["a_pre"], lt["lr_pre"], lt["a_lt"], lt["lr_lt"]) == (92.0, 0.1, 91.8, 0.01)
    assert (lt["a_rr"], lt["a_sd"]) == (90.5, 90.6)
    # 1: 59% >= 50%; 2: 91.8 - 90.6 = 1.2 >= 1; 3: 91.8 - 90.5 = 1.3 >= 1; 4: at 0.01, 91.8 vs 90.0;
    # 5: 91.8 vs the best dense 92.0: within 0.5
    assert [lt[c] for c in ("c1", "c2", "c3", "c4", "c5", "appendix_c", "jackpot")] == [True] * 7
    wr = t.loc[("imp", 0.59, "wr")]  # trains 9 <= 10 epochs; 92.5 at 0.1
    assert wr["a_lt"] == 92.5 and wr["jackpot"]
    long = t.loc[("imp", 0.59, "long")]  # the best accuracy, but 20 epochs > T = 10: condition 1 fails
    assert not long["c1"] and long["c2"] and long["c3"] and long["c5"] and not long["jackpot"]
    low = t.loc[("imp", 0.36, "lth")]  # trivial sparsity; RR within 0.3 points; no small-dense run at 36%
    assert not low["c1"] and not low["c3"] and low["c2"] is None and math.isnan(low["a_sd"])
    assert low["jackpot"] is not None and not low["jackpot"] and not low["appendix_c"]  # a failure outweighs "unknown"
    omp = t.loc[("omp", 0.59, "lth")]  # SD from the IMP mask set at the same sparsity (same parameter count)
    assert omp["a_sd"] == 90.6 and not omp["c2"] and omp["c4"] and not omp["c5"] and not omp["jackpot"]
    assert ("imp", 0.59, "rr") not in t.index and ("imp", 0.59, "sd") not in t.index  # roles, not tickets
    assert _all([True, None]) is None and _all([True, None, False]) is False and _all([True, True]) is True


def test_tolerances_are_settings():
    strict = {**SPEC, "similar": 0.1, "clear_gap": 1.25}
    lt = jackpot(strict, hand_tidy()).set_index(["mask", "sparsity", "ticket"]).loc[("imp", 0.59, "lth")]
    assert not lt["c2"] and lt["c3"] and not lt["c5"] and not lt["jackpot"]  # 1.2 < 1.25; 91.8 < 92.0 - 0.1


def test_jackpot_rows_carry_each_as_params_and_the_numerics(tmp_path):
    tidy = hand_tidy()
    # params: the dense network 4000, tickets 1000, the small-dense network matched to 1010 (RR: the ticket's mask)
    tidy["params"] = [4000.0 if m == "dense" else 1010.0 if v == "sd" else 1000.0
                      for m, v in zip(tidy["mask"], tidy["variant"])]
    tidy["numerics"] = ["cuda bf16" if e == "e1" else "cpu fp32" for e in tidy["experiment"]]
    lt = jackpot(SPEC, tidy).set_index(["mask", "sparsity", "ticket"]).loc[("imp", 0.59, "lth")]
    assert (lt["params_pre"], lt["params_lt"], lt["params_rr"], lt["params_sd"]) == (4000, 1000, 1000, 1010)
    assert lt["numerics"] == "cpu fp32 + cuda bf16"  # A_LT at LR 0.01, A_PRE at 0.1: both experiments' runs
    from ticketlab.artefacts import ARTEFACTS
    out = [str(tmp_path / "j.csv"), str(tmp_path / "j.md")]
    ARTEFACTS["jackpot_table"]({**SPEC, "metric": "test_acc_best_val"}, tidy, pd.DataFrame(), out)
    md = open(out[1]).read()
    assert "91.80 (0.01) |" in md and "90.60 (0.1) [1,010 params vs 1,000] |" in md  # SD 1% off the ticket: shown
    assert "Numerics: cpu fp32 + cuda bf16" in md and {"params_sd", "numerics"} <= set(pd.read_csv(out[0]))


def test_paper_verdicts_per_group():
    paper = pd.DataFrame({"experiment": ["m/d", "x/y"], "variant": ["jackpot", "jackpot"], "value": [0.5, 0.0],
                          "sparsity": [float("nan")] * 2})
    assert paper_verdicts(SPEC, paper, {"m/d": ["e01", "e1"]}) == {"m/d": "at the boundary (m/d)"}
    assert paper_verdicts({**SPEC, "paper_experiments": {"e01": "x/y"}}, paper,
                          {"m/d": ["e01", "e1"]}) == {"m/d": "no (x/y)"}


def test_demo_and_paper_verdict_files_name_every_paper_group():
    paper = read_paper([str(REPO / "config" / "paper_values" / "sanity_tab_jackpot.csv")])
    assert dict(zip(paper["experiment"], paper["value"])) == {
        "resnet20/cifar10": 0, "resnet20/cifar100": 0, "vgg16/cifar10": 0, "vgg16/cifar100": 0,
        "mobilenet/cifar10": 0.5, "resnet18/cifar100": 0.5}
    cfg = merged(PAPER)
    shown = [cfg["experiments"][x] for x in cfg["artefacts"]["sanity_tab_jackpot"]["experiments"]]
    groups = {f"{e['model']}/{e['dataset']}" for e in shown}
    assert set(paper["experiment"]) <= groups


# ------------------------------------------------------------------------------------------- Table E.1

def e1(cfg) -> pd.DataFrame:
    job = plan.artefact_job(cfg, "sanity_tab_e1")
    assert job["rows"] == [] and plan.artefact_runs(cfg, "sanity_tab_e1") == []  # reads no runs
    return e1_table(job["spec"], read_paper(plan.paper_values(cfg, "sanity_tab_e1"))).set_index(
        ["experiment", "hyperparameter"])


def test_table_e1_from_the_demo_config():
    t = e1(merged())
    row = t.loc["sanity_r20_lr0.01"]
    ours = {k: row.loc[k, "ours"] for k in row.index}
    assert ours == {"epochs": 8, "batch_size": 64, "scheduler": "step", "decay_epochs": "4-6", "decay_factor": 10.0,
                    "momentum": 0.9, "l2": 5e-4, "warmup_epochs": 0, "lr": 0.01, "rewind_epoch": 1, "imp_rate": 0.36,
                    "imp_iterations": 3}   # 73.79% = level 3 at 36% per level
    same = {k for k in row.index if row.loc[k, "match"] is True}
    assert same == {"batch_size", "scheduler", "decay_factor", "momentum", "l2", "warmup_epochs"}  # the rest is scaled
    assert row.loc["lr", "match"] is None and row.loc["epochs", "paper"] == "160"


def test_table_e1_from_the_paper_config_matches_the_paper_everywhere():
    t = e1(merged(PAPER))
    settings = t[t.index.get_level_values("hyperparameter") != "lr"]
    assert settings["match"].tolist() == [True] * len(settings), settings[settings["match"] != True]  # noqa: E712
    assert t.loc[("sanity_vgg_c10_lr0.1", "warmup_epochs"), "ours"] == 75
    assert t.loc[("sanity_vgg_c10_lr0.1", "warmup_epochs"), "ours_text"] == "75 (linear from lr 0.001)"
    assert t.loc[("sanity_r18_tin_lr0.01", "batch_size"), "ours"] == 32
    assert t.loc[("sanity_r20_c10_lr0.1", "imp_iterations"), "ours"] == 14


def test_table_e1_job_changes_with_the_recipe():
    cfg = merged()
    before = plan.artefact_job(cfg, "sanity_tab_e1")
    changed = copy.deepcopy(cfg)
    changed["recipes"]["sanity_lr0.1"]["momentum"] = 0.8
    after = plan.artefact_job(changed, "sanity_tab_e1")
    assert before != after and after["spec"]["setup"]["recipes"]["sanity_lr0.1"]["momentum"] == 0.8


# ---------------------------------------------------------------------------------------- rewinding

def test_weight_rewinding_trains_T_minus_t_epochs_at_the_learning_rates_of_epochs_t_plus_1_to_T(tmp_path, digits_npz):
    cfg = merged()
    cfg["recipes"]["sanity_lr0.1"].update(epochs=4, milestones=[2, 3])   # T = 4, t = 1 (the demo's)
    w = plan.W(dataset="digits", model="sanity_r20_demo", recipe="sanity_lr0.1", seed="914", mask="sanity_imp",
               sparsity="36.00", variant="sanity_wr")
    spec = plan.retrain_spec(cfg, w)
    assert spec["start_epoch"] == 1 and spec["init"]["path"].endswith("seed914/dense/rewind_e1.pt")
    # stand-ins for the dense run's epoch-1 weights and the mask, for a quarter-width network
    model = {"arch": "resnet20", "width": 0.25}
    probe = Run(tiny_spec(digits_npz, model=model), str(tmp_path / "probe"))
    torch.save(probe.model.state_dict(), tmp_path / "rewind_e1.pt")
    magnitude_prune({k: p.detach() for k, p in covered(probe.model, "conv", ["first"]).items()},
                    0.36).save(str(tmp_path / "m.pt"))
    spec = {**spec, "data": digits_npz, "model": model, "mask": str(tmp_path / "m.pt"), "device": "cpu",
            "init": {**spec["init"], "path": str(tmp_path / "rewind_e1.pt")}}
    r = Run(spec, str(tmp_path / "wr"))
    summary = r.run()
    steps = r.steps_per_epoch
    assert [row["epoch"] for row in r.rows] == [2, 3, 4] and summary["epochs"] == 3
    recipe = spec["recipe"]
    assert [row["lr"] for row in r.rows] == [lr_at(recipe, e, e * steps, steps, 4 * steps) for e in (1, 2, 3)]
    assert [row["lr"] for row in r.rows] == pytest.approx([0.1, 0.01, 0.001])
    assert r.ctx.step == 4 * steps - 1  # the last optimisation step of epoch T: 3 epochs of steps after epoch t
