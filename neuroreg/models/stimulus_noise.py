"""VOneBlock noise drawn per stimulus, so a stochastic network's features belong to the images, not to their order.

A VOneBlock adds fresh spiking noise at every forward pass from torch's global
generator. Seeding that generator once per extraction makes a run repeatable,
but the draw an image gets still depends on where it sits: shuffle the rows,
change the batch size or move to a GPU (whose generator gives other numbers)
and every image gets other noise, so a score moves by as much as the noise
moves it (measured: cRSA of ``vone_cornet_s`` on the 92 images changed by up
to 0.04 with the row order).

:class:`StimulusNoise` instead gives each image its own standard-normal draw
from a generator seeded by ``(seed, block, stimulus id)``, drawn on the CPU
and then moved to the images' device. The same image with the same id and
seed gets the same noise in any row, batch and device; different ids get
independent draws. Blocks whose noise the caller froze (``fix_noise``) and
noise-free blocks are left alone.

>>> with StimulusNoise(model, seed=0) as noise:
...     for ids, x in batches:
...         noise.set_batch(ids)
...         out = model(x)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from neuroreg.models.vone import VOneBlock

__all__ = ["StimulusNoise", "stimulus_seed"]


def stimulus_seed(seed: int, block: int, stimulus_id: Any) -> int:
    """63-bit generator seed of one stimulus's noise in one block (a hash of ``seed``, ``block`` and the id's text)."""
    digest = hashlib.blake2b(f"{int(seed)}|{int(block)}|{stimulus_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2 ** 63 - 1)


class StimulusNoise:
    """Context manager: while active, each noisy VOneBlock of ``model`` draws its noise per stimulus.

    Call :meth:`set_batch` with the stimulus ids of a batch before its forward pass; ids of another
    count than the batch's raise (the images would get someone else's noise). Passes before the first
    :meth:`set_batch` (a network sizing its maps) keep the block's own draw. The blocks'
    ``fixed_noise`` is restored on exit.
    """

    def __init__(self, model: nn.Module, seed: int = 0) -> None:
        self.seed = int(seed)
        self.blocks = [m for m in model.modules()
                       if isinstance(m, VOneBlock) and m.noise_mode not in (None, "none") and m.fixed_noise is None]
        self._ids: list[str] | None = None
        self._handles: list[RemovableHandle] = []
        self._pool: ThreadPoolExecutor | None = None

    @property
    def active(self) -> bool:
        """Whether the model has a block whose noise this draws."""
        return bool(self.blocks)

    def set_batch(self, stimulus_ids: Sequence[Any]) -> None:
        """The ids of the images of the next forward pass, in batch order."""
        self._ids = [str(i) for i in stimulus_ids]

    def _draw(self, index: int, block: VOneBlock, x: Tensor) -> Tensor | None:
        if self._ids is None:       # a pass before the first batch (a network sizing its maps): the block's own draw
            return None
        if len(self._ids) != x.shape[0]:
            raise RuntimeError(f"per-stimulus VOneBlock noise: a batch of {x.shape[0]} images came with "
                               f"{len(self._ids)} stimulus ids; call set_batch(ids) before each forward pass")
        ids = self._ids
        shape = (block.out_channels, block.output_size(x.shape[-2]), block.output_size(x.shape[-1]))
        out = torch.empty((len(ids), *shape))

        def draw(k: int) -> None:
            gen = torch.Generator().manual_seed(stimulus_seed(self.seed, index, ids[k]))
            torch.randn(shape, generator=gen, out=out[k])

        # one generator per image; the draws are independent, so they are spread over threads (torch releases
        # the GIL while it fills a tensor): at 224 px a draw is about 1.6 M numbers
        if self._pool is not None and len(ids) > 1:
            list(self._pool.map(draw, range(len(ids))))
        else:
            for k in range(len(ids)):
                draw(k)
        return out

    def __enter__(self) -> StimulusNoise:
        threads = torch.get_num_threads()
        if self.blocks and threads > 1:
            self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vone-noise")
        for index, block in enumerate(self.blocks):
            def pre_hook(module: nn.Module, inputs: tuple[Tensor, ...], index: int = index,
                         block: VOneBlock = block) -> None:
                block.fixed_noise = self._draw(index, block, inputs[0])
            self._handles.append(block.register_forward_pre_hook(pre_hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for block in self.blocks:
            block.fixed_noise = None
        self._ids = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
