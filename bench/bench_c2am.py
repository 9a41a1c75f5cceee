"""Throughput of C2AM training and multi-scale inference.

Default: the default config (Lite0 pretrained, 128 px images, crop 112, batch 32, scales 0.5-2.0) on the
chosen device. ``--voc``: VOC settings (ResNet-50 random weights, 448 px crops, batch 64, AMP,
channels_last) for a GPU machine. Prints images/s for a training step (forward, loss, backward,
SGD step) and for per-image multi-scale + flip inference, and peak GPU memory on CUDA.

    python bench/bench_c2am.py [--voc] [--steps 5] [--images 20] [--threads 2] [--device auto]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from c2am.inference import multiscale_flip, normalize_by_max
from c2am.losses import c2am_loss
from c2am.models.backbone import build_trunk
from c2am.models.c2am_net import C2AM
from c2am.runtime import autocast, pick_device, set_threads, use_amp
from c2am.training import make_sgd


def settings(voc: bool) -> dict:
    if voc:
        return {"backbone": "resnet50", "weights": "none", "image": 512, "crop": 448, "batch": 64, "amp": True}
    return {"backbone": "lite0", "weights": "pretrained", "image": 128, "crop": 112, "batch": 32, "amp": True}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_train(model: C2AM, cfg: dict, device, steps: int, warmup: int) -> float:
    amp = use_amp(device, cfg["amp"])
    opt = make_sgd(model.backbone_parameters(), model.head_parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    x = torch.rand(cfg["batch"], 3, cfg["crop"], cfg["crop"], device=device)
    if amp:
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast(device, amp):
            v_f, v_b, _ = model(x)
            loss, _ = c2am_loss(v_f.float(), v_b.float(), 0.25)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    sync(device)
    return steps * cfg["batch"] / (time.perf_counter() - t0)


@torch.no_grad()
def bench_infer(model: C2AM, cfg: dict, device, images: int, warmup: int, scales) -> float:
    amp = use_amp(device, cfg["amp"])
    model.eval()
    x = torch.rand(1, 3, cfg["image"], cfg["image"], device=device)

    def forward(t):
        with autocast(device, amp):
            return model.foreground_map(t, False).float()

    for i in range(warmup + images):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        normalize_by_max(multiscale_flip(forward, x, scales)).cpu()
    sync(device)
    return images / (time.perf_counter() - t0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--voc", action="store_true", help="VOC settings (ResNet-50, 448 px, batch 64, AMP)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps")
    p.add_argument("--images", type=int, default=20, help="timed inference images")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = p.parse_args(argv)
    set_threads(args.threads)
    torch.manual_seed(0)
    device = pick_device(args.device)
    cfg = settings(args.voc)
    model = C2AM(build_trunk(cfg["backbone"], cfg["weights"])).to(device)
    if use_amp(device, cfg["amp"]):
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_ips = bench_train(model, cfg, device, args.steps, args.warmup)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    infer_ips = bench_infer(model, cfg, device, args.images, args.warmup, args.scales)
    name = "voc" if args.voc else "default"
    print(f"setting: {name} ({cfg['backbone']}, crop {cfg['crop']}, batch {cfg['batch']}, "
          f"amp {use_amp(device, cfg['amp'])}) on {device}, threads {args.threads}")
    print(f"train_images_per_s: {train_ips:.2f}")
    print(f"infer_images_per_s: {infer_ips:.2f}  (image {cfg['image']} px, scales {args.scales}, with flips)")
    if peak is not None:
        print(f"peak_gpu_memory_train_gib: {peak:.2f}")


if __name__ == "__main__":
    sys.exit(main())
