"""The WSOL readers on hand-made fixtures of both layouts (CUB-200-2011; wsolevaluation metadata), box
coordinates checked by hand, and every bad input: one InputError naming the file and the line."""

from pathlib import Path

import numpy as np
import pytest

from c2am.data.voc import Manifest
from c2am.data.wsol import load_gt, read_cub, read_wsol_metadata, save_wsol
from c2am.io import InputError, save_jpeg

# id, class folder, file, class id (1-based), (height, width), CUB box "x y width height", is_training
CUB_IMAGES = [
    (1, "001.Albatross", "Albatross_0001.jpg", 1, (30, 40), "0.0 0.0 39.0 29.0", 1),  # the whole image
    (2, "001.Albatross", "Albatross_0002.jpg", 1, (20, 24), "3.0 4.0 10.0 5.0", 1),
    (3, "001.Albatross", "Albatross_0003.jpg", 1, (20, 24), "2.4 2.5 3.0 3.0", 0),  # rounded half up
    (4, "002.Auklet", "Auklet_0004.jpg", 2, (24, 20), "5.0 6.0 0.0 0.0", 1),  # one pixel
    (5, "002.Auklet", "Auklet_0005.jpg", 2, (24, 20), "1.0 2.0 3.0 4.0", 1),
    (6, "002.Auklet", "Auklet_0006.jpg", 2, (24, 20), "10.0 11.0 9.0 12.0", 0),  # reaches the last column/row
]
# the same boxes as 0-based inclusive [x1, y1, x2, y2], by hand
CUB_BOXES = {1: [0, 0, 39, 29], 2: [3, 4, 13, 9], 3: [2, 3, 5, 6], 4: [5, 6, 5, 6], 5: [1, 2, 4, 6],
             6: [10, 11, 19, 23]}


def make_cub_fixture(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for iid, folder, name, _, (h, w), _, _ in CUB_IMAGES:
        save_jpeg(root / "images" / folder / name, rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    (root / "classes.txt").write_text("1 001.Albatross\n2 002.Auklet\n")
    (root / "images.txt").write_text("".join(f"{i} {f}/{n}\n" for i, f, n, *_ in CUB_IMAGES))
    (root / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, _, _, c, *_ in CUB_IMAGES))
    (root / "bounding_boxes.txt").write_text("".join(f"{i} {b}\n" for i, *_, b, _ in CUB_IMAGES))
    (root / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, *_, t in CUB_IMAGES))
    return root


def cub_id(iid: int) -> str:
    _, folder, name, *_ = CUB_IMAGES[iid - 1]
    return f"{folder}/{name[:-4]}"


def test_cub_reader_boxes_labels_and_splits(tmp_path):
    data = read_cub(make_cub_fixture(tmp_path / "CUB"), val_fraction=0.4, seed=0, num_classes=2)
    assert data.classes == ["background", "001.Albatross", "002.Auklet"]
    assert all(data.boxes[cub_id(i)] == [b] for i, b in CUB_BOXES.items())
    assert data.sizes[cub_id(1)] == (30, 40) and data.sizes[cub_id(4)] == (24, 20)
    assert data.labels[cub_id(2)] == 1 and data.labels[cub_id(5)] == 2
    assert data.splits["test"] == [cub_id(3), cub_id(6)]
    # val: round(0.4 * 2) = 1 training image per class, taken out of train; the three roles are disjoint
    assert len(data.splits["val"]) == 2 and len(data.splits["train"]) == 2
    assert {data.labels[i] for i in data.splits["val"]} == {1, 2}
    roles = [set(v) for v in data.splits.values()]
    assert sum(map(len, roles)) == len(set().union(*roles)) == 6
    assert read_cub(tmp_path / "CUB", 0.4, seed=0).splits == data.splits  # seeded
    # the manifest reads the images where CUB keeps them
    m = data.manifest()
    assert m.image_path(cub_id(3)) == tmp_path / "CUB" / "images" / "001.Albatross" / "Albatross_0003.jpg"
    assert m.load_image(cub_id(3)).shape == (20, 24, 3) and m.labels[cub_id(6)] == [2]


def test_manifest_and_gt_round_trip(tmp_path):
    data = read_cub(make_cub_fixture(tmp_path / "CUB"), 0.4, 0)
    save_wsol(data, tmp_path / "out" / "manifest.json", tmp_path / "out" / "gt.json")
    m = Manifest.load(tmp_path / "out" / "manifest.json")
    assert m.ids("test") == data.splits["test"] and m.multi_hot(cub_id(6)).tolist() == [0.0, 1.0]
    gt = load_gt(tmp_path / "out" / "gt.json")
    assert gt.boxes_of(cub_id(2)) == [[3, 4, 13, 9]] and gt.size_of(cub_id(2)) == (20, 24)


