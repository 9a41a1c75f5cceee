"""Expected wall time of the VOC 2012 + SBD run (config/voc2012.yaml), per stage, from measured per-image costs.

    python bench/voc_estimate.py [--gpu-json gpu_check.json] [--gpu-cores 16]

Measures here, at VOC settings (ResNet-50 C2AM and classifier at 448 px, DeepLabV3-ResNet101, 500 x 375
images, the config's scales and flips), the seconds per image of each network stage (one training step or
inference call on a small batch, after a warm-up) and of each CRF stage (one image, one process); multiplies
by the images and epochs of the VOC run (train_aug 10,582, val 1,449); CRF stages run on all cores in
parallel. With ``--gpu-json`` (written by bench/gpu_check.sh on a GPU machine), the network stages get that
GPU's measured images/s and the CRF stages that machine's cores. Data loading, start-up and the DAG's small
stages are left out: this is a lower bound of the order of magnitude, not a schedule.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_crf import noisy, synthetic_scene  # noqa: E402
from gpu_check import VOC, cam_inference, c2am_training, deeplab_training, map_inference  # noqa: E402
from c2am.crf import crf_from_probs, crf_present_labels, crf_two_label  # noqa: E402
from c2am.inference import predict_probs  # noqa: E402
from c2am.models.deeplab import build_deeplab  # noqa: E402
from c2am.runtime import available_cpus  # noqa: E402

TRAIN_AUG, VAL = 10_582, 1_449
# what a CPU can afford to time: small batches, one timed step after a warm-up
CPU_SETTINGS = {**VOC, "c2am_batch": 4, "deeplab_batch": 2, "infer_batch": 1, "warmup": 1, "steps": 1}


def seconds_per_call(fn, runs: int = 2) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - start) / runs


def deeplab_inference_rate(settings: dict, scales, flip: bool) -> float:
    model = build_deeplab(settings["deeplab"], 21, "none").eval()
    image = torch.rand(1, 3, *settings["image"])
    return 1.0 / seconds_per_call(lambda: predict_probs(model, image, scales, flip), runs=1)


def crf_seconds(settings: dict) -> dict[str, float]:
    rng = np.random.default_rng(0)
    image, labels = synthetic_scene(*settings["image"], rng)
    probs = rng.dirichlet(np.ones(21), size=settings["image"]).transpose(2, 0, 1).astype(np.float32)
    return {
        "extract_cues": seconds_per_call(lambda: crf_two_label(image, noisy(labels, rng, 2) > 0)),
        "crf_labels": seconds_per_call(lambda: crf_present_labels(image, noisy(labels, rng, 4))),
        "infer_deeplab CRF": seconds_per_call(lambda: crf_from_probs(image, probs)),
    }


def fmt_hours(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds / 3600:8.2f} h" if seconds >= 3600 else f"{seconds / 60:8.1f} min"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpu-json", type=Path, default=None, help="figures of bench/gpu_check.sh on a GPU machine")
    p.add_argument("--gpu-cores", type=int, default=16, help="CPU cores of that GPU machine (for the CRF stages)")
    args = p.parse_args(argv)
    voc = yaml.safe_load((ROOT / "config" / "voc2012.yaml").read_text())
    cores = available_cpus()
    torch.set_num_threads(cores)
    gpu = json.loads(args.gpu_json.read_text()) if args.gpu_json else None
    s = CPU_SETTINGS
    infer = voc["deeplab"]["infer"]
    # stage -> (images processed, CPU images/s, GPU images/s or None, whether it is a per-core CRF stage)
    rates = {
        "train_c2am": (TRAIN_AUG * voc["c2am"]["train"]["epochs"], c2am_training(s, torch.device("cpu"), False),
                       gpu and gpu["c2am_train_images_per_s"], False),
        "infer_c2am": (TRAIN_AUG, map_inference(s, torch.device("cpu"), False), gpu and gpu["c2am_maps_images_per_s"],
                       False),
        "train_classifier": (TRAIN_AUG * voc["classifier"]["train"]["epochs"], None, None, False),
        "infer_cam": (TRAIN_AUG, cam_inference(s, torch.device("cpu"), False), gpu and gpu["cam_inference_images_per_s"],
                      False),
        "train_deeplab": (TRAIN_AUG * voc["deeplab"]["train"]["epochs"], deeplab_training(s, torch.device("cpu"), False),
                          gpu and gpu["deeplab_train_images_per_s"], False),
        "infer_deeplab": (VAL, deeplab_inference_rate(s, infer["scales"], infer["flip"]), None, False),
    }
    # the classifier's training step costs about what C2AM's does (same trunk and crop, a lighter head)
    rates["train_classifier"] = (rates["train_classifier"][0], rates["train_c2am"][1], rates["train_c2am"][2], False)
    for stage, sec in crf_seconds(s).items():
        n = VAL if stage.startswith("infer_deeplab") else TRAIN_AUG
        rates[stage] = (n, 1.0 / sec, None, True)
    print(f"VOC 2012 + SBD at config/voc2012.yaml settings; this CPU: {cores} cores"
          + (f"; GPU: {gpu['device']} ({args.gpu_json})" if gpu else "; GPU: not measured"))
    print(f"| stage | images (x epochs) | CPU img/s | this CPU | one GPU + {args.gpu_cores} cores |")
    print("|---|---|---|---|---|")
    total_cpu, total_gpu = 0.0, 0.0
    for stage, (n, cpu_rate, gpu_rate, per_core) in rates.items():
        cpu_wall = n / (cpu_rate * (cores if per_core else 1))
        gpu_wall = n / (cpu_rate * args.gpu_cores) if per_core else (n / gpu_rate if gpu_rate else None)
        total_cpu += cpu_wall
        total_gpu = None if total_gpu is None or gpu_wall is None else total_gpu + gpu_wall
        print(f"| {stage} | {n:,} | {cpu_rate:.3f} | {fmt_hours(cpu_wall)} | {fmt_hours(gpu_wall if gpu else None)} |",
              flush=True)
    print(f"| total | | | {fmt_hours(total_cpu)} | {fmt_hours(total_gpu if gpu else None)} |")


if __name__ == "__main__":
    main()
