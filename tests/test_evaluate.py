"""Evaluator stage on a tiny VOC-like tree with hand-computed scores."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from c2am.data.voc import Manifest
from c2am.io import InputError, save_jpeg, save_label_png
from c2am.stages import evaluate
from c2am.scoring import format_scores, score_folder, scores_dict

CLASSES = ["background", "cat", "dog", "bird"]  # "bird" appears in neither GT nor prediction
# Same pixels as the hand case in test_metrics, split over two images of different heights.
GT = {
    "a": np.array([[0, 0, 1, 1], [0, 1, 1, 255]], np.uint8),
    "b": np.array([[2, 2, 0, 255]], np.uint8),
}
PRED = {
    "a": np.array([[0, 1, 1, 1], [0, 1, 255, 2]], np.uint8),  # one uncertain pixel on a "cat" GT pixel
    "b": np.array([[2, 0, 0, 1]], np.uint8),
}
EXPECTED_TEXT = "mIoU: 56.67\nbackground: 60.00\ncat: 60.00\ndog: 50.00\nbird: nan\n"


@pytest.fixture
def tree(tmp_path) -> tuple[Path, Manifest, Path]:
    root = tmp_path / "voc"
    for image_id, gt in GT.items():
        save_jpeg(root / "JPEGImages" / f"{image_id}.jpg", np.zeros((*gt.shape, 3), np.uint8))
        save_label_png(root / "SegmentationClassAug" / f"{image_id}.png", gt)
        save_label_png(tmp_path / "pred" / f"{image_id}.png", PRED[image_id])
    ids = sorted(GT)
    manifest = Manifest(
        root=root,
        classes=CLASSES,
        splits={"train": ids, "pseudo_eval": ids, "val": ids},
        labels={"a": [1], "b": [2]},
    )
    manifest.save(tmp_path / "manifest.json")
    return tmp_path / "manifest.json", Manifest.load(tmp_path / "manifest.json"), tmp_path / "pred"


def test_score_folder_hand_case(tree):
    _, manifest, pred_dir = tree
    cm = score_folder(manifest, "val", pred_dir)
    np.testing.assert_array_equal(cm.matrix, [[3, 1, 0, 0], [0, 3, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(cm.uncertain, [0, 1, 0, 0])
    assert format_scores(cm, CLASSES) == EXPECTED_TEXT
    d = scores_dict(cm, CLASSES)
    assert d["miou"] == pytest.approx(100 * 1.7 / 3)
    assert d["iou"]["dog"] == pytest.approx(50.0) and d["iou"]["bird"] is None


def test_main_writes_text_and_json_with_workers(tree, tmp_path):
    manifest_path, _, pred_dir = tree
    out_txt, out_json = tmp_path / "out" / "miou.txt", tmp_path / "out" / "miou.json"
    argv = ["--manifest", str(manifest_path), "--split", "val", "--pred-dir", str(pred_dir)]
    evaluate.main(argv + ["--out-txt", str(out_txt), "--out-json", str(out_json), "--threads", "2"])
    assert out_txt.read_text() == EXPECTED_TEXT
    data = json.loads(out_json.read_text())
    assert data["classes"] == CLASSES and data["num_images"] == 2 and data["split"] == "val"
    assert data["confusion_matrix"][2] == [1, 0, 1, 0]
    assert data["iou"]["bird"] is None and data["miou"] == pytest.approx(56.6667, abs=1e-3)


def test_gt_dir_overrides_the_manifest_masks(tree, tmp_path):
    _, manifest, pred_dir = tree
    cm = score_folder(manifest, "val", pred_dir, gt_dir=pred_dir)  # predictions scored against themselves
    assert cm.miou() == pytest.approx(1.0)
    # the pixel counts of the predictions; their 255 pixel is now GT "ignore", hence not uncertain
    np.testing.assert_array_equal(cm.matrix, np.diag([4, 5, 2, 0]))
    assert cm.uncertain.sum() == 0


def test_missing_predictions_listed_before_scoring(tree):
    _, manifest, pred_dir = tree
    (pred_dir / "b.png").unlink()
    with pytest.raises(InputError, match=r"1 of 2 predictions .* missing: .*b\.png"):
        score_folder(manifest, "val", pred_dir)


def test_prediction_of_wrong_size_is_named(tree):
    _, manifest, pred_dir = tree
    save_label_png(pred_dir / "a.png", np.zeros((3, 4), np.uint8))
    with pytest.raises(InputError, match=r"a\.png: prediction size 4x3 differs"):
        score_folder(manifest, "val", pred_dir)


def test_prediction_with_unknown_label_is_named(tree):
    _, manifest, pred_dir = tree
    save_label_png(pred_dir / "b.png", np.full((1, 4), 9, np.uint8))
    with pytest.raises(InputError, match=r"b\.png: prediction holds class index 9"):
        score_folder(manifest, "val", pred_dir)


def test_cli_error_is_one_line_and_exit_2(tree, tmp_path):
    manifest_path, _, pred_dir = tree
    (pred_dir / "a.png").unlink()
    cmd = [sys.executable, "-m", "c2am.stages.evaluate", "--manifest", str(manifest_path), "--split", "val"]
    cmd += ["--pred-dir", str(pred_dir), "--out-txt", str(tmp_path / "t.txt"), "--out-json", str(tmp_path / "j.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2
    assert "a.png" in proc.stderr and "error:" in proc.stderr
    assert not (tmp_path / "t.txt").exists()