def test_one_split_gt_files_hold_that_split_alone(tmp_path):
    """gt_val.json (the box threshold's choice) and gt_train.json (the pseudo boxes' score) hold no test box."""
    data = read_cub(make_cub_fixture(tmp_path / "CUB"), 0.4, 0)
    out = tmp_path / "out"
    save_wsol(data, out / "manifest.json", out / "gt.json", {"train": out / "gt_train.json", "val": out / "gt_val.json"})
    assert set(load_gt(out / "gt.json").boxes) == set().union(*map(set, data.splits.values()))
    for split in ("train", "val"):
        gt = load_gt(out / f"gt_{split}.json")
        assert set(gt.boxes) == set(gt.sizes) == set(data.splits[split]) and data.splits[split]
        assert not set(gt.boxes) & set(data.splits["test"])
        some = data.splits[split][0]
        assert gt.boxes_of(some) == load_gt(out / "gt.json").boxes_of(some)


def rewrite(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "file, line, text, message",
    [
        ("images.txt", 3, "3 001.Albatross/missing.jpg", r"images\.txt:3: image .*missing\.jpg not found"),
        ("bounding_boxes.txt", 2, "2 3.0 4.0 21.0 5.0", r"bounding_boxes\.txt:2: box \[3, 4, 24, 9\] lies outside"),
        ("bounding_boxes.txt", 4, "4 -1.0 6.0 0.0 0.0", r"bounding_boxes\.txt:4: box .* lies outside"),
        ("image_class_labels.txt", 5, "5 3", r"image_class_labels\.txt:5: class id 3 out of range 1\.\.2"),
        ("train_test_split.txt", 6, "9 0", r"train_test_split\.txt:6: image id 9 is not in images\.txt"),
        ("bounding_boxes.txt", 1, "17 0.0 0.0 1.0 1.0", r"bounding_boxes\.txt:1: image id 17 is not in images\.txt"),
        ("image_class_labels.txt", 2, "1 1", r"image_class_labels\.txt:2: image id 1 listed twice"),
        ("bounding_boxes.txt", 3, "3 2.4 2.5 3.0", r"bounding_boxes\.txt:3: expected 5 fields"),
        ("train_test_split.txt", 1, "1 yes", r"train_test_split\.txt:1: is_training_image must be 0 or 1"),
        ("classes.txt", 2, "3 002.Auklet", r"classes\.txt:2: class id 3, expected 2"),
    ],
)
def test_cub_bad_input_names_file_and_line(tmp_path, file, line, text, message):
    root = make_cub_fixture(tmp_path / "CUB")
    rewrite(root / file, line, text)
    with pytest.raises(InputError, match=message):
        read_cub(root, 0.4, 0)


def test_cub_missing_entries_and_files(tmp_path):
    root = make_cub_fixture(tmp_path / "CUB")
    (root / "bounding_boxes.txt").write_text("".join(f"{i} 0.0 0.0 1.0 1.0\n" for i in range(1, 6)))
    with pytest.raises(InputError, match=r"bounding_boxes\.txt: no entry for image id 6"):
        read_cub(root, 0.4, 0)
    (root / "classes.txt").unlink()
    with pytest.raises(InputError, match=r"classes\.txt: file not found"):
        read_cub(root, 0.4, 0)
    with pytest.raises(InputError, match="num_classes 200"):
        read_cub(make_cub_fixture(tmp_path / "CUB2"), 0.4, 0, num_classes=200)


# ----------------------------------------------------------------------------- wsolevaluation metadata

# split -> [(image id = path under the root, class 0-based, (width, height), boxes x0,y0,x1,y1)]
META = {
    "train": [("001.Albatross/a1.jpg", 0, (40, 30), []), ("002.Auklet/b1.jpg", 1, (20, 24), []),
              ("002.Auklet/b2.jpg", 1, (20, 24), [])],
    "val": [("val2/0/0.jpeg", 0, (24, 20), [(0, 0, 23, 19)]), ("val2/1/0.jpeg", 1, (24, 20), [(5, 6, 5, 6)])],
    "test": [("test/t1.JPEG", 0, (40, 30), [(3, 4, 13, 9), (20, 10, 39, 29)]),
             ("test/t2.jpg", 1, (20, 24), [(1, 2, 4, 6)])],
}


