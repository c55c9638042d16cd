import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage import color

import neuroreg
from neuroreg.errors import ShapeError, UnknownNameError
from neuroreg.robustness import CORRUPTIONS, SEVERITY_PARAMS, Corruption, corrupt
from neuroreg.robustness._filters import box_resize, gaussian_blur, motion_blur, reflect_gaussian_smooth
from neuroreg.robustness._textures import plasma_fractal

# Hendrycks & Dietterich 2019, imagenet_c/corruptions.py (hendrycks/robustness), severities 1..5.
PUBLISHED = {
    "gaussian_noise": [.08, .12, 0.18, 0.26, 0.38],
    "shot_noise": [60, 25, 12, 5, 3],
    "impulse_noise": [.03, .06, .09, 0.17, 0.27],
    "defocus_blur": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
    "glass_blur": [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
    "motion_blur": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],
    "zoom_blur": [np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
                  np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03)],
    "snow": [(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
             (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)],
    "frost": [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],
    "fog": [(1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)],
    "brightness": [.1, .2, .3, .4, .5],
    "contrast": [0.4, .3, .2, .1, .05],
    "elastic_transform": [(488, 170.8, 24.4), (488, 19.52, 48.8), (12.2, 2.44, 4.88), (17.08, 2.44, 4.88),
                          (29.28, 2.44, 4.88)],
    "pixelate": [0.6, 0.5, 0.4, 0.3, 0.25],
    "jpeg_compression": [25, 18, 15, 10, 7],
}


def _photos(size=224, n=2):
    folder = Path(neuroreg.__file__).parent / "brain" / "_data" / "algonauts2019_78" / "images"
    files = sorted(folder.glob("*.jpg"))[:n]
    imgs = [Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR) for f in files]
    return imgs, torch.stack([torch.from_numpy(np.asarray(i).copy()).permute(2, 0, 1).float() / 255 for i in imgs])


@pytest.fixture(scope="module")
def photos():
    return _photos()


def _psnr(a, b):
    return float((10 * torch.log10(1 / ((a - b) ** 2).flatten(1).mean(1))).mean())


def test_fifteen_corruptions_with_the_published_tables():
    assert list(CORRUPTIONS) == list(PUBLISHED)
    for name, table in PUBLISHED.items():
        ours = SEVERITY_PARAMS[name]
        assert len(ours) == 5
        if name == "zoom_blur":
            for (start, stop, step), ref in zip(ours, table):
                np.testing.assert_allclose(np.arange(start, stop, step), ref)
        else:
            np.testing.assert_allclose(np.array(ours, dtype=float), np.array(table, dtype=float), rtol=1e-12)


@pytest.fixture(scope="module")
def degradation(photos):
    _, x = photos
    from kornia.metrics import ssim
    out = {}
    for name in CORRUPTIONS:
        corrupted = [corrupt(x, name, s, seed=0) for s in range(1, 6)]
        out[name] = ([_psnr(c, x) for c in corrupted], [float(ssim(c, x, 11).mean()) for c in corrupted])
    return out


@pytest.mark.parametrize("name", [n for n in PUBLISHED if n not in ("frost", "fog", "elastic_transform")])
def test_psnr_falls_with_severity(degradation, name):
    # 0.25 dB slack: snow severities 2 and 3 trade many small flakes for fewer large ones
    # at the same image weight, and come out equal in squared error.
    psnr, _ = degradation[name]
    assert all(b < a + 0.25 for a, b in zip(psnr, psnr[1:])), psnr
    assert psnr[-1] < psnr[0] - 1.0, psnr


def test_fog_darkens_the_image_more_with_severity(degradation):
    # Severities 3 and 4 share strength 2.5 and differ only in the fractal's roughness
    # (wibble decay 1.7 vs 1.5), so only the strength steps are ordered.
    psnr, _ = degradation["fog"]
    assert psnr[0] > psnr[1] > psnr[2] and psnr[3] > psnr[4] and psnr[4] < psnr[0] - 1.0


def test_frost_loses_structure_with_severity(degradation):
    # Image weight falls (1 -> 0.6) while frost weight rises (0.4 -> 0.75): a brighter
    # image can be closer in squared error to a dimmer original, so structure (SSIM) is the measure.
    _, ssim = degradation["frost"]
    assert all(b < a for a, b in zip(ssim, ssim[1:])), ssim


