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
3. the pairs of a row form blocks of ``BLOCK_PAIRS = 131072`` (a row's last block holds the rest: ``b`` pairs);
   the ``2 b`` 32-bit halves of a block's words in memory order (low half of its first word, high half of its
   first word, low half of the second, ...), read as signed int32, are ``h_0 ... h_{2b-1}``; pair ``p`` of the
   block takes ``s = h_p`` and ``a = h_{b+p}``;
4. in float32: ``u**2 = s**2 / 2**62 + 2**-64`` in ``(0, 1]`` (never 0: ``r <= sqrt(64 ln 2) = 6.66``),
   ``g = sqrt(-4 ln u**2) = 2 r``, ``t = tan(a pi / 2**32) = tan(theta / 2)`` with ``theta = a 2 pi / 2**32``
   in ``[-pi, pi)``;
5. Box-Muller through the half angle (one ``tan`` instead of ``cos`` and ``sin``): ``q = g / (1 + t**2)``;
   element ``j`` of the flattened draw is ``q - (1 + t**2) q / 2 = r cos theta`` and element ``j + m`` is
   ``q t = r sin theta``, ``m = ceil(n / 2)`` for a draw of ``n`` numbers per stimulus (an odd ``n`` drops the
   last sine).

Steps 1-3 are integer arithmetic (int64 tensor ops with two's-complement wrap-around, logical shifts
emulated by a mask) and the int32 -> float32 conversions are correctly rounded, so the float32 ``s`` and
``a pi / 2**32`` are the same bits on every device. The float step (``log``, ``sqrt``, ``tan``, ``addcmul``
and a division in float32) is within ``1e-6 * (1 + r)`` of a float64 evaluation on the same float32 ``s``
and half angle (checked in the tests); CPU and CUDA math libraries (and a fused multiply-add on the GPU) may
differ in the last one or two float32 ulps there, no more. Distinct keys give SplitMix64 streams that overlap
only when two keys differ by a multiple of the increment smaller than the draw, a chance of about
``B**2 * n / 2**64`` for ``B`` stimuli of ``n`` numbers.

On a CPU the draw is 24 element-wise passes per block, in cache, on one thread: about 1.4 times the cost of
``torch.randn`` of the same shape (``experiments/bench_stimulus_noise.py``, 16 x 256 x 56 x 56: 1.36-1.49x wall,
1.38-1.42x CPU seconds; ``torch.randn`` runs its Box-Muller in one fused pass, which eager tensor ops cannot).

>>> with StimulusNoise(model, seed=0) as noise:
...     for ids, x in batches:
...         noise.set_batch(ids)
...         out = model(x)
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from neuroreg.models.vone import VOneBlock

__all__ = ["StimulusNoise", "stimulus_key", "splitmix64", "counter_words", "counter_normal", "BLOCK_PAIRS"]

_MASK64 = 2 ** 64 - 1


def _signed64(value: int) -> int:
    """An unsigned 64-bit integer as the int64 with the same bits."""
    return value - 2 ** 64 if value >= 2 ** 63 else value


GOLDEN_GAMMA = _signed64(0x9E3779B97F4A7C15)    # SplitMix64's counter increment
_MIX1 = _signed64(0xBF58476D1CE4E5B9)
_MIX2 = _signed64(0x94D049BB133111EB)
_PI_2_32 = math.pi / 2.0 ** 32
# pairs of a block (the draw's definition, module docstring step 3); on a CPU also the pairs of one piece of work:
# few enough for its 24 element-wise passes to run in cache (1 MiB int64 buffers), many enough to keep the per-op
# overhead small (measured, CPU time against torch.randn on one thread: 2.1x for pieces of 2**14 pairs, 1.8x for
# 2**15, 1.4-1.5x for 2**17 to 2**19); on a GPU, pieces of many blocks keep the kernel launches few
BLOCK_PAIRS = 1 << 17
_CPU_PIECE_BLOCKS = 1
_DEVICE_PIECE_BLOCKS = 32


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


