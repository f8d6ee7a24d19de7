"""Tweaks against hand-written formulas and stated properties."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from types import SimpleNamespace

from ticketlab import tweaks
from ticketlab.masks import magnitude_prune, prunable
from ticketlab.models import build_model
from ticketlab.tweaks.scaling import gradinit, scaled_names
from ticketlab.tweaks.soft_labels import kd_loss, smoothed_targets

LOGITS = np.array([[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 3.0, -2.0], [-1.0, -1.0, -1.0, 4.0]])
Y = np.array([0, 2, 1])


def np_log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


@pytest.mark.parametrize("style", ["uniform", "others"])
def test_label_smoothing_equals_hand_formula(style):
    a, k = 0.1, LOGITS.shape[1]
    target = np.full(LOGITS.shape, a / k if style == "uniform" else a / (k - 1))
    for i, y in enumerate(Y):
        target[i, y] = 1 - a + a / k if style == "uniform" else 1 - a
    expected = -(target * np_log_softmax(LOGITS)).sum(1).mean()
    fn = tweaks.TWEAKS["ls"](alpha=a, style=style).loss(None)
    got = fn(torch.tensor(LOGITS), torch.tensor(Y), None).item()
    assert math.isclose(got, expected, rel_tol=1e-9)
    if style == "uniform":  # the paper's formula is torch's label_smoothing
        assert math.isclose(F.cross_entropy(torch.tensor(LOGITS), torch.tensor(Y), label_smoothing=a).item(),
                            expected, rel_tol=1e-9)


def test_kd_equals_hand_formula():
    teacher = LOGITS[::-1].copy() * 0.7
    T, a = 5.0, 0.9
    q, logp = np.exp(np_log_softmax(teacher / T)), np_log_softmax(LOGITS / T)
    kl = (q * (np.log(q) - logp)).sum(1).mean()  # batch mean of KL(q || p)
    ce = -np_log_softmax(LOGITS)[np.arange(3), Y].mean()
    expected = a * T * T * kl + (1 - a) * ce
    got = kd_loss(torch.tensor(LOGITS), torch.tensor(teacher), torch.tensor(Y), T, a).item()
    assert math.isclose(got, expected, rel_tol=1e-9)
    # spend's section 3.2 form: L_KD = KL(q^T || p^T) alone (no T^2, no CE), one setting away
    fn = tweaks.TWEAKS["kd"](temperature=T, form="kl").loss(
        SimpleNamespace(teacher=lambda: lambda x: torch.tensor(teacher)))
    assert math.isclose(fn(torch.tensor(LOGITS), torch.tensor(Y), None).item(), kl, rel_tol=1e-9)


def test_kd_tweak_uses_the_teacher_on_the_same_inputs():
    teacher = torch.nn.Linear(3, 4)
    x = torch.randn(3, 3)
    fn = tweaks.TWEAKS["kd"]().loss(SimpleNamespace(teacher=lambda: teacher))
    logits = torch.tensor(LOGITS, dtype=torch.float32)
    expected = kd_loss(logits, teacher(x).detach(), torch.tensor(Y), 5.0, 0.9)
    assert torch.allclose(fn(logits, torch.tensor(Y), x), expected)


def tiny_masked(seed=0, **kw):
    torch.manual_seed(seed)
    net = build_model("resnet18", 10, in_channels=1, input_size=8, width=0.0625, **kw)
    mask = magnitude_prune({k: p.detach() for k, p in prunable(net).items()}, 0.7)
    mask.apply_(net)
    return net, mask


def test_scaling_rescales_each_tensor_by_its_learned_scalar_and_keeps_pruned_zero():
    net, mask = tiny_masked()
    before = {k: p.detach().clone() for k, p in net.named_parameters()}
    g = torch.Generator().manual_seed(0)
    batches = lambda: (torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g))  # noqa: E731
    scales = gradinit(net, mask, batches, iterations=5, eta=0.1, gamma=1.0, lr=0.05, min_scale=0.01,
                      grad_clip=1.0, normalize_grad=True)
    after = dict(net.named_parameters())
    assert set(scales) == set(scaled_names(net)) == set(after)
    assert any(abs(s - 1) > 1e-3 for s in scales.values())  # it learned something
    for k, s in scales.items():
        nb, na = before[k].norm().item(), after[k].norm().item()
        assert math.isclose(na, s * nb, rel_tol=1e-5, abs_tol=1e-8), k
        assert s >= 0.01
    for k, m in mask.items():
        assert (after[k][~m] == 0).all()


def test_skip_tweak_keeps_shapes_and_changes_the_function():
    torch.manual_seed(0)
    (skip,) = tweaks.build({"skip": {}})
    plain = build_model("resnet18", 10, in_channels=1, input_size=8, width=0.125)
    tweaked = build_model("resnet18", 10, in_channels=1, input_size=8, width=0.125, **skip.model_kwargs())
    tweaked.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(4, 1, 8, 8)
    plain.eval(), tweaked.eval()
    assert plain(x).shape == tweaked(x).shape == (4, 10)
    assert not torch.allclose(plain(x), tweaked(x))


def test_activation_tweaks_replace_every_relu():
    (sw,) = tweaks.build({"swish": {}})
    net = build_model("resnet18", 10, width=0.125, **sw.model_kwargs())
    kinds = {type(m) for m in net.modules()}
    assert torch.nn.SiLU in kinds and torch.nn.ReLU not in kinds


def test_conflicting_tweaks_are_rejected():
    with pytest.raises(ValueError, match="swish.*mish|mish.*swish"):
        tweaks.build({"swish": {}, "mish": {}})
    with pytest.raises(ValueError, match="loss"):
        tweaks.build({"ls": {}, "kd": {}})


def test_soft_labels_under_bf16_autocast_are_the_fp32_formula():
    """Logits from a layer under CPU bf16 autocast: LS and KD build their targets and loss in fp32, so they
    equal the fp32 formula on the same (bf16-valued) logits; bf16 targets would give the true class of a
    100-class problem 0.8984 instead of 0.901."""
    torch.manual_seed(0)
    layer, teacher = torch.nn.Linear(8, 100), torch.nn.Linear(8, 100)
    x, y = torch.randn(16, 8), torch.randint(0, 100, (16,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        assert logits.dtype == torch.bfloat16
        ls = tweaks.TWEAKS["ls"](alpha=0.1).loss(None)(logits, y, x)
        kd = tweaks.TWEAKS["kd"]().loss(SimpleNamespace(teacher=lambda: teacher))(logits, y, x)
    z = logits.detach().float()
    target = F.one_hot(y, 100).float() * 0.9 + 0.1 / 100
    assert target[0, y[0]].item() == pytest.approx(0.901) and torch.allclose(target.sum(1), torch.ones(16))
    assert ls.dtype == torch.float32 and torch.allclose(ls, -(target * F.log_softmax(z, 1)).sum(1).mean(), atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        t = teacher(x).float()
    assert kd.dtype == torch.float32 and torch.allclose(kd, kd_loss(z, t, y, 5.0, 0.9), atol=1e-6)
    bf16_target = smoothed_targets(y, 100, 0.1, "uniform", torch.bfloat16)  # what the logits' dtype would give
    assert abs(bf16_target[0, y[0]].item() - 0.901) > 1e-3
