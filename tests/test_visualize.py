"""The visualize stage on a tiny fake artifact tree, its drawing helpers, and the run summary printer."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from c2am.data.voc import Manifest, build_manifest
from c2am.io import InputError, save_gray_png, save_jpeg, save_json, save_label_png, save_npy, save_npz
from c2am import artifacts, figures, summary
from c2am.stages import visualize

CLASSES = ["background", "disc", "square", "cross"]
ROLES = {"train": "train_aug", "pseudo_eval": "train", "val": "val"}
H, W = 20, 28
FIGURES = ("grid-train", "grid-val", "boxes", "loss", "tau", "iou-pseudo", "iou-val")


def fake_mask(i: int) -> np.ndarray:
    """Image i: a class-(1 + i % 3) object, plus a smaller class-3 one on odd images; a 255 band on one edge."""
    mask = np.zeros((H, W), np.uint8)
    mask[3:12, 4:14] = 1 + i % 3
    if i % 2:
        mask[14:18, 18:24] = 3
    mask[12, 4:14] = 255
    return mask


def make_dataset(root: Path, n_train: int = 6, n_val: int = 3) -> Manifest:
    rng = np.random.default_rng(0)
    ids = [f"img{i:02d}" for i in range(n_train + n_val)]
    for i, image_id in enumerate(ids):
        save_jpeg(root / "JPEGImages" / f"{image_id}.jpg", rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        save_label_png(root / "SegmentationClassAug" / f"{image_id}.png", fake_mask(i))
        objects = "".join(
            f"<object><name>{CLASSES[c]}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
            f"<ymax>{y2}</ymax></bndbox></object>"
            for c, (x1, y1, x2, y2) in [(1 + i % 3, (5, 4, 14, 12))] + ([(3, (19, 15, 24, 18))] if i % 2 else [])
        )
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{objects}</annotation>")
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train_aug.txt").write_text("\n".join(ids[:n_train]) + "\n")
    (lists / "train.txt").write_text("\n".join(ids[: n_train // 2]) + "\n")
    (lists / "val.txt").write_text("\n".join(ids[n_train:]) + "\n")
    return build_manifest(root, CLASSES, ROLES)


def scores(miou: float, ious: list) -> dict:
    return {"miou": miou, "iou": dict(zip(CLASSES, ious)), "classes": CLASSES}


def make_artifacts(work: Path) -> dict:
    """A run's artifact tree with small, plausible arrays; returns the visualize CLI arguments as a dict."""
    manifest = make_dataset(work / "VOC")
    manifest.save(work / "manifest.json")
    a = work / "artifacts"
    boxes = {}
    for image_id in manifest.ids("train"):
        gt = manifest.load_mask(image_id)
        fg = ((gt > 0) & (gt < 255)).astype(np.float16)
        save_npy(a / "maps" / f"{image_id}.npy", fg)
        save_gray_png(a / "cues" / f"{image_id}.png", (fg > 0.5).astype(np.uint8) * 255)
        classes = np.array(manifest.labels[image_id], dtype=np.int64)
        cams = np.stack([(gt == c).astype(np.float16) * 0.9 for c in classes])
        save_npz(a / "cams" / f"{image_id}.npz", classes=classes, cams=cams)
        save_npy(a / "sal" / f"{image_id}.npy", (0.8 * fg).astype(np.float16))
        for folder in ("cam_fixed_tau", "cam_cues", "cam_sal_crf_robust"):
            save_label_png(a / folder / f"{image_id}.png", np.where(gt == 255, 0, gt).astype(np.uint8))
        boxes[image_id] = [4, 3, 13, 11]
    boxes[manifest.ids("train")[0]] = None
    save_json(a / "boxes.json", boxes)
    for image_id in manifest.ids("val"):
        pred = manifest.load_mask(image_id).copy()
        pred[pred == 255] = 0
        pred[0:2, :] = 1  # some errors
        save_label_png(a / "pred" / f"{image_id}.png", pred)
    logs = []
    for name, steps in (("c2am", 12), ("classifier", 8)):
        path = a / f"{name}.csv"
        rows = [f"{1 + s // 4},{s + 1},{2.0 / (s + 1):.4f},{0.01 * (1 - s / steps) ** 0.9:.6f}" for s in range(steps)]
        path.write_text("epoch,step,loss,lr\n" + "\n".join(rows) + "\n")
        logs.append(f"{name}={path}")
    taus = [0.05, 0.1, 0.15, 0.2]
    save_json(work / "pseudo.json", {
        "split": "pseudo_eval", "num_images": 3,
        "variants": {
            "cam_best_tau": {"tau": 0.1, "oracle_tuned": True, **scores(40.0, [80.0, 30.0, 20.0, 30.0])},
            "cam_fixed_tau": {"tau": 0.15, "oracle_tuned": False, **scores(35.0, [78.0, 25.0, 17.0, 20.0])},
            "cam_cues": scores(60.0, [90.0, 50.0, 50.0, 50.0]),
            "cam_cues_crf": scores(65.0, [92.0, 55.0, 55.0, None]),
        },
        "tau_sweep": {"tau": taus, "miou": [30.0, 40.0, 35.0, 28.0]},
    })
    save_json(work / "val.json", {**scores(50.0, [85.0, 40.0, 35.0, 40.0]),
                                  "pred_dir": "artifacts/deeplab/cam_cues_crf/pred_val"})
    (work / "c2am_boxes.txt").write_text("gt_known_loc: 0.8333\nthreshold: 0.42\n")
    args = {"--manifest": work / "manifest.json", "--maps-dir": a / "maps", "--cues-dir": a / "cues",
            "--c2am-boxes": a / "boxes.json", "--cams-dir": a / "cams", "--saliency-dir": a / "sal",
            "--variant": [f"{v}={a / v}" for v in ("cam_fixed_tau", "cam_cues", "cam_sal_crf_robust")],
            "--pred-dir": a / "pred",
            "--pseudo-json": work / "pseudo.json", "--val-json": work / "val.json", "--train-log": logs,
            "--score-txt": [f"C2AM boxes={work / 'c2am_boxes.txt'}"], "--out-tables": work / "figures" / "metrics.html"}
    for name in FIGURES:
        args[f"--out-{name}"] = work / "figures" / f"{name}.png"
    return args


