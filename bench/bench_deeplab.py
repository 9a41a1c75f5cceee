"""Training and inference throughput of the final DeepLab at the default settings.

    python bench/bench_deeplab.py [--threads 2] [--backbone lite0_deeplabhead] [--size 128] [--batch-size 16]
                                  [--steps 6] [--images 40] [--scales 1.0] [--flip] [--device cpu]

- training: images/s of full SGD steps (forward, cross-entropy with 255-ignored pixels, backward, update) on
  random batches of ``--batch-size`` crops of ``--size`` px, after one warm-up step; data loading excluded;
- inference: images/s of ``infer_deeplab.predict_probs`` (softmax, argmax) on single ``--size`` px images,
  one at a time as the stage runs them, with ``--scales`` / ``--flip``.
Wall time and process CPU time are both printed: on a shared machine the CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from c2am.models.deeplab import MODEL_NAMES, build_deeplab, segmentation_loss
from c2am.inference import predict_probs
from c2am.training import make_sgd


def timed(fn, repeats: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) for ``repeats`` calls of ``fn``."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_training(model, args, device) -> tuple[float, float]:
    backbone, head = model.parameter_groups()
    opt = make_sgd(backbone, head, lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch_size, 3, args.size, args.size, generator=gen).to(device)
    y = torch.randint(0, args.classes, (args.batch_size, args.size, args.size), generator=gen)
    y[:, : args.size // 8] = 255
    y = y.to(device)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        segmentation_loss(model(x), y).backward()
        opt.step()

    step()  # warm-up: allocator and oneDNN primitive caches
    return timed(step, args.steps)


def bench_inference(model, args, device) -> tuple[float, float]:
    model.eval()
    image = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1)).to(device)

    def one():
        predict_probs(model, image, args.scales, args.flip).argmax(0).cpu()

    one()
    return timed(one, args.images)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="lite0_deeplabhead", choices=MODEL_NAMES)
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--images", type=int, default=40)
    p.add_argument("--scales", type=float, nargs="+", default=[1.0])
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build_deeplab(args.backbone, args.classes, "none").to(device)

    wall, cpu = bench_training(model, args, device)
    n = args.steps * args.batch_size
    print(f"{args.backbone} on {device}, {args.threads} threads, {args.size} px")
    print(f"training  (batch {args.batch_size}): {n / wall:6.1f} images/s wall, {n / cpu:6.1f} images per CPU-second")
    wall, cpu = bench_inference(model, args, device)
    n = args.images
    print(f"inference (scales {args.scales}, flip {args.flip}): {n / wall:6.1f} images/s wall, "
          f"{n / cpu:6.1f} images per CPU-second")


if __name__ == "__main__":
    main()
