"""dlth's masks: the layer scheme (first conv and last FC dense, one ratio elsewhere), Early-Bird from
the epoch it names, and LTH-Iter's cycles (exact target, nested masks, resumable trainings)."""
import copy
import functools
import os
import shutil

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO
from ticketlab import layout, plan
from ticketlab.config import ConfigError, validate
from ticketlab.pruners.iterative import cycle_sparsity
from ticketlab.jobs import make_mask
from ticketlab.masks import Mask, prunable
from ticketlab.models import build_model
from ticketlab.training import Run
from ticketlab.weights_io import load as load_state

MODEL = {"arch": "resnet20", "width": 0.25}


@functools.cache
def _demo_cfg() -> dict:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["models"]["resnet20_demo"] = MODEL
    return validate(cfg)


def demo_cfg() -> dict:
    """The demo config, dlth's model at quarter width (checked once per session)."""
    return copy.deepcopy(_demo_cfg())


def weights_file(path, seed: int) -> str:
    """A state dict of the demo model drawn with `seed` (the mask jobs only read weights)."""
    torch.manual_seed(seed)
    model = build_model(MODEL["arch"], 10, in_channels=1, input_size=8, width=MODEL["width"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(model.state_dict(), path)
    return str(path)


def topk_by_hand(w: torch.Tensor, sparsity: float) -> np.ndarray:
    """The kept entries of one layer: its n - round(s n) largest |w| (numpy sort, no ticketlab code)."""
    a = np.abs(w.numpy().ravel())
    keep = np.zeros(a.size, bool)
    keep[np.argsort(-a, kind="stable")[:a.size - int(round(a.size * sparsity))]] = True
    return keep.reshape(w.shape)


@pytest.fixture
def planned(tmp_path, digits_npz, monkeypatch):
    """The demo config and the dense run's files (init, epoch-2 weights, final) at their planned paths,
    in a scratch working directory."""
    monkeypatch.chdir(tmp_path)
    cfg = demo_cfg()
    w = plan.W(dataset="digits", model="resnet20_demo", recipe="dlth_demo", seed="42")
    os.makedirs("results/data")
    shutil.copy(digits_npz, "results/data/digits.npz")
    for name, seed in (("init.pt", 1), ("rewind_e1.pt", 2), ("final.pt", 3)):
        weights_file(tmp_path / layout.dense_dir(w) / name, seed)
    return cfg, w


def mask_of(cfg, w, mask: str, sparsity: str) -> tuple[dict, Mask]:
    wm = plan.W(**w.__dict__, mask=mask, sparsity=sparsity)
    spec = plan.mask_spec(cfg, wm)
    out = layout.mask_path(wm, mask, layout.sp_value(sparsity))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    make_mask(spec, out)
    return spec, Mask.load(out)


@pytest.mark.parametrize("mask", ["dlth_random", "dlth_l1", "dlth_eb"])
def test_first_conv_and_last_fc_stay_dense_and_the_rest_share_one_ratio(planned, mask):
    cfg, w = planned
    _, m = mask_of(cfg, w, mask, "90.00")
    names = list(prunable(build_model("resnet20", 10, in_channels=1, input_size=8, width=0.25), "conv_linear"))
    assert names[0] == "conv1.conv.weight" and names[-1] == "fc.weight"
    assert list(m) == names[1:-1]  # every middle conv, none of the first conv and the FC layer
    for k, v in m.items():
        assert int((~v).sum()) == round(0.9 * v.numel()), k  # the same ratio in every covered layer


def test_early_bird_prunes_the_weights_after_the_epoch_it_names(planned):
    cfg, w = planned
    spec, eb = mask_of(cfg, w, "dlth_eb", "70.00")
    assert spec["weights"].endswith("/dense/rewind_e1.pt")  # 1/8 of the demo's 8 epochs
    early, final = load_state(spec["weights"]), load_state(spec["weights"].replace("rewind_e1", "final"))
    for k, v in eb.items():
        assert np.array_equal(v.numpy(), topk_by_hand(early[k], 0.7)), k
    assert any(not np.array_equal(v.numpy(), topk_by_hand(final[k], 0.7)) for k, v in eb.items())
    _, l1 = mask_of(cfg, w, "dlth_l1", "70.00")  # the one-shot LTH / L1 mask: the final weights
    assert all(np.array_equal(v.numpy(), topk_by_hand(final[k], 0.7)) for k, v in l1.items())


def test_lth_iter_spec_carries_the_cycle_recipe_and_checks_its_name():
    cfg = demo_cfg()
    w = plan.W(dataset="digits", model="resnet20_demo", recipe="dlth_demo", seed="42", mask="dlth_lthiter",
               sparsity="70.00")
    spec = plan.mask_spec(cfg, w)
    assert spec["cycles"] == 5 and spec["cycle_recipe"]["epochs"] == 2 and spec["cycle_recipe"]["milestones"] == [1]
    assert spec["weights"].endswith("/dense/init.pt")  # every cycle rewinds to the dense init
    bad = copy.deepcopy(cfg)
    bad["masks"]["dlth_lthiter"]["cycle_recipe"] = "nope"
    with pytest.raises(ConfigError, match=r"masks\.dlth_lthiter\.cycle_recipe: unknown recipe 'nope'"):
        validate(bad)


def lth_iter_spec(tmp_path, digits_npz, sparsity=0.9, cycles=3):
    return {"method": "lth_iter", "cycles": cycles, "layers": "conv_linear", "keep_dense": ["first", "last"],
            "sparsity": sparsity, "seed": 5, "data": digits_npz, "model": MODEL, "device": "cpu",
            "weights": weights_file(tmp_path / "init.pt", 1),
            "cycle_recipe": {"epochs": 2, "batch_size": 256, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                             "milestones": [1], "augment": {"crop_pad": 1, "flip": False}}}


def test_lth_iter_reaches_the_target_through_nested_magnitude_cycles(tmp_path, digits_npz):
    spec = lth_iter_spec(tmp_path, digits_npz)
    make_mask(spec, str(tmp_path / "s90.00.pt"))
    final = Mask.load(str(tmp_path / "s90.00.pt"))
    work = tmp_path / "s90.00.cycles"
    previous = None
    for c in (1, 2, 3):
        m = Mask.load(str(work / f"mask{c}.pt"))
        trained = load_state(work / f"cycle{c}" / "final.pt")
        for k, v in m.items():
            before = previous[k] if previous else torch.ones_like(v)
            assert int((~v).sum()) == round(v.numel() * cycle_sparsity(0.9, c, 3)), (c, k)
            assert not (v & ~before).any(), (c, k)  # nested in the previous cycle's mask
            new = ~v & before                        # removed in this cycle: the smallest of the survivors
            assert trained[k][new].abs().max() <= trained[k][v].abs().min(), (c, k)
        previous = m
    assert all(torch.equal(final[k], previous[k]) for k in final)
    assert cycle_sparsity(0.9, 3, 3) == 0.9 and all(int((~v).sum()) == round(0.9 * v.numel()) for v in final.values())
    theta0, cycle2 = load_state(tmp_path / "init.pt"), load_state(work / "cycle2" / "final.pt")
    assert all(not torch.equal(cycle2[k], theta0[k] * previous[k]) for k in final)  # the cycles train


def test_lth_iter_resumes_its_trainings_after_a_kill(tmp_path, digits_npz, monkeypatch, kill_after):
    spec = lth_iter_spec(tmp_path, digits_npz, sparsity=0.8, cycles=3)
    make_mask(spec, str(tmp_path / "whole.pt"))
    runs, train = [], Run.run

    def counted(self):
        runs.append(os.path.basename(self.outdir))
        return train(self)

    kill_after(3)  # cycle 1 writes checkpoints 1 and 2, cycle 2's first epoch checkpoint 3
    monkeypatch.setattr(Run, "run", counted)
    with pytest.raises(KeyboardInterrupt):
        make_mask(spec, str(tmp_path / "killed.pt"))
    assert (tmp_path / "killed.cycles" / "cycle2" / "checkpoint.pt").exists()
    runs.clear()
    make_mask(spec, str(tmp_path / "killed.pt"))
    assert runs == ["cycle2", "cycle3"]  # cycle 1 is done; cycle 2 resumes from its checkpoint
    for c in (1, 2, 3):
        a = load_state(tmp_path / "whole.cycles" / f"cycle{c}" / "final.pt")
        b = load_state(tmp_path / "killed.cycles" / f"cycle{c}" / "final.pt")
        assert all(torch.equal(a[k], b[k]) for k in a), c
    a, b = Mask.load(str(tmp_path / "whole.pt")), Mask.load(str(tmp_path / "killed.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a)
