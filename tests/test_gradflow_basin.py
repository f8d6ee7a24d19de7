"""gradflow §4.3 (lottery tickets and the pruning solution): linear paths, distances, MDS, ensembles
and disagreement, each against a hand computation; the run's initial weights rebuilt from its spec."""
import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import tiny_spec
from ticketlab.analysis.basin import class_probabilities, flat_point, interpolation, linear_path, predictions
from ticketlab.artefacts.basin import (basin_figure, disagreement, embed, ensemble_table, group_metrics,
                                       interval, pairwise_distances)
from ticketlab.masks import Mask
from ticketlab.training import Data, Run, evaluate, initial_weights
from ticketlab.weights_io import load as load_state


def _loss(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model.eval()(x), y).item()


def test_linear_path_endpoints_are_the_two_models_and_the_midpoint_is_hand_computed():
    torch.manual_seed(0)
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():  # hand-chosen weights: the midpoint is W = [[1, 0], [0, 1]], bias 0
        a.weight.copy_(torch.tensor([[2.0, 0.0], [1.0, 3.0]]))
        a.bias.copy_(torch.tensor([0.5, -1.0]))
        b.weight.copy_(torch.tensor([[0.0, 0.0], [-1.0, -1.0]]))
        b.bias.copy_(torch.tensor([-0.5, 1.0]))
    x, y = torch.tensor([[1.0, 2.0], [3.0, -1.0]]), torch.tensor([1, 0])
    loss, acc = linear_path(a, a.state_dict(), b.state_dict(), [0.0, 0.5, 1.0], x, y)
    assert loss[0] == _loss(a, x, y) and loss[2] == _loss(b, x, y)  # exactly the endpoints
    # midpoint by hand: logits = x for W = I, b = 0: example 1 (1, 2) -> class 1, example 2 (3, -1) -> class 0
    hand = np.mean([math.log(1 + math.exp(1 - 2)), math.log(1 + math.exp(-1 - 3))])
    assert loss[1] == pytest.approx(hand, rel=1e-6)
    assert acc[1] == 100.0
    assert a.weight[0, 0].item() == 2.0  # the model itself is untouched


@pytest.fixture(scope="module")
def lenet(digits_npz):
    from ticketlab.models import build_model
    data = Data(digits_npz, torch.device("cpu"))
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model("lenet5", data.num_classes, in_channels=1, input_size=8, width=0.5).eval())
    g = torch.Generator().manual_seed(0)
    mask = Mask({k: torch.rand(p.shape, generator=g) < 0.3 for k, p in models[0].named_parameters() if p.ndim > 1})
    return data, models, mask


