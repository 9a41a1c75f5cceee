"""Dense CRF (pydensecrf2) on hard label maps: background cues (2 labels) and pseudo labels (C labels).

The keyword names match the config sections (``gt_prob``, ``gauss_sxy``, ...), so a config section can be
passed straight through as ``**kwargs``. Defaults are the C2AM/IRN values (DESIGN.md section 3).
"""

from __future__ import annotations

import numpy as np

IGNORE = 255


def crf_from_labels(
    image: np.ndarray,
    labels: np.ndarray,
    n_labels: int,
    gt_prob: float = 0.7,
    gauss_sxy: float = 3,
    gauss_compat: float = 3,
    bilat_sxy: float = 50,
    bilat_srgb: float = 5,
    bilat_compat: float = 10,
    iters: int = 10,
) -> np.ndarray:
    """Refine an HxW label map with a fully connected CRF over the HxWx3 uint8 RGB ``image``.

    Each pixel's unary trusts its label with probability ``gt_prob`` (the rest spread over the other labels).
    Pixels labelled 255 get a uniform unary (no opinion), so the CRF fills them from their neighbours; any other
    value outside ``0..n_labels-1`` is an error. Returns the MAP labels as an HxW int64 array.
    """
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    image, labels = check_crf_inputs(image, labels, n_labels)
    h, w = labels.shape
    unsure = labels == IGNORE
    unary = unary_from_labels(np.where(unsure, 0, labels), n_labels, gt_prob, zero_unsure=False)
    if unsure.any():
        unary[:, unsure.ravel()] = -np.log(1.0 / n_labels)
    crf = dcrf.DenseCRF2D(w, h, n_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=gauss_sxy, compat=gauss_compat)
    crf.addPairwiseBilateral(sxy=bilat_sxy, srgb=bilat_srgb, rgbim=image, compat=bilat_compat)
    q = np.asarray(crf.inference(int(iters)), dtype=np.float32).reshape(n_labels, h, w)
    return q.argmax(axis=0).astype(np.int64)


def crf_two_label(image: np.ndarray, fg_mask: np.ndarray, **params) -> np.ndarray:
    """CRF-refined foreground of a boolean HxW mask (labels 0 = background, 1 = foreground); returns bool HxW."""
    fg_mask = np.asarray(fg_mask)
    if fg_mask.dtype != bool:
        raise ValueError(f"fg_mask must be boolean, got {fg_mask.dtype}")
    return crf_from_labels(image, fg_mask.astype(np.uint8), 2, **params) == 1


def check_crf_inputs(image: np.ndarray, labels: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """C-contiguous uint8 HxWx3 image and int HxW labels of the same size, values < n_labels or 255."""
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    if labels.ndim != 2 or labels.shape != image.shape[:2]:
        raise ValueError(f"labels shape {labels.shape} does not match image shape {image.shape[:2]}")
    if n_labels < 2:
        raise ValueError(f"n_labels must be >= 2, got {n_labels}")
    labels = labels.astype(np.int64)
    bad = (labels < 0) | ((labels >= n_labels) & (labels != IGNORE))
    if bad.any():
        raise ValueError(f"labels hold value {int(labels[bad][0])}, outside 0..{n_labels - 1} and 255")
    # pydensecrf needs a C-contiguous, writable buffer (a read-only view is rejected)
    return np.require(image, requirements=["C", "W"]), labels


# ----------------------------------------------------------------------------- command-line flags

CRF_DEFAULTS = {"gt_prob": 0.7, "gauss_sxy": 3.0, "gauss_compat": 3.0, "bilat_sxy": 50.0, "bilat_srgb": 5.0,
                "bilat_compat": 10.0, "iters": 10}


def add_crf_args(parser, **defaults) -> None:
    """The CRF flags of a stage (``--gt-prob`` ... ``--iters``: a config ``crf`` section); DESIGN.md defaults."""
    for key, value in {**CRF_DEFAULTS, **defaults}.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value, help="dense CRF parameter")


def crf_args(args) -> dict:
    """The CRF keyword arguments from parsed flags."""
    return {key: getattr(args, key) for key in CRF_DEFAULTS}

