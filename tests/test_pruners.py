"""The pruning-method zoo: exact counts, SNIP / GraSP scores against hand computations, SynFlow against a
hand-rolled run of the released code's schedule, its conservation and no layer collapse, layer-wise methods
(random, l1, ratios_from)."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ticketlab.pruners import zoo as pruners
from ticketlab.masks import Mask, MaskError, PruneContext, magnitude_prune, prunable, target_removed
from ticketlab.models import build_model
from ticketlab.pruners import MASK_METHODS
from ticketlab.pruners.zoo import grasp_scores, snip_scores, synflow_scores

LAYERWISE = {"random", "l1", "ratios_from"}
REFERENCE = {"snip", "grasp", "synflow", "random_global"}  # the released code's count (Synaptic-Flow's _global_mask)
ZOO = ["random", "random_global", "magnitude_init", "l1", "snip", "grasp", "synflow", "ratios_from"]


def resnet(arch="resnet20", width=0.25):
    """resnet20 on 8x8 inputs: feature maps 8/4/2 (resnet18's last stage would be 1x1, where 8 of a 3x3
    kernel's 9 taps only see padding: tied zero scores, see test_reference_ties_at_the_threshold_keep_the_count)."""
    torch.manual_seed(0)
    return build_model(arch, 10, in_channels=1, input_size=8, width=width)


def fixed_batches(shape, classes, n=2, size=32, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = [(torch.randn(size, *shape, generator=g).to(dtype), torch.randint(0, classes, (size,), generator=g))
            for _ in range(n)]
    it = iter(range(10 ** 9))
    return data, (lambda: data[next(it) % n])  # the i-th call returns batch i mod n


def context(net, sparsity, layers="conv", source=None, shape=(1, 8, 8), classes=10, seed=1, **spec):
    _, batches = fixed_batches(shape, classes)
    return PruneContext(model=net, weights=prunable(net, layers), sparsity=sparsity, spec=spec, source=source,
                        batches=batches, generator=torch.Generator().manual_seed(seed))


def kept_set(mask):
    return {(k, i) for k, m in mask.items() for i in torch.nonzero(m.flatten()).flatten().tolist()}


def removed(mask, k=None):
    return sum(int((~m).sum()) for name, m in mask.items() if k is None or name == k)


def floor_removed(total, sparsity):
    """Synaptic-Flow's count, written out: the density kept is 1 - sparsity, k = int((1.0 - density) * N)."""
    density = 1.0 - sparsity
    return int((1.0 - density) * total)


def expected_removed(method, total, sparsity):
    return floor_removed(total, sparsity) if method in REFERENCE else target_removed(total, sparsity)


def tiny_convnet(seed=0, dtype=torch.float64):
    """conv-BN-ReLU-conv(stride 2)-BN-ReLU-linear on (2, 5, 5) inputs; BN parameters and running statistics
    random and signed (so that SynFlow's |.| matters), 72 + 216 + 162 = 450 prunable weights."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Conv2d(4, 6, 3, padding=1, stride=2, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.Flatten(), nn.Linear(54, 3))
    with torch.no_grad():
        for bn in (net[1], net[4]):
            bn.weight.normal_(), bn.bias.normal_(), bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2)
    return net.to(dtype)


def tiny_forward(p, x, train):
    """tiny_convnet's forward in plain functional torch, from a dict of its tensors."""
    def bn(h, i):
        return F.batch_norm(h, p[f"{i}.running_mean"].clone(), p[f"{i}.running_var"].clone(), p[f"{i}.weight"],
                            p[f"{i}.bias"], training=train, eps=1e-5)
    h = F.relu(bn(F.conv2d(x, p["0.weight"], padding=1), 1))
    h = F.relu(bn(F.conv2d(h, p["3.weight"], stride=2, padding=1), 4))
    return F.linear(h.flatten(1), p["7.weight"], p["7.bias"])


def mlp(*sizes, bias=True, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b, bias=bias), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).to(dtype)


@pytest.mark.parametrize("sparsity", [0.2, 0.9, 0.999])
@pytest.mark.parametrize("method", ZOO)
def test_every_method_hits_the_exact_sparsity_and_leaves_the_model_alone(method, sparsity):
    net = resnet()
    before = copy.deepcopy(net.state_dict())
    source = MASK_METHODS.get("magnitude_init")(context(net, sparsity)) if method == "ratios_from" else None
    ctx = context(net, sparsity, source=source, rounds=10)  # synflow: 10 rounds here, for time
    mask = MASK_METHODS.get(method)(ctx)
    assert set(mask) == set(ctx.weights)
    assert all(m.dtype == torch.bool and m.shape == ctx.weights[k].shape for k, m in mask.items())
    if method in LAYERWISE and method != "ratios_from":
        for k, m in mask.items():
            assert removed(mask, k) == target_removed(m.numel(), sparsity), k
    else:
        assert removed(mask) == expected_removed(method, mask.total, sparsity)
    mask.report()  # empty layers (at 99.9%) are reported, not a crash
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics untouched
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow"])
def test_data_methods_cover_linear_layers_too(method):
    net = resnet()
    mask = MASK_METHODS.get(method)(context(net, 0.8, layers="conv_linear", rounds=5))
    assert "fc.weight" in mask and removed(mask) == floor_removed(mask.total, 0.8)


def test_snip_keeps_the_top_gradient_times_weight():
    net = mlp(12, 16, 5)
    data, batches = fixed_batches((12,), 5, n=2, dtype=torch.float64)
    ctx = PruneContext(model=net, weights=prunable(net, "conv_linear"), sparsity=0.7, spec={"batches": 2},
                       batches=batches)
    # by hand, on a separate copy: L = sum over both batches of the mean cross-entropy
    ref = copy.deepcopy(net)
    ws = [ref[0].weight, ref[2].weight]
    loss = sum(nn.functional.cross_entropy(ref(x), y) for x, y in data)
    grads = torch.autograd.grad(loss, ws)
    hand = {"0.weight": (ws[0] * grads[0]).abs().detach(), "2.weight": (ws[1] * grads[1]).abs().detach()}
    got = snip_scores(ctx)
    assert all(torch.allclose(got[k], hand[k], rtol=1e-10, atol=1e-14) for k in hand)
    mask = MASK_METHODS.get("snip")(ctx)
    flat = torch.cat([hand["0.weight"].flatten(), hand["2.weight"].flatten()])
    n_keep = flat.numel() - floor_removed(flat.numel(), 0.7)
    top = set(torch.topk(flat, n_keep).indices.tolist())
    n0 = hand["0.weight"].numel()
    assert kept_set(mask) == {("0.weight", i) if i < n0 else ("2.weight", i - n0) for i in top}


@pytest.mark.parametrize("temperature", [200.0, 1.0])
def test_grasp_score_is_minus_theta_hg_and_removes_the_highest(temperature):
    net = mlp(10, 12, 8, 4, seed=3)
    data, batches = fixed_batches((10,), 4, n=2, dtype=torch.float64, seed=3)
    ctx = PruneContext(model=net, weights=prunable(net, "conv_linear"), sparsity=0.6,
                       spec={"batches": 2, "temperature": temperature}, batches=batches)
    names = list(ctx.weights)
    theta = tuple(ctx.weights[k].detach().clone() for k in names)

    def loss(*w):  # L(theta) over the same batches, logits / T, weights as explicit inputs
        params = {**dict(net.named_parameters()), **dict(zip(names, w))}
        return sum(nn.functional.cross_entropy(functional_call(net, params, (x,)) / temperature, y) for x, y in data)

    g = torch.autograd.grad(loss(*[t.requires_grad_() for t in theta]), theta)
    _, hg = torch.autograd.functional.hvp(loss, tuple(t.detach() for t in theta), g)
    hand = {k: -t.detach() * h for k, t, h in zip(names, theta, hg)}
    got = grasp_scores(ctx)
    scale = max(float(v.abs().max()) for v in hand.values())
    assert scale > 0
    assert all(torch.allclose(got[k], hand[k], rtol=1e-7, atol=1e-9 * scale) for k in names)
    # the paper's convention: the weights with the highest S = -theta * Hg are removed
    mask = MASK_METHODS.get("grasp")(ctx)
    flat = torch.cat([hand[k].flatten() for k in names])
    n_rm = floor_removed(flat.numel(), 0.6)  # 148 of 248 (round: 149)
    keep = set(torch.topk(-flat, flat.numel() - n_rm).indices.tolist())  # lowest S
    offsets = {k: sum(hand[j].numel() for j in names[:i]) for i, k in enumerate(names)}
    assert {offsets[k] + i for k, i in kept_set(mask)} == keep
    kept_s = [float(hand[k].flatten()[i]) for k, i in kept_set(mask)]
    removed_s = [float(v) for k in names for v in hand[k][~mask[k]].flatten()]
    assert max(kept_s) <= min(removed_s)


def test_synflow_conserves_the_flow_layer_to_layer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.ReLU(),
                        nn.Conv2d(4, 6, 3, padding=1, stride=2, bias=False), nn.ReLU(), nn.Flatten(),
                        nn.Linear(6 * 3 * 3, 7, bias=False), nn.ReLU(), nn.Linear(7, 3, bias=False))
    names = list(prunable(net, "conv_linear"))
    assert len(names) == 4
    absnet = copy.deepcopy(net).double()
    with torch.no_grad():
        for p in absnet.parameters():
            p.abs_()
    with torch.no_grad():
        r = float(absnet(torch.ones(1, 2, 5, 5, dtype=torch.float64)).sum())
    scores = synflow_scores(net, names, None, (2, 5, 5))
    for k in names:  # every layer's incoming scores sum to R (Tanaka et al., Theorem 2)
        assert float(scores[k].sum()) == pytest.approx(r, rel=1e-10), k
    # still so under a mask (pruned weights score 0), and the caller's signed weights are untouched
    g = torch.Generator().manual_seed(0)
    mask = Mask({k: torch.rand(p.shape, generator=g) > 0.3 for k, p in prunable(net, "conv_linear").items()})
    scores = synflow_scores(net, names, mask, (2, 5, 5))
    sums = [float(scores[k].sum()) for k in names]
    assert sums[0] > 0 and all(s == pytest.approx(sums[0], rel=1e-10) for s in sums)
    assert all(float(scores[k][~mask[k]].abs().sum()) == 0 for k in names)
    assert any(float(p.detach().min()) < 0 for p in net.parameters())


