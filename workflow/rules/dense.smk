# Dense training, one rule per recipe because the saved rewind points (outputs) depend on the recipe.
for _recipe in CFG["recipes"]:

    rule:
        name:
            f"dense_{_recipe}"
        input:
            data="results/data/{dataset}.npz",
        output:
            [f"results/runs/{{dataset}}/{{model}}/{_recipe}/seed{{seed}}/dense/{f}" for f in plan.dense_outputs(CFG, _recipe)],
        params:
            spec=_dense_spec(_recipe),
        log:
            f"results/logs/runs/{{dataset}}/{{model}}/{_recipe}/seed{{seed}}/dense.log",
        group:
            _group("dense", _recipe)
        threads: job_threads("train")
        resources:
            **job_resources("train"),
        conda:
            "../envs/ticketlab.yaml"
        script:
            "../../scripts/train.py"
