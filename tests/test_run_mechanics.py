"""Run mechanics shared by the papers: the LR function, rewinding that continues the schedule,
replicas (data order), the live mask changed by tweaks, covered layers and mask weight sources."""
import copy

import pytest
import torch
import yaml

from conftest import REPO, same_weights, tiny_spec
from ticketlab import layout, plan
from ticketlab.config import ConfigError, load, validate
from ticketlab.masks import covered, magnitude_prune, prunable
from ticketlab.models import build_model
from ticketlab.training import Run, lr_at, run
from ticketlab.tweaks import TWEAKS, Tweak
from ticketlab.weights_io import load as load_state


def test_step_schedule_equals_torchs_multisteplr():
    recipe = {"epochs": 8, "lr": 0.1, "milestones": [3, 5], "gamma": 0.1}
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [3, 5], 0.1)
    for epoch in range(8):
        assert lr_at(recipe, epoch, epoch * 10, 10, 80) == opt.param_groups[0]["lr"]  # bit for bit
        opt.step()
        sched.step()


def test_cosine_and_warmup_by_hand():
    cos = {"epochs": 10, "lr": 0.05, "milestones": [], "schedule": "cosine"}
    assert lr_at(cos, 0, 0, 10, 100) == 0.05
    assert lr_at(cos, 5, 50, 10, 100) == pytest.approx(0.025)
    assert lr_at(cos, 9, 100, 10, 100) == pytest.approx(0.0)
    warm = {"epochs": 200, "lr": 0.1, "milestones": [100], "warmup": {"epochs": 10, "lr": 0.01}}
    assert lr_at(warm, 9, 95, 10, 2000) == 0.01 and lr_at(warm, 10, 100, 10, 2000) == 0.1
    linear = {**warm, "warmup": {"epochs": 2, "lr": 0.0, "shape": "linear"}}
    assert lr_at(linear, 0, 5, 10, 2000) == pytest.approx(0.025) and lr_at(linear, 2, 20, 10, 2000) == 0.1


def test_weight_rewinding_trains_the_remaining_epochs_with_their_learning_rates(tmp_path, digits_npz):
    spec = tiny_spec(digits_npz, start_epoch=1)
    spec["recipe"] = {**spec["recipe"], "epochs": 3, "milestones": [2]}
    summary = run(spec, str(tmp_path / "wr"))
    rows = open(tmp_path / "wr" / "metrics.csv").read().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [2, 3] and summary["epochs"] == 2
    assert [float(r.split(",")[1]) for r in rows] == [lr_at(spec["recipe"], e, 0, 1, 1) for e in (1, 2)]


def test_steps_cut_the_run_short(tmp_path, digits_npz):
    spec = tiny_spec(digits_npz)
    spec["recipe"] = {**spec["recipe"], "epochs": 3, "steps": 12}  # 1293 images / 128 = 11 steps per epoch
    r = Run(spec, str(tmp_path / "s"))
    r.run()
    assert r.epochs == 2 and len(r.rows) == 2 and r.ctx.step == 11


@pytest.fixture(scope="module")
def demo_cfg():
    return load(str(REPO / "config" / "config.yaml"))


def test_replicas_share_init_and_mask_and_differ_in_data_order(demo_cfg):
    where = dict(dataset="digits", model="resnet18_demo", recipe="demo", seed="42", mask="imp", sparsity="36.00")
    base = plan.retrain_spec(demo_cfg, plan.W(**where, variant="lth"))
    rep = plan.retrain_spec(demo_cfg, plan.W(**where, variant="lth@o2"))
    assert rep["init"] == base["init"] and rep["mask"] == base["mask"]
    assert rep["order_seed"] == 2_000_042 and "order_seed" not in base
    assert rep["name"].endswith("/imp/s36.00/lth@o2")
    with pytest.raises(ValueError, match="replica suffix"):
        layout.split_replica("lth@ox")


def test_order_seed_changes_the_data_order_only(tmp_path, digits_npz):
    a = Run(tiny_spec(digits_npz), str(tmp_path / "a"))
    b = Run(tiny_spec(digits_npz, order_seed=7), str(tmp_path / "b"))
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    xa, _ = a.ctx.batches()
    xb, _ = b.ctx.batches()
    assert not torch.equal(xa, xb)