def argv_of(args: dict) -> list[str]:
    argv = []
    for key, value in args.items():
        for v in value if isinstance(value, list) else [value]:
            argv += [key, str(v)]
    return argv


@pytest.fixture
def fake_run(tmp_path):
    return tmp_path, make_artifacts(tmp_path)


def test_stage_writes_every_figure(fake_run):
    work, args = fake_run
    visualize.main(argv_of(args) + ["--n-train", "4", "--n-val", "2", "--n-boxes", "5"])
    sizes = {}
    for name in FIGURES:
        path = args[f"--out-{name}"]
        with Image.open(path) as im:
            assert im.format == "PNG"
            sizes[name] = im.size
        assert not list(path.parent.glob(f".{path.name}.*")), "temporary file left behind"
    html = args["--out-tables"].read_text()
    assert "<td>gt_known_loc</td><td>0.8333</td>" in html
    # pseudo variants by class: name, mIoU, then background, disc, square, cross; None -> a dash
    assert "<tr><td>CAM + C2AM cue + CRF</td><td>65.00</td><td>92.00</td><td>55.00</td><td>55.00</td><td>—</td></tr>" in html
    assert "<tr><td>0.10</td><td>40.00</td></tr>" in html
    assert "<tr><td>DeepLab on cam_cues_crf</td><td>50.00</td><td>85.00</td>" in html
    # the train grid has 9 columns, the val grid 4: the train grid is about twice as wide
    assert sizes["grid-train"][0] > 1.6 * sizes["grid-val"][0]
    # 4 train rows against 2 val rows
    assert sizes["grid-train"][1] > sizes["grid-val"][1]


def test_train_rows_show_the_right_panels(fake_run):
    work, args = fake_run
    manifest = Manifest.load(args["--manifest"])
    ns = visualize.parse_args(argv_of(args))
    (row,) = visualize.train_rows(manifest, ["img01"], ns)
    columns = visualize.train_columns(ns)
    assert len(row) == len(columns) == len(visualize.TRAIN_COLUMNS) + 1 + 3  # the saliency panel, 3 variants
    assert columns[-3:] == ("CAM only, fixed τ", "CAM + C2AM cue", "CAM + saliency + CRF, robust")
    gt = manifest.load_mask("img01")
    # each variant panel shows its own folder's labels (here all equal to the GT without its 255 band)
    assert np.array_equal(row[-1][0], figures.colorize(np.where(gt == 255, 0, gt).astype(np.uint8)))
    assert np.array_equal(row[1][0], figures.colorize(gt))
    # img01 holds class 2 (90 px) and class 3 (24 px): the CAM column shows class 2, named in the corner
    assert row[2][1] == "square"
    cue = row[4][0]
    assert cue.shape == (H, W, 3) and cue[5, 5].tolist() == [255, 255, 255] and cue[0, 0].tolist() == [0, 0, 0]


def test_missing_artifact_names_the_file(fake_run):
    work, args = fake_run
    (args["--cues-dir"] / "img02.png").unlink()
    with pytest.raises(InputError, match=r"cues/img02\.png: label image not found"):
        visualize.main(argv_of(args) + ["--n-train", "6"])


def test_bad_boxes_json_is_rejected(fake_run):
    work, args = fake_run
    save_json(args["--c2am-boxes"], {"img00": [1, 2, 3]})
    with pytest.raises(InputError, match="box of img00"):
        artifacts.load_boxes(args["--c2am-boxes"])


def test_sample_is_seeded_sorted_and_capped():
    ids = [f"{i:03d}" for i in range(50)]
    a = figures.sample_ids(ids, 5, seed=3)
    assert a == figures.sample_ids(ids, 5, seed=3) == sorted(a) and len(set(a)) == 5
    assert a != figures.sample_ids(ids, 5, seed=4)
    assert figures.sample_ids(ids[:3], 5, seed=0) == ids[:3]


