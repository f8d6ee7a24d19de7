"""The small-dense baseline (sanity Appendix C, gradflow Table 1): a dense network of the same architecture
whose parameter count is within 1% of the ticket's, for the papers' networks at full width on CIFAR shapes
and IMP levels between 1 and 14, and inside a real run (match_params_of); with gradflow's Glorot init
(the sparse_init tweak) its weights have Glorot's per-layer std."""
import math

import pytest
import torch

from conftest import tiny_spec
from ticketlab.masks import Mask, MaskError, PruneContext, covered, imp_sparsity, magnitude_prune, prunable
from ticketlab.models import build_model
from ticketlab.pruners.zoo import random_mask
from ticketlab.small_dense import count_params, small_dense_kwargs, ticket_params
from ticketlab.training import Run


def ticket_mask(arch: str, num_classes: int, sparsity: float) -> Mask:
    """A mask over every conv but the stem (sanity's layers) removing exactly round(s * total) weights;
    where they sit does not change the count. Shapes from a meta-device model (no memory)."""
    with torch.device("meta"):
        model = build_model(arch, num_classes)
    weights = covered(model, "conv", ["first"])
    removed = round(sparsity * sum(w.numel() for w in weights.values()))
    out = {}
    for name, w in weights.items():
        keep = torch.ones(w.numel(), dtype=torch.bool)
        r = min(removed, w.numel())
        keep[:r], removed = False, removed - r
        out[name] = keep.view(w.shape)
    return Mask(out)


# (arch, classes, IMP level at 20% per level): every network of seeds 001 / 004, levels across 1..14;
# the option-A ResNets (whose stage-width refinement costs seconds) once each
CASES = [("resnet20", 10, 14), ("resnet32", 100, 7), ("resnet56", 10, 3), ("resnet18", 100, 1), ("resnet18", 100, 14),
         ("vgg16", 10, 7), ("vgg16", 100, 14), ("mobilenet", 10, 4), ("mobilenet", 10, 14)]


@pytest.mark.parametrize("arch,classes,level", CASES)
def test_small_dense_count_is_within_one_percent_of_the_ticket(arch, classes, level):
    kwargs = {"arch": arch, "width": 1.0}
    mask = ticket_mask(arch, classes, imp_sparsity(level, 0.2))
    target = ticket_params(kwargs, classes, 3, 32, mask)
    assert target == count_params(kwargs, classes, 3, 32) - (mask.total - mask.kept)  # BN, biases, stem, FC in full
    found, n = small_dense_kwargs(kwargs, classes, 3, 32, target)
    assert n == count_params(found, classes, 3, 32)  # the count reported is the network's
    assert abs(n - target) <= 0.01 * target, (arch, level, n, target)
    assert found["arch"] == arch and n < count_params(kwargs, classes, 3, 32)


def test_a_run_matches_the_tickets_count_and_rejects_another_architectures_mask(tmp_path, digits_npz):
    model = {"arch": "resnet20", "width": 0.5}
    probe = Run(tiny_spec(digits_npz, model=model), str(tmp_path / "probe"))
    mask = magnitude_prune({k: p.detach() for k, p in covered(probe.model, "conv", ["first"]).items()}, 0.5904)
    mask.save(str(tmp_path / "ticket.pt"))
    r = Run(tiny_spec(digits_npz, model=model, match_params_of=str(tmp_path / "ticket.pt")), str(tmp_path / "sd"))
    target = ticket_params(model, 10, 1, 8, mask)
    built = sum(p.numel() for p in r.model.parameters())
    assert abs(built - target) <= 0.01 * target and built < sum(p.numel() for p in probe.model.parameters())
    assert not r.mask  # dense: the mask file only sets the size

    other = Run(tiny_spec(digits_npz, model={"arch": "vgg16", "width": 0.125}), str(tmp_path / "vgg"))
    Mask.ones_like(covered(other.model, "conv")).save(str(tmp_path / "vgg_mask.pt"))
    with pytest.raises(MaskError, match="vgg_mask.pt"):
        Run(tiny_spec(digits_npz, model=model, match_params_of=str(tmp_path / "vgg_mask.pt")), str(tmp_path / "bad"))


def test_small_dense_with_seed_004s_glorot_init(tmp_path, digits_npz):
    """gradflow (Appendix B.2: "Glorot scaling in all of our initializations, scale=1 and we average fan-in
    fan-out"): a small-dense run with the sparse_init tweak at the config's seed-004 settings (method dense,
    scale 1, fan_avg) draws every conv / linear weight of the narrowed network from N(0, 2 / (fan_in +
    fan_out)), biases 0 (the same code as every other seed-004 run); without it PyTorch's default stays."""
    model = build_model("lenet5", 10, in_channels=1, input_size=8)
    mask = random_mask(PruneContext(model=model, weights=prunable(model, "conv_linear"), sparsity=0.5, spec={},
                                    generator=torch.Generator().manual_seed(0)))
    mask.save(str(tmp_path / "ticket.pt"))
    lenet = {"arch": "lenet5", "width": 1.0}
    glorot = {"sparse_init": {"method": "dense", "scale": 1.0, "mode": "fan_avg"}}
    runs = {}
    for name, tweaks in (("glorot", glorot), ("default", {})):
        r = Run(tiny_spec(digits_npz, model=lenet, match_params_of=str(tmp_path / "ticket.pt"), tweaks=tweaks),
                str(tmp_path / name))
        runs[name] = r
    r = runs["glorot"]
    assert not r.mask and sum(p.numel() for p in r.model.parameters()) < sum(p.numel() for p in model.parameters())
    modules = dict(r.model.named_modules())
    off_by_default = 0
    for name, w in prunable(r.model, "conv_linear").items():
        w = w.detach().double()
        receptive = w[0, 0].numel()
        fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
        expected, n = math.sqrt(2.0 / (fan_in + fan_out)), w.numel()
        se = expected / math.sqrt(2 * (n - 1))  # standard error of a normal sample's std
        assert abs(float(w.std()) - expected) < 4 * se, (name, float(w.std()), expected, n)
        assert abs(float(w.mean())) < 4 * expected / math.sqrt(n), name
        if n >= 1000:  # normal, not uniform: ~8.3% beyond the uniform's bound sqrt(3) * std
            assert 0.05 < float((w.abs() > math.sqrt(3) * expected).double().mean()) < 0.12, name
        bias = modules[name.rsplit(".", 1)[0]].bias
        assert bias is None or torch.all(bias == 0), name
        default = dict(runs["default"].model.named_parameters())[name].detach().double()
        off_by_default += abs(float(default.std()) - expected) > 4 * se
    assert off_by_default >= 3  # the test tells the two inits apart (PyTorch default: std 1 / sqrt(3 fan_in))
