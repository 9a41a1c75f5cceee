import numpy as np
import pytest
import torch
import torch.nn.functional as F

from c2am.inference import iterate_images, multiscale_flip, normalize_by_max, reference_scales
from c2am.io import InputError, save_checkpoint
from c2am.models.deeplab import training_side

torch.set_num_threads(1)


def _smooth_image(h=16, w=20):
    """A smooth, non-symmetric image: resampling it down and up changes it only slightly."""
    ys = torch.linspace(0, 1, h)[:, None]
    xs = torch.linspace(0, 1, w)[None, :]
    chan = 0.2 + 0.5 * xs + 0.3 * ys * xs
    return torch.stack([chan, 1 - chan, chan * 0.5])[None]


def test_identity_forward_single_scale_is_exact():
    image = _smooth_image()
    out = multiscale_flip(lambda x: x[:, :1], image, scales=[1.0])
    assert out.shape == (1, 16, 20)
    torch.testing.assert_close(out, 2 * image[0, :1], rtol=0, atol=1e-6)


def test_identity_forward_many_scales_sums():
    image = _smooth_image()
    scales = (0.5, 1.0, 1.5, 2.0)
    calls = []

    def forward(x):
        calls.append(tuple(x.shape))
        return x[:, 1:2]

    out = multiscale_flip(forward, image, scales)
    assert out.shape == (1, 16, 20)
    # each forward gets the image and its flip as one batch of 2, at the scaled size
    assert calls == [(2, 3, 8, 10), (2, 3, 16, 20), (2, 3, 24, 30), (2, 3, 32, 40)]
    expected = 2 * len(scales) * image[0, 1:2]
    interior = (slice(None), slice(2, -2), slice(2, -2))  # bilinear resampling is least exact at the border
    torch.testing.assert_close(out[interior], expected[interior], rtol=0, atol=0.02)
    assert (out - expected).abs().max() < 0.1


def test_flip_back_with_position_dependent_forward():
    # forward multiplies by a left-to-right ramp r: it is not flip-equivariant.
    # scale 1: x*r + flip(flip(x)*r) = x*(r + flip(r)) = x, since r + flip(r) = 1.
    image = _smooth_image()
    ramp = torch.linspace(0, 1, 20)

    out = multiscale_flip(lambda x: x[:, :2] * ramp, image, scales=[1.0])
    torch.testing.assert_close(out, image[0, :2], rtol=0, atol=1e-6)
    # without the flip-back it would be x*r + flip(x)*r, far from x
    wrong = image[0, :2] * ramp + image[0, :2].flip(-1) * ramp
    assert (wrong - image[0, :2]).abs().max() > 0.1


def test_flip_back_hand_computed_cumsum():
    # forward = cumulative sum along width (left-anchored); row [1, 2, 3]:
    # direct: [1, 3, 6]; flipped input [3, 2, 1] -> [3, 5, 6] -> flipped back [6, 5, 3]; sum [7, 8, 9]
    image = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3).expand(1, 3, 1, 3).contiguous()
    out = multiscale_flip(lambda x: x[:, :1].cumsum(-1), image, scales=[1.0])
    assert out.flatten().tolist() == [7.0, 8.0, 9.0]


def test_out_size_and_low_res_forward():
    # forward at output stride 4 returning half-precision maps; result upsampled to out_size in float32
    image = _smooth_image(16, 16)
    forward = lambda x: F.avg_pool2d(x[:, :2], 4).half()  # noqa: E731
    out = multiscale_flip(forward, image, scales=[1.0, 2.0], out_size=(8, 8))
    assert out.shape == (2, 8, 8) and out.dtype == torch.float32
    expected = 4 * F.avg_pool2d(image[0, :2], 2)
    torch.testing.assert_close(out[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], rtol=0, atol=0.05)
    assert (out - expected).abs().max() < 0.2  # the 4x4 -> 8x8 upsampling is least exact at the border


