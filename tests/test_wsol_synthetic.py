"""The embedded WSOL world's hard cases (c2am/data/wsol_synthetic.py): clutter behind the object, small and
low-contrast bodies, a distractor over part of the object; with every share at 0, the first world image for image."""

import hashlib

import numpy as np
import pytest

from c2am.data.wsol_synthetic import WsolWorld, draw_wsol_sample, render_wsol_sample
from c2am.io import InputError

# sha256 of images (0, 64 px), (7, 96 px), (31, 128 px) of seed 3 and their boxes, as the generator drew them
# before it had any share (the saturated world every earlier WSOL figure comes from)
FIRST_WORLD = "3edd31c6aadd91a83976963c40376b7cdc1510ad5ec9197f64dddb690b59f8e0"
HARD = WsolWorld(distractor_prob=1.0, small_object_prob=0.0, low_contrast_prob=0.0, occlusion_prob=1.0)


def test_all_shares_zero_is_the_first_world_image_for_image():
    h = hashlib.sha256()
    for k, size in ((0, 64), (7, 96), (31, 128)):
        image, box = render_wsol_sample(3, k, k % 4 + 1, size, WsolWorld())
        h.update(image.tobytes())
        h.update(str(box).encode())
    assert h.hexdigest() == FIRST_WORLD


@pytest.mark.parametrize("size", [64, 112])
def test_distractors_are_background_in_the_boxes_sense(size):
    """The GT box is the box of the object's visible pixels: no distractor pixel is the object's, and the box
    never is a distractor's alone (a distractor outside the object's box adds nothing to it)."""
    occluded = cluttered = 0
    for number in range(30):
        s = draw_wsol_sample(1, number, number % 3 + 1, size, HARD)
        ys, xs = np.nonzero(s.visible)
        assert s.box == [xs.min(), ys.min(), xs.max(), ys.max()]
        assert not (s.distractors & s.visible).any()
        x1, y1, x2, y2 = s.box
        assert s.visible[y1:y2 + 1, x1:x2 + 1].any()  # the box holds the object, whatever clutter is near
        clean = draw_wsol_sample(1, number, number % 3 + 1, size, WsolWorld(distractor_prob=1.0))
        occluded += int(s.visible.sum() < clean.visible.sum())
        cluttered += int(s.distractors.any())
    assert cluttered >= 27 and occluded >= 20  # shares 1: a body fails to fit only now and then


def test_an_occluder_hides_part_of_the_object_never_its_badge():
    world = WsolWorld(occlusion_prob=1.0)
    for number in range(20):
        hidden = draw_wsol_sample(5, number, 2, 96, world)
        whole = draw_wsol_sample(5, number, 2, 96, WsolWorld(occlusion_prob=1e-12))  # same draws up to the occluder
        if hidden.visible.sum() == whole.visible.sum():
            continue  # no occluder fitted this image
        share = 1 - hidden.visible.sum() / whole.visible.sum()
        assert 0.1 - 0.02 <= share <= 0.5 + 0.02, share
        assert (hidden.distractors & whole.visible).any()  # painted over the object


def test_shares_change_the_world_as_configured():
    small = WsolWorld(small_object_prob=1.0, small_object_area=(0.02, 0.04))
    areas = [draw_wsol_sample(0, n, 1, 128, small).visible.mean() for n in range(20)]
    assert max(areas) <= 0.045
    plain = [draw_wsol_sample(0, n, 1, 128).visible.mean() for n in range(20)]
    assert min(plain) >= 0.05


def test_bad_shares_name_the_key():
    with pytest.raises(InputError, match="occlusion_prob"):
        WsolWorld(occlusion_prob=1.5)
    with pytest.raises(InputError, match="distractor_prob"):
        WsolWorld(distractor_prob=-0.1)
