# Snakemake entry point: the job's work lives in ticketlab.jobs (JOBS["trajectory"]; see its docstrings).
import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - this workflow's own ticketlab first (see workflow/Snakefile)
from ticketlab.entry import main  # noqa: E402

main(snakemake, job="trajectory")  # noqa: F821 - injected by Snakemake's script directive
