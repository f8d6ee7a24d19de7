# Snakemake entry point: the job's work lives in ticketlab.jobs (JOBS["train"]; see its docstrings).
from ticketlab.entry import main

main(snakemake, job="train")  # noqa: F821 - injected by Snakemake's script directive
