"""Sanity checks of an adversarial evaluation (Carlini et al. 2019, "On evaluating
adversarial robustness"; Athalye et al. 2018 for gradient masking and EOT).

Each check is a pure function of measured accuracies and returns a
:class:`SanityResult`; :func:`run_sanity_checks` applies all of them to the runs
of :func:`~neuroreg.robustness.attacks.attack_suite`, which reports the verdicts
as table rows. A failed check means the number above it should not be trusted:
a bug in the pipeline, an attack too weak, or masked gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence


__all__ = ["SanityResult", "check_eps_zero", "check_monotone_in_eps", "check_large_eps",
           "check_more_steps", "check_black_box", "check_eot", "report_clean_noise",
           "run_sanity_checks"]


@dataclass(frozen=True)
class SanityResult:
    """Verdict of one check: ``passed`` and a one-line ``detail`` with the numbers."""

    name: str
    passed: bool
    detail: str
    attack: str | None = None


def _slack(tol: float, *sds: float) -> float:
    return tol + 2.0 * max((0.0, *sds))


def check_eps_zero(attack: str, clean: float, at_zero: float, *, tol: float = 1e-9,
                   sd: float = 0.0) -> SanityResult:
    """Accuracy under ``attack`` at eps 0 equals clean accuracy (within tol + 2 sd)."""
    slack = _slack(tol, sd)
    ok = abs(at_zero - clean) <= slack
    return SanityResult(f"eps_zero:{attack}", ok,
                        f"accuracy at eps 0 is {at_zero:.4f}, clean accuracy {clean:.4f} (slack {slack:.4f})",
                        attack)


def check_monotone_in_eps(attack: str, eps: Sequence[float], accuracy: Sequence[float], *,
                          tol: float = 0.0, sd: float = 0.0) -> SanityResult:
    """Accuracy never rises with eps by more than tol + 2 sd."""
    order = sorted(range(len(eps)), key=lambda i: eps[i])
    slack = _slack(tol, sd)
    rises = [(eps[a], accuracy[a], eps[b], accuracy[b]) for a, b in zip(order, order[1:])
             if accuracy[b] > accuracy[a] + slack]
    if rises:
        e0, a0, e1, a1 = rises[0]
        detail = f"accuracy rises from {a0:.4f} at eps {e0:.4g} to {a1:.4f} at eps {e1:.4g} (slack {slack:.4f})"
    else:
        curve = ", ".join(f"{eps[i]:.4g}: {accuracy[i]:.4f}" for i in order)
        detail = f"non-increasing over eps ({curve})"
    return SanityResult(f"monotone_eps:{attack}", not rises, detail, attack)


def check_large_eps(attack: str, accuracy: float, num_classes: int, *, tol: float = 0.03,
                    sd: float = 0.0) -> SanityResult:
    """An attack allowed to reach any image leaves accuracy at chance (1/num_classes) or below."""
    chance = 1.0 / num_classes
    slack = _slack(tol, sd)
    ok = accuracy <= chance + slack
    return SanityResult("large_eps", ok, f"accuracy {accuracy:.4f} at L-inf eps 1 (any image), chance {chance:.4f} "
                        f"(slack {slack:.4f})" + ("" if ok else "; the attack fails where it cannot: "
                                                  "masked gradients or a broken pipeline"), attack)


def check_more_steps(attack: str, steps: tuple[int, int], accuracy: tuple[float, float], *,
                     tol: float = 0.03, sd: float = 0.0) -> SanityResult:
    """More attack iterations never raise accuracy (beyond tol + 2 sd)."""
    slack = _slack(tol, sd)
    ok = accuracy[1] <= accuracy[0] + slack
    return SanityResult("more_steps", ok, f"{steps[0]} steps: {accuracy[0]:.4f}, {steps[1]} steps: "
                        f"{accuracy[1]:.4f} (slack {slack:.4f})", attack)


def check_black_box(black_box: float, white_box: float, *, tol: float = 0.03,
                    sd: float = 0.0, attack: str = "square") -> SanityResult:
    """A black-box attack must not beat the best white-box attack by more than tol + 2 sd.

    If it does, the white-box gradients are uninformative: gradient masking.
    """
    slack = _slack(tol, sd)
    ok = black_box >= white_box - slack
    detail = (f"black-box accuracy {black_box:.4f}, best white-box {white_box:.4f} (slack {slack:.4f})"
              + ("" if ok else "; black-box is stronger: gradient masking suspected"))
    return SanityResult("black_box", ok, detail, attack)


def check_eot(eps: float, eot: float, plain: float, *, tol: float = 0.03, sd: float = 0.0) -> SanityResult:
    """On a stochastic model EOT-PGD is at least as strong as plain PGD (within tol + 2 sd)."""
    slack = _slack(tol, sd)
    ok = eot <= plain + slack
    return SanityResult(f"eot:{eps:.4g}", ok, f"at eps {eps:.4g}: EOT-PGD accuracy {eot:.4f}, plain PGD "
                        f"{plain:.4f} (slack {slack:.4f})", "eotpgd")


def report_clean_noise(mean: float, sd: float, n_draws: int) -> SanityResult:
    """Clean accuracy of a stochastic model as mean +/- sd over noise draws (needs >= 2 draws)."""
    ok = n_draws >= 2 and math.isfinite(sd)
    return SanityResult("clean_noise_draws", ok, f"clean accuracy {mean:.4f} +/- {sd:.4f} (sd over "
                        f"{n_draws} noise draws)" + ("" if ok else "; use n_draws >= 2 for a spread"))


def run_sanity_checks(specs: Sequence, results: Mapping[tuple, tuple[float, float]],
                      clean: tuple[float, float], *, num_classes: int | None = None, stochastic: bool,
                      n_draws: int, tol: float) -> list[SanityResult]:
    """All checks on the runs of an attack suite.

    ``specs``: AttackSpec list; ``results``: spec.key -> (accuracy, sd over draws);
    ``clean``: (accuracy, sd). Deterministic models get an exact eps-0 check.
    ``num_classes``: logits of the model.
    """
    if num_classes is None:
        raise TypeError("run_sanity_checks needs num_classes (the number of logits of the model)")
    out: list[SanityResult] = []
    clean_acc, clean_sd = clean
    main = [s for s in specs if s.role == "main"]
    by_tag = {s.tag: s for s in specs if s.tag}
    for attack in dict.fromkeys(s.attack for s in main):
        runs = sorted((s for s in main if s.attack == attack), key=lambda s: s.eps)
        eps = [s.eps for s in runs]
        accs = [results[s.key][0] for s in runs]
        sds = [results[s.key][1] for s in runs]
        zero = [s for s in runs if s.eps == 0.0]
        if zero:
            acc0, sd0 = results[zero[0].key]
            out.append(check_eps_zero(attack, clean_acc, acc0, tol=tol if stochastic else 1e-9,
                                      sd=max(sd0, clean_sd)))
        else:
            eps, accs, sds = [0.0, *eps], [clean_acc, *accs], [clean_sd, *sds]
        if len(eps) >= 2:
            out.append(check_monotone_in_eps(attack, eps, accs, tol=tol, sd=max(sds)))
    if "large_eps" in by_tag:
        s = by_tag["large_eps"]
        acc, sd = results[s.key]
        out.append(check_large_eps(s.attack, acc, num_classes, tol=tol, sd=sd))
    if "steps_1x" in by_tag and "steps_4x" in by_tag:
        s1, s4 = by_tag["steps_1x"], by_tag["steps_4x"]
        (a1, d1), (a4, d4) = results[s1.key], results[s4.key]
        out.append(check_more_steps(s1.attack, (s1.steps, s4.steps), (a1, a4), tol=tol, sd=max(d1, d4)))
        ref = s1.eps
        square = by_tag.get("black_box") or next((s for s in main if s.attack == "square" and s.eps == ref), None)
        if square is not None:
            white = [s for s in specs if s.eps == ref and s.attack not in ("square",)]
            best = min(white, key=lambda s: results[s.key][0])
            (ab, db), (aw, dw) = results[square.key], results[best.key]
            out.append(check_black_box(ab, aw, tol=tol, sd=max(db, dw)))
    if stochastic:
        out.append(report_clean_noise(clean_acc, clean_sd, n_draws))
        eot_runs = {s.eps: s for s in main if s.attack == "eotpgd" and s.eps > 0}
        plain_runs = {s.eps: s for s in specs if s.attack == "pgd" and s.eps > 0 and s.eot_iter == 1
                      and (s.role == "main" or s.tag == "plain_pgd")}
        sanity_eot = by_tag.get("steps_1x")
        for e, p in sorted(plain_runs.items()):
            eot = eot_runs.get(e) or (sanity_eot if sanity_eot is not None and sanity_eot.eps == e else None)
            if eot is None:
                continue
            (ae, de), (ap, dp) = results[eot.key], results[p.key]
            out.append(check_eot(e, ae, ap, tol=tol, sd=max(de, dp)))
    return out
