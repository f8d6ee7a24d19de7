# Each dataset is read once into a compact .npz with a fixed train/val/test split.
rule prepare_data:
    output:
        "results/data/{dataset}.npz",
    params:
        spec=lambda w: CFG["datasets"][w.dataset],
    log:
        "results/logs/data/{dataset}.log",
    resources:
        mem_mb=8000,
    conda:
        "../../envs/ticketlab.yaml"
    script:
        "../../scripts/prepare_data.py"
