"""File and error conventions shared by every stage (docs/method.md §7).

- Every write goes to a temporary name in the same folder and is renamed into place,
  so a killed job never leaves a file that Snakemake would take as complete.
- Arrays are saved with ``allow_pickle=False``; checkpoints are plain state_dicts plus
  plain metadata, loaded with ``weights_only=True``.
- Bad input raises :class:`InputError` with a message naming the path or key;
  :func:`c2am.runtime.run_stage` turns it into one line on stderr and exit status 2.

The run's setup (seeding, the device, threads, logging, the stage entry point) is :mod:`c2am.runtime`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np


class InputError(Exception):
    """Bad input: a missing or corrupt file, a wrong size, a bad key. The message names it."""


# ----------------------------------------------------------------------------- atomic writes

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    ``suffix`` keeps the extension for writers that infer the format from it (PIL, numpy).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; artifacts get the usual permissions
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_json(path, obj) -> None:
    save_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def load_json(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


# ----------------------------------------------------------------------------- arrays


def save_npy(path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def load_npy(path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable .npy array ({e})") from None


def save_npz(path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})


def load_npz(path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable .npz archive ({e})") from None


# ----------------------------------------------------------------------------- images

IGNORE = 255  # label value: not a class (GT boundary band, uncertain pseudo label); never scored or trained on


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (256 entries, flattened RGB); index 255 is (224, 224, 192)."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


_PALETTE = voc_palette()


def load_image(path) -> np.ndarray:
    """Read an RGB image as an HxWx3 uint8 array; a missing or corrupt file is an InputError."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated JPEG fails here, not later in a worker
            return np.array(im.convert("RGB"))  # writable, so torch.from_numpy is safe
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: corrupt or unreadable image ({e})") from None


def load_label_png(path) -> np.ndarray:
    """Read a label PNG (palette or grayscale) as an HxW uint8 array of indices."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: label image not found")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("P", "L"):
                raise InputError(f"{path}: expected a palette or grayscale PNG, got mode {im.mode}")
            return np.array(im)  # writable, so torch.from_numpy is safe
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: corrupt or unreadable label image ({e})") from None


def save_label_png(path, label: np.ndarray) -> None:
    """Write an HxW uint8 label map as a VOC-palette PNG."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8), mode="P")
    im.putpalette(_PALETTE)
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def save_gray_png(path, array: np.ndarray) -> None:
    """Write an HxW uint8 array as a grayscale PNG (used for cues: 255 = foreground)."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="L")
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def save_jpeg(path, image: np.ndarray, quality: int = 90) -> None:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="RGB")
    with atomic_path(path) as tmp:
        im.save(tmp, format="JPEG", quality=quality)


# ----------------------------------------------------------------------------- checkpoints


CHECKPOINT_KINDS = ("affinity", "c2am", "classifier", "deeplab", "localizer", "saliency")


def save_checkpoint(path, state_dict: dict, meta: dict, **extra_state) -> None:
    """Save ``{"state_dict", "meta", **extra_state}``; meta holds plain numbers, strings, lists, bools.

    ``meta["kind"]`` (one of CHECKPOINT_KINDS) is the checkpoint's identity, checked by :func:`load_checkpoint`.
    ``extra_state`` is for other state_dicts (optimizer, scaler) needed to resume.
    """
    import torch

    if meta.get("kind") not in CHECKPOINT_KINDS:
        raise ValueError(f"{path}: checkpoint meta needs 'kind' in {CHECKPOINT_KINDS}, got {meta.get('kind')!r}")
    payload = {"state_dict": state_dict, "meta": dict(meta), **extra_state}
    with atomic_path(path) as tmp:
        # Through a file object: given a path, torch names the zip archive after the (temporary) file, so two
        # saves of equal tensors would differ in bytes.
        with open(tmp, "wb") as f:
            torch.save(payload, f)


def load_checkpoint(path, kind: str, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``) whose kind is ``kind``."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several unrelated types for a bad file
        raise InputError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or not isinstance(ckpt.get("meta"), dict):
        raise InputError(f"{path}: not a c2am checkpoint (no 'state_dict' and 'meta' entries)")
    found = ckpt["meta"].get("kind")
    if found != kind:
        raise InputError(f"{path}: expected a {kind} checkpoint, found kind {found!r}")
    return ckpt


def load_state_strict(module, state_dict: dict, source) -> None:
    """``load_state_dict`` whose key mismatch names the file and the first missing/unexpected keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    bad_shape = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or bad_shape:
        raise InputError(
            f"{source}: checkpoint does not match the model "
            f"({len(missing)} missing, {len(unexpected)} unexpected, {len(bad_shape)} wrong-shape keys; "
            f"e.g. {(missing + unexpected + bad_shape)[:3]})"
        )
    module.load_state_dict(state_dict)
