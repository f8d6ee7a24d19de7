# Each dataset is read once into a compact .npz with a fixed train/val/test split.
rule prepare_data:
    output:
        "results/data/{dataset}.npz",
    params:
        spec=lambda w: CFG["datasets"][w.dataset],
    log:
        "results/logs/data/{dataset}.log",
    threads: job_threads("data")
    resources:
        **job_resources("data"),
    conda:
        "../envs/ticketlab.yaml"
    script:
        "../../scripts/prepare_data.py"