def test_interpolation_distances_and_endpoints_on_lenet(lenet):
    data, (trained, start, ref), mask = lenet
    trained = copy.deepcopy(trained)
    mask.apply_(trained)
    res = interpolation(trained, mask, data,
                        {"steps": 5, "split": "train", "examples": 0, "batch_size": 1000, "seed": 0},
                        init=start.state_dict(), reference=ref.state_dict())
    # distances by hand: every parameter, pruned entries zero on both sides
    def dist(u, v):
        total = 0.0
        for (k, pu), pv in zip(u.named_parameters(), v.parameters()):
            diff = pu.detach().double() - pv.detach().double()
            total += float(((diff * mask[k]) if k in mask else diff).pow(2).sum())
        return math.sqrt(total)
    assert res["d_final"] == pytest.approx(dist(trained, ref), rel=1e-9)
    assert res["d_init"] == pytest.approx(dist(start, ref), rel=1e-9)
    kept = mask.kept + sum(p.numel() for k, p in trained.named_parameters() if k not in mask)
    assert res["coordinates"] == kept == res["arrays"]["init"].size
    assert (np.linalg.norm(res["arrays"]["final"].astype(float) - res["arrays"]["reference"])
            == pytest.approx(res["d_final"], rel=1e-5))
    # endpoints: the analysed model's own training loss, and the masked reference's / masked init's
    own = evaluate(trained, data, "train")[0]
    assert res["curves"]["final"]["loss"][0] == pytest.approx(own, rel=1e-6)
    for name, other in (("init", start), ("reference", ref)):
        m = copy.deepcopy(other)
        mask.apply_(m)
        loss = evaluate(m, data, "train")[0]
        if name == "init":
            assert res["curves"]["init"]["loss"][0] == pytest.approx(loss, rel=1e-6)
        else:
            assert res["curves"]["init"]["loss"][-1] == pytest.approx(loss, rel=1e-6)
            assert res["curves"]["final"]["loss"][-1] == pytest.approx(loss, rel=1e-6)
    assert res["curves"]["init"]["x"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert res["test_acc"] == evaluate(trained, data, "test")[1]


def test_flat_point_leaves_out_pruned_coordinates_and_keeps_distances():
    state_a = {"w": torch.tensor([[3.0, 9.0], [0.0, 1.0]]), "b": torch.tensor([0.0])}
    state_b = {"w": torch.tensor([[0.0, -9.0], [4.0, 1.0]]), "b": torch.tensor([0.0])}
    mask = Mask({"w": torch.tensor([[True, False], [True, True]])})
    pa, pb = flat_point(state_a, mask, ["w", "b"]), flat_point(state_b, mask, ["w", "b"])
    assert pa.tolist() == [3.0, 0.0, 1.0, 0.0]  # kept entries of w in order, then b
    assert np.linalg.norm(pa - pb) == 5.0  # a 3-4-5 triangle; the pruned entry (9 vs -9) does not count


def test_predictions_are_softmax_probabilities_of_the_split(lenet):
    data, (model, *_), _ = lenet
    res = predictions(model, Mask(), data, {"split": "test", "batch_size": 100, "dtype": "float32"})
    x, y = data.split["test"]
    with torch.no_grad():
        expect = F.softmax(model(data.normalize(x)), 1).numpy()
    assert res["arrays"]["probs"] == pytest.approx(expect, abs=1e-6)
    assert (res["arrays"]["labels"] == y.numpy()).all()
    assert res["accuracy"] == pytest.approx(evaluate(model, data, "test")[1])
    assert class_probabilities(model, data.normalize(x), 1000).sum(1) == pytest.approx(np.ones(len(y)), abs=1e-5)


# three models on four examples; predicted classes: a = [0, 1, 2, 0], b = [0, 1, 1, 0], c = [2, 1, 1, 1]
P = {"a": np.array([[.8, .1, .1], [.2, .7, .1], [.1, .2, .7], [.6, .3, .1]]),
     "b": np.array([[.5, .4, .1], [.1, .8, .1], [.1, .5, .4], [.9, .05, .05]]),
     "c": np.array([[.3, .3, .4], [.3, .6, .1], [.3, .6, .1], [.4, .5, .1]])}
LABELS = np.array([0, 1, 2, 1])


def test_disagreement_and_ensemble_on_hand_made_probabilities():
    assert disagreement(P["a"], P["b"]) == 0.25 and disagreement(P["a"], P["c"]) == 0.75
    assert disagreement(P["b"], P["c"]) == 0.5
    ref = np.eye(3)[[0, 1, 2, 0]]  # the reference predicts a's classes
    m = group_metrics([P["a"], P["b"], P["c"]], LABELS, ref, [True, False, False])
    # accuracies: a 3/4, b 2/4, c 2/4
    assert m["test_acc"]["mean"] == pytest.approx(100 * 7 / 12)
    assert m["test_acc"]["std"] == pytest.approx(np.std([75, 50, 50], ddof=1))
    # ensemble mean probabilities: [.533 .267 .2], [.2 .7 .1], [.167 .433 .4], [.633 .283 .083]
    # -> classes [0, 1, 1, 0] against labels [0, 1, 2, 1]: 2/4
    assert m["ensemble"]["mean"] == 50.0
    assert m["disagree"]["mean"] == pytest.approx(0.5) and m["disagree"]["n"] == 3
    assert m["disagree"]["std"] == pytest.approx(0.25)
    # with the reference: a is the reference itself (left out); b 1/4, c 3/4
    assert m["disagree_pruned"]["mean"] == pytest.approx(0.5) and m["disagree_pruned"]["n"] == 2
    single = group_metrics([P["a"]], LABELS)
    assert single["test_acc"]["mean"] == 75.0 and math.isnan(single["ensemble"]["mean"])
    assert math.isnan(single["disagree"]["mean"]) and math.isnan(single["disagree_pruned"]["mean"])


def test_pairwise_distances_on_hand_made_points():
    d = pairwise_distances(np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [3.0, 4.0, 12.0]]))
    assert d.tolist() == [[0.0, 5.0, 13.0], [5.0, 0.0, 12.0], [13.0, 12.0, 0.0]]


