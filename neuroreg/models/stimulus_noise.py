"""VOneBlock noise drawn per stimulus, so a stochastic network's features belong to the images, not to their order.

A VOneBlock adds fresh spiking noise at every forward pass from torch's global
generator. Seeding that generator once per extraction makes a run repeatable,
but the draw an image gets still depends on where it sits: shuffle the rows,
change the batch size or move to a GPU (whose generator gives other numbers)
and every image gets other noise, so a score moves by as much as the noise
moves it (measured: cRSA of ``vone_cornet_s`` on the 92 images changed by up
to 0.04 with the row order).

:class:`StimulusNoise` instead gives each image its own standard-normal draw,
computed on the images' own device by a counter-based generator
(:func:`counter_normal`): element ``e`` of the draw is a fixed function of
``(seed, block, stimulus id, e)``. The same image with the same id and seed
gets the same noise in any row, batch and device; different ids get
independent draws. Blocks whose noise the caller froze (``fix_noise``) and
noise-free blocks are left alone.

The draw, exactly:

1. key ``k = stimulus_key(seed, block, id)``: 64 bits of a blake2b hash of the text ``"seed|block|id"``;
2. word ``w_j = splitmix64(k + (j + 1) * 0x9E3779B97F4A7C15 mod 2**64)`` for the pair counter ``j``:
   the ``(j + 1)``-th output of the SplitMix64 generator seeded with ``k`` (Steele, Lea & Flood 2014);
3. ``hi``, ``lo``: the high and low 32 bits of ``w_j`` read as signed int32;
   ``u = |2 hi + 1| / 2**32`` in ``(0, 1)`` (never 0, so the log is finite and ``r <= sqrt(64 ln 2) = 6.66``;
   rounded to float32, ``u`` can reach 1, giving ``r = 0``) and ``theta = lo * 2 pi / 2**32`` in ``[-pi, pi)``;
4. Box-Muller: ``r = sqrt(-2 ln u)``; element ``j`` of the flattened draw is ``r cos theta`` and element
   ``j + m`` is ``r sin theta``, ``m = ceil(n / 2)`` for a draw of ``n`` numbers per stimulus.

Steps 1-3 are integer arithmetic (int64 tensor ops with two's-complement wrap-around, logical shifts
emulated by a mask) and the int -> float32 conversions are correctly rounded, so ``u`` and ``theta`` are
the same bits on every device. The float step (``log``, ``sqrt``, ``cos``, ``sin`` in float32) is within
about ``1e-6 * (1 + r)`` of a float64 evaluation on the same float32 ``u`` and ``theta``; CPU and CUDA
math libraries may differ in the last one or two float32 ulps there, no more. Distinct keys give SplitMix64
streams that overlap only when two keys differ by a multiple of the increment smaller than the draw, a chance of
about ``B**2 * n / 2**64`` for ``B`` stimuli of ``n`` numbers.

>>> with StimulusNoise(model, seed=0) as noise:
...     for ids, x in batches:
...         noise.set_batch(ids)
...         out = model(x)
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from neuroreg.models.vone import VOneBlock

__all__ = ["StimulusNoise", "stimulus_key", "splitmix64", "counter_words", "counter_normal"]

_MASK64 = 2 ** 64 - 1


def _signed64(value: int) -> int:
    """An unsigned 64-bit integer as the int64 with the same bits."""
    return value - 2 ** 64 if value >= 2 ** 63 else value


GOLDEN_GAMMA = _signed64(0x9E3779B97F4A7C15)    # SplitMix64's counter increment
_MIX1 = _signed64(0xBF58476D1CE4E5B9)
_MIX2 = _signed64(0x94D049BB133111EB)
_TWO_PI_2_32 = 2.0 * math.pi / 2.0 ** 32
# pairs per piece of work: on a CPU the ~25 element-wise passes then run in cache (512 KiB int64 buffers) instead
# of streaming the whole draw through memory each time (measured 1.9x -> 1.55x torch.randn); on a GPU, large
# pieces keep the kernel launches few (32 MiB int64 buffers)
_CPU_PAIRS_PER_CHUNK = 1 << 16
_DEVICE_PAIRS_PER_CHUNK = 1 << 22


def stimulus_key(seed: int, block: int, stimulus_id: Any) -> int:
    """Unsigned 64-bit key of one stimulus's noise in one block (blake2b of ``"seed|block|id"``)."""
    digest = hashlib.blake2b(f"{int(seed)}|{int(block)}|{stimulus_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _xor_shift_right(x: Tensor, shift: int, tmp: Tensor) -> None:
    """``x ^= x >>> shift`` in place, a logical shift: ``>>`` on int64 is arithmetic, so the sign copies are masked."""
    torch.bitwise_right_shift(x, shift, out=tmp)
    tmp.bitwise_and_((1 << (64 - shift)) - 1)
    x.bitwise_xor_(tmp)


def _splitmix64_(x: Tensor, tmp: Tensor) -> Tensor:
    """SplitMix64's output function in place on int64 ``x`` (``tmp``: a work buffer of its shape)."""
    _xor_shift_right(x, 30, tmp)
    x.mul_(_MIX1)
    _xor_shift_right(x, 27, tmp)
    x.mul_(_MIX2)
    _xor_shift_right(x, 31, tmp)
    return x


def splitmix64(state: Tensor) -> Tensor:
    """SplitMix64's output function of int64 states (the 64 bits read as unsigned), any shape; a new tensor."""
    if not isinstance(state, Tensor) or state.dtype != torch.int64:
        seen = state.dtype if isinstance(state, Tensor) else type(state).__name__
        raise TypeError(f"state must be an int64 tensor; got {seen}")
    x = state.clone()
    return _splitmix64_(x, torch.empty_like(x))


def _keys_tensor(keys: Tensor | Sequence[int], device: torch.device | str | None) -> Tensor:
    if isinstance(keys, Tensor):
        if keys.dtype != torch.int64 or keys.ndim != 1:
            raise ValueError(f"keys must be a 1-d int64 tensor; got dtype {keys.dtype}, shape {tuple(keys.shape)}")
        return keys.to(device) if device is not None else keys
    values = [int(k) for k in keys]
    bad = [k for k in values if not 0 <= k <= _MASK64]
    if bad:
        raise ValueError(f"keys must be unsigned 64-bit integers; got {bad[0]}")
    return torch.tensor([_signed64(k) for k in values], dtype=torch.int64, device=device)


def _counters(n_pairs: int, device: torch.device) -> Tensor:
    """``(j + 1) * gamma mod 2**64`` for ``j < n_pairs``, int64 ``(n_pairs,)``."""
    return torch.arange(1, n_pairs + 1, dtype=torch.int64, device=device).mul_(GOLDEN_GAMMA)


def counter_words(keys: Tensor | Sequence[int], n_pairs: int, device: torch.device | str | None = None) -> Tensor:
    """The 64-bit words ``w_j`` of step 2 (module docstring), int64 ``(len(keys), n_pairs)`` (bits as unsigned).

    keys: ``(B,)`` unsigned 64-bit keys (Python ints) or an int64 tensor of their bits.
    """
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 0:
        raise ValueError(f"n_pairs must be a non-negative int; got {n_pairs!r}")
    k = _keys_tensor(keys, device)
    x = _counters(n_pairs, k.device)[None, :] + k[:, None]
    return _splitmix64_(x, torch.empty_like(x))


def _low_word(x: Tensor) -> Tensor:
    """The low 32 bits of int64 ``x`` as signed int32 (a strided view on little-endian hosts: no pass)."""
    if sys.byteorder == "little":
        return x.view(torch.int32)[..., 0::2]
    return torch.bitwise_left_shift(x, 32).bitwise_right_shift_(32)


def _fill(out: Tensor, keys: Tensor, counters: Tensor, x: Tensor, tmp: Tensor, cos: Tensor) -> None:
    """Box-Muller pairs of ``keys`` ``(R,)`` at ``counters`` ``(L,)`` into ``out`` ``(R, 2, L)`` float32;
    ``x``, ``tmp`` int64 and ``cos`` float32 work buffers ``(R, L)``."""
    torch.add(counters[None, :], keys[:, None], out=x)
    _splitmix64_(x, tmp)
    radius, angle = out[:, 0], out[:, 1]
    torch.bitwise_right_shift(x, 31, out=tmp).bitwise_or_(1)      # 2 * hi + 1 (bit 31 forced to 1)
    radius.copy_(tmp).abs_().mul_(2.0 ** -32).log_().mul_(-2.0).sqrt_()
    angle.copy_(_low_word(x)).mul_(_TWO_PI_2_32)
    torch.cos(angle, out=cos)
    angle.sin_().mul_(radius)
    radius.mul_(cos)


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Intra-op threads off while the CPU draw runs.

    The draw is ~26 element-wise passes per cache-sized piece; with several intra-op threads each pass is a
    parallel region whose barrier, on a CPU shared with other work, costs far more than the pass (measured: 16
    to 50x slower with 2 threads on a loaded 2-core machine, against 1.6x ``torch.randn`` on one thread).
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def counter_normal(keys: Tensor | Sequence[int], n: int, device: torch.device | str | None = None) -> Tensor:
    """Standard-normal draws keyed by stimulus: float32 ``(len(keys), n)``, row ``b`` a function of ``keys[b]`` only.

    keys: ``(B,)`` unsigned 64-bit keys (Python ints, e.g. from :func:`stimulus_key`) or an int64 tensor of their
    bits; the draw is made on ``device`` (default: the keys tensor's, else the CPU). The formula and the
    tolerance of its float step are in the module docstring.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int (numbers per stimulus); got {n!r}")
    k = _keys_tensor(keys, device)
    m = (n + 1) // 2
    out = torch.empty((k.shape[0], 2, m), dtype=torch.float32, device=k.device)
    if m and k.shape[0]:
        chunk = _CPU_PAIRS_PER_CHUNK if k.device.type == "cpu" else _DEVICE_PAIRS_PER_CHUNK
        counters = _counters(m, k.device)
        cols = min(m, chunk)                  # pieces of about `chunk` pairs: several rows, or part of one
        rows = max(1, chunk // m)
        x = torch.empty((min(rows, k.shape[0]), cols), dtype=torch.int64, device=k.device)
        tmp, cos = torch.empty_like(x), torch.empty(x.shape, dtype=torch.float32, device=k.device)
        with _one_cpu_thread(k.device):
            for a in range(0, k.shape[0], rows):
                r = min(rows, k.shape[0] - a)
                for c in range(0, m, cols):
                    w = min(cols, m - c)
                    _fill(out[a:a + r, :, c:c + w], k[a:a + r], counters[c:c + w],
                          x[:r, :w], tmp[:r, :w], cos[:r, :w])
    flat = out.view(k.shape[0], 2 * m)
    return flat if 2 * m == n else flat[:, :n].contiguous()


class StimulusNoise:
    """Context manager: while active, each noisy VOneBlock of ``model`` draws its noise per stimulus.

    Call :meth:`set_batch` with the stimulus ids of a batch before its forward pass; ids of another
    count than the batch's raise (the images would get someone else's noise). Passes before the first
    :meth:`set_batch` (a network sizing its maps) keep the block's own draw. The blocks'
    ``fixed_noise`` is restored on exit. Block ``i`` (in ``model.modules()`` order among the noisy,
    unfrozen blocks) of stimulus ``id`` draws ``counter_normal([stimulus_key(seed, i, id)], n)``.
    """

    def __init__(self, model: nn.Module, seed: int = 0) -> None:
        self.seed = int(seed)
        self.blocks = [m for m in model.modules()
                       if isinstance(m, VOneBlock) and m.noise_mode not in (None, "none") and m.fixed_noise is None]
        self._ids: list[str] | None = None
        self._handles: list[RemovableHandle] = []

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
        shape = (block.out_channels, block.output_size(x.shape[-2]), block.output_size(x.shape[-1]))
        keys = [stimulus_key(self.seed, index, i) for i in self._ids]
        return counter_normal(keys, math.prod(shape), device=x.device).view(len(keys), *shape)

    def __enter__(self) -> StimulusNoise:
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
