import io
import math
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
from neuroreg.robustness._filters import (box_resize, gaussian_blur, motion_blur, nearest_resize,
                                          reflect_gaussian_smooth, zoom)
from neuroreg.robustness.corruptions import _glass_index, load_frost_images
from neuroreg.robustness._textures import frost_texture, plasma_fractal

# Hendrycks & Dietterich 2019, imagenet_c/corruptions.py (hendrycks/robustness), severities 1..5;
# the elastic transform is the imagecorruptions 1.1.2 port's (displacement gain alpha).
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
    "elastic_transform": [12.5, 16.25, 21.25, 25.0, 30.0],
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


@pytest.mark.parametrize("name", [n for n in PUBLISHED if n not in ("frost", "fog", "glass_blur")])
def test_psnr_falls_with_severity(degradation, name):
    # 0.25 dB slack: snow severities 2 and 3 trade many small flakes for fewer large ones
    # at the same image weight, and come out equal in squared error.
    psnr, _ = degradation[name]
    assert all(b < a + 0.25 for a, b in zip(psnr, psnr[1:])), psnr
    assert psnr[-1] < psnr[0] - 1.0, psnr


def test_glass_blur_follows_the_non_monotone_original(degradation):
    # Severity 3 (sigma 1, delta 2, 3 iterations) shuffles more than 4 (1.1, 3, 2 iterations);
    # imagecorruptions gives SSIM 0.569 vs 0.582 on the reference images.
    _, ssim = degradation["glass_blur"]
    assert ssim[2] < ssim[3] and ssim[4] < ssim[0] - 0.1, ssim


def test_fog_darkens_the_image_more_with_severity(degradation):
    # Severities 3 and 4 share strength 2.5 and differ only in the fractal's roughness
    # (wibble decay 1.7 vs 1.5), so only the strength steps are ordered.
    psnr, _ = degradation["fog"]
    assert psnr[0] > psnr[1] > psnr[2] and psnr[3] > psnr[4] and psnr[4] < psnr[0] - 1.0


def test_frost_loses_structure_with_severity(degradation):
    # Image weight falls (1 -> 0.6) while frost weight rises (0.4 -> 0.75): a brighter
    # image can be closer in squared error to a dimmer original, so structure (SSIM) is the measure.
    # Severities 3 (0.7, 0.7) and 4 (0.65, 0.7) are nearly equal in the reference too (SSIM 0.502 vs 0.500).
    _, ssim = degradation["frost"]
    assert ssim[0] > ssim[1] > ssim[2] > ssim[4] and ssim[3] > ssim[4], ssim


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


def test_pixelate_matches_pil_box_then_nearest(photos):
    imgs, x = photos
    for severity, c in enumerate(PUBLISHED["pixelate"], start=1):
        small = imgs[0].resize((int(224 * c), int(224 * c)), Image.BOX).resize((224, 224), Image.NEAREST)
        expected = np.asarray(small) / 255.0
        got = corrupt(x[:1], "pixelate", severity)[0].permute(1, 2, 0).double().numpy()
        assert np.abs(got - expected).max() <= 1.01 / 255  # PIL rounds to 8 bits


def test_nearest_resize_matches_pil():
    a = np.random.default_rng(3).random((23, 17)).astype(np.float32)
    for h, w in [(50, 40), (23, 61), (97, 18)]:
        ref = np.asarray(Image.fromarray(a, mode="F").resize((w, h), Image.NEAREST))
        np.testing.assert_array_equal(nearest_resize(torch.from_numpy(a)[None, None], h, w)[0, 0].numpy(), ref)


def test_zoom_matches_scipy_clipped_zoom():
    # ImageNet-C's clipped_zoom: central ceil(n / z) crop, scipy.ndimage.zoom (order 1), first n kept
    a = np.random.default_rng(4).random((37, 30))
    for z in (1.0, 1.07, 1.3, 2.5, 4.5):
        ch, cw = math.ceil(37 / z), math.ceil(30 / z)
        top, left = (37 - ch) // 2, (30 - cw) // 2
        ref = ndimage.zoom(a[top:top + ch, left:left + cw], z, order=1)[:37, :30]
        got = zoom(torch.from_numpy(a)[None, None], z)[0, 0].numpy()
        np.testing.assert_allclose(got, ref, atol=1e-10)