def make_metadata_fixture(root: Path, metadata: Path, train_boxes: bool = False) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    for split, rows in META.items():
        folder = metadata / split
        folder.mkdir(parents=True)
        for name, _, (w, h), _ in rows:
            save_jpeg(root / name, rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        (folder / "image_ids.txt").write_text("".join(f"{n}\n" for n, *_ in rows))
        (folder / "class_labels.txt").write_text("".join(f"{n},{c}\n" for n, c, *_ in rows))
        if split != "train" or train_boxes:
            (folder / "image_sizes.txt").write_text("".join(f"{n},{w},{h}\n" for n, _, (w, h), _ in rows))
            (folder / "localization.txt").write_text(
                "".join(f"{n},{x0},{y0},{x1},{y1}\n" for n, _, _, bs in rows for x0, y0, x1, y1 in bs))
    return root, metadata


def test_metadata_reader_boxes_labels_and_files(tmp_path):
    root, metadata = make_metadata_fixture(tmp_path / "CUB", tmp_path / "metadata")
    data = read_wsol_metadata(root, metadata, num_classes=2)
    assert data.splits == {"train": ["001.Albatross/a1", "002.Auklet/b1", "002.Auklet/b2"],
                           "val": ["val2/0/0", "val2/1/0"], "test": ["test/t1", "test/t2"]}
    assert data.boxes["test/t1"] == [[3, 4, 13, 9], [20, 10, 39, 29]]  # inclusive, as written; two boxes
    assert data.boxes["val2/1/0"] == [[5, 6, 5, 6]] and "001.Albatross/a1" not in data.boxes
    assert data.sizes["test/t1"] == (30, 40)
    assert data.labels["test/t2"] == 2 and data.labels["001.Albatross/a1"] == 1  # 0-based -> after background
    assert data.classes == ["background", "001.Albatross", "002.Auklet"]  # the train images' folders
    m = data.manifest()
    assert m.image_path("test/t1") == root / "test" / "t1.JPEG"  # other extensions are kept
    assert m.image_path("val2/0/0") == root / "val2" / "0" / "0.jpeg"
    assert m.image_path("test/t2") == root / "test" / "t2.jpg"
    assert m.load_image("test/t1").shape == (30, 40, 3)


@pytest.mark.parametrize(
    "split, file, line, text, message",
    [
        ("test", "image_ids.txt", 2, "test/missing.jpg", r"test/image_ids\.txt:2: image .*missing\.jpg not found"),
        ("test", "localization.txt", 3, "test/t2.jpg,1,2,20,6",
         r"test/localization\.txt:3: box \[1, 2, 20, 6\] lies outside the 20x24 image"),
        ("val", "class_labels.txt", 1, "val2/0/0.jpeg,2", r"val/class_labels\.txt:1: class 2 out of range 0\.\.1"),
        ("val", "localization.txt", 2, "val2/9/0.jpeg,5,6,5,6",
         r"val/localization\.txt:2: image val2/9/0\.jpeg is not in image_ids\.txt of split 'val'"),
        ("test", "image_sizes.txt", 1, "test/t1.JPEG,41,30", r"test/image_sizes\.txt:1: size 41x30 .* image is 40x30"),
        ("val", "image_ids.txt", 1, "001.Albatross/a1.jpg",
         r"val/image_ids\.txt:1: image 001\.Albatross/a1\.jpg is also in split 'train'"),
        ("val", "localization.txt", 1, "val2/0/0.jpeg,9,0,3,19", r"val/localization\.txt:1: box .* x1 > x2"),
    ],
)
def test_metadata_bad_input_names_file_and_line(tmp_path, split, file, line, text, message):
    root, metadata = make_metadata_fixture(tmp_path / "CUB", tmp_path / "metadata")
    rewrite(metadata / split / file, line, text)
    with pytest.raises(InputError, match=message):
        read_wsol_metadata(root, metadata, num_classes=2)


def test_metadata_needs_boxes_where_they_are_scored(tmp_path):
    root, metadata = make_metadata_fixture(tmp_path / "CUB", tmp_path / "metadata")
    (metadata / "val" / "localization.txt").write_text("val2/0/0.jpeg,0,0,23,19\n")
    with pytest.raises(InputError, match=r"val/localization\.txt: no box for image val2/1/0\.jpeg"):
        read_wsol_metadata(root, metadata, num_classes=2)
    (metadata / "val" / "localization.txt").write_text("val2/0/0.jpeg,0,0,23,19\nval2/1/0.jpeg,5,6,5,6\n")
    (metadata / "test" / "image_sizes.txt").unlink()
    with pytest.raises(InputError, match=r"test/image_sizes\.txt: file not found"):
        read_wsol_metadata(root, metadata, num_classes=2)


def test_prepare_wsol_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    from c2am.runtime import run_stage
    from c2am.stages import prepare_wsol

    root = make_cub_fixture(tmp_path / "CUB")
    rewrite(root / "image_class_labels.txt", 5, "5 7")
    out = tmp_path / "out"
    argv = ["--kind", "cub", "--root", str(root), "--num-classes", "2", "--val-fraction", "0.4",
            "--out-manifest", str(out / "manifest.json"), "--out-gt", str(out / "gt.json")]
    assert run_stage(prepare_wsol.main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "image_class_labels.txt:5: class id 7 out of range 1..2" in err[-1]
    assert not (out / "manifest.json").exists() and not (out / "gt.json").exists()
    rewrite(root / "image_class_labels.txt", 5, "5 2")
    assert run_stage(prepare_wsol.main, argv) == 0 and (out / "gt.json").is_file()
    # a generated tree is never written over a folder the stage did not generate
    argv_syn = ["--kind", "synthetic", "--root", str(root), "--out-manifest", str(out / "m.json"),
                "--out-gt", str(out / "g.json")]
    assert run_stage(prepare_wsol.main, argv_syn) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
