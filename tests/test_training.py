import csv
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from c2am.distributed import single
from c2am.io import load_checkpoint
from c2am.training import (
    epoch_generator,
    fit,
    make_poly_scheduler,
    make_sgd,
    poly_lr_lambda,
)

CPU = single("cpu")

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- poly lr


def test_poly_lr_lambda_hand_values():
    f = poly_lr_lambda(10, power=0.9)
    assert f(0) == 1.0
    assert f(5) == pytest.approx(0.5**0.9)  # 0.535886...
    assert f(5) == pytest.approx(0.5358867, abs=1e-6)
    assert f(9) == pytest.approx(0.1**0.9)  # 0.125893
    assert f(10) == 0.0
    assert f(12) == 0.0  # clamped past the end, never negative or complex
    assert poly_lr_lambda(4, power=1.0)(1) == 0.75


def test_poly_lr_lambda_warmup_hand_values():
    # 10 steps, power 1, warm-up 4: ramp 1/4, 2/4, 3/4, 1 times the linear decay 1, 0.9, 0.8, 0.7, ...
    f = poly_lr_lambda(10, power=1.0, warmup_steps=4)
    assert [f(s) for s in range(5)] == pytest.approx([0.25, 0.45, 0.6, 0.7, 0.6])
    assert f(9) == pytest.approx(0.1)
    assert f(10) == 0.0
    assert poly_lr_lambda(10, power=1.0, warmup_steps=0)(0) == 1.0  # no warm-up: the plain decay


def test_poly_lr_lambda_rejects_bad_warmup():
    with pytest.raises(ValueError, match="warmup_steps"):
        poly_lr_lambda(10, warmup_steps=10)
    with pytest.raises(ValueError, match="warmup_steps"):
        poly_lr_lambda(10, warmup_steps=-1)


def test_poly_lr_lambda_rejects_zero_steps():
    with pytest.raises(ValueError):
        poly_lr_lambda(0)


# ----------------------------------------------------------------------------- SGD groups


class TinyNet(nn.Module):
    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Conv2d(4, 1, 1))

    def forward(self, x):
        return self.head(self.backbone(x))


def _ids(params):
    return {id(p) for p in params}


def test_make_sgd_groups_momentum_and_lrs():
    net = TinyNet()
    opt = make_sgd(net.backbone, net.head, lr=0.01)
    assert [g["name"] for g in opt.param_groups] == ["backbone", "head"]
    backbone, head = opt.param_groups
    # BN affine params are in the backbone group (conv weight + BN weight + BN bias)
    assert _ids(backbone["params"]) == _ids(net.backbone.parameters())
    assert len(backbone["params"]) == 3
    assert _ids(head["params"]) == _ids(net.head.parameters())
    assert backbone["lr"] == pytest.approx(0.01)
    assert head["lr"] == pytest.approx(0.1)
    for g in opt.param_groups:
        assert g["momentum"] == 0.9  # not the weight decay (official bug)
        assert g["weight_decay"] == 1e-4
        assert g["nesterov"] is False


def test_make_sgd_skips_frozen_and_rejects_empty_head():
    net = TinyNet()
    net.backbone[0].weight.requires_grad_(False)
    opt = make_sgd(net.backbone, net.head, lr=0.01)
    assert len(opt.param_groups[0]["params"]) == 2
    for p in net.head.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="head"):
        make_sgd(net.backbone, net.head, lr=0.01)
    with pytest.raises(ValueError, match="head"):
        make_sgd(net.backbone, [], lr=0.01)


def test_make_sgd_rejects_overlap():
    net = TinyNet()
    with pytest.raises(ValueError, match="both"):
        make_sgd(net, net.head, lr=0.01)


def test_make_sgd_no_decay_split():
    net = TinyNet()
    opt = make_sgd(net.backbone, [net.head], lr=0.01, decay_norm_and_bias=False)
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    assert _ids(groups["backbone"]["params"]) == {id(net.backbone[0].weight)}
    assert _ids(groups["backbone_no_decay"]["params"]) == {id(net.backbone[1].weight), id(net.backbone[1].bias)}
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0
    assert groups["head"]["weight_decay"] == 1e-4
    assert groups["head_no_decay"]["lr"] == pytest.approx(0.1)


def test_lambda_lr_follows_poly_after_steps():
    net = TinyNet()
    opt = make_sgd(net.backbone, net.head, lr=0.02, head_lr_mult=10)
    sched = make_poly_scheduler(opt, total_steps=4, power=0.9)
    x = torch.rand(2, 3, 5, 5)
    for t in range(1, 4):
        opt.zero_grad()
        net(x).mean().backward()
        opt.step()
        sched.step()
        factor = (1 - t / 4) ** 0.9
        assert opt.param_groups[0]["lr"] == pytest.approx(0.02 * factor)
        assert opt.param_groups[1]["lr"] == pytest.approx(0.2 * factor)
    # after step 1 the momentum buffer exists: momentum really is in use
    assert "momentum_buffer" in opt.state[net.head[1].weight]


