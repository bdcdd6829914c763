"""The shared training loop: learning, early stopping, best-state restore, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from handbook.metrics import evaluate_model
from handbook.models import SASRec
from handbook.train import _optimizer, fit, load_checkpoint, lr_lambda, save_checkpoint

# Three fixed sequences over 12 items; each next item is determined by the history.
TOY_SEQUENCES = [[1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 1, 3], [5, 4, 3, 2, 1, 12, 11]]
MAX_LEN = 8


def _toy_eval_arrays() -> tuple[np.ndarray, np.ndarray]:
    histories = np.array([[0] * (MAX_LEN - len(s) + 1) + s[:-1] for s in TOY_SEQUENCES])
    targets = np.array([s[-1] for s in TOY_SEQUENCES])
    return histories, targets


def _toy_sasrec(seed: int = 0) -> SASRec:
    torch.manual_seed(seed)
    return SASRec(n_items=12, max_len=MAX_LEN, hidden=32, n_layers=1, n_heads=2, dropout=0.0)


def test_sasrec_memorises_toy_sequences(tmp_path) -> None:
    model = _toy_sasrec()
    histories, targets = _toy_eval_arrays()
    result = fit(
        model,
        lambda epoch: SASRec.make_batches(TOY_SEQUENCES, MAX_LEN, batch_size=2, seed=epoch),
        lambda m: evaluate_model(m, histories, targets, ks=(1, 10)),
        epochs=40,
        lr=1e-2,
        warmup_steps=4,
        schedule="cosine",
        patience=None,
        eval_every=5,
        device="cpu",
        seed=0,
        checkpoint_dir=tmp_path,
        show_progress=False,
    )
    losses = result.train_losses
    assert losses[-1] < 0.2 * losses[0]
    assert result.best_metrics["recall@1"] == 1.0
    assert evaluate_model(model, histories, targets, ks=(1,))["recall@1"] == 1.0
    assert (tmp_path / "best.pt").exists()
    saved = json.loads((tmp_path / "history.json").read_text())
    assert len(saved) == result.epochs_run == 40
    assert "val_ndcg@10" in saved[4] and "val_ndcg@10" not in saved[0]


def _fit_toy(model: SASRec, checkpoint_dir, evaluate, **kwargs):
    return fit(
        model,
        lambda epoch: SASRec.make_batches(TOY_SEQUENCES, MAX_LEN, batch_size=2, seed=epoch),
        evaluate, epochs=6, lr=1e-2, warmup_steps=2, schedule="cosine", patience=None, device="cpu",
        seed=0, checkpoint_dir=checkpoint_dir, show_progress=False, **kwargs,
    )  # fmt: skip


def test_a_killed_run_resumes_where_it_stopped(tmp_path) -> None:
    histories, targets = _toy_eval_arrays()

    def evaluate(m: nn.Module) -> dict[str, float]:
        return evaluate_model(m, histories, targets, ks=(10,))

    def model() -> SASRec:  # dropout on: a resumed run must also restore the random state
        torch.manual_seed(0)
        return SASRec(n_items=12, max_len=MAX_LEN, hidden=32, n_layers=1, n_heads=2, dropout=0.3)

    whole = model()
    straight = _fit_toy(whole, tmp_path / "straight", evaluate)
    assert not (tmp_path / "straight" / "last.pt").exists()  # removed once training is over

    calls = 0

    def killed_at_epoch_4(m: nn.Module) -> dict[str, float]:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise KeyboardInterrupt  # as a kill during epoch 4's validation
        return evaluate(m)

    with pytest.raises(KeyboardInterrupt):
        _fit_toy(model(), tmp_path / "split", killed_at_epoch_4)
    assert (tmp_path / "split" / "last.pt").exists()
    with pytest.raises(ValueError, match="last.pt was saved by a run with other settings .*lr 0.01 -> 0.02"):
        fit(model(), [], evaluate, epochs=6, lr=2e-2, checkpoint_dir=tmp_path / "split", device="cpu")

    resumed_model = model()
    resumed = _fit_toy(resumed_model, tmp_path / "split", evaluate)
    assert [row["epoch"] for row in resumed.history] == list(range(1, 7))
    assert resumed.step_losses == pytest.approx(straight.step_losses, abs=1e-6)
    assert resumed.best_epoch == straight.best_epoch
    torch.testing.assert_close(resumed_model.state_dict(), whole.state_dict())


class _Scripted(nn.Module):
    """A one-parameter model whose validation score follows a script, to test the bookkeeping."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return ((self.w - batch[0]) ** 2).mean()


def test_early_stopping_and_best_state_restored() -> None:
    model = _Scripted()
    script = iter([0.1, 0.5, 0.4, 0.5, 0.3, 0.9, 0.9])
    seen: list[float] = []

    def evaluate(m: nn.Module) -> dict[str, float]:
        seen.append(m.w.item())
        return {"ndcg@10": next(script)}

    batches = [(torch.full((4,), float(i)),) for i in range(1, 4)]
    result = fit(
        model, batches, evaluate, epochs=20, lr=0.1, patience=3, device="cpu", show_progress=False
    )
    # Best at epoch 2; epochs 3, 4, 5 do not improve strictly (0.5 ties), so it stops after 5.
    assert result.stopped_early and result.epochs_run == 5 and len(seen) == 5
    assert result.best_epoch == 2 and result.best_metrics == {"ndcg@10": 0.5}
    assert model.w.item() == seen[1] != seen[4]
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4, 5]


