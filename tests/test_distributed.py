"""Training on several processes (torchrun, DDP) takes the steps one process takes on the same global batches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from handbook.device import seed_everything
from handbook.distributed import default_loss_weight, init_distributed, shard_batch
from handbook.metrics import evaluate_model
from handbook.models import SASRec
from handbook.train import fit, lr_lambda

MAX_LEN = 6
BATCH_SIZE = 5  # odd, so two ranks get unequal shards; the last batch has 1 row: one rank idles
EPOCHS = 3
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def toy_sequences() -> list[np.ndarray]:
    """Random sequences of unequal lengths, so shards hold unequal numbers of labels."""
    rng = np.random.default_rng(7)
    return [rng.integers(1, 21, size=int(n)) for n in rng.integers(3, 10, size=15)]


def toy_batches(epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The global batches of one epoch, reshuffled from the epoch's seed: the same on every rank."""
    return SASRec.make_batches(toy_sequences(), MAX_LEN, BATCH_SIZE, seed=epoch)


def toy_validate(model: torch.nn.Module) -> dict[str, float]:
    """Validation on the last item of each toy sequence."""
    seqs = toy_sequences()
    histories = np.array([np.r_[np.zeros(MAX_LEN), s[:-1]][-MAX_LEN:] for s in seqs], dtype=np.int64)
    return evaluate_model(model, histories, np.array([s[-1] for s in seqs]), ks=(10,))


def toy_model() -> SASRec:
    """A dropout-free SASRec (dropout masks would differ per rank by design)."""
    seed_everything(0)
    model = SASRec(n_items=20, max_len=MAX_LEN, hidden=16, n_layers=1, n_heads=2, dropout=0.0)
    # Frozen: the key part of this bias has a zero gradient in exact arithmetic (softmax
    # ignores a shift), so Adam would amplify float noise that differs with summation order.
    model.blocks[0].attn.qkv.bias.requires_grad_(False)
    return model


def train_toy(checkpoint_dir: Path | None = None):
    """`toy_model` trained for a few epochs with validation and early stopping."""
    model = toy_model()
    result = fit(
        model, toy_batches, toy_validate, epochs=EPOCHS, lr=1e-2, warmup_steps=2, schedule="cosine",
        patience=1, device="cpu", seed=0, checkpoint_dir=checkpoint_dir, show_progress=False,
    )  # fmt: skip
    return model, result


def run_rank(out_dir: str) -> None:
    """Body of each torchrun process: train, then save losses and parameters per rank."""
    torch.set_num_threads(1)
    model, result = train_toy(Path(out_dir) / "ckpt")
    rank = int(os.environ["RANK"])
    payload = {
        "step_losses": result.step_losses,
        "train_losses": result.train_losses,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "world_size": result.world_size,
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }
    torch.save(payload, Path(out_dir) / f"rank{rank}.pt")
    from handbook.distributed import shutdown

    shutdown()


