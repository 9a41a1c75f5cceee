"""Thresholds chosen from the maps alone (c2am.thresholds): Otsu variants by hand, specs, records."""

import numpy as np
import pytest

from c2am.artifacts import save_map
from c2am.io import InputError
from c2am.thresholds import (
    check_record,
    image_threshold,
    otsu3_from_histogram,
    otsu_from_histogram,
    parse_threshold,
    resolve_threshold,
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
