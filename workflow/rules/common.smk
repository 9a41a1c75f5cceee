# Helpers shared by the rule files, and config validation before any job is scheduled.
import shlex
import sys
from pathlib import PurePosixPath

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")


validate(config, workflow.source_path("../schemas/config.schema.yaml"))

MANIFEST = "artifacts/dataset/manifest.json"
ENV = "../../envs/c2am.yaml"
SEED = config["seed"]
SHARDS = config["shards"]

# Per-rule threads and resources live in workflow/rule_resources.yaml; a user profile's set-threads /
# set-resources override them key by key. Network rules ask for 8 threads; each stage caps them at the CPUs it
# really has, and `--cores 2` scales them down to 2.
with open(workflow.source_path("../rule_resources.yaml")) as f:
    RULE_DEFAULTS = yaml.safe_load(f)


def rule_threads(name):
    return RULE_DEFAULTS["set-threads"][name]


def rule_resources(name):
    return RULE_DEFAULTS["set-resources"][name]


# Sharded inference (the scattergather directive is in the Snakefile): with shards > 1 each per-image stage runs
# as `shards` jobs (scatter items "K-of-N"), each writing under artifacts/shards/; gather jobs merge them into the
# usual folders. With shards: 1 the rules write the usual folders directly and no gather job exists.
def sharded(path):
    """Where a per-image stage writes ``path``: the path itself unsharded, else its shard under artifacts/shards/
    (folder artifacts/x/y -> artifacts/shards/x/y/{scatteritem}; file x.json -> shards/.../x/{scatteritem}.json).
    """
    if SHARDS == 1:
        return path
    p = PurePosixPath(path)
    base = PurePosixPath("artifacts/shards") / p.relative_to("artifacts")
    return str(base.with_suffix("") / f"{{scatteritem}}{p.suffix}")


def gathered(path):
    """The shard paths of ``path`` (as written by ``sharded``), in shard order; other wildcards stay wildcards."""
    return gather.shards(
        sharded(path)
        .replace("{", "{{")
        .replace("}", "}}")
        .replace("{{scatteritem}}", "{scatteritem}")
    )


def shard_name(name):
    """A log/benchmark name, per shard when sharded."""
    return name if SHARDS == 1 else f"{name}_{{scatteritem}}"


def shard_flag(wildcards):
    return f"--shard {wildcards.scatteritem}" if SHARDS > 1 else ""


def flag(key, value):
    """One config entry as CLI flags: batch_size: 32 -> --batch-size 32; lists -> nargs; bools -> --x / --no-x."""
    name = key.replace("_", "-")
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no-{name}"
    if isinstance(value, (list, tuple)):
        return " ".join([f"--{name}", *(shlex.quote(str(v)) for v in value)])
    return f"--{name} {shlex.quote(str(value))}"


def flags(section, exclude=()):
    """A config section as CLI flags; nested dicts (e.g. crf) are flattened into their own keys."""
    parts = []
    for key, value in section.items():
        if key in exclude:
            continue
        if isinstance(value, dict):
            parts.append(flags(value))
        else:
            parts.append(flag(key, value))
    return " ".join(parts)


# Pseudo-label variants cam_<background>[_crf][_robust] (docs/method.md §5): the background score from the CRF
# cues or the saliency maps, with or without the label CRF, then the distractor-robust test on the CRF labels.
PSEUDO_BACKGROUNDS = {"cues": "artifacts/c2am/cues", "sal": "artifacts/saliency/maps"}
PSEUDO_REFINED = [f"cam_{bg}" for bg in PSEUDO_BACKGROUNDS]
# The affinity random walk (workflow/rules/affinity.smk) adds <base>_rw and <base>_rw_robust for one base variant.
AFFINITY_BASE = config["affinity"]["base"]
PSEUDO_VARIANTS = [
    v + suffix for v in PSEUDO_REFINED for suffix in ("", "_crf", "_crf_robust")
] + [f"{AFFINITY_BASE}_rw", f"{AFFINITY_BASE}_rw_robust"]
# Label folders the robust test applies to: the CRF labels and the random walk's.
ROBUST_INPUTS = [f"{v}_crf" for v in PSEUDO_REFINED] + [f"{AFFINITY_BASE}_rw"]


def background_flag(bg, folder):
    """The flag of a background source (cues or sal) for refine_cams and random_walk."""
    return {"cues": "--cues-dir", "sal": "--saliency-dir"}[bg] + f" {folder}"


def refine_background_flag(wildcards, input):
    return background_flag(wildcards.bg, input.background)


