"""The small-dense baseline (seed 001 Appendix C, seed 004 Table 1): a dense network of the same architecture
whose parameter count is within 1% of the ticket's, for the papers' networks at full width on CIFAR shapes
and IMP levels between 1 and 14, and inside a real run (match_params_of)."""
import pytest
import torch

from conftest import tiny_spec
from ticketlab.masks import Mask, MaskError, covered, imp_sparsity, magnitude_prune
from ticketlab.models import build_model
from ticketlab.small_dense import count_params, small_dense_kwargs, ticket_params
from ticketlab.train import Run


def ticket_mask(arch: str, num_classes: int, sparsity: float) -> Mask:
    """A mask over every conv but the stem (seed 001's layers) removing exactly round(s * total) weights;
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
    probe.setup()
    mask = magnitude_prune({k: p.detach() for k, p in covered(probe.model, "conv", ["first"]).items()}, 0.5904)
    mask.save(str(tmp_path / "ticket.pt"))
    r = Run(tiny_spec(digits_npz, model=model, match_params_of=str(tmp_path / "ticket.pt")), str(tmp_path / "sd"))
    r.setup()
    target = ticket_params(model, 10, 1, 8, mask)
    built = sum(p.numel() for p in r.model.parameters())
    assert abs(built - target) <= 0.01 * target and built < sum(p.numel() for p in probe.model.parameters())
    assert not r.mask  # dense: the mask file only sets the size

    other = Run(tiny_spec(digits_npz, model={"arch": "vgg16", "width": 0.125}), str(tmp_path / "vgg"))
    other.setup()
    Mask.ones_like(covered(other.model, "conv")).save(str(tmp_path / "vgg_mask.pt"))
    wrong = Run(tiny_spec(digits_npz, model=model, match_params_of=str(tmp_path / "vgg_mask.pt")), str(tmp_path / "bad"))
    with pytest.raises(MaskError, match="vgg_mask.pt"):
        wrong.setup()
