# Config and helpers of the WSOL rules (workflow/rules/wsol.smk), kept apart from the rules as Snakemake's lint asks.
WSOL = config["wsol"]
WSOL_DATA = WSOL["dataset"]
WSOL_MANIFEST = "artifacts/wsol/dataset/manifest.json"
WSOL_GT = "artifacts/wsol/dataset/gt.json"  # every split's GT boxes: eval_wsol and the figures only
# One split's GT alone, for the stages that choose (box_threshold, val) or score (pseudo_boxes, train) before
# eval_wsol: they never open a file that holds test boxes.
WSOL_SPLIT_GT = {
    split: f"artifacts/wsol/dataset/gt_{split}.json" for split in ("train", "val")
}
WSOL_THRESHOLD = WSOL["boxes"]["threshold"]


def wsol_threshold_inputs(wildcards):
    """What box_threshold reads: the val maps and GT for `val`, the train maps for Otsu, nothing when fixed."""
    if WSOL_THRESHOLD == "val":
        return {"val_maps": "artifacts/wsol/c2am/maps/val", "gt": WSOL_SPLIT_GT["val"]}
    if WSOL_THRESHOLD in ("otsu", "otsu3"):
        return {"train_maps": "artifacts/wsol/c2am/maps/train"}
    return {}


def wsol_threshold_flags(wildcards, input):
    return " ".join(
        f"--{key.replace('_', '-')} {input[key]}"
        for key in ("val_maps", "train_maps", "gt")
        if key in input.keys()
    )


def map_boxes_report_flags(wildcards, input, output):
    """map_boxes scores its boxes against the GT boxes where the rule has a report (pseudo_boxes, not test_boxes)."""
    if "report" not in output.keys():
        return ""
    return f"--gt {input.gt} --out-txt {output.report}"
