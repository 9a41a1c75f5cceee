"""Multi-process (DistributedDataParallel) support for the training stages.

A stage calls :func:`init_from_env` once. Launched by ``torchrun`` (which sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT) with more than one process, it joins the process group
(NCCL on CUDA, gloo on the CPU) and returns this process's :class:`DistInfo`; launched plainly
(``python -m ...``) it creates no process group and returns world_size 1, so single-process runs
behave exactly as before.

Gradient convention. Every collective used under autograd here has the adjoint of its forward as
its backward (all_gather <-> sum of the gathered gradients, all_reduce <-> all_reduce). Autograd then
computes, on every rank, the gradient of the SUM of the ranks' losses with respect to that rank's
tensors, and DDP's gradient averaging divides by world_size. So a loss computed identically on every
rank from gathered features (C2AM's contrastive loss over the global batch), and a per-rank mean loss
(classifier, DeepLab) with equal per-rank batches, both give exactly the gradient of one process on
the whole global batch; no loss scaling is needed.

BatchNorm. Batch statistics must be over the global batch for that equality (and for C2AM's head BN,
whose batch statistics decide where P crosses 0.5). :func:`convert_sync_batchnorm` swaps every
BatchNorm (timm's BatchNormAct2d included) for torch's SyncBatchNorm on CUDA and for
:class:`DistBatchNorm` on the CPU, where torch's SyncBatchNorm refuses to run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from c2am.io import InputError
from c2am.runtime import pick_device, pin_memory, seed_everything, set_threads

log = logging.getLogger("c2am.distributed")

_REQUIRED_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """The process layout and this process's device: resolved once per stage, passed down as one object."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def pin_memory(self) -> bool:
        return pin_memory(self.device)


def single(device) -> DistInfo:
    """One process on ``device`` (no process group)."""
    return DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device(device), is_main=True)


def _env_int(key: str, default: int | None = None) -> int:
    raw = os.environ.get(key)
    if raw is None:
        if default is None:
            raise InputError(f"environment variable {key} is not set (launch multi-process runs with torchrun)")
        return default
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"environment variable {key}={raw!r} is not an integer") from None


def is_active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_from_env(device_pref: str = "auto") -> DistInfo:
    """Join torchrun's process group when WORLD_SIZE > 1; otherwise a single-process DistInfo, no group.

    ``device_pref`` is the stage's ``--device`` (auto / cpu / cuda). Under torchrun on CUDA each process
    takes ``cuda:LOCAL_RANK`` and NCCL; on the CPU, gloo.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    device = pick_device(device_pref)
    if world_size <= 1:
        return single(device)
    for key in _REQUIRED_ENV:
        if key not in os.environ:
            raise InputError(f"WORLD_SIZE={world_size} but environment variable {key} is not set (use torchrun)")
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world_size:
        raise InputError(f"environment variable RANK={rank} is outside 0..{world_size - 1}")
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA device(s) visible")
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size)
    log.info("rank %d/%d (local %d): %s, backend %s", rank, world_size, local_rank, device, backend)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device, is_main=rank == 0)


def launch(train, args):
    """``train(args, dist)`` in this process's place of the layout (torchrun's, or one process), then leave it.

    The one place where a training stage resolves its device and process layout: ``args`` needs ``device``,
    ``threads`` (split over the processes of a node) and ``seed``. Only rank 0 logs INFO.
    """
    dist = init_from_env(args.device)
    try:
        quiet_non_main(dist)
        set_threads(threads_per_process(args.threads))
        seed_everything(args.seed)
        return train(args, dist)
    finally:
        cleanup()


def threads_per_process(threads: int | None) -> int | None:
    """The rule's thread count split over the processes torchrun starts on this node (at least 1)."""
    local_world = _env_int("LOCAL_WORLD_SIZE", 1)
    if threads is None or local_world <= 1:
        return threads
    return max(1, int(threads) // local_world)


def per_process_batch(batch_size: int, world_size: int) -> int:
    """``--batch-size`` is the global batch; each process takes an equal share."""
    if batch_size % world_size:
        raise InputError(f"--batch-size {batch_size} is not divisible by the {world_size} training processes")
    return batch_size // world_size


def train_sampler(dataset, info: DistInfo, seed: int, drop_last: bool = True):
    """A shuffling DistributedSampler (disjoint equal shares of one (seed, epoch) permutation) when distributed;
    None in one process, where the DataLoader shuffles as before. fit() calls its ``set_epoch``.
    """
    if not info.distributed:
        return None
    from torch.utils.data import DistributedSampler

    return DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed,
                              drop_last=drop_last)


def quiet_non_main(info: DistInfo, logger_name: str = "c2am") -> None:
    """Only rank 0 logs INFO; the other ranks keep warnings and errors (torchrun interleaves their stderr)."""
    if not info.is_main:
        logging.getLogger(logger_name).setLevel(logging.WARNING)


