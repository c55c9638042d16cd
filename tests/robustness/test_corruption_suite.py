import numpy as np
import pytest
import torch

from neuroreg.errors import UnknownNameError
from neuroreg.robustness import ALEXNET_MEAN_ERROR, corruption_suite, mean_corruption_error

from conftest import MEAN, STD


@pytest.fixture(scope="module")
def table(trained_cnn, gratings):
    _, _, x, y = gratings
    return corruption_suite(trained_cnn, (x[::3], y[::3]), ["gaussian_noise", "contrast"], (1, 5), mean=MEAN,
                            std=STD, batch_size=20, progress=False, model_name="cnn")


def test_rows_per_corruption_and_severity(table):
    df = table.to_pandas()
    acc = df[df["metric"] == "accuracy"]
    assert set(zip(acc["corruption"], acc["severity"])) == {("none", 0), ("gaussian_noise", 1), ("gaussian_noise", 5),
                                                            ("contrast", 1), ("contrast", 5)}
    assert (acc["n_images"] == 34).all()
    clean = acc[acc["corruption"] == "none"]["score"].item()
    noisy5 = acc[(acc["corruption"] == "gaussian_noise") & (acc["severity"] == 5)]["score"].item()
    assert clean > 0.9 and noisy5 < clean - 0.2  # sd 0.38 noise swamps 0.08-0.16 contrast gratings


def test_means_are_means_of_the_rows(table):
    df = table.to_pandas()
    acc = df[(df["metric"] == "accuracy") & (df["corruption"] != "none")]
    per = acc.groupby("corruption")["score"].mean()
    got = df[df["metric"] == "corruption_accuracy"].set_index("corruption")["score"]
    np.testing.assert_allclose(got[per.index].to_numpy(), per.to_numpy(), rtol=1e-12)
    overall = df[df["metric"] == "mean_corruption_accuracy"]["score"].item()
    assert overall == pytest.approx(per.mean())


def test_mce_against_a_baseline_written_out(trained_cnn, gratings, table):
    base = {"gaussian_noise": {1: 0.5, 5: 0.9}, "contrast": {1: 0.4, 5: 0.8}}
    _, _, x, y = gratings
    with_ce = corruption_suite(trained_cnn, (x[::3], y[::3]), ["gaussian_noise", "contrast"], (1, 5), mean=MEAN,
                               std=STD, batch_size=20, progress=False, baseline=base).to_pandas()
    acc = table.to_pandas()
    err = {(c, s): 1 - v for c, s, v in acc[acc["metric"] == "accuracy"][["corruption", "severity", "score"]]
           .itertuples(index=False)}
    ce_noise = (err[("gaussian_noise", 1)] + err[("gaussian_noise", 5)]) / (0.5 + 0.9)
    ce_contrast = (err[("contrast", 1)] + err[("contrast", 5)]) / (0.4 + 0.8)
    ce = with_ce[with_ce["metric"] == "CE"].set_index("corruption")["score"]
    assert ce["gaussian_noise"] == pytest.approx(ce_noise) and ce["contrast"] == pytest.approx(ce_contrast)
    assert with_ce[with_ce["metric"] == "mCE"]["score"].item() == pytest.approx((ce_noise + ce_contrast) / 2)


def test_a_model_against_itself_has_mce_one(table):
    from neuroreg.robustness import corruption_errors
    errors, clean = corruption_errors(table)
    result = mean_corruption_error(errors, table, clean_error=clean)
    assert result["mce"] == pytest.approx(1.0)


def test_alexnet_baseline_uses_published_errors():
    errors = {c: {s: e for s in range(1, 6)} for c, e in ALEXNET_MEAN_ERROR.items()}
    assert mean_corruption_error(errors, "alexnet")["mce"] == pytest.approx(1.0)
    assert ALEXNET_MEAN_ERROR["gaussian_noise"] == 0.886428 and ALEXNET_MEAN_ERROR["jpeg_compression"] == 0.6065
    half = {"fog": {s: ALEXNET_MEAN_ERROR["fog"] / 2 for s in range(1, 6)}}
    assert mean_corruption_error(half, "alexnet")["ce"]["fog"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="severities 1-5"):
        mean_corruption_error({"fog": {1: 0.5}}, "alexnet")


