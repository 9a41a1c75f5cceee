"""DDP on the CPU (gloo, 2 processes): one C2AM step and a short fit() equal one process on the global batch.

The 2-process runs happen once per module (``ddp_runs``): the spawned workers write their results to files
that the tests compare against single-process references computed here. With the gathered pooled vectors
and synchronised BatchNorm the only differences are float summation order:

* "stub" trunk (conv-BN-ReLU, non-negative features, pooled cosines 0.3-0.99): loss within 1e-5, every
  gradient and updated weight within rtol 1e-4 / atol 1e-6 (float32 noise is ~1e-6 relative here).
* "lite0" trunk (build_trunk("lite0", "none"), 32 px; exercises the BatchNormAct2d conversion through 49
  synchronised BNs): untrained, with batch statistics over 8 images of 2x2 positions and pooled vectors
  that are nearly orthogonal (cosines just above the 5e-4 clamp, where d(-log s)/ds = -1/s amplifies
  noise), its float32 gradients are themselves ill-conditioned: one process in float32 differs from the
  same process in float64 by ~5e-3 (relative norm, stem conv). So the DDP gradients must lie within 3x
  that measured float32 noise floor (over all parameters together), and each tensor within 2e-2 relative
  norm; a missing gather (loss off by >25%), unsynchronised BN or a wrong world-size factor (x2) are far
  outside both.
"""

import csv
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from c2am import distributed
from c2am.distributed import (
    DistBatchNorm,
    convert_sync_batchnorm,
    gather_with_grad,
    init_from_env,
    per_process_batch,
    wrap_ddp,
)
from c2am.io import load_checkpoint
from c2am.losses import c2am_loss
from c2am.models.backbone import build_trunk
from c2am.models.c2am_net import C2AM
from c2am.losses import c2am_step
from c2am.training import epoch_generator, fit, make_poly_scheduler, make_sgd, resume_state_path

torch.set_num_threads(1)

WORLD = 2
GLOBAL_BATCH = 8
ALPHA = 0.25
RTOL, ATOL = 1e-4, 1e-6


# ----------------------------------------------------------------------------- shared setups (workers + references)


TRUNKS = ("stub", "lite0")


class StubTrunk(nn.Module):
    """Two conv-BN-ReLU stages: non-negative features, so the contrastive loss is well conditioned."""

    channels = (8, 8)

    def __init__(self):
        super().__init__()
        self.layer3 = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer4 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())

    def forward(self, x):
        f3 = self.layer3(x)
        return f3, self.layer4(f3)


def c2am_setup(trunk: str):
    """A seeded C2AM, its optimiser, and the global batch of 8 images of 32 px (varied colour scales)."""
    torch.manual_seed(0)
    model = C2AM(StubTrunk() if trunk == "stub" else build_trunk("lite0", "none"))
    opt = make_sgd(model.backbone_parameters(), model.head_parameters(), lr=0.05, head_lr_mult=10)
    g = torch.Generator().manual_seed(1)
    images = torch.rand(GLOBAL_BATCH, 3, 32, 32, generator=g) * torch.rand(GLOBAL_BATCH, 3, 1, 1, generator=g)
    return model, opt, images


class FixedData(Dataset):
    """Deterministic samples, no augmentation: any split of a batch over ranks sees the same pixels."""

    def __init__(self, n=8):
        g = torch.Generator().manual_seed(5)
        self.x = torch.rand(n, 3, 6, 6, generator=g)
        self.y = torch.rand(n, 1, 6, 6, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        return self.head(self.backbone(x))


def mse_step(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def run_fit(out_dir, tag, loader, dist):
    torch.manual_seed(3)
    model = BNNet()
    opt = make_sgd(model.backbone, model.head, lr=0.1)
    sched = make_poly_scheduler(opt, 2 * len(loader))
    ckpt = out_dir / f"{tag}.pt"
    return fit(model, loader, opt, sched, 2, mse_step, dist=dist, ckpt_path=ckpt, state_path=resume_state_path(ckpt),
               resume=True, amp=False, log_csv=out_dir / f"{tag}.csv", meta={"kind": "c2am", "m": 1}, seed=7,
               desc=tag)


# ----------------------------------------------------------------------------- the spawned worker


def _worker(rank, port, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = init_from_env("cpu")
    try:
        for trunk in TRUNKS:
            c2am_worker_step(info, trunk, out_dir)

        # fit() under DDP: 8 samples, per-rank batch 2 (global 4), no shuffle, so global batches are {0..3}, {4..7}.
        data = FixedData()
        sampler = DistributedSampler(data, num_replicas=WORLD, rank=rank, shuffle=False, drop_last=True)
        loader = DataLoader(data, batch_size=2, sampler=sampler, drop_last=True, generator=epoch_generator(7, 0))
        meta = run_fit(out_dir, "ddp", loader, info)
        torch.save({"meta": meta}, out_dir / f"fit_rank{rank}.pt")
    finally:
        distributed.cleanup()


def c2am_worker_step(info, trunk, out_dir):
    """One C2AM step on this rank's share of the global batch (rank order = batch order); results to a file."""
    model, opt, images = c2am_setup(trunk)
    share = per_process_batch(GLOBAL_BATCH, info.world_size)
    local = images[info.rank * share:(info.rank + 1) * share]
    ddp = wrap_ddp(model, info)
    loss = c2am_step(ALPHA)(ddp, local)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    torch.save({"info": [info.rank, info.world_size, info.local_rank, info.is_main, str(info.device)],
                "loss": loss.detach(), "grads": grads,
                "state": {k: v.clone() for k, v in model.state_dict().items()},
                "bn_types": sorted({type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__}),
                "drop_act": [type(m.act).__name__ for m in model.modules() if isinstance(m, DistBatchNorm)]},
               out_dir / f"{trunk}_rank{info.rank}.pt")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), out_dir), nprocs=WORLD, join=True)
    return out_dir


