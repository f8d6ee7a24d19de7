"""RST (dlth): λ's schedule by hand, the penalty gradient, the nested cycle masks, the extrusion in a
tiny run, the schedule check and a bitwise resume after a kill mid-transformation."""
from types import SimpleNamespace

import pytest
import torch

from conftest import same_weights, tiny_spec
from ticketlab.masks import Mask, PruneContext, covered
from ticketlab.models import build_model
from ticketlab.pruners.zoo import random_mask
from ticketlab.training import Run, run
from ticketlab.tweaks import TWEAKS, Tweak
from ticketlab.tweaks.rst import cycle_masks, cycle_steps, rst_lambda
from ticketlab.weights_io import load as load_state

PAPER = dict(eta=1e-4, every=5, bound=1.0, stabilise=40000)   # section 6
ITER = dict(eta=1e-4, every=1, bound=1.0, stabilise=10000)    # RST-Iter


@pytest.mark.parametrize("step, cycle, lam", [
    (0, 0, 0.0), (4, 0, 0.0), (5, 0, 1e-4), (12, 0, 2e-4), (4999, 0, 999e-4),
    (49999, 0, 0.9999), (50000, 0, 1.0), (89999, 0, 1.0)])
def test_lambda_follows_the_papers_schedule(step, cycle, lam):
    # +1e-4 every 5 iterations from 0 until 1 (10,000 x 5 = 50,000 steps), then 40,000 more at 1
    assert cycle_steps(**PAPER) == 90000
    got = rst_lambda(step, **PAPER)
    assert got[0] == cycle and got[1] == pytest.approx(lam, abs=1e-12)


@pytest.mark.parametrize("step, cycle, lam", [
    (0, 0, 0.0), (7, 0, 7e-4), (10000, 0, 1.0), (19999, 0, 1.0),
    (20000, 1, 0.0), (20003, 1, 3e-4), (29999, 1, 0.9999), (30000, 1, 1.0), (99999, 4, 1.0)])
def test_lambda_restarts_every_cycle_with_the_iter_settings(step, cycle, lam):
    assert cycle_steps(**ITER) == 20000  # the paper's 25.6 epochs per cycle = 20,000 x 64 / 50,000
    got = rst_lambda(step, **ITER)
    assert got[0] == cycle and got[1] == pytest.approx(lam, abs=1e-12)


def test_lambda_stops_exactly_at_a_bound_that_is_not_a_multiple_of_eta():
    s = dict(eta=0.3, every=2, bound=1.0, stabilise=3)  # 0, .3, .6, .9, then 1 (cut at the bound)
    assert cycle_steps(**s) == 4 * 2 + 3
    assert [rst_lambda(t, **s)[1] for t in range(11)] == pytest.approx([0, 0, .3, .3, .6, .6, .9, .9, 1, 1, 1])
    assert rst_lambda(11, **s) == (1, 0.0)


def resnet(seed=0):
    torch.manual_seed(seed)
    return build_model("resnet20", 10, in_channels=1, input_size=8, width=0.25)


def ticket(model, sparsity=0.8, seed=3) -> Mask:
    weights = covered(model, "conv_linear", ["first", "last"])
    return random_mask(PruneContext(model=model, weights=weights, sparsity=sparsity, spec={},
                                    generator=torch.Generator().manual_seed(seed)))


def test_cycle_masks_nest_uniformly_and_end_at_the_target():
    model = resnet()
    target = ticket(model, 0.9)
    masks = cycle_masks(target, 5, seed=7)
    for k, m in target.items():
        n, removed = m.numel(), int((~m).sum())
        previous = torch.ones_like(m)
        for c, mc in enumerate(masks, start=1):
            assert int((~mc[k]).sum()) == (removed if c == 5 else round(n * (1 - (1 - removed / n) ** (c / 5))))
            assert not (mc[k] & ~previous).any()   # nested: nothing removed comes back
            assert (mc[k] | ~m).all()              # the target's weights are never removed
            previous = mc[k]
        assert torch.equal(masks[-1][k], m)
    other = cycle_masks(target, 5, seed=8)
    assert not all(torch.equal(a[k], b[k]) for a, b in zip(masks[:-1], other[:-1]) for k in target)  # random order
    again = cycle_masks(target, 5, seed=7)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(masks, again) for k in target)  # a function of the seed


def rst_ctx(model, target, total, seed=0):
    live = Mask({k: m.clone() for k, m in target.items()})
    return SimpleNamespace(target_mask=target, mask=live, spec={"seed": seed}, total_steps=total, steps_per_epoch=10,
                           log={})


def test_penalty_gradient_is_lambda_w_on_the_masked_weights_and_zero_elsewhere():
    model = resnet()
    target = ticket(model)
    tweak = TWEAKS["rst"](**PAPER)
    ctx = rst_ctx(model, target, 90000)
    tweak.on_init(model, ctx.mask, ctx)
    assert all(m.all() for m in ctx.mask.values())  # the dense network trains
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    assert tweak.after_backward(model, 12, ctx) is False  # λ = 2e-4, no mask change
    params = dict(model.named_parameters())
    for k, p in params.items():
        if k in target:
            expected = torch.where(target[k], torch.zeros_like(p), 2e-4 * p.detach())
            assert torch.equal(p.grad, expected), k
        else:  # BN, the dense first conv and FC layer: no penalty
            assert not p.grad.any(), k


