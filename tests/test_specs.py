"""Typed run specs (ticketlab.specs): unknown keys are errors, defaults live in one place, and the params form
(a job's identity) leaves a setting at its default out, so a new setting changes no existing job's params."""
import dataclasses
import json

import pytest
import yaml

from conftest import REPO, tiny_spec
from ticketlab import plan
from ticketlab.config import load
from ticketlab.specs import (CORE, KEPT_WHEN_GIVEN, AnalysisJob, ArtefactJob, Init, MaskJob, Recipe, RunSpec,
                             SpecError)
from ticketlab.training import Run, TrainingError


@pytest.fixture(scope="module")
def demo():
    return load(str(REPO / "config" / "config.yaml"))


def every_run_spec(cfg):
    """The run specs plan builds for the demo: dense, re-training (every variant of one mask), trajectory."""
    w = plan.W(dataset="digits", model="resnet18_demo", recipe="demo", seed="42")
    yield plan.dense_spec(cfg, w)
    for variant in ("lth", "rewind", "at_trt_kd", "rr", "gsk"):
        yield plan.retrain_spec(cfg, plan.parse_run(f"digits/resnet18_demo/demo/seed42/imp/s36.00/{variant}"))
    yield plan.analysis_spec(cfg, "digits/lenet5_demo/gradflow/seed42/pruned/s95.00/lottery", "gradflow_monitored")


def test_plan_specs_are_their_own_params(demo):
    """What plan writes is the params form: reading it back and writing it again changes nothing."""
    for d in every_run_spec(demo):
        assert RunSpec.from_dict(d).params() == d
        assert json.loads(json.dumps(d)) == d  # JSON-able, as Snakemake's params