def test_config_rejects_inconsistent_variants():
    cfg = yaml.safe_load(open(REPO / "config" / "config.yaml"))
    for change, where in [({"init": "variant"}, "variants.bad: init 'variant' and from_variant"),
                          ({"init": "variant", "from_variant": "nope"}, "variants.bad.from_variant"),
                          ({"continue_schedule": True}, "variants.bad.continue_schedule"),
                          ({"small_dense": True, "tweaks": ["ls"]}, "variants.bad.small_dense"),
                          ({"recipe": {"lr": -1}}, "variants.bad.recipe.lr")]:
        bad = {**cfg, "variants": {**cfg["variants"], "bad": {"label": "x", **change}}}
        with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
            validate(bad)
    bad = {**cfg, "variants": {**cfg["variants"], "a@o1": {"label": "x"}}}
    with pytest.raises(ConfigError, match="reserved for replicas"):
        validate(bad)


@TWEAKS.register("_flip_test")
class FlipAtStep(Tweak):
    """Test tweak: at step 3 prunes the largest kept conv1 weight and regrows one pruned one."""

    def after_backward(self, model, step, ctx):
        if step != 3:
            return False
        m = ctx.mask["conv1.conv.weight"]
        w = dict(model.named_parameters())["conv1.conv.weight"].detach()
        kept = torch.where(m.flatten())[0]
        pruned = torch.where(~m.flatten())[0]
        drop = kept[w.flatten()[kept].abs().argmax()]
        flat = m.view(-1)
        flat[drop], flat[pruned[0]] = False, True
        ctx.log.setdefault("flips", []).append([int(drop), int(pruned[0])])
        return True


def test_a_tweak_changes_the_live_mask_and_resume_keeps_it(tmp_path, digits_npz, killed_run):
    probe = Run(tiny_spec(digits_npz), str(tmp_path / "probe"))
    mask = magnitude_prune({k: p.detach() for k, p in prunable(probe.model).items()}, 0.5)
    mask.save(str(tmp_path / "m.pt"))
    spec = tiny_spec(digits_npz, mask=str(tmp_path / "m.pt"), tweaks={"_flip_test": {}})
    r = Run(spec, str(tmp_path / "live"))
    summary = r.run()
    drop, grow = summary["tweak_log"]["flips"][0]
    final = load_state(tmp_path / "live" / "final.pt")["conv1.conv.weight"].flatten()
    assert final[drop] == 0 and final[grow] != 0  # dropped stays zero, regrown trained from zero
    assert r.mask["conv1.conv.weight"].flatten()[grow] and not r.mask["conv1.conv.weight"].flatten()[drop]
    assert summary["mask_sparsity"] == pytest.approx(mask.sparsity)

    killed_run(spec, tmp_path / "killed")
    run(spec, str(tmp_path / "killed"))
    assert same_weights(tmp_path / "live" / "final.pt", tmp_path / "killed" / "final.pt")


def test_covered_keeps_the_first_and_last_layers_dense():
    model = build_model("resnet20", 10)
    names = list(prunable(model, "conv_linear"))
    cov = covered(model, "conv_linear", ["first", "last"])
    assert names[0] == "conv1.conv.weight" and names[-1] == "fc.weight"
    assert list(cov) == names[1:-1]
    assert list(covered(model, "conv", ["first"])) == list(prunable(model, "conv"))[1:]


def test_mask_weight_sources(demo_cfg):
    cfg = copy.deepcopy(demo_cfg)
    cfg["masks"]["eb"] = {"method": "omp", "layers": "conv", "scope": "layer", "from_epoch": 3}
    cfg["masks"]["fromrun"] = {"method": "omp", "layers": "conv", "scope": "layer", "from_variant": "ls"}
    w = plan.W(dataset="digits", model="resnet18_demo", recipe="demo", seed="42", mask="eb", sparsity="50.00")
    assert plan.mask_spec(cfg, w)["weights"].endswith("seed42/dense/rewind_e3.pt")
    w.mask = "fromrun"
    assert plan.mask_spec(cfg, w)["weights"].endswith("seed42/dense/s00.00/ls/final.pt")
