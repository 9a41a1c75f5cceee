"""Shared training infrastructure: poly-LR SGD with two parameter groups and a resumable epoch loop.

Used by the five training stages: C2AM (``train_c2am``), the classifier (``train_classifier``), the saliency
network (``train_saliency``), DeepLab (``train_deeplab``) and the WSOL localizer (``train_localizer``). What each
stage supplies is its model, its DataLoader and a ``step_fn(model, batch) -> loss``; everything else (AMP,
logging, checkpoints, resume, determinism) lives here.

Determinism contract (what a stage must do so that a run resumed after epoch k ends with weights
bit-identical to an uninterrupted run on the CPU):

* Build the DataLoader once, with ``shuffle=True`` (or any sampler) and ``generator=epoch_generator(seed, 0)``;
  do not use ``persistent_workers=True``.
* Draw augmentation randomness from the global torch / numpy / random RNGs (torchvision v2 transforms do),
  never from a generator created once at start-up.
* Pass the same ``seed`` to :func:`fit`.

:func:`fit` then, at the start of every epoch, reseeds the global RNGs from ``(seed, epoch)``, reseeds the
loader's generator (which drives the shuffle order and the worker seeds; DataLoader workers seed torch,
numpy and random from it), and calls ``set_epoch(epoch)`` on a sampler that has one (e.g. DistributedSampler).
So nothing an epoch draws depends on what earlier epochs drew, and resuming needs only the model,
optimizer, scheduler and scaler states.

Multi-process (torchrun + DDP, see :mod:`c2am.distributed`): :func:`fit` wraps the model in
DistributedDataParallel with synchronised BatchNorm when the process group has more than one process.
The stage gives each process its share of the global batch through a ``DistributedSampler`` (whose
``set_epoch`` the reseeding calls). Ranks other than 0 draw their augmentation from RNG streams that also
mix in the rank (rank 0 draws exactly what a single process draws); only rank 0 writes the checkpoint,
the resume state and the CSV (whose losses are means over the ranks) and shows the progress bar.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from c2am import distributed
from c2am.io import InputError, atomic_path, load_checkpoint, load_state_strict, save_checkpoint
from c2am.runtime import autocast, use_amp

log = logging.getLogger("c2am.training")

CSV_HEADER = ["epoch", "step", "loss", "lr"]

# ----------------------------------------------------------------------------- optimisation


def poly_lr_lambda(total_steps: int, power: float = 0.9, warmup_steps: int = 0) -> Callable[[int], float]:
    """Multiplier ``(1 - step / total_steps) ** power``, clamped at 0, for ``LambdaLR``.

    ``warmup_steps > 0`` multiplies it by a linear ramp ``(step + 1) / warmup_steps`` over the first steps, so
    the first update already moves (at ``1 / warmup_steps`` of the lr) and the full lr is reached at step
    ``warmup_steps - 1``: a high lr on a freshly initialised head diverges without it.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be in [0, {total_steps}), got {warmup_steps}")

    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        return ramp * max(0.0, 1.0 - step / total_steps) ** power

    return factor


