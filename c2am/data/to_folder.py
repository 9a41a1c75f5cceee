"""Write a VOC-layout dataset (by default the embedded one) as a ``folder`` dataset: images, labels.csv, masks.

    python -m c2am.data.to_folder --out data/embedded_folder [--mask-share 0.25] [--manifest MANIFEST]

Without ``--manifest`` the embedded dataset is generated first, with the settings of config/config.yaml
(``dataset.synthetic``, ``dataset.classes``, ``seed``), in a temporary folder. Images are copied byte for byte, so
``config/folder.yaml`` on the result computes what the default config computes. The image-level labels go to
``labels.csv`` (class names from the masks) with a ``split`` column; ``--mask-share`` gives that share of the
images (a seeded sample) their GT mask under ``masks/`` (default 0: a label-only dataset, nothing scored).
The split names are the role names (train, val; pseudo_eval only when it is not the whole train split).
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import random
import shutil
import sys
import tempfile
from pathlib import Path

from c2am.data.voc import SPLIT_ROLES, Manifest, build_manifest
from c2am.io import InputError, save_text
from c2am.runtime import run_stage

log = logging.getLogger("c2am.data.to_folder")

MARKER = ".c2am-folder-export"


def embedded_manifest(workdir: Path) -> Manifest:
    """Generate the embedded dataset of the default config under ``workdir`` and return its manifest."""
    from c2am import defaults
    from c2am.data.synthetic import World, generate_voc_tree

    data = defaults.value("dataset")
    root = workdir / "VOC2012"
    root.mkdir(parents=True)
    synthetic = data["synthetic"]
    generate_voc_tree(root, data["classes"], synthetic["n_train"], synthetic["n_val"], synthetic["image_size"],
                      defaults.value("seed"), World.from_config(synthetic))
    return build_manifest(root, data["classes"], data["splits"], mask_dir=data["mask_dir"])


def split_names(manifest: Manifest) -> dict[str, str]:
    """Role -> split name in the written label file."""
    names = {"train": "train", "pseudo_eval": "train", "val": "val"}
    if manifest.ids("pseudo_eval") != manifest.ids("train"):
        names["pseudo_eval"] = "pseudo_eval"
    return names


def export(manifest: Manifest, out: Path, mask_share: float = 0.0, seed: int = 0) -> dict[str, str]:
    """Write ``manifest``'s dataset as a folder dataset at ``out``; returns the role -> split name mapping."""
    if not 0.0 <= mask_share <= 1.0:
        raise InputError(f"--mask-share: must be in [0, 1], got {mask_share}")
    if out.exists():
        if not (out / MARKER).exists():
            raise InputError(f"{out}: exists and was not written by c2am.data.to_folder; refusing to overwrite it")
        shutil.rmtree(out)
    names = split_names(manifest)
    ids = list(dict.fromkeys(i for role in SPLIT_ROLES for i in manifest.ids(role)))
    member = {role: set(manifest.ids(role)) for role in SPLIT_ROLES}
    masked = set(random.Random(seed).sample(sorted(ids), round(mask_share * len(ids))))
    (out / "images").mkdir(parents=True)
    (out / MARKER).write_text("written by python -m c2am.data.to_folder; safe to delete\n")
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["image", "labels", "split"])
    for image_id in ids:
        source = manifest.image_path(image_id)
        shutil.copyfile(source, out / "images" / source.name)
        splits = list(dict.fromkeys(names[r] for r in SPLIT_ROLES if image_id in member[r]))
        labels = ";".join(manifest.classes[c] for c in manifest.labels[image_id])
        writer.writerow([source.name, labels, ";".join(splits)])
        if image_id in masked:
            (out / "masks").mkdir(exist_ok=True)
            shutil.copyfile(manifest.mask_path(image_id), out / "masks" / f"{image_id}.png")
    save_text(out / "labels.csv", rows.getvalue())
    log.info("wrote %d images, labels.csv and %d masks to %s; dataset.splits: %s", len(ids), len(masked), out, names)
    return names


def main(argv=None) -> dict[str, str]:
    p = argparse.ArgumentParser(prog="python -m c2am.data.to_folder", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder dataset to write (dataset.root)")
    p.add_argument("--manifest", type=Path, default=None,
                   help="a VOC-layout dataset's manifest (default: generate the embedded dataset)")
    p.add_argument("--mask-share", type=float, default=0.0, help="share of the images that keep their mask")
    p.add_argument("--seed", type=int, default=0, help="drives which images keep their mask")
    args = p.parse_args(argv)
    if args.manifest is not None:
        names = export(Manifest.load(args.manifest), args.out, args.mask_share, args.seed)
    else:
        with tempfile.TemporaryDirectory(prefix="c2am-embedded-") as tmp:
            names = export(embedded_manifest(Path(tmp)), args.out, args.mask_share, args.seed)
    print(f"dataset.root: {args.out}\ndataset.splits: {{{', '.join(f'{k}: {v}' for k, v in names.items())}}}")
    return names


if __name__ == "__main__":
    sys.exit(run_stage(main))
