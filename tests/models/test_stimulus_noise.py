"""Per-stimulus VOneBlock noise in extraction: a stochastic network's features belong to the images (ids), not to
their row, batch or device; the counter-based draw is SplitMix64 + Box-Muller, checked against Python integers
and float64, and against scipy for its distribution."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import neuroreg as nr
import neuroreg.models.stimulus_noise as sn
from neuroreg.models.stimulus_noise import (StimulusNoise, counter_normal, counter_words, splitmix64,
                                            stimulus_key)

KW = {"image_size": 32, "simple_channels": 4, "complex_channels": 4, "times": (1, 1, 1)}
M64 = 2 ** 64 - 1
GAMMA = 0x9E3779B97F4A7C15


# --- independent reference: Python integers (arbitrary precision) and float64 --------------------------------------

def ref_splitmix64(z: int) -> int:
    """SplitMix64's output function (Vigna, splitmix64.c) on an unsigned 64-bit int."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def ref_words(key: int, n_pairs: int) -> list[int]:
    """The first n_pairs outputs of a SplitMix64 generator seeded with key."""
    return [ref_splitmix64((key + (j + 1) * GAMMA) & M64) for j in range(n_pairs)]


def _int32(v: int) -> int:
    return v - 2 ** 32 if v >= 2 ** 31 else v


