"""Many processes, one training run: what the training loop needs from torchrun.

``torchrun --nproc_per_node=N script`` starts N copies of the same script and tells each
one, through environment variables, its rank (0 to N-1), the number of processes
(WORLD_SIZE) and which device of this machine is its own (LOCAL_RANK). The copies meet in
a process group, over gloo on CPUs or nccl on GPUs, to average their gradients.

Data parallelism splits each step's batch: every process computes the loss of its own
slice, and the averaged gradients are those of the whole batch. Without torchrun all of
this reduces to one process holding the whole batch, so the same code serves both.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    """Whether this process is one of several that torchrun (or another launcher) started."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def start(device: torch.device | str) -> None:
    """Join the process group torchrun set up: nccl for CUDA devices, gloo for CPUs.

    Does nothing outside torchrun or when the group already exists.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def stop() -> None:
    """Leave the process group (at the end of a script), if there is one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """Whether a process group of two or more processes is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 alone writes files and draws progress bars, so they are written once."""
    return rank() == 0


def shard(batch, rank: int, world: int):
    """This process's slice of a batch: rows [rank*B/world, (rank+1)*B/world) of every tensor.

    The batch may be a tensor, or a tuple, list or dict of them, all with the batch on
    their first axis. Equal slices keep the mean of the processes' losses equal to the
    loss of the whole batch, so the batch size must divide by the number of processes.
    """
    if world == 1:
        return batch
    if isinstance(batch, torch.Tensor):
        if len(batch) % world:
            raise ValueError(f"a batch of {len(batch)} does not split evenly over {world} processes: "
                             f"use a batch size that is a multiple of {world}")
        size = len(batch) // world
        return batch[rank * size:(rank + 1) * size]
    if isinstance(batch, dict):
        return {key: shard(value, rank, world) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard(value, rank, world) for value in batch)
    raise TypeError(f"cannot split a batch of type {type(batch).__name__}: give tensors, or a "
                    "tuple, list or dict of tensors")


def mean_over_processes(value: torch.Tensor) -> torch.Tensor:
    """The average of a tensor over all processes (itself when there is one)."""
    if not is_distributed():
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()


def gather_objects(obj) -> list:
    """Every process's ``obj``, in rank order (a list of one outside torchrun)."""
    if not is_distributed():
        return [obj]
    objects = [None] * dist.get_world_size()
    dist.all_gather_object(objects, obj)
    return objects


def barrier() -> None:
    """Wait until every process gets here (for example, until rank 0 has written a file)."""
    if is_distributed():
        dist.barrier()
