"""Cluster submissions: which jobs share one (Snakemake groups, plan.job_group), which run on the submitting node
(localrules), and how many SLURM submissions each paper configuration makes (a dry run with the SLURM profile:
Snakemake's own grouping, printed as "Group job <id>" with its jobs indented below)."""
import re
import subprocess
import sys

import pytest

from conftest import REPO, config_with
from ticketlab import plan
from ticketlab.layout import W

RUN = "digits/resnet18_demo/demo/seed42"


def _mask(mask, sparsity, model="resnet18_demo", recipe="demo"):
    return W(dataset="digits", model=model, recipe=recipe, seed="42", mask=mask, sparsity=sparsity)


def test_a_job_shares_the_submission_of_the_run_it_reads():
    cfg = config_with()
    dense = W(dataset="digits", model="resnet18_demo", recipe="demo", seed="42")
    assert plan.job_group(cfg, "dense", dense) == f"{RUN}/dense"
    retrain = W(**vars(_mask("imp", "36.00")), variant="lth")
    assert plan.job_group(cfg, "retrain", retrain) == f"{RUN}/imp/s36.00/lth"
    # IMP level 1 prunes the dense run, level 2 the level-1 lth run; one-shot OMP prunes the dense run
    assert plan.job_group(cfg, "mask", _mask("imp", "36.00")) == f"{RUN}/dense"  # the demo's rate is 0.36
    assert plan.job_group(cfg, "mask", _mask("imp", "59.04")) == f"{RUN}/imp/s36.00/lth"
    assert plan.job_group(cfg, "mask", _mask("omp", "59.04")) == f"{RUN}/dense"
    # an analysis goes with the run it analyses; one that also reads a reference run goes on its own
    analysis = W(run=f"{RUN}/imp/s36.00/ls", analysis="hessian")
    assert plan.job_group(cfg, "analysis", analysis) == f"{RUN}/imp/s36.00/ls"
    basin = W(run="digits/lenet5_demo/gradflow/seed42/pruned/s95.00/basin_lt@o5", analysis="basin_paths")
    assert plan.job_group(cfg, "analysis", basin) is None


def test_jobs_that_train_or_would_make_a_group_depend_on_itself_go_on_their_own():
    cfg = config_with()
    dlth = dict(model="resnet20_demo", recipe="dlth_demo")
    # lth_iter trains in its mask job: a submission of its own, not hours added to the dense run's
    assert plan.job_group(cfg, "mask", _mask("dlth_lthiter", "50.00", **dlth)) is None
    # ratios_from reads GraSP's mask of the same dense run: both go with that run
    assert plan.job_group(cfg, "mask", _mask("dlth_grasp_ratios", "50.00", **dlth)) == \
        "digits/resnet20_demo/dlth_demo/seed42/dense"


def _submissions(out: str) -> dict:
    """From a dry run's output: each group's id and jobs (rule, wildcards), and the jobs outside any group."""
    groups, single, current = {}, [], None
    for line in out.splitlines():
        if m := re.search(r"Group job (\S+) \(jobs in lexicogr\. order\):", line):
            current = groups.setdefault(m[1], [])
        elif m := re.match(r"^(\s*)rule (\S+):", line):
            job = [m[2], ""]
            (current if m[1] else single).append(job)
            if not m[1]:
                current = None
        elif m := re.match(r"^\s*wildcards: (.*)", line):
            (current or single)[-1][1] = m[1]
    return {"groups": groups, "single": single}


# SLURM submissions of each paper configuration (dry run, SLURM profile): before grouping and localrules every
# job but `all` was one (1036, 2474, 3194, 872 and 179).
SUBMISSIONS = {"spend": 800, "tost": 1647, "sanity": 2475, "dlth": 700, "gradflow": 140}
LOCAL = {"prepare_data", "table", "figure", "claims", "curves", "all"}
TRAINING = re.compile(r"dense_.*|retrain")


@pytest.mark.workflow
@pytest.mark.parametrize("paper", sorted(SUBMISSIONS))
def test_paper_configs_submit_one_job_per_run_with_its_masks_and_analyses(paper, tmp_path):
    p = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-n",
                        "--directory", str(tmp_path), "--profile", str(REPO / "workflow" / "profiles" / "slurm"),
                        "--configfile", str(REPO / "config" / "paper" / f"{paper}.yaml")],
                       capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    s = _submissions(p.stdout + p.stderr)
    for gid, jobs in s["groups"].items():
        rules = [r for r, _ in jobs]
        assert not LOCAL & set(rules), (gid, rules)
        trains = [(r, w) for r, w in jobs if TRAINING.fullmatch(r)]
        assert len(trains) <= 1, (gid, trains)  # never two training runs in series in one submission
        for r, w in jobs:
            if r.startswith("analysis"):  # an analysis goes with the run it analyses
                assert f"run={gid}," in w, (gid, r, w)
    remote_single = [r for r, _ in s["single"] if r not in LOCAL]
    assert not [r for r in remote_single if TRAINING.fullmatch(r)]  # every training run is a group's
    assert len(s["groups"]) + len(remote_single) == SUBMISSIONS[paper]
