"""GradInit (`scaling` / `lrsi`) against finite differences, hand-written Adam arithmetic and a plain
re-derivation of the released code's loop (module weights updated in place, RescaleAdam's scalar updates)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.tweaks import scaling
from ticketlab.tweaks.scaling import RescaleAdam, gradinit, scaled_names

SETTINGS = dict(eta=0.1, lr=0.05, min_scale=0.01, grad_clip=1.0, normalize_grad=True)


def tiny_masked(seed=0):
    """conv+BN twice, linear, in float64; BN affine parameters random (not 1 / 0) so that every scale
    matters; half of the conv and linear weights pruned (zeroed). No conv bias: before a BN its gradient
    is rounding noise, which Adam's normalised step would amplify into noise in the comparisons."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Conv2d(4, 4, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(36, 3)).double()
    mask = {}
    with torch.no_grad():
        for k, p in net.named_parameters():
            if k.startswith(("1.", "4.")):
                p.copy_(torch.rand_like(p) + 0.5 if k.endswith("weight") else torch.randn_like(p))
            elif k.endswith("weight"):
                mask[k] = torch.rand_like(p) < 0.5
                p.mul_(mask[k])
    return net, mask


def fixed_batches(n=12, size=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 2, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (size,), generator=g))
            for _ in range(n)]


def sampler(batch_list):
    it = iter(batch_list)
    return lambda: next(it)


def recorded_grads(monkeypatch):
    seen = []
    step = RescaleAdam.step

    def spy(self, grad, constraint):
        seen.append((grad.clone(), constraint))
        return step(self, grad, constraint)
    monkeypatch.setattr(scaling.RescaleAdam, "step", spy)
    return seen


def inner_grad(net, mask, params, x, y, inner):
    g = torch.autograd.grad(F.cross_entropy(net(x), y), list(params.values()))
    return [gi * mask[k] if inner == "masked" and k in mask else gi for k, gi in zip(params, g)]


def central_difference(f, n, h=1e-6):
    out = []
    for i in range(n):
        e = torch.zeros(n, dtype=torch.float64)
        e[i] = h
        out.append((f(1 + e) - f(1 - e)) / (2 * h))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("inner", ["dense", "masked"])
def test_first_objective_gradient_is_the_finite_difference_of_the_first_order_objective(monkeypatch, inner):
    net, mask = tiny_masked()
    (x0, y0), (x1, y1), (x2, y2) = data = fixed_batches(3)
    seen = recorded_grads(monkeypatch)
    gradinit(net, mask, sampler(data), iterations=1, gamma=1e9, inner_grad=inner, **SETTINGS)
    (grad, constraint), = seen
    assert not constraint

    ref, _ = tiny_masked()
    ref.train()  # batch statistics (the running ones are never read in training mode)
    params = dict(ref.named_parameters())
    assert list(params) == scaled_names(ref)
    p0 = {k: p.detach().clone() for k, p in params.items()}
    g = inner_grad(ref, mask, params, torch.cat([x0, x1]), torch.cat([y0, y1]), inner)
    norm = torch.sqrt(sum((gi * gi).sum() for gi in g))
    step = {k: 0.1 * gi / norm for k, gi in zip(params, g)}  # held fixed: computed once, at s = 1

    @torch.no_grad()
    def objective(s):
        for i, k in enumerate(params):
            params[k].copy_(s[i] * p0[k] - step[k])
        return F.cross_entropy(ref(torch.cat([x0, x2])), torch.cat([y0, y2])).item() / 0.1
    fd = central_difference(objective, len(params))
    assert torch.allclose(grad, fd, rtol=1e-5, atol=1e-8), (grad, fd)


@pytest.mark.parametrize("inner", ["dense", "masked"])
def test_constraint_gradient_is_the_finite_difference_of_the_gradient_norm(monkeypatch, inner):
    net, mask = tiny_masked()
    (x0, y0), (x1, y1) = data = fixed_batches(2)
    seen = recorded_grads(monkeypatch)
    gradinit(net, mask, sampler(data), iterations=1, gamma=1e-9, inner_grad=inner, **SETTINGS)
    (grad, constraint), = seen
    assert constraint

    ref, _ = tiny_masked()
    ref.train()
    params = dict(ref.named_parameters())
    p0 = {k: p.detach().clone() for k, p in params.items()}

    def gnorm(s):
        with torch.no_grad():
            for i, k in enumerate(params):
                params[k].copy_(s[i] * p0[k])
        g = inner_grad(ref, mask, params, torch.cat([x0, x1]), torch.cat([y0, y1]), inner)
        return math.sqrt(sum((gi * gi).sum().item() for gi in g))
    fd = central_difference(gnorm, len(params))
    assert torch.allclose(grad, fd, rtol=1e-5, atol=1e-8), (grad, fd)


