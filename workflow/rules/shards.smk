# Sharded inference (config `shards` > 1; included by the Snakefile only then): the cue threshold computed once
# over all maps, and the gathers that merge per-shard folders (artifacts/shards/...) into the usual folders.
# The per-image rules themselves (infer_c2am, extract_cues, infer_cam, refine_cams, crf_labels, infer_deeplab)
# write to sharded(...) paths, see common.smk.


# One threshold over ALL maps of the split, before the sharded CRF (a per-shard Otsu would differ).
rule cue_threshold:
    input:
        manifest=MANIFEST,
        maps="artifacts/c2am/maps",
    output:
        "artifacts/shards/c2am/cue_threshold.json",
    params:
        threshold=flags({"threshold": C2AM["cues"]["threshold"]}),
    log:
        "logs/cue_threshold.log",
    benchmark:
        "benchmarks/cue_threshold.tsv"
    threads: rule_threads("cue_threshold")
    resources:
        **rule_resources("cue_threshold"),
    conda:
        ENV
    shell:
        "python -m c2am.stages.extract_cues --manifest {input.manifest} --split train --maps-dir {input.maps}"
        " {params.threshold} --threshold-only --out-threshold {output} --threads {threads} 2> {log}"

# The shards' cues into artifacts/c2am/cues, and their records into the record an unsharded run writes.
rule gather_cues:
    input:
        manifest=MANIFEST,
        cues=gathered("artifacts/c2am/cues"),
        records=gathered("artifacts/c2am/cue_threshold.json"),
    output:
        cues=directory("artifacts/c2am/cues"),
        threshold="artifacts/c2am/cue_threshold.json",
    log:
        "logs/gather_cues.log",
    threads: rule_threads("gather_cues")
    resources:
        **rule_resources("gather_cues"),
    conda:
        ENV
    shell:
        "(python -m c2am.stages.gather_shards --manifest {input.manifest} --split train --out-dir {output.cues}"
        " {input.cues} && python -m c2am.stages.extract_cues --manifest {input.manifest} --split train"
        " --merge-records {input.records} --out-threshold {output.threshold})"
        " 2> {log}"


# Per-image folders whose shards gather_shards merges (artifacts/<folder>), and the split they cover.
# The cues have their own gather (gather_cues), which also merges the cue-threshold records.
GATHERED = {
    "c2am/maps": "train",
    "classifier/cams": "train",
    "pseudo/cam_cues": "train",
    "pseudo/cam_fixed_tau": "train",
    "pseudo/cam_cues_crf": "train",
    **{f"deeplab/{labels}/pred_val": "val" for labels in LABEL_VARIANTS + ("gt",)},
}


localrules:
    gather_shards,
    gather_cues,


rule gather_shards:
    input:
        manifest=MANIFEST,
        shards=gathered("artifacts/{folder}"),
    output:
        directory("artifacts/{folder}"),
    wildcard_constraints:
        folder="|".join(GATHERED),
    params:
        split=lambda w: GATHERED[w.folder],
    log:
        "logs/gather_shards/{folder}.log",
    threads: rule_threads("gather_shards")
    resources:
        **rule_resources("gather_shards"),
    conda:
        ENV
    shell:
        "python -m c2am.stages.gather_shards --manifest {input.manifest} --split {params.split}"
        " --out-dir {output} {input.shards} 2> {log}"
