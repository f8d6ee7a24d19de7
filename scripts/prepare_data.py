# Snakemake entry point: the job's work lives in ticketlab.jobs (JOBS["prepare_data"]; see its docstrings).
import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - this workflow's own ticketlab first (see workflow/Snakefile)
from ticketlab.entry import main  # noqa: E402

main(snakemake, job="prepare_data")  # noqa: F821 - injected by Snakemake's script directive
