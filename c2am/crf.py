"""Dense CRF (pydensecrf2): the one home of every CRF of the pipeline and of its parameters (docs/method.md §4, §6).

Two unaries, each with its own parameter set:

- on hard labels (background cues: 2 labels; pseudo labels: the classes present), ``gt_prob`` = how much a
  pixel's unary trusts its label (:func:`crf_from_labels`, defaults ``LABEL_CRF``);
- on class probabilities (DeepLab's softmax at test time), ``softmax_scale`` = weight of the probabilities
  against the uniform distribution (:func:`crf_from_probs`, defaults ``SOFTMAX_CRF``).

The pairwise terms (a Gaussian on position, a bilateral one on position and colour) are shared. The keyword
names match the config sections, so a config section can be passed straight through as ``**kwargs``.
Defaults are the C2AM / IRN values.
"""

from __future__ import annotations

import numpy as np

from c2am.io import IGNORE

PAIRWISE = {"gauss_sxy": 3.0, "gauss_compat": 3.0, "bilat_sxy": 50.0, "bilat_srgb": 5.0, "bilat_compat": 10.0,
            "iters": 10}
LABEL_CRF = {"gt_prob": 0.7, **PAIRWISE}
SOFTMAX_CRF = {"softmax_scale": 1.0, **PAIRWISE}


def _pairwise_inference(crf, image: np.ndarray, n_labels: int, h: int, w: int, gauss_sxy, gauss_compat,
                        bilat_sxy, bilat_srgb, bilat_compat, iters) -> np.ndarray:
    """Add the two pairwise terms, run mean-field inference; MAP labels as H x W int64."""
    crf.addPairwiseGaussian(sxy=gauss_sxy, compat=gauss_compat)
    crf.addPairwiseBilateral(sxy=bilat_sxy, srgb=bilat_srgb, rgbim=image, compat=bilat_compat)
    q = np.asarray(crf.inference(int(iters)), dtype=np.float32).reshape(n_labels, h, w)
    return q.argmax(axis=0).astype(np.int64)


def crf_from_labels(image: np.ndarray, labels: np.ndarray, n_labels: int, gt_prob: float = LABEL_CRF["gt_prob"],
                    **pairwise) -> np.ndarray:
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
    return _pairwise_inference(crf, image, n_labels, h, w, **{**PAIRWISE, **pairwise})


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


def crf_from_probs(image: np.ndarray, probs: np.ndarray, softmax_scale: float = SOFTMAX_CRF["softmax_scale"],
                   **pairwise) -> np.ndarray:
    """Dense-CRF labels (H x W int64) from C x H x W class probabilities over the H x W x 3 uint8 ``image``.

    The unary is pydensecrf's ``unary_from_softmax`` with ``scale=softmax_scale``: the probabilities are mixed
    with the uniform distribution, ``softmax_scale * p + (1 - softmax_scale) / C`` (1.0 = trust the network
    fully), and clipped at 1e-5 before the log.
    """
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    image = np.asarray(image)
    probs = np.asarray(probs, dtype=np.float32)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    if probs.ndim != 3 or probs.shape[1:] != image.shape[:2] or probs.shape[0] < 2:
        raise ValueError(f"probs must be C x H x W (C >= 2) matching image {image.shape[:2]}, got {probs.shape}")
    if not 0 < softmax_scale <= 1:
        raise ValueError(f"softmax_scale must be in (0, 1], got {softmax_scale}")
    n, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, n)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs, scale=softmax_scale)))
    return _pairwise_inference(crf, np.ascontiguousarray(image), n, h, w, **{**PAIRWISE, **pairwise})


def crf_probs_job(job: tuple) -> tuple[str, np.ndarray]:
    """``(id, image, probs, params) -> (id, uint8 labels)``: :func:`crf_from_probs` as a top-level (picklable) task
    for :func:`c2am.parallel.map_items` (the stages that predict with DeepLab CRF many images on several processes)."""
    image_id, image, probs, params = job
    return image_id, crf_from_probs(image, np.asarray(probs, dtype=np.float32), **params).astype(np.uint8)


def crf_present_labels(image: np.ndarray, labels: np.ndarray, **crf) -> np.ndarray:
    """Label CRF over background + the classes present in ``labels``; uint8 H x W in the original indices.

    Renumbering to the present labels means the CRF can neither invent a class the image does not have nor pay
    for the absent ones. With a single label present there is nothing to decide and the labels come back
    unchanged (IGNORE pixels become background when no other class is present).
    """
    labels = np.asarray(labels)
    present = np.unique(labels[labels != IGNORE])
    classes = np.union1d([0], present).astype(np.int64)  # background always takes part
    if classes.size < 2:
        return np.where(labels == IGNORE, 0, labels).astype(np.uint8)
    compact = np.full(labels.shape, IGNORE, dtype=np.int64)
    valid = labels != IGNORE
    compact[valid] = np.searchsorted(classes, labels[valid])
    out = crf_from_labels(image, compact, int(classes.size), **crf)
    return classes[out].astype(np.uint8)


def mark_disagreement(refined: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``refined`` with IGNORE wherever it differs from ``reference`` (DeepLab then ignores those pixels)."""
    if refined.shape != reference.shape:
        raise ValueError(f"label shapes differ: {refined.shape} vs {reference.shape}")
    return np.where(refined == reference, refined, IGNORE).astype(np.uint8)


# ----------------------------------------------------------------------------- command-line flags


def add_crf_args(parser, defaults: dict = LABEL_CRF) -> None:
    """The CRF flags of a stage (``--gt-prob`` or ``--softmax-scale``, then the pairwise terms ... ``--iters``).

    ``defaults`` names the parameter set (LABEL_CRF or SOFTMAX_CRF); the stage's config section may then
    override the values (c2am.defaults).
    """
    group = parser.add_argument_group("dense CRF")
    for key, value in defaults.items():
        group.add_argument(f"--{key.replace('_', '-')}", dest=key, type=type(value), default=value,
                           help="dense CRF parameter")


def crf_args(args, defaults: dict = LABEL_CRF) -> dict:
    """The CRF keyword arguments of ``defaults``' parameter set from parsed flags."""
    return {key: getattr(args, key) for key in defaults}
