"""Artefact kinds declare the config keys they read (artefact_kind(settings=...)); the config refuses any
other key, so a setting the kind would ignore (clamp on a sparsity_table) is an error that names it. The
declarations are checked against the schema and, by reading each kind's code, against what it reads."""
import ast
import copy
import importlib

import pytest
import yaml

from conftest import REPO
from snakemake.utils import update_config
from ticketlab import catalog
from ticketlab.artefacts import ANALYSIS_ARTEFACTS, ARTEFACTS, COMMON, shared_settings
from ticketlab.config import ConfigError, validate

DEMO = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
PROPERTIES = SCHEMA["properties"]["artefacts"]["additionalProperties"]["properties"]
KINDS = {**ARTEFACTS, **ANALYSIS_ARTEFACTS}


def planned(fn) -> set[str]:
    """The keys planning adds to an artefact's spec: build's id; plan.artefact_job's setup (kinds flagged
    setup: plan.experiment_setup), analysis_kind (with an analysis: kinds with shows) and claim_files (kinds
    flagged sources: the claim files loaded and the ids each decides)."""
    return ({"id"} | ({"setup"} if fn.setup else set()) | ({"analysis_kind"} if fn.shows else set())
            | ({"claim_files", "decided"} if fn.sources else set()))


def with_artefact(aid: str, **changes) -> dict:
    cfg = copy.deepcopy(DEMO)
    cfg["artefacts"][aid].update(changes)
    return cfg


def first_of_kind(kind: str) -> str:
    return next(aid for aid, a in DEMO["artefacts"].items() if a["kind"] == kind)


# ------------------------------------------------------------------------------------------ the config check

def test_a_setting_the_kind_does_not_read_is_refused_naming_the_key():
    aid = first_of_kind("sparsity_table")
    with pytest.raises(ConfigError, match=rf"config error at artefacts\.{aid}\.clamp: artefact kind 'sparsity_table' "
                                          r"does not read 'clamp' \(its settings: .*baseline"):
        validate(with_artefact(aid, clamp=8.0))
    with pytest.raises(ConfigError, match=rf"artefacts\.{aid}\.log: .* does not read 'log'"):
        validate(with_artefact(aid, log=["loss"]))  # a key the schema fills everywhere, set: the user's


def test_the_kinds_own_settings_and_the_common_keys_pass():
    landscape = first_of_kind("landscape")
    assert validate(with_artefact(landscape, clamp=3.0))["artefacts"][landscape]["clamp"] == 3.0
    aid = first_of_kind("sparsity_table")
    cfg = validate(with_artefact(aid, baseline="lth", title="T", paper=[aid], seeds=DEMO["experiments"][
        DEMO["artefacts"][aid]["experiment"]]["seeds"][:1]))
    assert cfg["artefacts"][aid]["baseline"] == "lth"
    # the schema's defaults, filled on every artefact, are no one's setting: a validated config validates again
    assert validate(cfg)["artefacts"] == cfg["artefacts"]


def test_the_catalog_lists_each_kinds_settings_and_the_common_keys():
    cat = catalog.catalog()
    assert cat["artefact_common"] == sorted(COMMON)
    assert {k: d["settings"] for k, d in cat["artefacts"].items()} == {k: sorted(f.settings) for k, f in KINDS.items()}
    assert catalog.entry("artefacts", "landscape")["settings"] == sorted(KINDS["landscape"].settings)


def paper(path) -> dict:
    cfg = copy.deepcopy(DEMO)
    update_config(cfg, yaml.safe_load(path.read_text()))  # as --configfile does
    return validate(cfg)


PAPERS = sorted(str(p.relative_to(REPO)) for p in (REPO / "config" / "paper").glob("*.yaml"))


@pytest.mark.parametrize("path", ["config/config.yaml", "tests/smoke.yaml", *PAPERS])
def test_every_configuration_still_loads(path):
    if path == "config/config.yaml":
        validate(DEMO)
    else:
        paper(REPO / path)


# ------------------------------------------------------------------------------ schema and registry agree

def test_every_schema_key_of_an_artefact_is_common_or_some_kinds_setting():
    declared = set(COMMON).union(*(f.settings for f in KINDS.values()))
    assert set(PROPERTIES) - declared == set()  # a key no kind reads
    assert declared - set(PROPERTIES) == set()  # a setting the schema would refuse


