"""ToST's ghost tweaks (tost, 2.2): gate / beta schedules, removal and export, training and resume."""
import csv
import math
import os
from types import SimpleNamespace

import jsonschema
import pytest
import torch
import torch.nn.functional as F

from conftest import same_weights, tiny_spec
from ticketlab import tweaks
from ticketlab.models import build_model
from ticketlab.models.layers import ConvBN, PSwish, is_extra
from ticketlab.training import Data, Run, evaluate, run
from ticketlab.tweaks.ghost import beta_schedule, gate_schedule
from ticketlab.tweaks.scaling import Scaling
from ticketlab.weights_io import load as load_state

M = 4.0  # first LR decay, in epochs


def ctx(milestones=(4,), epochs=8):
    return SimpleNamespace(spec={"recipe": {"milestones": list(milestones), "epochs": epochs}})


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return build_model("resnet18", 10, in_channels=1, input_size=8, width=0.0625, **kw)


def gates(model):
    return {m.skip_gate for m in model.modules() if isinstance(m, ConvBN) and m.has_extra_skip}


def warm_bn(model, seed=1):
    """A few train-mode passes so every BN (the skip BNs included) has non-trivial running statistics."""
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 8, 8, generator=g))
    return model.eval()


@pytest.mark.parametrize("name", ["gsk", "gsw", "gsk_keep", "gsw_keep", "lrsi"])
def test_defaults_satisfy_their_schema(name):
    cls = tweaks.TWEAKS[name]
    schema = {"type": "object", "additionalProperties": False, "properties": cls.schema}
    jsonschema.Draft202012Validator(schema).validate(cls.defaults)


def test_lrsi_is_scaling():
    assert issubclass(tweaks.TWEAKS["lrsi"], Scaling)
    assert tweaks.TWEAKS["lrsi"]().params == tweaks.TWEAKS["scaling"]().params


@pytest.mark.parametrize("combo,ok", [(["gsk", "swish"], True), (["gsk", "gsw"], True), (["gsk", "skip"], False),
                                      (["gsw", "mish"], False), (["gsw", "swish"], False), (["gsk", "gsk_keep"], False),
                                      (["gsw", "gsw_keep"], False)])
def test_conflicting_model_options_are_rejected(combo, ok):
    if ok:
        tweaks.build({t: {} for t in combo})
    else:
        with pytest.raises(ValueError, match="cannot be combined"):
            tweaks.build({t: {} for t in combo})


def test_step_hook_and_export_overrides():
    hooked = {n for n in ("gsk", "gsw", "gsk_keep", "gsw_keep", "lrsi", "skip", "swish", "ls")
              if tweaks.overrides(tweaks.TWEAKS[n](), "on_train_step")}
    assert hooked == {"gsk", "gsw", "gsw_keep"}  # only these are called every step
    assert tweaks.overrides(tweaks.TWEAKS["gsk"](), "export")
    assert not tweaks.overrides(tweaks.TWEAKS["skip"](), "export")


def test_gate_follows_the_schedule():
    model, t = tiny(extra_skip=True), tweaks.TWEAKS["gsk"]()
    for progress, alpha in [(0.0, 1.0), (M / 2, 0.5), (M / 4, 0.75), (M, 0.0), (M + 1.5, 0.0)]:
        t.on_train_step(model, progress, ctx())
        assert gates(model) == {alpha}, progress
    cos = tweaks.TWEAKS["gsk"](shape="cosine")
    for progress, alpha in [(0.0, 1.0), (M / 4, (1 + math.cos(math.pi / 4)) / 2), (M / 2, 0.5), (M, 0.0)]:
        cos.on_train_step(model, progress, ctx())
        (gate,) = gates(model)
        assert gate == pytest.approx(alpha, abs=1e-15), progress
    assert all(gate_schedule(p, M) > 0 for p in (0.0, 1.0, M - 1e-6))  # on until the decay itself


def test_gate_zero_skips_the_path_and_its_gradients():
    model = tiny(extra_skip=True)
    tweaks.TWEAKS["gsk"]().on_train_step(model, M, ctx())
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    extra = [p for m in model.modules() if is_extra(m) for p in m.parameters()]
    assert extra and all(p.grad is None for p in extra)
    assert all(p.grad is not None for m in model.modules() if not is_extra(m) for p in m.parameters(recurse=False))


def test_gsk_export_loads_strictly_into_the_plain_model_with_identical_outputs():
    model, t = tiny(extra_skip=True), tweaks.TWEAKS["gsk"]()
    warm_bn(model)
    x = torch.randn(8, 1, 8, 8)
    t.on_train_step(model, M / 2, ctx())
    half = model(x)
    t.on_train_step(model, M, ctx())
    gated = model(x)
    assert not torch.allclose(half, gated)  # the skip path mattered before its removal
    state = model.state_dict()
    exported = t.export(state)
    extra_keys = {f"{n}.{k}" for n, m in model.named_modules() if is_extra(m) for k in m.state_dict()}
    assert extra_keys and set(state) - set(exported) == extra_keys
    plain = tiny(seed=5)
    plain.load_state_dict(exported, strict=True)
    assert torch.equal(plain.eval()(x), gated)


