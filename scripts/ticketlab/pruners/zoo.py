"""The pruning-method zoo: random, SNIP, GraSP, SynFlow, magnitude at init, layer-wise L1, ratios_from.

Each method is registered with `@mask_method(name, weights=...)` and called as fn(ctx) -> Mask
(see masks.PruneContext and jobs.make_mask). Sparsity is ALWAYS the fraction REMOVED. (The released
ToST / Synaptic-Flow code passes the density kept under the name `sparsity`; do not copy that.)
Counts, by ranking scores with masks._prune_scores:
  - snip, grasp, synflow, random_global: the count and ranking of the released code ToST uses
    (Synaptic-Flow's Pruner._global_mask): k = int((1.0 - density) * total) (a floor; density = 1.0 -
    sparsity, for synflow each round's density), the scores ranked in their own dtype, every score below
    the k-th smallest removed and ties at it up to k (the reference removes them all: see
    masks._reference_prune). count='reference' in _prune_scores.
  - the others (random per layer, magnitude_init, l1, ratios_from; IMP/OMP in pruners.magnitude): exactly
    round(sparsity * total), globally or per layer for the layer-wise ones (random, l1, ratios_from).

Settings (ctx.spec, defaults filled by the config schema; the same defaults apply here):
    batches      snip/grasp: training batches the scores are summed over (1)
    batch_size   snip/grasp: their size (256; make_mask draws the batches at this size)
    bn_mode      snip/grasp: BatchNorm in 'train' mode (batch statistics, as GraSP's code and ToST's example)
                 or 'eval' ('train'); synflow: the same choice, default 'eval' (see synflow_mask)
    temperature  grasp: the logits are divided by it (200, the released code's T)
    rounds       synflow: pruning rounds on the exponential schedule (100)
    source_mask  ratios_from: the mask set whose per-layer kept counts are reused (made by plan/jobs)
    scope        magnitude_init: 'global' (default) or 'layer'

Scores are computed on a deep copy of ctx.model, so the caller's model (its weights, BN running
statistics and .grad) is left as it was.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..masks import Mask, MaskError, PruneContext, _prune_scores, magnitude_prune, reference_removed, target_removed
from . import mask_method

DEFAULTS = {"batches": 1, "batch_size": 256, "bn_mode": "train", "temperature": 200.0, "rounds": 100,
            "scope": "global"}
SYNFLOW_DEFAULTS = {**DEFAULTS, "bn_mode": "eval"}  # see synflow_mask


def _setting(ctx: PruneContext, key: str, defaults: dict = DEFAULTS):
    v = ctx.spec.get(key)
    return defaults[key] if v is None else v


def _generator(ctx: PruneContext) -> torch.Generator:
    return ctx.generator or torch.Generator().manual_seed(int(ctx.spec.get("seed", 0)))


def _copy(ctx: PruneContext, train: bool = True, dtype: torch.dtype | None = None):
    """A detached deep copy of the model and its prunable weights (same names as ctx.weights)."""
    model = copy.deepcopy(ctx.model)
    if dtype is not None:
        model = model.to(dtype)
    model.train(train)
    for p in model.parameters():
        p.grad = None
    params = dict(model.named_parameters())
    missing = [k for k in ctx.weights if k not in params]
    if missing:
        raise MaskError(f"prunable weights {missing} are not parameters of the model")
    return model, {k: params[k] for k in ctx.weights}


def _data(ctx: PruneContext, method: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if ctx.batches is None:
        raise MaskError(f"{method} needs training batches (PruneContext.batches is None)")
    return [ctx.batches() for _ in range(int(_setting(ctx, "batches")))]


def _normalised(scores: dict[str, torch.Tensor], grasp: bool = False) -> dict[str, torch.Tensor]:
    """The scores over their sum (SNIP) or |sum| + 1e-10 (GraSP), as the released code divides them before
    ranking: the order stays, but the rounding can tie neighbouring scores."""
    total = torch.cat([v.flatten() for v in scores.values()]).sum()
    norm = total.abs() + 1e-10 if grasp else total
    return {k: v / norm for k, v in scores.items()}


def _layerwise(scores: dict[str, torch.Tensor], current: Mask, sparsity: dict[str, float] | float) -> Mask:
    """Keep the highest scores within each layer (each layer removes round(s_layer * n_layer))."""
    return Mask({k: _prune_scores({k: v}, Mask({k: current[k]}),
                                  sparsity[k] if isinstance(sparsity, dict) else sparsity)[k]
                 for k, v in scores.items()})


# --------------------------------------------------------------------------------------------- random

@mask_method("random", weights="init")
def random_mask(ctx: PruneContext) -> Mask:
    """Uniform random within each layer: every layer removes exactly round(sparsity * n_layer)
    weights (RST's / DLTH's random ticket at a uniform layer-wise ratio). Draws from ctx.generator."""
    g = _generator(ctx)
    scores = {k: torch.rand(w.shape, generator=g) for k, w in ctx.weights.items()}
    return _layerwise(scores, Mask.ones_like(ctx.weights), ctx.sparsity)


@mask_method("random_global", weights="init")
def random_global_mask(ctx: PruneContext) -> Mask:
    """Uniform random over all prunable weights together (layer densities vary by chance): the released
    ToST / Synaptic-Flow `Rand` pruner (Gaussian scores ranked globally by _global_mask, its count)."""
    g = _generator(ctx)
    scores = {k: torch.randn(w.shape, generator=g) for k, w in ctx.weights.items()}
    return _prune_scores(scores, Mask.ones_like(ctx.weights), ctx.sparsity, count="reference")


@mask_method("ratios_from", weights="init", settings=("source_mask",))
def ratios_from_mask(ctx: PruneContext) -> Mask:
    """Layer-wise ratios of another method's mask (ctx.source, same sparsity), positions uniform at
    random: in every layer keep as many weights as the source keeps there, drawn uniformly (dlth
    Table 5: RST with GraSP's layer-wise ratios). The source's own positions are not used."""
    src = ctx.source
    if src is None:
        raise MaskError("ratios_from needs the source mask (set `source_mask` to another mask set)")
    if set(src) != set(ctx.weights):
        raise MaskError(f"ratios_from: the source mask covers {sorted(src)}, "
                        f"the prunable weights are {sorted(ctx.weights)}")
    total = sum(w.numel() for w in ctx.weights.values())
    removed = total - src.kept
    counts = {target_removed(total, ctx.sparsity), reference_removed(total, ctx.sparsity)}  # either rule's source
    if removed not in counts:
        raise MaskError(f"ratios_from: the source mask removes {removed}/{total} weights, but sparsity "
                        f"{ctx.sparsity} removes {' or '.join(map(str, sorted(counts)))}")
    g = _generator(ctx)
    scores = {k: torch.rand(w.shape, generator=g) for k, w in ctx.weights.items()}
    layer_s = {k: 1.0 - int(src[k].sum()) / src[k].numel() for k in ctx.weights}
    mask = _layerwise(scores, Mask.ones_like(ctx.weights), layer_s)
    for k in mask:  # round(n * (n - c) / n) == n - c: guard against float surprises all the same
        if int(mask[k].sum()) != int(src[k].sum()):
            raise MaskError(f"ratios_from: layer {k} kept {int(mask[k].sum())}, the source keeps {int(src[k].sum())}")
    return mask


# ------------------------------------------------------------------------------------------ magnitude

@mask_method("magnitude_init", weights="init", settings=("scope",))
def magnitude_init_mask(ctx: PruneContext) -> Mask:
    """One-shot magnitude pruning of the initial (untrained) weights; global unless scope='layer'."""
    return magnitude_prune(ctx.weights, ctx.sparsity, None, _setting(ctx, "scope"))


@mask_method("l1", weights="trained")
def l1_mask(ctx: PruneContext) -> Mask:
    """dlth's L1 baseline: one-shot LAYER-WISE magnitude pruning of the trained dense model, every
    prunable layer at the same ratio (then fine-tuned by the re-training variants). Always layer-wise:
    the `scope` setting is ignored."""
    return magnitude_prune(ctx.weights, ctx.sparsity, None, "layer")


# ------------------------------------------------------------------------------------------------ SNIP

def snip_scores(ctx: PruneContext) -> dict[str, torch.Tensor]:
    """|dL/dm| at m = 1 for w -> m * w, i.e. |w * dL/dw|, with L the sum over the batches of the mean
    cross-entropy."""
    model, weights = _copy(ctx, train=_setting(ctx, "bn_mode") == "train")
    names = list(weights)
    grads = [torch.zeros_like(weights[k]) for k in names]
    for x, y in _data(ctx, "snip"):
        loss = F.cross_entropy(model(x), y)
        for acc, g in zip(grads, torch.autograd.grad(loss, [weights[k] for k in names])):
            acc += g
    return {k: (weights[k].detach() * g).abs() for k, g in zip(names, grads)}


@mask_method("snip", weights="init", settings=("batches", "batch_size", "bn_mode"))
def snip_mask(ctx: PruneContext) -> Mask:
    """SNIP (Lee et al. 2019): keep the globally highest connection sensitivities |g * w| at init
    (the released code's count: see the module docstring)."""
    scores = _normalised(snip_scores(ctx))
    return _prune_scores(scores, Mask.ones_like(ctx.weights), ctx.sparsity, count="reference")


# ----------------------------------------------------------------------------------------------- GraSP

def grasp_scores(ctx: PruneContext) -> dict[str, torch.Tensor]:
    """The paper's score S(-theta) = -theta ⊙ Hg (Wang et al. 2020, eq. 8 / Algorithm 1), g and H the
    gradient and Hessian of L = sum over the batches of the mean cross-entropy of logits/temperature,
    with respect to the prunable weights. Hg by double backprop: grad of g(theta) · stopgrad(g)."""
    model, weights = _copy(ctx, train=_setting(ctx, "bn_mode") == "train")
    names = list(weights)
    params = [weights[k] for k in names]
    t = float(_setting(ctx, "temperature"))
    data = _data(ctx, "grasp")
    g = [torch.zeros_like(p) for p in params]
    for x, y in data:  # first pass: g, no graph kept
        for acc, gi in zip(g, torch.autograd.grad(F.cross_entropy(model(x) / t, y), params)):
            acc += gi
    hg = [torch.zeros_like(p) for p in params]
    for x, y in data:  # second pass: H_b g for each batch (the same batches), summed
        gb = torch.autograd.grad(F.cross_entropy(model(x) / t, y), params, create_graph=True)
        z = sum((gi * g0).sum() for gi, g0 in zip(gb, g))
        for acc, h in zip(hg, torch.autograd.grad(z, params)):
            acc += h
    return {k: -weights[k].detach() * h for k, h in zip(names, hg)}


@mask_method("grasp", weights="init", settings=("batches", "batch_size", "bn_mode", "temperature"))
def grasp_mask(ctx: PruneContext) -> Mask:
    """GraSP (Wang et al. 2020), global. Convention (paper, Algorithm 1, and the authors' code): with
    S(-theta) = -theta ⊙ Hg, the weights with the HIGHEST S are REMOVED (removing them reduces the
    gradient norm least, or increases it); the mask keeps the lowest S. The Synaptic-Flow code (used by
    ToST) scores theta ⊙ Hg = -S and keeps its highest: the same mask ("temperature 200, keep highest")."""
    scores = _normalised({k: -s for k, s in grasp_scores(ctx).items()}, grasp=True)  # keep the highest -S = lowest S
    return _prune_scores(scores, Mask.ones_like(ctx.weights), ctx.sparsity, count="reference")


# --------------------------------------------------------------------------------------------- SynFlow

def _input_shape(ctx: PruneContext) -> tuple[int, ...]:
    """The data's input shape (one sample); SynFlow uses no data values."""
    if ctx.batches is None:
        raise MaskError("synflow needs the input shape: PruneContext.batches is None")
    return tuple(ctx.batches()[0].shape[1:])


def _linearised(model: nn.Module, train: bool = False) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A float64 copy of `model`, BatchNorm in eval mode (train=False) or train mode, every floating-point
    parameter and buffer replaced by its absolute value (the copy is discarded afterwards, so no signs need
    restoring); also returns the |theta| of its parameters, to re-apply under each round's mask."""
    net = copy.deepcopy(model).double().train(train)
    with torch.no_grad():
        for t in list(net.parameters()) + list(net.buffers()):
            if t.is_floating_point():
                t.abs_()
    for p in net.parameters():
        p.grad = None
    return net, {k: p.detach().clone() for k, p in net.named_parameters()}


def _synflow_round(net, theta, names, mask, input_shape) -> dict[str, torch.Tensor]:
    params = dict(net.named_parameters())
    with torch.no_grad():
        for k in names:
            params[k].copy_(theta[k] * mask[k] if mask is not None else theta[k])
    r = net(torch.ones((1, *input_shape), dtype=torch.float64)).sum()
    grads = torch.autograd.grad(r, [params[k] for k in names], allow_unused=True)
    return {k: (params[k].detach() * g).abs() if g is not None else torch.zeros_like(params[k])
            for k, g in zip(names, grads)}


def synflow_scores(model: nn.Module, names: list[str], mask: Mask | None, input_shape,
                   bn_mode: str = "eval") -> dict[str, torch.Tensor]:
    """|theta ⊙ dR/dtheta| with R = sum of the outputs for an all-ones input of shape (1, *input_shape),
    on the linearised float64 copy of `model` (all parameters and buffers |.|, BN in `bn_mode`) with
    the pruned weights of `mask` set to zero. Data-free."""
    net, theta = _linearised(model, bn_mode == "train")
    return _synflow_round(net, theta, names, mask, input_shape)


@mask_method("synflow", weights="init", settings=("rounds", "bn_mode"))
def synflow_mask(ctx: PruneContext) -> Mask:
    """SynFlow (Tanaka et al. 2020), global, iterative: `rounds` rounds n; round k re-scores with the
    current mask applied and prunes to the density d^(k/n), d = 1 - sparsity (the last round: d), with the
    released code's count and ranking (float64 scores ranked in float64; the masks nest, pruned weights
    score 0).

    bn_mode 'eval' by default: BN on its running statistics (at init mean 0, var 1, so BN is a fixed
    affine map), Synaptic-Flow's default (prune_loop train_mode=False) and the SynFlow paper's.
    'train' is what ToST's example.py passes to every pruner: BN then normalises with the statistics of
    the single all-ones sample, which subtracts away every spatially constant activation (all of them
    once the map is 1x1) and the flow through it; at 98% on an 8x8 ResNet-20 it empties whole layer1
    blocks that eval mode keeps. Should every remaining weight score 0, the reference's threshold 0 would
    remove them all; here ties at the threshold go only up to the count (masks._reference_prune)."""
    shape, names = _input_shape(ctx), list(ctx.weights)
    n = int(_setting(ctx, "rounds", SYNFLOW_DEFAULTS))
    density = 1.0 - ctx.sparsity
    mask = Mask.ones_like(ctx.weights)
    net, theta = _linearised(ctx.model, _setting(ctx, "bn_mode", SYNFLOW_DEFAULTS) == "train")
    for k in range(1, n + 1):
        scores = _synflow_round(net, theta, names, mask, shape)
        mask = _prune_scores(scores, mask, 1.0 - density ** (k / n), count="reference")  # the reference's d^(k/n)
    return mask
