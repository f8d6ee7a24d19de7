# Tables and figures: each reads the run summaries it lists and the paper's values.
def _ids(kinds):
    return "|".join(a for a, s in CFG["artefacts"].items() if s["kind"] in kinds) or "^$"


def _artefact_inputs(w):
    rows = plan.artefact_runs(CFG, w.id)
    return {"runs": [r["path"] for r in rows], "arrays": [r["arrays"] for r in rows if "arrays" in r],
            "paper": plan.paper_values(CFG, w.id)}


def _artefact_job(w):
    return plan.artefact_job(CFG, w.id)


rule table:
    input:
        unpack(_artefact_inputs),
    output:
        csv=report("results/tables/{id}.csv", category="Tables", labels={"id": "{id}"}),
        md="results/tables/{id}.md",
    wildcard_constraints:
        id=_ids(plan.TABLE_KINDS),
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
        id=_ids(plan.FIGURE_KINDS),
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
