"""One training loop for every model: AdamW, LR schedule, AMP, early stopping, checkpoints.

A model only has to expose ``loss(batch) -> scalar tensor``, where ``batch`` is the
tuple of tensors its data loader yields, already moved to the device. The same loop
trains on several processes under ``torchrun`` (DistributedDataParallel, each rank
on its shard of every global batch): see `handbook.distributed`.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from handbook.device import cpu_has_native_bf16, get_rng_state, seed_everything, set_rng_state
from handbook.distributed import (
    init_distributed,
    loss_weight_fn,
    on_main,
    shard_batch,
    weighted_loss,
    wrap_ddp,
)
from handbook.io import write_json_atomic

Batches = Iterable[Any] | Callable[[int], Iterable[Any]]
Schedule = Literal["cosine", "constant", "linear", "inverse_sqrt"]
Optimizer = Literal["adamw", "adam"]


@dataclass
class TrainResult:
    """What `fit` did: one history row per epoch, and the best validation epoch and metrics."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None  # 1-based epoch whose weights the model holds after fit
    best_metrics: dict[str, float] = field(default_factory=dict)
    metric: str = "ndcg@10"
    stopped_early: bool = False
    epochs_run: int = 0
    seconds: float = 0.0
    step_losses: list[float] = field(default_factory=list)  # loss of every global batch, in order
    world_size: int = 1  # processes that trained together (torchrun)

    @property
    def train_losses(self) -> list[float]:
        """Mean training loss of each epoch."""
        return [row["train_loss"] for row in self.history]


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors nested in tuples, lists and dicts to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(move_to_device(value, device) for value in batch)
    return batch


def lr_lambda(step: int, *, total_steps: int, warmup_steps: int, schedule: Schedule) -> float:
    """LR multiplier at optimizer step `step`: linear warm-up, then constant, linear or cosine decay to 0.

    "inverse_sqrt" is T5's rsqrt schedule, which TIGER trains with (lr 0.01 "for the first 10k
    steps and then an inverse square root decay"): the peak is held, not ramped, for the first
    `warmup_steps` steps, then decays as sqrt(warmup_steps / step).
    """
    if schedule == "inverse_sqrt":
        return math.sqrt(max(1, warmup_steps) / max(step + 1, warmup_steps, 1))
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"schedule must be 'cosine', 'constant', 'linear' or 'inverse_sqrt', got {schedule!r}")