# ----------------------------------------------------------------------------- fit + resume


class NoisyDataset(Dataset):
    """Random inputs whose augmentation draws from the global RNG (like torchvision v2 transforms)."""

    def __init__(self, n=12):
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 3, 6, 6, generator=g)
        self.y = torch.rand(n, 1, 6, 6, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i] + 0.1 * torch.randn(3, 6, 6)
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, self.y[i]


def mse_step(model, batch):
    x, y = batch
    assert x.device == CPU.device
    return ((model(x) - y) ** 2).mean()


def _setup(tmp_path, epochs=3, num_workers=0, tag="run"):
    torch.manual_seed(123)
    model = TinyNet(dropout=0.2)
    loader = DataLoader(
        NoisyDataset(), batch_size=4, shuffle=True, drop_last=True, num_workers=num_workers,
        generator=epoch_generator(7, 0),
    )
    opt = make_sgd(model.backbone, model.head, lr=0.05)
    sched = make_poly_scheduler(opt, total_steps=epochs * len(loader))
    paths = dict(
        ckpt_path=tmp_path / f"{tag}.pt", state_path=tmp_path / f"{tag}.pt.resume", log_csv=tmp_path / f"{tag}.csv"
    )
    return model, loader, opt, sched, paths


def _fit(model, loader, opt, sched, paths, epochs, resume=False, on_epoch_end=None, meta=None):
    return fit(
        model, loader, opt, sched, epochs, mse_step, dist=CPU, resume=resume, amp=True,
        meta=meta or {"kind": "c2am", "lr": 0.05}, seed=7, on_epoch_end=on_epoch_end, **paths,
    )


class Interrupt(Exception):
    pass


