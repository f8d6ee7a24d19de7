"""Dynamic sparse training (tweaks/dst.py): SET, RigL and RigL inverted against hand-made layers, SET's
growth against the uniform distribution, RigL's order in a real run (the optimiser steps under the old mask,
then the mask update; grown connections at zero with zero momentum), exact sparsity and bitwise resume in
real runs, and the gradient flow logged at mask updates (gradflow Figure 3)."""
import json
import math
import os
import signal
from types import SimpleNamespace

import pytest
import torch
from scipy.stats import chi2
from torch import nn

from conftest import tiny_spec
from ticketlab import jobs
from ticketlab.analysis.trajectory import monitors
from ticketlab.masks import Mask, PruneContext, prunable
from ticketlab.models import build_model
from ticketlab.pruners.zoo import random_mask
from ticketlab.training import Run, lr_at, run
from ticketlab.tweaks import TWEAKS
from ticketlab.tweaks.dst import DynamicSparse, RigL, drop_fraction, is_update
from ticketlab.weights_io import load as load_state

MASK = torch.tensor([True] * 6 + [False] * 6).view(3, 4)
WEIGHT = torch.tensor([0.5, -0.1, 0.9, 0.05, -0.7, 0.3, 0, 0, 0, 0, 0, 0]).view(3, 4)


def hand_layer(grad):
    """A 3x4 linear layer: connections 0..5 active with |w| 0.5, 0.1, 0.9, 0.05, 0.7, 0.3; 6..11 inactive."""
    layer = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(WEIGHT)
    layer.weight.grad = torch.tensor(grad, dtype=torch.float).view(3, 4)
    return layer


