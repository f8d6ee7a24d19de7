"""Lottery tickets and the pruning solution's basin (gradflow §4.3, Table 2, Figure 5).

predictions    class probabilities on a split (the test set), for test accuracy, ensembles and
               prediction disagreement (ticketlab.artefacts.basin computes them across runs)
interpolation  where a run starts and ends relative to a reference run (the pruning solution its
               mask came from): L2 distances at the start and at the end, and loss / accuracy along
               the straight lines from either point to the reference

Points in weight space are the model's trainable parameters with the run's mask applied (pruned
weights are zero; biases, BN affine parameters and unpruned layers count in full), so every run on
one mask lies in the same subspace; the reference is multiplied by the same mask. Both kinds write
their arrays (probabilities; the flattened points for the MDS embedding, kept coordinates only) to
an .npz beside the JSON, which stays small.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from ..training import evaluate, fixed_examples
from . import analysis
from .hessian import _loss_acc


@torch.no_grad()
def class_probabilities(model, x, batch_size: int = 1000) -> np.ndarray:
    """softmax(model(x)) in eval mode, float32, shape (len(x), classes); x already normalised."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([F.softmax(model(x[i:i + batch_size]).float(), dim=1).cpu()
                          for i in range(0, len(x), batch_size)]).numpy()
    finally:
        model.train(was_training)


def masked_state(state: dict, mask) -> dict:
    """A copy of a state dict with the mask applied (pruned weights zero)."""
    return {k: (v * mask[k].to(v.device, v.dtype)) if k in mask else v.clone() for k, v in state.items()}


def flat_point(state: dict, mask, names: list[str]) -> np.ndarray:
    """The point in weight space: the parameters `names` of `state` concatenated (float64), pruned
    coordinates left out (they are zero at every point on this mask, so distances are unchanged)."""
    parts = []
    for n in names:
        v = state[n].detach().double().flatten().cpu()
        parts.append(v[mask[n].flatten().cpu()] if n in mask else v)
    return torch.cat(parts).numpy()


@torch.no_grad()
def linear_path(model, start: dict, end: dict, alphas, x, y, batch_size: int = 1000) -> tuple[list, list]:
    """Loss and accuracy (%) in eval mode on (x, y) at (1 - a) * start + a * end for each a, every
    floating-point entry of the state dicts interpolated (parameters and BN running statistics;
    integer buffers from `start`). The formula returns each endpoint exactly at a = 0 and a = 1."""
    probe = copy.deepcopy(model).eval()
    losses, accs = [], []
    for a in alphas:
        point = {k: ((1.0 - a) * v + a * end[k].to(v.device)) if v.is_floating_point() else v
                 for k, v in start.items()}
        probe.load_state_dict(point)
        loss, acc = _loss_acc(probe, x, y, batch_size)
        losses.append(loss)
        accs.append(acc)
    return losses, accs


@analysis("predictions", arrays=True, split="test", batch_size=1000, dtype="float32")
def predictions(model, mask, data, settings) -> dict:
    """Class probabilities on the split (all of it, in order) and their accuracy. float32 by default;
    dtype float16 halves the .npz for ImageNet-size outputs (50,000 x 1,000 x 2 bytes = 100 MB)."""
    x, y = data.split[settings["split"]]
    probs = class_probabilities(model, data.normalize(x), settings["batch_size"])
    labels = y.cpu().numpy()
    acc = 100.0 * float((probs.argmax(1) == labels).mean())
    return {"split": settings["split"], "examples": len(labels), "classes": int(probs.shape[1]), "accuracy": acc,
            "arrays": {"probs": probs.astype(settings["dtype"]), "labels": labels.astype(np.int64)}}


@analysis("interpolation", arrays=True, needs_init=True, needs_reference=True, steps=21, split="train",
          examples=0, batch_size=1000, seed=0)
def interpolation(model, mask, data, settings, init: dict, reference: dict) -> dict:
    """Distances d_init = ||theta_0 - theta_ref||, d_final = ||theta_T - theta_ref|| (masked points, see
    the module docstring) and the loss along (1 - a) theta + a theta_ref for a in linspace(0, 1, steps),
    from theta_0 (curve `init`) and from theta_T (curve `final`), on `examples` fixed examples of the
    split (0 = all; the paper: the whole MNIST training set), eval mode, no augmentation."""
    s = settings
    device = next(model.parameters()).device
    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start = masked_state({k: v.to(device) for k, v in init.items()}, mask)
    ref = masked_state({k: v.to(device) for k, v in reference.items()}, mask)
    missing = sorted(set(final) - set(ref))
    if missing:
        raise KeyError(f"the reference weights lack {missing[:5]}: the reference run has another architecture")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    points = {k: flat_point(st, mask, names) for k, st in (("init", start), ("final", final), ("reference", ref))}
    x, y = fixed_examples(data, s["examples"], s["seed"], s["split"])
    alphas = np.linspace(0.0, 1.0, s["steps"]).tolist()
    curves = {}
    for name, st in (("init", start), ("final", final)):
        loss, acc = linear_path(model, st, ref, alphas, x, y, s["batch_size"])
        curves[name] = {"x": alphas, "loss": loss, "acc": acc}
    test_loss, test_acc = evaluate(model, data, "test", s["batch_size"])
    return {"d_init": float(np.linalg.norm(points["init"] - points["reference"])),
            "d_final": float(np.linalg.norm(points["final"] - points["reference"])),
            "curves": curves, "test_acc": test_acc, "test_loss": test_loss, "examples": len(y),
            "coordinates": int(points["init"].size),
            "arrays": {k: v.astype(np.float32) for k, v in points.items()}}
