"""Gradual magnitude pruning during training (tweaks/gmp.py, gradflow's pruning run): the cubic schedule by
hand, exact per-layer sparsity, pruned weights exactly zero, the `pruned` mask set reproducing the run's
mask, and a bitwise resume."""
import pytest
import torch

from conftest import same_weights, tiny_spec
from ticketlab import jobs
from ticketlab.masks import Mask, covered
from ticketlab.models import build_model
from ticketlab.training import Run, run
from ticketlab.tweaks.gmp import GradualMagnitudePruning, gmp_sparsity, is_pruning_step
from ticketlab.weights_io import load as load_state

GMP = {"sparsity": 0.9, "start": 3, "end": 15, "every": 4}


def test_cubic_schedule_by_hand():
    s = lambda t: gmp_sparsity(t, 0.95, 3000, 7000)  # noqa: E731 - Table 3's LeNet-5 setting
    assert s(0) == s(3000) == 0.0 and s(7000) == s(11718) == 0.95
    assert s(5000) == pytest.approx(0.95 * (1 - 0.5 ** 3)) == pytest.approx(0.83125)
    assert s(3100) == pytest.approx(0.95 * (1 - 0.975 ** 3))
    assert s(6900) == pytest.approx(0.95 * (1 - 0.025 ** 3))
    steps = [t for t in range(11719) if is_pruning_step(t, 3000, 7000, 100)]
    assert steps == list(range(3000, 7001, 100)) and len(steps) == 41
    assert [t for t in range(40) if is_pruning_step(t, 10, 25, 10)] == [10, 20, 25]  # t_end is always a step


def gmp_spec(data, **gmp):
    spec = tiny_spec(data, model={"arch": "lenet5", "width": 1.0}, tweaks={"gmp": {**GMP, **gmp}})
    spec["recipe"] = {**spec["recipe"], "epochs": 2, "schedule": "cosine", "milestones": [], "augment": {},
                      "weight_decay": 0.0}
    return spec


def test_pruning_run_ends_exactly_sparse_and_the_pruned_mask_set_reproduces_its_mask(tmp_path, digits_npz, monkeypatch):
    spec = gmp_spec(digits_npz)
    seen = {}
    original = GradualMagnitudePruning.after_backward

    def recorded(self, model, step, ctx):
        changed = original(self, model, step, ctx)
        seen[step] = {k: int((~m).sum()) for k, m in ctx.mask.items()}
        return changed

    monkeypatch.setattr(GradualMagnitudePruning, "after_backward", recorded)
    r = Run(spec, str(tmp_path / "prune"))
    summary = r.run()
    sizes = {k: m.numel() for k, m in r.mask.items()}
    assert set(sizes) == set(covered(build_model("lenet5", 10, in_channels=1, input_size=8), "conv_linear"))
    for t, removed in seen.items():  # every step: round(s * n) removed per layer, s of the last pruning step
        s = max(gmp_sparsity(u, 0.9, 3, 15) for u in range(3, t + 1) if is_pruning_step(u, 3, 15, 4)) if t >= 3 else 0.0
        assert removed == {k: round(s * n) for k, n in sizes.items()}, t
    assert seen[14] != seen[15] and seen[15] == seen[21]  # the last pruning at t_end, then fixed
    final = load_state(tmp_path / "prune" / "final.pt")
    for k, m in r.mask.items():
        assert torch.all(final[k][~m] == 0) and torch.all(final[k][m] != 0), k  # exactly the pruned are zero
        assert int((~m).sum()) == round(0.9 * m.numel())
    assert summary["mask_sparsity"] == pytest.approx(r.mask.sparsity)

    # the mask set `pruned`: one-shot layer-wise magnitude (omp, scope layer, conv + linear) of final.pt
    jobs.make_mask({"method": "omp", "scope": "layer", "layers": "conv_linear", "sparsity": 0.9, "seed": 0,
                    "weights": str(tmp_path / "prune" / "final.pt"), "data": digits_npz,
                    "model": spec["model"]}, str(tmp_path / "pruned.pt"))
    pruned = Mask.load(str(tmp_path / "pruned.pt"))
    assert set(pruned) == set(r.mask) and all(torch.equal(pruned[k], r.mask[k]) for k in pruned)


def test_resume_after_a_kill_repeats_the_pruning_bitwise(tmp_path, digits_npz, killed_run):
    spec = gmp_spec(digits_npz, start=5, end=25, every=3)
    spec["recipe"]["epochs"] = 3
    ref = run(spec, str(tmp_path / "straight"))
    killed_run(spec, tmp_path / "killed")
    assert run(spec, str(tmp_path / "killed"))["mask_sparsity"] == ref["mask_sparsity"]
    assert same_weights(tmp_path / "straight" / "final.pt", tmp_path / "killed" / "final.pt")


def test_the_schedule_must_end_inside_training_and_start_dense(tmp_path, digits_npz):
    with pytest.raises(ValueError, match="start < end < the run's 22 steps"):
        Run(gmp_spec(digits_npz, end=30), str(tmp_path / "long"))
    r = Run(gmp_spec(digits_npz), str(tmp_path / "probe"))
    Mask({k: torch.ones_like(m) for k, m in r.mask.items()}).save(str(tmp_path / "m.pt"))
    with pytest.raises(ValueError, match="dense mask set"):
        Run({**gmp_spec(digits_npz), "mask": str(tmp_path / "m.pt")}, str(tmp_path / "masked"))
