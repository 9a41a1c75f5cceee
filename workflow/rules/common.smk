# Helpers shared by the rule files, and config validation before any job is scheduled.
import shlex

from snakemake.utils import min_version, validate

min_version("9.0")


validate(config, workflow.source_path("../schemas/config.schema.yaml"))

MANIFEST = "artifacts/dataset/manifest.json"
ENV = "../../envs/c2am.yaml"
SEED = config["seed"]
# Rules that run a network ask for up to this many threads; each stage caps them at the CPUs it
# really has, so `--cores 8` on a 2-core machine runs them one at a time with 2 threads each.
NET_THREADS = 8


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
