# Helpers shared by the rule files, and config validation before any job is scheduled.
import shlex
from pathlib import PurePosixPath

import yaml
from snakemake.utils import min_version, validate

min_version("9.0")


validate(config, workflow.source_path("../schemas/config.schema.yaml"))

MANIFEST = "artifacts/dataset/manifest.json"
ENV = "../../envs/c2am.yaml"
SEED = config["seed"]
SHARDS = config["shards"]

# Per-rule threads and resources live in workflow/profiles/default/config.yaml; a user profile's set-threads /
# set-resources override them key by key. Network rules ask for 8 threads; each stage caps them at the CPUs it
# really has, and `--cores 2` scales them down to 2.
with open(workflow.source_path("../profiles/default/config.yaml")) as f:
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


def deeplab_labels(wildcards):
    """Pseudo-label folder a DeepLab variant trains on (none for the GT-trained reference)."""
    return [] if wildcards.labels == "gt" else [f"artifacts/pseudo/{wildcards.labels}"]


def deeplab_label_flag(wildcards, input):
    return "--gt-labels" if wildcards.labels == "gt" else f"--labels-dir {input.labels}"
