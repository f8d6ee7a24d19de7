"""The results tree (ticketlab.layout): paths and their wildcards round-trip."""
import pytest

from ticketlab import layout, plan

W = dict(dataset="digits", model="resnet18_demo", recipe="demo", seed="42")


@pytest.mark.parametrize("mask,s,variant,tag", [
    ("imp", 0.36, "lth", "36.00"),
    ("omp", 0.5, "rewind@o3", "50.00"),
    ("dense", 0.0, "lth", "00.00"),  # the dense run itself
    ("dense", 0.0, "ls", "00.00"),   # a variant on the dense network
])
def test_parse_run_gives_back_the_wildcards_of_run_dir(mask, s, variant, tag):
    run = layout.run_dir(layout.W(**W), mask, s, variant)
    assert run.startswith(layout.RUNS + "/")
    w = layout.parse_run(layout.run_key(run))
    assert w.__dict__ == {**W, "mask": mask, "sparsity": tag, "variant": variant}
    assert layout.run_dir(w, w.mask, layout.sp_value(w.sparsity), w.variant) == run


def test_dense_paths():
    w = layout.W(**W)
    assert layout.run_dir(w, "dense", 0.0, "lth") == layout.dense_dir(w) == \
        "results/runs/digits/resnet18_demo/demo/seed42/dense"
    assert layout.init_weights(w, 0) == f"{layout.dense_dir(w)}/init.pt"
    assert layout.init_weights(w, 3) == f"{layout.dense_dir(w)}/rewind_e3.pt"
    assert layout.dense_files([1, 3]) == ["init.pt", "final.pt", "metrics.csv", "summary.json",
                                          "rewind_e1.pt", "rewind_e3.pt"]


@pytest.mark.parametrize("bad", ["digits/resnet18_demo/demo/42/dense", "digits/resnet18_demo/demo/seed42",
                                 "digits/resnet18_demo/demo/seed42/imp/s36.00", "a/b/c/seed1/imp/x/lth/y"])
def test_parse_run_refuses_other_paths(bad):
    with pytest.raises(ValueError, match="not a run path"):
        layout.parse_run(bad)


@pytest.mark.parametrize("s,tag", [(0.0, "00.00"), (0.36, "36.00"), (0.5904, "59.04"), (0.9141, "91.41")])
def test_sparsity_tag_round_trips(s, tag):
    assert layout.sp_tag(s) == tag
    assert layout.sp_tag(layout.sp_value(tag)) == tag
    assert layout.sp_value(tag) == pytest.approx(s)


def test_replica_names_split_back():
    assert layout.replica_names("lth", 0) == ["lth"]
    names = layout.replica_names("lth", 3)
    assert names == ["lth@o1", "lth@o2", "lth@o3"]
    assert [layout.split_replica(n) for n in names] == [("lth", 1), ("lth", 2), ("lth", 3)]
    assert layout.split_replica("lth") == ("lth", 0)
    with pytest.raises(ValueError, match="replica suffix"):
        layout.split_replica("lth@ox")


def test_mask_and_analysis_paths():
    w = layout.W(**W)
    assert layout.mask_path(w, "imp", 0.36) == "results/masks/digits/resnet18_demo/demo/seed42/imp/s36.00.pt"
    assert layout.mask_report(w, "imp", 0.36) == "results/masks/digits/resnet18_demo/demo/seed42/imp/s36.00.json"
    run = layout.run_dir(w, "imp", 0.36, "lth")
    key = layout.run_key(run)
    assert layout.analysis_path(run, "hessian") == layout.analysis_path(key, "hessian") == \
        f"results/analysis/{key}/hessian.json"
    assert layout.arrays_path(layout.analysis_path(run, "pred")) == f"results/analysis/{key}/pred.npz"
    assert layout.trajectory_dir(key, "traj") == layout.trajectory_dir(run, "traj") == f"results/analysis/{key}/traj"


def test_artefact_files_by_kind():
    assert layout.artefact_files("t", "table") == ["results/tables/t.csv", "results/tables/t.md"]
    assert layout.artefact_files("f", "figure") == [f"results/figures/f.{x}" for x in ("png", "pdf", "csv")]
    cfg = {"artefacts": {"t": {"kind": "grid_table"}, "f": {"kind": "sparsity_lines"}}}
    assert plan.artefact_files(cfg, "t") == layout.artefact_files("t", "table")  # by the kind's declared output
    assert plan.artefact_files(cfg, "f") == layout.artefact_files("f", "figure")
