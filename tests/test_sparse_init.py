"""gradflow's sparse initialisations (tweaks/sparse_init.py) and the signal at init (Figure 1c), against
hand computations and the properties the paper states."""
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from conftest import tiny_spec
from ticketlab.analysis.init_signal import init_signal
from ticketlab.masks import Mask, prunable
from ticketlab.models import build_model
from ticketlab.training import Data, initial_weights
from ticketlab.tweaks import TWEAKS
from ticketlab.tweaks.sparse_init import fans, reinitialise


def heterogeneous_mask(out: int, inp: int, seed: int = 0) -> torch.Tensor:
    """Row i keeps a different number of inputs: densities from 2% to 100% across the rows."""
    g = torch.Generator().manual_seed(seed)
    density = torch.linspace(0.02, 1.0, out)[:, None]
    return torch.rand(out, inp, generator=g) < density


def test_fanin_init_gives_each_unit_variance_scale_over_its_own_fan_in():
    """Eq. (1): Var(w_ij) = scale / fan_in_i. Empirical check on a large layer whose units' fan-ins range
    from ~40 to 2000: pooled over rows with similar fan-in, fan_in_i * w_ij^2 averages to the scale."""
    layer = nn.Linear(2000, 400)
    mask = heterogeneous_mask(400, 2000)
    fan_in = mask.sum(1).float()
    assert fan_in.min() < 60 and fan_in.max() > 1900
    for scale in (2.0, 1.0):
        reinitialise(layer, Mask({"weight": mask}), "fanin", scale, "fan_in", seed=3)
        w = layer.weight.detach()
        assert torch.all(w[~mask] == 0) and torch.all(layer.bias == 0)
        normalised = (w ** 2 * fan_in[:, None])  # each unmasked entry: scale * chi^2_1 in expectation
        for rows in (slice(0, 40), slice(180, 220), slice(360, 400)):  # sparse, medium, dense units
            m = mask[rows]
            assert normalised[rows][m].mean().item() == pytest.approx(scale, rel=0.06)
        per_row = (w ** 2).sum(1) / fan_in  # each unit's sample variance (mean zero)
        assert (per_row * fan_in).mean().item() == pytest.approx(scale, rel=0.02)


def test_masked_dense_init_would_shrink_sparse_units():
    """The same layer under the masked dense init: variance scale / 2000 for every unit, whatever its
    fan-in (the test above can fail: this is what it would see)."""
    layer = nn.Linear(2000, 400)
    mask = heterogeneous_mask(400, 2000)
    reinitialise(layer, Mask({"weight": mask}), "dense", 2.0, "fan_in", seed=3)
    w = layer.weight.detach()
    assert (w[mask] ** 2).mean().item() == pytest.approx(2.0 / 2000, rel=0.03)


def test_liu_is_the_dense_std_over_sqrt_layer_density_and_shares_the_draw():
    conv = nn.Conv2d(16, 32, 3)
    mask = torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(1)) < 0.1
    density = mask.float().mean().item()
    reinitialise(conv, Mask({"weight": mask}), "dense", 2.0, "fan_in", seed=5)
    dense = conv.weight.detach().clone()
    reinitialise(conv, Mask({"weight": mask}), "liu", 2.0, "fan_in", seed=5)
    liu = conv.weight.detach().clone()
    assert torch.all(liu[~mask] == 0) and torch.all(dense[~mask] == 0)
    torch.testing.assert_close(liu[mask], dense[mask] / math.sqrt(density))  # same z, one factor per layer
    expected = math.sqrt(2.0 / (16 * 9) / density)
    assert liu[mask].std().item() == pytest.approx(expected, rel=0.06)


def test_fan_avg_uses_each_weights_fan_in_and_fan_out():
    """Appendix A.1's average case, per weight (i, j): scale / ((fan_in_i + fan_out_j) / 2); the same z
    as the fan-in case, so the ratio of the two draws is known exactly."""
    conv = nn.Conv2d(6, 8, 3)
    mask = torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(2)) < 0.4
    fan_in, fan_out = fans(mask)
    assert fan_in.tolist() == mask.flatten(1).sum(1).float().tolist()
    assert fan_out.tolist() == mask.transpose(0, 1).flatten(1).sum(1).float().tolist()
    reinitialise(conv, Mask({"weight": mask}), "fanin", 1.0, "fan_in", seed=9)
    w_in = conv.weight.detach().clone()
    reinitialise(conv, Mask({"weight": mask}), "fanin", 1.0, "fan_avg", seed=9)
    w_avg = conv.weight.detach().clone()
    for o, i, kh, kw in torch.nonzero(mask).tolist()[:50]:
        ratio = math.sqrt(fan_in[o] / ((fan_in[o] + fan_out[i]) / 2))
        assert w_avg[o, i, kh, kw].item() == pytest.approx(w_in[o, i, kh, kw].item() * ratio, rel=1e-5)


