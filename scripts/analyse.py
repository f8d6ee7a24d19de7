# Snakemake entry point: the job's work lives in ticketlab.jobs (see its docstrings).
from ticketlab.jobs import main

main(snakemake)  # noqa: F821 - injected by Snakemake's script directive
