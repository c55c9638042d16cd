
import pandas as pd
import pytest
import torch
from torch import nn

from neuroreg.errors import ShapeError, UnknownNameError
from neuroreg.robustness import EPS_PRESETS, RobustClassifier, attack_suite, eps_grid, make_attack

from conftest import MEAN, N_CLASSES, STD

EPS = [4 / 255, 8 / 255, 16 / 255]


def _reference_accuracy(model, x, y):
    # Normalization written out here, independent of the wrapper.
    with torch.no_grad():
        logits = model((x - 0.5) / 0.25)
    return float((logits.argmax(1) == y).float().mean())


@pytest.fixture(scope="module")
def test_data(gratings):
    _, _, x_test, y_test = gratings
    return x_test[::2], y_test[::2]  # 50 images, 5 per class


@pytest.fixture(scope="module")
def suite(trained_cnn, test_data):
    return attack_suite(trained_cnn, test_data, attacks=["fgsm", "pgd", "apgd-ce"], eps=EPS, mean=MEAN,
                        std=STD, apgd_steps=5, square_queries=100, batch_size=25, progress=False,
                        model_name="cnn")


def test_every_sanity_check_passes(suite):
    df = suite.to_pandas()
    sanity = df[df["metric"].str.startswith("sanity:")]
    names = set(sanity["metric"])
    expected = {"sanity:eps_zero:fgsm", "sanity:eps_zero:pgd", "sanity:eps_zero:apgd-ce",
                "sanity:monotone_eps:fgsm", "sanity:monotone_eps:pgd", "sanity:monotone_eps:apgd-ce",
                "sanity:large_eps", "sanity:more_steps", "sanity:black_box"}
    assert expected <= names
    failed = sanity[~sanity["passed"].astype(bool)]
    assert failed.empty, failed[["metric", "detail"]].to_string()
    assert [c.name for c in suite.sanity] == [m.removeprefix("sanity:") for m in sanity["metric"]]


def test_clean_and_eps_zero_rows_match_independent_accuracy(suite, trained_cnn, test_data):
    x, y = test_data
    reference = _reference_accuracy(trained_cnn, x, y)
    assert reference > 0.9  # the tiny task is learnt
    df = suite.to_pandas()
    clean = df[(df["attack"] == "none") & (df["metric"] == "accuracy")]
    assert clean["score"].item() == pytest.approx(reference, abs=1e-12)
    at_zero = df[(df["metric"] == "accuracy") & (df["eps"] == 0.0) & (df["role"] == "main")]
    assert set(at_zero["attack"]) == {"fgsm", "pgd", "apgd-ce"}
    assert (at_zero["score"] == reference).all()


def test_table_has_accuracy_per_attack_and_eps(suite):
    df = suite.to_pandas()
    main = df[(df["metric"] == "accuracy") & (df["role"] == "main")]
    for attack in ("fgsm", "pgd", "apgd-ce"):
        got = sorted(main[main["attack"] == attack]["eps"])
        assert got == pytest.approx([0.0, *EPS])
    assert (main["norm"] == "Linf").all() and (main["split"] == "test").all()
    assert (main["n_images"] == 50).all()
    assert {"attack", "eps", "norm", "metric", "score"} <= set(df.columns)
    pgd = main[main["attack"] == "pgd"].set_index("eps")["score"]
    assert pgd[16 / 255] < pgd[0.0] - 0.2  # the attack bites at the largest budget


def test_sanity_verdicts_survive_saving(suite, tmp_path):
    path = suite.to_csv(tmp_path / "robustness.csv")
    df = pd.read_csv(path)
    sanity = df[df["metric"].str.startswith("sanity:")]
    assert len(sanity) >= 9
    assert sanity["detail"].str.len().min() > 10
    assert "passed" in df.columns


