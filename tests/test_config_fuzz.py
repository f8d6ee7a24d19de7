"""Config fuzzing: random mutations of the demo and paper configurations (deleted keys, wrong types, numbers out
of range, unknown names, YAML's surprising scalars) either validate, and then plan, or fail with a ConfigError
that names the key: never another exception. 15 mutations per configuration here, for the quick loop;
a counting run of the same strategy over more is in the issue 17 note."""
import copy

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snakemake.utils import update_config

from conftest import REPO
from ticketlab import plan
from ticketlab.config import ConfigError, validate

DEMO = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def _base(name):
    cfg = copy.deepcopy(DEMO)
    if name != "demo":
        update_config(cfg, yaml.safe_load((REPO / "config" / "paper" / f"{name}.yaml").read_text()))
    return cfg


BASES = {n: _base(n) for n in ("demo", "spend", "tost", "sanity", "dlth", "gradflow")}
# what a hand edit or YAML 1.1 makes of a value: wrong types, out-of-range numbers, unknown names, odd scalars
ODD = [None, "", "nope", -1, 0, 1e9, -0.5, 2.5, True, [], {}, [1, 2], {"x": 1}, "1e-3", "yes", "0.1", "~", [None]]


def _nodes(obj, path=()):
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _nodes(v, path + (i,))


def _mutate(cfg, data):
    path = data.draw(st.sampled_from([p for p in _nodes(cfg) if p]))
    parent = cfg
    for k in path[:-1]:
        parent = parent[k]
    what = data.draw(st.sampled_from(["delete", "replace", "rename"]))
    if what == "delete":
        del parent[path[-1]]
    elif what == "replace":
        parent[path[-1]] = copy.deepcopy(data.draw(st.sampled_from(ODD)))
    elif isinstance(parent, dict):  # an unknown name where a known one was
        parent[f"{path[-1]}_typo"] = parent.pop(path[-1])
    else:
        parent[path[-1]] = "typo"


@pytest.mark.parametrize("base", sorted(BASES))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True, database=None)
@given(data=st.data())
def test_a_mutated_config_validates_or_names_the_key(base, data):
    cfg = copy.deepcopy(BASES[base])
    for _ in range(data.draw(st.integers(1, 3))):
        _mutate(cfg, data)
    try:
        checked = validate(cfg)
    except ConfigError as e:
        assert str(e).startswith("config error at "), e
        return
    targets = checked.get("targets", list(checked["artefacts"]))
    plan.targets(checked)
    aid = data.draw(st.sampled_from(targets))
    plan.artefact_job(checked, aid)  # a configuration that validates plans its artefacts
