"""Thresholds and the boxes they cut (c2am.thresholds): Otsu variants by hand, specs, records, the threshold
grid, the box of a map (raw and normalised) and the box threshold chosen on the held-out split."""

import numpy as np
import pytest

from c2am.artifacts import save_map
from c2am.io import InputError
from c2am.thresholds import (
    ORACLE_SWEEP,
    cam_curve_grid,
    check_box_record,
    check_record,
    image_threshold,
    map_box,
    otsu3_from_histogram,
    otsu_from_histogram,
    parse_threshold,
    resolve_box_threshold,
    resolve_threshold,
    threshold_grid,
)


def test_otsu_hand_cases():
    # 4 bins, centres .125 .375 .625 .875; between-class variance w0 * w1 * (mu0 - mu1)^2 by hand:
    # [3,1,0,4]: split after bin 0: 3/8*5/8*(.125-.775)^2 = .099; after bin 1 (and 2): .5*.5*(.1875-.875)^2 = .118
    assert otsu_from_histogram(np.array([3, 1, 0, 4])) == 0.5
    # [4,0,1,3]: after bin 0 (and 1): .5*.5*(.125-.8125)^2 = .118; after bin 2: 5/8*3/8*(.225-.875)^2 = .099
    assert otsu_from_histogram(np.array([4, 0, 1, 3])) == 0.25
    assert otsu_from_histogram(np.array([0, 7, 0, 0])) == 0.5  # one occupied bin: no split to find


def test_otsu3_hand_case():
    # Three clusters at bins 0, 2, 4 (5 bins) separate perfectly: class edges after bins 0..1 and 2..3;
    # the tie among perfect splits goes to the lowest edges, 1/5 and 3/5.
    assert otsu3_from_histogram(np.array([5, 0, 3, 0, 2])) == (0.2, 0.6)
    # Four bins [4, 4, 1, 3], centres .125 .375 .625 .875; sum_c S_c^2 / W_c by hand:
    # {0},{1},{2,3}: .5^2/4 + 1.5^2/4 + 3.25^2/4 = 3.2656;  {0},{1,2},{3}: .0625 + 2.125^2/5 + 2.625^2/3 = 3.2625;
    # {0,1},{2},{3}: 2^2/8 + .625^2 + 2.296875 = 3.1875  -> edges 1/4 and 2/4.
    assert otsu3_from_histogram(np.array([4, 4, 1, 3])) == (0.25, 0.5)


def test_parse_threshold_names_the_flag():
    assert parse_threshold("otsu3") == "otsu3" and parse_threshold("0.3") == 0.3
    with pytest.raises(InputError, match=r"--threshold 'otsu_image': use one of otsu, otsu3"):
        parse_threshold("otsu_image", "--threshold", methods=("otsu", "otsu3"))
    with pytest.raises(InputError, match=r"--threshold 1.5: must lie in \(0, 1\)"):
        parse_threshold("1.5")


def test_dataset_otsu_pools_maps_of_different_sizes(tmp_path):
    # Two maps (3x5 and 4x2) whose values sit in two clusters: 0.1 (12 pixels) and 0.9 (11 pixels).
    a = np.full((3, 5), 0.1, dtype=np.float32)
    a[0, :] = 0.9
    b = np.full((4, 2), 0.9, dtype=np.float32)
    b[3, :] = 0.1
    save_map(tmp_path / "a.npy", a)
    save_map(tmp_path / "b.npy", b)
    record = resolve_threshold("otsu", [tmp_path / "a.npy", tmp_path / "b.npy"])
    # 0.1 -> bin 25, 0.9 (float16 0.8999) -> bin 230; every split between gives the same variance: the lowest edge.
    assert record == {"method": "otsu", "threshold": 26 / 256, "bins": 256, "maps": 2}
    assert resolve_threshold(0.3, [tmp_path / "a.npy"]) == {"method": "fixed", "threshold": 0.3, "bins": None,
                                                            "maps": 1}


def test_records_are_checked_and_applied_per_image():
    assert image_threshold({"method": "fixed", "threshold": 0.3}, np.zeros((2, 3))) == 0.3
    per_image = {"method": "otsu_image", "threshold": None, "bins": 4}
    # one map, values in bins 0 and 3 only: the lowest edge of the (equal) splits is 1/4
    assert image_threshold(per_image, np.array([[0.1, 0.1], [0.9, 0.95]])) == 0.25
    with pytest.raises(InputError, match=r"t.json: unknown threshold method 'median'"):
        check_record({"method": "median", "threshold": 0.5}, "t.json")
    with pytest.raises(InputError, match="no numeric 'threshold'"):
        check_record({"method": "otsu", "threshold": None}, "t.json")