def test_synflow_avoids_the_layer_collapse_of_global_magnitude():
    net = mlp(16, 64, 64, 64, 10, dtype=torch.float32)
    with torch.no_grad():
        net[2].weight.mul_(1e-2)  # one layer with much smaller weights
    weights = prunable(net, "conv_linear")
    sparsity = 0.8
    magnitude = magnitude_prune({k: w.detach() for k, w in weights.items()}, sparsity)
    assert magnitude.report()["empty_layers"] == ["2.weight"]  # the whole small layer is gone
    ctx = PruneContext(model=net, weights=weights, sparsity=sparsity, spec={},  # rounds: the default 100
                       batches=lambda: (torch.zeros(4, 16), torch.zeros(4, dtype=torch.long)))
    mask = MASK_METHODS.get("synflow")(ctx)
    assert removed(mask) == floor_removed(mask.total, sparsity)
    assert mask.report()["empty_layers"] == []
    assert min(int(m.sum()) for m in mask.values()) >= 10


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_one_shot_counts_are_the_reference_floor(method):
    net = mlp(12, 16, 5)  # 272 weights: at 90% the floor removes 244, round would remove 245
    _, batches = fixed_batches((12,), 5, n=1, dtype=torch.float64)
    ctx = PruneContext(model=net, weights=prunable(net, "conv_linear"), sparsity=0.9, spec={}, batches=batches)
    mask = MASK_METHODS.get(method)(ctx)
    assert mask.total == 272 and floor_removed(272, 0.9) == 244 != round(0.9 * 272)
    assert removed(mask) == 244 and mask.kept == 28


