"""Typed job specs (a training run with its Init and Recipe, a mask job, an analysis job, an artefact job).
Training-run specs: what a training run is (its data, model, recipe, seed, mask, initialisation, tweaks,
teacher, device settings and what it saves), built from the dict that planning writes into a job's params and
Snakemake caches on. Defaults live here, once; a key the spec does not know is an error, not ignored.

The params form (RunSpec.params, the job's identity: Snakemake's re-run trigger, the checkpoint hash, the
summary record) follows open_lth's rule: a setting at its default is left out, so adding a setting with a
default changes no existing job's params. Two exceptions, both for the identity of jobs cached before this
module existed: the CORE keys are always written, and the keys in KEPT_WHEN_GIVEN stay when a producer gave
them, even at their default (dense runs have always written save_epochs, [] included; continue_schedule
runs start_epoch, 0 included; trajectory re-runs stop_after, None included).
Pure: no torch, so planning can build and check specs."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .defaults import FAST_DEFAULTS, fast_setting_error


class SpecError(ValueError):
    """A spec with an unknown or missing key, or a value of the wrong kind."""


def _given_inputs(paths: dict, inputs: dict, what: str) -> dict:
    """The paths a job reads, taken from the rule's named inputs (snakemake.input) rather than from its params, so
    the workflow runs under a module prefix or a storage plugin; each input the spec names must be given."""
    missing = sorted(k for k, v in paths.items() if v and k not in inputs)
    if missing:
        raise SpecError(f"{what}: the rule passes no input named {missing} (given: {sorted(inputs)})")
    return {k: str(inputs[k]) for k, v in paths.items() if v}


def canonical(obj):
    """Dicts with sorted keys and lists for tuples, recursively: Snakemake compares params as text, so the order
    of keys in a YAML file must not look like a change of settings."""
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def _check_keys(cls, d: dict, what: str, required: tuple[str, ...], keys: dict[str, str] | None = None) -> dict:
    """d's items by attribute name (`keys` maps a dict key to its attribute where they differ); unknown keys and
    missing required ones are errors that name them."""
    if not isinstance(d, dict):
        raise SpecError(f"{what}: expected a mapping, not {type(d).__name__}")
    keys = keys or {}
    names = {f.name for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
    out = {keys.get(k, k): v for k, v in d.items()}
    unknown = sorted(k for k in d if keys.get(k, k) not in names)
    if unknown:
        known = sorted({next((k for k, a in keys.items() if a == n), n) for n in names})
        raise SpecError(f"{what}: unknown key(s) {unknown} (known: {known})")
    missing = [k for k in required if k not in out]
    if missing:
        raise SpecError(f"{what}: missing key(s) {missing}")
    return out


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _params(spec, always=(), kept=frozenset()) -> dict:
    """The params form of a spec: its required fields and those in `always`, those in `kept` (given, and staying
    at their defaults), and every other field off its default; nested specs in their own params form."""
    out = {}
    for f in dataclasses.fields(spec):
        v = getattr(spec, f.name)
        if not f.name.startswith("_") and (f.name in always or f.name in kept or v != _default(f)):
            out[f.name] = v.params() if hasattr(v, "params") else v
    return canonical(out)


@dataclass(frozen=True)
class Init:
    """Where a run's weights start: `fresh` (drawn from the seed; with reinit, a second draw from reinit_seed,
    default seed + 1_000_003, that differs from the ticket's) or `file` (the state dict at `path`)."""
    source: str = "fresh"  # the dict key is "from"
    path: str | None = None
    reinit: bool = False
    reinit_seed: int | None = None

    @classmethod
    def from_dict(cls, d: dict, what: str = "init") -> Init:
        init = cls(**_check_keys(cls, d, what, ("source",), {"from": "source"}))
        if init.source not in ("fresh", "file"):
            raise SpecError(f"{what}.from: 'fresh' or 'file', not {init.source!r}")
        if init.source == "file" and not init.path:
            raise SpecError(f"{what}: from 'file' needs a path")
        return init

    def params(self) -> dict:
        out = _params(self, always=("source",))
        out["from"] = out.pop("source")
        return canonical(out)


@dataclass(frozen=True)
class Recipe:
    """How a run trains: SGD with momentum, a step (milestones x gamma) or cosine schedule, an optional warmup,
    for `epochs` (or exactly `steps` steps). The schema's `recipes` documents each key; its defaults equal these
    (tests/test_specs.py). Its params are the keys given plus any off its default, so the config's recipes
    (every default filled in by the schema) keep their identity, and a new key at its default adds nothing."""
    epochs: int
    lr: float
    milestones: tuple
    batch_size: int = 128
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    no_decay_bn_bias: bool = False  # no weight decay on 1-d parameters (BN affine, biases)
    gamma: float = 0.1
    augment: dict = field(default_factory=dict)  # crop_pad (pixels), flip
    eval_batch_size: int = 1000
    schedule: str = "step"          # step | cosine
    warmup: dict | None = None      # epochs, shape (constant | linear), lr
    steps: int | None = None        # train exactly this many steps (default: epochs x steps per epoch)
    _given: frozenset = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: dict | Recipe, what: str = "recipe") -> Recipe:
        if isinstance(d, Recipe):
            return d
        kw = _check_keys(cls, d, what, ("epochs", "lr", "milestones"))
        kw["milestones"] = tuple(kw["milestones"])
        return cls(**kw, _given=frozenset(kw))

    def params(self) -> dict:
        return _params(self, kept=self._given)