def make_poly_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, power: float = 0.9,
                        warmup_steps: int = 0):
    """``LambdaLR`` with the poly decay (and optional linear warm-up); call ``step()`` once per optimiser step
    (``fit`` does)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, poly_lr_lambda(total_steps, power, warmup_steps))


def _trainable(params_or_modules) -> list[nn.Parameter]:
    """Parameters with requires_grad from a module, a parameter, or an iterable of either (deduplicated)."""
    items = [params_or_modules] if isinstance(params_or_modules, (nn.Module, nn.Parameter)) else params_or_modules
    out, seen = [], set()
    for item in items:
        params = item.parameters() if isinstance(item, nn.Module) else [item]
        for p in params:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def make_sgd(
    backbone_params,
    head_params,
    lr: float,
    head_lr_mult: float = 10.0,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    nesterov: bool = False,
    decay_norm_and_bias: bool = True,
) -> torch.optim.SGD:
    """SGD with a backbone group at ``lr`` and a head group at ``lr * head_lr_mult``.

    ``backbone_params`` / ``head_params``: modules, parameters, or iterables of either; every parameter with
    ``requires_grad`` is optimised, BatchNorm affine parameters included (the official code froze them).
    The head group must not be empty (the official code's 10x group was). Momentum is passed as momentum
    (the official code put the weight decay there).

    ``decay_norm_and_bias=False`` is the common refinement of exempting 1-D parameters (norm weights and
    biases) from weight decay; it splits each group in two (names "backbone_no_decay", "head_no_decay").
    Every group carries a ``name`` key; the backbone group is first, so ``param_groups[0]["lr"]`` is the
    backbone lr. A parameter listed in both sets, or an empty backbone set, is a ValueError too.
    """
    backbone, head = _trainable(backbone_params), _trainable(head_params)
    if not head:
        raise ValueError("make_sgd: the head parameter group is empty (nothing would train at the head lr)")
    if not backbone:
        raise ValueError("make_sgd: the backbone parameter group is empty (freeze explicitly, not by omission)")
    shared = {id(p) for p in backbone} & {id(p) for p in head}
    if shared:
        raise ValueError(f"make_sgd: {len(shared)} parameter(s) are in both the backbone and the head group")

    groups = []
    for name, params, group_lr in (("backbone", backbone, lr), ("head", head, lr * head_lr_mult)):
        if decay_norm_and_bias:
            groups.append({"name": name, "params": params, "lr": group_lr, "weight_decay": weight_decay})
            continue
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        for suffix, ps, wd in (("", decay, weight_decay), ("_no_decay", no_decay, 0.0)):
            if ps:
                groups.append({"name": name + suffix, "params": ps, "lr": group_lr, "weight_decay": wd})
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def count_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------- determinism


def epoch_seed(seed: int, epoch: int, stream: int = 0, rank: int = 0) -> int:
    """A well-mixed 32-bit seed derived from (seed, epoch, stream[, rank]); different streams are independent.

    Rank 0 gets the single-process seed, so a one-process run draws the same whether or not it is distributed.
    """
    entropy = [int(seed), int(epoch), int(stream)] + ([int(rank)] if rank else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator seeded for one epoch; the same seed :func:`fit` gives a loader's generator."""
    g = torch.Generator()
    g.manual_seed(epoch_seed(seed, epoch, stream=1))
    return g


def reseed_epoch(seed: int, epoch: int, loader=None, rank: int = 0) -> None:
    """Reseed the global RNGs and the loader's shuffle/worker generator for ``epoch`` (per rank)."""
    s = epoch_seed(seed, epoch, rank=rank)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
    if loader is None:
        return
    generator = getattr(loader, "generator", None)
    if generator is not None:
        generator.manual_seed(epoch_seed(seed, epoch, stream=1, rank=rank))
    for sampler in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)


# ----------------------------------------------------------------------------- device helpers


def to_device(batch, device: torch.device, channels_last: bool = False):
    """Move tensors in a (nested) tuple/list/dict batch to ``device``; 4-D float tensors go channels_last if asked."""
    if isinstance(batch, torch.Tensor):
        t = batch.to(device, non_blocking=True)
        if channels_last and t.ndim == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        return t
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    return batch