def test_snip_with_conv_linear_ranks_the_classifier_with_the_convs():
    net = tiny_convnet(seed=1, dtype=torch.float32)
    data, batches = fixed_batches((2, 5, 5), 3, n=1)
    ctx = PruneContext(model=net, weights=prunable(net, "conv_linear"), sparsity=0.8, spec={}, batches=batches)
    names = list(ctx.weights)
    assert names == ["0.weight", "3.weight", "7.weight"]
    # by hand: |w * dL/dw| on a copy (BN in train mode, one batch), one global ranking of all 450 weights
    ref = copy.deepcopy(net).train()
    ws = [dict(ref.named_parameters())[k] for k in names]
    x, y = data[0]
    grads = torch.autograd.grad(F.cross_entropy(ref(x), y), ws)
    flat = np.concatenate([(w * g).abs().detach().numpy().ravel() for w, g in zip(ws, grads)])
    threshold = np.sort(flat)[floor_removed(flat.size, 0.8) - 1]
    mask = MASK_METHODS.get("snip")(ctx)
    assert np.array_equal(np.concatenate([mask[k].numpy().ravel() for k in names]), flat > threshold)
    densities = [float(mask[k].float().mean()) for k in names]
    assert 0 < densities[2] < 1 and len(set(densities)) == 3  # the classifier pruned, at its own global ratio


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_synflow_equals_a_hand_rolled_reference_schedule(bn_mode, monkeypatch):
    """Three rounds at 95% on tiny_convnet, re-derived from Tanaka et al.'s released code: the |theta| net,
    an all-ones input, R = sum of the outputs, scores |theta * dR/dtheta| (pruned weights zero), round k's
    density (1 - s)^(k/3), k = int((1 - density) N) removed, every score <= the k-th smallest pruned."""
    net, s, rounds = tiny_convnet(), 0.95, 3
    names = list(prunable(net, "conv_linear"))
    ours = []  # (scores, mask) of each round, as synflow_mask ranks them
    real = pruners._prune_scores

    def record(scores, current, sparsity, count="round"):
        out = real(scores, current, sparsity, count)
        ours.append((scores, out))
        return out
    monkeypatch.setattr(pruners, "_prune_scores", record)
    ctx = PruneContext(model=net, weights=prunable(net, "conv_linear"), sparsity=s,
                       spec={"rounds": rounds, "bn_mode": bn_mode},
                       batches=lambda: (torch.zeros(4, 2, 5, 5), torch.zeros(4, dtype=torch.long)))
    final = MASK_METHODS.get("synflow")(ctx)

    absolute = {k: v.detach().abs() for k, v in net.state_dict().items() if v.is_floating_point()}
    mask = {k: torch.ones_like(absolute[k], dtype=torch.bool) for k in names}
    counts = []
    for k in range(1, rounds + 1):
        w = {n: (absolute[n] * mask[n]).requires_grad_() for n in names}
        r = tiny_forward({**absolute, **w}, torch.ones(1, 2, 5, 5, dtype=torch.float64), bn_mode == "train").sum()
        scores = {n: (w[n] * g).abs().detach() for n, g in zip(names, torch.autograd.grad(r, [w[n] for n in names]))}
        flat = torch.cat([scores[n].flatten() for n in names])
        n_rm = int((1.0 - (1.0 - s) ** (k / rounds)) * flat.numel())
        threshold = flat.sort().values[n_rm - 1]
        mask = {n: scores[n] > threshold for n in names}
        counts.append(n_rm)
        got_scores, got_mask = ours[k - 1]
        assert all(torch.allclose(got_scores[n], scores[n], rtol=1e-12, atol=0) for n in names), k
        assert all(torch.equal(got_mask[n], mask[n]) for n in names), k
        assert removed(got_mask) == n_rm, k
    assert len(ours) == rounds and all(torch.equal(final[n], mask[n]) for n in names)
    assert counts == [284, 388, 427]  # the floor: round would remove 389 and 428 in rounds 2 and 3


