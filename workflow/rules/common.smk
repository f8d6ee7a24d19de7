# Configuration check and the path layout (both in the ticketlab package, so tests use the same code).
import sys

from ticketlab import plan
from ticketlab.config import ConfigError, validate

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