def test_scales_with_equal_size_are_batched_once():
    image = _smooth_image(4, 4)
    calls = []

    def forward(x):
        calls.append(tuple(x.shape))
        return x[:, :1]

    out = multiscale_flip(forward, image, scales=[1.0, 1.05])  # 4*1.05 rounds to 4
    assert calls == [(2, 3, 4, 4)]
    torch.testing.assert_close(out, 4 * image[0, :1], rtol=0, atol=1e-6)


def test_multiscale_flip_rejects_batches():
    with pytest.raises(ValueError, match="1x3xHxW"):
        multiscale_flip(lambda x: x, torch.zeros(2, 3, 4, 4), [1.0])


def test_normalize_by_max():
    maps = torch.zeros(3, 2, 2)
    maps[0] = torch.tensor([[0.0, 2.0], [4.0, 1.0]])
    maps[2] = torch.tensor([[-1.0, 0.5], [0.25, 0.0]])
    out = normalize_by_max(maps)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 0.5], [1.0, 0.25]]))
    assert torch.equal(out[1], torch.zeros(2, 2))  # zero map stays zero, no NaN
    torch.testing.assert_close(out[2], torch.tensor([[0.0, 1.0], [0.5, 0.0]]))
    assert out.amax(dim=(1, 2)).tolist() == [1.0, 0.0, 1.0]
    assert out.min() >= 0 and out.max() <= 1


class FakeManifest:
    def __init__(self, images):
        self.images = images

    def load_image(self, image_id):
        if image_id not in self.images:
            raise InputError(f"/data/JPEGImages/{image_id}.jpg: image not found")
        return self.images[image_id]


@pytest.mark.parametrize("num_workers", [0, 1])
def test_iterate_images(num_workers):
    rng = np.random.default_rng(0)
    images = {f"im{i}": rng.integers(0, 256, size=(5 + i, 7, 3), dtype=np.uint8) for i in range(3)}
    ids = ["im2", "im0", "im1"]
    got = list(iterate_images(FakeManifest(images), ids, torch.device("cpu"), num_workers=num_workers))
    assert [g[0] for g in got] == ids
    for image_id, array, tensor in got:
        assert array.dtype == np.uint8 and np.array_equal(array, images[image_id])
        assert tensor.shape == (1, 3, *array.shape[:2]) and tensor.dtype == torch.float32
        torch.testing.assert_close(tensor[0].permute(1, 2, 0), torch.from_numpy(array).float() / 255)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_iterate_images_bad_image_is_one_clean_input_error(num_workers):
    manifest = FakeManifest({"a": np.zeros((2, 2, 3), np.uint8)})
    with pytest.raises(InputError) as err:
        list(iterate_images(manifest, ["a", "missing"], "cpu", num_workers=num_workers))
    assert str(err.value) == "/data/JPEGImages/missing.jpg: image not found"


@pytest.mark.parametrize("size, expected", [((96, 160), [4 / 3, 8 / 3]), ((256, 128), [1.0, 2.0]), ((64, 64), [2.0, 4.0])])
def test_reference_scales_make_scale_one_the_training_side(size, expected):
    # training side 128: a 96 x 160 image's shorter side 96 -> 128 at scale 1 (x 4/3), 256 x 128 stays (x 1)
    assert reference_scales([1.0, 2.0], size, 128.0) == pytest.approx(expected)
    assert reference_scales([1.0, 2.0], size, None) == [1.0, 2.0]  # native: as given


def test_training_side_from_checkpoint_and_clear_error_without_it(tmp_path):
    save_checkpoint(tmp_path / "a.pt", {}, {"kind": "deeplab", "crop": 128, "scale_range": [0.7, 1.3]})
    assert training_side(tmp_path / "a.pt") == pytest.approx(128.0)
    save_checkpoint(tmp_path / "b.pt", {}, {"kind": "deeplab", "crop": 448, "scale_range": [0.5, 2.0]})
    assert training_side(tmp_path / "b.pt") == pytest.approx(560.0)
    save_checkpoint(tmp_path / "old.pt", {}, {"kind": "deeplab"})
    with pytest.raises(InputError, match=r"old\.pt: .*scale_reference: native"):
        training_side(tmp_path / "old.pt")
