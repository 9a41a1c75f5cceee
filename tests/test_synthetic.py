"""The embedded VOC-format dataset generator (c2am/data/synthetic.py)."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from c2am.data.synthetic import (
    BADGE_COLOURS,
    MAX_CLASSES,
    badge_for_class,
    boundary_band,
    boundary_width,
    default_class_names,
    generate_voc_tree,
    DISTRACTOR_DIR,
    World,
    render_sample,
    synthetic_ids,
)
from c2am.io import IGNORE, InputError, load_image, load_label_png

SIZE = 64
N_TRAIN, N_VAL = 4, 2
CLASSES = default_class_names(6)
NUM_CLASSES = len(CLASSES)


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """Seed 0 twice (two folders) and seed 1 once."""
    roots = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        root = tmp_path_factory.mktemp(f"syn_{name}")
        generate_voc_tree(root, CLASSES, N_TRAIN, N_VAL, SIZE, seed)
        roots[name] = root
    return roots


@pytest.fixture(scope="module")
def root(trees):
    return trees["a"]


def all_ids(root: Path) -> list[str]:
    lists = root / "ImageSets" / "Segmentation"
    return (lists / "train.txt").read_text().split() + (lists / "val.txt").read_text().split()


def parse_boxes(path: Path) -> list[tuple[str, list[int]]]:
    out = []
    for obj in ET.parse(path).getroot().iter("object"):
        bb = obj.find("bndbox")
        out.append((obj.findtext("name"), [int(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]))
    return out


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_tree(trees):
    a, b = tree_hashes(trees["a"]), tree_hashes(trees["b"])
    assert len(a) == 5 * (N_TRAIN + N_VAL) + 3  # jpg, 2 masks, xml, distractor mask; 3 lists
    assert a == b


def test_other_seed_changes_every_image(trees):
    a, c = tree_hashes(trees["a"]), tree_hashes(trees["c"])
    assert a.keys() == c.keys()
    jpegs = [k for k in a if k.startswith("JPEGImages/")]
    assert all(a[k] != c[k] for k in jpegs)


def test_image_does_not_depend_on_split_sizes(trees, tmp_path):
    generate_voc_tree(tmp_path, CLASSES, 2, 1, SIZE, 0)
    small, full = tree_hashes(tmp_path), tree_hashes(trees["a"])
    shared = [k for k in small if not k.startswith("ImageSets/")]
    assert len(shared) == 5 * 3
    assert all(small[k] == full[k] for k in shared)


# ----------------------------------------------------------------------------- layout


def test_layout_and_lists(root):
    train_ids, val_ids = synthetic_ids(N_TRAIN, N_VAL)
    assert train_ids == ["syn_000000", "syn_000001", "syn_000002", "syn_000003"]
    assert val_ids == ["syn_500000", "syn_500001"]
    lists = root / "ImageSets" / "Segmentation"
    assert (lists / "train.txt").read_text() == "\n".join(train_ids) + "\n"
    assert (lists / "train_aug.txt").read_text() == (lists / "train.txt").read_text()
    assert (lists / "val.txt").read_text() == "\n".join(val_ids) + "\n"
    ids = train_ids + val_ids
    for folder, ext in (("JPEGImages", "jpg"), ("SegmentationClass", "png"), ("SegmentationClassAug", "png"),
                        ("Annotations", "xml")):
        assert sorted(p.name for p in (root / folder).iterdir()) == [f"{i}.{ext}" for i in ids]
    for i in ids:
        assert (root / "SegmentationClass" / f"{i}.png").read_bytes() == (
            root / "SegmentationClassAug" / f"{i}.png"
        ).read_bytes()
    assert not list(root.rglob("*.tmp*"))  # atomic writes leave no temporaries


def test_images_and_masks_are_voc_formatted(root):
    for i in all_ids(root):
        assert load_image(root / "JPEGImages" / f"{i}.jpg").shape == (SIZE, SIZE, 3)
        with Image.open(root / "SegmentationClass" / f"{i}.png") as im:
            assert im.mode == "P"
            assert im.getpalette()[3:6] == [128, 0, 0]  # VOC colour of class 1
        mask = load_label_png(root / "SegmentationClass" / f"{i}.png")
        assert mask.shape == (SIZE, SIZE)
        assert set(np.unique(mask).tolist()) <= set(range(NUM_CLASSES)) | {IGNORE}
        assert np.mean(mask == 0) > 0.3  # mostly background


def test_boundary_band_separates_every_edge(root):
    for i in all_ids(root):
        mask = load_label_png(root / "SegmentationClass" / f"{i}.png")
        band = mask == IGNORE
        assert 0.0 < band.mean() < 0.2
        # No two different labels touch (4-neighbourhood) without the band between them.
        for a, b in ((mask[1:], mask[:-1]), (mask[:, 1:], mask[:, :-1])):
            assert not np.any((a != b) & (a != IGNORE) & (b != IGNORE)), i


def test_boundary_band_hand_case():
    inst = np.zeros((6, 6), np.int32)
    inst[1:4, 1:4] = 1
    expected = np.zeros((6, 6), bool)
    expected[0:5, 0:5] = True
    expected[2, 2] = False  # the one pixel whose 3x3 window is all instance 1
    assert np.array_equal(boundary_band(inst, 1), expected)
    assert boundary_width(64) == 1 and boundary_width(128) == 1 and boundary_width(512) == 2


# ----------------------------------------------------------------------------- labels and annotations


def test_image_level_classes_match_annotations(root):
    for i in all_ids(root):
        mask = load_label_png(root / "SegmentationClass" / f"{i}.png")
        present = sorted(set(np.unique(mask).tolist()) - {0, IGNORE})
        assert 1 <= len(present) <= 3
        names = {name for name, _ in parse_boxes(root / "Annotations" / f"{i}.xml")}
        assert sorted(CLASSES.index(n) for n in names) == present


def test_annotation_xml(root):
    for i in all_ids(root):
        xml = ET.parse(root / "Annotations" / f"{i}.xml").getroot()
        assert xml.tag == "annotation"
        assert xml.findtext("filename") == f"{i}.jpg"
        assert [int(xml.find("size").findtext(k)) for k in ("width", "height", "depth")] == [SIZE, SIZE, 3]
        boxes = parse_boxes(root / "Annotations" / f"{i}.xml")
        assert 1 <= len(boxes) <= 3
        for name, (x1, y1, x2, y2) in boxes:
            assert name in CLASSES[1:]
            assert 1 <= x1 < x2 <= SIZE and 1 <= y1 < y2 <= SIZE  # 1-based inclusive


def test_boxes_match_mask_extents(root):
    slack = 2 * boundary_width(SIZE) + 1  # the band eats the outermost pixels, more at pointed tips
    for i in all_ids(root):
        mask = load_label_png(root / "SegmentationClass" / f"{i}.png")
        by_class: dict[int, list[list[int]]] = {}
        for name, box in parse_boxes(root / "Annotations" / f"{i}.xml"):
            by_class.setdefault(CLASSES.index(name), []).append(box)
        for c, boxes in by_class.items():
            ys, xs = np.nonzero(mask == c)
            b = np.array(boxes) - 1  # to 0-based inclusive
            union = [b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()]
            extent = [xs.min(), ys.min(), xs.max(), ys.max()]
            assert union[0] <= extent[0] <= union[0] + slack, (i, c, union, extent)
            assert union[1] <= extent[1] <= union[1] + slack, (i, c, union, extent)
            assert union[2] - slack <= extent[2] <= union[2], (i, c, union, extent)
            assert union[3] - slack <= extent[3] <= union[3], (i, c, union, extent)
            # every class pixel lies in one of the class's boxes
            inside = np.zeros(mask.shape, bool)
            for x1, y1, x2, y2 in b:
                inside[y1 : y2 + 1, x1 : x2 + 1] = True
            assert inside[ys, xs].all()


def test_tree_reads_through_the_voc_reader(root):
    from c2am.data.voc import build_manifest

    m = build_manifest(root, CLASSES, {"train": "train_aug", "pseudo_eval": "train", "val": "val"})
    assert m.ids("train") == synthetic_ids(N_TRAIN, N_VAL)[0]
    boxes = m.gt_boxes("syn_000000")
    assert boxes and all(0 <= v < SIZE for _, box in boxes for v in box)


# ----------------------------------------------------------------------------- the badge carries the class


def test_badges_are_distinct_per_class():
    badges = [badge_for_class(c) for c in range(1, MAX_CLASSES)]
    assert len({(b.shape, b.colour) for b in badges}) == MAX_CLASSES - 1
    assert len(set(default_class_names(MAX_CLASSES))) == MAX_CLASSES
    assert default_class_names(4) == ["background", "red_disc", "yellow_square", "blue_triangle"]
    with pytest.raises(ValueError):
        badge_for_class(0)


def test_every_object_shows_its_badge():
    for number in range(8):
        image, label, objects, _ = render_sample(3, number, NUM_CLASSES, SIZE)
        assert objects
        yy, xx = np.mgrid[:SIZE, :SIZE]
        for obj in objects:
            bx, by = obj.badge_centre
            disc = (xx - bx) ** 2 + (yy - by) ** 2 <= obj.badge_radius**2
            assert disc.any() and np.all(label[disc] == obj.class_index)  # visible, inside its own object
            badge = badge_for_class(obj.class_index)
            if badge.shape != "ring" and badge.pattern == "solid":  # the centre shows the badge colour
                pixel = image[round(by), round(bx)].astype(int)
                assert np.abs(pixel - np.array(BADGE_COLOURS[badge.colour])).max() < 40


def test_body_colour_does_not_depend_on_class():
    """Mean colour of object pixels far from the badge: the spread within a class exceeds the class gap."""
    per_class: dict[int, list[np.ndarray]] = {}
    for number in range(40):
        image, label, objects, _ = render_sample(5, number, 3, 48)
        yy, xx = np.mgrid[:48, :48]
        for obj in objects:
            bx, by = obj.badge_centre
            far = (label == obj.class_index) & ((xx - bx) ** 2 + (yy - by) ** 2 > (2 * obj.badge_radius) ** 2)
            if far.sum() > 20:
                per_class.setdefault(obj.class_index, []).append(image[far].mean(axis=0))
    means = {c: np.mean(v, axis=0) for c, v in per_class.items()}
    spread = np.mean([np.std(v, axis=0).mean() for v in per_class.values()])
    assert len(means) == 2 and np.abs(means[1] - means[2]).max() < spread


def test_bad_arguments_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="background"):
        generate_voc_tree(tmp_path, ["bg", "a", "b"], 1, 1, SIZE, 0)
    with pytest.raises(InputError, match="classes"):
        generate_voc_tree(tmp_path, ["background", "a"], 1, 1, SIZE, 0)
    with pytest.raises(InputError, match="classes"):
        generate_voc_tree(tmp_path, ["background"] + [f"c{i}" for i in range(21)], 1, 1, SIZE, 0)
    with pytest.raises(InputError, match="image_size"):
        generate_voc_tree(tmp_path, CLASSES, 1, 1, 16, 0)
    with pytest.raises(InputError, match="n_val"):
        generate_voc_tree(tmp_path, CLASSES, 1, 0, SIZE, 0)
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- the harder world


HARD = World(distractor_prob=1.0, small_object_prob=0.0, low_contrast_prob=0.0)


@pytest.mark.parametrize("size", [64, 96])
def test_distractor_masks_are_background_and_badge_free(size):
    seen = 0
    for number in range(12):
        image, label, objects, distractors = render_sample(2, number, NUM_CLASSES, size, HARD)
        assert distractors.shape == label.shape == (size, size)
        assert np.all(label[distractors] == 0)  # a distractor belongs to no class
        yy, xx = np.mgrid[:size, :size]
        for obj in objects:  # no badge is ever covered by a distractor (distractors lie behind objects)
            bx, by = obj.badge_centre
            assert not distractors[(xx - bx) ** 2 + (yy - by) ** 2 <= obj.badge_radius**2].any()
        seen += bool(distractors.any())
    assert seen >= 10  # every image draws 1-2; a few may be hidden behind the objects


def test_distractor_share_follows_the_config():
    counts = {p: sum(render_sample(4, n, NUM_CLASSES, SIZE, World(distractor_prob=p))[3].any() for n in range(40))
              for p in (0.0, 0.5)}
    assert counts[0.0] == 0 and 10 <= counts[0.5] <= 30


def test_tree_writes_the_distractor_masks(tmp_path):
    generate_voc_tree(tmp_path, CLASSES, 3, 1, 48, 0, HARD)
    for image_id in ("syn_000000", "syn_000002", "syn_500000"):
        written = load_label_png(tmp_path / DISTRACTOR_DIR / f"{image_id}.png")
        label = load_label_png(tmp_path / "SegmentationClass" / f"{image_id}.png")
        assert set(np.unique(written)) <= {0, 255} and np.all(label[written == 255] == 0)
        number = int(image_id.removeprefix("syn_"))
        assert np.array_equal(written == 255, render_sample(0, number, NUM_CLASSES, 48, HARD)[3])


def test_small_objects_are_small():
    world = World(small_object_prob=1.0, small_object_area=(0.02, 0.04))
    for number in range(10):
        _, label, objects, _ = render_sample(1, number, NUM_CLASSES, 80, world)
        for obj in objects:
            x0, y0, x1, y1 = obj.box
            assert (x1 - x0 + 1) * (y1 - y0 + 1) <= 0.04 * 80 * 80 * 2.5  # a blob fills >= 40 % of its box


def test_low_contrast_bodies_differ_less_from_their_surroundings():
    def edge_contrast(world):
        gaps = []
        for number in range(16):
            image, label, objects, _ = render_sample(6, number, NUM_CLASSES, SIZE, world)
            fg = (label > 0) & (label != IGNORE)
            ring = cv2.dilate(fg.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & (label == 0)
            if fg.any() and ring.any():
                gaps.append(np.abs(image[fg].mean(axis=0) - image[ring].mean(axis=0)).mean())
        return np.mean(gaps)

    assert edge_contrast(World(low_contrast_prob=1.0)) < 0.6 * edge_contrast(World())


@pytest.mark.parametrize("key, world", [
    ("distractor_prob", dict(distractor_prob=1.5)),
    ("small_object_prob", dict(small_object_prob=-0.1)),
    ("small_object_area", dict(small_object_area=(0.05, 0.02))),
    ("low_contrast_prob", dict(low_contrast_prob=2)),
])
def test_bad_world_is_an_input_error_naming_the_key(key, world):
    with pytest.raises(InputError, match=f"dataset.synthetic.{key}"):
        World(**world)
