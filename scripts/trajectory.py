# Snakemake entry point: the job's work lives in ticketlab.jobs (JOBS["trajectory"]; see its docstrings).
from ticketlab.entry import main

main(snakemake, job="trajectory")  # noqa: F821 - injected by Snakemake's script directive