def test_mds_recovers_a_planar_configuration_up_to_rotation_and_reflection():
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(9, 2)) * [5.0, 2.0]
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))   # the plane rotated into 12 dimensions, shifted
    points = np.hstack([plane, np.zeros((9, 10))]) @ q.T + rng.normal(size=12)
    xy = embed(pairwise_distances(points))
    assert pairwise_distances(xy) == pytest.approx(pairwise_distances(plane), abs=1e-6)
    # the embedding is the plane up to an orthogonal map (Procrustes: centred, best rotation/reflection)
    a, b = plane - plane.mean(0), xy - xy.mean(0)
    u, _, vt = np.linalg.svd(b.T @ a)
    assert b @ (u @ vt) == pytest.approx(a, abs=1e-6)


def test_interval_is_the_t_interval_of_the_mean():
    mean, lo, hi = interval(np.array([[0.0, 1.0], [2.0, 1.0]]))
    # n = 2: t_{0.9, 1} = 3.0777; std of (0, 2) = sqrt(2); half width = 3.0777 * sqrt(2) / sqrt(2)
    assert mean.tolist() == [1.0, 1.0]
    assert hi[0] - mean[0] == pytest.approx(3.077684, rel=1e-5) and lo[1] == hi[1] == 1.0


def test_initial_weights_are_what_the_run_started_from(digits_npz, tmp_path):
    lenet = {"arch": "lenet5", "width": 0.5}
    dense = tiny_spec(digits_npz, model=lenet, save_init=True, recipe={**tiny_spec(digits_npz)["recipe"], "epochs": 1})
    Run(dense, str(tmp_path / "dense")).run()
    saved = load_state(tmp_path / "dense" / "init.pt")
    replay = initial_weights(dense)
    assert saved.keys() == replay.keys() and all(torch.equal(saved[k], replay[k]) for k in saved)
    # a masked random re-initialisation: the drawn init x mask, the same draw every time
    params = {k: v for k, v in saved.items() if v.ndim > 1}
    mask = Mask({k: torch.rand(v.shape, generator=torch.Generator().manual_seed(1)) < 0.5 for k, v in params.items()})
    mask.save(str(tmp_path / "m.pt"))
    rr = tiny_spec(digits_npz, model=lenet, mask=str(tmp_path / "m.pt"),
                   init={"from": "fresh", "reinit": True, "reinit_seed": 7})
    first, second = initial_weights(rr), initial_weights(rr)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert all(((first[k] != 0) <= mask[k]).all() for k in mask)
    torch.manual_seed(7)
    from ticketlab.models import build_model
    fresh = build_model("lenet5", 10, in_channels=1, input_size=8, width=0.5).state_dict()
    assert all(torch.equal(first[k], fresh[k] * mask[k] if k in mask else fresh[k]) for k in fresh)


def _row(tmp_path, experiment, mask, sparsity, variant, seed, replica, arrays, result=None):
    """An artefact row whose analysis files (JSON content returned, .npz written) are made by hand."""
    stem = tmp_path / f"{experiment}_{mask}_{variant}_{seed}_{replica}"
    np.savez(f"{stem}.npz", **arrays)
    row = {"experiment": experiment, "mask": mask, "seed": seed, "sparsity": sparsity, "exact": sparsity,
           "variant": variant, "replica": replica, "path": f"{stem}.json", "arrays": f"{stem}.npz"}
    return row, result or {}


