"""Configuration: defaults, errors that name the key, and the schema matching the registries."""
import copy
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from ticketlab.config import ConfigError, validate
from ticketlab.data import SOURCES
from ticketlab.models import MODELS
from snakemake.utils import update_config

DEMO = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def test_demo_config_validates_with_defaults_filled():
    cfg = validate(DEMO)
    assert cfg["recipes"]["demo"]["nesterov"] is False
    assert cfg["masks"]["imp"]["scope"] == "global"
    assert cfg["variants"]["skip"]["init"] == "lth"
    assert cfg["artefacts"]["spend_tab_a2"]["metric"] == "test_acc_best_val"
    assert DEMO["recipes"]["demo"].get("nesterov") is None  # the caller's dict is not modified


def broken(path, value):
    cfg = copy.deepcopy(DEMO)
    *parents, last = path
    node = cfg
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return cfg


@pytest.mark.parametrize("path,value,message", [
    (["recipes", "demo", "lrr"], 0.1, r"recipes\.demo.*'lrr'"),
    (["experiments", "spend", "sparsities", "imp"], [0, 1.0], r"experiments\.spend\.sparsities\.imp\.1"),
    (["experiments", "spend", "sparsities", "omp"], [-0.1], r"experiments\.spend\.sparsities\.omp\.0"),
    (["experiments", "spend", "dataset"], "imagenet21k", r"experiments\.spend\.dataset.*imagenet21k"),
    (["artefacts", "spend_tab_a2", "variants"], ["lth", "nope"], r"artefacts\.spend_tab_a2\.variants.*'nope'"),
    (["artefacts", "spend_tab_a2", "experiment"], "nope", r"artefacts\.spend_tab_a2\.experiments\[0\].*'nope'"),
    (["variants", "skip", "tweaks"], ["skipp"], r"variants\.skip\.tweaks\[0\].*'skipp'"),
    (["tweaks", "ls"], {"alpha": 2}, r"tweaks\.ls\.alpha"),
    (["datasets", "digits", "source"], "mnist2", r"datasets\.digits\.source"),
    (["recipes", "demo", "save_epochs"], [], r"variants\.rewind\.rewind_epoch.*save_epochs"),
    (["experiments", "spend", "sparsities", "imp"], [0, 0.55], r"experiments\.spend\.sparsities\.imp.*IMP level"),
    (["recipes", "demo", "epochs"], KeyError, r"recipes\.demo.*'epochs'"),
])
def test_invalid_config_names_the_key(path, value, message):
    with pytest.raises(ConfigError, match=message):
        validate(broken(path, value))


def test_schema_enums_match_the_registries():
    assert set(SCHEMA["properties"]["models"]["additionalProperties"]["properties"]["arch"]["enum"]) == set(MODELS)
    assert set(SCHEMA["properties"]["datasets"]["additionalProperties"]["properties"]["source"]["enum"]) == set(SOURCES)
    from ticketlab.pruners import MASK_METHODS
    methods = SCHEMA["properties"]["masks"]["additionalProperties"]["properties"]["method"]["enum"]
    assert set(methods) == set(MASK_METHODS)


def test_no_decay_bn_bias_is_a_recipe_setting_absent_by_default():
    """Absent means false (training's default): a schema default would enter every run's spec (its params)."""
    from ticketlab import plan
    w = plan.W(dataset="digits", model="resnet18_demo", recipe="demo", seed="42", mask="imp", sparsity="36.00",
               variant="lth")
    cfg, on = validate(DEMO), validate(broken(["recipes", "demo", "no_decay_bn_bias"], True))
    assert not [r for r in cfg["recipes"].values() if "no_decay_bn_bias" in r]
    for spec in (plan.dense_spec, plan.retrain_spec):
        assert "no_decay_bn_bias" not in spec(cfg, w)["recipe"] and spec(on, w)["recipe"]["no_decay_bn_bias"] is True
    with pytest.raises(ConfigError, match=r"recipes\.demo\.no_decay_bn_bias"):
        validate(broken(["recipes", "demo", "no_decay_bn_bias"], "yes"))


def paper(name):
    cfg = copy.deepcopy(DEMO)
    update_config(cfg, yaml.safe_load((REPO / "config" / "paper" / name).read_text()))  # as --configfile does
    return validate(cfg)


