"""Refinement rule (c2am.refine), the label-CRF stage helpers and the refine / CRF / eval_pseudo stages on a tiny tree."""

import json

import numpy as np
import pytest

from c2am.data.voc import Manifest
from c2am.io import InputError, load_label_png, save_gray_png, save_jpeg, save_label_png, save_npy, save_npz
from c2am.refine import (
    background_from_cue,
    background_from_saliency,
    colour_regions,
    refine_labels,
    refine_sweep,
    robust_labels,
)
from c2am.stages import crf_labels, eval_pseudo, refine_cams
from c2am.stages import robust_labels as robust
from c2am.crf import crf_present_labels, mark_disagreement

# Two classes (indices 2 and 5) over four pixels:
#   p0: cue background, CAMs 0.9 / 0.2       -> stays background although a CAM is high
#   p1: cue foreground, CAMs 0.3 / 0.6       -> strongest class, 5
#   p2: cue foreground, CAMs 0.0 / 0.0       -> tie with B = 0 -> background
#   p3: cue foreground, CAMs 0.7 / 0.1       -> class 2
CAMS = np.array([[[0.9, 0.3, 0.0, 0.7]], [[0.2, 0.6, 0.0, 0.1]]], np.float32)  # K=2 x H=1 x W=4
CLASSES = [2, 5]
CUE = np.array([[0, 255, 255, 255]], np.uint8)


def test_refinement_rule_hand_case():
    labels = refine_labels(CAMS, CLASSES, background_from_cue(CUE))
    np.testing.assert_array_equal(labels, [[0, 5, 0, 2]])
    assert labels.dtype == np.uint8


def test_cue_background_pixel_stays_background_even_at_cam_peak():
    # A normalised CAM is at most 1, so B = 1 on cue background always wins (tie -> background).
    cams = np.ones((1, 2, 2), np.float32)
    cue = np.array([[0, 255], [0, 255]], np.uint8)
    np.testing.assert_array_equal(refine_labels(cams, [3], background_from_cue(cue)), [[0, 3], [0, 3]])


def test_tau_baseline_ties_go_to_background():
    # Constant B = 0.6: 0.6 (tie) and below stay background, above takes the class.
    cams = np.array([[[0.6, 0.61, 0.59]]], np.float32)
    np.testing.assert_array_equal(refine_labels(cams, [1], 0.6), [[0, 1, 0]])


def test_equal_cams_pick_first_listed_class():
    cams = np.array([[[0.5]], [[0.5]]], np.float32)
    assert refine_labels(cams, [4, 1], 0.1)[0, 0] == 4


def test_no_classes_gives_all_background():
    out = refine_labels(np.zeros((0, 2, 3), np.float32), [], background_from_cue(np.full((2, 3), 255, np.uint8)))
    np.testing.assert_array_equal(out, np.zeros((2, 3)))


def test_soft_cue_background_score():
    np.testing.assert_allclose(background_from_cue(np.array([[0, 51, 255]], np.uint8)), [[1.0, 0.8, 0.0]])


def test_saliency_background_score():
    s = np.array([[0.0, 0.25, 1.0]], np.float32)
    b = background_from_saliency(s)
    assert b.dtype == np.float32
    np.testing.assert_array_equal(b, [[1.0, 0.75, 0.0]])
    # B = 1 - S: a salient pixel (S 0.75) goes to its CAM (0.5 > 0.25), a non-salient one (S 0.25) stays background
    cams = np.full((1, 1, 2), 0.5, np.float32)
    labels = refine_labels(cams, [4], background_from_saliency(np.array([[0.75, 0.25]], np.float32)))
    np.testing.assert_array_equal(labels, [[4, 0]])
    with pytest.raises(ValueError, match="H x W"):
        background_from_saliency(np.zeros((1, 2, 3)))


def test_refine_rejects_mismatched_classes():
    with pytest.raises(ValueError, match="2 CAMs but 1"):
        refine_labels(CAMS, [2], 0.5)
    with pytest.raises(ValueError, match="foreground"):
        refine_labels(CAMS, [0, 1], 0.5)


