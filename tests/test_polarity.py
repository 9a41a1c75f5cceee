"""End to end: infer_c2am applies the checkpoint's polarity flag (docs/method.md §3, §4).

One C2AM network is saved twice, ``inverted`` False and True, and the stage runs on a two-image manifest whose
images are non-square and of opposite aspect (wide and tall; the synthetic dataset builder only makes squares,
so the images are written here). Each stage map must equal the map computed here from the network's own P
(``model(x)`` forward, not the stage's helpers): with one scale, S = upsample(P(x) + flip(P(flip(x)))) and

    map = S / max S                      (inverted False)
    map = (2 - S) / max (2 - S)          (inverted True: 1 - P of both views, then the same upsample and max)
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from c2am.artifacts import load_map
from c2am.data.voc import Manifest
from c2am.io import save_checkpoint, save_jpeg
from c2am.models.backbone import build_trunk
from c2am.models.c2am_net import C2AM
from c2am.stages import infer_c2am

torch.set_num_threads(1)

SIZES = {"wide": (40, 72), "tall": (64, 36)}  # id -> (height, width)


def blob_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Noisy background with a bright disc off the centre, so that P varies over the image."""
    image = rng.integers(40, 120, size=(h, w, 3)).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - 0.35 * h) ** 2 + (xx - 0.3 * w) ** 2 < (0.25 * min(h, w)) ** 2
    image[disc] = (230, 200, 60)
    return image.astype(np.uint8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A manifest of two non-square images in the train split."""
    root = tmp_path_factory.mktemp("polarity_data")
    rng = np.random.default_rng(0)
    for image_id, (h, w) in SIZES.items():
        save_jpeg(root / "JPEGImages" / f"{image_id}.jpg", blob_image(rng, h, w))
    manifest = Manifest(root=root, classes=["background", "thing"], splits={"train": list(SIZES)},
                        labels={image_id: [1] for image_id in SIZES})
    path = root / "manifest.json"
    manifest.save(path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The same untrained lite0 C2AM saved as inverted=False and inverted=True, and the model itself."""
    torch.manual_seed(0)
    model = C2AM(build_trunk("lite0", "none")).eval()
    folder = tmp_path_factory.mktemp("polarity_ckpt")
    paths = {}
    for inverted in (False, True):
        paths[inverted] = folder / f"inverted_{inverted}.pt"
        meta = {"kind": "c2am", "backbone": "lite0", "inverted": inverted}
        save_checkpoint(paths[inverted], model.state_dict(), meta)
    return model, paths


@torch.no_grad()
def expected_maps(model: C2AM, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(normal, inverted) maps of one H x W x 3 uint8 image, from the network's forward alone."""
    h, w = image.shape[:2]
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    _, _, p = model(x)
    _, _, p_flip = model(x.flip(-1))
    p_flip = p_flip.flip(-1)

    def up(m):
        return F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)[0, 0]

    s = up(p + p_flip)
    s_inv = up((1 - p) + (1 - p_flip))
    assert torch.allclose(s_inv, 2 - s, atol=1e-5)  # bilinear upsampling keeps constants: the formula above
    return (s / s.max()).numpy(), (s_inv / s_inv.max()).numpy()


def test_infer_c2am_applies_the_checkpoints_polarity_flag(dataset, checkpoints, tmp_path):
    model, paths = checkpoints
    maps = {}
    for inverted, ckpt in paths.items():
        out = tmp_path / f"maps_{inverted}"
        infer_c2am.main(["--manifest", str(dataset), "--split", "train", "--checkpoint", str(ckpt),
                         "--out-dir", str(out), "--scales", "1.0", "--no-amp", "--threads", "1", "--device", "cpu"])
        maps[inverted] = {image_id: load_map(out / f"{image_id}.npy", size) for image_id, size in SIZES.items()}

    manifest = Manifest.load(dataset)
    for image_id, (h, w) in SIZES.items():
        normal, inverted = maps[False][image_id], maps[True][image_id]
        assert normal.shape == inverted.shape == (h, w)
        want_normal, want_inverted = expected_maps(model, manifest.load_image(image_id))
        # The test has power: P varies, so the two orientations differ clearly (and so does 1 - normalised P).
        assert np.abs(want_normal - want_inverted).max() > 0.1, image_id
        assert np.abs(want_inverted - (1 - want_normal)).max() > 0.01, image_id
        # float16 on disk: about 3 significant digits.
        np.testing.assert_allclose(normal, want_normal, atol=2e-3, err_msg=image_id)
        np.testing.assert_allclose(inverted, want_inverted, atol=2e-3, err_msg=image_id)
        assert not np.allclose(normal, inverted, atol=0.05), image_id
        assert normal.max() == inverted.max() == 1.0
