"""The pixel solvers of FactorTopy's start invert wide channel-correlation matrices in batches."""
import numpy as np
import torch

from neuroreg.scoring.factortopy.initialization import _pixel_solvers
from neuroreg.scoring.factortopy.ridge import _spd_inverse


def _spd_batch(batch: int, channels: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3 * channels, channels, dtype=torch.float64, generator=g)
    cov = x.transpose(1, 2) @ x / x.shape[1]
    cov.diagonal(dim1=1, dim2=2).add_(0.1)
    return cov


def test_batched_inverse_of_wide_matrices_on_two_threads_matches_numpy():
    # Batched LU inversion of float64 matrices from about 160 channels failed inside MKL on two threads
    # ("Parameter 6 was incorrect on entry to DLASWP"), which stopped FactorTopy on EfficientNet's late blocks.
    mats = _spd_batch(8, 192)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        inv = _spd_inverse(mats)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(inv.numpy(), np.linalg.inv(mats.numpy()), rtol=1e-9, atol=1e-12)


def test_a_matrix_that_is_not_positive_definite_falls_back_to_lu():
    mats = _spd_batch(3, 6)
    mats[1] = torch.tensor(np.diag([1.0, -2.0, 3.0, 4.0, 5.0, 6.0]))
    np.testing.assert_allclose(_spd_inverse(mats).numpy(), np.linalg.inv(mats.numpy()), rtol=1e-10, atol=1e-12)


def test_pixel_solvers_invert_each_pixels_regularised_channel_correlation():
    g = torch.Generator().manual_seed(1)
    maps = torch.randn(40, 5, 2, 3, generator=g)
    alpha = 0.5
    (solvers,) = _pixel_solvers(lambda: [(np.arange(40), [maps])], [(5, 2, 3)], alpha, "cpu")
    assert solvers.shape == (6, 5, 5)
    for p in range(6):
        x = maps.reshape(40, 5, 6)[:, :, p].double().numpy()
        corr = np.corrcoef(x, rowvar=False) + alpha * np.eye(5)
        np.testing.assert_allclose(solvers[p].numpy(), np.linalg.inv(corr), rtol=1e-8, atol=1e-10)