def test_gsw_is_scheduled_pswish_then_exact_relu():
    model, t = tiny(activation="pswish"), tweaks.TWEAKS["gsw"]()
    acts = [m for m in model.modules() if isinstance(m, PSwish)]
    assert acts and not any(isinstance(m, torch.nn.ReLU) for m in model.modules())
    x = torch.randn(1000) * 3
    for progress, beta in [(0.0, 1.0), (M / 2, 10.5), (M - 0.01, beta_schedule(M - 0.01, M, 1.0, 20.0))]:
        t.on_train_step(model, progress, ctx())
        for m in acts:
            assert m.beta == beta and not m.relu
            assert torch.equal(m(x), x * torch.sigmoid(beta * x))
        assert not torch.equal(acts[0](x), F.relu(x))
    for progress in (M, M + 0.3):
        t.on_train_step(model, progress, ctx())
        assert all(torch.equal(m(x), F.relu(x)) for m in acts)
    # after the switch the whole network is the plain ReLU network
    warm_bn(model)
    plain = tiny(seed=5)
    plain.load_state_dict(tweaks.TWEAKS["gsw"]().export(model.state_dict()), strict=True)
    xb = torch.randn(8, 1, 8, 8)
    assert torch.equal(plain.eval()(xb), model(xb))
    cos = tweaks.TWEAKS["gsw"](shape="cosine", beta_start=2.0, beta_end=10.0)
    cos.on_train_step(model, M / 2, ctx())
    assert acts[0].beta == pytest.approx(6.0) and not acts[0].relu


def test_kept_variants_never_anneal():
    model = tiny(extra_skip=True, activation="pswish")
    keep_sw = tweaks.TWEAKS["gsw_keep"](beta_start=1.5)
    for progress in (0.0, M, 100.0):
        keep_sw.on_train_step(model, progress, ctx())
        assert gates(model) == {1.0}
        assert {(m.beta, m.relu) for m in model.modules() if isinstance(m, PSwish)} == {(1.5, False)}
    state = model.state_dict()
    assert tweaks.TWEAKS["gsk_keep"]().export(state) is state


@pytest.mark.parametrize("milestones,epochs", [((), 8), ((8,), 8), ((0,), 8)])
def test_first_decay_must_fall_inside_training(milestones, epochs):
    for name, kw in (("gsk", {"extra_skip": True}), ("gsw", {"activation": "pswish"})):
        with pytest.raises(ValueError, match="first LR decay"):
            tweaks.TWEAKS[name]().on_train_step(tiny(**kw), 0.0, ctx(milestones, epochs))


def ghost_spec(data, epochs=2, milestones=(1,)):
    spec = tiny_spec(data, tweaks={"gsk": {}, "gsw": {}})
    spec["recipe"] = {**spec["recipe"], "epochs": epochs, "milestones": list(milestones)}
    return spec


def test_ghost_run_final_weights_load_strictly_into_the_plain_model(tmp_path, digits_npz):
    summary = run(ghost_spec(digits_npz), str(tmp_path / "r"))
    final = load_state(tmp_path / "r" / "final.pt")
    assert not any("skip_" in k for k in final)
    plain = tiny(seed=5)
    plain.load_state_dict(final, strict=True)
    data = Data(digits_npz, torch.device("cpu"))
    loss, acc = evaluate(plain, data, "test")  # the plain ReLU network is the trained network
    assert acc == summary["test_acc_last"] and loss == pytest.approx(summary["test_loss_last"], rel=1e-6)


def test_ghost_steps_see_the_progress(tmp_path, digits_npz, monkeypatch):
    seen = []
    original = tweaks.TWEAKS["gsk"].on_train_step

    def recording(self, model, progress, ctx):
        seen.append(progress)
        original(self, model, progress, ctx)

    monkeypatch.setattr(tweaks.TWEAKS["gsk"], "on_train_step", recording)
    r = Run(ghost_spec(digits_npz), str(tmp_path / "r"))
    r.train_epoch()
    steps = -(-len(r.data.split["train"][1]) // r.spec.recipe.batch_size)
    assert seen == [s / steps for s in range(steps)]


def test_killed_ghost_run_resumes_to_identical_weights(tmp_path, digits_npz, killed_run):
    # killed after epoch 1 of 3, mid-schedule (decay at 2): the resumed run must recompute gate and beta
    spec = ghost_spec(digits_npz, epochs=3, milestones=(2,))
    straight = run(spec, str(tmp_path / "straight"))
    killed_run(spec, tmp_path / "killed")
    resumed = run(spec, str(tmp_path / "killed"))
    assert not os.path.exists(tmp_path / "killed" / "checkpoint.pt")
    assert same_weights(tmp_path / "straight" / "final.pt", tmp_path / "killed" / "final.pt")
    assert [r["test_acc"] for r in metrics_rows(tmp_path / "straight")] == \
        [r["test_acc"] for r in metrics_rows(tmp_path / "killed")]
    assert resumed["epochs"] == straight["epochs"] == 3



def metrics_rows(d):
    with open(d / "metrics.csv") as f:
        return list(csv.DictReader(f))
