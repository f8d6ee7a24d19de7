"""Analyses against independent computations: the exact Hessian of a tiny masked net, hand counts."""
import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ticketlab.analysis import ANALYSES
from ticketlab.analysis.activations import activation_sparsity
from ticketlab.analysis.gradflow import gradient_flow
from ticketlab.analysis.hessian import SubnetworkHessian, density, top_eigenvalues, trace
from ticketlab.analysis.landscape import direction, loss_grid
from ticketlab.masks import Mask


@pytest.fixture(scope="module")
def tiny():
    """A conv + BN + tanh + linear net (46 parameters, 28 in the subnetwork), its mask, a batch, and
    the exact Hessian of the loss restricted to the unmasked coordinates (independent: autograd's
    full Hessian of a flat parameter vector, rows/columns of pruned weights removed)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 1, bias=False), nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(), nn.Linear(12, 3))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
    net.eval()
    x, y = torch.randn(16, 2, 2, 2), torch.randint(0, 3, (16,))
    mask = Mask({"0.weight": torch.rand(3, 2, 1, 1) > 0.4, "4.weight": torch.rand(3, 12) > 0.5})
    mask.apply_(net)
    named = [(n, p.shape) for n, p in net.named_parameters()]

    def loss(flat):
        params, i = {}, 0
        for n, s in named:
            params[n] = flat[i:i + s.numel()].view(s)
            i += s.numel()
        return F.cross_entropy(functional_call(net64, params, (x.double(),)), y)

    net64 = copy.deepcopy(net).double()
    flat = torch.cat([p.detach().flatten() for p in net.parameters()]).double()
    H = torch.autograd.functional.hessian(loss, flat)
    keep = torch.cat([mask[n].flatten() if n in mask else torch.ones(s.numel(), dtype=torch.bool) for n, s in named])
    return net, mask, x, y, H[keep][:, keep], named


def to_exact_order(sh, vec, named):
    """A vector over the subnetwork (PyHessian's parameter order) in the exact Hessian's coordinate order."""
    by_name = dict(zip(sh.names, vec))
    return torch.cat([by_name[n].flatten().double() for n, _ in named])


def test_top_eigenvalue_matches_the_exact_restricted_hessian(tiny):
    net, mask, x, y, H, _ = tiny
    exact = torch.linalg.eigvalsh(H)
    top = exact[exact.abs().argmax()].item()  # power iteration finds the largest |lambda|
    values, vectors = top_eigenvalues(net, mask, x, y, max_iter=1000, tol=1e-8)
    assert values[0] == pytest.approx(top, rel=1e-3)
    v = vectors[0]
    for k, m in mask.items():
        assert (v[k][~m] == 0).all()  # the eigenvector lives in the subnetwork
    flat = torch.cat([v[n].flatten()[mask[n].flatten()] if n in mask else v[n].flatten()
                      for n, _ in tiny[5]]).double()
    assert torch.linalg.norm(H @ flat - top * flat) < 1e-2 * abs(top)  # it is an eigenvector of H


def test_trace_samples_are_exact_quadratic_forms_and_average_to_the_trace(tiny):
    """Each Hutchinson sample equals v^T H v for the Rademacher v PyHessian drew (reproduced from the
    seed), and their mean is within 4 standard errors of the exact trace (Hutchinson's error is
    statistical: with this net's off-diagonal mass, 1% would need ~10^5 samples)."""
    net, mask, x, y, H, named = tiny
    samples = trace(net, mask, x, y, samples=3000, tol=0, seed=3)
    sh = SubnetworkHessian(net, mask, x, y)
    torch.manual_seed(3)
    for s in samples[:20]:
        v = [torch.randint_like(p, high=2) for p in sh.h.params]
        for t in v:
            t[t == 0] = -1
        f = to_exact_order(sh, v, named)
        assert s == pytest.approx((f @ H @ f).item(), rel=1e-4, abs=1e-6)
    exact = H.trace().item()
    se = np.std(samples) / np.sqrt(len(samples))
    assert abs(np.mean(samples) - exact) < 4 * se < 0.15 * exact


def test_density_finds_the_exact_spectrum_without_spurious_zeros(tiny):
    net, mask, x, y, H, named = tiny
    exact = torch.linalg.eigvalsh(H).numpy()
    assert len(exact) == 28  # 46 parameters, 18 pruned: a dense-space density would add 18 zeros
    eigs, weights = density(net, mask, x, y, iters=100, runs=2, seed=5)
    for e, w in zip(eigs, weights):
        assert len(e) == len(exact)  # Lanczos capped at the subnetwork's dimension
        np.testing.assert_allclose(sorted(e), exact, atol=2e-4)
        assert sum(w) == pytest.approx(1.0, abs=1e-5)
    # moments of the first run = v^T H^k v / v^T v for PyHessian's Rademacher start vector
    sh = SubnetworkHessian(net, mask, x, y)
    torch.manual_seed(5)
    v = [torch.randint_like(p, high=2) for p in sh.h.params]
    for t in v:
        t[t == 0] = -1
    f = to_exact_order(sh, v, named)
    f = f / f.norm()
    e, w = np.array(eigs[0]), np.array(weights[0])
    for k in (1, 2, 3):
        assert (w * e ** k).sum() == pytest.approx((f @ torch.linalg.matrix_power(H, k) @ f).item(), rel=1e-3, abs=1e-6)


def test_torch_eig_shim_is_undone(tiny):
    before = getattr(torch, "eig", None)
    density(tiny[0], tiny[1], tiny[2], tiny[3], iters=5)
    assert getattr(torch, "eig", None) is before


def test_filter_normalised_direction(tiny):
    net, mask = tiny[0], tiny[1]
    d1 = direction(net, mask, torch.Generator().manual_seed(1))
    d2 = direction(net, mask, torch.Generator().manual_seed(1))
    for name, p in net.named_parameters():
        assert torch.equal(d1[name], d2[name])
        if p.ndim <= 1:
            assert (d1[name] == 0).all(), name  # BN and bias: no perturbation
            continue
        w = p.detach() * mask[name] if name in mask else p.detach()
        np.testing.assert_allclose(d1[name].flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-5, atol=1e-8)
        if name in mask:
            assert (d1[name][~mask[name]] == 0).all()


def test_loss_grid_centre_is_the_model_and_the_model_is_untouched(tiny):
    net, mask, x, y = tiny[:4]
    before = copy.deepcopy(net.state_dict())
    dirs = [direction(net, mask, torch.Generator().manual_seed(s)) for s in (1, 2)]
    loss, acc = loss_grid(net, dirs, [[-1.0, 0.0, 1.0], [-0.5, 0.0, 0.5]], x, y)
    assert loss.shape == (3, 3)
    assert loss[1, 1] == pytest.approx(F.cross_entropy(net(x), y).item(), rel=1e-5)
    assert loss[0, 2] != pytest.approx(loss[1, 1])
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_activation_sparsity_equals_a_hand_count():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(nn.Identity(), nn.ReLU())
            self.b = nn.Sequential(nn.ReLU(), nn.SiLU())

        def stages(self):
            return [("a", self.a), ("b", self.b)]

        def forward(self, x):
            return self.b(self.a(x) - 1.0)

    x = torch.tensor([[-1.0, 0.0, 0.5, 2.0], [3.0, -2.0, 1.0, 1.5]])
    # stage a: relu(x) has zeros at -1, 0, -2 -> 3 of 8; stage b: relu(relu(x) - 1) is
    # [0,0,0,1; 2,0,0,0.5] -> 5 of 8 zeros, then silu of it: silu(0) = 0 exactly -> 5 of 8
    out = activation_sparsity(Two(), x, batch_size=1)
    assert out == {"a": pytest.approx(100 * 3 / 8), "b": pytest.approx(100 * 10 / 16)}
    assert activation_sparsity(Two(), x, batch_size=1, threshold=0.0) == out  # eps 0: the exact-zero count


class Smooth(nn.Module):
    """One stage, one SiLU: its outputs are known, so the count of |a| <= eps is a hand count."""

    def __init__(self):
        super().__init__()
        self.s = nn.Sequential(nn.SiLU())

    def stages(self):
        return [("s", self.s)]

    def forward(self, x):
        return self.s(x)


def test_activation_threshold_counts_small_outputs_as_zero():
    # silu(x) = x * sigmoid(x): 0 -> 0 exactly; ±0.01 -> 0.00502, -0.00498; ±0.03 -> 0.01522, -0.01478;
    # -6 -> -0.01484; -10 -> -0.000454; 1 -> 0.731
    x = torch.tensor([[0.0, 0.01, -0.01, 0.03, -0.03, -6.0, -10.0, 1.0]])
    silu = x * torch.sigmoid(x)
    assert int((silu == 0).sum()) == 1
    # exact zeros: only silu(0) = 0; |a| <= 0.01: 0, ±0.01 and -10; |a| <= 0.02: also ±0.03 and -6
    assert activation_sparsity(Smooth(), x, threshold=0.0) == {"s": pytest.approx(100 * 1 / 8)}
    assert activation_sparsity(Smooth(), x, threshold=0.01) == {"s": pytest.approx(100 * 4 / 8)}
    assert activation_sparsity(Smooth(), x, threshold=0.02) == {"s": pytest.approx(100 * 7 / 8)}
    relu = nn.Sequential(nn.ReLU())  # ReLU: eps adds only the outputs in (0, eps]
    relu.stages = lambda: [("r", relu)]
    assert activation_sparsity(relu, x, threshold=0.01) == {"r": pytest.approx(100 * 6 / 8)}  # 5 zeros and 0.01


def test_activation_threshold_is_an_analysis_setting_checked_by_the_schema():
    import yaml

    from conftest import REPO
    from ticketlab.config import ConfigError, validate
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    fn = ANALYSES.get("activations")
    assert fn.defaults["threshold"] == 0.0  # exact zeros unless the configuration says otherwise
    out = fn(Smooth(), None, type("D", (), {"split": {"test": (torch.tensor([[0.0, 0.005, 1.0]]), None)},
                                             "normalize": staticmethod(lambda x: x)})(),
             {**fn.defaults, "threshold": 0.01})
    assert out["threshold"] == 0.01 and out["stages"]["s"] == pytest.approx(100 * 2 / 3)
    validate({**cfg, "analyses": {**cfg["analyses"], "activations": {"kind": "activations", "threshold": 0.01}}})
    validate({**cfg, "analyses": {**cfg["analyses"], "activations": {"kind": "activations", "threshold": 0}}})
    with pytest.raises(ConfigError, match=r"analyses\.activations\.threshold"):
        validate({**cfg, "analyses": {**cfg["analyses"], "activations": {"kind": "activations", "threshold": -0.1}}})
    with pytest.raises(ConfigError, match=r"analyses\.hessian\.threshold: unknown setting"):
        validate({**cfg, "analyses": {**cfg["analyses"], "hessian": {"kind": "hessian", "threshold": 0.01}}})


def test_gradient_flow_equals_a_direct_computation():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    net.eval()
    mask = Mask({"0.weight": torch.rand(4, 2, 3, 3) > 0.5})
    mask.apply_(net)
    x, y = torch.randn(10, 2, 4, 4), torch.randint(0, 3, (10,))
    net[4].weight.grad = torch.ones_like(net[4].weight)
    buffers = copy.deepcopy(dict(net.named_buffers()))
    value = gradient_flow(net, mask, x, y)
    ref = copy.deepcopy(net).train()
    grads = torch.autograd.grad(F.cross_entropy(ref(x), y), list(ref.parameters()))
    names = [n for n, _ in ref.named_parameters()]
    expected = torch.sqrt(sum(((g * mask[n]) if n in mask else g).pow(2).sum() for n, g in zip(names, grads)))
    assert value == pytest.approx(expected.item(), rel=1e-5)
    assert not net.training and torch.equal(net[4].weight.grad, torch.ones_like(net[4].weight))
    assert all(torch.equal(buffers[k], b) for k, b in net.named_buffers())


def test_every_kind_runs_on_a_ticketlab_model(digits_npz):
    from ticketlab.masks import magnitude_prune, prunable
    from ticketlab.models import build_model
    from ticketlab.training import Data
    torch.manual_seed(0)
    model = build_model("resnet18", 10, in_channels=1, input_size=8, width=0.0625).eval()
    mask = magnitude_prune({k: p.detach() for k, p in prunable(model).items()}, 0.8)
    mask.apply_(model)
    data = Data(digits_npz, torch.device("cpu"))
    small = {"hessian": dict(batches=2, batch_size=32, max_iter=5, trace_samples=3, density_iters=5),
             "perturbation": dict(batch_size=32, max_iter=5, steps=3),
             "landscape": dict(steps=3, examples=50), "activations": {}}
    before = copy.deepcopy(model.state_dict())
    for kind, over in small.items():
        fn = ANALYSES.get(kind)
        out = fn(model, mask, data, {**fn.defaults, **over})
        json.dumps(out)  # JSON-able
        assert all(np.isfinite(v) for v in np.ravel(out.get("loss", [0.0])))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    out = ANALYSES.get("activations")(model, mask, data, ANALYSES.get("activations").defaults)
    assert out["order"] == ["layer1", "layer2", "layer3", "layer4"]
    h = ANALYSES.get("hessian")(model, mask, data, {**ANALYSES.get("hessian").defaults, **small["hessian"]})
    assert h["dim"] == sum(p.numel() for p in model.parameters()) - (mask.total - mask.kept)
