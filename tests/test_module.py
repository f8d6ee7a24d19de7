"""The workflow as a Snakemake module of another workflow, under a prefix: every job must read the files its rule
passes (snakemake.input) and write those it names (snakemake.output), since the paths written in its params
(results/...) are not where the files are. Three artefacts at smoke scale cover every kind of job and input:
dense runs with rewind points, masks (IMP level 2 with its previous level, a mask of a gradual-pruning run),
re-training from a file, with a teacher (KD) and at a width matched to a mask (small dense), monitored re-runs
(trajectory), analyses with init, reference and arrays, a table and figures."""
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO, SMOKE, failed_jobs

pytestmark = pytest.mark.workflow

OUTER = f"""\
configfile: "{REPO}/config/config.yaml"
configfile: "{SMOKE}"
config["experiments"]["spend"]["sparsities"]["imp"] = [0.36, 0.5904]  # level 2 prunes level 1's run
config["artefacts"]["spend_tab_a2"]["variants"] = ["lth", "at_trt_kd", "small_dense"]
# (the claims on the variants left out would fail the config check, naming them: no claims here)
config["artefacts"] = {{k: a for k, a in config["artefacts"].items() if a["kind"] != "claims"}}


module ticketlab:
    snakefile:
        "{REPO}/workflow/Snakefile"
    config:
        config
    prefix:
        "lt"


use rule * from ticketlab as lt_*
"""
TARGETS = ["lt/results/figures/gradflow_fig5.png", "lt/results/figures/tost_fig2.png",
           "lt/results/tables/spend_tab_a2.csv"]


def test_the_workflow_builds_artefacts_as_a_prefixed_module_of_another(tmp_path):
    (tmp_path / "Snakefile").write_text(OUTER)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *TARGETS]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0, f"{failed_jobs(tmp_path, p.stdout + p.stderr)}\n{p.stderr[-3000:]}"
    assert not (tmp_path / "results").exists()  # nothing written where the params' paths point
    for t in TARGETS:
        assert (tmp_path / t).stat().st_size > 0, t
    table = pd.read_csv(tmp_path / TARGETS[2])
    assert set(table["variant"]) == {"lth", "at_trt_kd", "small_dense"}
    assert set(table["sparsity"].round(4)) == {0.36, 0.5904}
    imp2 = tmp_path / "lt/results/masks/digits/resnet18_demo/demo/seed42/imp/s59.04.json"
    assert imp2.exists()
    # and nothing is left to do: the module's jobs are cached like the workflow's own
    p = subprocess.run([*cmd, "-n"], capture_output=True, text=True, cwd=tmp_path)
    assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-2000:]
