"""A run's model (its tweaks' architecture changes, the small-dense width match), loading weights into it, and
the model of a finished run as it was at some point of its training, for analysis."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from .. import tweaks as tweak_registry
from .. import weights_io
from ..masks import Mask
from ..models import build_model
from ..small_dense import matched_kwargs
from ..specs import RunSpec
from .batches import Data
from .numerics import TrainingError


def build(spec: dict | RunSpec, data: Data, with_tweaks: bool = True):
    """The run's model (on the CPU, weights as drawn from torch's current seed) and its tweaks; without
    them, the plain architecture (a teacher)."""
    spec = RunSpec.from_dict(spec)
    tweaks = tweak_registry.build(spec.tweaks) if with_tweaks else []
    kwargs = dict(spec.model)
    for t in tweaks:
        kwargs.update(t.model_kwargs())
    if spec.match_params_of:
        kwargs = matched_kwargs(kwargs, data, spec.match_params_of)
    return architecture(kwargs, data), tweaks


def architecture(model: dict, data: Data):
    """The network of a config's `models` entry (arch and its settings) for `data`, as drawn from torch's seed."""
    kwargs = dict(model)
    arch = kwargs.pop("arch")
    return build_model(arch, data.num_classes, in_channels=data.in_channels, input_size=data.input_size, **kwargs)


def load_weights(model, path: str, allow_missing_extra: bool = True) -> None:
    """Load a state dict; keys the file lacks are allowed only for tweak-added (extra) modules."""
    try:
        state = weights_io.load(path)  # packed (a pruned run's) or plain
    except Exception as e:  # noqa: BLE001 - truncated or garbage (an NFS hiccup, a hand edit): name the file
        raise TrainingError(f"{path}: not a readable weight file ({type(e).__name__}: {str(e).strip()[:300]}); "
                            "delete it and Snakemake re-runs the job that writes it") from e
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (RuntimeError, KeyError, ValueError, AttributeError) as e:
        raise TrainingError(f"{path}: weights do not fit the model ({str(e).strip()[:500]})") from e
    extra = {f"{m}." for m, mod in model.named_modules() if getattr(mod, "ticketlab_extra", False)}
    bad = [k for k in missing if not (allow_missing_extra and any(k.startswith(e) for e in extra))]
    if bad or unexpected:
        raise TrainingError(f"{path}: weights do not fit the model (missing {bad[:5]}, unexpected {unexpected[:5]})")


def load_trained(spec: dict | RunSpec, weights: str, data: Data, progress: float, device) -> tuple:
    """The model of a run as it was after `progress` epochs, for analysis: built with the run's tweaks,
    the progress-dependent tweak state (ghost gates, PSwish beta) set for that point, the weights loaded
    and masked. Returns (model in eval mode on `device`, mask)."""
    spec = RunSpec.from_dict(spec)
    torch.manual_seed(spec.seed)
    model, tweaks = build(spec, data)
    ctx = SimpleNamespace(spec=spec.params())
    for t in tweaks:
        if tweak_registry.overrides(t, "on_train_step"):
            t.on_train_step(model, progress, ctx)
    load_weights(model, weights)
    model.to(device)
    mask = Mask.load(spec.mask, model).to(device) if spec.mask else Mask()
    mask.apply_(model)
    return model.eval(), mask


def state_param_counts(model, state: dict, mask: Mask) -> dict:
    """summary.json "params": of the trainable parameters of `model` in the written state dict `state` (buffers
    such as BN running statistics left out), how many are non-zero and how many there are; and how many
    weights the live mask keeps (None without a mask)."""
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    kept = [state[k] for k in state if k in trainable]
    return {"nonzero": sum(int(torch.count_nonzero(v)) for v in kept), "total": sum(v.numel() for v in kept),
            "masked_kept": mask.kept if mask else None}


def live_param_counts(model, mask: Mask) -> dict:
    """An analysed model's trainable parameters as summary.json counts them: non-zero ones (after the mask,
    extras such as Skip's 1x1 conv + BN included), all, and the mask's kept entries (None without a mask).
    An extra skip path whose gate is 0 (a ghost skip after its removal) is not computed, so it is left out."""
    off = {id(p) for m in model.modules() if getattr(m, "has_extra_skip", False) and m.skip_gate == 0.0
           for name in m.EXTRA_MODULES for p in getattr(m, name).parameters()}
    live = [p for p in model.parameters() if p.requires_grad and id(p) not in off]
    return {"nonzero": sum(int((p != 0).sum()) for p in live), "total": sum(p.numel() for p in live),
            "masked_kept": mask.kept if len(mask) else None}