def test_units_without_inputs_stay_zero_and_a_dense_mask_makes_all_methods_he():
    layer = nn.Linear(50, 6)
    mask = torch.ones(6, 50, dtype=torch.bool)
    mask[2] = False
    reinitialise(layer, Mask({"weight": mask}), "fanin", 2.0, "fan_in", seed=0)
    assert torch.all(layer.weight[2] == 0) and torch.isfinite(layer.weight).all()
    draws = {}
    for method in ("dense", "liu", "fanin"):
        reinitialise(layer, Mask(), method, 2.0, "fan_in", seed=0)  # no mask entry: the dense layer
        draws[method] = layer.weight.detach().clone()
    torch.testing.assert_close(draws["dense"], draws["liu"], rtol=0, atol=0)
    torch.testing.assert_close(draws["dense"], draws["fanin"], rtol=1e-6, atol=0)
    big = nn.Linear(1000, 500)
    reinitialise(big, Mask(), "dense", 2.0, "fan_in", seed=0)
    assert big.weight.std().item() == pytest.approx(math.sqrt(2 / 1000), rel=0.01)  # He et al.


def test_the_tweak_draws_from_the_seed_the_model_was_built_from(tmp_path, digits_npz):
    """Two runs of one seed draw the same z whatever their masks (the lottery ticket = the pruning run's init
    x mask); a random re-initialisation (rr) draws another one."""
    model = {"arch": "lenet5", "width": 1.0}
    tweak = {"sparse_init": {"method": "dense", "scale": 1.0, "mode": "fan_avg"}}
    dense = initial_weights(tiny_spec(digits_npz, model=model, tweaks=tweak))
    probe = build_model("lenet5", 10, in_channels=1, input_size=8)
    g = torch.Generator().manual_seed(0)
    mask = Mask({k: torch.rand(w.shape, generator=g) < 0.2 for k, w in prunable(probe, "conv_linear").items()})
    mask.save(str(tmp_path / "m.pt"))
    ticket = initial_weights(tiny_spec(digits_npz, model=model, tweaks=tweak, mask=str(tmp_path / "m.pt")))
    for k, m in mask.items():
        assert torch.equal(ticket[k], dense[k] * m), k
    assert all(torch.equal(ticket[k], torch.zeros_like(ticket[k])) for k in ticket if k.endswith("bias"))
    rr = initial_weights(tiny_spec(digits_npz, model=model, tweaks=tweak, mask=str(tmp_path / "m.pt"),
                                   init={"from": "fresh", "reinit": True}))
    assert not torch.equal(rr["fc1.weight"], ticket["fc1.weight"])
    assert torch.equal(rr["fc1.weight"] != 0, mask["fc1.weight"])


def test_sparse_init_logs_its_std_and_rejects_unknown_methods():
    model = build_model("lenet5", 10, in_channels=1, input_size=8)
    ctx = SimpleNamespace(log={})
    TWEAKS["sparse_init"](method="fanin").on_init(model, Mask(), ctx)
    assert set(ctx.log["sparse_init_std"]) == set(prunable(model, "conv_linear"))
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        reinitialise(model, Mask(), "nope", 2.0, "fan_in", 0)


def test_init_signal_vanishes_for_the_masked_dense_init_only(digits_npz):
    """Figure 1c's claim: the dense init's output std falls with sparsity (each of LeNet-5's five layers keeps
    a `density` share of its input variance: about density^2.5 in std), the sparsity-aware ones keep it."""
    data = Data(digits_npz, torch.device("cpu"))
    model = build_model("lenet5", 10, in_channels=1, input_size=8, width=2.0)
    settings = {"sparsities": [0.0, 0.9], "draws": 3, "examples": 500, "methods": ["dense", "liu", "fanin"],
                "scale": 2.0, "mode": "fan_in", "seed": 0}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = init_signal(model, Mask(), data, settings)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the analysed model untouched
    y = {m: c["y"] for m, c in out["curves"].items()}
    assert y["dense"][0] == pytest.approx(y["liu"][0]) == pytest.approx(y["fanin"][0])  # density 1: one init
    assert y["dense"][1] < 0.1 ** 1.5 * y["dense"][0]          # vanishing: at least density^1.5
    for m in ("liu", "fanin"):
        assert 0.3 < y[m][1] / y[m][0] < 3
    assert len(out["draws"]["fanin"]) == 2 * 3
