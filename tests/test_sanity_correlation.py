"""sanity Appendix G: the correlation indicator R_p, and the analysis job that computes it from a run's
rebuilt initial weights (an rr run's re-initialisation is not saved)."""
import math

import pytest
import torch

from conftest import tiny_spec
from ticketlab.analysis.correlation import correlation_indicator, remaining, top_count
from ticketlab.jobs import analyse
from ticketlab.masks import Mask, MaskError, covered, magnitude_prune
from ticketlab.training import Run, initial_weights, run
from ticketlab.weights_io import load as load_state


def test_identical_weights_give_one_at_every_p():
    g = torch.Generator().manual_seed(0)
    w = {"a": torch.randn(7, 5, generator=g), "b": torch.randn(33, generator=g)}
    kept = {"a": torch.rand(7, 5, generator=g) > 0.3, "b": torch.ones(33, dtype=torch.bool)}
    for p in (0.01, 0.1, 0.33, 0.5, 0.9, 1.0):
        assert correlation_indicator(w, w, kept, p) == 1.0


def test_independent_weights_give_p_within_the_hypergeometric_spread():
    """Two independent orderings of N weights: the overlap of the two top-k sets is hypergeometric with
    mean k^2 / N (R_p = p on average) and variance k (k/N) (1 - k/N) (N - k) / (N - 1)."""
    n = 20_000
    g = torch.Generator().manual_seed(1)
    a, b = {"w": torch.randn(n, generator=g)}, {"w": torch.randn(n, generator=g)}
    kept = {"w": torch.ones(n, dtype=torch.bool)}
    for p in (0.05, 0.2, 0.5, 0.8):
        k = top_count(p, n)
        sd = math.sqrt(k * (k / n) * (1 - k / n) * (n - k) / (n - 1)) / k
        assert abs(correlation_indicator(a, b, kept, p) - p) < 4 * sd, p
    # and a correlated pair (b = a + small noise) is far above p
    close = {"w": a["w"] + 0.1 * torch.randn(n, generator=g)}
    assert correlation_indicator(a, close, kept, 0.2) > 0.8


def test_hand_computed_case():
    """Layer 1: 3 remaining weights (position 3 pruned, large in both: it must not count); layer 2 dense.
    p = 0.5: k = ceil(1.5) = 2 and ceil(3) = 3. Layer 1: top-2 of a = {0, 1}, of b = {1, 2}: 1 shared;
    layer 2: a ascending, b descending: {3, 4, 5} vs {0, 1, 2}: none. R = (1 + 0) / (2 + 3) = 0.2.
    p = 0.2: k = 1 and 2; {0} vs {1}, {4, 5} vs {0, 1}: R = 0. p = 1: everything: R = 1."""
    a = {"l1": torch.tensor([4.0, -3.0, 2.0, 9.0]), "l2": torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])}
    b = {"l1": torch.tensor([1.0, 5.0, -3.0, -9.0]), "l2": torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])}
    kept = {"l1": torch.tensor([True, True, True, False]), "l2": torch.ones(6, dtype=torch.bool)}
    assert correlation_indicator(a, b, kept, 0.5) == pytest.approx(0.2)
    assert correlation_indicator(a, b, kept, 0.2) == 0.0
    assert correlation_indicator(a, b, kept, 1.0) == 1.0
    assert top_count(0.7, 10) == 7 and top_count(0.05, 10) == 1 and top_count(0.0, 10) == 0


def test_layers_outside_the_settings_are_rejected(tmp_path, digits_npz):
    r = Run(tiny_spec(digits_npz, model={"arch": "resnet20", "width": 0.25}), str(tmp_path))
    mask = Mask.ones_like(covered(r.model, "conv"))
    assert set(remaining(r.model, mask, "conv", [])) == set(mask)
    with pytest.raises(MaskError, match="outside layers='conv' keep_dense=\\['first'\\]"):
        remaining(r.model, mask, "conv", ["first"])


def test_rr_run_initial_weights_are_rebuilt_exactly_and_the_job_computes_rp(tmp_path, digits_npz):
    """An rr run saves its starting weights here only because the test asks (save_init): the analysis
    rebuilds them from the spec, bit for bit, and its R_p is the indicator of those and the final weights."""
    model = {"arch": "resnet20", "width": 0.25}
    probe = Run(tiny_spec(digits_npz, model=model), str(tmp_path / "probe"))
    mask = magnitude_prune({k: p.detach() for k, p in covered(probe.model, "conv", ["first"]).items()}, 0.6)
    mask.save(str(tmp_path / "m.pt"))
    spec = tiny_spec(digits_npz, model=model, mask=str(tmp_path / "m.pt"), init={"from": "fresh", "reinit": True},
                     save_init=True)
    spec["recipe"] = {**spec["recipe"], "epochs": 1}
    run(spec, str(tmp_path / "rr"))
    saved = load_state(tmp_path / "rr" / "init.pt")
    rebuilt = initial_weights(spec)
    assert all(torch.equal(saved[k], rebuilt[k]) for k in saved)
    settings = {"kind": "correlation", "ps": [0.1, 0.5, 1.0], "layers": "conv", "keep_dense": ["first"]}
    out = analyse({"run": spec, "analysis": settings, "weights": str(tmp_path / "rr" / "final.pt"), "epochs": 1,
                   "initial": True}, str(tmp_path / "rp.json"))
    final = load_state(tmp_path / "rr" / "final.pt")
    kept = {k: m for k, m in mask.items()}
    expected = [correlation_indicator(saved, final, kept, p) for p in (0.1, 0.5, 1.0)]
    assert out["curves"]["r_p"] == {"x": [0.1, 0.5, 1.0], "y": expected}
    assert expected[-1] == 1.0 and 0.0 < expected[0] < 1.0
    assert out["remaining"] == {k: int(m.sum()) for k, m in mask.items()}
