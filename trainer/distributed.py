"""DistributedDataParallel plumbing shared by pre-training and fine-tuning.

Run any training command under ``torchrun --nproc_per_node=N``: torchrun sets RANK, WORLD_SIZE,
LOCAL_RANK and MASTER_ADDR/PORT; ``setup()`` then joins the process group (gloo on CPU, nccl when
CUDA is available) and each rank trains its slice of every global batch. Without torchrun,
everything here is a no-op and training runs in one process.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this call initialised the group (destroyed at process exit)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(backend: str | None = None) -> DistContext:
    """Join the process group if launched by torchrun (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and backend != "gloo"
    backend = backend or ("nccl" if use_cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        # One group per process, kept for its lifetime: torchrun's rendezvous store does not take
        # a second init after a destroy (it hangs), and a pipeline runs pretrain then finetune.
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        atexit.register(_destroy)
        owns = True
    return DistContext(rank, world, local_rank, device, owns)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def teardown(ctx: DistContext) -> None:
    """End of one training run: wait for every rank (the group stays up for the next run)."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.enabled:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= ctx.world
    return t


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.enabled:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def wrap(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """DDP-wrap for training. Experts that got no token on a rank have no gradient there, hence
    ``find_unused_parameters=True``."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)
