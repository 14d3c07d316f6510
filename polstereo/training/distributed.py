"""DistributedDataParallel set-up for runs under ``torchrun`` (NCCL on GPUs, gloo on CPUs).

A plain ``polstereo adapt ...`` is a world of one; under
``torchrun --nproc_per_node N polstereo adapt ...`` the environment variables that
torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) turn the same command into
rank ``RANK`` of ``WORLD_SIZE``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import traceback
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_as_main() -> bool:
    """Whether this process is rank 0 of its torchrun launch (or runs alone), before joining the group."""
    return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or int(os.environ.get("RANK", "0")) == 0


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes; returns the info and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    info = DistInfo(rank=int(os.environ["RANK"]), world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``tensor`` over ranks (in place on a copy); a no-op in a world of one."""
    if not info.enabled:
        return tensor
    backend_device = torch.device("cuda", info.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    out = tensor.detach().to(backend_device).clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(tensor.device)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def release_after_error(err: BaseException) -> None:
    """Leave a gloo process group cleanly after ``err`` ended a run (a no-op outside torchrun).

    Left to the interpreter's exit, gloo's threads can abort the process (SIGABRT) while
    freeing finished collectives. The frames ``err`` and the exceptions chained to it
    passed through still hold the DDP wrapper, whose reducer would free the group without
    dropping the GIL (a deadlock): clear them first, then destroy the group. NCCL groups
    are left to the exit: their destroy can wait on a peer's collective in flight, which
    would hold back the error message.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_backend() != "gloo":
        return
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        traceback.clear_frames(err.__traceback__)
        err = err.__cause__ or err.__context__
    gc.collect()
    with contextlib.suppress(Exception):  # the error being raised is the one to report
        dist.destroy_process_group()