def test_dense_and_masked_inner_gradients_differ_on_a_sparse_net(monkeypatch):
    seen = recorded_grads(monkeypatch)
    for inner in ("dense", "masked"):
        net, mask = tiny_masked()
        gradinit(net, mask, sampler(fixed_batches(3)), iterations=1, gamma=1e9, inner_grad=inner, **SETTINGS)
    assert not torch.allclose(seen[0][0], seen[1][0], rtol=1e-3)


def adam_by_hand(grads, lr, clip, b1=0.9, b2=0.999, eps=1e-8):
    """One scalar's value after Adam steps on `grads` (all objective steps), each clipped to [-clip, clip]."""
    s, m, v = 1.0, 0.0, 0.0
    for t, g in enumerate(grads, 1):
        g = max(-clip, min(clip, g))
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        s -= lr / (1 - b1 ** t) * m / (math.sqrt(v / (1 - b2 ** t)) + eps)
    return s


def test_clipping_is_per_dimension():
    steps = [[5.0, 0.1, -0.2, 0.3], [0.1, 0.2, 0.1, -0.3]]  # only the first scale's first gradient is large
    s = torch.ones(4, dtype=torch.float64)
    opt = RescaleAdam(s, torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64), lr=0.1, clip=1.0)
    for g in steps:
        opt.step(torch.tensor(g, dtype=torch.float64), constraint=False)
    expected = [adam_by_hand([g[i] for g in steps], 0.1, 1.0) for i in range(4)]
    assert torch.allclose(s, torch.tensor(expected, dtype=torch.float64), rtol=1e-12)
    # the small coordinates are as unclipped; the large one differs from its unclipped value
    assert all(math.isclose(expected[i], adam_by_hand([g[i] for g in steps], 0.1, math.inf)) for i in (1, 2, 3))
    assert not math.isclose(expected[0], adam_by_hand([g[0] for g in steps], 0.1, math.inf), rel_tol=1e-3)


def test_constraint_steps_keep_their_own_first_moment():
    s = torch.ones(1, dtype=torch.float64)
    opt = RescaleAdam(s, torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), lr=0.1, clip=0)
    opt.step(torch.tensor([1.0], dtype=torch.float64), constraint=False)   # objective: m = 0.1, t = 1
    opt.step(torch.tensor([-2.0], dtype=torch.float64), constraint=True)   # constraint: m' = -0.2, t' = 1
    opt.step(torch.tensor([3.0], dtype=torch.float64), constraint=False)   # objective: m = 0.39, t = 2
    b2 = 0.999
    v = [(1 - b2) * 1.0]
    v.append(b2 * v[0] + (1 - b2) * 4.0)
    v.append(b2 * v[1] + (1 - b2) * 9.0)
    expected = 1.0
    expected -= 0.1 / 0.1 * 0.1 / (math.sqrt(v[0] / (1 - b2)) + 1e-8)
    expected -= 0.1 / 0.1 * -0.2 / (math.sqrt(v[1] / (1 - b2 ** 2)) + 1e-8)  # shared v, corrected over all steps
    expected -= 0.1 / (1 - 0.9 ** 2) * 0.39 / (math.sqrt(v[2] / (1 - b2 ** 3)) + 1e-8)
    assert math.isclose(s.item(), expected, rel_tol=1e-12)


def test_bias_scales_floor_at_zero_and_weight_scales_at_min_scale():
    net, mask = tiny_masked()
    # lr 10: the first Adam step moves every scale by 10 against the sign of its gradient
    scales = gradinit(net, mask, sampler(fixed_batches(3)), iterations=1, gamma=1e9,
                      **{**SETTINGS, "lr": 10.0})
    for k, s in scales.items():
        floor = 0.0 if k.endswith("bias") else 0.01
        assert s == floor or math.isclose(s, 11.0, rel_tol=1e-6), (k, s)
    assert any(s == 0.0 for k, s in scales.items() if k.endswith("bias"))
    assert any(s == 0.01 for k, s in scales.items() if k.endswith("weight"))
    for k, p in net.named_parameters():
        if k.endswith("bias") and scales[k] == 0:
            assert (p == 0).all()


def test_a_bias_scale_at_zero_stays_there():
    s = torch.tensor([1.0, 1.0], dtype=torch.float64)
    opt = RescaleAdam(s, torch.ones(2, dtype=torch.float64), torch.tensor([0.01, 0.0], dtype=torch.float64),
                      lr=5.0, clip=1.0)
    opt.step(torch.tensor([1.0, 1.0], dtype=torch.float64), constraint=False)
    assert s.tolist() == [0.01, 0.0]
    opt.step(torch.tensor([-1.0, -1.0], dtype=torch.float64), constraint=False)
    assert s[0] > 0.01 and s[1] == 0.0  # the released optimiser skips a tensor whose norm is zero


