"""Throughput of the network stages at VOC settings on one device (the Python part of bench/gpu_check.sh).

    python bench/gpu_check.py --device cuda            # VOC settings: ResNet-50 at 448 px, batch 64, AMP
    python bench/gpu_check.py --device cpu --tiny      # the CPU stand-in of the tests: same code, tiny sizes

Prints, per measurement, images/s and the peak device memory (CUDA), and writes them as JSON (``--out``):

- C2AM training (ResNet-50 trunk, 448 px crops, batch 64, AMP + channels_last, the real loss and optimiser);
- C2AM map inference (VOC-size 500 x 375 images, scales 0.5 / 1 / 1.5 / 2 with flips, batches of one size);
- class-CAM inference (the ResNet-50 classifier, same scales and batching);
- DeepLabV3-ResNet101 training (448 px, batch 16, AMP + channels_last).

Inputs are random tensors already on the device: this measures the networks, not JPEG decoding (which the
stages do in DataLoader workers beside the compute). Weights are random (no download); speed does not depend
on them. Each measurement runs warm-up steps first and synchronises the device around the timed ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c2am.inference import batch_cams, foreground_maps  # noqa: E402
from c2am.losses import c2am_step  # noqa: E402
from c2am.models.backbone import build_trunk  # noqa: E402
from c2am.models.c2am_net import C2AM  # noqa: E402
from c2am.models.classifier import build_classifier  # noqa: E402
from c2am.models.deeplab import build_deeplab, segmentation_loss  # noqa: E402
from c2am.runtime import autocast, pick_device, use_amp  # noqa: E402
from c2am.training import make_sgd  # noqa: E402

VOC = {"crop": 448, "c2am_batch": 64, "deeplab_batch": 16, "image": (375, 500), "infer_batch": 16,
       "scales": [0.5, 1.0, 1.5, 2.0], "warmup": 3, "steps": 10, "trunk": "resnet50", "deeplab": "deeplabv3_resnet101"}
# The CPU stand-in: same code, small networks and sizes (the ResNets' own code paths are tested elsewhere).
TINY = {"crop": 48, "c2am_batch": 4, "deeplab_batch": 2, "image": (40, 56), "infer_batch": 2,
        "scales": [0.5, 1.0], "warmup": 1, "steps": 1, "trunk": "lite0", "deeplab": "lite0_deeplabhead"}


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, warmup: int, steps: int, device) -> float:
    """Seconds per call of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def train_step(model, step_fn, batch, optimizer, scaler, device, amp: bool):
    """One optimiser step as c2am.training.fit takes it (autocast, scaled backward)."""

    def run():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = step_fn(model, batch)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return run


def prepare(model, device, amp: bool):
    model.to(device)
    if use_amp(device, amp):
        model.to(memory_format=torch.channels_last)
    return model


def images_on(device, n: int, size, amp: bool) -> torch.Tensor:
    x = torch.rand(n, 3, *size, device=device)
    return x.contiguous(memory_format=torch.channels_last) if use_amp(device, amp) else x


def c2am_training(s: dict, device, amp: bool) -> float:
    model = prepare(C2AM(build_trunk(s["trunk"], "none")), device, amp).train()
    optimizer = make_sgd(model.backbone_parameters(), model.head_parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp(device, amp))
    batch = images_on(device, s["c2am_batch"], (s["crop"], s["crop"]), amp)
    seconds = timed(train_step(model, c2am_step(0.25), batch, optimizer, scaler, device, amp), s["warmup"],
                    s["steps"], device)
    return s["c2am_batch"] / seconds


def deeplab_training(s: dict, device, amp: bool) -> float:
    model = prepare(build_deeplab(s["deeplab"], 21, "none"), device, amp).train()
    backbone, head = model.parameter_groups()
    optimizer = make_sgd(backbone, head, lr=0.01)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp(device, amp))
    images = images_on(device, s["deeplab_batch"], (s["crop"], s["crop"]), amp)
    masks = torch.randint(0, 21, (s["deeplab_batch"], s["crop"], s["crop"]), device=device)

    def step_fn(net, batch):
        return segmentation_loss(net(batch[0]), batch[1])

    seconds = timed(train_step(model, step_fn, (images, masks), optimizer, scaler, device, amp), s["warmup"],
                    s["steps"], device)
    return s["deeplab_batch"] / seconds


def map_inference(s: dict, device, amp: bool) -> float:
    model = prepare(C2AM(build_trunk(s["trunk"], "none")), device, amp).eval()
    images = images_on(device, s["infer_batch"], s["image"], amp)
    seconds = timed(lambda: foreground_maps(model, False, images, s["scales"], amp), s["warmup"], s["steps"], device)
    return s["infer_batch"] / seconds


def cam_inference(s: dict, device, amp: bool) -> float:
    model = prepare(build_classifier(s["trunk"], "none", 20), device, amp).eval()
    images = images_on(device, s["infer_batch"], s["image"], amp)
    classes = [[1 + (k % 20), 1 + ((k + 7) % 20)] for k in range(s["infer_batch"])]  # two classes per image
    seconds = timed(lambda: batch_cams(model, images, classes, s["scales"], amp), s["warmup"], s["steps"], device)
    return s["infer_batch"] / seconds


MEASUREMENTS = {
    "c2am_train_images_per_s": c2am_training,
    "c2am_maps_images_per_s": map_inference,
    "cam_inference_images_per_s": cam_inference,
    "deeplab_train_images_per_s": deeplab_training,
}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--tiny", action="store_true", help="tiny sizes (the CPU stand-in of the tests)")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no AMP / channels_last on CUDA")
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    settings = TINY if args.tiny else VOC
    torch.backends.cudnn.benchmark = device.type == "cuda"
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "amp": use_amp(device, args.amp), "settings": settings}
    print(f"device {results['device']}, torch {results['torch']}, amp {results['amp']}", flush=True)
    for name, measure in MEASUREMENTS.items():
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        rate = measure(settings, device, args.amp)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        results[name] = rate
        results[name.replace("images_per_s", "peak_gib")] = peak
        print(f"  {name:<30} {rate:9.1f}" + (f"   peak {peak:6.1f} GiB" if peak is not None else ""), flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