def test_sweep_equals_per_tau_refinement():
    rng = np.random.default_rng(0)
    cams = rng.random((3, 5, 6)).astype(np.float32)
    taus = [0.1, 0.5, 0.9]
    sweep = refine_sweep(cams, [1, 4, 6], taus)
    for t, labels in zip(taus, sweep):
        np.testing.assert_array_equal(labels, refine_labels(cams, [1, 4, 6], t))


# ----------------------------------------------------------------------------- label CRF


def two_region_image(h=24, w=24):
    """Left half dark, right half bright: the answer of a label CRF is the two halves."""
    image = np.zeros((h, w, 3), np.uint8)
    image[:, w // 2 :] = 220
    truth = np.zeros((h, w), np.uint8)
    truth[:, w // 2 :] = 3
    return image, truth


def test_crf_present_labels_fixes_noise_and_keeps_class_indices():
    image, truth = two_region_image()
    noisy = truth.copy()
    noisy[5, 3] = 3  # a wrong speck of class 3 in the background half
    noisy[10, 20] = 0  # a hole in the object
    noisy[0:2, 14:16] = 255  # unknown pixels get filled
    out = crf_present_labels(image, noisy, gt_prob=0.7, iters=10)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, truth)  # index 3 comes back as 3, not as the compact index 1


def test_crf_present_labels_single_label_is_identity():
    image, _ = two_region_image()
    labels = np.zeros(image.shape[:2], np.uint8)
    labels[0, 0] = 255
    np.testing.assert_array_equal(crf_present_labels(image, labels), np.zeros_like(labels))


def test_mark_disagreement():
    a = np.array([[1, 2, 0]], np.uint8)
    b = np.array([[1, 0, 0]], np.uint8)
    np.testing.assert_array_equal(mark_disagreement(a, b), [[1, 255, 0]])


# ----------------------------------------------------------------------------- stages on a tiny tree

STAGE_CLASSES = ["background", "a", "b"]


@pytest.fixture
def tiny(tmp_path):
    """Two 16x16 images: object of class 1 (left) / class 2 (right) on the bright half; CAMs peak on part of it."""
    root = tmp_path / "voc"
    ids = ["i0", "i1"]
    labels = {"i0": [1], "i1": [2]}
    for n, image_id in enumerate(ids):
        image, truth = two_region_image(16, 16)
        gt = np.where(truth > 0, n + 1, 0).astype(np.uint8)
        save_jpeg(root / "JPEGImages" / f"{image_id}.jpg", image, quality=100)
        save_label_png(root / "SegmentationClassAug" / f"{image_id}.png", gt)
        cam = np.zeros((1, 16, 16), np.float32)
        cam[0, :, 8:12] = 1.0  # a "discriminative part": half of the object
        cam[0, :, 12:] = 0.25  # exact in float16
        cam[0, :, 6:8] = 0.2  # bleeds into the background
        save_npz(tmp_path / "cams" / f"{image_id}.npz", classes=np.array(labels[image_id]), cams=cam.astype(np.float16))
        save_gray_png(tmp_path / "cues" / f"{image_id}.png", np.where(gt > 0, 255, 0))  # a perfect cue
    Manifest(root=root, classes=STAGE_CLASSES, splits={"train": ids, "pseudo_eval": ids, "val": ids},
             labels=labels).save(tmp_path / "manifest.json")
    return tmp_path


def test_refine_stage_cue_and_tau_backgrounds(tiny):
    base = ["--manifest", str(tiny / "manifest.json"), "--cams-dir", str(tiny / "cams")]
    refine_cams.main(base + ["--cues-dir", str(tiny / "cues"), "--out-dir", str(tiny / "rc")])
    refine_cams.main(base + ["--fixed-tau", "0.5", "--out-dir", str(tiny / "rt")])
    cue_lab = load_label_png(tiny / "rc" / "i1.png")
    tau_lab = load_label_png(tiny / "rt" / "i1.png")
    np.testing.assert_array_equal(cue_lab[:, 8:], 2)  # the cue recovers the whole object
    np.testing.assert_array_equal(cue_lab[:, :8], 0)
    np.testing.assert_array_equal(tau_lab[:, 8:12], 2)  # tau 0.5 keeps only the CAM peak
    np.testing.assert_array_equal(tau_lab[:, 12:], 0)


def test_crf_stage_ignore_disagreement(tiny):
    labels = tiny / "labels"
    for image_id, cls in (("i0", 1), ("i1", 2)):
        lab = np.zeros((16, 16), np.uint8)
        lab[:, 8:] = cls
        lab[3, 3] = cls  # a speck the CRF removes
        save_label_png(labels / f"{image_id}.png", lab)
    base = ["--manifest", str(tiny / "manifest.json"), "--labels-dir", str(labels), "--gt-prob", "0.7"]
    crf_labels.main(base + ["--out-dir", str(tiny / "crf")])
    crf_labels.main(base + ["--out-dir", str(tiny / "crf_ign"), "--ignore-disagreement"])
    plain = load_label_png(tiny / "crf" / "i0.png")
    ign = load_label_png(tiny / "crf_ign" / "i0.png")
    assert plain[3, 3] == 0 and ign[3, 3] == 255
    np.testing.assert_array_equal(np.delete(ign.ravel(), 3 * 16 + 3), np.delete(plain.ravel(), 3 * 16 + 3))


def test_eval_pseudo_lines_order_and_json(tiny):
    save_label_png(tiny / "perfect" / "i0.png", load_label_png(tiny / "voc" / "SegmentationClassAug" / "i0.png"))
    save_label_png(tiny / "perfect" / "i1.png", load_label_png(tiny / "voc" / "SegmentationClassAug" / "i1.png"))
    for image_id in ("i0", "i1"):
        save_label_png(tiny / "empty" / f"{image_id}.png", np.zeros((16, 16), np.uint8))
    out_txt, out_json = tiny / "res" / "p.txt", tiny / "res" / "p.json"
    eval_pseudo.main([
        "--manifest", str(tiny / "manifest.json"), "--cams-dir", str(tiny / "cams"),
        "--tau-sweep", "0.1", "0.9", "0.1", "--fixed-tau", "0.5",
        "--variant", f"zz_perfect={tiny / 'perfect'}", "--variant", f"aa_empty={tiny / 'empty'}",
        "--out-txt", str(out_txt), "--out-json", str(out_json),
    ])
    # Hand numbers. Per image: GT object = columns 8..15 (128 px), background 128 px.
    # tau in [0.25, 1.0): object columns 8..11 only -> class IoU 64/128 = 0.5, background 128/192;
    #   mIoU = (2/3 + 0.5 + 0.5) / 3 = 55.56.  tau 0.2 adds columns 12..15 -> perfect, 100.00 (best, first tie).
    #   tau 0.1 also adds columns 6..7 -> class IoU 128/160, background 96/128: (0.75 + 0.8 + 0.8)/3 = 78.33.
    # All-background labels: background IoU 256/512, classes 0 -> 16.67.
    lines = out_txt.read_text().splitlines()
    assert lines == [
        "cam_best_tau: 100.00 (tau=0.20)",
        "cam_fixed_tau: 55.56",
        "zz_perfect: 100.00",
        "aa_empty: 16.67",
    ]
    data = json.loads(out_json.read_text())
    assert list(data["variants"]) == ["cam_best_tau", "cam_fixed_tau", "zz_perfect", "aa_empty"]
    assert data["variants"]["cam_best_tau"]["oracle_tuned"] is True
    assert data["tau_sweep"]["tau"][:3] == [0.1, 0.2, 0.3]
    assert data["tau_sweep"]["miou"][:3] == pytest.approx([100 * 2.35 / 3, 100.0, 100 * (2 / 3 + 1) / 3])
    assert data["variants"]["aa_empty"]["iou"]["a"] == 0.0


def test_refine_stage_rejects_cue_of_other_size(tiny):
    save_gray_png(tiny / "cues" / "i1.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match="i1.png: cue size 8x8 differs"):
        refine_cams.main([
            "--manifest", str(tiny / "manifest.json"), "--cams-dir", str(tiny / "cams"),
            "--cues-dir", str(tiny / "cues"), "--out-dir", str(tiny / "rc"),
        ])


# ----------------------------------------------------------------------------- the distractor-robust rule

# One class (index 4) on a 2 x 6 strip. Pseudo labels (after the official rule): 4 4 0 4 4 255. Colour regions:
# columns 0-1 (region 7), 2-3 (region 3), 4-5 (region 9). Strongest CAM per column: 0.9 0.4 | 0.05 0.5 | 0.3 0.8.
ROBUST_LABELS = np.tile(np.array([4, 4, 0, 4, 4, 255], np.uint8), (2, 1))
ROBUST_CAMS = np.tile(np.array([0.9, 0.4, 0.05, 0.5, 0.3, 0.8], np.float32), (2, 1))[None]
ROBUST_REGIONS = np.tile(np.array([7, 7, 3, 3, 9, 9]), (2, 1))


def test_robust_rule_hand_case():
    # Mean CAM over each region's labelled pixels: region 7 (0.9 + 0.4) / 2 = 0.65; region 3 only column 3 (column 2
    # is background): 0.5; region 9 only column 4 (column 5 is uncertain): 0.3 -- the 0.8 there does not count.
    out = robust_labels(ROBUST_LABELS, ROBUST_CAMS, [4], ROBUST_REGIONS, region_floor=0.6)
    np.testing.assert_array_equal(out, np.tile([4, 4, 0, 255, 255, 255], (2, 1)))
    out = robust_labels(ROBUST_LABELS, ROBUST_CAMS, [4], ROBUST_REGIONS, region_floor=0.5)  # 0.5 reaches the floor
    np.testing.assert_array_equal(out[1], [4, 4, 0, 4, 255, 255])
    assert out.dtype == np.uint8


def test_robust_rule_with_zero_floor_changes_nothing():
    rng = np.random.default_rng(0)
    cams = rng.random((2, 9, 5)).astype(np.float32)
    labels = refine_labels(cams, [1, 3], rng.random((9, 5)).astype(np.float32))
    regions = rng.integers(0, 4, (9, 5))
    np.testing.assert_array_equal(robust_labels(labels, cams, [1, 3], regions, 0.0), labels)


def test_robust_rule_averages_the_strongest_cam_over_two_classes():
    # A region labelled 1 on the left pixel (CAM_1 0.9) and 2 on the right (CAM_2 0.2, CAM_1 0.6): the strongest
    # CAMs are 0.9 and 0.6, mean 0.75 -> kept at 0.7, uncertain at 0.8.
    labels = np.array([[1, 2]], np.uint8)
    cams = np.array([[[0.9, 0.6]], [[0.1, 0.2]]], np.float32)
    regions = np.zeros((1, 2), int)
    np.testing.assert_array_equal(robust_labels(labels, cams, [1, 2], regions, 0.7), [[1, 2]])
    np.testing.assert_array_equal(robust_labels(labels, cams, [1, 2], regions, 0.8), [[255, 255]])


def test_robust_rule_checks_its_inputs():
    with pytest.raises(ValueError, match="region_floor"):
        robust_labels(ROBUST_LABELS, ROBUST_CAMS, [4], ROBUST_REGIONS, region_floor=1.5)
    with pytest.raises(ValueError, match="shapes differ"):
        robust_labels(ROBUST_LABELS, ROBUST_CAMS, [4], ROBUST_REGIONS[:, :5], region_floor=0.5)


@pytest.mark.parametrize("h, w", [(24, 40), (48, 20)])
def test_colour_regions_split_two_touching_bodies(h, w):
    # Two flat bodies of different colours touching each other, on a grey background: no region spans both.
    image = np.full((h, w, 3), 128, np.uint8)
    image[h // 4 : 3 * h // 4, : w // 2] = (200, 40, 40)
    image[h // 4 : 3 * h // 4, w // 2 :] = (40, 40, 200)
    regions = colour_regions(image, scale=100, sigma=0.8, min_size=10)
    assert regions.shape == (h, w)
    left, right = regions[h // 2, w // 4], regions[h // 2, 3 * w // 4]
    assert left != right and regions[0, 0] not in (left, right)


def test_refine_stage_saliency_background(tiny):
    # Soft B = 1 - S: S = 1 on the object (columns 8..15), 0.9 on columns 4..7 (B = 0.1), 0 elsewhere (B = 1).
    # The tiny CAM is 1.0 on 8..11, 0.25 on 12..15, 0.2 on 6..7 (its bleed) and 0 elsewhere.
    for image_id in ("i0", "i1"):
        sal = np.zeros((16, 16), np.float32)
        sal[:, 8:] = 1.0
        sal[:, 4:8] = 0.9
        save_npy(tiny / "sal" / f"{image_id}.npy", sal.astype(np.float16))
    refine_cams.main(["--manifest", str(tiny / "manifest.json"), "--cams-dir", str(tiny / "cams"),
                      "--saliency-dir", str(tiny / "sal"), "--out-dir", str(tiny / "official")])
    np.testing.assert_array_equal(load_label_png(tiny / "official" / "i1.png")[0], [0] * 6 + [2] * 10)


def test_robust_stage(tiny):
    # Labels: class 2 on columns 6..15 of a dark (0..7) | bright (8..15) image. The dark region's labelled pixels
    # (6..7) average a CAM of 0.2 < 0.5: uncertain; the bright one averages (4 x 1.0 + 4 x 0.25) / 8 = 0.625: kept.
    for image_id in ("i0", "i1"):
        lab = np.zeros((16, 16), np.uint8)
        lab[:, 6:] = 1 if image_id == "i0" else 2
        save_label_png(tiny / "labels" / f"{image_id}.png", lab)
    robust.main(["--manifest", str(tiny / "manifest.json"), "--cams-dir", str(tiny / "cams"),
                 "--labels-dir", str(tiny / "labels"), "--region-floor", "0.5", "--segment-scale", "100",
                 "--segment-sigma", "0.5", "--segment-min-size", "4", "--out-dir", str(tiny / "robust")])
    np.testing.assert_array_equal(load_label_png(tiny / "robust" / "i1.png")[0], [0] * 6 + [255] * 2 + [2] * 8)


def test_robust_stage_rejects_labels_of_other_size(tiny):
    for image_id in ("i0", "i1"):
        save_label_png(tiny / "labels" / f"{image_id}.png", np.zeros((16, 12), np.uint8))
    with pytest.raises(InputError, match="i0.png: pseudo label size 12x16 differs"):
        robust.main(["--manifest", str(tiny / "manifest.json"), "--cams-dir", str(tiny / "cams"),
                     "--labels-dir", str(tiny / "labels"), "--out-dir", str(tiny / "robust")])
    assert not (tiny / "robust" / "i0.png").exists()


def test_eval_pseudo_distractor_share(tiny):
    # Distractor mask: columns 0..3 of i0 (64 px) and of i1 (64 px). A variant labels class 1 on columns 0..1 of i0
    # (32 px) and uncertain 255 on columns 2..3 (not a class): 32 / 128 = 25.0 %.
    for image_id in ("i0", "i1"):
        mask = np.zeros((16, 16), np.uint8)
        mask[:, :4] = 255
        save_gray_png(tiny / "distractors" / f"{image_id}.png", mask)
        lab = np.zeros((16, 16), np.uint8)
        if image_id == "i0":
            lab[:, :2], lab[:, 2:4] = 1, 255
        save_label_png(tiny / "var" / f"{image_id}.png", lab)
    out_txt, out_json = tiny / "res" / "p.txt", tiny / "res" / "p.json"
    eval_pseudo.main([
        "--manifest", str(tiny / "manifest.json"), "--cams-dir", str(tiny / "cams"),
        "--tau-sweep", "0.1", "0.9", "0.1", "--fixed-tau", "0.5", "--variant", f"v={tiny / 'var'}",
        "--distractor-dir", str(tiny / "distractors"), "--out-txt", str(out_txt), "--out-json", str(out_json),
    ])
    assert out_txt.read_text().splitlines()[-1].endswith("(distractors labelled 25.0 %)")
    v = json.loads(out_json.read_text())["variants"]["v"]
    assert v["distractors_labelled"] == pytest.approx(25.0) and v["distractor_pixels"] == 128


def test_eval_pseudo_missing_distractor_folder(tiny):
    with pytest.raises(InputError, match="nowhere: distractor mask folder not found"):
        eval_pseudo.main([
            "--manifest", str(tiny / "manifest.json"), "--cams-dir", str(tiny / "cams"),
            "--distractor-dir", str(tiny / "nowhere"), "--out-txt", str(tiny / "p.txt"),
            "--out-json", str(tiny / "p.json"),
        ])
    assert not (tiny / "p.txt").exists()
