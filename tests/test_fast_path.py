"""The device settings (precision, channels_last, compile) and the fast path they switch on: how they parse
and resolve per device, that they reach a run's spec only when not at their defaults, that a CPU run at the
defaults is bitwise the plain masked-SGD loop, that the GPU-only branches (bf16 autocast, channels-last,
the sync-free loss bookkeeping) run correctly when forced on a CPU, and that `make bench` prints its lines."""
import contextlib
import importlib.util
import io

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import REPO, tiny_spec
from ticketlab import plan
from ticketlab.config import ConfigError, validate
from ticketlab.masks import Mask, magnitude_prune, prunable
from ticketlab.analysis.trajectory import monitors
from ticketlab.defaults import FAST_DEFAULTS
from ticketlab.training import Data, Fast, Run, TrainingError, build, evaluate, lr_at, run
from ticketlab.weights_io import load as load_state

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a cuda device object needs no GPU


def resolved(spec, device):
    f = Fast(spec, device)
    return f.bf16, f.channels_last, f.compile, f.sync_free


def test_settings_resolve_per_device():
    assert resolved({}, CPU) == (False, False, False, False)
    assert resolved({}, CUDA) == (True, True, False, True)
    assert resolved({"compile": True}, CUDA)[2] is True
    assert resolved({"compile": True}, CPU)[2] is False  # never compiled on cpu
    assert resolved({"precision": "fp32", "channels_last": False}, CUDA)[:2] == (False, False)
    assert resolved({"precision": "bf16", "channels_last": True}, CPU)[:2] == (True, True)  # explicit: any device
    assert resolved(dict(FAST_DEFAULTS), CPU) == resolved({}, CPU)


def test_the_summary_says_whether_fp32_convolutions_may_run_in_tf32(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # torch's default
    assert Fast({"precision": "fp32"}, CUDA).resolved(False)["tf32"] is True
    assert Fast({"precision": "fp32"}, CPU).resolved(False)["tf32"] is False
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert Fast({"precision": "fp32"}, CUDA).resolved(False) == \
        {"device": "cuda", "precision": "fp32", "channels_last": True, "compile": False, "tf32": False}
    from ticketlab.artefacts import numerics_label
    assert numerics_label({**Fast({}, CUDA).resolved(False), "tf32": True}) == "cuda bf16 channels_last tf32 convs"


@pytest.mark.parametrize("key, value", [("precision", "fp16"), ("channels_last", 1), ("channels_last", "yes"),
                                        ("compile", "auto"), ("compile", 0)])
def test_bad_settings_name_the_key(key, value):
    with pytest.raises(TrainingError, match=f"runX: {key} must be one of"):
        Fast({"name": "runX", key: value}, CPU)


def test_config_defaults_and_only_changed_settings_reach_the_spec():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())["properties"]
    assert {k: schema[k]["default"] for k in FAST_DEFAULTS} == FAST_DEFAULTS
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    raw = {k: v for k, v in demo.items() if k not in FAST_DEFAULTS}  # the demo sets channels_last: true
    cfg = validate(raw)
    e = next(iter(cfg["experiments"].values()))
    w = plan.W(dataset=e["dataset"], model=e["model"], recipe=e["recipe"], seed=e["seeds"][0], mask="dense",
               sparsity="00.00", variant="rr")
    for spec in (plan.dense_spec(cfg, w), plan.retrain_spec(cfg, w)):
        assert not set(FAST_DEFAULTS) & set(spec)  # at the defaults: the params of every job are unchanged
    assert plan.dense_spec(validate(demo), w)["channels_last"] is True  # the demo's CPU runs: channels-last
    for paper in (REPO / "config" / "paper").glob("*.yaml"):  # the paper configs put it back to auto
        assert yaml.safe_load(paper.read_text())["channels_last"] == "auto", paper
    assert plan.dense_spec({**cfg, **FAST_DEFAULTS}, w) == plan.dense_spec(cfg, w)
    changed = {**cfg, "precision": "bf16", "compile": True}
    for spec in (plan.dense_spec(changed, w), plan.retrain_spec(changed, w)):
        assert {k: spec[k] for k in FAST_DEFAULTS if k in spec} == {"precision": "bf16", "compile": True}
    for key, value in (("precision", "fp16"), ("channels_last", "no"), ("compile", "yes")):
        with pytest.raises(ConfigError, match=f"at {key}:"):
            validate({**raw, key: value})


def test_helpers_are_no_ops_on_cpu():
    f = Fast({}, CPU)
    with f.autocast():
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    x = torch.randn(2, 3, 4, 4)
    assert f.inputs(x) is x
    conv = torch.nn.Conv2d(3, 4, 3)
    before = (conv.weight.data_ptr(), conv.weight.stride())
    assert f.place(conv) is conv and (conv.weight.data_ptr(), conv.weight.stride()) == before
    forced = Fast({"precision": "bf16", "channels_last": True}, CPU)  # what cuda gets, on the cpu
    with forced.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert forced.inputs(x).is_contiguous(memory_format=torch.channels_last)
    assert forced.place(conv).weight.is_contiguous(memory_format=torch.channels_last)


