"""map_items: order, worker exceptions, sequential fallback."""

import math

import pytest

from c2am.io import InputError, load_image
from c2am.parallel import map_items


def test_sequential_and_pool_give_the_same_ordered_results():
    items = list(range(25))
    expected = [math.factorial(i) for i in items]
    assert map_items(math.factorial, items, threads=1) == expected
    assert map_items(math.factorial, items, threads=2, chunksize=3) == expected


def test_worker_input_error_propagates_with_its_message(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(InputError, match="nope.jpg: image not found"):
        map_items(load_image, [missing, missing], threads=2)


def test_empty_items():
    assert map_items(math.factorial, [], threads=4) == []
