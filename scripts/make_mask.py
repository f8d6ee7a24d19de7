# Snakemake entry point: the job's work lives in ticketlab.jobs (JOBS["mask"]; see its docstrings).
from ticketlab.entry import main

main(snakemake, job="mask")  # noqa: F821 - injected by Snakemake's script directive