def ctx_for(mask, every=1, seed=0, **over):
    recipe = {"lr": 0.1, "milestones": [], "schedule": "cosine", "epochs": 10}
    ctx = SimpleNamespace(mask=Mask({"weight": mask.clone()}), spec={"seed": seed, "recipe": recipe},
                          steps_per_epoch=10, total_steps=100, log={}, gradient_flow=None, **over)
    ctx.lr_at = lambda step: lr_at(ctx.spec["recipe"], step // 10, step, 10, 100)  # as the run's ctx has it
    return ctx


def update(tweak, layer, step, ctx):
    """One step's hooks as the run calls them: after_backward (the dense gradient), the gradient masked,
    (no optimiser step here), the weights masked, after_step (the mask update); returns after_step's."""
    tweak.after_backward(layer, step, ctx)
    with torch.no_grad():
        m = ctx.mask["weight"]
        layer.weight.grad.mul_(m)  # the run masks the gradients before the step: growth must not see this
        layer.weight.mul_(m)
    return tweak.after_step(layer, step, ctx)


def kept(ctx):
    return sorted(torch.nonzero(ctx.mask["weight"].flatten()).flatten().tolist())


#                 active 0..5 (dropped 1, 3, 5 have small gradients)   inactive 6..11
GRAD = [10.0, 0.01, 10.0, 0.02, 10.0, 0.03, 0.2, -3.0, 0.1, 2.0, -0.5, 1.5]


def test_rigl_drops_the_lowest_magnitudes_and_grows_the_highest_gradients():
    """f = 0.5 of 6 active: drop k = 3 with the smallest |w| (1, 3, 5), grow the 3 not kept with the largest
    |gradient| (7, 9, 11)."""
    layer, ctx = hand_layer(GRAD), ctx_for(MASK)
    tweak = TWEAKS["rigl"](every=5, drop_fraction=0.5, decay="constant")
    assert update(tweak, layer, 5, ctx) is True
    assert kept(ctx) == [0, 2, 4, 7, 9, 11]


def test_rigl_inverted_grows_the_lowest_gradients_and_rigl_may_regrow_what_it_dropped():
    layer, ctx = hand_layer(GRAD), ctx_for(MASK)
    update(TWEAKS["rigl_inverted"](every=5, drop_fraction=0.5, decay="constant"), layer, 5, ctx)
    assert kept(ctx) == [0, 1, 2, 3, 4, 5]  # the lowest |g| not kept: the three just dropped (RigL's candidates)
    grad = list(GRAD)
    grad[1] = 50.0  # a dropped connection with the largest gradient is grown back (kept, with its weight)
    layer, ctx = hand_layer(grad), ctx_for(MASK)
    update(TWEAKS["rigl"](every=5, drop_fraction=0.5, decay="constant"), layer, 5, ctx)
    assert kept(ctx) == [0, 1, 2, 4, 7, 9]
    grad = list(GRAD)  # ties broken by position: of four equal |g|, the three lowest indices grow
    grad[6] = grad[7] = grad[8] = grad[9] = 20.0
    layer, ctx = hand_layer(grad), ctx_for(MASK)
    update(TWEAKS["rigl"](every=5, drop_fraction=0.5, decay="constant"), layer, 5, ctx)
    assert kept(ctx) == [0, 2, 4, 6, 7, 8]


def test_update_steps_and_the_drop_fraction_decaying_with_the_learning_rate():
    ctx = ctx_for(MASK)
    p = {**DynamicSparse.defaults, "every": 10, "drop_fraction": 0.3, "end": 60}
    assert [t for t in range(100) if is_update(p, t, ctx)] == [10, 20, 30, 40, 50]
    assert [t for t in range(100) if is_update({**p, "end": None}, t, ctx)] == list(range(10, 100, 10))
    for t in (0, 25, 50, 99):  # cosine LR: 0.3 * (1 + cos(pi t / 100)) / 2
        assert drop_fraction(p, t, ctx) == pytest.approx(0.3 * 0.5 * (1 + math.cos(math.pi * t / 100)))
    step_recipe = {"lr": 0.1, "milestones": [5], "gamma": 0.1, "epochs": 10}
    ctx.spec["recipe"] = step_recipe
    assert (drop_fraction(p, 55, ctx) == pytest.approx(0.3 * lr_at(step_recipe, 5, 55, 10, 100) / 0.1)
            == pytest.approx(0.03))
    assert drop_fraction({**p, "decay": "cosine"}, 30, ctx) == pytest.approx(
        0.3 * 0.5 * (1 + math.cos(math.pi * 30 / 60)))
    # k = floor(f * active) (RigL's int cast): 0.3 * 6 = 1.8 -> one connection replaced
    layer, c = hand_layer(GRAD), ctx_for(MASK)
    update(TWEAKS["rigl"](every=5, drop_fraction=0.3, decay="constant"), layer, 5, c)
    assert kept(c) == [0, 1, 2, 4, 5, 7]


def test_set_grows_uniformly_at_random_among_the_connections_not_kept():
    """3,000 updates of a 4x5 layer (4 active, drop 2, grow 2 of the 18 not kept): the 2 smallest are
    always dropped, and every candidate is grown equally often (chi-square, 17 d.o.f., p = 0.001)."""
    mask = torch.zeros(4, 5, dtype=torch.bool)
    mask.view(-1)[:4] = True
    layer = nn.Linear(5, 4, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight.view(-1)[:4] = torch.tensor([0.4, 0.1, 0.3, 0.2])
    tweak = TWEAKS["set"](every=1, drop_fraction=0.5, decay="constant")
    counts = torch.zeros(20)
    n = 3000
    for step in range(1, n + 1):
        ctx = ctx_for(mask, seed=7)
        ctx.total_steps = n + 1
        tweak.after_step(layer, step, ctx)
        new = ctx.mask["weight"].flatten()
        assert new[0] and new[2] and int(new.sum()) == 4  # 0.4 and 0.3 kept, sparsity unchanged
        counts += new.float()
    grown = torch.cat([counts[1:2], counts[3:]])  # the 18 candidates (1 and 3 were dropped)
    assert counts[0] == counts[2] == n and grown.sum() == 2 * n
    expected = 2 * n / 18
    stat = float(((grown - expected) ** 2 / expected).sum())
    assert stat < chi2.ppf(0.999, 17), stat
    # and the draw is a function of (seed, step): the same step gives the same growth
    a, b = ctx_for(mask, seed=7), ctx_for(mask, seed=7)
    tweak.after_step(layer, 12, a), tweak.after_step(layer, 12, b)
    assert torch.equal(a.mask["weight"], b.mask["weight"])


def masked_lenet_spec(tmp_path, data, tweaks, sparsity=0.9, **over):
    """A LeNet-5 spec on the digits with a uniform random mask of `sparsity` over conv + linear weights."""
    model = build_model("lenet5", 10, in_channels=1, input_size=8)
    mask = random_mask(PruneContext(model=model, weights=prunable(model, "conv_linear"), sparsity=sparsity, spec={},
                                    generator=torch.Generator().manual_seed(0)))
    mask.save(str(tmp_path / "mask.pt"))
    spec = tiny_spec(data, model={"arch": "lenet5", "width": 1.0}, mask=str(tmp_path / "mask.pt"), tweaks=tweaks,
                     **over)
    spec["recipe"] = {**spec["recipe"], "epochs": 2, "schedule": "cosine", "milestones": [], "augment": {}}
    return spec, mask


@pytest.mark.parametrize("method", ["set", "rigl", "rigl_inverted"])
def test_every_update_keeps_each_layers_sparsity_and_grown_weights_start_at_zero(tmp_path, digits_npz, monkeypatch,
                                                                                 method):
    spec, mask = masked_lenet_spec(tmp_path, digits_npz, {method: {"every": 3, "drop_fraction": 0.3}})
    counts = {k: int(m.sum()) for k, m in mask.items()}
    seen = []
    original = DynamicSparse.after_step

    def checked(self, model, step, ctx):
        before = {k: m.clone() for k, m in ctx.mask.items()}
        changed = original(self, model, step, ctx)
        params = dict(model.named_parameters())
        assert {k: int(m.sum()) for k, m in ctx.mask.items()} == counts, step
        for k, m in ctx.mask.items():
            assert torch.all(params[k].detach()[m & ~before[k]] == 0)  # grown: zero (the run zeroes momentum too)
        seen.append((step, changed))
        return changed

    monkeypatch.setattr(DynamicSparse, "after_step", checked)
    r = Run(spec, str(tmp_path / "run"))
    summary = r.run()
    updates = [s for s, changed in seen if changed]
    assert updates and all(s % 3 == 0 and s > 0 for s in updates)
    assert summary["mask_sparsity"] == pytest.approx(mask.sparsity)
    assert any(not torch.equal(r.mask[k].cpu(), mask[k]) for k in mask)  # the connectivity did move
    final = load_state(tmp_path / "run" / "final.pt")
    assert all(torch.all(final[k][~r.mask[k].cpu()] == 0) for k in mask)


class Enough(Exception):
    pass


def test_an_update_step_steps_under_the_old_mask_then_grows_connections_at_zero(tmp_path, digits_npz, monkeypatch):
    """RigL's order (rigl/sparse_optimizers_base.py apply_gradients: the optimiser update, then the mask
    update; gradflow's rigl_tf2/train.py the same) at update step 3 of a real run, checked by hand: the kept
    weights and their momentum are one SGD-momentum step of the OLD-masked gradient (weight decay
    included) from the state before it; the drop ranks |w| after that step, the growth this step's dense
    |gradient|; grown (and dropped) connections are exactly 0 in weight and momentum buffer right after."""
    spec, _ = masked_lenet_spec(tmp_path, digits_npz, {"rigl": {"every": 3, "drop_fraction": 0.3, "decay": "constant"}})
    r = Run(spec, str(tmp_path / "run"))
    before, after = {}, {}
    original = RigL.after_backward

    def observed(self, model, step, ctx):  # after the backward pass, before the run masks the gradients
        params = dict(model.named_parameters())
        if step in (3, 4):
            into = before if step == 3 else after  # at step 4 (nothing stepped yet): the state the update left
            into["w"] = {k: params[k].detach().clone() for k in ctx.mask}
            into["buf"] = {k: r.opt.state[params[k]]["momentum_buffer"].clone() for k in ctx.mask}
            into["mask"] = {k: m.clone() for k, m in ctx.mask.items()}
            into["g"] = {k: params[k].grad.detach().clone() for k in ctx.mask}  # dense: not masked yet
            into["lr"] = r.opt.param_groups[0]["lr"]
        if step == 4:
            raise Enough
        return original(self, model, step, ctx)

    monkeypatch.setattr(RigL, "after_backward", observed)
    with pytest.raises(Enough):
        r.train_epoch()
    rec = r.params["recipe"]
    wd, mu, lr = rec["weight_decay"], rec["momentum"], before["lr"]
    assert wd > 0 and mu > 0 and r.opt.param_groups[0]["weight_decay"] == wd and not rec.get("nesterov")
    grown_total = 0
    for k, old in before["mask"].items():
        m, w, g, buf = old.float(), before["w"][k], before["g"][k], before["buf"][k]
        # by hand: SGD with momentum (dampening 0) on the old-masked gradient plus weight decay, then masked
        d = (g * m).add(w, alpha=wd)
        buf1 = (buf * mu).add(d)
        w1 = w.add(buf1, alpha=-lr) * m
        # by hand: drop the floor(0.3 * active) active ones smallest in |w1| (after the step), grow as many
        # of the others by the dense |g| (ties by position, as the tweak's stable sort)
        flat, active = old.flatten(), int(old.sum())
        n = int(0.3 * active)
        score = torch.where(flat, w1.abs().flatten(), torch.full_like(w1.flatten(), -1.0))
        keep = torch.zeros_like(flat)
        keep[torch.sort(score, descending=True, stable=True).indices[:active - n]] = True
        candidates = torch.where(keep, torch.full_like(score, -math.inf), g.abs().flatten())
        expected = keep.clone()
        expected[torch.sort(candidates, descending=True, stable=True).indices[:n]] = True
        new = after["mask"][k]
        assert torch.equal(new.flatten(), expected), k
        both, grown, dropped = old & new, new & ~old, old & ~new
        torch.testing.assert_close(after["w"][k][both], w1[both], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(after["buf"][k][both], buf1[both], rtol=1e-6, atol=1e-9)
        for state in ("w", "buf"):
            assert torch.all(after[state][k][grown] == 0) and torch.all(after[state][k][dropped] == 0), (k, state)
        assert torch.all(g[grown] != 0)  # a step under the new mask would have moved them (-lr * g != 0)
        grown_total += int(grown.sum())
    assert grown_total > 0


def test_rigl_grows_only_by_the_gradient_of_the_same_step():
    """after_step needs the dense gradient after_backward kept at that step (never an older one)."""
    layer, ctx = hand_layer(GRAD), ctx_for(MASK)
    tweak = TWEAKS["rigl"](every=5, drop_fraction=0.5, decay="constant")
    tweak.after_backward(layer, 5, ctx)
    with pytest.raises(RuntimeError, match="no dense gradient of step 10"):
        tweak.after_step(layer, 10, ctx)
    tweak.after_backward(layer, 5, ctx)
    assert tweak.after_step(layer, 5, ctx) is True
    with pytest.raises(RuntimeError, match="no dense gradient of step 5"):  # taken: not kept for later
        tweak.after_step(layer, 5, ctx)


def test_resume_after_a_kill_is_bitwise_and_keeps_the_live_mask(tmp_path, digits_npz, monkeypatch, killed_run):
    """Killed after epoch 1 (the epoch checkpoint) and preempted by SIGTERM right after an update mid-epoch
    2: both resumed runs end with the uninterrupted run's weights, mask and log."""
    spec, _ = masked_lenet_spec(tmp_path, digits_npz, {"set": {"every": 3}, "rigl": {"every": 4}})
    spec["recipe"]["epochs"] = 3
    straight = Run(spec, str(tmp_path / "straight"))
    ref = straight.run()

    killed_run(spec, tmp_path / "killed")
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["mask"]  # the live mask travels
    killed = run(spec, str(tmp_path / "killed"))

    original = DynamicSparse.after_step

    def preempted_at_step_15(self, model, step, ctx):
        changed = original(self, model, step, ctx)
        if step == 15 and type(self).__name__ == "RigL":
            os.kill(os.getpid(), signal.SIGTERM)  # the run checkpoints after this step and exits
        return changed

    monkeypatch.setattr(DynamicSparse, "after_step", preempted_at_step_15)
    with pytest.raises(SystemExit):
        run(spec, str(tmp_path / "preempted"))
    monkeypatch.setattr(DynamicSparse, "after_step", original)
    assert torch.load(tmp_path / "preempted" / "checkpoint.pt", weights_only=False)["within"]["step"] == 5
    preempted = run(spec, str(tmp_path / "preempted"))

    a = load_state(tmp_path / "straight" / "final.pt")
    for out, summary in (("killed", killed), ("preempted", preempted)):
        b = load_state(tmp_path / out / "final.pt")
        assert all(torch.equal(a[k], b[k]) for k in a), out
        assert summary["tweak_log"] == ref["tweak_log"] and summary["mask_sparsity"] == ref["mask_sparsity"]


def test_monitored_run_logs_the_gradient_flow_around_each_update_and_trains_the_same(tmp_path, digits_npz):
    """The trajectory re-run (gradient-flow monitor on) measures the flow before and after every update,
    the trajectory JSON carries the curves, and the weights equal the plain run's bit for bit."""
    from ticketlab.analysis.gradflow import gradient_flow
    spec, _ = masked_lenet_spec(tmp_path, digits_npz, {"rigl": {"every": 5}})
    run(spec, str(tmp_path / "plain"))
    monitor = {"epochs": 0, "hessian_batches": 0, "hessian_batch_size": 32, "hessian_max_iter": 5, "hessian_tol": 1e-3,
               "gradflow_every": 4, "gradflow_examples": 100, "seed": 0}
    out = jobs.trajectory({**spec, "name": str(tmp_path / "mon"), "monitor": monitor, "export": False},
                          str(tmp_path / "mon.json"))
    a = load_state(tmp_path / "plain" / "final.pt")
    b = load_state(tmp_path / "mon" / "final.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = out["curves"]
    assert c["gradient_flow_delta"]["x"] == list(range(5, 22, 5))  # 2 epochs of 11 steps
    for before, after, delta in zip(c["gradient_flow_before_update"]["y"], c["gradient_flow_after_update"]["y"],
                                    c["gradient_flow_delta"]["y"]):
        assert delta == pytest.approx(after - before) and before > 0 and after > 0
    assert json.load(open(tmp_path / "mon.json"))["curves"]["gradient_flow_delta"] == c["gradient_flow_delta"]

    # the logged 'before' of the first update is the flow of the model as it was at that step
    cbs = monitors(monitor)
    r = Run({**spec, "monitor": monitor}, str(tmp_path / "again"), callbacks=cbs)
    first = {}

    def capture(model, mask):
        if not first:
            first["state"] = {k: v.clone() for k, v in model.state_dict().items()}
            first["mask"] = {k: m.clone() for k, m in mask.items()}
        return 0.0

    r.ctx.gradient_flow = capture
    r.train_epoch()
    model = build_model("lenet5", 10, in_channels=1, input_size=8)
    model.load_state_dict(first["state"])
    assert gradient_flow(model, first["mask"], *cbs[-1].examples) == pytest.approx(
        c["gradient_flow_before_update"]["y"][0], rel=1e-6)


def test_dst_needs_a_mask():
    ctx = ctx_for(MASK)
    ctx.mask = Mask()
    with pytest.raises(ValueError, match="needs a mask"):
        TWEAKS["set"](every=1).after_step(hand_layer(GRAD), 1, ctx)
    with pytest.raises(ValueError, match="needs a mask"):
        TWEAKS["rigl"](every=1).after_backward(hand_layer(GRAD), 1, ctx)