def test_synflow_bn_mode_changes_the_scores_and_eval_is_the_default():
    net = tiny_convnet()
    names = list(prunable(net, "conv_linear"))
    ev, tr = (synflow_scores(net, names, None, (2, 5, 5), mode) for mode in ("eval", "train"))
    assert any(not torch.allclose(ev[k], tr[k]) for k in names)
    assert pruners.SYNFLOW_DEFAULTS["bn_mode"] == "eval" and pruners.DEFAULTS["bn_mode"] == "train"


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow"])
def test_reference_ties_at_the_threshold_keep_the_count(method):
    net = resnet("resnet18", 0.125)  # its 1x1 last stage: 8/9 of those weights score exactly 0
    for s in (0.2, 0.9):  # 0.2: the zeros tie at the threshold (the reference would remove ~60%); 0.9: below it
        mask = MASK_METHODS.get(method)(context(net, s, rounds=3))
        assert removed(mask) == floor_removed(mask.total, s)


def test_random_is_uniform_per_layer_and_seeded():
    net = resnet()
    a = MASK_METHODS.get("random")(context(net, 0.5, seed=1))
    b = MASK_METHODS.get("random")(context(net, 0.5, seed=1))
    c = MASK_METHODS.get("random")(context(net, 0.5, seed=2))
    assert kept_set(a) == kept_set(b) and kept_set(a) != kept_set(c)
    for k, m in a.items():
        assert removed(a, k) == round(0.5 * m.numel())
    # global: the layer densities vary, the total is exact
    glob = MASK_METHODS.get("random_global")(context(net, 0.5))
    assert removed(glob) == floor_removed(glob.total, 0.5)
    assert any(removed(glob, k) != round(0.5 * m.numel()) for k, m in glob.items())