def barrier() -> None:
    if is_active():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (a no-op when none was created)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- autograd-aware collectives


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0; backward sums the output gradients over ranks and keeps this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        parts[dist.get_rank()] = x  # the local slice is bitwise the local tensor
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # Adjoint of all_gather (a reduce-scatter), written as all_reduce + slice because gloo has no reduce_scatter.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


class _AllReduceWithGrad(torch.autograd.Function):
    """all_reduce SUM; its adjoint is again an all_reduce SUM of the gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenation over ranks (rank order, dim 0) of ``x``; ``x`` itself when not distributed.

    Every rank must pass the same shape (DistributedSampler + drop_last gives equal batches). Gradients
    reach the local slice summed over the ranks' losses (see the module docstring for why that is exact).
    """
    if not is_active():
        return x
    return _GatherWithGrad.apply(x)


def all_reduce_sum_with_grad(x: torch.Tensor) -> torch.Tensor:
    if not is_active():
        return x
    return _AllReduceWithGrad.apply(x)


@torch.no_grad()
def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """Mean of a (detached) tensor over ranks, e.g. per-step losses for the log; ``x`` when not distributed."""
    if not is_active():
        return x
    out = x.detach().clone().contiguous()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


# ----------------------------------------------------------------------------- synchronised BatchNorm


class DistBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are over the global batch of all ranks, on any backend (gloo too).

    Two passes (global mean, then global mean squared deviation), both autograd-aware all_reduces, so the
    statistics and their gradients equal those of one BatchNorm over the concatenated batch. Normalisation
    uses the biased variance and the running variance the unbiased one, as nn.BatchNorm does. Outside
    training or a process group it is plain BatchNorm. ``drop`` and ``act`` (Identity unless converted from
    timm's BatchNormAct2d) follow the normalisation; they hold no state, so state_dict keys are unchanged.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.drop = nn.Identity()
        self.act = nn.Identity()

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.ndim < 2:
            raise ValueError(f"expected at least 2-D input, got {x.ndim}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and is_active():
            y = self._global_batch_norm(x)
        else:
            y = super().forward(x)
        return self.act(self.drop(y))

    def _global_batch_norm(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        c = x.shape[1]
        dims = [0] + list(range(2, x.ndim))
        shape = [1, c] + [1] * (x.ndim - 2)
        xf = x.float()
        count = torch.tensor([x.numel() / c], dtype=torch.float32, device=x.device)
        totals = all_reduce_sum_with_grad(torch.cat([xf.sum(dims), count]))
        n = totals[c]
        mean = totals[:c] / n
        centred = xf - mean.view(shape)
        var = all_reduce_sum_with_grad((centred * centred).sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), float(n.detach()))
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (n / max(n - 1.0, 1.0))
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)


def _to_dist_batchnorm(module: nn.modules.batchnorm._BatchNorm) -> DistBatchNorm:
    out = DistBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
    if module.affine:
        out.weight, out.bias = module.weight, module.bias  # same Parameter objects: optimizers stay valid
    out.running_mean, out.running_var = module.running_mean, module.running_var
    out.num_batches_tracked = module.num_batches_tracked
    for name in ("drop", "act"):  # timm BatchNormAct2d
        if isinstance(getattr(module, name, None), nn.Module):
            setattr(out, name, getattr(module, name))
    out.train(module.training)
    return out


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, DistBatchNorm):
        out = _to_dist_batchnorm(module)
    for name, child in module.named_children():
        if name in ("drop", "act") and out is not module:
            continue  # already carried over
        out.add_module(name, _convert_cpu(child))
    return out


def convert_sync_batchnorm(model: nn.Module, device) -> nn.Module:
    """Every BatchNorm of ``model`` synchronised over ranks; returns the converted model (parameters shared).

    CUDA: torch's SyncBatchNorm (timm's converter when timm is installed, so BatchNormAct2d keeps its
    activation). CPU: :class:`DistBatchNorm`. State_dict keys do not change.
    """
    if torch.device(device).type == "cuda":
        try:
            from timm.layers import convert_sync_batchnorm as timm_convert
        except ImportError:
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return timm_convert(model)
    return _convert_cpu(model)


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """``model`` with synchronised BatchNorm inside DistributedDataParallel; ``model`` itself when world_size 1.

    The BatchNorm conversion is in place for every submodule below the top level, so the caller's
    ``model`` (and an optimizer built on its parameters) stays the unwrapped module to save and evaluate.
    """
    if not info.distributed:
        return model
    converted = convert_sync_batchnorm(model, info.device)
    if converted is not model:
        raise ValueError("wrap_ddp: the model's top-level module is a BatchNorm; wrap it in a container first")
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