def test_paper_configs_validate_on_top_of_the_demo():
    for path in sorted((REPO / "config" / "paper").glob("*.yaml")):
        paper(path.name)


def test_spend_paper_config_has_the_papers_settings():
    from ticketlab import plan
    cfg = paper("spend.yaml")
    e = cfg["experiments"]["spend"]
    assert (e["dataset"], cfg["models"][e["model"]]) == ("cifar100", {"arch": "resnet18", "width": 1.0})
    assert e["seeds"] == [42, 1099, 5469]
    r = cfg["recipes"][e["recipe"]]
    assert (r["epochs"], r["lr"], r["momentum"], r["weight_decay"], r["batch_size"], r["milestones"]) == \
        (180, 0.1, 0.9, 2e-4, 128, [90, 135])
    assert cfg["datasets"]["cifar100"]["val_fraction"] == 0.1
    imp = [round(100 * s, 2) for s in e["sparsities"]["imp"]]
    assert imp == [0.0] + [round(100 * (1 - 0.8 ** k), 2) for k in range(1, 17)]
    w = plan.W(dataset="cifar100", model="resnet18", recipe="spend", seed=42, mask="imp", sparsity="91.41",
               variant="at_trt_rewind")
    spec = plan.retrain_spec(cfg, w)
    assert spec["init"]["path"].endswith("dense/rewind_e33.pt")
    # Frankle et al.'s rewinding: the remaining 147 epochs with the schedule continued from epoch 33
    for v in ("rewind", "at_rewind", "trt_rewind", "at_trt_rewind"):
        s = plan.retrain_spec(cfg, plan.W(**{**w.__dict__, "variant": v}))
        assert s["start_epoch"] == 33 and s["recipe"]["epochs"] == 180 and s["recipe"]["milestones"] == [90, 135], v
    assert set(spec["tweaks"]) == {"skip", "swish", "scaling", "ls"} and spec["tweaks"]["scaling"]["iterations"] == 180


@pytest.mark.workflow
def test_snakemake_refuses_a_bad_config_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"recipes": {"demo": {"lrr": 1}}}))
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(bad),
                        "--directory", str(tmp_path), "-s", str(REPO / "workflow" / "Snakefile")],
                       capture_output=True, text=True, cwd=REPO)
    assert p.returncode != 0
    assert "recipes.demo" in p.stderr + p.stdout and "lrr" in p.stderr + p.stdout
    assert not (tmp_path / "results").exists()


def test_tosts_pruning_at_init_masks_cover_conv_and_linear_as_its_released_pruners():
    """tost's random/SNIP/GraSP/SynFlow rank every conv and linear weight together (ToST's masked_parameters);
    its LTH (IMP) masks stay conv-only, as the authors' LTH code."""
    from ticketlab.masks import covered
    from ticketlab.models import build_model
    for cfg in (validate(DEMO), paper("tost.yaml")):
        assert cfg["masks"]["imp"]["layers"] == "conv"
        for m in ("random", "snip", "grasp", "synflow"):
            assert cfg["masks"][m]["layers"] == "conv_linear" and not cfg["masks"][m].get("keep_dense"), m
        assert cfg["masks"]["random"]["method"] == "random_global" and cfg["masks"]["synflow"]["bn_mode"] == "eval"
    net = build_model("resnet50", 100, width=0.125)
    assert "fc.weight" in covered(net, "conv_linear") and "fc.weight" not in covered(net, "conv")


def test_paper_configs_plan_only_paper_scale_runs():
    """Every artefact a paper configuration builds reads runs of its paper's datasets, none of the digits."""
    from ticketlab import plan
    for path in sorted((REPO / "config" / "paper").glob("*.yaml")):
        cfg = paper(path.name)
        for aid in cfg["targets"]:
            assert not [r["path"] for r in plan.artefact_runs(cfg, aid) if "/digits/" in r["path"]], (path.name, aid)