def _optimizer(name: Optimizer, parameters: Any, *, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW (decay applied to the weights, apart from the gradient) or Adam, whose weight_decay is
    an L2 term added to the gradient and so rescaled by Adam's normalisation (GRID's choice)."""
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adamw' or 'adam', got {name!r}")


def _autocast_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `amp`, or None where mixed precision is off.

    On a GPU: bf16 (True or "bf16"; fp16 where bf16 is unsupported) or fp16. On a CPU only bf16,
    and only where the CPU computes it natively: elsewhere torch emulates bf16 far slower than
    fp32 (`make bench` measures both), so it warns and stays in fp32. fp16 autocast on a CPU is never faster: it stays in fp32 too.
    """
    if amp not in (False, None, True, "bf16", "fp16"):
        raise ValueError(f"amp must be False, True, 'bf16' or 'fp16', got {amp!r}")
    if amp is False or amp is None:
        return None
    if device.type == "cpu":
        if amp == "fp16":
            return None
        if not cpu_has_native_bf16():
            warnings.warn(
                f"amp={amp!r}: this CPU has no native bf16 (AVX512-BF16 or AMX), where torch's emulated "
                "bf16 is many times slower than fp32; training in fp32",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        return torch.bfloat16
    if device.type != "cuda":
        return None
    if amp is True or amp == "bf16":
        # bf16 needs no loss scaling; fall back to fp16 on GPUs without bf16 support.
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16


def _epoch_batches(batches: Batches, epoch: int) -> Iterable[Any]:
    """The batches of one epoch: a factory is called with the 0-based epoch (to reshuffle)."""
    if callable(batches) and not hasattr(batches, "__iter__"):
        return batches(epoch)
    return batches


def _count_steps(first_epoch: Iterable[Any], steps_per_epoch: int | None) -> int | None:
    """Steps per epoch, from the argument or from len() of the first epoch's batches."""
    if steps_per_epoch is not None:
        return steps_per_epoch
    try:
        return len(first_epoch)  # type: ignore[arg-type]
    except TypeError:
        return None


# What `last.pt` keeps of a TrainResult, for a resumed run to go on from.
_RESUMED_FIELDS = ("history", "best_epoch", "best_metrics", "stopped_early", "epochs_run", "step_losses")


def _state_on_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the model's state (cheap to keep in memory as the best so far)."""
    return {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}


def save_checkpoint(model: nn.Module, path: str | os.PathLike, **extra: Any) -> Path:
    """Save the model's weights (and its `config` dict, if any, and `extra`) atomically to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "state_dict": _state_on_cpu(model),
        "config": dict(getattr(model, "config", {}) or {}),
        "extra": extra,
    }
    return _save_atomic(payload, path)


def _save_atomic(payload: Any, path: Path) -> Path:
    """torch.save `payload` to `path` through a temporary file, so a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _load_training_state(path: Path, settings: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The state `fit` saved in `path`, after checking it was saved by a run with the same `settings`."""
    state = torch.load(path, map_location=device, weights_only=False)  # our own file: it holds Python RNG state
    saved = state.get("settings", {})
    # compared where the saving run recorded them (a file from before a setting was recorded still resumes)
    differ = {key: (saved[key], value) for key, value in settings.items() if key in saved and saved[key] != value}
    if differ:
        changes = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in differ.items())
        raise ValueError(
            f"{path} was saved by a run with other settings ({changes}): run with those settings to "
            "resume it, or delete the file to start afresh"
        )
    state["best_state"] = None if state["best_state"] is None else {
        key: value.to("cpu") for key, value in state["best_state"].items()
    }  # fmt: skip
    return state


def _check_same_buffers(model: nn.Module, saved: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse to resume where the model's fixed tensors (semantic IDs, item counts) differ from the saved run's.

    They are built from the data, not learned: loading the saved ones over them would leave the model's
    other tables (built beside them, not saved) disagreeing. faiss's OPQ, for one, fits other codes
    with another number of threads.
    """
    learned = dict(model.named_parameters())
    for name, buffer in model.state_dict().items():
        if name in learned or name not in saved:
            continue
        if buffer.shape != saved[name].shape or not torch.equal(buffer.cpu(), saved[name].cpu()):
            raise ValueError(
                f"{path} was saved by a run whose {name!r} differs from this run's (data-derived, not "
                "learned: e.g. semantic IDs fitted with another number of threads): resume with the same "
                "data, settings and threads, or delete the file to start afresh"
            )


def load_checkpoint(
    model: nn.Module, path: str | os.PathLike, *, strict: bool = True
) -> dict[str, Any]:
    """Load weights saved by `save_checkpoint` into `model`; return the saved config and extra."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist: train with checkpoint_dir set, or check the path"
        )
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    payload = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(payload["state_dict"], strict=strict)
    return {"config": payload.get("config", {}), "extra": payload.get("extra", {})}


def fit(
    model: nn.Module,
    batches: Batches,
    evaluate_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
    *,
    epochs: int = 50,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: Optimizer = "adamw",
    warmup_steps: int = 0,
    schedule: Schedule = "constant",
    grad_clip: float | None = 1.0,
    patience: int | None = 10,
    eval_every: int = 1,
    metric: str = "ndcg@10",
    device: str | torch.device = "auto",
    amp: bool | str = False,
    seed: int = 0,
    steps_per_epoch: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    show_progress: bool = True,
    loss_weight: Callable[[Any], float] | None = None,
) -> TrainResult:
    """Train `model` with AdamW (or `optimizer="adam"`) on `model.loss(batch)`, early-stop on validation `metric`, restore the best.

    batches: a re-iterable of batches (a list, a DataLoader) or a factory
    `epoch -> iterable of batches` (so each epoch can reshuffle from its own seed).
    evaluate_fn(model) -> {"ndcg@10": ..., ...} runs every `eval_every` epochs and at
    the last epoch, with the model in eval mode under no_grad; training stops after
    `patience` evaluations without improvement (None: never). The weights of the best
    evaluation are kept in memory, loaded into the model at the end and, when
    `checkpoint_dir` is given, saved there as `best.pt` beside `history.json`; there `last.pt`
    also holds the whole training state after every epoch (weights, optimizer, schedule, random
    state, best so far), so a run that is killed resumes after its last finished epoch when it is
    started again with the same settings. It is removed when training ends.
    Without `evaluate_fn` the last epoch counts as best. `amp` ("bf16", "fp16" or True)
    is mixed precision on CUDA, and bf16 on a CPU with native bf16 (see `_autocast_dtype`). `schedule` needs the number of steps: from len() of the
    batches, or `steps_per_epoch` for iterables without one.

    Under torchrun (or an initialised process group) every rank must pass the same
    global batches: each trains on its shard, validation runs on rank 0 and files are
    written by rank 0. `loss_weight(batch)` counts the terms `model.loss` averages over
    in a shard (default: `model.loss_weight`, else the nonzero labels of batch[1]), to
    weight the ranks' losses; one process never calls it.
    """
    if epochs < 1 or eval_every < 1:
        raise ValueError(f"epochs and eval_every must be >= 1, got {epochs} and {eval_every}")
    seed_everything(seed)
    context = init_distributed(device)
    device = context.device
    model.to(device)
    # One process trains `model` itself, exactly as before; several wrap it for DDP.
    ddp = wrap_ddp(model, context) if context.is_distributed else None
    weight_of = loss_weight_fn(model, loss_weight) if ddp is not None else None
    show_progress = show_progress and context.is_main
    optimizer = _optimizer(optimizer, model.parameters(), lr=lr, weight_decay=weight_decay)  # name -> instance
    # Built once here and reused as epoch 1, so a batch factory is not called twice.
    first_epoch = _epoch_batches(batches, 0)
    n_steps = _count_steps(first_epoch, steps_per_epoch)
    if n_steps is None and (schedule != "constant" or warmup_steps > 0):
        raise ValueError(
            "a warm-up or a decaying schedule needs the number of steps: pass steps_per_epoch, "
            "or give batches that have a len() (a list or a DataLoader)"
        )
    total_steps = max(1, (n_steps or 1) * epochs)
    # Validate the schedule name now rather than at the first step.
    lr_lambda(warmup_steps, total_steps=total_steps, warmup_steps=warmup_steps, schedule=schedule)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_lambda(
            step, total_steps=total_steps, warmup_steps=warmup_steps, schedule=schedule
        ),
    )
    amp_dtype = _autocast_dtype(amp, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    out_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None

    result = TrainResult(metric=metric, world_size=context.world_size)
    best_score = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    bad_evals = 0
    started = time.perf_counter()
    # What a resumed run must share with the run that saved `last.pt`, or it would splice two schedules.
    settings = {
        "epochs": epochs, "lr": lr, "weight_decay": weight_decay, "warmup_steps": warmup_steps,
        "schedule": schedule, "n_steps": n_steps, "patience": patience, "eval_every": eval_every,
        "metric": metric, "seed": seed, "world_size": context.world_size,
        "model": {**(getattr(model, "config", None) or {}), "class": type(model).__name__},
    }  # fmt: skip
    done = 0
    resume_path = out_dir / "last.pt" if out_dir is not None else None
    if resume_path is not None and resume_path.exists():
        state = _load_training_state(resume_path, settings, device)
        _check_same_buffers(model, state["model"], resume_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        for key in _RESUMED_FIELDS:
            setattr(result, key, state["result"][key])
        best_score, best_state, bad_evals = state["best_score"], state["best_state"], state["bad_evals"]
        started -= state["seconds"]
        done = result.epochs_run
        set_rng_state(state["rng"])
        if context.is_main:
            print(f"resuming from {resume_path} after epoch {done} of {epochs}", flush=True)
    # a run killed after early stopping had ended it has no epoch left
    remaining = range(0) if result.stopped_early else range(done + 1, epochs + 1)
    epoch_bar = tqdm(remaining, desc="epochs", disable=not show_progress)
    for epoch in epoch_bar:
        model.train()
        tick = time.perf_counter()
        loss_sum, n_batches = 0.0, 0
        for batch in tqdm(
            first_epoch if epoch == 1 else _epoch_batches(batches, epoch - 1),
            desc=f"epoch {epoch}",
            total=n_steps,
            leave=False,
            disable=not show_progress,
        ):
            if ddp is not None:
                batch = shard_batch(batch, context.rank, context.world_size)
                shard_weight = weight_of(batch)
            batch = move_to_device(batch, device)
            optimizer.zero_grad(set_to_none=True)
            autocast = (
                torch.autocast(device.type, dtype=amp_dtype)
                if amp_dtype is not None
                else contextlib.nullcontext()
            )
            with autocast:
                if ddp is None:
                    loss = model.loss(batch)
                else:
                    local = ddp(batch, empty=shard_weight == 0)
                    # loss: this rank's share to backpropagate; global_loss: the same on every rank
                    loss, global_loss = weighted_loss(local, shard_weight, context)
            finite = bool(torch.isfinite(loss)) if ddp is None else math.isfinite(global_loss)
            if not finite:  # with DDP every rank sees the same global loss: all raise or none
                value = loss.item() if ddp is None else global_loss
                raise FloatingPointError(
                    f"training loss became {value} at epoch {epoch}: lower lr, keep grad_clip, or turn amp off"
                )
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            step_loss = loss.item() if ddp is None else global_loss
            result.step_losses.append(step_loss)
            loss_sum += step_loss
            n_batches += 1
        if n_batches == 0:
            raise ValueError(
                f"epoch {epoch} had no batches: check the training data; a one-shot generator "
                "is used up after one epoch, pass a list, a DataLoader or a factory epoch -> batches"
            )
        row: dict[str, float] = {
            "epoch": epoch,
            "train_loss": loss_sum / n_batches,
            "lr": optimizer.param_groups[0]["lr"],
            "train_seconds": time.perf_counter() - tick,
        }

        if evaluate_fn is not None and (epoch % eval_every == 0 or epoch == epochs):
            tick = time.perf_counter()

            def validate() -> dict[str, float]:
                model.eval()
                with torch.no_grad():
                    scores = {key: float(value) for key, value in evaluate_fn(model).items()}
                model.train()
                return scores

            # Rank 0 validates and every rank receives its metrics: one early-stopping decision.
            metrics = on_main(validate, context)
            if metric not in metrics:
                raise KeyError(
                    f"evaluate_fn returned {sorted(metrics)}; early stopping needs {metric!r}"
                )
            row.update({f"val_{key}": value for key, value in metrics.items()})
            row["eval_seconds"] = time.perf_counter() - tick
            # Strict improvement: on a plateau the earlier (cheaper) epoch stays best.
            if metrics[metric] > best_score:
                best_score = metrics[metric]
                best_state = _state_on_cpu(model)
                result.best_epoch, result.best_metrics = epoch, metrics
                bad_evals = 0
                if out_dir is not None and context.is_main:
                    save_checkpoint(model, out_dir / "best.pt", epoch=epoch, metrics=metrics)
            else:
                bad_evals += 1
        result.history.append(row)
        result.epochs_run = epoch
        epoch_bar.set_postfix(
            loss=f"{row['train_loss']:.4f}",
            **({metric: f"{best_score:.4f}"} if best_state is not None else {}),
        )
        if patience is not None and best_state is not None and bad_evals >= patience:
            result.stopped_early = True
        if out_dir is not None and context.is_main:
            write_json_atomic(out_dir / "history.json", result.history)
            _save_atomic(
                {
                    "settings": settings, "model": _state_on_cpu(model), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": None if scaler is None else scaler.state_dict(),
                    "result": {key: getattr(result, key) for key in _RESUMED_FIELDS},
                    "best_score": best_score, "best_state": best_state, "bad_evals": bad_evals,
                    "seconds": time.perf_counter() - started, "rng": get_rng_state(),
                },
                resume_path,
            )  # fmt: skip
        if result.stopped_early:
            break
    epoch_bar.close()

    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        # No validation: the final weights are the result.
        result.best_epoch = result.epochs_run
        if out_dir is not None and context.is_main:
            save_checkpoint(model, out_dir / "best.pt", epoch=result.epochs_run, metrics={})
    if resume_path is not None and context.is_main:
        resume_path.unlink(missing_ok=True)  # training is over: a new run starts afresh
    del ddp  # drops DDP's gradient hooks; `model` stays as trained
    model.eval()
    result.seconds = time.perf_counter() - started
    return result
