"""The localizer's head and epochs, chosen on the held-out `val` split (never on test): train one localizer per
(head, epoch count) on the run's pseudo boxes of `train`, box `val` with each, and print val GT-known
localisation beside that of the C2AM map's own boxes on val at the run's box threshold.

    python bench/choose_localizer.py --run <folder of a finished WSOL run> [--heads edges edges8 pooled]
                                     [--epochs 4 8 12] [--train-args="--lr 0.02"] [--threads 2]

Reads the run's artifacts/wsol/{dataset,c2am} (manifest, val GT, pseudo boxes, val maps, box threshold); writes
only under a temporary folder. The stages run as a user runs them (`python -m c2am.stages.<stage>`), with the
config's other localizer settings.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c2am.artifacts import load_boxes, load_map
from c2am.data.voc import Manifest
from c2am.data.wsol import load_gt
from c2am.io import load_json
from c2am.models.localizer import HEADS
from c2am.thresholds import map_box
from c2am.wsol_metrics import box_ious, gt_known_loc


def stage(name: str, *args) -> None:
    subprocess.run([sys.executable, "-m", f"c2am.stages.{name}", *map(str, args)], check=True)


def val_gt_known(boxes: dict, gt, ids: list[str]) -> float:
    return float(gt_known_loc(box_ious([boxes.get(i) for i in ids], [gt.boxes_of(i) for i in ids])))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    p.add_argument("--epochs", type=int, nargs="+", default=[4, 8, 12])
    p.add_argument("--train-args", default="", help="more train_localizer flags for every row, e.g. '--lr 0.02'")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    art = args.run / "artifacts/wsol"
    manifest_path = art / "dataset/manifest.json"
    manifest, gt = Manifest.load(manifest_path), load_gt(art / "dataset/gt_val.json")
    ids = manifest.ids("val")
    tau = load_json(art / "c2am/box_threshold.json")["threshold"]
    maps = {i: map_box(load_map(art / "c2am/maps/val" / f"{i}.npy"), tau, normalise=True) for i in ids}
    rows = [("C2AM map boxes (tau %.2f)" % tau, val_gt_known(maps, gt, ids))]
    with tempfile.TemporaryDirectory() as tmp:
        for head in args.heads:
            for epochs in args.epochs:
                out = Path(tmp) / f"{head}_e{epochs}"
                stage("train_localizer", "--manifest", manifest_path, "--split", "train",
                      "--boxes", art / "c2am/boxes_train.json", "--out", out / "model.pt",
                      "--log-csv", out / "log.csv", "--head", head, "--epochs", epochs, "--threads", args.threads,
                      *shlex.split(args.train_args))
                stage("infer_localizer", "--manifest", manifest_path, "--split", "val",
                      "--checkpoint", out / "model.pt", "--out", out / "boxes_val.json", "--threads", args.threads)
                rows.append((f"localizer, {head} head, {epochs} epochs",
                             val_gt_known(load_boxes(out / "boxes_val.json"), gt, ids)))
    print(f"val split: {len(ids)} images; train_localizer flags beyond the config: {args.train_args or 'none'}")
    print(f"{'boxes':<40} GT-known loc (val)")
    for name, value in rows:
        print(f"{name:<40} {value:.4f}")


if __name__ == "__main__":
    main()
