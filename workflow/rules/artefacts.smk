# Tables and figures: each reads the run summaries it lists and the paper's values.
rule table:
    input:
        unpack(_artefact_inputs),
    output:
        csv=report("results/tables/{id}.csv", category="Tables", labels={"id": "{id}"}),
        md="results/tables/{id}.md",
    wildcard_constraints:
        id=_ids(plan.artefact_kinds("table")),
    params:
        job=_artefact_job,
    log:
        "results/logs/artefacts/{id}.log",
    threads: job_threads("artefact")
    resources:
        **job_resources("artefact"),
    conda:
        "../../envs/ticketlab.yaml"
    script:
        "../../scripts/make_artefact.py"


rule figure:
    input:
        unpack(_artefact_inputs),
    output:
        png=report("results/figures/{id}.png", category="Figures", labels={"id": "{id}"}),
        pdf="results/figures/{id}.pdf",
        csv="results/figures/{id}.csv",
    wildcard_constraints:
        id=_ids(plan.artefact_kinds("figure")),
    params:
        job=_artefact_job,
    log:
        "results/logs/artefacts/{id}.log",
    threads: job_threads("artefact")
    resources:
        **job_resources("artefact"),
    conda:
        "../../envs/ticketlab.yaml"
    script:
        "../../scripts/make_artefact.py"


# Does it reproduce? The verdict on each claim of the papers named (config/claims/), from the tidy CSVs of the
# artefacts the claims read; the .rst is the claims table of the report's first page (report/workflow.rst).
rule claims:
    input:
        unpack(_artefact_inputs),
    output:
        csv=report("results/tables/{id}.csv", category="Claims", labels={"id": "{id}"}),
        md="results/tables/{id}.md",
        rst="results/tables/{id}.rst",
    wildcard_constraints:
        id=_ids(plan.artefact_kinds("claims")),
    params:
        job=_artefact_job,
    log:
        "results/logs/artefacts/{id}.log",
    threads: job_threads("artefact")
    resources:
        **job_resources("artefact"),
    conda:
        "../../envs/ticketlab.yaml"
    script:
        "../../scripts/make_artefact.py"
