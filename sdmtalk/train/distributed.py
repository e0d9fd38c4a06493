"""Data-parallel training with torch.distributed (DDP).

Launched by ``torchrun`` (env RANK / WORLD_SIZE / LOCAL_RANK set) the process joins a
process group (gloo on CPU, nccl on CUDA); launched plainly it is rank 0 of 1 and nothing
is initialised. Only rank 0 writes checkpoints, logs and plots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from sdmtalk.errors import InputError


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized: bool = False  # True when this module started the process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """"auto" -> CUDA (this process's GPU under torchrun) when available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device '{name}': use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device '{name}' asked for but CUDA is not available: use "
                             "train.device=cpu or auto")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def setup(device: str = "auto") -> DistContext:
    """Join the torchrun process group if launched by torchrun, else a 1-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = resolve_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world == 1 or "RANK" not in os.environ:
        return DistContext(device=dev)
    initialized = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo",
                                device_id=dev if dev.type == "cuda" else None)
        initialized = True
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                       local_rank=local, device=dev, initialized=initialized)


def teardown(ctx: DistContext) -> None:
    if ctx.initialized and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def all_reduce_sum(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` (any shape) over all ranks; the tensor itself when alone."""
    if ctx.enabled:
        values = values.to(ctx.device)
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values.cpu()


def all_gather_objects(ctx: DistContext, obj) -> list:
    """``obj`` of every rank (rank order); ``[obj]`` when alone."""
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: DistContext, obj):
    """Rank 0's ``obj`` on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class LossModule(torch.nn.Module):
    """Routes ``model.training_losses(batch, step)`` through ``forward`` so that DDP sees the
    call (DDP syncs gradients only for work done inside its forward)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch, step: int) -> dict:
        return self.model.training_losses(batch, step)


def wrap_for_training(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """A module whose ``(batch, step)`` call returns the loss dict; DDP-wrapped when distributed.

    find_unused_parameters stays off (it costs a graph traversal a step): SDM's losses use
    every parameter each step; a model that skips some makes DDP raise, not hang."""
    wrapped = LossModule(model)
    if not ctx.enabled:
        return wrapped
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(wrapped, device_ids=ids, find_unused_parameters=False)


class StepBatchSampler:
    """Batches of dataset indices that depend only on (seed, position in the sample stream).

    The stream is the concatenation of one permutation of ``range(num_items)`` per epoch
    (epoch e shuffled by seed (seed, e)). Step s of rank r takes the ``batch_size`` items
    at ``start + (s * world_size + r) * batch_size``: the ranks of one step see disjoint
    items (the job of a DistributedSampler), and a run resumed at ``start`` (= items already
    consumed by all ranks) continues the stream exactly where it stopped.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, start: int = 0,
                 rank: int = 0, world_size: int = 1):
        if num_items < 1:
            raise ValueError("StepBatchSampler needs at least one item")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.start, self.rank, self.world_size = start, rank, world_size
        self._epoch, self._perm = -1, None

    def _item(self, position: int) -> int:
        epoch, offset = divmod(position, self.num_items)
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._epoch, self._perm = epoch, rng.permutation(self.num_items)
        return int(self._perm[offset])

    def batch(self, step: int) -> list[int]:
        """Indices of relative step ``step`` (0 = the first step after ``start``)."""
        first = self.start + (step * self.world_size + self.rank) * self.batch_size
        return [self._item(p) for p in range(first, first + self.batch_size)]

    def __iter__(self):
        step = 0
        while True:
            yield self.batch(step)
            step += 1


def val_indices(num_items: int, limit: int, seed: int, rank: int = 0, world_size: int = 1
                ) -> list[int]:
    """This rank's share of a fixed validation subset: the first ``limit`` items of one
    seeded permutation (the same every validation, so val losses are comparable)."""
    order = np.random.default_rng([seed, 7919]).permutation(num_items)[:limit]
    return [int(i) for i in order[rank::world_size]]
