# Sharded inference (config `shards` > 1; included by the Snakefile only then): the gathers that merge per-shard
# folders (artifacts/shards/...) into the usual folders.
# The per-image rules themselves (infer_c2am, extract_cues, infer_saliency, infer_cam, refine_cams, crf_labels,
# infer_deeplab)
# write to sharded(...) paths, see common.smk.


# Per-image folders whose shards gather_shards merges (artifacts/<folder>), and the split they cover.
GATHERED = {
    "c2am/maps": "train",
    "c2am/cues": "train",
    "saliency/maps": "train",
    "classifier/cams": "train",
    **{f"pseudo/{variant}": "train" for variant in PSEUDO_VARIANTS + ["cam_fixed_tau"]},
    **{f"deeplab/{labels}/pred_val": "val" for labels in LABEL_VARIANTS + ("gt",)},
}


localrules:
    gather_shards,


rule gather_shards:
    input:
        manifest=MANIFEST,
        shards=gathered("artifacts/{folder}"),
    output:
        directory("artifacts/{folder}"),
    log:
        "logs/gather_shards/{folder}.log",
    wildcard_constraints:
        folder="|".join(GATHERED),
    conda:
        ENV
    threads: rule_threads("gather_shards")
    resources:
        **rule_resources("gather_shards"),
    params:
        split=lambda w: GATHERED[w.folder],
    shell:
        "python -m c2am.stages.gather_shards --manifest {input.manifest} --split {params.split}"
        " --out-dir {output} {input.shards} 2> {log}"