def cpu_state_dict(module: nn.Module) -> dict:
    """A contiguous CPU copy of the state_dict (portable whatever the training memory format)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def add_training_args(parser) -> None:
    """The flags every training stage shares: the SGD schedule (defaults from the stage's config section) and
    how the run goes (workers, seed, threads, device, AMP, resume)."""
    sgd = parser.add_argument_group("SGD with poly decay")
    sgd.add_argument("--epochs", type=int)
    sgd.add_argument("--batch-size", type=int, help="the global batch, split over the processes under torchrun")
    sgd.add_argument("--lr", type=float, help="backbone lr (the head gets lr * head-lr-mult)")
    sgd.add_argument("--head-lr-mult", type=float)
    sgd.add_argument("--momentum", type=float)
    sgd.add_argument("--weight-decay", type=float)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                        help="AMP + channels_last (CUDA only)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="continue from the last finished epoch when the settings match")


def check_crop_training_args(args: argparse.Namespace) -> None:
    """The checks every crop-trained dense network needs (DeepLab, the saliency network): positive epochs, batch
    size, crop and lr; two images per batch for BatchNorm; a scale range 0 < lo <= hi."""
    positive = {"epochs": args.epochs, "batch_size": args.batch_size, "crop": args.crop, "lr": args.lr}
    for key, value in positive.items():
        if value <= 0:
            raise InputError(f"{key}: must be positive, got {value}")
    if args.batch_size < 2:
        raise InputError(f"batch_size: {args.batch_size}; BatchNorm needs at least 2 images per batch")
    lo, hi = args.scale_range
    if not 0 < lo <= hi:
        raise InputError(f"scale_range: need 0 < lo <= hi, got {lo} {hi}")


def train_loader(dataset, batch_size: int, dist: distributed.DistInfo, seed: int, workers: int,
                 drop_last: bool = True) -> DataLoader:
    """The DataLoader of a training stage, as the determinism contract above wants it.

    ``batch_size`` is the global batch, split equally over the processes (a DistributedSampler shuffles then;
    in one process the loader does). ``drop_last``: a last batch of one image would break BatchNorm, and the
    contrastive loss needs pairs.
    """
    if drop_last and len(dataset) < batch_size:
        raise InputError(f"--batch-size {batch_size}: larger than the training split ({len(dataset)} images)")
    sampler = distributed.train_sampler(dataset, dist, seed, drop_last=drop_last)
    return DataLoader(
        dataset,
        batch_size=distributed.per_process_batch(batch_size, dist.world_size),
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=workers,
        generator=epoch_generator(seed, 0),
        pin_memory=dist.pin_memory,
    )


# ----------------------------------------------------------------------------- CSV log


def _prepare_csv(path: Path, rows: list[list[str]]) -> None:
    """Write the header and ``rows``: none on a fresh start, the resume state's rows on resume.

    The rows come from the resume state, not from the CSV itself: Snakemake deletes the outputs of an
    incomplete job (this CSV among them) before it reruns the job.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_HEADER)
            writer.writerows(rows)


# ----------------------------------------------------------------------------- resume state


def resume_state_path(ckpt_path) -> Path:
    """Where a stage keeps the per-epoch resume state of the checkpoint it trains: ``<ckpt>.resume``."""
    ckpt_path = Path(ckpt_path)
    return ckpt_path.with_name(ckpt_path.name + ".resume")


def _plain(obj) -> str:
    """Canonical text of plain metadata, so tuples and lists compare equal."""
    return json.dumps(obj, sort_keys=True, default=str)


def changed_settings(saved_run: dict, run: dict) -> list[str]:
    """Keys whose values differ between a resume state's ``run`` record and this run's (sorted)."""
    return sorted(k for k in set(run) | set(saved_run) if _plain(run.get(k)) != _plain(saved_run.get(k)))


def _load_resume_state(state_path: Path, run: dict, model, optimizer, scheduler, scaler):
    """Restore every state; returns (last finished epoch, meta, per-epoch mean losses, CSV rows so far).

    Returns None when the state is unreadable or was written with other settings (a config change made
    Snakemake rerun the stage, and its weights must not be continued); either is logged, never an error.
    """
    try:
        state = load_checkpoint(state_path, kind=run["meta"].get("kind"))
    except InputError as e:
        log.warning("ignoring unreadable resume state (%s); starting fresh", e)
        return None
    saved_run = state.get("run", {})
    changed = changed_settings(saved_run, run)
    if changed:
        diffs = ", ".join(f"{k}: {saved_run.get(k)!r} -> {run.get(k)!r}" for k in changed[:5])
        log.warning("ignoring resume state %s: written with different settings (%s); starting fresh",
                    state_path, diffs)
        return None
    load_state_strict(model, state["state_dict"], state_path)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    return (int(state["epoch"]), dict(state["meta"]), list(state.get("epoch_losses", [])),
            [list(r) for r in state.get("log_rows", [])])


