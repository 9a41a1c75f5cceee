"""The box regressor: soft-argmax edges, GIoU and the loss against hand-computed cases, its training data (crops
that keep the box, flips that mirror it), and its checkpoint kind."""

import numpy as np
import pytest
import torch

from c2am.data.datasets import BoxDataset, box_crop_window, box_to_unit, unit_to_box
from c2am.io import InputError, save_checkpoint
from c2am.models.localizer import (
    HEADS,
    Localizer,
    box_loss,
    build_localizer,
    edges_from_logits,
    edges_from_maps,
    giou,
    load_localizer,
    predict_unit_box,
    soft_argmax_1d,
)
from c2am.models.backbone import build_trunk


def test_soft_argmax_and_edge_order():
    peaked = torch.full((1, 5), -50.0)
    peaked[0, 3] = 50.0
    assert soft_argmax_1d(peaked).item() == pytest.approx(3 / 4)  # cell k at k / (n - 1)
    assert soft_argmax_1d(torch.zeros(1, 5)).item() == pytest.approx(0.5)  # uniform: the middle
    assert soft_argmax_1d(torch.zeros(1, 1)).item() == 0.5
    maps = torch.full((1, 4, 3, 5), -50.0)
    maps[0, 0, 1, 4] = 50.0  # "x1" at column 4 ...
    maps[0, 2, 0, 1] = 50.0  # ... "x2" at column 1: swapped into order
    maps[0, 1, 0, 0] = 50.0  # y1 at row 0
    maps[0, 3, 2, 2] = 50.0  # y2 at row 2
    assert edges_from_maps(maps)[0].tolist() == pytest.approx([1 / 4, 0.0, 1.0, 1.0])


