# One mask file (+ JSON report of per-layer density) per mask set and sparsity.
rule mask:
    input:
        unpack(lambda w: plan.mask_inputs(plan.mask_spec(CFG, wc(w)))),
    output:
        mask="results/masks/{dataset}/{model}/{recipe}/seed{seed}/{mask}/s{sparsity}.pt",
        report="results/masks/{dataset}/{model}/{recipe}/seed{seed}/{mask}/s{sparsity}.json",
    params:
        spec=lambda w: plan.mask_spec(CFG, wc(w)),
    log:
        "results/logs/masks/{dataset}/{model}/{recipe}/seed{seed}/{mask}/s{sparsity}.log",
    group:
        _group("mask")
    threads: job_threads("mask")
    resources:
        **job_resources("mask"),
    conda:
        "../envs/ticketlab.yaml"
    script:
        "../../scripts/make_mask.py"