def test_two_processes_match_one_process(tmp_path) -> None:
    batches = [b for e in range(EPOCHS) for b in toy_batches(e)]
    assert any(b[0].shape[0] < 2 for b in batches)  # the empty-shard path is exercised
    assert any((b[1][0::2] != 0).sum() != (b[1][1::2] != 0).sum() for b in batches)

    script = tmp_path / "worker.py"
    script.write_text(
        f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        f"from test_distributed import run_rank\nrun_rank({str(tmp_path)!r})\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    model, single = train_toy()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for out in ranks:
        assert out["world_size"] == 2
        assert len(out["step_losses"]) == len(single.step_losses)
        np.testing.assert_allclose(out["step_losses"], single.step_losses, rtol=0, atol=1e-5)
        # the same validation metrics on every rank: early stopping chose the same epoch
        assert (out["best_epoch"], out["epochs_run"]) == (single.best_epoch, single.epochs_run)
        for name, value in model.state_dict().items():
            torch.testing.assert_close(out["state"][name], value, rtol=0, atol=1e-5)
    for name in model.state_dict():  # the ranks hold identical parameters
        assert torch.equal(ranks[0]["state"][name], ranks[1]["state"][name])
    assert (tmp_path / "ckpt" / "best.pt").exists() and (tmp_path / "ckpt" / "history.json").exists()


def test_one_process_is_the_plain_loop(monkeypatch) -> None:
    # Without torchrun, fit is the plain AdamW loop on the model itself: bit for bit.
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    assert not init_distributed("cpu").is_distributed
    model, result = train_toy()
    assert result.world_size == 1

    reference = toy_model()
    optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.0)
    n_steps = len(toy_batches(0))
    total = n_steps * EPOCHS
    losses = []
    for epoch in range(result.epochs_run):
        reference.train()
        for batch in toy_batches(epoch):
            scale = lr_lambda(len(losses), total_steps=total, warmup_steps=2, schedule="cosine")
            for group in optimizer.param_groups:
                group["lr"] = 1e-2 * scale
            optimizer.zero_grad(set_to_none=True)
            loss = reference.loss(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
        if epoch + 1 == result.best_epoch:
            best = {k: v.clone() for k, v in reference.state_dict().items()}
    assert result.step_losses == losses
    for name, value in model.state_dict().items():
        assert torch.equal(value, best[name]), name


def test_shard_batch_splits_rows_like_tensor_split() -> None:
    batch = (torch.arange(10).view(5, 2), torch.tensor([[0, 1], [2, 0], [0, 0], [3, 4], [5, 0]]))
    first, second = shard_batch(batch, 0, 2), shard_batch(batch, 1, 2)
    assert first[0].shape[0] == 3 and second[0].shape[0] == 2
    assert torch.equal(torch.cat([first[1], second[1]]), batch[1])
    # the default weight counts labels (nonzero entries of the second tensor), not rows
    assert default_loss_weight(first) == 2 and default_loss_weight(second) == 3
    assert default_loss_weight(batch) == default_loss_weight(first) + default_loss_weight(second)
    assert shard_batch({"x": batch[0]}, 6, 8)["x"].shape[0] == 0  # more ranks than rows: empty shard
    assert shard_batch(batch, 0, 1) is batch


def test_torchrun_variables_must_be_complete(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        init_distributed("cpu")


def test_experiment_under_torchrun_writes_once(tmp_path) -> None:
    # Two ranks run `python -m handbook.experiment`; rank 0 alone tests and writes each model's file.
    import json

    from handbook.experiment import run_experiment

    tiny = {"epochs": 1, "hidden": 8, "n_layers": 1, "max_len": 5, "batch_size": 1024, "dropout": 0.0}
    argv = ["ml-100k", "--models", "most-popular,sasrec", "--out", str(tmp_path), "--device", "cpu", "--no-progress"]
    argv += [f"-o{key}={value}" for key, value in tiny.items()]
    script = tmp_path / "reproduce.py"
    script.write_text(f"import sys\nfrom handbook.experiment import main\nsys.exit(main({argv!r}))\n")
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    written = sorted(p.name for p in (tmp_path / "ml-100k").iterdir())
    assert written == ["most-popular.json", "most-popular.ranks.npy", "sasrec.json", "sasrec.ranks.npy"]
    ddp = json.loads((tmp_path / "ml-100k" / "sasrec.json").read_text())
    assert ddp["world_size"] == 2 and ddp["command"].startswith("torchrun --nproc_per_node=2 ")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = run_experiment("sasrec", "ml-100k", device="cpu", out_dir=tmp_path / "single", **tiny)
    finally:
        torch.set_num_threads(threads)
    assert single["world_size"] == 1
    # the same training steps up to float summation order: the same ranking metrics, bar a tie or two
    for key, value in single["test"].items():
        assert abs(ddp["test"][key] - value) <= 3e-3, key
    assert ddp["validation"]["history"][0]["train_loss"] == pytest.approx(
        single["validation"]["history"][0]["train_loss"], abs=1e-5
    )
