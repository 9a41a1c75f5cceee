"""Render a grid of synthetic samples (image | coloured mask, distractors in grey) and print dataset statistics.

    PYTHONPATH=. python bench/render_samples.py --out docs/samples.png --rows 4 --cols 4 --size 128 --classes 7
    PYTHONPATH=. python bench/render_samples.py --stats 500   # also time and summarise 500 images (in a temp dir)
    PYTHONPATH=. python bench/render_samples.py --easy ...    # the first, easy world (no distractors, no small objects)

The world is the default config's (dataset.synthetic).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from c2am import defaults
from c2am.data.synthetic import World, default_class_names, generate_voc_tree, render_sample
from c2am.io import atomic_path, load_label_png, voc_palette


DISTRACTOR_GREY = (150, 150, 150)


def colour_mask(label: np.ndarray, distractors: np.ndarray) -> np.ndarray:
    """The label in the VOC palette; the distractor pixels (background in the label) in grey."""
    pal = np.array(voc_palette(), np.uint8).reshape(256, 3)
    out = pal[label]
    out[distractors] = DISTRACTOR_GREY
    return out


def render_grid(out: Path, rows: int, cols: int, size: int, num_classes: int, seed: int, zoom: int,
                world: World) -> None:
    names = default_class_names(num_classes)
    pad, text_h = 4, 12
    cell_w, cell_h = 2 * size * zoom + pad, size * zoom + text_h + pad
    grid = Image.new("RGB", (cols * cell_w + pad, rows * cell_h + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for n in range(rows * cols):
        image, label, objects, distractors = render_sample(seed, n, num_classes, size, world)
        pair = np.concatenate([image, colour_mask(label, distractors)], axis=1)
        tile = Image.fromarray(pair).resize((pair.shape[1] * zoom, pair.shape[0] * zoom), Image.NEAREST)
        x, y = pad + (n % cols) * cell_w, pad + (n // cols) * cell_h
        grid.paste(tile, (x, y + text_h))
        draw.text((x, y), ", ".join(names[o.class_index] for o in objects), fill=(0, 0, 0))
    with atomic_path(out) as tmp:
        grid.save(tmp, format="PNG", optimize=True)
    print(f"wrote {out}")


def statistics(n: int, size: int, num_classes: int, seed: int, world: World) -> None:
    """Time generate_voc_tree on n images and summarise foreground, border and object statistics."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_voc_tree(Path(tmp), default_class_names(num_classes), n, 1, size, seed, world)
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
    samples = [render_sample(seed, i, num_classes, size, world) for i in range(min(n, 200))]
    objs = [sample[2] for sample in samples]
    flat = [o for obj in objs for o in obj]
    areas = [np.mean(label == o.class_index) for _, label, objects, _ in samples for o in objects]
    print(f"object area (share of the image, same-class objects merged): p5 {np.percentile(areas, 5):.3f}, "
          f"median {np.median(areas):.3f}; under 5 %: {np.mean(np.array(areas) < 0.05):.2f}")
    with_d = [d.mean() for *_, d in samples]
    print(f"images with a visible distractor: {np.mean(np.array(with_d) > 0):.2f}; "
          f"distractor share of pixels: {np.mean(with_d):.3f}")
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
    p.add_argument("--easy", action="store_true", help="the first world: no distractors, small or faint objects")
    args = p.parse_args(argv)
    world = World() if args.easy else World.from_config(defaults.value("dataset.synthetic"))
    print(world)
    render_grid(args.out, args.rows, args.cols, args.size, args.classes, args.seed, args.zoom, world)
    if args.stats:
        statistics(args.stats, args.size, args.classes, args.seed, world)
    return 0


if __name__ == "__main__":
    sys.exit(main())
