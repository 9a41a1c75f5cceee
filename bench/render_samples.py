"""Render a grid of synthetic samples (image | coloured mask) and print dataset statistics.

    PYTHONPATH=. python bench/render_samples.py --out docs/samples.png --rows 4 --cols 4 --size 128 --classes 7
    PYTHONPATH=. python bench/render_samples.py --stats 500   # also time and summarise 500 images (in a temp dir)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from c2am.data.synthetic import default_class_names, generate_voc_tree, render_sample
from c2am.io import atomic_path, load_label_png, voc_palette


def colour_mask(label: np.ndarray) -> np.ndarray:
    pal = np.array(voc_palette(), np.uint8).reshape(256, 3)
    return pal[label]


def render_grid(out: Path, rows: int, cols: int, size: int, num_classes: int, seed: int, zoom: int) -> None:
    names = default_class_names(num_classes)
    pad, text_h = 4, 12
    cell_w, cell_h = 2 * size * zoom + pad, size * zoom + text_h + pad
    grid = Image.new("RGB", (cols * cell_w + pad, rows * cell_h + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for n in range(rows * cols):
        image, label, objects = render_sample(seed, n, num_classes, size)
        pair = np.concatenate([image, colour_mask(label)], axis=1)
        tile = Image.fromarray(pair).resize((pair.shape[1] * zoom, pair.shape[0] * zoom), Image.NEAREST)
        x, y = pad + (n % cols) * cell_w, pad + (n // cols) * cell_h
        grid.paste(tile, (x, y + text_h))
        draw.text((x, y), ", ".join(names[o.class_index] for o in objects), fill=(0, 0, 0))
    with atomic_path(out) as tmp:
        grid.save(tmp, format="PNG", optimize=True)
    print(f"wrote {out}")


def statistics(n: int, size: int, num_classes: int, seed: int) -> None:
    """Time generate_voc_tree on n images and summarise foreground, border and object statistics."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_voc_tree(Path(tmp), default_class_names(num_classes), n, 1, size, seed)
        elapsed = time.perf_counter() - start
        masks = [load_label_png(p) for p in sorted((Path(tmp) / "SegmentationClass").glob("*.png"))[:n]]
    print(f"generate_voc_tree: {n + 1} images of {size}px in {elapsed:.2f} s ({(n + 1) / elapsed:.0f} img/s)")
    fg, border, n_cls = [], [], []
    strip = max(1, size // 16)
    for m in masks:
        valid = m != 255
        fg.append(np.mean((m > 0) & valid) / np.mean(valid))
        edge = np.ones_like(m, bool)
        edge[strip:-strip, strip:-strip] = False
        border.append(np.mean(m[edge & valid] > 0))
        n_cls.append(len(set(np.unique(m)) - {0, 255}))
    fg, border = np.array(fg), np.array(border)
    print(f"foreground fraction: mean {fg.mean():.3f}, median {np.median(fg):.3f}, "
          f"p10 {np.percentile(fg, 10):.3f}, p90 {np.percentile(fg, 90):.3f}, min {fg.min():.3f}, max {fg.max():.3f}")
    print(f"border strip ({strip}px) foreground: mean {border.mean():.3f}")
    counts = np.bincount(n_cls, minlength=4)[1:4]
    print(f"classes per image: 1: {counts[0]}, 2: {counts[1]}, 3: {counts[2]}")
    ignore = np.mean([np.mean(m == 255) for m in masks])
    print(f"boundary band (255) share of pixels: {ignore:.3f}")
    objs = [render_sample(seed, i, num_classes, size)[2] for i in range(min(n, 200))]
    flat = [o for obj in objs for o in obj]
    print(f"objects per image (first {len(objs)}): mean {len(flat) / len(objs):.2f}; "
          f"occluded {np.mean([o.occluded for o in flat]):.2f}, truncated {np.mean([o.truncated for o in flat]):.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("docs/samples.png"))
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--cols", type=int, default=4)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--classes", type=int, default=7, help="class count, background included")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--zoom", type=int, default=2)
    p.add_argument("--stats", type=int, default=0, help="also time and summarise this many images")
    args = p.parse_args(argv)
    render_grid(args.out, args.rows, args.cols, args.size, args.classes, args.seed, args.zoom)
    if args.stats:
        statistics(args.stats, args.size, args.classes, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