def mask_file(tmp_path, data):
    r = Run(tiny_spec(data), str(tmp_path / "probe"), log=lambda *a: None)
    path = str(tmp_path / "mask.pt")
    magnitude_prune({k: p.detach() for k, p in prunable(r.model).items()}, 0.8).save(path)
    return path


def plain_masked_sgd(spec, epochs):
    """The training step as written before the device settings existed, by hand: same init, data order and
    learning rates; per step forward, cross-entropy, backward, gradients x mask, SGD, weights x mask. Returns
    the state dict and the per-epoch (mean loss, accuracy) summed in Python floats."""
    torch.set_num_threads(1)
    data, r = Data(spec["data"], CPU), spec["recipe"]
    torch.manual_seed(spec["seed"])
    model, _ = build(spec, data)
    mask = Mask.load(spec["mask"], model)
    mask.apply_(model)
    params = dict(model.named_parameters())
    opt = torch.optim.SGD([{"params": list(model.parameters()), "weight_decay": r["weight_decay"]},
                           {"params": [], "weight_decay": 0.0}], lr=r["lr"], momentum=r["momentum"])
    g = torch.Generator().manual_seed(spec["seed"])
    spe = -(-len(data.split["train"][1]) // r["batch_size"])
    stats = []
    for epoch in range(epochs):
        model.train()
        total, correct, n = 0.0, 0, 0
        for step, (x, y) in enumerate(data.train_batches(r["batch_size"], r["augment"], g)):
            for group in opt.param_groups:
                group["lr"] = lr_at(r, epoch, epoch * spe + step, spe, epochs * spe)
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            for k, m in mask.items():
                params[k].grad.mul_(m)
            opt.step()
            with torch.no_grad():
                for k, m in mask.items():
                    params[k].mul_(m)
            total += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
        stats.append((total / n, 100.0 * correct / n))
    return model.state_dict(), stats


def test_cpu_run_at_the_defaults_is_bitwise_the_plain_masked_sgd_loop(tmp_path, digits_npz):
    spec = tiny_spec(digits_npz, mask=mask_file(tmp_path, digits_npz))
    spec["recipe"] = {**spec["recipe"], "epochs": 2, "milestones": [1]}
    expected, stats = plain_masked_sgd(spec, 2)
    for name, s in (("implicit", spec), ("explicit", {**spec, **FAST_DEFAULTS})):
        r = Run(s, str(tmp_path / name), log=lambda *a: None)
        got = []
        for r.epoch in range(2):
            got.append(r.train_epoch())
        assert got == stats, name  # per-epoch loss and accuracy: equal floats
        for k, v in r.model.state_dict().items():
            assert torch.equal(v, expected[k]), (name, k)


def test_forced_bf16_channels_last_trains_masked_and_saves_plain_layout(tmp_path, digits_npz):
    path = mask_file(tmp_path, digits_npz)
    spec = tiny_spec(digits_npz, mask=path, precision="bf16", channels_last=True)
    spec["recipe"] = {**spec["recipe"], "epochs": 2, "milestones": [1]}
    r = Run(spec, str(tmp_path / "bf16"), log=lambda *a: None)
    dtypes = []
    conv = next(m for m in r.model.modules() if isinstance(m, torch.nn.Conv2d))
    hook = conv.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    r.train_epoch()
    hook.remove()
    assert set(dtypes) == {torch.bfloat16}  # forward under autocast
    params = dict(r.model.named_parameters())
    assert all(p.dtype == torch.float32 for p in params.values())  # fp32 master weights
    mask = Mask.load(path)
    for k, m in mask.items():
        p = params[k]
        assert p.is_contiguous(memory_format=torch.channels_last) and p.grad.stride() == p.stride(), k
        assert (p[~m] == 0).all() and (p.grad[~m] == 0).all() and (p[m] != 0).any(), k
    assert all(m.stride() == p.stride() for p, m in r.masked)  # masks in the parameters' layout
    summary = run(spec, str(tmp_path / "full"))
    assert summary["numerics"] == {"device": "cpu", "precision": "bf16", "channels_last": True, "compile": False,
                                   "tf32": False}
    # it trains as fp32 does (same init, mask and data order): the training loss falls every epoch and ends within
    # 5% of fp32's (two epochs on 8x8 digits leave accuracy too noisy to compare: 359 test images)
    run({k: v for k, v in spec.items() if k != "precision"}, str(tmp_path / "fp32"))
    bf16, fp32 = (pd.read_csv(tmp_path / name / "metrics.csv")["train_loss"] for name in ("full", "fp32"))
    assert bf16.is_monotonic_decreasing and abs(bf16.iloc[-1] - fp32.iloc[-1]) < 0.05 * fp32.iloc[-1]
    state = load_state(tmp_path / "full" / "final.pt")
    assert all(v.is_contiguous() for v in state.values())
    assert run(tiny_spec(digits_npz), str(tmp_path / "plain"))["numerics"]["precision"] == "fp32"


def test_sync_free_bookkeeping_equals_the_per_step_one_and_defers_the_loss_check(tmp_path, digits_npz):
    results = []
    for sync_free in (False, True):
        r = Run(tiny_spec(digits_npz), str(tmp_path / f"s{sync_free}"), log=lambda *a: None)
        r.fast.sync_free = sync_free  # the cuda branch, on the cpu
        results.append(r.train_epoch())
    assert results[0] == results[1]
    r = Run(tiny_spec(digits_npz, name="runX"), str(tmp_path / "nan"), log=lambda *a: None)
    r.fast.sync_free = True
    calls = {"n": 0}

    def nan_from_step_2(logits, y, x):
        calls["n"] += 1
        return F.cross_entropy(logits, y) * (float("nan") if calls["n"] > 2 else 1.0)
    r.loss_fn = nan_from_step_2
    with pytest.raises(TrainingError, match=r"runX: loss is not finite at epoch 1, step 2$"):
        r.train_epoch()
    assert calls["n"] == r.steps_per_epoch  # deferred: the epoch ran to its end


def test_evaluate_at_the_cpu_defaults_equals_plain_evaluation(tmp_path, digits_npz):
    r = Run(tiny_spec(digits_npz), str(tmp_path / "e"), log=lambda *a: None)
    assert evaluate(r.model, r.data, "test", 100, Fast({}, CPU)) == evaluate(r.model, r.data, "test", 100)
    loss, acc = evaluate(r.model, r.data, "test", 100, Fast({"precision": "bf16", "channels_last": True}, CPU))
    assert abs(loss - evaluate(r.model, r.data, "test", 100)[0]) < 0.05  # bf16: close, not equal


@pytest.fixture
def bench(monkeypatch):
    """scripts/bench.py as the module `bench` (importable by name: its concurrent runs are spawned processes)."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    return importlib.import_module("bench")


def test_reference_pipeline_normalises_as_ours(tmp_path, bench):
    npz = str(tmp_path / "b.npz")
    x, y = bench.make_data(npz, 4, 10)
    from torchvision import transforms as T
    ds = bench.InMemoryImages(x.transpose(0, 2, 3, 1), y, T.Compose([T.ToTensor(), T.Normalize(bench.MEAN, bench.STD)]))
    data = Data(npz, CPU)
    for i in range(4):
        img, label = ds[i]
        assert label == int(data.split["train"][1][i])
        assert torch.allclose(img, data.normalize(data.split["train"][0][i:i + 1])[0], atol=1e-5)
    crop = bench.reference_transform()(bench.InMemoryImages(x.transpose(0, 2, 3, 1), y, lambda im: im)[0][0])
    assert crop.shape == (3, 32, 32)


def test_bench_prints_its_lines(bench):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        res = bench.main(["--device", "cpu", "--width", "0.0625", "--batch-size", "16", "--epoch-steps", "2",
                          "--workers", "0", "--concurrent", "1"])
    lines = dict(line.split(": ", 1) for line in out.getvalue().splitlines()[1:])
    assert list(lines) == ["reference_images_per_s", "ours_images_per_s", "ours_masked_images_per_s",
                           "speedup_vs_reference", "masked_overhead", "concurrent_throughput_1"]
    assert all(float(v.split()[0]) > 0 for k, v in lines.items() if k != "masked_overhead")
    assert res["speedup_vs_reference"] == pytest.approx(res["ours_images_per_s"] / res["reference_images_per_s"])
    assert np.isfinite(res["masked_overhead"])
    # two runs of 100 images, one over [0, 1] s and one over [0.5, 2] s: 200 images in 2 s
    assert bench.aggregate([(0.0, 1.0, 100), (0.5, 2.0, 100)]) == pytest.approx(100.0)


def test_compile_only_runs_without_step_tweaks_or_monitors(tmp_path, digits_npz, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    resolve = Fast.__init__

    def as_on_cuda(self, spec, device):  # compile resolves as on cuda, on the cpu
        resolve(self, spec, device)
        self.compile = spec.get("compile", False)
    monkeypatch.setattr(Fast, "__init__", as_on_cuda)
    cases = {"plain": ({}, [], True), "ghost": ({"tweaks": {"gsk": {}}}, [], False),
             "monitored": ({}, monitors({"epochs": 1, "hessian_batches": 1}), False)}
    for name, (over, callbacks, expected) in cases.items():
        logs, compiled[:] = [], []
        r = Run(tiny_spec(digits_npz, compile=True, **over), str(tmp_path / name), log=logs.append,
                callbacks=callbacks)
        assert r.compiled is expected and len(compiled) == int(expected), name
        assert any("staying eager" in line for line in logs) is not expected, name