def test_masked_gradients_are_flagged(trained_cnn, test_data):
    class MaskedGradients(nn.Module):
        """Same predictions as the model, zero input gradient (a textbook masking defence)."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x.detach() + 0.0 * x)

    x, y = test_data
    table = attack_suite(MaskedGradients(trained_cnn), (x[::2], y[::2]), attacks=["pgd"], eps=[4 / 255, 32 / 255],
                         mean=MEAN, std=STD, square_queries=100, progress=False)
    verdict = {c.name: c for c in table.sanity}
    assert not verdict["large_eps"].passed
    assert not verdict["black_box"].passed
    assert "gradient masking" in verdict["black_box"].detail
    assert verdict["eps_zero:pgd"].passed


def test_same_seed_same_numbers(trained_cnn, test_data):
    x, y = test_data
    kw = dict(attacks=["pgd"], eps=[8 / 255], mean=MEAN, std=STD, square_queries=20, pgd_steps=3,
              progress=False)
    a = attack_suite(trained_cnn, (x[:20], y[:20]), seed=3, **kw).to_pandas()
    b = attack_suite(trained_cnn, (x[:20], y[:20]), seed=3, **kw).to_pandas()
    pd.testing.assert_frame_equal(a, b)


def test_pgd_step_size_and_budget_follow_the_recipe(trained_cnn, test_data):
    wrapped = RobustClassifier(trained_cnn, MEAN, STD, num_classes=N_CLASSES)
    atk = make_attack("pgd", wrapped, 8 / 255, steps=10)
    assert atk.alpha == pytest.approx(2.5 * (8 / 255) / 10)
    assert make_attack("apgd-ce", wrapped, 8 / 255).steps == 100
    assert make_attack("apgd-dlr", wrapped, 8 / 255).loss == "dlr"
    assert make_attack("autoattack", wrapped, 8 / 255)._autoattack.attacks[1].n_target_classes == N_CLASSES - 1
    x, y = test_data
    adv = make_attack("pgd", wrapped, 8 / 255, steps=3)(x[:10], y[:10])
    assert (adv - x[:10]).abs().max() <= 8 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    adv2 = make_attack("pgd", wrapped, 0.5, norm="L2", steps=3)(x[:10], y[:10])
    assert (adv2 - x[:10]).flatten(1).norm(dim=1).max() <= 0.5 + 1e-4


def test_eps_presets_are_robustbench_values():
    assert EPS_PRESETS["imagenet"]["Linf"] == 4 / 255
    assert EPS_PRESETS["cifar"]["Linf"] == 8 / 255
    assert EPS_PRESETS["imagenet"]["L2"] == 0.5
    assert eps_grid("cifar", "Linf") == pytest.approx((2 / 255, 4 / 255, 8 / 255))


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(attacks=["pgdd"]), UnknownNameError, "pgdd"),
    (dict(eps=[-0.1]), ValueError, "-0.1"),
    (dict(eps=[float("nan")]), ValueError, "eps"),
    (dict(norm="L1"), UnknownNameError, "L1"),
    (dict(attacks=["fgsm"], norm="L2", eps=[0.5]), ValueError, "Linf"),
    (dict(eot_iter=0), ValueError, "eot_iter"),
])
def test_rejects_bad_arguments(trained_cnn, test_data, kwargs, error, words):
    x, y = test_data
    with pytest.raises(error, match=words):
        attack_suite(trained_cnn, (x[:4], y[:4]), mean=MEAN, std=STD, progress=False, **kwargs)


def test_rejects_images_outside_unit_range(trained_cnn, test_data):
    x, y = test_data
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attack_suite(trained_cnn, ((x[:4] - 0.5) / 0.25, y[:4]), mean=MEAN, std=STD, progress=False)


def test_rejects_wrong_number_of_logits(trained_cnn, test_data):
    x, y = test_data
    with pytest.raises(ShapeError, match="7 logits"):
        attack_suite(nn.Sequential(trained_cnn, nn.Linear(N_CLASSES, 7)), (x[:4], y[:4]), mean=MEAN, std=STD,
                     num_classes=N_CLASSES, progress=False)
    with pytest.raises(ShapeError, match=r"\(N, num_classes\)"):
        attack_suite(nn.Sequential(trained_cnn, nn.Flatten(0)), (x[:4], y[:4]), mean=MEAN, std=STD,
                     progress=False)


def test_rejects_labels_beyond_the_logits(trained_cnn, test_data):
    x, _ = test_data
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        attack_suite(trained_cnn, (x[:4], torch.full((4,), 12)), mean=MEAN, std=STD, progress=False)


def test_dlr_needs_three_classes():
    model = RobustClassifier(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)), None, None, num_classes=2)
    with pytest.raises(ValueError, match="needs >= 3 classes; got num_classes=2"):
        make_attack("apgd-dlr", model, 8 / 255)


def test_l2_eot_with_one_draw_equals_torchattacks_pgdl2(trained_cnn, test_data):
    import torchattacks

    wrapped = RobustClassifier(trained_cnn, MEAN, STD, num_classes=N_CLASSES)
    x, y = test_data
    torch.manual_seed(4)
    ours = make_attack("eotpgd", wrapped, 0.5, norm="L2", steps=4, eot_iter=1)(x[:12], y[:12])
    torch.manual_seed(4)
    reference = torchattacks.PGDL2(wrapped, eps=0.5, alpha=2.5 * 0.5 / 4, steps=4)(x[:12], y[:12])
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)


def test_stochastic_autoattack_uses_the_rand_version(trained_cnn):
    wrapped = RobustClassifier(trained_cnn, MEAN, STD, num_classes=N_CLASSES)
    assert make_attack("autoattack", wrapped, 8 / 255, eot_iter=20).version == "rand"
    assert make_attack("autoattack", wrapped, 8 / 255).version == "standard"


def test_l2_suite_passes_its_checks(trained_cnn, test_data):
    x, y = test_data
    table = attack_suite(trained_cnn, (x[::2], y[::2]), attacks=["pgd"], eps=[0.5, 1.0], norm="L2", mean=MEAN,
                         std=STD, pgd_steps=5, square_queries=50, progress=False)
    df = table.to_pandas()
    main = df[(df["role"] == "main")]
    assert (main["norm"] == "L2").all() and sorted(main["eps"]) == [0.0, 0.5, 1.0]
    assert df[df["role"] == "sanity:large_eps"]["norm"].item() == "Linf"  # the ball that holds every image
    failed = [c for c in table.sanity if not c.passed]
    assert not failed, failed