def test_glass_shuffle_copies_like_the_original_numpy_swap():
    # The original "swaps" with a tuple assignment of numpy views, which copies the
    # neighbour into the pixel; the index chain must do exactly that.
    h, w, delta, iterations = 12, 10, 2, 2
    img = np.random.default_rng(5).integers(0, 255, (h, w, 3), dtype=np.uint8)
    ref = img.copy()
    rng = np.random.default_rng(9)
    for _ in range(iterations):
        for r in range(h - delta, delta, -1):
            for c in range(w - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=(2,))
                ref[r, c], ref[r + dy, c + dx] = ref[r + dy, c + dx], ref[r, c]
    index = _glass_index(h, w, delta, iterations, np.random.default_rng(9))
    got = img.reshape(h * w, 3)[index].reshape(h, w, 3)
    np.testing.assert_array_equal(got, ref)
    assert len(set(index.tolist())) < h * w  # pixels are duplicated, not permuted


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
        # the kornia codec runs at the calibrated quality: it loses as much as libjpeg at the
        # published one, and its output is closer to libjpeg's than libjpeg's is to the original
        assert _psnr(got[None], x[:1]) == pytest.approx(_psnr(ref[None], x[:1]), abs=0.5)
        assert _psnr(got[None], ref[None]) > _psnr(ref[None], x[:1])


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
    for sigma in (1.3, 6.0, 60.0, (0.48, 2.5)):
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


def test_frost_photographs_from_a_folder_are_blended_as_the_original(tmp_path):
    colour = (40, 200, 120)
    for i in range(1, 7):
        Image.new("RGB", (300 + 10 * i, 260), colour).save(tmp_path / f"frost{i}.png")
    assert len(load_frost_images(tmp_path)) == 5  # the original draws randint(5): frost6 never
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    out = corrupt(x, "frost", 3, seed=1, frost_images=tmp_path)
    expected = (0.7 * x + 0.7 * torch.tensor(colour).view(1, 3, 1, 1) / 255).clamp(0, 1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(Corruption("frost", 3, seed=1, frost_images=tmp_path)(x), out)


def test_frost_photograph_crop_is_a_window_of_the_rescaled_photo():
    # a photo smaller than the image is enlarged to cover it, times 1.1, and cropped
    ramp = torch.linspace(0, 1, 100).view(1, 1, 100).expand(3, 80, 100).contiguous()
    x = torch.zeros(4, 3, 224, 224)
    layer = corrupt(x, "frost", 1, seed=3, frost_images=[ramp]) / 0.4
    rows = layer[:, 0, 0]  # (4, 224): a window of the ramp stretched to 1.1 * 224 / 80 * 100 = 308 px
    steps = rows.diff(dim=1)
    assert float(steps.min()) >= -1e-6 and float(rows[:, -1].sub(rows[:, 0]).min()) > 0.6
    assert not torch.equal(rows[0], rows[1]) or not torch.equal(rows[1], rows[2])  # random crops


def test_frost_rejects_an_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image files"):
        load_frost_images(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_frost_images(tmp_path / "missing")


def test_procedural_frost_matches_the_photographs_first_and_second_order_statistics():
    # FROST_CALIBRATION was measured on the original photographs (random 224-px crops):
    # mean colour 0.574, 0.639, 0.684; sd over a 7 x 7 window 0.061.
    layer = frost_texture(24, 224, 224, torch.Generator().manual_seed(0), torch.zeros(1))
    np.testing.assert_allclose(layer.mean((0, 2, 3)).numpy(), [0.574, 0.639, 0.684], atol=0.03)
    grey = layer.mean(1, keepdim=True).double()
    m = torch.nn.functional.avg_pool2d(grey, 7, 1)
    local_sd = (torch.nn.functional.avg_pool2d(grey * grey, 7, 1) - m * m).clamp_min(0).sqrt().mean()
    assert float(local_sd) == pytest.approx(0.061, abs=0.008)