def test_the_schemas_kinds_are_the_registered_ones():
    assert set(PROPERTIES["kind"]["enum"]) == set(KINDS)


# ------------------------------------------------------------------------- the declarations are what is read

def arguments(call: ast.Call) -> list[tuple]:
    """(position, None, node) of each positional argument and (None, name, node) of each keyword one."""
    return [(i, None, a) for i, a in enumerate(call.args)] + [(None, k.arg, k.value) for k in call.keywords]


class SpecReads:
    """The string keys a function reads from one of its parameters (the spec): spec["x"], spec.get("x"),
    spec[k] for k in A_MODULE_TUPLE, followed into the artefact package's functions the spec (or
    {**spec, ...}) is passed to. Any other use of the spec is reported, so that nothing escapes the scan."""

    def __init__(self):
        self.trees: dict[str, ast.Module] = {}
        self.done: dict[tuple, set[str]] = {}
        self.unknown: list[str] = []

    def tree(self, module: str) -> ast.Module:
        if module not in self.trees:
            self.trees[module] = ast.parse(open(importlib.import_module(module).__file__).read())
        return self.trees[module]

    def constants(self, module: str) -> dict[str, tuple]:
        """Module-level NAME = ("a", "b", ...) (tuples or lists of strings)."""
        out = {}
        for stmt in self.tree(module).body:
            if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
                    and isinstance(stmt.value, (ast.Tuple, ast.List))
                    and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in stmt.value.elts)):
                out[stmt.targets[0].id] = tuple(e.value for e in stmt.value.elts)
        return out

    def resolve(self, module: str, name: str) -> tuple[str, ast.FunctionDef] | None:
        """The function `name` means in `module`: defined there, or imported from the package."""
        for stmt in self.tree(module).body:
            if isinstance(stmt, ast.FunctionDef) and stmt.name == name:
                return module, stmt
            if isinstance(stmt, ast.ImportFrom) and stmt.level and any(a.name == name for a in stmt.names):
                package = module if hasattr(importlib.import_module(module), "__path__") else module.rpartition(".")[0]
                base = ".".join(package.split(".")[:len(package.split(".")) - stmt.level + 1])
                src = f"{base}.{stmt.module}" if stmt.module else base
                return self.resolve(src, name) if src.startswith("ticketlab.artefacts") else None
        return None

    def keys(self, module: str, fn: ast.FunctionDef, param: str, masked: frozenset = frozenset()) -> set[str]:
        key = (module, fn.name, param, masked)
        if key in self.done:
            return self.done[key]
        self.done[key] = set()  # recursion guard
        here = f"{module}.{fn.name}"
        consts = self.constants(module)
        loops = {}  # comprehension variables over a module tuple of keys: name -> the keys
        for node in ast.walk(fn):
            if isinstance(node, ast.comprehension) and isinstance(node.target, ast.Name) \
                    and isinstance(node.iter, ast.Name) and node.iter.id in consts:
                loops[node.target.id] = consts[node.iter.id]

        def strings(arg) -> tuple[str, ...] | None:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                return (arg.value,)
            if isinstance(arg, ast.Name) and arg.id in loops:
                return loops[arg.id]
            return None

        def is_spec(n) -> bool:
            return isinstance(n, ast.Name) and n.id == param

        out, handled = set(), set()
        for node in ast.walk(fn):
            if isinstance(node, ast.Subscript) and is_spec(node.value):
                handled.add(id(node.value))
                ks = strings(node.slice)
                if ks is None:
                    self.unknown.append(f"{here}: {ast.unparse(node)}")
                else:
                    out.update(ks)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and is_spec(node.func.value) \
                    and node.func.attr == "get":
                handled.add(id(node.func.value))
                ks = strings(node.args[0]) if node.args else None
                if ks is None:
                    self.unknown.append(f"{here}: {ast.unparse(node)}")
                else:
                    out.update(ks)
            elif isinstance(node, ast.Call):
                for i, kw, a in arguments(node):
                    if is_spec(a):
                        handled.add(id(a))
                        out |= self.callee(module, node, i, kw, frozenset(), here) - masked
                    elif isinstance(a, ast.Dict) and any(k is None and is_spec(v) for k, v in zip(a.keys, a.values)):
                        handled.update(id(v) for k, v in zip(a.keys, a.values) if k is None and is_spec(v))
                        over = frozenset(k.value for k in a.keys if isinstance(k, ast.Constant))
                        out |= self.callee(module, node, i, kw, over, here) - masked
        for node in ast.walk(fn):
            if is_spec(node) and id(node) not in handled and not isinstance(node.ctx, ast.Store):
                self.unknown.append(f"{here}: `{param}` used otherwise (line {node.lineno})")
        out -= masked
        self.done[key] = out
        return out

    def uses(self, module: str, fn: ast.FunctionDef, param: str) -> bool:
        """The function uses its parameter: other than by passing it on to package functions that do not."""
        for node in ast.walk(fn):
            if isinstance(node, ast.Call):
                for i, kw, a in arguments(node):
                    if isinstance(a, ast.Name) and a.id == param:
                        target = self.resolve(module, node.func.id) if isinstance(node.func, ast.Name) else None
                        if target is None:
                            return True
                        mod, f = target
                        if self.uses(mod, f, [x.arg for x in f.args.posonlyargs + f.args.args][i] if i is not None
                                     else kw):
                            return True
        passed_on = {id(a) for node in ast.walk(fn) if isinstance(node, ast.Call)
                     for a in list(node.args) + [k.value for k in node.keywords]}
        return any(isinstance(n, ast.Name) and n.id == param and id(n) not in passed_on
                   and isinstance(n.ctx, ast.Load) for n in ast.walk(fn))

    def callee(self, module, call: ast.Call, i, kw, over: frozenset, here: str) -> set[str]:
        """The keys the function called reads from the parameter the spec is passed as (`over`: keys the
        call sets itself, {**spec, "title": ...}: not read from the spec)."""
        target = self.resolve(module, call.func.id) if isinstance(call.func, ast.Name) else None
        if target is None:
            self.unknown.append(f"{here}: the spec passed to {ast.unparse(call.func)}, not a function of the package")
            return set()
        mod, f = target
        params = [a.arg for a in f.args.posonlyargs + f.args.args]
        name = params[i] if i is not None else kw
        return self.keys(mod, f, name, over) - over