def test_paper_config_refuses_an_artefact_it_leaves_at_demo_scale():
    from ticketlab import plan
    cfg = paper("spend.yaml")  # spend_fig5 / spend_tab_a4 are configured at paper scale by tost.yaml only
    for aid in ("spend_fig5", "spend_tab_a4", "dlth_tab2"):
        with pytest.raises(ConfigError, match=rf"artefacts\.{aid}.*scale: paper.*digits"):
            plan.artefact_runs(cfg, aid)
    with pytest.raises(ConfigError, match=r"config/paper/tost\.yaml builds it"):
        plan.artefact_runs(cfg, "spend_fig5")
    raw = copy.deepcopy(DEMO)
    update_config(raw, yaml.safe_load((REPO / "config" / "paper" / "spend.yaml").read_text()))
    raw["targets"] = raw["targets"] + ["spend_fig5"]
    with pytest.raises(ConfigError, match=rf"targets\[{len(raw['targets']) - 1}\].*spend_fig5"):
        validate(raw)
    assert plan.artefact_runs(validate(DEMO), "spend_fig5")  # the demo (scale: demo) builds it on the digits


@pytest.mark.workflow
def test_snakemake_refuses_a_demo_scale_artefact_under_a_paper_config(tmp_path):
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "results/figures/spend_fig5.png",
                        "--configfile", str(REPO / "config" / "paper" / "spend.yaml"), "--directory", str(tmp_path),
                        "-s", str(REPO / "workflow" / "Snakefile")], capture_output=True, text=True, cwd=REPO)
    assert p.returncode != 0
    assert "config/paper/tost.yaml builds it at paper scale" in p.stderr + p.stdout
    assert not (tmp_path / "results").exists()


def test_paper_value_files_parse_and_name_known_variants():
    """Accuracy files: percentages at sparsities, of known variants. The files of tables that show settings or
    verdicts per network (Table E.1, the jackpot table) key their rows by setting / verdict instead."""
    import pandas as pd
    cfg = validate(DEMO)
    variants = set(cfg["variants"])
    kinds = {}
    for aid, a in cfg["artefacts"].items():
        for name in a.get("paper", [aid]):
            kinds.setdefault(name, set()).add(a["kind"])
    for path in sorted((REPO / "config" / "paper_values").glob("*.csv")):
        df = pd.read_csv(path)
        assert {"sparsity", "variant", "value", "source"} <= set(df.columns), path.name
        if kinds.get(path.stem, set()) <= {"hyperparameter_table", "jackpot_table"} and path.stem in kinds:
            continue
        assert df["value"].between(0, 100).all() and df["sparsity"].between(0, 100).all(), path.name
        assert set(df["variant"]) <= variants, (path.name, set(df["variant"]) - variants)


@pytest.mark.parametrize("path,value,where", [
    (("analyses", "hessian", "batchs"), 3, r"analyses\.hessian\.batchs: unknown setting"),
    (("analyses", "hessian", "batches"), "ten", r"analyses\.hessian\.batches: expected int"),
    (("analyses", "landscape", "weights"), "hessian", r"analyses\.landscape\.weights: 'hessian' is not a trajectory"),
    (("artefacts", "spend_fig2", "analysis"), "landscape", r"artefacts\.spend_fig2\.analysis: analysis_sparsity shows"),
    (("artefacts", "spend_fig2", "analysis"), KeyError,
     r"artefacts\.spend_fig2: kind 'analysis_sparsity' needs `analysis`"),
    (("artefacts", "spend_fig10", "show"), KeyError, r"artefacts\.spend_fig10: kind 'curve_lines' needs `show`"),
    (("artefacts", "spend_tab_a2", "analysis"), "hessian",
     r"artefacts\.spend_tab_a2\.analysis: kind 'sparsity_table' shows run"),
    (("artefacts", "spend_fig8", "seeds"), [7], r"artefacts\.spend_fig8\.seeds: none of \[7\]"),
])
def test_analysis_errors_name_the_key(path, value, where):
    with pytest.raises(ConfigError, match=where):
        validate(broken(path, value))


def test_analysis_kinds_in_the_schema_match_the_registry():
    from ticketlab.analysis import ANALYSES
    enum = SCHEMA["properties"]["analyses"]["additionalProperties"]["properties"]["kind"]["enum"]
    assert set(enum) == set(ANALYSES) and ANALYSES["trajectory"].trains  # an ordinary kind, flagged as training