def test_giou_and_loss_by_hand():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0], [1.0, 0.0, 3.0, 1.0]])
    # identical: 1; disjoint unit boxes 1 apart: IoU 0, hull 3, union 2 -> -1/3; overlap 1 of union 3, hull 3 -> 1/3
    assert giou(a, b).tolist() == pytest.approx([1.0, -1 / 3, 1 / 3], abs=1e-6)
    assert box_loss(a, a, 1.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    pred, target = torch.tensor([[0.1, 0.1, 0.5, 0.5]]), torch.tensor([[0.2, 0.1, 0.5, 0.5]])
    # smooth-L1 (beta 0.05) of a 0.1 miss: 0.1 - 0.025; GIoU = IoU = 0.3*0.4 / (0.4*0.4) = 0.75
    assert box_loss(pred, target, 1.0, 0.0).item() == pytest.approx(0.075, abs=1e-6)
    assert box_loss(pred, target, 0.0, 1.0).item() == pytest.approx(0.25, abs=1e-5)


class _Manifest:
    """Just enough of a manifest for BoxDataset: one 40 x 60 image."""

    def __init__(self):
        self.image = np.zeros((40, 60, 3), np.uint8)
        self.image[10:20, 30:50] = 255  # the object: rows 10..19, columns 30..49

    def load_image(self, image_id):
        return self.image


def test_unit_boxes_round_trip_and_cover_the_pixels():
    # columns 3..13 of a 24-wide image: edges 3 and 14
    assert box_to_unit([3, 4, 13, 9], (20, 24)).tolist() == pytest.approx([3 / 24, 4 / 20, 14 / 24, 10 / 20])
    for box in ([3, 4, 13, 9], [0, 0, 23, 19], [5, 6, 5, 6]):
        assert unit_to_box(box_to_unit(box, (20, 24)), (20, 24)) == box
    assert unit_to_box([-0.2, 0.5, 1.3, 0.5], (20, 24)) == [0, 10, 23, 10]  # clipped, never empty


def test_crop_window_keeps_the_whole_box():
    torch.manual_seed(0)
    for _ in range(200):
        top, left, h, w = box_crop_window((60, 80), [30, 20, 49, 39], (0.3, 1.0))
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        assert left <= 30 and 49 < left + w and top <= 20 and 39 < top + h


def test_box_dataset_crops_keep_and_flips_mirror_the_box():
    ds = BoxDataset(_Manifest(), ["a"], {"a": [30, 10, 49, 19]}, size=32, crop_scale=(0.5, 1.0), train=True)
    torch.manual_seed(0)
    for _ in range(30):
        image, target = ds[0]
        assert image.shape == (3, 32, 32) and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        x1, y1, x2, y2 = target.tolist()
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
        # the white object is where the target says: inside bright, the rows above/below dark
        cols = slice(int(np.ceil(x1 * 32)) + 1, int(np.floor(x2 * 32)) - 1)
        rows = slice(int(np.ceil(y1 * 32)) + 1, int(np.floor(y2 * 32)) - 1)
        assert float(image[:, rows, cols].mean()) > 0.9
    # no crop (scale 1): the box as is, or mirrored with the image; both occur
    plain = BoxDataset(_Manifest(), ["a"], {"a": [30, 10, 49, 19]}, size=60, crop_scale=(1.0, 1.0), train=True)
    seen = set()
    for _ in range(20):
        image, target = plain[0]
        seen.add(tuple(round(v, 4) for v in target.tolist()))
        left = int(round(target[0].item() * 60))
        assert float(image[:, 22, left + 1].mean()) > 0.9 and float(image[:, 22, max(0, left - 2)].mean()) < 0.1
    assert seen == {(0.5, 0.25, round(50 / 60, 4), 0.5), (round(10 / 60, 4), 0.25, 0.5, 0.5)}
    whole = BoxDataset(_Manifest(), ["a"], {"a": [30, 10, 49, 19]}, size=32, train=False)
    assert whole[0][1].tolist() == pytest.approx([0.5, 0.25, 50 / 60, 0.5])
    with pytest.raises(InputError, match="no box for 1 of 1"):
        BoxDataset(_Manifest(), ["a"], {"a": None}, size=32)


def test_flip_averages_the_mirrored_box_by_hand():
    """A stub network giving box A for the image and B for its mirror: with flip, the result is the mean of A and
    B mirrored back, (x1, y1, x2, y2) -> (1 - x2, y1, 1 - x1, y2)."""
    image = torch.rand(1, 3, 40, 56)
    a, b = [0.1, 0.2, 0.5, 0.6], [0.2, 0.1, 0.6, 0.9]

    def stub(x):
        assert x.shape[-2:] == (32, 32)
        if x.shape[0] == 2:  # the image and its mirror, as one batch
            assert torch.equal(x[1], x[0].flip(-1))
            return torch.tensor([a, b])
        return torch.tensor([a])

    assert predict_unit_box(stub, image, 32, flip=False) == pytest.approx(a)
    # B mirrored back: (1 - 0.6, 0.1, 1 - 0.2, 0.9) = (0.4, 0.1, 0.8, 0.9); mean with A
    assert predict_unit_box(stub, image, 32, flip=True) == pytest.approx([0.25, 0.15, 0.65, 0.75])


def test_forward_flip_and_checkpoint_kind(tmp_path):
    torch.manual_seed(0)
    model = Localizer(build_trunk("lite0", "none")).eval()
    image = torch.rand(1, 3, 40, 56)
    edges = predict_unit_box(model, image, 64, flip=True)
    assert len(edges) == 4 and 0 <= edges[0] <= edges[2] <= 1 and 0 <= edges[1] <= edges[3] <= 1
    save_checkpoint(tmp_path / "loc.pt", model.state_dict(), {"kind": "localizer", "backbone": "lite0", "size": 64})
    loaded, meta = load_localizer(tmp_path / "loc.pt", "cpu")
    assert meta["size"] == 64 and predict_unit_box(loaded, image, 64, flip=True) == pytest.approx(edges, abs=1e-6)
    save_checkpoint(tmp_path / "c2am.pt", model.state_dict(), {"kind": "c2am", "backbone": "lite0"})
    with pytest.raises(InputError, match="expected a localizer checkpoint"):
        load_localizer(tmp_path / "c2am.pt", "cpu")


def test_pooled_head_edges_are_sigmoids_in_order_by_hand():
    """Logits (x1, y1, x2, y2) = (2, 0, -2, ln 3): sigmoids 0.881, 0.5, 0.119, 0.75; the x pair swaps."""
    logits = torch.tensor([[2.0, 0.0, -2.0, float(np.log(3.0))]])
    s2 = 1 / (1 + np.exp(-2.0))
    assert edges_from_logits(logits)[0].tolist() == pytest.approx([1 - s2, 0.5, s2, 0.75], abs=1e-6)


@pytest.mark.parametrize("head", HEADS)
def test_each_head_gives_ordered_unit_boxes_on_two_input_shapes(head):
    torch.manual_seed(0)
    model = build_localizer("lite0", "none", head).eval()
    for shape in ((48, 80), (96, 64)):
        with torch.no_grad():
            edges = model(torch.rand(2, 3, *shape))
        assert edges.shape == (2, 4)
        assert (edges >= 0).all() and (edges <= 1).all()
        assert (edges[:, 0] <= edges[:, 2]).all() and (edges[:, 1] <= edges[:, 3]).all()


def test_checkpoint_keeps_its_head_and_an_old_one_loads_as_edges(tmp_path):
    torch.manual_seed(0)
    pooled = build_localizer("lite0", "none", "pooled").eval()
    image = torch.rand(1, 3, 40, 56)
    meta = {"kind": "localizer", "backbone": "lite0", "size": 64}
    save_checkpoint(tmp_path / "pooled.pt", pooled.state_dict(), {**meta, "head": "pooled"})
    loaded, _ = load_localizer(tmp_path / "pooled.pt", "cpu")
    assert loaded.head_kind == "pooled"
    assert predict_unit_box(loaded, image, 64, flip=False) == pytest.approx(
        predict_unit_box(pooled, image, 64, flip=False), abs=1e-6)
    edges = build_localizer("lite0", "none", "edges")
    save_checkpoint(tmp_path / "old.pt", edges.state_dict(), meta)  # written before the head was a choice
    assert load_localizer(tmp_path / "old.pt", "cpu")[0].head_kind == "edges"
    save_checkpoint(tmp_path / "bad.pt", edges.state_dict(), {**meta, "head": "mlp"})
    with pytest.raises(InputError, match=r"bad\.pt.*head 'mlp'"):
        load_localizer(tmp_path / "bad.pt", "cpu")
    with pytest.raises(ValueError, match="head must be one of"):
        build_localizer("lite0", "none", "mlp")


def test_edges8_reads_a_grid_twice_as_fine():
    """On a 64 x 96 input the edge maps of edges are 4 x 6 cells (stride 16), those of edges8 8 x 12 (stride 8)."""
    for head, stride in (("edges", 16), ("edges8", 8)):
        model = build_localizer("lite0", "none", head).eval()
        with torch.no_grad():
            maps = model.head(model.features(torch.rand(1, 3, 64, 96)))
        assert maps.shape == (1, 4, 64 // stride, 96 // stride)
    with pytest.raises(ValueError, match="stride 8"):
        Localizer(build_trunk("lite0", "none"), "edges8")  # a two-level trunk has no stride-8 level
