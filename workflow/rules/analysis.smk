# Analyses of trained runs (Hessian, loss landscape, perturbation, activation sparsity), one cached
# JSON per run and analysis; `trajectory` analyses re-train the run with monitors switched on, so
# runs that no figure monitors train at full speed; kinds with arrays (predictions, flattened weights)
# also write an .npz beside the JSON. {run} is the run's path under results/runs. On a cluster an analysis
# shares the submission of the run it reads (plan.job_group); trajectories train and go on their own.
rule analysis:
    input:
        unpack(lambda w: plan.analysis_inputs(_analysis_spec(w))),
    output:
        json="results/analysis/{run}/{analysis}.json",
    wildcard_constraints:
        run=r".+/seed\d+/.+",
        analysis=_analyses("analysis"),
    params:
        spec=_analysis_spec,
    log:
        "results/logs/analysis/{run}/{analysis}.log",
    group:
        _group("analysis")
    threads: job_threads("analysis")
    resources:
        **job_resources("analysis"),
    conda:
        "../envs/ticketlab.yaml"
    script:
        "../../scripts/analyse.py"


rule analysis_arrays:
    input:
        unpack(lambda w: plan.analysis_inputs(_analysis_spec(w))),
    output:
        json="results/analysis/{run}/{analysis}.json",
        arrays="results/analysis/{run}/{analysis}.npz",
    wildcard_constraints:
        run=r".+/seed\d+/.+",
        analysis=_analyses("analysis_arrays"),
    params:
        spec=_analysis_spec,
    log:
        "results/logs/analysis/{run}/{analysis}.log",
    group:
        _group("analysis")
    threads: job_threads("analysis")
    resources:
        **job_resources("analysis"),
    conda:
        "../envs/ticketlab.yaml"
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
        analysis=_analyses("trajectory"),
    params:
        spec=_analysis_spec,
    log:
        "results/logs/analysis/{run}/{analysis}.log",
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    conda:
        "../envs/ticketlab.yaml"
    script:
        "../../scripts/trajectory.py"
