# Snakemake entry point: the job's work lives in ticketlab.jobs (JOBS["analysis"]; see its docstrings).
from ticketlab.entry import main

main(snakemake, job="analysis")  # noqa: F821 - injected by Snakemake's script directive
