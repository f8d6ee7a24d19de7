"""Masks: IMP nesting and exact sparsity, magnitude criterion, layer-wise scope, checks on load."""
import math

import pytest
import torch

from ticketlab.masks import Mask, MaskError, _prune_scores, imp_level, imp_sparsity, magnitude_prune, prunable
from ticketlab.models import build_model


def model(arch="resnet18", width=0.125, **kw):
    torch.manual_seed(0)
    return build_model(arch, 10, in_channels=1, input_size=8, width=width, **kw)


def kept_set(mask):
    return {(k, i) for k, m in mask.items() for i in torch.nonzero(m.flatten()).flatten().tolist()}


def test_imp_levels_nest_and_hit_the_exact_sparsity():
    net = model()
    weights = {k: p.detach().clone() for k, p in prunable(net).items()}
    total = sum(w.numel() for w in weights.values())
    previous, prev_set = None, None
    g = torch.Generator().manual_seed(1)
    for level in range(1, 8):
        s = imp_sparsity(level, 0.2)
        mask = magnitude_prune(weights, s, previous)
        removed = sum(int((~m).sum()) for m in mask.values())
        assert removed == round(total * (1 - 0.8 ** level))  # exact, from the closed form
        cur = kept_set(mask)
        if prev_set is not None:
            assert cur <= prev_set  # nested
            # magnitude criterion: every newly removed weight is no larger than every kept one
            newly = prev_set - cur
            mags = {k: weights[k].flatten().abs() for k in weights}
            assert max(float(mags[k][i]) for k, i in newly) <= min(float(mags[k][i]) for k, i in cur)
        # "re-training" between levels: new values on the kept weights, pruned ones stay zero
        weights = {k: (w + 0.05 * torch.randn(w.shape, generator=g)) * mask[k] for k, w in weights.items()}
        previous, prev_set = mask, cur


def test_layerwise_scope_prunes_each_layer_to_the_sparsity():
    weights = {k: p.detach() for k, p in prunable(model()).items()}
    mask = magnitude_prune(weights, 0.5, scope="layer")
    for k, m in mask.items():
        assert int((~m).sum()) == round(m.numel() * 0.5), k


def test_prunable_layers_exclude_tweak_modules_and_optionally_include_linear():
    net = model(extra_skip=True)
    conv = prunable(net, "conv")
    assert conv and all(".skip_" not in k for k in conv) and "fc.weight" not in conv
    assert all(p.ndim == 4 for p in conv.values())
    assert "fc.weight" in prunable(net, "conv_linear")


def test_imp_level_roundtrip_and_rejects_off_ladder():
    for k in range(1, 17):
        assert imp_level(imp_sparsity(k, 0.2), 0.2) == k
    assert math.isclose(imp_sparsity(16, 0.2), 1 - 0.8 ** 16)
    with pytest.raises(MaskError):
        imp_level(0.5, 0.2)


def test_mask_file_checked_against_model(tmp_path):
    net = model()
    mask = magnitude_prune({k: p.detach() for k, p in prunable(net).items()}, 0.5)
    path = str(tmp_path / "m.pt")
    mask.save(path, method="test")
    loaded = Mask.load(path, net)
    assert kept_set(loaded) == kept_set(mask) and abs(loaded.sparsity - 0.5) < 1e-4
    with pytest.raises(MaskError, match="m.pt.*not a parameter"):
        Mask.load(path, model("lenet5", 1.0))
    with pytest.raises(MaskError, match="m.pt.*shape"):
        Mask.load(path, model(width=0.25))
    (tmp_path / "junk.pt").write_bytes(b"not a mask")
    with pytest.raises(MaskError, match="junk.pt"):
        Mask.load(str(tmp_path / "junk.pt"), net)


def test_report_lists_density_per_layer_and_empty_layers():
    w = {"a": torch.tensor([3.0, 2.0, 1.0, 0.5]), "b": torch.tensor([0.01, 0.02])}
    r = magnitude_prune(w, 0.5).report()  # removes the 3 smallest: b entirely and a's 0.5
    assert r["layers"]["a"]["kept"] == 3 and r["layers"]["b"]["density"] == 0.0
    assert r["empty_layers"] == ["b"]


def test_reference_count_is_the_floor_in_the_scores_own_dtype_and_ties_go_up_to_the_count():
    """count='reference' (Synaptic-Flow's _global_mask): k = int((1 - density) N), density = 1 - s; every
    score below the k-th smallest goes, ties at it up to k; k < 1 changes nothing; the default stays round(s N)."""
    ones = {"a": torch.ones(10, dtype=torch.bool)}
    scores = {"a": torch.arange(10, dtype=torch.float64)}
    assert int((~_prune_scores(scores, Mask(ones), 0.25, count="reference")["a"]).sum()) == 2  # 2.5 -> 2
    assert int((~_prune_scores(scores, Mask(ones), 0.25)["a"]).sum()) == 2  # round(2.5) = 2 (banker's)
    assert int((~_prune_scores(scores, Mask(ones), 0.35, count="reference")["a"]).sum()) == 3  # 3.5 -> 3
    assert int((~_prune_scores(scores, Mask(ones), 0.35)["a"]).sum()) == 4  # round(3.5) = 4
    assert torch.equal(_prune_scores(scores, Mask(ones), 0.05, count="reference")["a"], ones["a"])  # k = 0
    # float64 scores 1e-12 apart: one float32 value; ranked in float64 they stay distinct
    fine = {"a": 1.0 + 1e-12 * torch.arange(10, dtype=torch.float64)}
    assert _prune_scores(fine, Mask(ones), 0.5, count="reference")["a"].tolist() == [False] * 5 + [True] * 5
    # ties at the threshold: the reference would remove all 4 for k = 3; here the first 3, already removed first
    tied = {"a": torch.tensor([0.0, 0.0, 0.0, 0.0, 1, 2, 3, 4, 5, 6])}
    assert _prune_scores(tied, Mask(ones), 0.3, count="reference")["a"].tolist() == [False] * 3 + [True] * 7
    part = Mask({"a": torch.tensor([True, True, True, False] + [True] * 6)})
    assert _prune_scores(tied, part, 0.3, count="reference")["a"].tolist() == [False, False, True, False] + [True] * 6
    # ranking across tensors, and a removed weight scoring above the threshold (it would be revived) is refused
    two = {"a": torch.tensor([5.0, 1.0]), "b": torch.tensor([0.0, 3.0])}
    cur = Mask({"a": torch.tensor([True, True]), "b": torch.tensor([False, True])})
    assert {k: v.tolist() for k, v in _prune_scores(two, cur, 0.5, count="reference").items()} == \
        {"a": [True, False], "b": [False, True]}
    with pytest.raises(MaskError, match="revived"):
        _prune_scores(two, Mask({"a": torch.tensor([False, True]), "b": torch.tensor([True, True])}), 0.5,
                      count="reference")
