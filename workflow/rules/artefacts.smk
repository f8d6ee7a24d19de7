# Tables and figures: each reads the run summaries it lists and the paper's values.
rule table:
    input:
        unpack(_artefact_inputs),
    output:
        csv=report("results/tables/{id}.csv", caption="../report/artefact.rst", category=_category,
                   subcategory="Tables", labels=_labels),
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
        "../envs/ticketlab.yaml"
    script:
        "../../scripts/make_artefact.py"


rule figure:
    input:
        unpack(_artefact_inputs),
    output:
        png=report("results/figures/{id}.png", caption="../report/artefact.rst", category=_category,
                   subcategory="Figures", labels=_labels),
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
        "../envs/ticketlab.yaml"
    script:
        "../../scripts/make_artefact.py"


# Does it reproduce? The verdict on each claim of the papers named (config/claims/), from the tidy CSVs of the
# artefacts the claims read; the .rst is the claims table of the report's first page (report/workflow.rst).
rule claims:
    input:
        unpack(_artefact_inputs),
    output:
        csv=report("results/tables/{id}.csv", caption="../report/claims.rst", category=_category,
                   subcategory="Claims", labels=_labels),
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
        "../envs/ticketlab.yaml"
    script:
        "../../scripts/make_artefact.py"


# The report's training curves: per experiment, loss and accuracy per epoch of every run its artefacts show.
rule curves:
    input:
        metrics=lambda w: [f"{layout.RUNS}/{run}/{layout.METRICS}" for run in CURVES[w.experiment]],
    output:
        report(layout.curves_path("{experiment}"), caption="../report/curves.rst",
               category=lambda w: plan.report_category(CFG, w.experiment), subcategory="Training curves",
               labels={"experiment": "{experiment}"}),
    wildcard_constraints:
        experiment="|".join(CURVES) or "^$",
    params:
        job=lambda w: {"experiment": w.experiment, "runs": CURVES[w.experiment]},
    log:
        "results/logs/curves/{experiment}.log",
    threads: job_threads("artefact")
    resources:
        **job_resources("artefact"),
    conda:
        "../envs/ticketlab.yaml"
    script:
        "../../scripts/make_curves.py"