def test_ensemble_table_groups_runs_and_compares_with_the_pruning_solution(tmp_path):
    ref = {"probs": np.eye(3)[[0, 1, 2, 0]], "labels": LABELS}
    pruned = _row(tmp_path, "e1", "dense", 0.0, "prune", 0, 0, ref)
    results = [pruned] + [_row(tmp_path, "e1", "pruned", 0.95, "lth", 0, k + 1, {"probs": P[n], "labels": LABELS})
                          for k, n in enumerate("abc")]
    other = _row(tmp_path, "e2", "dense", 0.0, "prune", 1, 0, {"probs": P["b"], "labels": LABELS})
    results += [({**pruned[0], "experiment": "e2"}, {}), other]  # seed 0's pruning run serves both experiments
    paper = pd.DataFrame({"sparsity": [95.0, 95.0], "variant": ["lth", "lth"], "stage": ["test_acc", "test_acc_std"],
                          "experiment": ["e1", "e1"], "value": [98.52, 0.02]})
    spec = {"id": "t2", "title": "T2", "experiments": ["e1", "e2"], "masks": ["dense", "pruned"],
            "variants": ["lth", "prune"],
            "baseline": "prune", "rows": [["pruned", "lth", "e1"], ["dense", "prune", "e1"], ["dense", "prune", "e2"]],
            "labels": {"e1:prune": "Pruned Soln.", "e2:prune": "5 Diff. Pruned"}}
    out = [str(tmp_path / "t2.csv"), str(tmp_path / "t2.md")]
    ensemble_table(spec, results, paper, {"lth": "LT", "prune": "Pruning"}, out)
    tab = pd.read_csv(out[0]).set_index(["label", "metric"])
    assert tab.loc[("LT", "test_acc"), "mean"] == pytest.approx(100 * 7 / 12)
    assert tab.loc[("LT", "test_acc"), "paper"] == 98.52
    assert tab.loc[("LT", "ensemble"), "mean"] == 50.0
    assert tab.loc[("LT", "disagree"), "mean"] == pytest.approx(0.5)
    assert tab.loc[("LT", "disagree_pruned"), "mean"] == pytest.approx((0 + 0.25 + 0.75) / 3)
    assert tab.loc[("Pruned Soln.", "test_acc"), "mean"] == 75.0 and tab.loc[("Pruned Soln.", "test_acc"), "n"] == 1
    assert np.isnan(tab.loc[("Pruned Soln.", "disagree_pruned"), "mean"])  # itself: left out
    # 5 Diff. Pruned: seed 0 (the pruning solution) and seed 1 (b's predictions)
    assert tab.loc[("5 Diff. Pruned", "test_acc"), "mean"] == 62.5
    assert tab.loc[("5 Diff. Pruned", "ensemble"), "mean"] == 75.0
    assert tab.loc[("5 Diff. Pruned", "disagree"), "mean"] == 0.25
    assert tab.loc[("5 Diff. Pruned", "disagree_pruned"), "n"] == 1  # only the other seed
    md = open(out[1]).read()
    assert md.index("| LT |") < md.index("| Pruned Soln. |") < md.index("| 5 Diff. Pruned |")
    assert "98.52 ± 0.02" in md and "58.33 ± 14.43" in md


def test_basin_figure_summarises_distances_paths_and_embeds_the_points(tmp_path):
    rng = np.random.default_rng(0)
    ref_point = np.array([0.0, 0.0, 0.0])
    results = []
    for i, v in enumerate(["lth", "rr"]):
        for k in (1, 2):
            # all in one plane
            init, final = np.r_[rng.normal(size=2), 0.0], np.r_[rng.normal(size=2), 0.0]
            res = {"d_init": float(np.linalg.norm(init)), "d_final": float(np.linalg.norm(final)),
                   "test_acc": 90.0 + i + k, "reference": "prune/final.pt",
                   "curves": {c: {"x": [0.0, 0.5, 1.0], "loss": [1.0 + i + k, 2.0 * k, 0.5]}
                              for c in ("init", "final")}}
            results.append(_row(tmp_path, "e1", "pruned", 0.95, v, 0, k,
                                {"init": init, "final": final, "reference": ref_point}, res))
    paper = pd.DataFrame({"sparsity": [95.0], "variant": ["lth"], "stage": ["d_init"], "value": [13.61]})
    spec = {"id": "f5", "experiments": ["e1"], "masks": ["pruned"], "variants": ["lth", "rr"]}
    out = [str(tmp_path / f"f5.{e}") for e in ("png", "pdf", "csv")]
    basin_figure(spec, results, paper, {"lth": "LT", "rr": "Scratch"}, out)
    tab = pd.read_csv(out[2])
    d = tab[tab["quantity"] == "d_init"].set_index("variant")
    assert d.loc["lth", "mean"] == pytest.approx(np.mean([r["d_init"] for row, r in results[:2]]))
    assert d.loc["lth", "paper"] == 13.61 and np.isnan(d.loc["rr", "paper"])
    path = tab[(tab["quantity"] == "loss_init") & (tab["variant"] == "rr")].set_index("alpha")
    assert path.loc[0.0, "mean"] == 3.5 and path.loc[0.5, "mean"] == 3.0  # (3 + 4) / 2, (2 + 4) / 2
    assert path.loc[0.5, "hi"] - 3.0 == pytest.approx(3.077684 * np.std([2, 4], ddof=1) / np.sqrt(2), rel=1e-5)
    mds = tab[tab["quantity"].str.startswith("mds")]
    assert len(mds) == 2 * 4 + 1  # a start and an end per run, and the one reference
    xy = mds[["mds_x", "mds_y"]].to_numpy()
    pts = np.stack([p for row, _ in results for p in (np.load(row["arrays"])["init"], np.load(row["arrays"])["final"])]
                   + [ref_point])
    assert pairwise_distances(xy) == pytest.approx(pairwise_distances(pts), abs=1e-6)
    assert all(open(p, "rb").read(4) for p in out[:2])


