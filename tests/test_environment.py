"""The jobs' software: the conda environment the rules declare (`--sdm conda`) pins what requirements.txt pins and
points at nothing in the checkout, and a Python that has the third-party packages but no installed ticketlab runs
the workflow from another working directory (the Snakefile and the jobs import the workflow's own copy)."""
import re
import site
import subprocess
import sys
import tomllib
import venv

import pytest
import yaml

from conftest import REPO

ENV = REPO / "workflow" / "envs" / "ticketlab.yaml"


def _pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if m := re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line):
            out[m[1].lower()] = m[2]
    return out


def test_the_conda_environment_pins_what_requirements_pins_and_nothing_of_the_checkout():
    env = yaml.safe_load(ENV.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert all("==" in p for p in pip), [p for p in pip if "==" not in p]  # no -e, no path, nothing unpinned
    pins, req = _pins(pip), _pins((REPO / "requirements.txt").read_text().splitlines())
    assert pins and {k: req.get(k) for k in pins} == pins
    # every package the package imports is in it (pyproject's dependencies, by name)
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {d.lower() for d in deps} <= set(pins), {d.lower() for d in deps} - set(pins)
    py = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert py == f"python={sys.version_info.major}.{sys.version_info.minor}"
    # every rule declares it, by a path relative to its rule file
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for path in re.findall(r'conda:\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / path).resolve() == ENV, (smk.name, path)


SMALL = {"device": "cpu", "targets": ["env_tab"],
         "experiments": {"spend": {"seeds": [42], "sparsities": {"imp": [0, 0.36]}}},
         "artefacts": {"env_tab": {"kind": "sparsity_table", "title": "environment test", "experiment": "spend",
                                   "variants": ["lth"]}}}


@pytest.mark.workflow
def test_a_python_without_ticketlab_installed_runs_the_workflow_from_elsewhere(tmp_path):
    # a virtual environment that sees this one's third-party packages (a .pth line adds their directory; the .pth
    # files in it, ticketlab's editable install among them, are not read from there) and nothing else
    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    purelib = next((env / "lib").glob("python3*/site-packages"))
    (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    py = str(env / "bin" / "python")
    probe = subprocess.run([py, "-c", "import torch, snakemake, pandas; import ticketlab"], capture_output=True,
                           text=True, cwd=tmp_path)
    assert "No module named 'ticketlab'" in probe.stderr, probe.stderr  # the deps import, ticketlab does not

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    (work / "override.yaml").write_text(yaml.safe_dump(SMALL))
    cmd = [py, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(work),
           "--cores", "2", "--configfile", str(REPO / "tests" / "smoke.yaml"), str(work / "override.yaml")]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=elsewhere)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    # data, dense run, mask, re-training, table and training curves: every kind of entry point but the analyses
    # ran, and the job server with them
    assert (work / "results" / "tables" / "env_tab.csv").is_file()
    assert (work / "results" / "curves" / "spend.png").is_file()
    assert "7 of 7 steps (100%) done" in p.stderr, p.stderr[-2000:]
    assert "job server unavailable" not in p.stderr  # the server the jobs start imports the same copy
    assert not list(elsewhere.iterdir())  # nothing written where it was started from
