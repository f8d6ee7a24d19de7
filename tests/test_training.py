"""Training runs: masked weights stay zero, rewinding, resume after a kill, determinism, summaries."""
import csv
import json
import os

import pytest
import torch

from conftest import same_weights, tiny_spec
from ticketlab.masks import magnitude_prune, prunable
from ticketlab.models import build_model
from ticketlab.training import Run, TrainingError, run
from ticketlab.weights_io import load as load_state


def state(path):
    return load_state(path)


def make_mask(tmp_path, data, sparsity=0.8):
    r = Run(tiny_spec(data), str(tmp_path / "probe"))
    mask = magnitude_prune({k: p.detach() for k, p in prunable(r.model).items()}, sparsity)
    path = str(tmp_path / "mask.pt")
    mask.save(path)
    return path, mask


def test_masked_weights_and_their_gradients_stay_zero(tmp_path, digits_npz):
    path, mask = make_mask(tmp_path, digits_npz)
    r = Run(tiny_spec(digits_npz, mask=path), str(tmp_path / "run"))
    r.train_epoch()
    params = dict(r.model.named_parameters())
    for k, m in mask.items():
        assert (params[k][~m] == 0).all(), k
        assert (params[k].grad[~m] == 0).all(), k
        assert (params[k][m] != 0).any(), k  # the kept ones did train


def test_rewinding_loads_the_weights_of_that_exact_epoch(tmp_path, digits_npz):
    dense = tmp_path / "dense"
    run(tiny_spec(digits_npz, save_init=True, save_epochs=[1, 2]), str(dense))
    # independent: a 1-epoch run of the same seed ends with the weights the 3-epoch run saved after epoch 1
    one = tmp_path / "one"
    spec1 = tiny_spec(digits_npz)
    spec1["recipe"] = {**spec1["recipe"], "epochs": 1}
    run(spec1, str(one))
    for k, v in state(one / "final.pt").items():
        assert torch.equal(v, state(dense / "rewind_e1.pt")[k]), k
    assert not torch.equal(state(dense / "rewind_e1.pt")["fc.weight"], state(dense / "rewind_e2.pt")["fc.weight"])
    path, mask = make_mask(tmp_path, digits_npz)
    r = Run(tiny_spec(digits_npz, mask=path, init={"from": "file", "path": str(dense / "rewind_e2.pt")}),
            str(tmp_path / "rw"))
    rewound = state(dense / "rewind_e2.pt")
    for k, p in r.model.state_dict().items():
        expected = rewound[k] * mask[k] if k in mask else rewound[k]
        assert torch.equal(p, expected), k


def test_killed_run_resumes_to_identical_weights(tmp_path, digits_npz, killed_run):
    spec = tiny_spec(digits_npz, tweaks={"ls": {"alpha": 0.1, "style": "uniform"}})
    run(spec, str(tmp_path / "straight"))
    killed_run(spec, tmp_path / "killed", after=2)
    assert os.path.exists(tmp_path / "killed" / "checkpoint.pt")
    summary = run(spec, str(tmp_path / "killed"))
    assert not os.path.exists(tmp_path / "killed" / "checkpoint.pt")
    # bitwise, so the resume restored every RNG and state
    assert same_weights(tmp_path / "straight" / "final.pt", tmp_path / "killed" / "final.pt")
    assert summary["epochs"] == 3


def test_checkpoint_from_other_settings_is_not_resumed(tmp_path, digits_npz, monkeypatch):
    out = str(tmp_path / "r")
    spec = tiny_spec(digits_npz)
    monkeypatch.setattr(Run, "finish", lambda self, s: None)  # leave the last checkpoint behind
    run(spec, out)
    monkeypatch.undo()
    logs = []
    other = tiny_spec(digits_npz, seed=1)
    Run(other, out, log=logs.append).run()
    assert any("other settings" in line for line in logs)


def test_summary_reports_test_accuracy_at_best_validation_epoch(tmp_path, digits_npz):
    s = run(tiny_spec(digits_npz), str(tmp_path / "r"))
    with open(tmp_path / "r" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    best = max(rows, key=lambda r: (float(r["val_acc"]), -int(r["epoch"])))
    assert s["best_val_epoch"] == int(best["epoch"])
    assert s["test_acc_best_val"] == pytest.approx(float(best["test_acc"]))
    assert s["test_acc_last"] == pytest.approx(float(rows[-1]["test_acc"]))
    assert json.load(open(tmp_path / "r" / "summary.json"))["epochs"] == 3


def test_nonfinite_loss_names_run_epoch_and_step(tmp_path, digits_npz):
    r = Run(tiny_spec(digits_npz, name="runX"), str(tmp_path / "r"))
    r.loss_fn = lambda logits, y, x: logits.sum() * float("nan")
    with pytest.raises(TrainingError, match=r"runX.*epoch 1, step 0"):
        r.train_epoch()


def test_weights_that_do_not_fit_are_rejected(tmp_path, digits_npz):
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "bad.pt")
    with pytest.raises(TrainingError, match="bad.pt"):
        Run(tiny_spec(digits_npz, init={"from": "file", "path": str(tmp_path / "bad.pt")}), str(tmp_path / "r"))


def test_summary_counts_the_trained_parameters_extras_included(tmp_path, digits_npz):
    """summary.json "params" counts final.pt's trainable parameters (BN running statistics left out): a masked
    ticket with `skip` (dense extra 1x1 convs + BN, exported) counts the extras in total and nonzero; `gsk`
    (the same extras, stripped by its export) does not; masked_kept is the mask's, null for a dense run.
    "numerics" says how the run computed (here the CPU defaults)."""
    path, mask = make_mask(tmp_path, digits_npz, sparsity=0.8)

    def names(**kw):
        model = build_model("resnet18", 10, in_channels=1, input_size=8, width=0.0625, **kw)
        return {k: p.numel() for k, p in model.named_parameters()}

    plain, skip = names(), names(extra_skip=True)
    extras = set(skip) - set(plain)
    assert extras and set(plain) < set(skip)
    short = {**tiny_spec(digits_npz)["recipe"], "epochs": 2, "milestones": [1]}  # gsk: its ghost goes by epoch 1
    for tweak, expected in (("skip", skip), ("gsk", plain), (None, plain)):
        spec = tiny_spec(digits_npz, mask=None if tweak is None else path, tweaks={tweak: {}} if tweak else {},
                         recipe=short)
        out = tmp_path / (tweak or "dense")
        params = run(spec, str(out))["params"]
        assert json.load(open(out / "summary.json"))["params"] == params
        final = state(out / "final.pt")
        assert set(expected) <= set(final) and len(final) > len(expected)  # the file also holds BN buffers
        assert params["total"] == sum(expected.values())
        assert params["nonzero"] == sum(int((final[k] != 0).sum()) for k in expected)
        if tweak is None:
            assert params["masked_kept"] is None and params["nonzero"] > 0.99 * params["total"]
            continue
        assert params["masked_kept"] == mask.kept
        pruned = mask.total - mask.kept
        assert all(torch.all(final[k][~m] == 0) for k, m in mask.items())
        assert params["nonzero"] <= params["total"] - pruned and params["nonzero"] > params["total"] - pruned - 50
        if tweak == "skip":
            assert sum(int((final[k] != 0).sum()) for k in extras) > 0.99 * sum(skip[k] for k in extras)
        else:
            assert not extras & set(final)
    assert json.load(open(tmp_path / "skip" / "summary.json"))["numerics"] == {
        "device": "cpu", "precision": "fp32", "channels_last": False, "compile": False, "tf32": False}
