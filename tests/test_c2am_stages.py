"""C2AM stages on a tiny generated dataset: resume after a mid-epoch kill, maps, cues, report, boxes."""

import csv
import json
import logging
import re

import numpy as np
import pytest
import torch

from c2am.data.synthetic import generate_voc_tree
from c2am.data.voc import build_manifest
from c2am import losses
from c2am.io import InputError, load_checkpoint, load_label_png, save_checkpoint
from c2am.models.c2am_net import C2AM, decide_inverted, load_c2am
from c2am.polarity import measure_polarity
from c2am.stages import c2am_boxes, cue_threshold, eval_c2am, extract_cues, infer_c2am, train_c2am

torch.set_num_threads(1)

CLASSES = ["background", "star", "ring"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """8 train images of 32 px and their manifest."""
    root = tmp_path_factory.mktemp("c2am_data")
    generate_voc_tree(root / "VOC", CLASSES, n_train=8, n_val=2, image_size=32, seed=0)
    manifest = build_manifest(root / "VOC", CLASSES, {"train": "train_aug", "pseudo_eval": "train", "val": "val"})
    path = root / "manifest.json"
    manifest.save(path)
    return path


def train_argv(manifest, out, **overrides):
    opts = {"epochs": 2, "batch-size": 4, "resize": 32, "crop": 32, "lr": 0.01, "seed": 3}
    opts.update(overrides)
    argv = ["--manifest", str(manifest), "--out", str(out), "--log-csv", str(out) + ".csv",
            "--backbone", "lite0", "--weights", "none", "--threads", "1", "--device", "cpu"]
    for k, v in opts.items():
        argv += [f"--{k}", str(v)]
    return argv


class CountingLoss:
    """Wraps c2am_loss; counts calls and raises on call ``fail_at`` (a simulated kill mid-epoch)."""

    def __init__(self, fail_at=None):
        self.calls = 0
        self.fail_at = fail_at
        self.real = losses.c2am_loss

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated kill")
        return self.real(*args, **kwargs)


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """An uninterrupted 2-epoch run (the reference for the resume test and the input of later stages)."""
    out = tmp_path_factory.mktemp("c2am_ref") / "model.pt"
    train_c2am.main(train_argv(tiny, out))
    return out


def test_checkpoint_meta(trained):
    meta = load_checkpoint(trained, kind="c2am")["meta"]
    assert type(meta["inverted"]) is bool
    assert meta["backbone"] == "lite0" and meta["epochs"] == 2 and meta["kind"] == "c2am"
    assert len(meta["border_means"]) == 2 and 0 <= meta["border_mean_epoch1"] <= 1
    assert meta["inverted"] == (meta["border_mean_epoch1"] > 0.5)


def test_resume_after_kill_mid_epoch_matches_uninterrupted_run(tiny, trained, tmp_path, monkeypatch, caplog):
    out = tmp_path / "model.pt"
    state = tmp_path / "model.pt.resume"
    # 8 images / batch 4 = 2 steps per epoch; call 4 is the second step of epoch 2.
    killer = CountingLoss(fail_at=4)
    monkeypatch.setattr(losses, "c2am_loss", killer)
    with pytest.raises(KeyboardInterrupt):
        train_c2am.main(train_argv(tiny, out))
    assert not out.exists() and state.is_file()
    assert load_checkpoint(state, kind="c2am")["epoch"] == 1

    counter = CountingLoss()
    monkeypatch.setattr(losses, "c2am_loss", counter)
    with caplog.at_level(logging.INFO, logger="c2am"):
        train_c2am.main(train_argv(tiny, out))
    assert counter.calls == 2  # only epoch 2 ran again
    assert "resuming" in caplog.text and "after epoch 1" in caplog.text
    assert out.is_file() and not state.exists()
    ref, got = load_checkpoint(trained, kind="c2am"), load_checkpoint(out, kind="c2am")
    for key, value in ref["state_dict"].items():
        assert torch.equal(value, got["state_dict"][key]), key
    assert got["meta"]["inverted"] == ref["meta"]["inverted"]
    with open(str(out) + ".csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]


def test_resume_state_with_other_hyperparameters_is_ignored(tiny, tmp_path, monkeypatch, caplog):
    out = tmp_path / "model.pt"
    monkeypatch.setattr(losses, "c2am_loss", CountingLoss(fail_at=3))
    with pytest.raises(KeyboardInterrupt):
        train_c2am.main(train_argv(tiny, out))
    counter = CountingLoss()
    monkeypatch.setattr(losses, "c2am_loss", counter)
    with caplog.at_level(logging.INFO, logger="c2am"):
        train_c2am.main(train_argv(tiny, out, lr=0.02))
    assert "ignoring resume state" in caplog.text and "lr" in caplog.text
    assert counter.calls == 4  # both epochs from scratch


def test_polarity_override_and_measurement(tiny, tmp_path):
    out = tmp_path / "model.pt"
    train_c2am.main(train_argv(tiny, out, epochs=1, polarity="inverted"))
    assert load_checkpoint(out, kind="c2am")["meta"]["inverted"] is True

    class BorderBright(C2AM):
        def activation(self, z):
            p = torch.ones(z.shape[0], 1, 8, 8)
            p[:, :, 2:6, 2:6] = 0.0
            return p

    class NullTrunk(torch.nn.Module):
        channels = (1, 2)

        def forward(self, x):
            return x[:, :1], x[:, 1:]

    model = BorderBright(NullTrunk())
    value = measure_polarity(model, torch.rand(3, 3, 32, 32), 0.1, "cpu")
    assert value > 0.9
    assert decide_inverted(value, "auto") is True


def test_maps_cues_report_and_boxes(tiny, trained, tmp_path):
    maps, cues = tmp_path / "maps", tmp_path / "cues"
    infer_c2am.main(["--manifest", str(tiny), "--checkpoint", str(trained), "--out-dir", str(maps),
                     "--scales", "0.5", "1.0", "--threads", "1", "--device", "cpu"])
    files = sorted(maps.glob("*.npy"))
    assert len(files) == 8
    for f in files:
        a = np.load(f, allow_pickle=False)
        assert a.dtype == np.float16 and a.shape == (32, 32)
        assert a.min() >= 0 and a.max() == 1.0

    record = cue_threshold.main(["--manifest", str(tiny), "--maps-dir", str(maps), "--out", str(tmp_path / "t.json"),
                                 "--threshold", "otsu"])
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["method"] == "otsu" and 0 < saved["threshold"] < 1 and saved == record
    extract_cues.main(["--manifest", str(tiny), "--maps-dir", str(maps), "--out-dir", str(cues),
                       "--threshold-json", str(tmp_path / "t.json"), "--threads", "1"])
    for f in sorted(cues.glob("*.png")):
        assert set(np.unique(load_label_png(f)).tolist()) <= {0, 255}
    assert len(list(cues.glob("*.png"))) == 8

    report = tmp_path / "c2am_maps.txt"
    eval_c2am.main(["--manifest", str(tiny), "--maps-dir", str(maps), "--cues-dir", str(cues),
                    "--threshold-json", str(tmp_path / "t.json"), "--out-txt", str(report), "--no-oracle-cues",
                    "--threads", "1"])
    lines = report.read_text().splitlines()
    for line, key in zip(lines[:3], ("map_fg_iou", "cue_fg_iou", "map_auc")):
        assert re.fullmatch(rf"{key}: [01]\.\d{{4}}", line), line
    assert any(line.startswith("oracle") for line in lines[3:])

    boxes_json, boxes_txt = tmp_path / "boxes.json", tmp_path / "boxes.txt"
    c2am_boxes.main(["--manifest", str(tiny), "--maps-dir", str(maps), "--threshold", "0.5",
                     "--out", str(boxes_json), "--out-txt", str(boxes_txt), "--threads", "1"])
    assert re.fullmatch(r"gt_known_loc: [01]\.\d{4}", boxes_txt.read_text().splitlines()[0])
    boxes = json.loads(boxes_json.read_text())
    assert len(boxes) == 8
    for box in boxes.values():
        x1, y1, x2, y2 = box
        assert 0 <= x1 <= x2 < 32 and 0 <= y1 <= y2 < 32


def test_infer_rejects_checkpoint_without_polarity(tmp_path):
    path = tmp_path / "bad.pt"
    save_checkpoint(path, {}, {"kind": "c2am", "backbone": "lite0"})
    with pytest.raises(InputError, match="inverted"):
        load_c2am(path, "cpu")


def test_checkpoint_of_another_kind_is_refused_naming_both(tmp_path):
    path = tmp_path / "classifier.pt"
    save_checkpoint(path, {}, {"kind": "classifier", "backbone": "lite0", "inverted": False})
    with pytest.raises(InputError, match=r"classifier\.pt: expected a c2am checkpoint, found kind 'classifier'"):
        load_c2am(path, "cpu")