# ----------------------------------------------------------------------------- C2AM step equivalence


@pytest.fixture(scope="module", params=TRUNKS)
def c2am_case(request, ddp_runs):
    """(trunk, single-process reference on the whole global batch of 8, the two ranks' results)."""
    trunk = request.param
    model, opt, images = c2am_setup(trunk)
    model.train()
    v_f, v_b, _ = model(images)
    loss = c2am_loss(v_f, v_b, ALPHA)[0]
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    # what a rank would compute without the gather: the loss over its own 4 of the 8 vectors
    half = GLOBAL_BATCH // WORLD
    local_loss = c2am_loss(v_f[:half].detach(), v_b[:half].detach(), ALPHA)[0]
    ref = {"loss": loss.detach(), "grads": grads, "state": model.state_dict(), "local_loss": local_loss}
    if trunk == "lite0":
        ref["noise_floor"] = global_rel_err(grads, float64_grads(trunk))
    return trunk, ref, _load_ranks(ddp_runs, trunk)


def float64_grads(trunk: str) -> dict:
    """Gradients of the same single-process step in float64 (the loss itself still casts to float32)."""
    model, _, images = c2am_setup(trunk)
    model.double()
    v_f, v_b, _ = model(images.double())
    c2am_loss(v_f, v_b, ALPHA)[0].backward()
    return {n: p.grad.detach().float() for n, p in model.named_parameters()}


def global_rel_err(got: dict, ref: dict) -> float:
    """||got - ref|| / ||ref|| over all tensors together."""
    num = sum(((got[k].double() - v.double()) ** 2).sum() for k, v in ref.items())
    den = sum((v.double() ** 2).sum() for v in ref.values())
    return float((num / den) ** 0.5)


def _load_ranks(out_dir, prefix):
    return [torch.load(out_dir / f"{prefix}_rank{r}.pt", weights_only=False) for r in range(WORLD)]


def assert_tensors_match(got: torch.Tensor, ref: torch.Tensor, trunk: str, name: str) -> None:
    if not ref.is_floating_point():
        assert torch.equal(got, ref), name
    elif trunk == "stub":
        torch.testing.assert_close(got, ref, rtol=RTOL, atol=ATOL, msg=name)
    else:  # ill-conditioned (see the module docstring): relative norm error, tensors at the noise floor skipped
        scale = ref.norm().item()
        if scale > 1e-4:
            assert (got - ref).norm().item() <= 2e-2 * scale, name


def test_worker_dist_info(ddp_runs):
    infos = [r["info"] for r in _load_ranks(ddp_runs, "stub")]
    assert infos == [[0, 2, 0, True, "cpu"], [1, 2, 1, False, "cpu"]]


def test_c2am_step_loss_equals_single_process_on_global_batch(c2am_case):
    trunk, ref, ranks = c2am_case
    for r in ranks:
        torch.testing.assert_close(r["loss"], ref["loss"], rtol=1e-5, atol=1e-6)
    # guard: a rank's own 4 vectors give another loss, so the match above needs the gather
    assert abs(float(ref["local_loss"]) - float(ref["loss"])) > 1e-2


