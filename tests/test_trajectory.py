"""Monitored re-runs (trajectory analyses) and models rebuilt for analysis."""
import json

import torch

from conftest import tiny_spec
from ticketlab import jobs
from ticketlab.analysis.trajectory import monitors
from ticketlab.masks import magnitude_prune, prunable
from ticketlab.training import Data, Run, load_trained, load_weights, run
from ticketlab.weights_io import load as load_state

MONITOR = {"epochs": 0, "hessian_batches": 2, "hessian_batch_size": 32, "hessian_max_iter": 5, "hessian_tol": 1e-3,
           "gradflow_every": 4, "gradflow_examples": 100, "seed": 0}


def weights(path):
    return load_state(path)


def masked_spec(tmp_path, data, **over):
    r = Run(tiny_spec(data), str(tmp_path / "probe"))
    mask = magnitude_prune({k: p.detach() for k, p in prunable(r.model).items()}, 0.7)
    mask.save(str(tmp_path / "mask.pt"))
    return tiny_spec(data, mask=str(tmp_path / "mask.pt"), **over)


def test_monitors_do_not_change_training_and_log_what_they_promise(tmp_path, digits_npz):
    spec = masked_spec(tmp_path, digits_npz)
    run(spec, str(tmp_path / "plain"))
    mon = {**spec, "monitor": MONITOR, "export": False}
    out = jobs.trajectory({**mon, "name": str(tmp_path / "mon")}, str(tmp_path / "mon.json"))
    a, b = weights(tmp_path / "plain" / "final.pt"), weights(tmp_path / "mon" / "final.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)  # same run, bit for bit: the monitors draw no training randomness
    c = out["curves"]
    assert c["top_eigenvalue"]["x"] == [1, 2, 3] and all(v > 0 for v in c["top_eigenvalue"]["y"])
    steps = out["steps_per_epoch"] * 3
    assert c["gradient_flow"]["x"] == list(range(0, steps, 4))
    assert json.load(open(tmp_path / "mon.json"))["milestones"] == spec["recipe"]["milestones"]


def test_gradient_flow_logged_at_a_step_equals_a_direct_computation(tmp_path, digits_npz):
    """Re-run to step 4 by hand and compare with the logged value (independent of the hook's plumbing)."""
    from ticketlab.analysis.gradflow import gradient_flow
    from ticketlab.training import fixed_examples
    spec = {**masked_spec(tmp_path, digits_npz), "monitor": MONITOR}
    cbs = monitors(MONITOR)
    r = Run(spec, str(tmp_path / "r"), callbacks=cbs)
    r.train_epoch()
    logged = {f["step"]: f["gradient_flow"] for f in cbs[1].series}
    assert sorted(logged) == list(range(0, -(-len(r.data.split["train"][1]) // 128), 4))
    # the same model state at step 0: a fresh setup
    r0 = Run(spec, str(tmp_path / "r0"))
    x, y = fixed_examples(r0.data, 100, 1)
    model = r0.model
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    names = [n for n, _ in model.named_parameters()]
    total = sum(float(((g * r0.mask[n]) if n in r0.mask else g).pow(2).sum()) for n, g in zip(names, grads))
    assert abs(logged[0] - total ** 0.5) < 1e-4 * total ** 0.5
    assert gradient_flow  # imported: the function the hook uses


def test_stop_after_gives_the_full_runs_weights_at_that_epoch(tmp_path, digits_npz):
    spec = tiny_spec(digits_npz, save_epochs=[1])
    run(spec, str(tmp_path / "full"))
    run({**spec, "save_epochs": [], "stop_after": 1}, str(tmp_path / "early"))
    a, b = weights(tmp_path / "full" / "rewind_e1.pt"), weights(tmp_path / "early" / "final.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_analysed_ghost_model_is_the_trained_function(tmp_path, digits_npz):
    """A GSk run's exported final.pt (ghost stripped) rebuilt with the tweak at the end of training
    gives the training run's own test accuracy; unexported weights at the stop epoch load whole."""
    from ticketlab.training import evaluate
    spec = tiny_spec(digits_npz, tweaks={"gsk": {"shape": "linear"}, "gsw": {}})
    s = run(spec, str(tmp_path / "g"))
    data = Data(digits_npz, torch.device("cpu"))
    model, _ = load_trained(spec, str(tmp_path / "g" / "final.pt"), data, 3, torch.device("cpu"))
    assert abs(evaluate(model, data, "test")[1] - s["test_acc_last"]) < 1e-9
    run({**spec, "stop_after": 1, "export": False}, str(tmp_path / "e1"))
    model, _ = load_trained(spec, str(tmp_path / "e1" / "final.pt"), data, 1, torch.device("cpu"))
    gates = {m.skip_gate for m in model.modules() if getattr(m, "has_extra_skip", False)}
    assert gates == {0.5}  # the schedule's value after epoch 1 of 2 before the first decay
    load_weights(model, str(tmp_path / "e1" / "final.pt"), allow_missing_extra=False)  # ghost kept whole
