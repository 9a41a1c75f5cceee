# Prediction on new images (target `predict`): the DeepLab trained on deeplab.labels, on every image of the folder
# predict.images, with the test-time settings of deeplab.infer. One palette PNG and one overlay JPEG (with the
# class legend) per image, at the image's size; the overlays are entries of the report.
PREDICT = config["predict"]


rule predict:
    input:
        manifest=MANIFEST,
        model=f"artifacts/deeplab/{config['deeplab']['labels']}/model.pt",
        images=PREDICT_IMAGES,
    output:
        masks=directory("results/predict/masks"),
        overlays=report(
            directory("results/predict/overlays"),
            patterns=["{name}.jpg"],
            caption="../report/predictions.rst",
            category="6. Predictions",
        ),
    log:
        "logs/predict.log",
    benchmark:
        "benchmarks/predict.tsv"
    conda:
        ENV
    threads: rule_threads("predict")
    resources:
        **rule_resources("predict"),
    params:
        images=flags(PREDICT),
        infer=flags(config["deeplab"]["infer"]),
    shell:
        "python -m c2am.stages.predict --manifest {input.manifest} --checkpoint {input.model} {params.images}"
        " --out-masks {output.masks} --out-overlays {output.overlays} {params.infer} --threads {threads} 2> {log}"
