"""Data-parallel training across processes: torchrun, DistributedDataParallel, sharded batches.

    torchrun --nproc_per_node=4 -m handbook.experiment amazon2014:Beauty --models rpg

Every process (rank) builds the same global batches from the same seed and trains on
its contiguous shard of each one (`shard_batch`), so N processes take the optimizer
steps that one process would take on the same global batches. DDP averages gradients
over ranks; `weighted_loss` rescales each rank's loss by its share of the batch's loss
terms (labelled positions, target tokens) so that the averaged gradient is the gradient
of the single-process loss, however unevenly the labels fall into the shards.

What is equal to one process, up to float summation order (~1e-6):

* the loss, its gradient and the parameters, for every loss that is a mean over terms
  that do not interact across rows: SASRec, RPG, TIGER and decoder-only (without
  `history_loss`, whose history-token terms are not counted by the default weight), and
  ACERec's token-level loss (MTP);
* not ACERec's ISA term (in-batch InfoNCE): its in-batch negatives are the other targets
  of the rank's shard, not of the global batch (as in any DDP contrastive loss without an
  all-gather of the keys); nor its reconstruction term, a mean over the distinct items of
  the shard's histories;
* not dropout masks: each rank draws its own, so runs with dropout > 0 agree in
  distribution only.

DDP expects every parameter to get a gradient at every step (no `find_unused_parameters`):
true of every handbook model (ACERec builds only the parts its terms use).

Validation runs on rank 0 only and its metrics are broadcast, so that every rank makes
the same early-stopping decision; files (checkpoints, history, results) are written by
rank 0 only.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from handbook.device import resolve_device

T = TypeVar("T")

# Rank 0 may validate (beam search over every user) while the other ranks wait in a
# broadcast; NCCL's default 10-minute timeout would kill a long validation.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank among `world_size` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_distributed(self) -> bool:
        """Whether more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process is rank 0, the one that evaluates and writes files."""
        return self.rank == 0


def _env_int(name: str) -> int | None:
    """An integer environment variable set by torchrun, or None when absent."""
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from err


def init_distributed(device: str | torch.device = "auto") -> DistributedContext:
    """Join the process group (already initialised, or from torchrun's RANK/WORLD_SIZE/LOCAL_RANK).

    Without a process group and with WORLD_SIZE unset or 1, this is one process on
    `resolve_device(device)`. Under torchrun each rank uses `cuda:LOCAL_RANK` (backend
    nccl) when `device` resolves to CUDA, else the CPU (backend gloo).
    """
    resolved = resolve_device(device)
    if dist.is_available() and dist.is_initialized():
        world_size, rank = dist.get_world_size(), dist.get_rank()
        local_rank = _env_int("LOCAL_RANK")
        local_rank = rank if local_rank is None else local_rank
    else:
        world_size = _env_int("WORLD_SIZE") or 1
        if world_size == 1:
            return DistributedContext(device=resolved)
        rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
        if rank is None or local_rank is None:
            raise RuntimeError(
                f"WORLD_SIZE={world_size} but RANK or LOCAL_RANK is not set: start the "
                "processes with torchrun (torchrun --nproc_per_node=N -m handbook.experiment ...)"
            )
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(
            backend,
            init_method="env://",
            rank=rank,
            world_size=world_size,
            timeout=COLLECTIVE_TIMEOUT,
            **({"device_id": torch.device("cuda", local_rank)} if backend == "nccl" else {}),
        )
    if world_size > 1 and resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    return DistributedContext(rank, world_size, local_rank, resolved)


def is_main_process() -> bool:
    """Whether this process is rank 0 of the process group, or runs alone."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def shutdown() -> None:
    """Leave the process group, if one was joined (call once at the end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_batch(batch: Any, rank: int, world_size: int) -> Any:
    """This rank's contiguous share of every tensor's first dimension in a (nested) batch.

    `torch.tensor_split` semantics: with B rows and N ranks the first B % N ranks get
    one row more, and a rank may get no rows when B < N.
    """
    if world_size == 1:
        return batch
    if isinstance(batch, torch.Tensor):
        if batch.ndim == 0:
            return batch
        return torch.tensor_split(batch, world_size, dim=0)[rank]
    if isinstance(batch, Mapping):
        return {key: shard_batch(value, rank, world_size) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard_batch(value, rank, world_size) for value in batch)
    return batch


def default_loss_weight(batch: Any) -> float:
    """How many terms `model.loss(batch)` averages over, by the handbook's batch convention.

    Batches are tuples whose second tensor holds the labels, 0 meaning "no label"
    (SASRec, RPG, ACERec: (input_ids, labels); TIGER, decoder-only: (history_tokens,
    target_tokens), whose target tokens are never 0): the count of nonzero labels.
    Anything else counts rows.
    """
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        labels = batch[1]
        if isinstance(labels, torch.Tensor) and not labels.is_floating_point():
            return float((labels != 0).sum().item())
    first = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    if isinstance(first, torch.Tensor) and first.ndim > 0:
        return float(first.shape[0])
    raise TypeError(
        "cannot tell how many loss terms this batch holds: pass fit(loss_weight=batch -> count) "
        "or give the model a loss_weight(batch) method"
    )


def loss_weight_fn(
    model: nn.Module, loss_weight: Callable[[Any], float] | None
) -> Callable[[Any], float]:
    """The weight function to use: the argument, else `model.loss_weight`, else `default_loss_weight`."""
    if loss_weight is not None:
        return loss_weight
    method = getattr(model, "loss_weight", None)
    return method if callable(method) else default_loss_weight


class LossModule(nn.Module):
    """Wraps a model whose training entry point is `loss(batch)`, so DDP's gradient hooks fire.

    DDP only synchronises gradients of what its own `forward` computed; `forward` here
    calls `model.loss`. A rank whose shard is empty returns a zero that still touches
    every parameter, so that its all-reduce matches the other ranks'.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any, empty: bool = False) -> torch.Tensor:
        """`model.loss(batch)`, or a zero connected to every parameter when `empty`."""
        if empty:
            return torch.stack([p.sum() for p in self.model.parameters()]).sum() * 0.0
        return self.model.loss(batch)


def wrap_ddp(model: nn.Module, context: DistributedContext) -> nn.Module:
    """DistributedDataParallel around `LossModule(model)`; parameters are broadcast from rank 0."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(LossModule(model), device_ids=ids, output_device=None)


def weighted_loss(
    local_loss: torch.Tensor, local_weight: float, context: DistributedContext
) -> tuple[torch.Tensor, float]:
    """(loss to backpropagate on this rank, loss of the whole global batch).

    With M_r terms on rank r, M = sum of M_r and DDP's mean over N ranks, scaling the
    rank's mean loss by N * M_r / M makes the averaged gradient (1 / M) * sum of every
    term's gradient: the single-process gradient of the global batch.
    """
    device = local_loss.device
    packed = torch.tensor(
        [float(local_loss.detach()) * local_weight, local_weight],
        dtype=torch.float64,
        device=device if context.device.type == "cuda" else torch.device("cpu"),
    )
    dist.all_reduce(packed)
    total_loss, total_weight = float(packed[0]), float(packed[1])
    if total_weight <= 0:
        raise ValueError("the global batch holds no labels on any rank: check the training data")
    scale = context.world_size * local_weight / total_weight
    return local_loss * scale, total_loss / total_weight


def broadcast_object(value: T | None, context: DistributedContext) -> T:
    """Rank 0's `value` on every rank (pickled); one process returns it unchanged."""
    if not context.is_distributed:
        return value  # type: ignore[return-value]
    box = [value if context.is_main else None]
    dist.broadcast_object_list(box, src=0)  # NCCL: through the current CUDA device, set above
    return box[0]  # type: ignore[return-value]


def on_main(fn: Callable[[], T], context: DistributedContext) -> T:
    """Run `fn` on rank 0 only and give its result to every rank (e.g. fit a tokenizer once).

    An error on rank 0 is re-raised on every rank, so that no rank waits forever.
    """
    if not context.is_distributed:
        return fn()
    payload: tuple[bool, Any] | None = None
    if context.is_main:
        try:
            payload = (True, fn())
        except Exception as err:  # shipped to the other ranks, then raised everywhere
            payload = (False, err)
    ok, value = broadcast_object(payload, context)
    if not ok:
        if context.is_main:
            raise value
        raise RuntimeError(f"rank 0 failed: {type(value).__name__}: {value}") from value
    return value
