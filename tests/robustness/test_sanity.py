"""The sanity checks on hand-made accuracies: each must pass and fail where it should."""


from neuroreg.robustness.attacks import AttackSpec
from neuroreg.robustness.sanity import (check_black_box, check_eot, check_eps_zero, check_large_eps,
                                        check_monotone_in_eps, check_more_steps, report_clean_noise,
                                        run_sanity_checks)


def test_eps_zero():
    assert check_eps_zero("pgd", 0.9, 0.9).passed
    assert not check_eps_zero("pgd", 0.9, 0.88).passed
    assert check_eps_zero("pgd", 0.9, 0.88, tol=0.0, sd=0.011).passed  # 2 sd of noise-draw spread


def test_monotone_in_eps_names_the_rise():
    assert check_monotone_in_eps("pgd", [0, 1, 2], [0.9, 0.5, 0.1]).passed
    result = check_monotone_in_eps("pgd", [2, 0, 1], [0.4, 0.9, 0.3])  # unsorted input, 0.3 -> 0.4 rises
    assert not result.passed and "0.3000 at eps 1" in result.detail and "0.4000 at eps 2" in result.detail
    assert check_monotone_in_eps("pgd", [0, 1], [0.5, 0.52], tol=0.03).passed


def test_large_eps_against_chance():
    assert check_large_eps("pgd", 0.08, 10).passed
    assert check_large_eps("pgd", 0.12, 10, tol=0.03).passed
    failed = check_large_eps("pgd", 0.6, 10)
    assert not failed.passed and "masked gradients" in failed.detail


def test_more_steps_and_black_box_and_eot():
    assert check_more_steps("pgd", (10, 40), (0.3, 0.25)).passed
    assert not check_more_steps("pgd", (10, 40), (0.3, 0.4)).passed
    assert check_black_box(0.5, 0.3).passed
    flagged = check_black_box(0.1, 0.5)
    assert not flagged.passed and "gradient masking" in flagged.detail
    assert check_eot(4 / 255, 0.2, 0.3).passed and not check_eot(4 / 255, 0.5, 0.3).passed


def test_clean_noise_report_needs_two_draws():
    assert report_clean_noise(0.7, 0.02, 5).passed
    assert "+/- 0.0200" in report_clean_noise(0.7, 0.02, 5).detail
    assert not report_clean_noise(0.7, 0.0, 1).passed


def test_run_sanity_checks_wires_the_runs():
    specs = [AttackSpec("pgd", 0.0, 10), AttackSpec("pgd", 0.1, 10), AttackSpec("pgd", 0.2, 10),
             AttackSpec("pgd", 1.0, 10, role="sanity", tag="large_eps", random_start=False),
             AttackSpec("pgd", 0.2, 10, role="sanity", tag="steps_1x"),
             AttackSpec("pgd", 0.2, 40, role="sanity", tag="steps_4x"),
             AttackSpec("square", 0.2, None, role="sanity", tag="black_box")]
    acc = [0.9, 0.6, 0.3, 0.0, 0.3, 0.28, 0.05]  # square far below white-box: masking
    results = {s.key: (a, 0.0) for s, a in zip(specs, acc)}
    verdicts = {c.name: c.passed for c in run_sanity_checks(specs, results, (0.9, 0.0), num_classes=10,
                                                            stochastic=False, n_draws=1, tol=0.03)}
    assert verdicts == {"eps_zero:pgd": True, "monotone_eps:pgd": True, "large_eps": True,
                        "more_steps": True, "black_box": False}
