# Analyses of trained runs (Hessian, loss landscape, perturbation, activation sparsity), one cached
# JSON per run and analysis; `trajectory` analyses re-train the run with monitors switched on, so
# runs that no figure monitors train at full speed. {run} is the run's path under results/runs.
def _analyses(kinds):
    return "|".join(n for n, a in CFG["analyses"].items() if (a["kind"] == "trajectory") == kinds) or "^$"


def _analysis_spec(w):
    return plan.analysis_spec(CFG, w.run, w.analysis)


rule analysis:
    input:
        unpack(lambda w: plan.analysis_inputs(_analysis_spec(w))),
    output:
        "results/analysis/{run}/{analysis}.json",
    wildcard_constraints:
        run=r".+/seed\d+/.+",
        analysis=_analyses(False),
    params:
        spec=_analysis_spec,
    log:
        "results/logs/analysis/{run}/{analysis}.log",
    threads: CFG["threads"]
    conda:
        "../../envs/ticketlab.yaml"
    script:
        "../../scripts/analyse.py"


rule trajectory:
    input:
        unpack(lambda w: plan.analysis_inputs(_analysis_spec(w))),
    output:
        json="results/analysis/{run}/{analysis}.json",
        final="results/analysis/{run}/{analysis}/final.pt",
        metrics="results/analysis/{run}/{analysis}/metrics.csv",
        summary="results/analysis/{run}/{analysis}/summary.json",
    wildcard_constraints:
        run=r".+/seed\d+/.+",
        analysis=_analyses(True),
    params:
        spec=_analysis_spec,
    log:
        "results/logs/analysis/{run}/{analysis}.log",
    threads: CFG["threads"]
    resources:
        runtime=lambda w, attempt: 60 * attempt,
    conda:
        "../../envs/ticketlab.yaml"
    script:
        "../../scripts/analyse.py"