def test_c2am_step_gradients_and_update_equal_single_process(c2am_case):
    trunk, ref, ranks = c2am_case
    ref_grads, ref_state = ref["grads"], ref["state"]
    # every parameter is compared: 2 convs + 2 BNs (stub) or the whole lite0 trunk, plus the head conv + BN
    assert len(ref_grads) == 9 if trunk == "stub" else len(ref_grads) > 100
    for r in ranks:
        assert r["grads"].keys() == ref_grads.keys()
        if trunk == "lite0":
            assert 0 < ref["noise_floor"] < 2e-2
            assert global_rel_err(r["grads"], ref_grads) <= 3 * ref["noise_floor"]
        for name, g in ref_grads.items():
            assert_tensors_match(r["grads"][name], g, trunk, name)
        # updated weights and BN running statistics (those need the global batch statistics)
        assert r["state"].keys() == ref_state.keys()
        for name, v in ref_state.items():
            assert_tensors_match(r["state"][name], v, trunk, name)
    # the head's gradient is not trivially small (the comparison has teeth)
    assert ref_grads["head.0.weight"].abs().max() > 1e-3


def test_worker_converted_batchnorm_keeps_timm_activation(ddp_runs):
    stub, lite0 = _load_ranks(ddp_runs, "stub")[0], _load_ranks(ddp_runs, "lite0")[0]
    assert stub["bn_types"] == lite0["bn_types"] == ["DistBatchNorm"]
    assert "ReLU6" in lite0["drop_act"] and "Identity" in lite0["drop_act"]  # BN+act layers; plain BNs


# ----------------------------------------------------------------------------- fit() under DDP


def test_ddp_fit_matches_single_process_and_only_rank0_writes(ddp_runs, tmp_path):
    loader = DataLoader(FixedData(), batch_size=4, shuffle=False, drop_last=True, generator=epoch_generator(7, 0))
    ref_meta = run_fit(tmp_path, "single", loader, distributed.single("cpu"))
    ref = load_checkpoint(tmp_path / "single.pt", kind="c2am")
    got = load_checkpoint(ddp_runs / "ddp.pt", kind="c2am")

    assert got["state_dict"].keys() == ref["state_dict"].keys()  # no "module." prefix
    for name, v in ref["state_dict"].items():
        if v.is_floating_point():
            torch.testing.assert_close(got["state_dict"][name], v, rtol=RTOL, atol=ATOL, msg=name)
        else:
            assert torch.equal(got["state_dict"][name], v), name
    assert got["state_dict"]["backbone.1.num_batches_tracked"].item() == 4
    assert not resume_state_path(ddp_runs / "ddp.pt").exists()

    with open(ddp_runs / "ddp.csv", newline="") as f:
        rows = list(csv.reader(f))
    with open(tmp_path / "single.csv", newline="") as f:
        ref_rows = list(csv.reader(f))
    assert len(rows) == len(ref_rows) == 1 + 4  # one header and 4 steps: written once, by rank 0
    for row, ref_row in zip(rows[1:], ref_rows[1:]):
        assert row[:2] == ref_row[:2] and row[3] == ref_row[3]
        assert float(row[2]) == pytest.approx(float(ref_row[2]), rel=1e-5)  # mean over ranks = global mean
    for r in _load_ranks(ddp_runs, "fit"):
        assert r["meta"]["epoch_losses"] == pytest.approx(ref_meta["epoch_losses"], rel=1e-5)
        assert r["meta"]["steps"] == ref_meta["steps"] == 4


# ----------------------------------------------------------------------------- single-process behaviour


def test_init_from_env_without_torchrun_is_single_process(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    info = init_from_env("cpu")
    assert (info.rank, info.world_size, info.local_rank, info.is_main) == (0, 1, 0, True)
    assert info.device == torch.device("cpu") and not info.distributed
    assert not torch.distributed.is_initialized()


def test_init_from_env_names_missing_variable(monkeypatch):
    from c2am.io import InputError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(InputError, match="MASTER_ADDR"):
        init_from_env("cpu")


def test_gather_and_wrap_are_identities_in_one_process():
    x = torch.rand(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x
    net = BNNet()
    assert wrap_ddp(net, distributed.single("cpu")) is net
    assert isinstance(net.backbone[1], nn.BatchNorm2d) and not isinstance(net.backbone[1], DistBatchNorm)


def test_dist_batchnorm_outside_a_group_is_batchnorm():
    torch.manual_seed(0)
    ref = BNNet()
    conv = BNNet()
    conv.load_state_dict(ref.state_dict())
    conv = convert_sync_batchnorm(conv, "cpu")
    assert isinstance(conv.backbone[1], DistBatchNorm)
    assert conv.backbone[1].weight is not None and conv.state_dict().keys() == ref.state_dict().keys()
    x = torch.rand(4, 3, 5, 5)
    torch.testing.assert_close(conv(x), ref(x))
    torch.testing.assert_close(conv.backbone[1].running_var, ref.backbone[1].running_var)


def test_per_process_batch_must_divide():
    from c2am.io import InputError

    assert per_process_batch(8, 2) == 4
    with pytest.raises(InputError, match="divisible"):
        per_process_batch(6, 4)