CORE = ("name", "data", "model", "recipe", "seed", "mask", "init", "tweaks", "teacher", "device")
KEPT_WHEN_GIVEN = frozenset({"save_epochs", "start_epoch", "stop_after"})


@dataclass(frozen=True)
class RunSpec:
    """One training run (ticketlab.training.Run); tweaks map a tweak name to its settings (ticketlab.tweaks)."""
    data: str                       # the prepared dataset (.npz)
    model: dict                     # arch and its settings (models.<name> of the config)
    recipe: Recipe                  # recipes.<name> of the config, less save_epochs
    seed: int                       # weights drawn (fresh init) and data order
    name: str = ""                  # the run's directory; "" = the directory it runs in
    mask: str | None = None         # the mask file trained under; None = dense
    init: Init = field(default_factory=Init)
    tweaks: dict = field(default_factory=dict)
    teacher: str | None = None      # final.pt of the run distilled from (tweaks that need a teacher)
    device: str = "auto"            # auto | cpu | cuda
    # device numerics (training.numerics.Fast); only those off their defaults enter the params
    precision: str = FAST_DEFAULTS["precision"]
    channels_last: Any = FAST_DEFAULTS["channels_last"]
    compile: bool = FAST_DEFAULTS["compile"]
    # what a dense run saves besides final.pt: init.pt, and the weights after these epochs (rewind points)
    save_init: bool = False
    save_epochs: tuple = ()
    start_epoch: int = 0            # continue_schedule: the schedule starts at the rewind epoch
    order_seed: int | None = None   # a replica's data order (default: the seed)
    match_params_of: str | None = None  # small_dense: the mask whose kept weights the width matches
    # a trajectory re-run (analysis.trajectory): its monitor settings, the epoch it stops after, no export
    monitor: dict | None = None
    stop_after: int | None = None
    export: bool = True
    _given: frozenset = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: dict | RunSpec, what: str | None = None) -> RunSpec:
        if isinstance(d, RunSpec):
            return d
        what = what or f"run spec {d.get('name', '') if isinstance(d, dict) else ''}".strip()
        kw = _check_keys(cls, d, what, ("data", "model", "recipe", "seed"))
        kw["init"] = Init.from_dict(kw.get("init", {"from": "fresh"}), f"{what}: init")
        kw["recipe"] = Recipe.from_dict(kw["recipe"], f"{what}: recipe")
        if "save_epochs" in kw:
            kw["save_epochs"] = tuple(kw["save_epochs"])
        bad = fast_setting_error(kw)
        if bad:
            raise SpecError(f"{what}: {bad}")
        for k in ("seed", "start_epoch"):
            if k in kw and (isinstance(kw[k], bool) or not isinstance(kw[k], int)):
                raise SpecError(f"{what}: {k} must be an integer, not {kw[k]!r}")
        return cls(**kw, _given=frozenset(kw))

    def params(self) -> dict:
        """The params form: CORE keys, then every other setting off its default (or given, KEPT_WHEN_GIVEN)."""
        return _params(self, always=CORE, kept=KEPT_WHEN_GIVEN & self._given)

    @property
    def fast(self) -> dict:
        return {k: getattr(self, k) for k in FAST_DEFAULTS}

    def inputs(self) -> dict:
        """The files the run reads, by the names the rules give them (its Snakemake input)."""
        paths = {"data": self.data, "mask": self.mask, "init": self.init.path, "teacher": self.teacher,
                 "match": self.match_params_of}
        return {k: v for k, v in paths.items() if v}

    def with_inputs(self, inputs: dict, what: str = "run") -> RunSpec:
        """This run reading its files from `inputs` (the rule's named input)."""
        p = _given_inputs(self.inputs(), inputs, what)
        init = dataclasses.replace(self.init, path=p["init"]) if "init" in p else self.init
        return dataclasses.replace(self, data=p["data"], mask=p.get("mask"), init=init, teacher=p.get("teacher"),
                                   match_params_of=p.get("match"))