def test_elastic_follows_the_published_non_monotone_table(degradation):
    # Severities 1-2 combine a large affine jitter (24-49 px) with smooth fields, 3-5 a
    # 4.9 px jitter with growing local wobble (alpha 12 -> 29 px): the table is not monotone.
    psnr, _ = degradation["elastic_transform"]
    assert max(psnr[0], psnr[1]) < psnr[2]
    assert psnr[2] > psnr[3] > psnr[4]


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_any_size_in_range_and_seeded(name):
    x = torch.rand(3, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    a = corrupt(x, name, 3, seed=5)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0 and float(a.max()) <= 1 and torch.isfinite(a).all()
    torch.testing.assert_close(corrupt(x, name, 3, seed=5), a, rtol=0, atol=0)
    assert not torch.equal(a, x)
    if name not in ("defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression"):
        assert not torch.equal(corrupt(x, name, 3, seed=6), a)


def test_module_twin_equals_function(photos):
    _, x = photos
    torch.testing.assert_close(Corruption("snow", 2, seed=1)(x), corrupt(x, "snow", 2, seed=1))


def test_contrast_matches_the_formula(photos):
    imgs, x = photos
    ref = np.asarray(imgs[0]) / 255.0
    means = ref.mean(axis=(0, 1), keepdims=True)
    expected = np.clip((ref - means) * 0.2 + means, 0, 1)
    got = corrupt(x[:1], "contrast", 3)[0].permute(1, 2, 0).double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_brightness_matches_skimage_hsv(photos):
    imgs, x = photos
    hsv = color.rgb2hsv(np.asarray(imgs[1]) / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + 0.4, 0, 1)
    expected = color.hsv2rgb(hsv)
    got = corrupt(x[1:], "brightness", 4)[0].permute(1, 2, 0).double().numpy()
    np.testing.assert_allclose(got, expected, atol=2e-4)


def test_pixelate_matches_pil_box(photos):
    imgs, x = photos
    for severity, c in enumerate(PUBLISHED["pixelate"], start=1):
        small = imgs[0].resize((int(224 * c), int(224 * c)), Image.BOX).resize((224, 224), Image.BOX)
        expected = np.asarray(small) / 255.0
        got = corrupt(x[:1], "pixelate", severity)[0].permute(1, 2, 0).double().numpy()
        assert np.abs(got - expected).max() <= 1.01 / 255  # PIL rounds to 8 bits


def test_box_resize_matches_pil_float_images():
    a = np.random.default_rng(0).random((50, 37)).astype(np.float32)
    for h, w in [(30, 22), (13, 9), (80, 61)]:
        ref = np.asarray(Image.fromarray(a, mode="F").resize((w, h), Image.BOX))
        got = box_resize(torch.from_numpy(a)[None, None], h, w)[0, 0].numpy()
        np.testing.assert_allclose(got, ref, atol=1e-6)


def test_jpeg_is_close_to_pil_jpeg(photos):
    imgs, x = photos
    for severity, quality in enumerate(PUBLISHED["jpeg_compression"], start=1):
        buf = io.BytesIO()
        imgs[0].save(buf, "JPEG", quality=quality)
        ref = torch.from_numpy(np.asarray(Image.open(buf).convert("RGB")).copy()).permute(2, 0, 1).float() / 255
        got = corrupt(x[:1], "jpeg_compression", severity)[0]
        # the codecs agree far better than JPEG agrees with the original
        assert _psnr(got[None], ref[None]) > _psnr(ref[None], x[:1]) + 8


def test_noise_statistics():
    grey = torch.full((1, 3, 200, 200), 0.5)
    g = corrupt(grey, "gaussian_noise", 1, seed=0) - 0.5
    assert float(g.std()) == pytest.approx(0.08, rel=0.02)
    s = corrupt(grey, "shot_noise", 2, seed=0)  # Poisson(0.5 * 25) / 25: mean 0.5, var 0.5 / 25
    assert float(s.mean()) == pytest.approx(0.5, abs=0.003)
    assert float(s.var()) == pytest.approx(0.5 / 25, rel=0.03)
    i = corrupt(grey, "impulse_noise", 5, seed=0)
    hit = (i != 0.5).float()
    assert float(hit.mean()) == pytest.approx(0.27, abs=0.005)
    assert float((i == 1).float().sum() / hit.sum()) == pytest.approx(0.5, abs=0.01)


def test_gaussian_blur_matches_scipy():
    x = torch.rand(1, 1, 30, 41, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for sigma in (0.7, 1.5, 3.0):
        ref = ndimage.gaussian_filter(x[0, 0].numpy(), sigma, mode="nearest", truncate=4.0)
        np.testing.assert_allclose(gaussian_blur(x, sigma)[0, 0].numpy(), ref, atol=1e-10)


def test_reflect_smoothing_matches_scipy_even_for_kernels_wider_than_the_image():
    field = torch.rand(2, 48, 40, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for sigma in (1.3, 6.0, 60.0):
        got = reflect_gaussian_smooth(field, sigma)
        for k in range(2):
            ref = ndimage.gaussian_filter(field[k].numpy(), sigma, mode="reflect", truncate=3.0)
            np.testing.assert_allclose(got[k].numpy(), ref, atol=1e-10)


def test_motion_blur_impulse_response_is_a_one_sided_gaussian():
    x = torch.zeros(1, 1, 21, 41, dtype=torch.float64)
    x[0, 0, 10, 30] = 1.0
    radius, sigma = 5, 3.0
    out = motion_blur(x, radius, sigma, torch.tensor([0.0]))
    i = np.arange(2 * radius + 1)
    weights = np.exp(-i ** 2 / (2 * sigma ** 2))
    weights /= weights.sum()
    # out(p) = sum_i w_i x(p + i e_x): the impulse at column 30 lights columns 30 - i
    np.testing.assert_allclose(out[0, 0, 10, 30 - i].numpy(), weights, atol=1e-12)
    assert float(out.sum()) == pytest.approx(1.0)


def test_plasma_fractal_range_and_size():
    like = torch.zeros(1)
    p = plasma_fractal(3, 64, 2.0, torch.Generator().manual_seed(0), like)
    assert p.shape == (3, 64, 64)
    assert float(p.amin(dim=(1, 2)).max()) == 0.0 and float(p.amax(dim=(1, 2)).min()) == 1.0
    with pytest.raises(ValueError, match="power of two"):
        plasma_fractal(1, 48, 2.0, torch.Generator(), like)


def test_rejects_bad_input():
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(UnknownNameError, match="speckle"):
        corrupt(x, "speckle", 1)
    for severity in (0, 6, 2.5):
        with pytest.raises(ValueError, match="severity"):
            corrupt(x, "fog", severity)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt(x * 255, "fog", 1)
    with pytest.raises(ShapeError, match="RGB"):
        corrupt(x[:, :1], "fog", 1)
    with pytest.raises(ShapeError, match="4-D"):
        corrupt(x[0], "fog", 1)
