"""Mask methods declare the settings they read (pruners.mask_method(settings=...)); the config refuses a key that
neither every method accepts nor the set's method reads, and the declarations are checked against the schema and
against the code that reads them."""
import ast
import copy
import pathlib

import pytest
import yaml

from conftest import REPO
from ticketlab.config import ConfigError, validate
from ticketlab.pruners import COMMON, MASK_METHODS

PRUNERS = REPO / "scripts" / "ticketlab" / "pruners"
# what planning adds to a mask job beside its mask set's settings (plan.mask_spec, specs.MaskJob)
JOB_KEYS = {"sparsity", "weights", "previous", "source", "data", "model", "seed", "cycle_recipe", "device",
            "precision", "channels_last", "compile"}


@pytest.fixture()
def demo():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_a_setting_the_method_does_not_read_is_refused_with_its_key(demo):
    cfg = copy.deepcopy(demo)
    snip = next(k for k, m in cfg["masks"].items() if m["method"] == "snip")
    cfg["masks"][snip]["temperature"] = 100
    with pytest.raises(ConfigError, match=rf"masks\.{snip}\.temperature: mask method 'snip' does not read "
                                          r"'temperature' \(its settings: batch_size, batches, bn_mode\)"):
        validate(cfg)
    cfg = copy.deepcopy(demo)
    cfg["masks"][snip]["method"], cfg["masks"][snip]["temperature"] = "grasp", 100  # grasp reads it
    validate(cfg)
    cfg = copy.deepcopy(demo)
    omp = next(k for k, m in cfg["masks"].items() if m["method"] == "omp")
    cfg["masks"][omp]["rate"] = 0.3  # IMP's per-level rate means nothing to one-shot pruning
    with pytest.raises(ConfigError, match=rf"masks\.{omp}\.rate: mask method 'omp' does not read 'rate'"):
        validate(cfg)


def test_schema_and_registry_agree_on_the_mask_settings():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = set(schema["properties"]["masks"]["additionalProperties"]["properties"])
    declared = set(COMMON) | {k for m in MASK_METHODS.values() for k in m.settings}
    assert props == declared


def _keys_read(fn: ast.FunctionDef) -> set[str]:
    """String keys a function reads from a mask job: spec["x"], spec.get("x"), ctx.spec.get("x"), _setting(ctx, "x")."""
    keys = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and \
                ast.unparse(node.value) in ("spec", "ctx.spec"):
            keys.add(node.slice.value)
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[-1 if ast.unparse(node.func) != "_setting"
                                                                            else 1], ast.Constant):
            f = ast.unparse(node.func)
            if f in ("spec.get", "ctx.spec.get"):
                keys.add(node.args[0].value)
            elif f == "_setting":
                keys.add(node.args[1].value)
    return keys


def _reads(module: pathlib.Path) -> dict[str, set[str]]:
    """For each registered method of a module: the keys it and the module's functions it calls read."""
    tree = ast.parse(module.read_text())
    funcs = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    out = {}
    for f in funcs.values():
        for d in f.decorator_list:
            if isinstance(d, ast.Call) and ast.unparse(d.func) == "mask_method":
                seen, todo, keys = set(), [f.name], set()
                while todo:
                    name = todo.pop()
                    if name in seen:
                        continue
                    seen.add(name)
                    keys |= _keys_read(funcs[name])
                    todo += [n.func.id for n in ast.walk(funcs[name]) if isinstance(n, ast.Call)
                             and isinstance(n.func, ast.Name) and n.func.id in funcs]
                out[d.args[0].value] = keys
    return out


def test_each_method_reads_exactly_what_it_declares():
    """From the code: a method (and its module's helpers it calls) reads no key of its mask set beyond COMMON and
    its settings, and every setting it declares is read by it, by the mask job or by planning."""
    reads = {}
    for module in PRUNERS.glob("*.py"):
        reads.update(_reads(module))
    assert set(reads) == set(MASK_METHODS)
    planning = {"rate": {"imp"}, "source_mask": {"ratios_from"}, "cycle_recipe": {"lth_iter"},  # plan.mask_spec
                "batch_size": {"snip", "grasp"}}  # jobs.make_mask draws their batches at this size
    for name, keys in reads.items():
        own = set(MASK_METHODS.get(name).settings)
        assert keys - JOB_KEYS <= set(COMMON) | own, name
        for k in own:
            assert k in keys or name in planning.get(k, ()), (name, k)
