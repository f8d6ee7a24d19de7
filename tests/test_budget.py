"""The GPU-time estimate (ticketlab.budget): FLOPs against a hand count, a run's seconds against the formula
worked by hand, each job counted once."""
import math

import pytest

from conftest import config_with
from ticketlab import budget, plan

# LeNet-5 at 28x28 (2 FLOPs per multiply-add): conv1 28*28*6*25, conv2 10*10*16*(6*25), fc 400*120 + 120*84 + 84*10
LENET_FLOPS = 2 * (28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10)


def test_forward_flops_are_the_hand_count():
    assert budget.forward_flops((("arch", "lenet5"),), 28, 1, 10) == LENET_FLOPS == 833_040


def test_a_runs_seconds_are_its_images_evaluations_gradinit_and_teacher(monkeypatch):
    monkeypatch.setattr(budget, "forward_flops", lambda *a: 1e9)
    monkeypatch.setattr(budget, "EFFECTIVE_FLOPS", 1e13)
    cfg = {"datasets": {"c": {"source": "cifar10", "val_fraction": 0.1}}}
    costs = budget.Costs(cfg)
    train, evaluate = costs.per_image({"arch": "x"}, "c", 128)
    assert (train, evaluate) == (pytest.approx(3e-4), pytest.approx(1e-4))  # above the step floors
    spec = {"model": {"arch": "x"}, "recipe": {"epochs": 10, "batch_size": 128}}
    steps = 10 * math.ceil(45_000 / 128)
    assert costs.training(spec, "c") == pytest.approx(steps * 128 * 3e-4 + 10 * 15_000 * 1e-4)
    rewound = {**spec, "start_epoch": 4, "tweaks": {"scaling": {"iterations": 50}}, "teacher": "t.pt"}
    six = 6 * math.ceil(45_000 / 128) * 128
    assert costs.training(rewound, "c") == pytest.approx(six * 3e-4 + 6 * 15_000 * 1e-4 + 50 * 2 * 128 * 3e-4
                                                         + six * 1e-4)
    monkeypatch.setattr(budget, "forward_flops", lambda *a: 1e3)  # a tiny network: the step floor decides
    assert costs.per_image({"arch": "x"}, "c", 128)[0] == budget.STEP_FLOOR / 128


def test_each_job_of_a_plan_is_counted_once():
    cfg = config_with()
    run = "results/runs/digits/resnet18_demo/demo/seed42/imp/s36.00/lth"
    trajectory = "results/analysis/digits/resnet18_demo/demo/seed42/imp/s36.00/lth/early"
    summary = [(f"{run}/final.pt", "retrain"), (f"{run}/metrics.csv", "retrain"), (f"{run}/summary.json", "retrain"),
               (f"{trajectory}.json", "trajectory"), (f"{trajectory}/summary.json", "trajectory"),
               (f"{trajectory}/final.pt", "trajectory"), ("results/tables/spend_tab_a2.csv", "table")]
    est = budget.estimate(cfg, summary)
    assert est["jobs"] == {"retrain": 1, "trajectory": 1}
    one = budget.Costs(cfg).training(plan.retrain_spec(cfg, plan.parse_run(run.removeprefix("results/runs/"))),
                                     "digits")
    assert est["per_rule"]["retrain"] == pytest.approx(one + budget.JOB_START)
