# Configuration check and the path layout (both in the ticketlab package, so tests use the same code),
# and the functions the rule files call (snakemake --lint keeps functions out of the files with rules).
import sys

from ticketlab import layout, plan
from ticketlab.config import ConfigError, validate
from ticketlab.devices import nvidia_gpu_visible

try:
    CFG = validate(config)
except ConfigError as e:
    sys.exit(f"ticketlab: {e}")


report: "../report/workflow.rst"


wildcard_constraints:
    dataset=r"[^/]+",
    model=r"[^/]+",
    recipe=r"[^/]+",
    seed=r"\d+",
    mask=r"[^/]+",
    sparsity=r"\d\d\.\d\d",
    variant=r"[^/]+",


def wc(w):
    """Snakemake wildcards as a plain record for ticketlab.plan."""
    return plan.W(**dict(w.items()))


# What each job asks of the scheduler, per class of rules, from the config's `resources:` (the one place
# that maps rules to classes): data = prepare_data; train = dense_*, retrain, trajectory; mask;
# analysis; artefact = table, figure, claims, curves.
def job_threads(cls):
    """Threads (torch threads; SLURM --cpus-per-task): resources.<cls>.cpus, default the top-level threads."""
    return CFG["resources"][cls].get("cpus", CFG["threads"])


def job_resources(cls):
    """Snakemake resources of a class of rules. runtime (minutes) grows with the attempt, so a retried job
    (e.g. one killed at its time limit: training resumes from its checkpoint) gets more time; `gpu` is
    the SLURM plugin's GPU request (--gpus); gpu_slot counts the job against a local run's GPU pool."""
    r = CFG["resources"][cls]
    res = {"mem_mb": r["mem_mb"], "runtime": lambda w, attempt: r["runtime"] * attempt}
    if r["gpus"]:
        res.update(gpu=r["gpus"], gpu_slot=1)
    return res


def _local_gpu():
    """Whether local jobs will find a GPU, without importing torch at parse time (2-3 s on every call): an
    NVIDIA device node that CUDA_VISIBLE_DEVICES does not hide. It only sizes the local gpu_slot pool."""
    if CFG["device"] == "auto":
        return nvidia_gpu_visible()
    return CFG["device"] == "cuda"


# Whether this Snakemake submits its jobs (a cluster executor, or a dry run of one: `--jobs` with the SLURM
# profile) rather than running them here. The executor is chosen after the Snakefile is parsed, so this reads
# the job limit, which Snakemake keeps only for such runs (a local run's -j/--jobs is its cores; a local run given
# both --cores and --jobs is taken for a submitting one: its jobs then also share the per-submission limits).
SUBMITS = workflow.resource_settings.nodes is not None


# On a cluster, a job's `group` is the run it trains or reads (plan.job_group): one submission trains a run, then
# makes the masks and analyses that read it. A submission asks for no more than the largest job of any class
# (mem_mb and gpu are limits per submission: `local` scope), so Snakemake stacks a group's jobs in series until
# they fit and adds up their runtimes, instead of asking for the sum of a dozen jobs' GPUs and memory at once.
# Local runs ignore groups.
def _group(rule, recipe=None):
    if recipe is not None:
        return lambda w: plan.job_group(CFG, rule, plan.W(recipe=recipe, **dict(w.items())))
    return lambda w: plan.job_group(CFG, rule, wc(w))


resource_scopes:
    gpu="local",


if SUBMITS:
    _classes = [r for cls, r in CFG["resources"].items() if cls != "gpu_share"]
    for _name, _key in (("mem_mb", "mem_mb"), ("gpu", "gpus")):
        if _name not in workflow.global_resources and max(r[_key] for r in _classes) > 0:
            workflow.register_resource(_name, max(r[_key] for r in _classes))


# A local run on a GPU: at most resources.gpu_share GPU jobs share it at a time (each takes
# gpu_slot=1); `--resources gpu_slot=N` (command line or profile) takes precedence. Cluster runs
# declare no pool, so every job is submitted with its own GPU request (a login node with a GPU included).
if not SUBMITS and "gpu_slot" not in workflow.global_resources and _local_gpu():
    workflow.register_resource("gpu_slot", CFG["resources"]["gpu_share"])


# dense.smk: one rule per recipe, so the recipe comes from the loop, not a wildcard.
def _dense_spec(recipe):
    return lambda w: plan.dense_spec(CFG, plan.W(recipe=recipe, **dict(w.items())))


# analysis.smk
def _analyses(rule_name):
    """The analysis names that one of the analysis rules makes (plan.analysis_rule), as a wildcard pattern."""
    return "|".join(n for n in CFG["analyses"] if plan.analysis_rule(CFG, n) == rule_name) or "^$"


def _analysis_spec(w):
    return plan.analysis_spec(CFG, w.run, w.analysis)


# artefacts.smk
def _ids(kinds):
    return "|".join(a for a, s in CFG["artefacts"].items() if s["kind"] in kinds) or "^$"


def _artefact_inputs(w):
    rows = plan.artefact_runs(CFG, w.id)
    return {"runs": [r["path"] for r in rows], "arrays": [r["arrays"] for r in rows if "arrays" in r],
            "paper": plan.paper_values(CFG, w.id)}


def _artefact_job(w):
    return plan.artefact_job(CFG, w.id)


# The report: each artefact under its paper (subcategories tables, figures, claims, training curves), captioned
# from its config entry (report/artefact.rst); the runs of the training curves, per experiment.
def _category(w):
    return plan.report_category(CFG, w.id)


def _labels(w):
    return {"id": w.id, "title": CFG["artefacts"][w.id].get("title", "")}


CURVES = plan.curve_runs(CFG)