def test_threshold_grid_by_hand():
    assert threshold_grid(0.05, 0.25, 0.05) == [0.05, 0.1, 0.15, 0.2, 0.25]  # closed; 0.15, not 0.15000000000000002
    assert threshold_grid(0.0, 1.0, 0.25, closed=False) == [0.0, 0.25, 0.5, 0.75]
    assert threshold_grid(0.0, 1.0, 0.3, closed=False) == [0.0, 0.3, 0.6, 0.9]  # 1 is off the grid anyway
    assert threshold_grid(0.05, 0.75, 0.05)[-1] == 0.75 and len(threshold_grid(0.05, 0.75, 0.05)) == 15
    assert ORACLE_SWEEP == (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75,
                            0.8, 0.85, 0.9, 0.95)
    grid = cam_curve_grid(0.01)
    assert len(grid) == 100 and grid[:3] == [0.0, 0.01, 0.02] and grid[29] == 0.29 and grid[-1] == 0.99
    assert cam_curve_grid(0.25) == [0.0, 0.25, 0.5, 0.75]
    with pytest.raises(InputError, match=r"--cam-curve-interval: must lie in \(0, 1\)"):
        cam_curve_grid(1.0)
    with pytest.raises(ValueError):
        threshold_grid(0.5, 0.1, 0.1)


def test_map_box_raw_and_normalised():
    # Background 0.2, a 2 x 3 region A at 0.55 (columns 0..2, rows 1..2) and a single pixel B at 0.9 (column 5,
    # row 0). Raw, tau 0.5: A and B pass, A is larger -> A's box. Normalised, (s - 0.2) / 0.7: A -> 0.5, B -> 1;
    # at 8 bits uint8(255 * 0.5) = 127 is not above int(255 * 0.5) = 127, so only B passes -> B's box.
    fmap = np.full((4, 6), 0.2, np.float32)
    fmap[1:3, 0:3] = 0.55
    fmap[0, 5] = 0.9
    assert map_box(fmap, 0.5, normalise=False) == [0, 1, 2, 2]
    assert map_box(fmap, 0.5, normalise=True) == [5, 0, 5, 0]
    # tau 0.49: int(255 * 0.49) = 124 < 127, A is back
    assert map_box(fmap, 0.49, normalise=True) == [0, 1, 2, 2]
    assert map_box(fmap, 0.95, normalise=False) is None  # nothing above tau
    assert map_box(np.full((3, 3), 0.7, np.float32), 0.0, normalise=True) is None  # constant map -> zeros
    # the largest 8-connected region only: a diagonal chain of 3 beats a pair
    chain = np.zeros((4, 7), np.float32)
    chain[0, 0] = chain[1, 1] = chain[2, 2] = chain[0, 4] = chain[0, 5] = 1.0
    assert map_box(chain, 0.5, normalise=False) == map_box(chain, 0.5, normalise=True) == [0, 0, 2, 2]


def test_box_threshold_from_the_held_out_split(tmp_path):
    # two maps whose object is the 0.5 plateau: taus at or above 0.5 shrink the box to the 1.0 core
    paths = []
    for k in range(2):
        m = np.zeros((10, 10), np.float32)
        m[1:9, 1:9] = 0.5
        m[4:6, 4:6] = 1.0
        save_map(tmp_path / f"{k}.npy", m)
        paths.append(tmp_path / f"{k}.npy")
    record = resolve_box_threshold("val", paths, [[[1, 1, 8, 8]]] * 2, interval=0.25, split="val")
    # grid 0, 0.25, 0.5, 0.75: GT-known 1, 1, 0, 0 -> the middle of the tie (0, 0.25) is its lower middle, 0
    assert record["sweep"] == {"0": 1.0, "0.25": 1.0, "0.5": 0.0, "0.75": 0.0}
    assert record["threshold"] == 0.0 and record["method"] == "val" and record["gt_known_loc"] == 1.0
    fixed = resolve_box_threshold(0.3, [], None, 0.25, None)
    assert fixed == {"method": "fixed", "threshold": 0.3, "split": None, "images": 0}
    # otsu on the normalised maps: values 0 (36 px), 0.5 (60 px), 1 (4 px) per map, in bins 0, 128, 255 of 256
    # (centres .0020, .5020, .9980). Shares w0 w1 (mu0 - mu1)^2: {0} | {.5, 1}: .36 * .64 * (.0020 - .5330)^2
    # = .0650; {0, .5} | {1}: .96 * .04 * (.3145 - .9980)^2 = .0179. Every edge from bin 1 to 128 splits {0} off:
    # the lowest, 1/256
    otsu = resolve_box_threshold("otsu", paths, None, 0.25, "train")
    assert otsu == {"method": "otsu", "threshold": 1 / 256, "split": "train", "images": 2}


def test_box_records_are_checked():
    assert check_box_record({"method": "val", "threshold": 0.25}, "b.json") == 0.25
    with pytest.raises(InputError, match=r"b.json: unknown threshold method 'otsu_image'"):
        check_box_record({"method": "otsu_image", "threshold": None}, "b.json")
    with pytest.raises(InputError, match=r"no threshold in \[0, 1\)"):
        check_box_record({"method": "fixed", "threshold": 1.0}, "b.json")