def test_ratios_from_copies_the_layer_counts_not_the_positions():
    net = resnet()
    source = MASK_METHODS.get("snip")(context(net, 0.8))
    mask = MASK_METHODS.get("ratios_from")(context(net, 0.8, source=source))
    assert {k: int(m.sum()) for k, m in mask.items()} == {k: int(m.sum()) for k, m in source.items()}
    assert len({int(m.sum()) / m.numel() for m in source.values()}) > 1  # non-uniform ratios reproduced
    overlap = len(kept_set(mask) & kept_set(source)) / source.kept
    assert overlap < 0.6  # random positions: about the layers' densities, not 1
    with pytest.raises(MaskError, match="source"):
        MASK_METHODS.get("ratios_from")(context(net, 0.8))
    with pytest.raises(MaskError, match="removes"):
        MASK_METHODS.get("ratios_from")(context(net, 0.7, source=source))


def test_l1_is_magnitude_within_each_layer():
    net = resnet()
    ctx = context(net, 0.6)
    mask = MASK_METHODS.get("l1")(ctx)
    assert kept_set(mask) == kept_set(magnitude_prune({k: w.detach() for k, w in ctx.weights.items()}, 0.6,
                                                      scope="layer"))
    for k, w in ctx.weights.items():
        a = w.detach().abs()
        assert float(a[~mask[k]].max()) <= float(a[mask[k]].min()), k
    assert MASK_METHODS.get("l1").weights == "trained"
    assert all(MASK_METHODS.get(m).weights == "init" for m in ZOO if m != "l1")