def ref_normal(key: int, n: int, block: int | None = None) -> np.ndarray:
    """The documented draw: words in blocks of `block` pairs, each block's 32-bit halves in memory order split into
    s (first half) and a (second half); s and a pi / 2**32 rounded to float32 as documented, the rest in float64."""
    block = sn.BLOCK_PAIRS if block is None else block
    m = (n + 1) // 2
    words = ref_words(key, m)
    s, a = [], []
    for start in range(0, m, block):
        halves = [_int32(h) for w in words[start:start + block] for h in (w & 0xFFFFFFFF, w >> 32)]
        s += halves[:len(halves) // 2]
        a += halves[len(halves) // 2:]
    s32 = np.array(s, dtype=np.int64).astype(np.float32).astype(np.float64)
    half = (np.array(a, dtype=np.int64).astype(np.float32) * np.float32(math.pi / 2 ** 32)).astype(np.float64)
    r = np.sqrt(-np.log(s32 ** 2 / 2.0 ** 62 + 2.0 ** -64))
    return np.concatenate([r * np.cos(2 * half), r * np.sin(2 * half)])[:n]


def _unsigned(t: torch.Tensor) -> list[int]:
    return [v & M64 for v in t.flatten().tolist()]


EDGE_KEYS = [0, 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, GAMMA, (2 ** 64 - GAMMA) & M64]


# --- the integer step: bit for bit ---------------------------------------------------------------------------------

def test_the_mixer_agrees_bit_for_bit_with_python_integers():
    rng = np.random.default_rng(0)
    states = EDGE_KEYS + [int(v) for v in rng.integers(0, 2 ** 63, 200)] + \
        [int(v) + 2 ** 63 for v in rng.integers(0, 2 ** 63, 200)]
    signed = torch.tensor([v - 2 ** 64 if v >= 2 ** 63 else v for v in states], dtype=torch.int64)
    assert _unsigned(splitmix64(signed)) == [ref_splitmix64(v) for v in states]


def test_the_words_agree_bit_for_bit_with_a_python_splitmix64_stream():
    rng = np.random.default_rng(1)
    keys = EDGE_KEYS + [int(v) * 2 + 1 for v in rng.integers(0, 2 ** 63, 5)]
    got = counter_words(keys, 30)                                       # 12 keys x 30 counters = 360 pairs
    assert got.shape == (len(keys), 30) and got.dtype == torch.int64
    for b, key in enumerate(keys):
        assert _unsigned(got[b]) == ref_words(key, 30)


def test_the_float_step_is_within_its_stated_tolerance_of_float64(monkeypatch):
    keys = EDGE_KEYS + [stimulus_key(3, 1, "img07")]
    for block in (sn.BLOCK_PAIRS, 96):                  # one short block a row; 10 whole blocks and a short one
        monkeypatch.setattr(sn, "BLOCK_PAIRS", block)
        got = counter_normal(keys, 2000).double().numpy()
        for b, key in enumerate(keys):
            ref = ref_normal(key, 2000, block)
            r = np.sqrt(np.concatenate([ref[:1000] ** 2 + ref[1000:] ** 2] * 2))
            assert np.all(np.abs(got[b] - ref) <= 1e-6 * (1 + r)), (key, block)


def test_the_half_angle_covers_the_circle_without_a_lost_sign():
    """s and a at the ends of int32 and around 0 (theta near -pi and pi, where tan(theta / 2) is near -+inf, and at
    0, +-pi / 2): the float step gives (r cos theta, r sin theta) within its tolerance."""
    grid = [-2 ** 31, -2 ** 31 + 1, -2 ** 30, -1, 0, 1, 2 ** 30, 2 ** 31 - 1]
    s, a = (np.array(v, dtype=np.int64).ravel() for v in np.meshgrid(grid, grid))
    g, t = torch.tensor(s, dtype=torch.float32), torch.tensor(a, dtype=torch.float32)
    cos = torch.empty_like(g)
    sn._box_muller_(g, t, cos, torch.ones(()), torch.full((), 2.0 ** -64))
    sin = t
    r = np.sqrt(-np.log(s.astype(np.float32).astype(np.float64) ** 2 / 2.0 ** 62 + 2.0 ** -64))
    theta = 2 * (a.astype(np.float32) * np.float32(math.pi / 2 ** 32)).astype(np.float64)
    for got, ref in ((cos, r * np.cos(theta)), (sin, r * np.sin(theta))):
        assert np.all(np.abs(got.double().numpy() - ref) <= 1e-6 * (1 + r))
    assert r.max() == pytest.approx(math.sqrt(64 * math.log(2)), rel=1e-6)   # s = 0: the largest radius, finite


def test_an_odd_count_is_the_even_draw_without_its_last_sine():
    keys = [5, 6]
    even = counter_normal(keys, 10)
    assert torch.equal(counter_normal(keys, 9), even[:, :9])
    np.testing.assert_allclose(counter_normal(keys, 9)[1].double().numpy(), ref_normal(6, 9), rtol=0, atol=1e-5)


def test_a_row_depends_on_its_key_only_whatever_the_chunking(monkeypatch):
    keys = [stimulus_key(0, 0, f"s{i}") for i in range(5)]
    monkeypatch.setattr(sn, "BLOCK_PAIRS", 8)                       # 51 pairs a row: 6 whole blocks and one of 3
    whole = counter_normal(keys, 101)
    np.testing.assert_allclose(whole[3].double().numpy(), ref_normal(keys[3], 101, 8), rtol=0, atol=1e-5)
    for blocks in (2, 7, 13):     # pieces: part of a row (a short last piece), one row, two rows (a short last group)
        monkeypatch.setattr(sn, "_CPU_PIECE_BLOCKS", blocks)
        assert torch.equal(counter_normal(keys, 101), whole)
        assert torch.equal(counter_normal(keys[::-1], 101), whole.flip(0))
        assert torch.equal(counter_normal(keys[2:3], 101), whole[2:3])


def test_the_cpu_draw_leaves_the_thread_count_as_it_found_it():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        many = counter_normal([7, 8], 3000)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert torch.equal(counter_normal([7, 8], 3000), many)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


# --- the distribution --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_draw():
    keys = [stimulus_key(0, 0, f"img{i}") for i in range(4)] + [stimulus_key(0, 1, "img0"), 12345, 12346]
    return counter_normal(keys, 2 ** 17).double().numpy()      # 7 x 131,072


def test_mean_variance_and_normality(big_draw):
    z = big_draw[:4].ravel()
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / n)
    assert stats.kstest(z, "norm").pvalue > 0.01
    assert np.isfinite(big_draw).all() and np.abs(big_draw).max() < math.sqrt(64 * math.log(2)) + 1e-4


def _corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


def test_no_correlation_between_neighbours_stimuli_or_blocks(big_draw):
    z = big_draw
    n, half = z.shape[1], z.shape[1] // 2
    bound = 5 / math.sqrt(half)
    for row in z:
        assert abs(_corr(row[:-1], row[1:])) < bound                  # neighbouring elements
        assert abs(_corr(row[:half], row[half:])) < bound             # the cosine and sine of one word
        assert abs(_corr(row[:half] ** 2, row[half:] ** 2)) < 2 * bound   # ... independent, not just uncorrelated
    bound = 5 / math.sqrt(n)
    assert abs(_corr(z[0], z[1])) < bound                             # stimuli with different keys
    assert abs(_corr(z[0], z[4])) < bound                             # one stimulus, two blocks
    assert abs(_corr(z[5], z[6])) < bound                             # adjacent keys


# --- per-stimulus noise in a VOneNet -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return nr.create_model("vone_cornet_s", **KW).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(10, 3, 32, 32, generator=torch.Generator().manual_seed(1))


IDS = np.array([f"img{i:02d}" for i in range(10)])


def _v1(model, images, ids, **kw):
    return torch.as_tensor(nr.extract(model, images, ["V1", "IT"], stimulus_ids=ids, progress=False, **kw)["V1"])


def test_row_order_and_batch_size_do_not_change_the_features(model, images):
    ref = _v1(model, images, IDS, seed=3, batch_size=4)
    perm = np.random.default_rng(0).permutation(10)
    shuffled = _v1(model, images[perm], IDS[perm], seed=3, batch_size=7)
    assert torch.equal(shuffled, ref[perm])
    assert torch.equal(_v1(model, images, IDS, seed=3, batch_size=10), ref)


def test_the_noise_is_the_documented_per_stimulus_draw(model, images):
    """V1 of image 2 equals the block run with the float64 reference draw of key (seed 5, block 0, "img02")."""
    got = _v1(model, images, IDS, seed=5)
    block = model.vone_block
    shape = (block.out_channels, block.output_size(32), block.output_size(32))
    key = int.from_bytes(__import__("hashlib").blake2b(b"5|0|img02", digest_size=8).digest(), "little")
    assert stimulus_key(5, 0, "img02") == key
    draw = torch.as_tensor(ref_normal(key, math.prod(shape)), dtype=torch.float32).view(1, *shape)
    block.fixed_noise = draw
    try:
        with torch.no_grad():
            expected = block(images[2:3])
    finally:
        block.fixed_noise = None
    torch.testing.assert_close(got[2:3], expected, rtol=0, atol=1e-5)


def test_ids_and_seeds_choose_the_draw(model, images):
    same = images[[0, 0]]
    pair = _v1(model, same, ["a", "b"], seed=0)
    assert not torch.equal(pair[0], pair[1])                   # one image, two ids: independent draws
    assert torch.equal(_v1(model, same, ["a", "a"], seed=0)[1], pair[0])
    assert not torch.equal(_v1(model, same, ["a", "b"], seed=1)[0], pair[0])


def test_frozen_noise_is_respected_and_state_is_restored(model, images):
    block = model.vone_block
    block.fix_noise(batch_size=10, seed=0)
    try:
        frozen = block.fixed_noise.clone()
        got = _v1(model, images, IDS, batch_size=10)
        assert torch.equal(block.fixed_noise, frozen)           # the caller's frozen draw is kept and used
        with torch.no_grad():
            torch.testing.assert_close(got, block(images), rtol=0, atol=1e-6)
    finally:
        block.unfix_noise()
    state = torch.get_rng_state()
    _v1(model, images, IDS)
    assert block.fixed_noise is None and torch.equal(torch.get_rng_state(), state)


def test_a_batch_with_another_count_of_ids_is_refused(model, images):
    with StimulusNoise(model, seed=0) as noise, torch.no_grad():
        assert noise.active
        noise.set_batch(["a", "b"])
        with pytest.raises(RuntimeError, match="a batch of 3 images came with 2 stimulus ids"):
            model(images[:3])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"n must be a non-negative int .* got -1"):
        counter_normal([1], -1)
    with pytest.raises(ValueError, match=r"keys must be unsigned 64-bit integers; got -3"):
        counter_normal([-3], 4)
    with pytest.raises(ValueError, match=r"keys must be a 1-d int64 tensor; got dtype torch.float32"):
        counter_normal(torch.zeros(2), 4)
    with pytest.raises(TypeError, match="state must be an int64 tensor; got torch.int32"):
        splitmix64(torch.zeros(2, dtype=torch.int32))
    with pytest.raises(ValueError, match="n_pairs must be a non-negative int; got 1.5"):
        counter_words([1], 1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_same_bits_and_noise_on_a_gpu(model, images):
    keys = EDGE_KEYS + [stimulus_key(2, 0, "img01")]
    assert torch.equal(counter_words(keys, 1000, device="cuda").cpu(), counter_words(keys, 1000))
    torch.testing.assert_close(counter_normal(keys, 2000, device="cuda").cpu(), counter_normal(keys, 2000),
                               rtol=2e-6, atol=2e-6)             # each within 1e-6 (1 + r) of float64
    cpu = _v1(model, images, IDS, seed=2)
    gpu = _v1(model, images, IDS, seed=2, device="cuda")
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4)
