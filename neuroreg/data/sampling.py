"""Seeded, resumable sampling of task batches with neural stimuli attached.

Every training batch holds ``batch_size`` task images and, when a neural set
is given, ``neural_batch_size`` neural stimuli drawn without replacement from
the training pool. The order is a pure function of ``(seed, epoch)``, so a run
stopped mid-epoch and resumed from a checkpoint sees exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

__all__ = ["JointSampler", "ResumableLoader"]


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class JointSampler(DistributedSampler):
    """Yields ``(task_index, neural_index, augmentation_seed)`` keys, one batch after another.

    The first ``neural_batch_size`` keys of every batch carry a neural index
    (from ``neural_pool``), the rest ``-1``. Under ``torch.distributed`` each
    rank takes its own batches (rank and world size are read when iterating);
    it subclasses :class:`DistributedSampler` so that Lightning keeps it as is.
    Incomplete batches are dropped.
    """

    def __init__(self, n_task: int, batch_size: int, neural_pool: torch.Tensor | None = None,
                 neural_batch_size: int = 0, seed: int = 0, shuffle: bool = True) -> None:
        # DistributedSampler.__init__ would require an initialised process group; state is kept here instead.
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if n_task < batch_size:
            raise ValueError(f"the task training set has {n_task} images, fewer than one batch ({batch_size})")
        pool = torch.empty(0, dtype=torch.long) if neural_pool is None else torch.as_tensor(neural_pool).long()
        if neural_batch_size > len(pool):
            raise ValueError(f"neural_batch_size={neural_batch_size} is larger than the {len(pool)} neural "
                             f"training stimuli available")
        if neural_batch_size > batch_size:
            raise ValueError(f"neural_batch_size={neural_batch_size} must not exceed batch_size={batch_size} "
                             f"(neural stimuli ride along with task images)")
        self.n_task = n_task
        self.batch_size = batch_size
        self.neural_pool = pool
        self.neural_batch_size = neural_batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start_batch = 0
        self.epoch = epoch

    def batches_per_rank(self) -> int:
        world, _ = _world()
        return self.n_task // (self.batch_size * world)

    def __len__(self) -> int:
        return self.batches_per_rank() * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        world, rank = _world()
        n_batches = self.batches_per_rank()
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n_task, generator=g) if self.shuffle else torch.arange(self.n_task)
        aug = torch.randint(0, 2**31 - 1, (self.n_task,), generator=g)
        gn = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + 7_919)
        start, self.start_batch = self.start_batch, 0
        for j in range(n_batches):
            neural = [torch.randperm(len(self.neural_pool), generator=gn)[:self.neural_batch_size]
                      for _ in range(world)] if self.neural_batch_size else None
            if j < start:
                continue
            offset = (j * world + rank) * self.batch_size
            for i in range(self.batch_size):
                t = int(order[offset + i])
                n = int(self.neural_pool[neural[rank][i]]) if neural is not None and i < self.neural_batch_size else -1
                yield t, n, int(aug[offset + i])


class ResumableLoader(DataLoader):
    """A DataLoader over a :class:`JointSampler` that Lightning can checkpoint mid-epoch.

    ``progress()`` returns ``(epoch, batches consumed in that epoch)``; it is
    asked when a checkpoint is written, so batches fetched ahead are not
    counted. On resume, the sampler restarts at the next unconsumed batch.
    """

    def __init__(self, *args: Any, progress: Callable[[], tuple[int, int]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._progress = progress

    def state_dict(self) -> dict[str, int]:
        epoch, consumed = self._progress()
        return {"epoch": int(epoch), "batches_consumed": int(consumed)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler = self.sampler
        if not isinstance(sampler, JointSampler):
            raise TypeError("ResumableLoader needs a JointSampler")
        sampler.epoch = int(state["epoch"])
        sampler.start_batch = int(state["batches_consumed"])