def kind_reads(fn) -> tuple[set[str], list[str]]:
    """The keys a kind reads from its spec (its first parameter), and `paper` if it uses the paper's values
    (its third: the files its `paper` names; build uses them for every kind of run summaries)."""
    scan = SpecReads()
    mod, f = scan.resolve(fn.__module__, fn.__name__)
    params = [a.arg for a in f.args.args]
    return scan.keys(mod, f, params[0]) | ({"paper"} if scan.uses(mod, f, params[2]) else set()), scan.unknown


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_reads_only_common_keys_its_settings_and_what_planning_adds(name):
    fn = KINDS[name]
    reads, unknown = kind_reads(fn)
    assert unknown == []
    assert reads - set(COMMON) - set(fn.settings) - planned(fn) == set(), f"{name} reads undeclared keys"


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_reads_every_setting_it_declares(name):
    """Its own settings: the code reads each (the flags' shared settings are planning's and build's)."""
    fn = KINDS[name]
    own = set(fn.settings) - set(shared_settings(fn.files, fn.shows, fn.config_only, fn.sources))
    assert own - kind_reads(fn)[0] == set(), f"{name} declares settings it does not read"


def test_the_scan_sees_a_setting_left_undeclared(monkeypatch):
    """A declaration with one setting removed fails the check: read directly (landscape's clamp), as
    spec[k] for k in JACKPOT_SETTINGS (jackpot_table's similar), through a helper (lr_lines' series, via
    _series and series_points), through another kind (epoch_lines' twin, via curve_lines), or the paper's
    values (ensemble_table's paper)."""
    for name, key in (("landscape", "clamp"), ("jackpot_table", "similar"), ("lr_lines", "series"),
                      ("epoch_lines", "twin"), ("ensemble_table", "paper")):
        fn = KINDS[name]
        monkeypatch.setattr(fn, "settings", tuple(k for k in fn.settings if k != key))
        reads, _ = kind_reads(fn)
        assert key in reads - set(COMMON) - set(fn.settings) - planned(fn), (name, key)

