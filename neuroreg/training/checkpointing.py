"""Checkpoints that are never lost or mixed up: atomic writes, resume points, run-folder locks.

- :class:`AtomicCheckpointIO` (a Lightning ``CheckpointIO`` plugin) writes every
  checkpoint to a temporary file beside the target, flushes it to disk and
  renames it. A failed write (full disk, I/O error, a kill mid-write) leaves the
  previous file of that name intact and removes the temporary file; the error
  names the checkpoint and the space it needs.
- :class:`ResumableCheckpoint` (a ``ModelCheckpoint``) additionally writes
  ``last.ckpt`` every ``every_n_train_steps`` training steps whether or not the
  monitored metric exists yet, after each validation, and always at the end of
  training.
- :func:`resolve_resume_path` turns ``--ckpt_path`` into a file, refusing a
  missing, truncated or foreign checkpoint and a fresh run into a folder that
  already holds another run's ``last.ckpt``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from neuroreg._utils.io import atomic_path, format_bytes, free_bytes, is_disk_full
from neuroreg.errors import CheckpointError, OutputError, RunLockedError

__all__ = ["AtomicCheckpointIO", "ResumableCheckpoint", "checkpoint_nbytes", "resolve_resume_path",
           "LOCK_NAME", "LAST_NAME"]

LOCK_NAME = ".neuroreg-run.lock"
LAST_NAME = "last.ckpt"


def checkpoint_nbytes(obj: Any) -> int:
    """Bytes of the tensors in a (nested) checkpoint: a lower bound of its size on disk."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(checkpoint_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(checkpoint_nbytes(v) for v in obj)
    return 0


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write a checkpoint to ``.<name>.<random>.tmp`` in its folder, fsync, then rename onto the target.

    Before writing it checks that the disk has room for the checkpoint's tensors
    (plus 5 % and 64 KB for the rest); a write that fails anyway (the disk filled
    up meanwhile) removes the partial temporary file. Both raise
    :class:`~neuroreg.errors.OutputError` naming the checkpoint, the space it
    needs and the space free; the previous checkpoint under that name is kept.
    Remote paths (``s3://`` ...) fall back to Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        need = checkpoint_nbytes(checkpoint) + (64 << 10)
        keep = f"; the previous {path.name} is intact" if path.exists() else ""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from exc
        free = free_bytes(path.parent)
        if free < need * 1.05:
            raise OutputError(f"cannot write checkpoint {path}: not enough free space: needs about "
                              f"{format_bytes(need * 1.05)}, the disk has {format_bytes(free)} free{keep}")
        try:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    torch.save(checkpoint, f)
        except OSError as exc:  # OutputError included
            if is_disk_full(exc):
                raise OutputError(f"cannot write checkpoint {path}: the disk is full (needs about "
                                  f"{format_bytes(need * 1.05)}, {format_bytes(free_bytes(path.parent))} free)"
                                  f"{keep}") from exc
            raise OutputError(f"cannot write checkpoint {path}: {exc.strerror or exc}{keep}") from exc


class ResumableCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is a dependable resume point.

    With ``save_last=True``, ``last.ckpt`` is written every ``every_n_train_steps``
    steps even before the monitored metric exists (Lightning alone defers it to
    the next validation), at each validation as usual, and at the end of
    training (``max_steps`` reached mid-epoch included). A run killed at any
    step therefore resumes from at most ``every_n_train_steps - 1`` steps back.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resume_step_saved: int | None = None

    def _last_path(self) -> str:
        return os.path.join(str(self.dirpath), self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)

    def _save_resume_point(self, trainer) -> None:
        if (not self.save_last or self.dirpath is None or trainer.sanity_checking or bool(trainer.fast_dev_run)
                or self._resume_step_saved == trainer.global_step):
            return
        if trainer.state.fn != TrainerFn.FITTING:
            return
        path = self._last_path()
        self.last_model_path = path  # part of the saved callback state, like Lightning's own last.ckpt
        trainer.save_checkpoint(path, self.save_weights_only)
        self._resume_step_saved = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        step = trainer.global_step
        every = self._every_n_train_steps
        at_end = trainer.max_steps is not None and trainer.max_steps > 0 and step >= trainer.max_steps
        if (every >= 1 and step % every == 0) or at_end:
            self._save_resume_point(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        # Lightning saves nothing here once ``every_n_train_steps`` is set (its ``every_n_epochs`` becomes 0),
        # so a run killed after an epoch-end validation would otherwise fall back to the step-based point.
        # The resume point goes first: if the disk is full, the previous last.ckpt is what must survive.
        self._save_resume_point(trainer)
        super().on_validation_end(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._last_global_step_saved != trainer.global_step:
            self._save_resume_point(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "resume_step_saved": self._resume_step_saved}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._resume_step_saved = state_dict.get("resume_step_saved")


def _check_checkpoint_file(path: Path, model: torch.nn.Module | None) -> int:
    """Open ``path`` as a Lightning checkpoint of ``model``; return its global step or raise CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"--ckpt_path {path}: file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:  # truncated zip, not a torch file, ...
        raise CheckpointError(f"--ckpt_path {path}: cannot read the checkpoint ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]}); it is truncated or not a torch file") from exc
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt or "global_step" not in ckpt:
        keys = list(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(f"--ckpt_path {path}: not a Lightning training checkpoint (no state_dict/global_step; "
                              f"found {keys}); to start from weights only, load them into the model instead")
    if model is not None:
        own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
        missing = sorted(set(own) - set(theirs))
        unexpected = sorted(set(theirs) - set(own))
        wrong = sorted(k for k in set(own) & set(theirs) if own[k] != theirs[k])
        if missing or unexpected or wrong:
            detail = "; ".join(s for s in (
                f"{len(missing)} missing keys (first: {missing[:3]})" if missing else "",
                f"{len(unexpected)} unexpected keys (first: {unexpected[:3]})" if unexpected else "",
                f"{len(wrong)} shape mismatches (first: {wrong[0]} {theirs[wrong[0]]} vs {own[wrong[0]]})"
                if wrong else "") if s)
            raise CheckpointError(f"--ckpt_path {path}: checkpoint of another model: {detail}")
    return int(ckpt["global_step"])


def resolve_resume_path(ckpt_path: str | None, checkpoint_dir: str | os.PathLike | None,
                        model: torch.nn.Module | None = None, *, resume_if_possible: bool = False
                        ) -> tuple[str | None, str]:
    """The file to resume from and a one-line note for the user.

    - ``"last"``: ``<checkpoint_dir>/last.ckpt``; a :class:`CheckpointError` if there
      is none (unless ``resume_if_possible``: then a fresh run, said so).
    - a path: that file, checked (exists, readable, holds ``model``'s keys and shapes).
    - ``None``: a fresh run; refused with :class:`RunLockedError` if the folder
      already holds another run's ``last.ckpt`` (resume it or use another folder),
      unless ``resume_if_possible``, which resumes it.
    """
    last = Path(checkpoint_dir) / LAST_NAME if checkpoint_dir is not None else None
    if ckpt_path == "last" or (ckpt_path is None and resume_if_possible):
        if last is None or not last.is_file():
            if resume_if_possible:
                return None, f"no checkpoint to resume in {checkpoint_dir}: starting a fresh run"
            raise CheckpointError(f"--ckpt_path last: there is no checkpoint to resume in {checkpoint_dir} "
                                  f"(no {LAST_NAME}); start a fresh run without --ckpt_path, or pass "
                                  f"--resume_if_possible true to resume when a checkpoint exists")
        step = _check_checkpoint_file(last, model)
        return str(last), f"resuming from {last} (step {step})"
    if ckpt_path is None:
        if last is not None and last.is_file():
            raise RunLockedError(f"{checkpoint_dir} already holds {LAST_NAME} of an earlier run; resume it with "
                                 f"--ckpt_path last, or choose another --trainer.default_root_dir (or "
                                 f"--checkpoint.dirpath) for a new run")
        return None, ""
    step = _check_checkpoint_file(Path(ckpt_path), model)
    return str(ckpt_path), f"resuming from {ckpt_path} (step {step})"