def affinity_background():
    """The background source (cues or sal) of the affinity base variant cam_<bg>[_crf][_robust]."""
    return AFFINITY_BASE.split("_")[1]


def distractor_flag(wildcards):
    """The embedded world's distractor masks, scored beside mIoU (other datasets have none)."""
    data = config["dataset"]
    if data["kind"] != "synthetic":
        return ""
    return f"--distractor-dir {data['root']}/Distractors"


def deeplab_labels(wildcards):
    """Pseudo-label folder a DeepLab variant trains on (none for the GT-trained reference, which needs masks)."""
    if wildcards.labels == "gt":
        return needs_gt("train", "the fully supervised reference")(wildcards)
    return [f"artifacts/pseudo/{wildcards.labels}"]


def deeplab_label_flag(wildcards, input):
    return "--gt-labels" if wildcards.labels == "gt" else f"--labels-dir {input.labels}"


# The DAG follows what the data has. A split without any GT mask (a folder dataset, c2am.data.folder) is not
# scored: the rules that only score it leave the default target, and the summary and report say so. The check
# reads the label file and lists the mask folder (standard library only, as in the Snakemake process).
# The c2am package beside the Snakefile, whatever env runs Snakemake.
sys.path.insert(0, workflow.basedir)
from c2am.data.folder import find_images, roles_with_masks

HAS_GT = roles_with_masks(config["dataset"])
# New images for the predict rule, as found now (none when the folder is missing: predict then says so).
PREDICT_IMAGES = find_images(config["predict"]["images"])


def needs_gt(role, what):
    """Input function for the scoring of ``role``'s masks. It adds no file; when the split has no mask, it stops
    the DAG naming the split (instead of a failure once the networks are trained). ``what`` may hold wildcards.
    """

    def check(wildcards):
        if not HAS_GT[role]:
            split = config["dataset"]["splits"][role]
            raise WorkflowError(
                f"{what.format(**wildcards)}: split '{split}' (dataset.splits.{role}) has no ground-truth "
                "masks, so there is nothing to score; build the default target (`snakemake --cores 8`) instead"
            )
        return []

    return check


def default_targets():
    """What `snakemake` builds: every product (pseudo masks, the DeepLab, its val predictions, the boxes, the
    classifier report; predictions on new images once predict.images holds some) and the scores the data allows,
    the fully supervised reference included (it needs masks on train and val).
    """
    labels = config["deeplab"]["labels"]
    targets = [
        "results/c2am_boxes.txt",
        "results/classifier.txt",
        f"artifacts/pseudo/{labels}",
        f"artifacts/deeplab/{labels}/model.pt",
        f"artifacts/deeplab/{labels}/pred_val",
    ]
    scores = {
        "train": "results/c2am_maps.txt",
        "pseudo_eval": "results/pseudo_masks.txt",
        "val": "results/voc_miou.txt",
    }
    targets += [path for role, path in scores.items() if HAS_GT[role]]
    if HAS_GT["train"] and HAS_GT["val"]:
        targets.append("results/fully_supervised_miou.txt")
    if PREDICT_IMAGES:
        targets += ["results/predict/masks", "results/predict/overlays"]
    return targets


# visualize: the scores shown as far as the data has ground truth (HAS_GT); without it, the figures and tables
# that need a score say "no ground truth: not scored".
OPTIONAL_SCORES = {
    key: path
    for key, path, role in (
        ("c2am_maps", "results/c2am_maps.txt", "train"),
        ("pseudo", "results/pseudo_masks.json", "pseudo_eval"),
        ("val", "results/voc_miou.json", "val"),
        ("full", "results/fully_supervised_miou.json", "val"),
    )
    if HAS_GT[role] and (key != "full" or HAS_GT["train"])
}


def score_flags(wildcards, input):
    """visualize's score inputs as flags: the text reports as tables, the pseudo-mask and val JSONs."""
    parts = (
        [f"--score-txt 'C2AM maps'={input.c2am_maps}"]
        if "c2am_maps" in OPTIONAL_SCORES
        else []
    )
    parts += [
        f"--score-txt 'C2AM boxes'={input.c2am_boxes}",
        f"--score-txt Classifier={input.classifier}",
    ]
    if "pseudo" in OPTIONAL_SCORES:
        parts.append(f"--pseudo-json {input.pseudo}")
    if "val" in OPTIONAL_SCORES:
        parts.append(f"--val-json {input.val}")
    if "full" in OPTIONAL_SCORES:
        parts.append(f"--full-json {input.full}")
    return " ".join(parts)