def _demo_config(**changes):
    """The demo config.yaml with `changes` set: {"a.b.c": value} (value None deletes the key)."""
    import yaml

    from conftest import REPO
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for path, value in changes.items():
        *head, last = path.split(".")
        node = cfg
        for k in head:
            node = node[k]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return cfg


def test_plan_gives_the_analysis_the_runs_start_and_the_pruning_solution():
    from ticketlab import plan
    from ticketlab.config import validate
    cfg = validate(_demo_config())
    run = "digits/lenet5_demo/gradflow/seed42/pruned/s95.00/basin_lt@o3"
    spec = plan.analysis_spec(cfg, run, "basin_paths")
    assert spec["reference"] == "results/runs/digits/lenet5_demo/gradflow/seed42/dense/s00.00/prune/final.pt"
    assert spec["initial"] is True and spec["run"]["order_seed"] == 3_000_042
    inputs = plan.analysis_inputs(spec)
    assert inputs["reference"] == spec["reference"]
    assert inputs["init"] == "results/runs/digits/lenet5_demo/gradflow/seed42/dense/init.pt"  # the run's setup reads it
    assert inputs["weights"] == f"results/runs/{run}/final.pt"
    assert (plan.analysis_rule(cfg, "basin_paths") == "analysis_arrays"
            and plan.analysis_rule(cfg, "hessian") == "analysis")
    assert "initial" not in plan.analysis_spec(cfg, run, "basin_predictions")
    rows = plan.artefact_runs(cfg, "gradflow_tab2")
    # 4 variants x 5 replicas on seed 42's mask, its pruning run, and the pruning runs of 5 seeds
    assert len(rows) == 20 + 1 + 5
    assert sum(r["variant"] == "prune" and r["experiment"] == "gradflow_43_seeds" for r in rows) == 5
    assert {r["replica"] for r in rows if r["variant"] == "prune"} == {0}
    assert all(r["arrays"] == r["path"].removesuffix(".json") + ".npz" for r in rows)
    restart = plan.retrain_spec(cfg, plan.W(dataset="digits", model="lenet5_demo", recipe="gradflow", seed="42",
                                            mask="pruned", sparsity="95.00", variant="basin_restart@o2"))
    assert (restart["init"]["path"].endswith("seed42/dense/s00.00/prune/final.pt")
            and restart["recipe"]["weight_decay"] == 0)
    di = [plan.retrain_spec(cfg, plan.W(dataset="digits", model="lenet5_demo", recipe="gradflow", seed="42",
                                        mask="pruned", sparsity="95.00", variant=f"{v}@o{k}"))["init"]
          for v in ("basin_scratch", "basin_scratch_di") for k in (1, 2)]
    assert di[0] == di[1] and di[2] != di[3]  # Scratch shares one draw; Diff. Init. draws per replica


@pytest.mark.parametrize("changes,where", [
    ({"analyses.basin_paths.reference": None}, r"analyses\.basin_paths: kind 'interpolation' needs `reference`"),
    ({"analyses.basin_paths.reference": "nope"}, r"analyses\.basin_paths\.reference: unknown variant 'nope'"),
    ({"analyses.basin_predictions.reference": "prune"},
     r"analyses\.basin_predictions: kind 'predictions' compares with no"),
    ({"artefacts.gradflow_tab2.rows": [["pruned", "basin_lt", "nope"]]},
     r"gradflow_tab2\.rows\[0\]: experiment 'nope'"),
    ({"artefacts.gradflow_tab2.replicas": {"basin_lt": 5, "lottery": 5}},
     r"gradflow_tab2\.replicas\.lottery: not a variant"),
])
def test_config_errors_name_the_key(changes, where):
    from ticketlab.config import ConfigError, validate
    with pytest.raises(ConfigError, match=where):
        validate(_demo_config(**changes))