def test_unknown_and_missing_keys_are_errors_that_name_them(tmp_path, digits_npz):
    with pytest.raises(SpecError, match=r"unknown key\(s\) \['epoch'\]"):
        RunSpec.from_dict({**tiny_spec(digits_npz), "epoch": 3})
    with pytest.raises(SpecError, match=r"recipe: unknown key\(s\) \['lr_decay'\]"):
        RunSpec.from_dict(tiny_spec(digits_npz, recipe={"epochs": 1, "lr": 0.1, "milestones": [], "lr_decay": 2}))
    with pytest.raises(SpecError, match=r"missing key\(s\) \['seed'\]"):
        RunSpec.from_dict({k: v for k, v in tiny_spec(digits_npz).items() if k != "seed"})
    with pytest.raises(SpecError, match="init: from 'file' needs a path"):
        RunSpec.from_dict(tiny_spec(digits_npz, init={"from": "file"}))
    with pytest.raises(SpecError, match="channels_last must be one of"):
        RunSpec.from_dict(tiny_spec(digits_npz, channels_last=1))
    with pytest.raises(TrainingError, match="unknown key"):  # the run refuses it before it builds anything
        Run({**tiny_spec(digits_npz), "epoch": 3}, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_setting_at_its_default_is_left_out_of_the_params(digits_npz):
    base = tiny_spec(digits_npz)
    assert RunSpec.from_dict(base).params() == base
    for key, default in (("order_seed", None), ("export", True), ("save_init", False), ("precision", "auto"),
                         ("match_params_of", None), ("monitor", None)):
        assert RunSpec.from_dict({**base, key: default}).params() == base, key
        assert key not in set(CORE) | KEPT_WHEN_GIVEN
    # the keys producers have always written, also at their defaults, stay (cached jobs keep their identity)
    for key, default in (("save_epochs", []), ("start_epoch", 0), ("stop_after", None)):
        assert RunSpec.from_dict({**base, key: default}).params() == {**base, key: default}, key
    assert Init.from_dict({"from": "fresh", "reinit": False}).params() == {"from": "fresh"}


def test_a_new_setting_with_a_default_changes_no_existing_params(demo):
    """open_lth's rule, checked on the class itself: a RunSpec with one more field (at its default) gives
    every plan spec the same params."""
    Wider = dataclasses.make_dataclass("Wider", [("label_smoothing", float, dataclasses.field(default=0.0))],
                                       bases=(RunSpec,), frozen=True)
    for d in every_run_spec(demo):
        wider = Wider.from_dict(d)
        assert isinstance(wider, Wider) and wider.label_smoothing == 0.0
        assert wider.params() == d
        assert Wider.from_dict({**d, "label_smoothing": 0.1}).params() == {**d, "label_smoothing": 0.1}


def test_recipe_defaults_are_the_schemas():
    """The schema fills the config's recipes with its defaults; a spec built elsewhere (a test, the benchmark)
    gets Recipe's: they must be the same values."""
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = schema["properties"]["recipes"]["additionalProperties"]["properties"]
    fields = {f.name: f for f in dataclasses.fields(Recipe) if not f.name.startswith("_")}
    assert set(props) - {"save_epochs"} == set(fields)  # save_epochs: the dense run's (RunSpec.save_epochs)
    for name, f in fields.items():
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if "default" in props[name]:
            assert props[name]["default"] == default, name
        elif name == "schedule":  # absent = step (a schema default would add the key to every cached recipe)
            assert default == "step" and "step" in props[name]["enum"]
        else:
            assert default in (dataclasses.MISSING, None, False), name  # required, or absent = off


def test_mask_and_analysis_jobs_are_their_own_params_and_check_their_keys(demo):
    masks = [plan.mask_spec(demo, plan.W(dataset="digits", model=m, recipe=r, seed="42", mask=k, sparsity=s))
             for m, r, k, s in (("resnet18_demo", "demo", "imp", "59.04"), ("resnet32_demo", "demo", "snip", "90.00"),
                                ("resnet20_demo", "dlth_demo", "dlth_lthiter", "90.00"))]
    for d, name in zip(masks, ("imp", "snip", "dlth_lthiter")):
        job = MaskJob.from_dict(d)
        assert job.params() == d and job.method == d["method"]
        # the mask set's config entry; lth_iter's cycle_recipe (a recipe's name there) travels as the recipe
        assert job.settings == {k: v for k, v in demo["masks"][name].items() if k != "cycle_recipe"}
    assert MaskJob.from_dict(masks[2]).cycle_recipe  # lth_iter trains: its recipe travels with the job
    with pytest.raises(SpecError, match="no method"):
        MaskJob.from_dict({k: v for k, v in masks[0].items() if k != "method"})
    analyses = [plan.analysis_spec(demo, "digits/resnet18_demo/demo/seed42/imp/s36.00/lth", "hessian"),
                plan.analysis_spec(demo, "digits/lenet5_demo/gradflow/seed42/pruned/s95.00/basin_lt@o1",
                                   "basin_predictions")]
    for d in analyses:
        assert AnalysisJob.from_dict(d).params() == d
    with pytest.raises(SpecError, match=r"unknown key\(s\) \['weight'\]"):
        AnalysisJob.from_dict({**analyses[0], "weight": "x.pt"})
    with pytest.raises(SpecError, match=r"analysis job: run: unknown key\(s\) \['seeds'\]"):
        AnalysisJob.from_dict({**analyses[0], "run": {**analyses[0]["run"], "seeds": [1]}})



def test_artefact_jobs_are_their_own_params(demo):
    for aid in ("gradflow_fig1c", "tost_tab1", "sanity_tab_e1"):
        if aid not in demo["artefacts"]:
            continue
        d = plan.artefact_job(demo, aid)
        assert ArtefactJob.from_dict(d).params() == d
    with pytest.raises(SpecError, match=r"unknown key\(s\) \['row'\]"):
        ArtefactJob.from_dict({**d, "row": []})


def _moved(paths: dict) -> dict:
    """The same inputs where a module prefix puts them."""
    return {k: f"lt/{v}" for k, v in paths.items()}


def test_jobs_read_the_files_their_rule_passes_not_the_paths_in_their_params(demo):
    """with_inputs: every path a job reads comes from its named inputs (here moved under a prefix); an input the
    spec names but the rule does not pass is an error naming it, and nothing but the paths changes."""
    kd = plan.parse_run("digits/resnet18_demo/demo/seed42/imp/s36.00/at_trt_kd")
    run = RunSpec.from_dict(plan.retrain_spec(demo, kd))
    assert set(run.inputs()) == {"data", "mask", "init", "teacher"}
    moved = run.with_inputs(_moved(run.inputs()))
    assert (moved.data, moved.mask, moved.init.path, moved.teacher) == tuple(
        f"lt/{p}" for p in (run.data, run.mask, run.init.path, run.teacher))
    assert moved.inputs() == _moved(run.inputs())
    assert {k: v for k, v in moved.params().items() if k not in ("data", "mask", "init", "teacher")} == \
        {k: v for k, v in run.params().items() if k not in ("data", "mask", "init", "teacher")}
    with pytest.raises(SpecError, match=r"rule retrain: the rule passes no input named \['teacher'\]"):
        run.with_inputs({k: v for k, v in run.inputs().items() if k != "teacher"}, "rule retrain")
    small = RunSpec.from_dict(plan.retrain_spec(
        demo, plan.parse_run("digits/lenet5_demo/gradflow/seed42/pruned/s95.00/small_dense")))
    assert small.with_inputs(_moved(small.inputs())).match_params_of == f"lt/{small.match_params_of}"

    mask = MaskJob.from_dict(plan.mask_spec(demo, plan.W(dataset="digits", model="resnet18_demo", recipe="demo",
                                                         seed="42", mask="imp", sparsity="59.04")))
    assert set(mask.inputs()) == {"weights", "previous", "data"}
    m = mask.with_inputs(_moved(mask.inputs()))
    assert (m.weights, m.previous, m.data, m.source) == (f"lt/{mask.weights}", f"lt/{mask.previous}",
                                                         f"lt/{mask.data}", None)
    assert m.settings == mask.settings and m.sparsity == mask.sparsity

    job = AnalysisJob.from_dict(plan.analysis_spec(
        demo, "digits/lenet5_demo/gradflow/seed42/pruned/s95.00/basin_lt@o1", "basin_paths"))
    assert job.initial and job.reference and set(job.inputs()) >= {"data", "mask", "init", "weights", "reference"}
    a = job.with_inputs(_moved(job.inputs()))
    assert (a.weights, a.reference, a.run.data, a.run.mask, a.run.init.path) == tuple(
        f"lt/{p}" for p in (job.weights, job.reference, job.run.data, job.run.mask, job.run.init.path))
    assert a.inputs() == _moved(job.inputs()) and a.analysis == job.analysis
    with pytest.raises(SpecError, match=r"no input named \['reference'\]"):
        job.with_inputs({k: v for k, v in job.inputs().items() if k != "reference"})