def _box_muller_(g: Tensor, t: Tensor, cos: Tensor, one: Tensor, tiny: Tensor) -> None:
    """Steps 4-5 of the module docstring in place: ``g``, ``t`` float32 ``s`` and ``a``, all of one shape; ``r cos
    theta`` into ``cos``, ``r sin theta`` into ``t``, ``g`` a work buffer; ``one``, ``tiny``: float32 ``1`` and
    ``2**-64`` of shape ``()``."""
    torch.addcmul(tiny, g, g, value=2.0 ** -62, out=g)               # u**2 = s**2 / 2**62 + 2**-64
    g.log_().mul_(-4.0).sqrt_()                                       # 2 r = sqrt(-4 ln u**2)
    t.mul_(_PI_2_32).tan_()                                           # tan(theta / 2)
    torch.addcmul(one, t, t, out=cos)                                 # 1 + t**2
    g.div_(cos)                                                       # q = 2 r / (1 + t**2)
    torch.addcmul(g, cos, g, value=-0.5, out=cos)                     # q - (1 + t**2) q / 2 = r cos theta
    t.mul_(g)                                                         # q t = r sin theta


def _fill(out: Tensor, keys: Tensor, counters: Tensor, block: int, work: tuple[Tensor, ...]) -> None:
    """Normal pairs of ``keys`` ``(R,)`` at ``counters`` ``(W,)`` into ``out`` ``(R, 2, W)`` float32: ``W / block``
    whole blocks of ``block`` pairs (module docstring, steps 2-5); ``work``: two flat int64 buffers of at least
    ``R W`` elements, and float32 ``1`` and ``2**-64`` of shape ``()``. The outputs and the second buffer (read
    as float32 once the words are made) hold the float step's numbers: three buffers in cache, not four."""
    r, w = out.shape[0], out.shape[2]
    xbuf, tbuf, one, tiny = work
    x, tmp = xbuf[:r * w].view(r, w), tbuf[:r * w].view(r, w)
    if r == 1:
        torch.add(counters, keys[0], out=x[0])
    else:
        torch.add(counters[None, :], keys[:, None], out=x)
    _splitmix64_(x, tmp)
    halves = x.view(r, w // block, block).view(torch.int32)     # (R, blocks, 2 block): low, high half of each word
    shape = (r, w // block, block)
    g, t, cos = tbuf.view(torch.float32)[:r * w].view(shape), out[:, 1].view(shape), out[:, 0].view(shape)
    g.copy_(halves[..., :block])
    t.copy_(halves[..., block:])
    _box_muller_(g, t, cos, one, tiny)


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Intra-op threads off while the CPU draw runs.

    The draw is 24 element-wise passes per cache-sized piece; with several intra-op threads each pass is a
    parallel region whose barrier, on a CPU shared with other work, costs far more than the pass (measured: 16
    to 50x slower with 2 threads on a loaded 2-core machine). Pieces small enough to stay on one thread by
    themselves (torch splits only passes of 32,768 elements or more) cost more in per-op overhead than they save.
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
        chunk = BLOCK_PAIRS * (_CPU_PIECE_BLOCKS if k.device.type == "cpu" else _DEVICE_PIECE_BLOCKS)
        step = min(m, chunk)                 # pairs of a row per piece: the whole row, or whole blocks of it
        rows = min(k.shape[0], max(1, chunk // m))
        work = (torch.empty(rows * step, dtype=torch.int64, device=k.device),
                torch.empty(rows * step, dtype=torch.int64, device=k.device),
                torch.ones((), dtype=torch.float32, device=k.device),
                torch.full((), 2.0 ** -64, dtype=torch.float32, device=k.device))
        with _one_cpu_thread(k.device):     # the counters too: a parallel pass here leaves torch's threads spinning
            counters = _counters(m, k.device)
            for a in range(0, k.shape[0], rows):
                r = min(rows, k.shape[0] - a)
                for c in range(0, m, step):
                    w = min(step, m - c)
                    whole = w // BLOCK_PAIRS * BLOCK_PAIRS     # whole blocks, then the row's last, shorter block
                    for lo, hi, block in ((c, c + whole, BLOCK_PAIRS), (c + whole, c + w, w - whole)):
                        if hi > lo:
                            _fill(out[a:a + r, :, lo:hi], k[a:a + r], counters[lo:hi], block, work)
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