# ----------------------------------------------------------------------------- the loop


def _log_rows(writer, f, pending: list, bar, rows: list) -> float:
    """Materialise pending (epoch, step, loss tensor, lr) rows: one device sync per call, not per step.

    Every rank calls this at the same steps (the losses are averaged over ranks); ``writer`` and ``f`` are
    None on ranks other than 0, which write nothing. Each row is also appended to ``rows`` as the strings
    written, so the resume state can rewrite the log byte for byte.
    """
    losses = distributed.mean_over_ranks(torch.stack([p[2] for p in pending]).float()).cpu().tolist()
    for (epoch, step, _, lr), loss in zip(pending, losses):
        if not math.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss} at epoch {epoch}, step {step}")
        row = [str(epoch), str(step), f"{loss:.6g}", f"{lr:.6g}"]
        rows.append(row)
        if writer is not None:
            writer.writerow(row)
    if f is not None:
        f.flush()
    bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{pending[-1][3]:.3g}")
    pending.clear()
    return sum(losses)


def fit(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler,
    epochs: int,
    step_fn: Callable[[nn.Module, object], torch.Tensor],
    *,
    dist: distributed.DistInfo,
    ckpt_path,
    state_path,
    resume: bool,
    amp: bool,
    log_csv,
    meta: dict,
    seed: int,
    on_epoch_end: Callable[[int, nn.Module, dict], dict | None] | None = None,
    desc: str = "train",
    sync_every: int = 20,
) -> dict:
    """Train ``model`` for ``epochs`` epochs (numbered from 1); return the final checkpoint's meta.

    Per step: zero_grad, ``loss = step_fn(model, batch)`` under autocast (CUDA + ``amp`` only), backward
    through a GradScaler, optimiser step, ``scheduler.step()`` (``scheduler`` may be None). The batch reaches
    ``step_fn`` already on ``dist.device`` (4-D float tensors channels_last when AMP is on). ``model`` is in train
    mode at the start of every epoch.

    Per epoch: reseed (see the module docstring), ``on_epoch_end(epoch, model, meta)`` (may update ``meta`` in
    place or return a dict merged into it), then the resume state ``state_path`` is written atomically.
    At the end ``ckpt_path`` holds the model state_dict and ``meta`` plus ``epochs``, ``seed``, ``steps``,
    ``final_loss`` (mean over the last epoch) and ``epoch_losses``; the resume state is removed.

    ``resume=True`` with ``state_path`` present continues after its epoch if the state was written with the
    same ``meta``, ``epochs``, ``seed``, steps per epoch and world size; otherwise (or when it is unreadable)
    it is ignored with a warning. The CSV log (``epoch,step,loss,lr``; ``step`` global, 1-based; ``lr`` of
    the first group, as used by that step) is rewritten on a fresh start and, on resume, rewritten from the
    rows the state holds (the epochs it covers), then appended. Losses are read back every ``sync_every``
    steps, so a non-finite loss raises FloatingPointError then.

    ``dist`` (:class:`c2am.distributed.DistInfo`) is the process layout and the device, resolved once by the
    stage. With world_size > 1, ``step_fn`` gets the model inside DistributedDataParallel with synchronised
    BatchNorm, while ``on_epoch_end`` gets the unwrapped model and runs on every rank (so ``meta`` stays
    identical; a callback that writes files should check the rank). Only rank 0 writes files.
    """
    device = dist.device
    ckpt_path, state_path, log_csv = Path(ckpt_path), Path(state_path), Path(log_csv)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"{desc}: the data loader yields no batches (dataset smaller than one batch?)")
    if getattr(loader, "persistent_workers", False):
        log.warning("%s: persistent_workers=True keeps worker RNG state across epochs; resume won't be exact", desc)
    amp_on = use_amp(device, amp)
    model.to(device)
    if amp_on:
        model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_on)

    initial_meta = dict(meta)
    run = {"meta": initial_meta, "epochs": int(epochs), "seed": int(seed), "steps_per_epoch": steps_per_epoch,
           "world_size": dist.world_size}
    start_epoch, epoch_losses, meta = 0, [], dict(meta)
    log_rows: list[list[str]] = []  # every CSV row so far, kept in the resume state
    restored = None
    if resume and state_path.is_file():
        restored = _load_resume_state(state_path, run, model, optimizer, scheduler, scaler)
    if restored is not None:
        start_epoch, meta, epoch_losses, log_rows = restored
        log.info("%s: resuming from %s after epoch %d/%d", desc, state_path, start_epoch, epochs)
    elif resume:
        log.info("%s: no resume state at %s; starting fresh", desc, state_path)
    train_model = distributed.wrap_ddp(model, dist)
    if dist.distributed:
        log.info("%s: DistributedDataParallel over %d processes (rank %d)", desc, dist.world_size, dist.rank)
    if dist.is_main:
        _prepare_csv(log_csv, log_rows)

    with open(log_csv, "a", newline="") if dist.is_main else contextlib.nullcontext() as csv_file:
        writer = csv.writer(csv_file) if dist.is_main else None
        for epoch in range(start_epoch + 1, epochs + 1):
            t0 = time.perf_counter()
            reseed_epoch(seed, epoch, loader, rank=dist.rank)
            train_model.train()
            pending, total = [], 0.0
            bar = tqdm(loader, desc=f"{desc} {epoch}/{epochs}", total=steps_per_epoch, mininterval=1.0, leave=False,
                       disable=not dist.is_main)
            data_s, t_batch = 0.0, time.perf_counter()  # the wait for the loader, for bench/profile_run.py
            for i, batch in enumerate(bar):
                data_s += time.perf_counter() - t_batch
                step = (epoch - 1) * steps_per_epoch + i + 1
                lr = optimizer.param_groups[0]["lr"]
                batch = to_device(batch, device, channels_last=amp_on)
                optimizer.zero_grad(set_to_none=True)
                with autocast(device, amp_on):
                    loss = step_fn(train_model, batch)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if scheduler is not None:
                    scheduler.step()
                pending.append((epoch, step, loss.detach(), lr))
                if len(pending) >= sync_every:
                    total += _log_rows(writer, csv_file, pending, bar, log_rows)
                t_batch = time.perf_counter()
            if pending:
                total += _log_rows(writer, csv_file, pending, bar, log_rows)
            bar.close()
            epoch_losses.append(total / steps_per_epoch)

            if on_epoch_end is not None:
                update = on_epoch_end(epoch, model, meta)
                if update:
                    meta.update(update)
            t_save = time.perf_counter()
            if dist.is_main:
                save_checkpoint(
                    state_path,
                    cpu_state_dict(model),
                    meta,
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict() if scheduler is not None else {},
                    scaler=scaler.state_dict(),
                    epoch=epoch,
                    run=run,
                    epoch_losses=epoch_losses,
                    log_rows=log_rows,
                )
            now = time.perf_counter()
            log.info(
                "%s epoch %d/%d: mean loss %.4f, lr %.3g, %.1f s (data %.1f s, checkpoint %.1f s)",
                desc, epoch, epochs, epoch_losses[-1], optimizer.param_groups[0]["lr"], now - t0, data_s, now - t_save,
            )

    final_meta = {
        **meta,
        "epochs": int(epochs),
        "seed": int(seed),
        "steps": int(epochs) * steps_per_epoch,
        "final_loss": epoch_losses[-1] if epoch_losses else float("nan"),
        "epoch_losses": [float(x) for x in epoch_losses],
    }
    if dist.is_main:
        save_checkpoint(ckpt_path, cpu_state_dict(model), final_meta)
        if state_path.is_file():
            os.remove(state_path)
        log.info("%s: wrote %s (final loss %.4f)", desc, ckpt_path, final_meta["final_loss"])
    distributed.barrier()  # every rank returns only once the checkpoint exists
    return final_meta