def test_after_the_last_step_the_penalised_weights_are_removed():
    model = resnet()
    target = ticket(model)
    tweak = TWEAKS["rst"](eta=0.5, every=1, bound=1.0, stabilise=2, cycles=2)  # 4 steps per cycle
    ctx = rst_ctx(model, target, 8)
    tweak.on_init(model, ctx.mask, ctx)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    first = cycle_masks(target, 2, seed=0)[0]
    assert [tweak.after_backward(model, s, ctx) for s in range(8)] == [False] * 4 + [True, False, False, True]
    assert all(torch.equal(ctx.mask[k], target[k]) for k in target)
    assert ctx.log["rst"]["cycle_sparsity"] == pytest.approx([first.sparsity, target.sparsity])


class Probe(Tweak):
    """Test tweak: logs the norm of the weights outside the mask file's mask before every update."""

    def after_backward(self, model, step, ctx):
        params = dict(model.named_parameters())
        sq = sum(float((params[k].detach()[~m] ** 2).sum()) for k, m in ctx.target_mask.items())
        ctx.log.setdefault("masked_norm", []).append(sq ** 0.5)
        return False


TWEAKS.register("_rst_probe")(Probe)


@pytest.fixture(scope="module")
def mask_file(tmp_path_factory, digits_npz):
    """(mask file, dense init file, mask) of a random 80% ticket of a ResNet-20 at quarter width."""
    where = tmp_path_factory.mktemp("ticket")
    probe = Run(tiny_spec(digits_npz, model={"arch": "resnet20", "width": 0.25}), str(where / "probe"))
    torch.save(probe.model.state_dict(), where / "init.pt")
    target = ticket(probe.model, 0.8)
    target.save(str(where / "m.pt"))
    return str(where / "m.pt"), str(where / "init.pt"), target


def rst_spec(digits_npz, mask, init, steps, epochs, **rst):
    """A transformation run (batch 64, constant LR). Momentum 0.5 (the paper: 0.9) so that a few steps
    show the extrusion: under momentum beta the masked weights shrink by at most sqrt(beta) per step."""
    spec = tiny_spec(digits_npz, model={"arch": "resnet20", "width": 0.25}, mask=mask,
                     init={"from": "file", "path": init}, tweaks={"rst": rst, "_rst_probe": {}})
    spec["recipe"] = {**spec["recipe"], "epochs": epochs, "steps": steps, "batch_size": 64, "lr": 0.1,
                      "momentum": 0.5, "milestones": []}
    return spec


def test_rst_extrudes_the_masked_weights_and_trains_the_others(tmp_path, digits_npz, mask_file):
    mask, init, target = mask_file
    theta0 = load_state(init)
    norms, finals = {}, {}
    for bound in (0.01, 0.1, 1.0):  # 21 steps = one epoch of the digits at batch 64: 5 increments + 16 at the bound
        spec = rst_spec(digits_npz, mask, init, 21, 1, eta=bound / 5, every=1, bound=bound, stabilise=16)
        summary = run(spec, str(tmp_path / f"b{bound}"))
        norms[bound] = summary["tweak_log"]["masked_norm"]
        finals[bound] = load_state(tmp_path / f"b{bound}" / "final.pt")
        assert summary["mask_sparsity"] == pytest.approx(target.sparsity)  # the transformed subnetwork
    start = norms[1.0][0]
    assert start == pytest.approx(sum(float((theta0[k][~m] ** 2).sum()) for k, m in target.items()) ** 0.5)
    last = [norms[b][-1] for b in (0.01, 0.1, 1.0)]
    assert last[0] > last[1] > last[2] and last[2] < 0.1 * start  # falls monotonically in λ; at λ = 1 to ~ -g/λ
    for k, m in target.items():
        w = finals[1.0][k]
        assert not w[~m].any()                                   # removed at the end
        assert (w[m] - theta0[k][m]).abs().max() > 1e-3, k       # the kept weights trained
    assert any(not torch.equal(finals[1.0][k], theta0[k]) for k in theta0 if k not in target and k.endswith("weight"))


def test_rst_says_when_the_recipe_does_not_cover_its_schedule(tmp_path, digits_npz, mask_file):
    mask, init, _ = mask_file
    spec = rst_spec(digits_npz, mask, init, 20, 1, eta=0.2, every=1, bound=1.0, stabilise=16)
    with pytest.raises(ValueError, match=r"21 optimisation steps .* set the variant's recipe.steps to 21"):
        run(spec, str(tmp_path / "short"))


def test_rst_resumes_bitwise_after_a_kill_mid_transformation(tmp_path, digits_npz, mask_file, killed_run):
    mask, init, _ = mask_file
    # two cycles of 31 steps: the kill after epoch 1 (step 21) falls before the removal at step 31
    spec = rst_spec(digits_npz, mask, init, 62, 3, eta=0.25, every=2, bound=1.0, stabilise=23, cycles=2)
    whole = run(spec, str(tmp_path / "whole"))
    killed_run(spec, tmp_path / "killed")
    resumed = run(spec, str(tmp_path / "killed"))
    assert same_weights(tmp_path / "whole" / "final.pt", tmp_path / "killed" / "final.pt")
    assert resumed["tweak_log"] == whole["tweak_log"]
