# Tables and figures: each reads the run summaries it lists and the paper's values.
def _ids(kinds):
    return "|".join(a for a, s in CFG["artefacts"].items() if s["kind"] in kinds) or "^$"


rule table:
    input:
        runs=lambda w: [r["path"] for r in plan.artefact_runs(CFG, w.id)],
        paper=lambda w: plan.paper_values(CFG, w.id),
    output:
        csv=report("results/tables/{id}.csv", category="Tables", labels={"id": "{id}"}),
        md="results/tables/{id}.md",
    wildcard_constraints:
        id=_ids(plan.TABLE_KINDS),
    params:
        spec=lambda w: plan.canonical(CFG["artefacts"][w.id]),
        rows=lambda w: plan.artefact_runs(CFG, w.id),
        variants=lambda w: plan.canonical({v: CFG["variants"][v] for v in plan.artefact_variants(CFG["artefacts"][w.id])}),
    log:
        "results/logs/artefacts/{id}.log",
    conda:
        "../../envs/ticketlab.yaml"
    script:
        "../../scripts/make_artefact.py"


rule figure:
    input:
        runs=lambda w: [r["path"] for r in plan.artefact_runs(CFG, w.id)],
        paper=lambda w: plan.paper_values(CFG, w.id),
    output:
        png=report("results/figures/{id}.png", category="Figures", labels={"id": "{id}"}),
        pdf="results/figures/{id}.pdf",
        csv="results/figures/{id}.csv",
    wildcard_constraints:
        id=_ids(plan.FIGURE_KINDS),
    params:
        spec=lambda w: plan.canonical(CFG["artefacts"][w.id]),
        rows=lambda w: plan.artefact_runs(CFG, w.id),
        variants=lambda w: plan.canonical({v: CFG["variants"][v] for v in plan.artefact_variants(CFG["artefacts"][w.id])}),
    log:
        "results/logs/artefacts/{id}.log",
    conda:
        "../../envs/ticketlab.yaml"
    script:
        "../../scripts/make_artefact.py"