def test_eval_every_and_missing_metric() -> None:
    model = _Scripted()
    calls: list[int] = []

    def evaluate(m: nn.Module) -> dict[str, float]:
        calls.append(1)
        return {"ndcg@10": float(len(calls))}

    result = fit(
        model,
        [(torch.ones(2),)],
        evaluate,
        epochs=7,
        eval_every=3,
        device="cpu",
        show_progress=False,
    )
    assert len(calls) == 3 and result.best_epoch == 7  # epochs 3, 6 and the last
    with pytest.raises(KeyError, match="ndcg@10"):
        fit(model, [(torch.ones(2),)], lambda m: {"recall@10": 1.0}, epochs=1, show_progress=False)


class _WithCodes(nn.Module):
    """A one-parameter model beside a fixed table built from the data, as RPG's semantic IDs."""

    def __init__(self, codes: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.register_buffer("codes", codes)

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return ((self.w * self.codes.float().mean() - batch[0]) ** 2).mean()


def test_resuming_over_other_data_derived_tables_is_refused(tmp_path) -> None:
    calls = iter(range(9))

    def kill_at_second(m: nn.Module) -> dict[str, float]:
        if next(calls) == 1:
            raise KeyboardInterrupt
        return {"ndcg@10": 0.0}

    kwargs = {"epochs": 3, "device": "cpu", "checkpoint_dir": tmp_path, "show_progress": False}
    with pytest.raises(KeyboardInterrupt):
        fit(_WithCodes(torch.tensor([1, 2])), [(torch.ones(2),)], kill_at_second, **kwargs)
    with pytest.raises(ValueError, match="whose 'codes' differs from this run's"):
        fit(_WithCodes(torch.tensor([1, 3])), [(torch.ones(2),)], lambda m: {"ndcg@10": 0.0}, **kwargs)
    result = fit(_WithCodes(torch.tensor([1, 2])), [(torch.ones(2),)], lambda m: {"ndcg@10": 0.0}, **kwargs)
    assert result.epochs_run == 3 and len(result.history) == 3  # the same tables resume


def test_lr_schedules() -> None:
    kwargs = {"total_steps": 10, "warmup_steps": 2}
    assert lr_lambda(0, schedule="constant", **kwargs) == 0.5
    assert lr_lambda(5, schedule="constant", **kwargs) == 1.0
    assert lr_lambda(2, schedule="cosine", **kwargs) == pytest.approx(1.0)
    assert lr_lambda(10, schedule="cosine", **kwargs) == pytest.approx(0.0)
    assert lr_lambda(6, schedule="linear", **kwargs) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="schedule"):
        lr_lambda(5, schedule="step", **kwargs)


def test_inverse_sqrt_holds_the_peak_then_decays_as_t5s_rsqrt() -> None:
    # T5's rsqrt schedule as TIGER uses it: lr / sqrt(max(step, warm-up)), normalised to the peak
    values = [lr_lambda(step, total_steps=100, warmup_steps=4, schedule="inverse_sqrt") for step in range(16)]
    assert values[:4] == [1.0] * 4  # held, not ramped
    assert values[15] == pytest.approx((4 / 16) ** 0.5)
    assert all(a >= b for a, b in zip(values[:-1], values[1:], strict=True))


def test_adam_couples_weight_decay_to_the_gradient_and_adamw_does_not() -> None:
    # No loss gradient: AdamW only decays the weight (1 - lr * wd); Adam's L2 term becomes the
    # gradient, which its normalisation turns into a full step of lr.
    moved = {}
    for name in ("adam", "adamw"):
        weight = torch.nn.Parameter(torch.ones(1))
        step = _optimizer(name, [weight], lr=0.01, weight_decay=0.1)
        (0.0 * weight).sum().backward()
        step.step()
        moved[name] = 1.0 - weight.item()
    assert moved["adamw"] == pytest.approx(0.01 * 0.1, rel=1e-4)
    assert moved["adam"] == pytest.approx(0.01, rel=1e-4)
    with pytest.raises(ValueError, match="optimizer must be"):
        _optimizer("sgd", [weight], lr=0.01, weight_decay=0.0)


def test_checkpoint_round_trip(tmp_path) -> None:
    model = _toy_sasrec(seed=1).eval()
    histories = torch.as_tensor(_toy_eval_arrays()[0])
    path = save_checkpoint(model, tmp_path / "ckpt" / "model.pt", note="toy")
    other = _toy_sasrec(seed=2).eval()
    assert not torch.equal(other.scores(histories), model.scores(histories))
    info = load_checkpoint(other, path)
    assert torch.equal(other.scores(histories), model.scores(histories))
    assert info["config"]["n_items"] == 12 and info["extra"] == {"note": "toy"}
    with pytest.raises(FileNotFoundError):
        load_checkpoint(other, tmp_path / "missing.pt")


def test_cpu_amp_is_bf16_only_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from handbook import train

    cpu = torch.device("cpu")
    assert train._autocast_dtype(False, cpu) is None and train._autocast_dtype("fp16", cpu) is None
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: True)
    assert train._autocast_dtype("bf16", cpu) is torch.bfloat16 and train._autocast_dtype(True, cpu) is torch.bfloat16
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bf16.*training in fp32"):
        assert train._autocast_dtype("bf16", cpu) is None
    with pytest.raises(ValueError, match="amp must be"):
        train._autocast_dtype("int8", cpu)
