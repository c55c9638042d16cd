"""Adversarial robustness on torchattacks, with EOT for stochastic models and sanity checks.

Conventions follow RobustBench (Croce et al. 2021): images in [0, 1], the
model normalizes inside (:class:`~neuroreg.robustness.wrapper.RobustClassifier`),
L-inf eps 4/255 at ImageNet scale and 8/255 at CIFAR scale, L2 eps 0.5, APGD
and AutoAttack with the number of classes and 100 steps. Stochastic models
(VOneNet, Dapello et al. 2020) are attacked with Expectation over
Transformation (Athalye et al. 2018): the gradient is averaged over noise draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import torchattacks
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from neuroreg.errors import UnknownNameError
from neuroreg.robustness._data import as_loader, batches
from neuroreg._utils.seeding import seeded
from neuroreg.robustness._evaluation import count_correct
from neuroreg.robustness.sanity import SanityResult, run_sanity_checks
from neuroreg.robustness.wrapper import FROM_MODEL, RobustClassifier
from neuroreg._utils.modes import eval_mode
from neuroreg.results.table import ScoreTable

__all__ = ["ATTACKS", "NORMS", "EPS_PRESETS", "eps_grid", "make_attack", "attack_suite", "AttackSpec",
           "AttackTable"]

#: Attack names understood by :func:`make_attack` and :func:`attack_suite`.
ATTACKS = ("fgsm", "pgd", "eotpgd", "apgd-ce", "apgd-dlr", "autoattack", "square")
NORMS = ("Linf", "L2")
_WHITE_BOX = ("fgsm", "pgd", "eotpgd", "apgd-ce", "apgd-dlr", "autoattack")
_LINF_ONLY = ("fgsm",)

#: Standard perturbation budgets (RobustBench): ImageNet-scale and CIFAR-scale.
EPS_PRESETS = {
    "imagenet": {"Linf": 4 / 255, "L2": 0.5},
    "cifar": {"Linf": 8 / 255, "L2": 0.5},
}


def eps_grid(preset: str = "imagenet", norm: str = "Linf") -> tuple[float, ...]:
    """(eps/4, eps/2, eps) around the preset budget, for accuracy-vs-eps curves."""
    if preset not in EPS_PRESETS:
        raise UnknownNameError(f"unknown eps preset {preset!r}; expected one of {sorted(EPS_PRESETS)}")
    _check_norm(norm)
    eps = EPS_PRESETS[preset][norm]
    return (eps / 4, eps / 2, eps)


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise UnknownNameError(f"unknown norm {norm!r}; expected one of {list(NORMS)}")


def _check_eps(eps: float, name: str = "eps") -> float:
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0; got {eps!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {eps!r}")
    return value


class _EOTPGDL2(torchattacks.PGDL2):
    """L2 PGD whose gradient is summed over ``eot_iter`` forward passes.

    torchattacks ships EOT only for L-inf (EOTPGD); this is the same
    expectation-over-transformation step (Athalye et al. 2018) for the L2 ball.
    """

    def __init__(self, model, eps=0.5, alpha=0.1, steps=10, eot_iter=2, random_start=True):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
        self.attack = "EOTPGDL2"
        self.eot_iter = eot_iter

    def forward(self, images, labels):
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        loss = nn.CrossEntropyLoss()
        n = len(images)
        adv = images.clone().detach()
        if self.random_start:
            delta = torch.empty_like(adv).normal_()
            norm = delta.flatten(1).norm(p=2, dim=1).view(n, 1, 1, 1)
            radius = torch.zeros_like(norm).uniform_(0, 1)
            adv = torch.clamp(adv + delta * radius / norm.clamp_min(1e-12) * self.eps, 0, 1).detach()
        for _ in range(self.steps):
            adv.requires_grad_(True)
            grad = torch.zeros_like(adv)
            for _ in range(self.eot_iter):
                cost = loss(self.get_logits(adv), labels)
                grad = grad + torch.autograd.grad(cost, adv)[0]
            grad = grad / (grad.flatten(1).norm(p=2, dim=1).view(n, 1, 1, 1) + self.eps_for_division)
            adv = adv.detach() + self.alpha * grad
            delta = adv - images
            factor = torch.clamp(self.eps / delta.flatten(1).norm(p=2, dim=1).clamp_min(1e-12), max=1.0)
            adv = torch.clamp(images + delta * factor.view(-1, 1, 1, 1), 0, 1).detach()
        return adv


def make_attack(name: str, model: RobustClassifier, eps: float, norm: str = "Linf", *,
                steps: int | None = None, eot_iter: int = 1, num_classes: int | None = None,
                n_queries: int = 5000, random_start: bool = True, seed: int = 0) -> torchattacks.attack.Attack:
    """Build one torchattacks attack on ``model`` (images in [0, 1]).

    Args:
        name: one of :data:`ATTACKS`.
        eps: perturbation budget (pixel units of [0, 1] images; L2 over all of C*H*W).
        norm: "Linf" or "L2" ("fgsm" is L-inf only).
        steps: iterations; PGD/EOT-PGD default 10, APGD 100 (Croce & Hein 2020).
            PGD step size is 2.5 * eps / steps (Madry et al. 2018).
        eot_iter: gradient draws per step for "eotpgd" and for APGD on
            stochastic models (1 = plain); AutoAttack with eot_iter > 1 runs its
            "rand" version (APGD-CE + APGD-DLR, 20 draws) for stochastic models.
        num_classes: logits of the model (APGD-DLR needs >= 3, AutoAttack uses it); default the
            model's.
        n_queries: Square attack query budget.
        random_start: PGD/EOT-PGD start at a uniform random point of the ball.
        seed: seed torchattacks uses for APGD/Square/AutoAttack starting points.
    """
    if name not in ATTACKS:
        raise UnknownNameError(f"unknown attack {name!r}; expected one of {list(ATTACKS)}")
    _check_norm(norm)
    eps = _check_eps(eps)
    if name in _LINF_ONLY and norm != "Linf":
        raise ValueError(f"attack {name!r} is defined for norm='Linf' only; got norm={norm!r}")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    if int(eot_iter) < 1:
        raise ValueError(f"eot_iter must be >= 1; got {eot_iter}")
    num_classes = num_classes if num_classes is not None else model.num_classes
    if name in ("apgd-dlr", "autoattack") and (num_classes is None or num_classes < 3):
        raise ValueError(f"attack {name!r} uses the DLR loss, which needs >= 3 classes; "
                         f"got num_classes={num_classes}")
    seed = int(seed)
    if name == "fgsm":
        return torchattacks.FGSM(model, eps=eps)
    if name in ("pgd", "eotpgd"):
        steps = 10 if steps is None else int(steps)
        alpha = 2.5 * eps / steps
        if name == "pgd" and norm == "Linf":
            return torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
        if name == "pgd" and eps > 0:
            return torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
        if name == "pgd":  # torchattacks' PGDL2 divides 0 by 0 in its projection at eps 0
            return _EOTPGDL2(model, eps=eps, alpha=alpha, steps=steps, eot_iter=1, random_start=random_start)
        if norm == "Linf":
            return torchattacks.EOTPGD(model, eps=eps, alpha=alpha, steps=steps, eot_iter=int(eot_iter),
                                       random_start=random_start)
        return _EOTPGDL2(model, eps=eps, alpha=alpha, steps=steps, eot_iter=int(eot_iter),
                         random_start=random_start)
    if name in ("apgd-ce", "apgd-dlr"):
        steps = 100 if steps is None else int(steps)
        return torchattacks.APGD(model, norm=norm, eps=eps, steps=steps, n_restarts=1, seed=seed,
                                 loss=name.split("-")[1], eot_iter=int(eot_iter), rho=0.75)
    if name == "autoattack":
        if num_classes is None:   # refused above already: AutoAttack's DLR loss needs the class count
            raise ValueError(f"attack {name!r} needs num_classes; got None")
        # Stochastic models get AutoAttack's "rand" version: APGD-CE and APGD-DLR with 20 EOT draws.
        return torchattacks.AutoAttack(model, norm=norm, eps=eps, version="rand" if eot_iter > 1 else "standard",
                                       n_classes=int(num_classes), seed=seed)
    return torchattacks.Square(model, norm=norm, eps=eps, n_queries=int(n_queries), n_restarts=1,
                               p_init=0.8, loss="margin", resc_schedule=True, seed=seed)


class AttackTable(ScoreTable):
    """The ScoreTable of :func:`attack_suite`, with its sanity-check verdicts in ``sanity``."""

    def __init__(self, rows: Iterable[Mapping[str, Any]] = ()) -> None:
        super().__init__(rows)
        self.sanity: list[SanityResult] = []


@dataclass(frozen=True)
class AttackSpec:
    """One (attack, eps) configuration run by :func:`attack_suite`.

    ``role`` is "main" for what the user asked for and "sanity" for the extra
    runs the sanity checks need (large eps, more steps, black-box, EOT).
    """

    attack: str
    eps: float
    steps: int | None = None
    eot_iter: int = 1
    role: str = "main"
    tag: str = ""
    random_start: bool = True

    @property
    def key(self) -> tuple:
        return (self.attack, self.eps, self.steps, self.eot_iter, self.tag, self.random_start)


@dataclass
class _Tally:
    correct: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per noise draw
    n: int = 0

    def add(self, correct_per_draw: np.ndarray, n: int) -> None:
        self.correct = correct_per_draw if self.correct.size == 0 else self.correct + correct_per_draw
        self.n += n

    def accuracy(self) -> tuple[float, float]:
        acc = self.correct / max(self.n, 1)
        return float(acc.mean()), float(acc.std(ddof=1)) if acc.size > 1 else 0.0


def _specs(attacks: Sequence[str], eps: Sequence[float], norm: str, stochastic: bool, *,
           pgd_steps: int, apgd_steps: int, eot_iter: int, sanity: bool) -> list[AttackSpec]:
    def steps_for(name):
        return pgd_steps if name in ("pgd", "eotpgd") else apgd_steps if name.startswith("apgd") else None

    def eot_for(name):
        return eot_iter if (name == "eotpgd" or (stochastic and (name.startswith("apgd") or name == "autoattack"))) else 1

    names = list(dict.fromkeys(attacks))
    if stochastic and "pgd" in names and "eotpgd" not in names:
        names.insert(names.index("pgd") + 1, "eotpgd")
    specs = []
    grid = sorted(set([0.0, *eps])) if sanity else sorted(set(eps))
    for name in names:
        for e in grid:
            if e == 0.0 and name in ("autoattack", "square") and 0.0 not in eps:
                continue  # a full AutoAttack/Square run at eps 0 costs much and checks little
            specs.append(AttackSpec(name, e, steps_for(name), eot_for(name)))
    if not sanity:
        return specs
    positive = sorted(e for e in eps if e > 0)
    ref = positive[len(positive) // 2]
    base = "eotpgd" if stochastic else "pgd"
    # No random start here: a uniform draw from the unbounded ball is already a random image
    # at chance accuracy, which would let masked gradients pass unnoticed.
    specs.append(AttackSpec(base, _large_eps(norm), pgd_steps, eot_for(base), "sanity", "large_eps",
                            random_start=False))
    specs.append(AttackSpec(base, ref, pgd_steps, eot_for(base), "sanity", "steps_1x"))
    specs.append(AttackSpec(base, ref, 4 * pgd_steps, eot_for(base), "sanity", "steps_4x"))
    if "square" not in names:
        specs.append(AttackSpec("square", ref, None, 1, "sanity", "black_box"))
    if stochastic and "pgd" not in names:
        specs.append(AttackSpec("pgd", ref, pgd_steps, 1, "sanity", "plain_pgd"))
    return specs


def _large_eps(norm: str) -> float:
    # The L-inf ball of radius 1 holds every image, so it serves both norms: a huge L2 radius
    # would need huge L2 steps, most of which the clamp to [0, 1] throws away.
    return 1.0


def attack_suite(model: nn.Module, data: Any, attacks: Sequence[str] | str = ("pgd",),
                 eps: Sequence[float] | float | None = None, norm: str = "Linf", *,
                 preset: str = "imagenet", mean: Sequence[float] | str | None = FROM_MODEL,
                 std: Sequence[float] | str | None = FROM_MODEL, num_classes: int | None = None,
                 stochastic: bool | None = None, pgd_steps: int = 10, apgd_steps: int = 100,
                 eot_iter: int = 10, n_draws: int = 5, square_queries: int = 1000,
                 sanity: bool = True, sanity_tol: float = 0.03, batch_size: int = 128,
                 max_batches: int | None = None, model_name: str | None = None, seed: int = 0,
                 progress: bool | None = None) -> AttackTable:
    """Accuracy under each attack at each eps, with sanity checks, as a ScoreTable (an :class:`AttackTable`).

    Args:
        model: classifier; a :class:`RobustClassifier` is used as is, anything
            else is wrapped with ``mean``/``std`` (default ``"model"``: the model's
            preprocessing contract; set both to None when the model normalizes
            [0, 1] inputs itself).
        data: Dataset or DataLoader of (image (C, H, W) in [0, 1], label), or a
            tuple (images (N, C, H, W), labels (N,)).
        attacks: names from :data:`ATTACKS`. For stochastic models "pgd" brings
            "eotpgd" along and APGD averages gradients over ``eot_iter`` draws.
        eps: budgets; default :func:`eps_grid` of ``preset`` and ``norm``.
        norm: "Linf" or "L2".
        stochastic: None detects it (two eval passes differ).
        pgd_steps / apgd_steps: iterations (PGD step 2.5 eps / steps).
        eot_iter: gradient draws per EOT step.
        n_draws: forward passes per evaluation for stochastic models; accuracy is
            the mean over draws and ``sd`` their spread.
        square_queries: query budget of the black-box Square attack.
        sanity: run the sanity checks (:mod:`neuroreg.robustness.sanity`); their
            verdicts are rows with ``metric="sanity:<check>"``, ``passed`` and
            ``detail``, and also ``table.sanity`` (a list of SanityResult).
        sanity_tol: accuracy slack of the checks (plus 2 sd for stochastic models).
        max_batches: evaluate only the first batches (quick looks).
        seed: every attack and noise draw is seeded from it.
        num_classes: logits of the model; inferred from a probe batch when None.
        progress: progress bar; None (default) shows it on a terminal only, as
            every neuroreg function with a ``progress`` argument.

    Returns:
        ScoreTable with one row per (attack, eps): metric="accuracy", score,
        attack, eps, norm, steps, eot_iter, sd, n_draws, n_images, role, split="test".
        The clean row has attack="none", eps=0.
    """
    attacks, eps_list = _checked_arguments(attacks, eps, norm, preset, pgd_steps=pgd_steps, apgd_steps=apgd_steps,
                                           eot_iter=eot_iter, n_draws=n_draws, square_queries=square_queries,
                                           sanity_tol=sanity_tol)
    wrapped = model if isinstance(model, RobustClassifier) else RobustClassifier(
        model, mean, std, num_classes=num_classes, stochastic=stochastic)
    run = _attack_batches(wrapped, as_loader(data, batch_size), attacks, eps_list, norm, pgd_steps=int(pgd_steps),
                          apgd_steps=int(apgd_steps), eot_iter=int(eot_iter), n_draws=int(n_draws),
                          square_queries=square_queries, sanity=sanity, max_batches=max_batches, seed=seed,
                          progress=progress)
    name = model_name or type(getattr(wrapped, "model", wrapped)).__name__
    return _attack_table(run, name, norm, num_classes=wrapped.num_classes, sanity=sanity, sanity_tol=sanity_tol)


def _checked_arguments(attacks: Sequence[str] | str, eps: Sequence[float] | float | None, norm: str, preset: str,
                       *, sanity_tol: float, **counts: int) -> tuple[list[str], list[float]]:
    """The attack names and eps budgets of :func:`attack_suite`, checked; ``counts`` must each be >= 1."""
    attacks = [attacks] if isinstance(attacks, str) else list(attacks)
    if not attacks:
        raise ValueError("attacks must name at least one attack; got an empty list")
    for a in attacks:
        if a not in ATTACKS:
            raise UnknownNameError(f"unknown attack {a!r}; expected one of {list(ATTACKS)}")
    _check_norm(norm)
    if eps is None:
        eps = eps_grid(preset, norm)
    eps_list = [_check_eps(e) for e in ([eps] if isinstance(eps, (int, float)) else eps)]
    if not any(e > 0 for e in eps_list):
        raise ValueError(f"eps must contain at least one positive budget; got {eps_list}")
    if norm != "Linf" and "fgsm" in attacks:
        raise ValueError(f"attack 'fgsm' is defined for norm='Linf' only; got norm={norm!r}")
    for arg, val in counts.items():
        if int(val) < 1:
            raise ValueError(f"{arg} must be >= 1; got {val}")
    if sanity_tol < 0:
        raise ValueError(f"sanity_tol must be >= 0; got {sanity_tol}")
    return attacks, eps_list


@dataclass
class _SuiteRun:
    """What the batches of one :func:`attack_suite` run left: the specs run and their tallies."""

    specs: list[AttackSpec]
    clean: _Tally
    tallies: dict[tuple, _Tally]
    stochastic: bool
    draws: int


def _attack_batches(wrapped: RobustClassifier, loader: DataLoader, attacks: list[str], eps_list: list[float],
                    norm: str, *, pgd_steps: int, apgd_steps: int, eot_iter: int, n_draws: int,
                    square_queries: int, sanity: bool, max_batches: int | None, seed: int,
                    progress: bool | None) -> _SuiteRun:
    """Probe the model on the first batch, then attack every batch with every spec and count correct answers.

    The whole run (also the DataLoader's draws of worker seeds) is on forked generators:
    the caller's global RNG state (CPU and the device's) is left as it was, as in
    corruption_suite. Batch ``b`` and spec ``i`` draw from a seed of their own.
    """
    device = wrapped.device
    with seeded(seed, device), eval_mode(wrapped):
        first = next(iter(batches(loader, device, None, 1)), None)
        if first is None:
            raise ValueError("data holds no images")
        with seeded(seed, device):
            wrapped.infer(first[0])
        is_stoch = bool(wrapped.stochastic)
        draws = n_draws if is_stoch else 1
        specs = _specs(attacks, eps_list, norm, is_stoch, pgd_steps=pgd_steps, apgd_steps=apgd_steps,
                       eot_iter=eot_iter, sanity=sanity)
        run = _SuiteRun(specs, _Tally(), {spec.key: _Tally() for spec in specs}, is_stoch, draws)
        n_total = len(loader) if max_batches is None else min(len(loader), max_batches)
        bar = tqdm(total=n_total * (len(specs) + 1), desc="attack suite",
                   disable=None if progress is None else not progress)
        for b, (x, y) in enumerate(batches(loader, device, wrapped.num_classes, max_batches)):
            with seeded(seed + 7919 * b, device):
                run.clean.add(count_correct(wrapped, x, y, draws), len(y))
            bar.update(1)
            for i, spec in enumerate(specs):
                with seeded(seed + 7919 * b + 104729 * (i + 1), device):
                    adv = _run(spec, wrapped, x, y, norm, square_queries, seed)
                    run.tallies[spec.key].add(count_correct(wrapped, adv, y, draws), len(y))
                bar.update(1)
        bar.close()
    return run


def _attack_table(run: _SuiteRun, name: str, norm: str, *, num_classes: int | None, sanity: bool,
                  sanity_tol: float) -> AttackTable:
    """The rows of :func:`attack_suite`: clean accuracy, accuracy per spec, then the sanity verdicts."""
    table = AttackTable()
    common = dict(model=name, metric="accuracy", split="test", norm=norm, n_images=run.clean.n, n_draws=run.draws)
    clean_acc, clean_sd = run.clean.accuracy()
    table.append(**common, score=clean_acc, sd=clean_sd, attack="none", eps=0.0, steps=None, eot_iter=None,
                 role="clean")
    results: dict[tuple, tuple[float, float]] = {}
    for spec in run.specs:
        acc, sd = run.tallies[spec.key].accuracy()
        results[spec.key] = (acc, sd)
        row = dict(common, norm="Linf") if spec.tag == "large_eps" else common
        table.append(**row, score=acc, sd=sd, attack=spec.attack, eps=spec.eps, steps=spec.steps,
                     eot_iter=spec.eot_iter, role=spec.role if not spec.tag else f"sanity:{spec.tag}")
    checks: list[SanityResult] = []
    if sanity:
        checks = run_sanity_checks(run.specs, results, (clean_acc, clean_sd), num_classes=num_classes,
                                   stochastic=run.stochastic, n_draws=run.draws, tol=sanity_tol)
        for c in checks:
            table.append(model=name, metric=f"sanity:{c.name}", split="test", score=float(c.passed),
                         passed=c.passed, detail=c.detail, attack=c.attack, norm=norm)
    table.sanity = checks
    return table


def _run(spec: AttackSpec, model: RobustClassifier, x: Tensor, y: Tensor, norm: str,
         square_queries: int, seed: int) -> Tensor:
    if spec.tag == "large_eps":
        norm = "Linf"
    atk = make_attack(spec.attack, model, spec.eps, norm, steps=spec.steps, eot_iter=spec.eot_iter,
                      n_queries=square_queries, random_start=spec.random_start, seed=seed)
    return atk(x, y)
