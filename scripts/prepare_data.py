# Snakemake entry point: the job's work lives in ticketlab.jobs (JOBS["prepare_data"]; see its docstrings).
from ticketlab.entry import main

main(snakemake, job="prepare_data")  # noqa: F821 - injected by Snakemake's script directive