def _kill_after(epoch_to_kill):
    def hook(epoch, model, meta):
        if epoch == epoch_to_kill + 1:
            raise Interrupt  # dies during epoch k+1, after the state for epoch k was written
        return {"flag_after": epoch}

    return hook


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.mark.parametrize("num_workers", [0, 1])
def test_resume_is_bit_identical(tmp_path, num_workers):
    model, loader, opt, sched, paths = _setup(tmp_path, num_workers=num_workers, tag="full")
    full_meta = _fit(model, loader, opt, sched, paths, 3, on_epoch_end=_kill_after(99))
    full = load_checkpoint(paths["ckpt_path"], kind="c2am")
    assert not paths["state_path"].exists()  # resume state removed at the end

    # interrupted run: killed in epoch 2 (state of epoch 1 on disk), then resumed in a fresh "process"
    model, loader, opt, sched, paths = _setup(tmp_path, num_workers=num_workers, tag="resumed")
    with pytest.raises(Interrupt):
        _fit(model, loader, opt, sched, paths, 3, on_epoch_end=_kill_after(1))
    assert paths["state_path"].exists() and not paths["ckpt_path"].exists()
    assert load_checkpoint(paths["state_path"], kind="c2am")["epoch"] == 1
    torch.manual_seed(999)  # a different global RNG state must not matter
    paths["log_csv"].unlink()  # as Snakemake does: it deletes an incomplete job's outputs before the rerun
    model, loader, opt, sched, paths = _setup(tmp_path, num_workers=num_workers, tag="resumed")
    resumed_meta = _fit(model, loader, opt, sched, paths, 3, resume=True, on_epoch_end=_kill_after(99))
    resumed = load_checkpoint(paths["ckpt_path"], kind="c2am")

    assert full["state_dict"].keys() == resumed["state_dict"].keys()
    for k, v in full["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), k
    # training really moved the weights, and BN statistics were tracked
    assert resumed["state_dict"]["backbone.1.num_batches_tracked"].item() == 9
    assert resumed_meta == full_meta
    assert full_meta["flag_after"] == 3 and full_meta["epochs"] == 3 and full_meta["seed"] == 7
    assert full_meta["steps"] == 9 and full_meta["lr"] == 0.05
    assert math.isfinite(full_meta["final_loss"]) and full_meta["final_loss"] == full_meta["epoch_losses"][-1]
    assert full["meta"] == full_meta

    # the CSV of the resumed run: one header, rows of epoch 2 written before the kill truncated, same content
    full_rows, resumed_rows = _read_csv(tmp_path / "full.csv"), _read_csv(tmp_path / "resumed.csv")
    assert resumed_rows[0] == ["epoch", "step", "loss", "lr"]
    assert resumed_rows == full_rows
    assert [int(r[1]) for r in full_rows[1:]] == list(range(1, 10))
    assert [int(r[0]) for r in full_rows[1:]] == [1] * 3 + [2] * 3 + [3] * 3
    assert float(full_rows[1][3]) == pytest.approx(0.05)
    assert float(full_rows[5][3]) == pytest.approx(0.05 * (1 - 4 / 9) ** 0.9, rel=1e-5)


def test_different_seed_or_no_reseed_differs(tmp_path):
    """Guards the test above: the epochs really do draw randomness (else identity would be trivial)."""
    model, loader, opt, sched, paths = _setup(tmp_path, tag="a")
    _fit(model, loader, opt, sched, paths, 2)
    a = load_checkpoint(paths["ckpt_path"], kind="c2am")["state_dict"]
    model, loader, opt, sched, paths = _setup(tmp_path, tag="b")
    fit(model, loader, opt, sched, 2, mse_step, dist=CPU, resume=False, amp=False,
        meta={"kind": "c2am", "lr": 0.05}, seed=8, **paths)
    b = load_checkpoint(paths["ckpt_path"], kind="c2am")["state_dict"]
    assert not torch.equal(a["head.1.weight"], b["head.1.weight"])


def test_resume_without_state_starts_fresh(tmp_path):
    model, loader, opt, sched, paths = _setup(tmp_path, epochs=1)
    meta = _fit(model, loader, opt, sched, paths, 1, resume=True)
    assert meta["epochs"] == 1 and paths["ckpt_path"].exists()
    assert len(_read_csv(paths["log_csv"])) == 1 + 3


def test_resume_with_changed_settings_starts_fresh(tmp_path, caplog):
    # A config change makes Snakemake rerun the stage: the stale state of the killed run must not be continued.
    model, loader, opt, sched, paths = _setup(tmp_path)
    with pytest.raises(Interrupt):
        _fit(model, loader, opt, sched, paths, 3, on_epoch_end=_kill_after(1))
    model, loader, opt, sched, paths = _setup(tmp_path)
    with caplog.at_level("WARNING"):
        _fit(model, loader, opt, sched, paths, 3, resume=True, meta={"kind": "c2am", "lr": 0.1})
    assert "different settings" in caplog.text and "lr" in caplog.text
    rows = _read_csv(paths["log_csv"])
    assert rows[1][0] == "1" and len(rows) == 1 + 3 * 3  # all three epochs retrained from the start


def test_non_finite_loss_raises(tmp_path):
    model, loader, opt, sched, paths = _setup(tmp_path, epochs=1)

    def bad_step(model, batch):
        return model(batch[0]).mean() * float("nan")

    with pytest.raises(FloatingPointError, match="epoch 1"):
        fit(model, loader, opt, sched, 1, bad_step, dist=CPU, resume=False, amp=False, meta={"kind": "c2am"}, seed=0,
            **paths)


def test_epoch_generator_depends_on_seed_and_epoch():
    a = torch.randperm(20, generator=epoch_generator(1, 1))
    assert torch.equal(a, torch.randperm(20, generator=epoch_generator(1, 1)))
    assert not torch.equal(a, torch.randperm(20, generator=epoch_generator(1, 2)))
    assert not torch.equal(a, torch.randperm(20, generator=epoch_generator(2, 1)))


def _profile_run_module():
    """bench/profile_run.py, imported from its path (bench/ is scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("profile_run", Path(__file__).resolve().parents[1] / "bench/profile_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_epoch_lines_give_the_profile_its_data_and_checkpoint_time(tmp_path, caplog):
    """fit's epoch lines are what bench/profile_run.py reads: a format change there must not silently drop it."""
    model, loader, opt, sched, paths = _setup(tmp_path)
    with caplog.at_level("INFO"):
        _fit(model, loader, opt, sched, paths, 2)
    (tmp_path / "stage.log").write_text(caplog.text)
    epoch_s, data_s, ckpt_s = _profile_run_module().training_split(tmp_path / "stage.log")
    assert caplog.text.count(" s (data ") == 2 and 0 <= data_s <= epoch_s and 0 <= ckpt_s <= epoch_s
    (tmp_path / "hand.log").write_text("x epoch 1/2: mean loss 0.5, lr 0.1, 10.0 s (data 2.5 s, checkpoint 0.5 s)\n"
                                       "x epoch 2/2: mean loss 0.4, lr 0.05, 12.0 s (data 1.5 s, checkpoint 1.0 s)\n")
    assert _profile_run_module().training_split(tmp_path / "hand.log") == (22.0, 4.0, 1.5)
    assert _profile_run_module().training_split(tmp_path / "missing.log") is None


def test_profile_reads_each_jobs_threads_from_the_run_log():
    run_log = """rule train_c2am:
    input: artifacts/dataset/manifest.json
    log: logs/train_c2am.log
    benchmark: benchmarks/train_c2am.tsv
    threads: 2
localrule train_deeplab:
    benchmark: benchmarks/train_deeplab_gt.tsv
    wildcards: labels=gt
    threads: 1
rule report:
    threads: 1
"""
    assert _profile_run_module().job_threads(run_log) == {"train_c2am": 2, "train_deeplab_gt": 1}