@pytest.mark.parametrize("inner", ["dense", "masked"])
def test_pruned_weights_stay_exactly_zero_and_kept_ones_are_rescaled(inner):
    net, mask = tiny_masked()
    before = {k: p.detach().clone() for k, p in net.named_parameters()}
    scales = gradinit(net, mask, sampler(fixed_batches(12)), iterations=4, gamma=1.0, inner_grad=inner, **SETTINGS)
    for k, p in net.named_parameters():
        assert torch.allclose(p, before[k] * scales[k], rtol=1e-12, atol=0)
        if k in mask:
            assert (p[~mask[k]] == 0).all()


def test_running_statistics_and_modes_are_left_alone():
    net, mask = tiny_masked()
    net.train()
    stats = {k: b.clone() for k, b in net.named_buffers()}
    gradinit(net, mask, sampler(fixed_batches(12)), iterations=3, gamma=1.0, **SETTINGS)
    assert net.training and all(m.track_running_stats for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert all(torch.equal(b, stats[k]) for k, b in net.named_buffers())


def released_loop(net, mask, batch_list, iterations, eta, gamma, lr, min_scale, clip, inner, overlap):
    """The released loop re-derived: the weights of the module itself are updated in place by
    p *= alpha * init_norm / ||p||, each scale's gradient is <dL/dp, p> * init_norm / ||p||, Adam in Python
    floats with separate first moments for constraint steps. Returns the alphas and the constraint count."""
    it = iter(batch_list)
    net.eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.training, m.track_running_stats = True, False
    params = dict(net.named_parameters())
    st = {k: dict(alpha=1.0, init=p.norm().item(), t=0, tc=0, m=0.0, mc=0.0, v=0.0) for k, p in params.items()}
    cons = 0
    for _ in range(iterations):
        (x0, y0), (x1, y1) = next(it), next(it)
        loss = F.cross_entropy(net(torch.cat([x0, x1])), torch.cat([y0, y1]))
        g = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        g = [gi * mask[k] if inner == "masked" and k in mask else gi for k, gi in zip(params, g)]
        gnorm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
        for p in params.values():
            p.grad = None
        is_cons = gnorm.item() > gamma
        if is_cons:
            cons += 1
            gnorm.backward()
        else:
            x2, y2 = next(it)
            if not overlap:
                x0, y0 = next(it)
            saved = {k: p.detach().clone() for k, p in params.items()}
            with torch.no_grad():
                for (k, p), gi in zip(params.items(), g):
                    p.sub_(eta * gi / gnorm)
            (F.cross_entropy(net(torch.cat([x0, x2])), torch.cat([y0, y2])) / eta).backward()
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(saved[k])
        with torch.no_grad():
            for k, p in params.items():
                s, cur = st[k], p.norm().item()
                if s["init"] == 0 or cur == 0:
                    continue
                d = max(-clip, min(clip, (p.grad * p).sum().item() * s["init"] / cur))
                if is_cons:
                    s["tc"] += 1
                    s["mc"] = 0.9 * s["mc"] + 0.1 * d
                    t, m = s["tc"], s["mc"]
                else:
                    s["t"] += 1
                    s["m"] = 0.9 * s["m"] + 0.1 * d
                    t, m = s["t"], s["m"]
                s["v"] = 0.999 * s["v"] + 0.001 * d * d
                denom = math.sqrt(s["v"] / (1 - 0.999 ** (s["t"] + s["tc"]))) + 1e-8
                s["alpha"] = max(s["alpha"] - lr / (1 - 0.9 ** t) * m / denom, 0.0 if k.endswith("bias") else min_scale)
                p.mul_(s["alpha"] * s["init"] / cur)
    return {k: s["alpha"] for k, s in st.items()}, cons


@pytest.mark.parametrize("inner,overlap", [("dense", True), ("masked", True), ("dense", False)])
def test_scales_match_a_rederivation_of_the_released_loop(inner, overlap):
    data = fixed_batches(24)
    gamma = 1.4  # both branches occur in these 6 iterations (asserted below)
    net, mask = tiny_masked()
    log = {}
    ours = gradinit(net, mask, sampler(data), iterations=6, gamma=gamma, inner_grad=inner, batch_overlap=overlap,
                    log=log, **{**SETTINGS, "lr": 0.2})
    ref, _ = tiny_masked()
    theirs, cons = released_loop(ref, mask, data, 6, 0.1, gamma, 0.2, 0.01, 1.0, inner, overlap)
    assert 0 < cons < 6 and log["constraint_steps"] == cons
    for k in theirs:
        assert math.isclose(ours[k], theirs[k], rel_tol=1e-9, abs_tol=1e-12), (k, ours[k], theirs[k])
    assert any(abs(s - 1) > 0.1 for s in ours.values())
    for (k, p), q in zip(net.named_parameters(), ref.parameters()):
        assert torch.allclose(p, q, rtol=1e-9, atol=1e-12), k