def test_colors_and_overlays_by_hand():
    label = np.array([[0, 1], [2, 255]], np.uint8)
    rgb = figures.colorize(label)
    assert rgb.tolist() == [[[0, 0, 0], [128, 0, 0]], [[0, 128, 0], [224, 224, 192]]]
    image = np.full((1, 2, 3), 100, np.uint8)
    heat = figures.heat_overlay(image, np.array([[0.0, 1.0]]))
    # jet(0) = dark blue (0, 0, 0.5), jet(1) = dark red (0.5, 0, 0); half image (100/255), half colour
    assert heat[0, 0].tolist() == [int((0.5 * 100 / 255) * 255), int((0.5 * 100 / 255) * 255),
                                   int((0.5 * 100 / 255 + 0.25) * 255)]
    assert heat[0, 1, 0] > heat[0, 1, 2]
    gt = np.array([[1, 1, 255]], np.uint8)
    pred = np.array([[1, 2, 0]], np.uint8)
    err = figures.error_overlay(np.full((1, 3, 3), 200, np.uint8), gt, pred)
    assert err[0, 0].tolist() == [80, 80, 80] and err[0, 1].tolist() == [230, 25, 25] and err[0, 2].tolist() == [80] * 3


def test_top_class_and_moving_average_by_hand():
    gt = np.array([[1, 2, 2], [2, 3, 255]], np.uint8)
    assert figures.top_class(np.array([1, 2, 3]), gt) == 1
    assert figures.top_class(np.array([3, 1]), gt) == 0  # a tie: the first
    assert figures.top_class(np.array([], np.int64), gt) is None
    ma = figures.moving_average(np.array([1.0, 3.0, 5.0, 7.0]), 2)
    assert ma.tolist() == [1.0, 2.0, 4.0, 6.0]


def test_train_log_without_loss_column_is_rejected(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,step,lr\n1,1,0.1\n")
    with pytest.raises(InputError, match="lacks column"):
        figures.read_train_log(path)


# ----------------------------------------------------------------------------- summary


def write_bench(path: Path, seconds: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    path.write_text(head + "".join(f"{s}\t0:00:01\t1\t1\t1\t1\t0\t0\t1\t1\n" for s in seconds))


def test_summary_table_by_hand(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "pseudo_masks.json").write_text(json.dumps({
        "split": "pseudo_eval", "num_images": 3,
        "variants": {"cam_best_tau": {"tau": 0.35, "miou": 36.3}, "cam_fixed_tau": {"tau": 0.15, "miou": 30.0},
                     "cam_cues": {"miou": 62.04}, "cam_cues_crf": {"miou": 66.2}},
        "tau_sweep": {"tau": [0.35], "miou": [36.3]},
    }))
    (results / "voc_miou.txt").write_text("mIoU: 45.00\nbackground: 90.00\n")
    (results / "voc_miou.json").write_text(json.dumps({"pred_dir": "artifacts/deeplab/cam_cues_crf/pred_val"}))
    (results / "fully_supervised_miou.txt").write_text("mIoU: 60.00\n")
    bench = tmp_path / "benchmarks"
    write_bench(bench / "train_deeplab_cam_cues_crf.tsv", [10.0])
    write_bench(bench / "prepare_dataset.tsv", [1.5])
    write_bench(bench / "train_c2am.tsv", [20.0, 30.0])  # repeats: the mean, 25
    text = summary.summarize(tmp_path)
    lines = text.splitlines()
    assert "CAM only, best tau 0.35 (oracle-tuned)" in text and lines[2].split()[-1] == "36.30"
    assert any(line.split()[-1] == "62.04" and "CAM + C2AM cue" in line for line in lines)
    assert any("DeepLab on cam_cues_crf" in line and line.endswith("45.00") for line in lines)
    assert any("weak / full" in line and line.endswith("0.750") for line in lines)
    stages = [line.split()[0] for line in lines[lines.index("Wall time per stage (s, from benchmarks/*.tsv):") + 1:]]
    assert stages == ["prepare_dataset", "train_c2am", "train_deeplab_cam_cues_crf", "total"]
    assert lines[-1].split()[-1] == "36.5"  # 1.5 + 25 + 10


def test_summary_of_a_partial_run_marks_what_is_missing(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "voc_miou.txt").write_text("accuracy: 3\n")
    write_bench(tmp_path / "benchmarks" / "prepare_dataset.tsv", [2.0])
    (tmp_path / "benchmarks" / "broken.tsv").write_text("x\ty\n")
    text = summary.summarize(tmp_path)
    assert "results/pseudo_masks.json" in text and summary.MISSING in text
    assert "is not 'mIoU: <number>'" in text
    assert "broken" in text and "unreadable" in text
    assert "weak / full" not in text
    assert text.splitlines()[-1].split()[-1] == "2.0"


def test_stage_order_puts_wildcard_rules_in_dag_order():
    names = ["visualize", "evaluate_voc_miou", "train_deeplab_gt", "prepare_dataset", "zzz", "eval_pseudo"]
    assert sorted(names, key=summary.stage_key) == [
        "prepare_dataset", "eval_pseudo", "train_deeplab_gt", "evaluate_voc_miou", "visualize", "zzz"]