@dataclass(frozen=True)
class AnalysisJob:
    """One analysis of a trained run (jobs.analyse): the run's spec (its model, tweaks, mask, data), the analysis
    settings (kind and its settings, defaults filled: plan.analysis_settings), the weights analysed, how many
    epochs they were trained (progress-dependent tweak state), and for kinds that need them whether to rebuild
    the run's starting weights (`initial`) and the reference run's final weights (`reference`)."""
    run: RunSpec
    analysis: dict
    weights: str
    epochs: int
    initial: bool = False
    reference: str | None = None

    @classmethod
    def from_dict(cls, d: dict | AnalysisJob, what: str = "analysis job") -> AnalysisJob:
        if isinstance(d, AnalysisJob):
            return d
        kw = _check_keys(cls, d, what, ("run", "analysis", "weights", "epochs"))
        if "kind" not in kw["analysis"]:
            raise SpecError(f"{what}: analysis has no kind")
        return cls(**{**kw, "run": RunSpec.from_dict(kw["run"], f"{what}: run")})

    def params(self) -> dict:
        return _params(self)

    def inputs(self) -> dict:
        """The files the job reads: the run's data, mask and width-matched mask (small_dense: the model's width
        depends on it), what its set-up reads (for `initial`), the weights analysed and the reference's."""
        started = self.run.inputs() if self.initial else {}
        paths = {**started, "data": self.run.data, "mask": self.run.mask, "match": self.run.match_params_of,
                 "weights": self.weights, "reference": self.reference}
        return {k: v for k, v in paths.items() if v}

    def with_inputs(self, inputs: dict, what: str = "analysis job") -> AnalysisJob:
        p = _given_inputs(self.inputs(), inputs, what)
        run = self.run.with_inputs({**self.run.inputs(), **p}, f"{what}: run")
        return dataclasses.replace(self, run=run, weights=p["weights"], reference=p.get("reference"))


@dataclass(frozen=True)
class MaskJob:
    """One mask file (jobs.make_mask): the mask set's settings (`settings`: its config entry, method and the
    method's settings, checked by the schema and flattened into the params as the config has them) and what
    the job reads: the weights pruned, the previous level's mask (IMP), the source mask (ratios_from), the
    data and model; lth_iter's cycle_recipe and device settings (it trains)."""
    settings: dict
    sparsity: float
    weights: str
    data: str
    model: dict
    seed: int
    previous: str | None = None
    source: str | None = None
    cycle_recipe: dict | None = None
    device: str | None = None
    precision: str = FAST_DEFAULTS["precision"]
    channels_last: Any = FAST_DEFAULTS["channels_last"]
    compile: bool = FAST_DEFAULTS["compile"]

    @classmethod
    def from_dict(cls, d: dict | MaskJob, what: str = "mask job") -> MaskJob:
        if isinstance(d, MaskJob):
            return d
        if not isinstance(d, dict):
            raise SpecError(f"{what}: expected a mapping, not {type(d).__name__}")
        own = {f.name for f in dataclasses.fields(cls)} - {"settings"}
        kw = {k: v for k, v in d.items() if k in own}
        settings = {k: v for k, v in d.items() if k not in own}
        if "method" not in settings:
            raise SpecError(f"{what}: no method")
        missing = [k for k in ("sparsity", "weights", "data", "model", "seed") if k not in kw]
        if missing:
            raise SpecError(f"{what}: missing key(s) {missing}")
        return cls(settings=settings, **kw)

    @property
    def method(self) -> str:
        return self.settings["method"]

    def inputs(self) -> dict:
        """The files the job reads: the weights pruned, the previous level's and the source mask, the data."""
        paths = {"weights": self.weights, "previous": self.previous, "source": self.source, "data": self.data}
        return {k: v for k, v in paths.items() if v}

    def with_inputs(self, inputs: dict, what: str = "mask job") -> MaskJob:
        p = _given_inputs(self.inputs(), inputs, what)
        return dataclasses.replace(self, weights=p["weights"], data=p["data"], previous=p.get("previous"),
                                   source=p.get("source"))

    def params(self) -> dict:
        """The settings and the job's keys in one mapping, as pruners read it (PruneContext.spec); previous and
        source are always written (None when absent), the others only off their defaults."""
        out = _params(self, always=("previous", "source"))
        return canonical({**out.pop("settings"), **out})


@dataclass(frozen=True)
class ArtefactJob:
    """One table or figure (jobs.make_artefact): the artefact's config entry as planning completes it (`spec`:
    lists normalised, `analysis_kind`, `setup` for kinds flagged setup), the runs it shows (`rows`, one per
    experiment, mask, sparsity, variant and seed: plan.artefact_runs) and the config's variants it names."""
    spec: dict
    rows: list
    variants: dict

    @classmethod
    def from_dict(cls, d: dict | ArtefactJob, what: str = "artefact job") -> ArtefactJob:
        if isinstance(d, ArtefactJob):
            return d
        kw = _check_keys(cls, d, what, ("spec", "rows", "variants"))
        if "kind" not in kw["spec"]:
            raise SpecError(f"{what}: spec has no kind")
        return cls(**kw)

    def params(self) -> dict:
        return _params(self)
