"""The quick tier (config/quick/<prefix>.yaml over config/paper/<prefix>.yaml): each plans, without data, its
claims artefact and exactly the artefacts of the claims it decides, on the paper's datasets only, within one
GPU-hour as estimated (ticketlab.budget), and says that estimate in its header."""
import re
import sys

import pytest

from conftest import REPO
from ticketlab import budget, claims, plan

sys.path.insert(0, str(REPO / "scripts"))
from footprint import load_config, summary_files  # noqa: E402

pytestmark = pytest.mark.workflow  # snakemake --summary in a subprocess
PREFIXES = ("spend", "tost", "sanity", "dlth", "gradflow")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_quick_tier_plans_its_claims_within_one_gpu_hour(prefix):
    files = [str(REPO / "config" / "paper" / f"{prefix}.yaml"), str(REPO / "config" / "quick" / f"{prefix}.yaml")]
    cfg = load_config(files)
    assert cfg["targets"] == [f"{prefix}_claims"] and cfg["scale"] == "paper"
    decided = claims.decided(cfg, cfg["artefacts"][f"{prefix}_claims"], claims.load(prefix))
    assert decided, prefix
    needed = {claims.load(prefix)["claims"][c]["artefact"] for c in decided}
    rows = summary_files(files)
    built = {path.rsplit("/", 1)[1].rsplit(".", 1)[0] for path, rule in rows if rule in ("table", "figure")}
    assert built == needed  # exactly the decided claims' artefacts
    claims_files = [f"results/tables/{prefix}_claims.{e}" for e in ("csv", "md", "rst")]
    assert [p for p, r in rows if r == "claims"] == claims_files
    assert not any("digits" in p for p, _ in rows)  # the paper's datasets only
    est = budget.estimate(cfg, rows)
    assert est["seconds"] <= 3600, est
    header = (REPO / "config" / "quick" / f"{prefix}.yaml").read_text()
    stated = int(re.search(r"^# GPU estimate: (\d+) min", header, re.M).group(1))
    assert abs(stated - est["seconds"] / 60) <= 1.5, (stated, est["seconds"] / 60)  # the header is the estimate
    assert plan.artefact_runs(cfg, f"{prefix}_claims")  # and the claims artefact reads them


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_planned_run_of_a_paper_config_has_the_epochs_its_steps_need(prefix):
    """A recipe with `steps` needs epochs x steps per epoch >= steps (else the run stops at its start: training's
    schedule check); dlth's RST transformations once inherited the demo's 16 epochs for 90,000 steps."""
    files = [str(REPO / "config" / "paper" / f"{prefix}.yaml")]
    cfg = load_config(files)
    costs = budget.Costs(cfg)
    for path, rule in summary_files(files):
        if rule == "retrain" and path.endswith("/final.pt"):
            w = plan.parse_run(path.removeprefix("results/runs/").removesuffix("/final.pt"))
            r = plan.retrain_spec(cfg, w)["recipe"]
            per_epoch = -(-costs.data(w.dataset)["train"] // r.get("batch_size", 128))
            assert not r.get("steps") or r["steps"] <= r["epochs"] * per_epoch, (path, r["epochs"], r["steps"])
