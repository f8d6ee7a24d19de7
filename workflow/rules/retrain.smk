# Re-training a ticket (mask x initialisation) with a variant's tweaks; mask `dense` = 0% sparsity.
rule retrain:
    input:
        unpack(lambda w: plan.spec_inputs(plan.retrain_spec(CFG, wc(w)))),
    output:
        final="results/runs/{dataset}/{model}/{recipe}/seed{seed}/{mask}/s{sparsity}/{variant}/final.pt",
        metrics="results/runs/{dataset}/{model}/{recipe}/seed{seed}/{mask}/s{sparsity}/{variant}/metrics.csv",
        summary="results/runs/{dataset}/{model}/{recipe}/seed{seed}/{mask}/s{sparsity}/{variant}/summary.json",
    params:
        spec=lambda w: plan.retrain_spec(CFG, wc(w)),
    log:
        "results/logs/runs/{dataset}/{model}/{recipe}/seed{seed}/{mask}/s{sparsity}/{variant}.log",
    group:
        _group("retrain")
    threads: job_threads("train")
    resources:
        **job_resources("train"),
    conda:
        "../envs/ticketlab.yaml"
    script:
        "../../scripts/train.py"