def test_rejects_bad_arguments(trained_cnn, gratings):
    _, _, x, y = gratings
    data = (x[:4], y[:4])
    with pytest.raises(UnknownNameError, match="rain"):
        corruption_suite(trained_cnn, data, ["rain"], mean=MEAN, std=STD, progress=False)
    with pytest.raises(ValueError, match="1..5"):
        corruption_suite(trained_cnn, data, ["fog"], (0, 6), mean=MEAN, std=STD, progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corruption_suite(trained_cnn, (x[:4] * 2 - 0.5, y[:4]), ["fog"], (1,), mean=MEAN, std=STD, progress=False)


def test_frost_rows_say_the_texture_is_procedural_and_mce_is_not_comparable(trained_cnn, gratings):
    _, _, x, y = gratings
    df = corruption_suite(trained_cnn, (x[:10], y[:10]), ["frost", "fog"], (1, 2, 3, 4, 5), mean=MEAN, std=STD,
                          baseline="alexnet", progress=False).to_pandas()
    frost = df[(df["corruption"] == "frost") & (df["metric"] == "accuracy")]
    assert (frost["frost"] == "procedural").all() and frost["note"].str.contains("procedural").all()
    assert df[(df["corruption"] == "fog") & (df["metric"] == "accuracy")]["note"].isna().all()
    mce = df[df["metric"] == "mCE"].iloc[0]
    assert mce["comparable"] == False and "not comparable" in mce["note"]  # noqa: E712
    assert df[(df["metric"] == "CE") & (df["corruption"] == "fog")]["comparable"].isna().all()


def test_frost_photographs_make_mce_comparable(trained_cnn, gratings, tmp_path):
    from PIL import Image
    _, _, x, y = gratings
    for i in range(1, 4):
        Image.new("RGB", (64, 64), (150 + 20 * i, 200, 230)).save(tmp_path / f"photo{i}.png")
    df = corruption_suite(trained_cnn, (x[:10], y[:10]), ["frost"], (1, 2, 3, 4, 5), mean=MEAN, std=STD,
                          baseline="alexnet", frost_images=tmp_path, progress=False).to_pandas()
    assert (df[df["metric"] == "accuracy"].query("corruption == 'frost'")["frost"] == "photographs").all()
    assert "comparable" not in df or df[df["metric"] == "mCE"]["comparable"].isna().all()


class _NoisyLinear(torch.nn.Module):
    """A classifier with noise in eval too (like a VOneNet), counting its forward passes."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, num_classes)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fc(x.mean((2, 3))) + 3.0 * torch.randn(x.shape[0], self.fc.out_features)


def test_stochastic_model_is_seeded_and_averaged_over_draws():
    torch.manual_seed(0)
    model = _NoisyLinear()
    x, y = torch.rand(40, 3, 16, 16), torch.randint(0, 4, (40,))

    def run(seed, n_draws=1):
        df = corruption_suite(model, (x, y), ["contrast"], (3,), mean=None, std=None, seed=seed,
                              n_draws=n_draws, progress=False).to_pandas()
        return df[df["metric"] == "accuracy"]["score"].to_numpy()

    state = torch.get_rng_state()
    first = run(1)
    np.testing.assert_array_equal(run(1), first)              # same seed, same numbers
    assert not np.array_equal(run(2), first)                   # the model's noise follows the seed
    assert torch.equal(torch.get_rng_state(), state)           # the caller's RNG is left alone
    model.calls = 0
    run(1)
    single = model.calls
    model.calls = 0
    averaged = run(1, n_draws=5)
    assert model.calls - single == 4 * 2                        # 4 more draws of (clean, contrast-3)
    counts = averaged * 40                                      # means of 5 integer counts: multiples of 1/5
    np.testing.assert_allclose(counts * 5, np.round(counts * 5), atol=1e-9)
    with pytest.raises(ValueError, match="n_draws must be a positive int"):
        corruption_suite(model, (x, y), ["contrast"], (3,), mean=None, std=None, n_draws=0, progress=False)
