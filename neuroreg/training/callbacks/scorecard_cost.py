"""The default interval of the periodic scorecard: its estimated cost against the training's, in pixel-passes.

A periodic evaluation (:class:`~neuroreg.training.ScorecardCallback`) spends its
time in forward and backward passes of the network, as training does. Both are
counted in one unit, the **pixel-pass**: one forward pass of one image of ``P``
pixels costs ``P``; a pass that also takes a gradient (forward + backward) costs
``3 P`` (the backward pass of a convolution network costs about twice its
forward). Then

* one training batch costs ``3 * sum(pixels of every image in the batch)``
  (task images and the neural images of the alignment term alike);
* one periodic evaluation costs
  ``sum over brain sets(n_stimuli * P_model)`` (one forward pass each, at the
  model's input size) ``+ n_images * P_task * (2 + sum over attack runs(3 * steps
  * eot_iter + 1))``: the accuracy pass, the attack suite's clean pass, and per
  attack run its gradient steps and the pass that scores its adversarial images.
  A stochastic model's PGD brings EOT-PGD along (``eot_iter`` gradient draws
  per step), as :func:`neuroreg.robustness.attack_suite` does.

The default interval is the smallest whole number of epochs ``k`` whose training
cost is at least ``1 / budget`` times one evaluation's::

    k = ceil(evaluation / (budget * batch * batches_per_epoch))

It depends only on the configuration (sizes, counts, the model's stochasticity),
never on wall-clock time, so a run and its rerun evaluate at the same steps.
What one pixel-pass costs differs between the two sides (small images run less
efficiently per pixel than large ones; a mixed-precision training step is
faster than a float32 evaluation); ``experiments/bench_training.py`` measures
the resulting fraction of training time (``docs/training.md``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

__all__ = ["GRADIENT_PASS", "attack_passes", "periodic_evaluation_cost", "final_attack_passes", "final_evaluation_cost",
           "training_batch_cost", "default_interval"]

#: A forward + backward pass costs this many forward passes.
GRADIENT_PASS = 3

_APGD_STEPS = 100          # attack_suite's default apgd_steps (the periodic evaluation keeps it)
_SQUARE_QUERIES = 1000     # attack_suite's default square_queries: an upper bound (Square stops on success)


def attack_passes(attack: str, *, steps: int, eot_iter: int, stochastic: bool) -> int:
    """Forward-pass equivalents per image of one periodic attack run, scoring of its images included.

    attack: a name of :data:`neuroreg.robustness.attacks.ATTACKS`; ``steps`` are the
        PGD iterations, ``eot_iter`` the gradient draws per EOT step (stochastic models).
    """
    if steps < 1 or eot_iter < 1:
        raise ValueError(f"steps and eot_iter must be >= 1; got steps={steps}, eot_iter={eot_iter}")
    eot = eot_iter if stochastic else 1
    if attack == "pgd":
        passes = GRADIENT_PASS * steps + 1
        return passes + (GRADIENT_PASS * steps * eot_iter + 1 if stochastic else 0)   # + EOT-PGD
    if attack == "eotpgd":
        return GRADIENT_PASS * steps * eot_iter + 1
    if attack == "fgsm":
        return GRADIENT_PASS + 1
    if attack in ("apgd-ce", "apgd-dlr"):
        return GRADIENT_PASS * _APGD_STEPS * eot + 1
    if attack == "square":
        return _SQUARE_QUERIES + 1
    if attack == "autoattack":   # APGD-CE, targeted APGD (9 targets), targeted FAB (9 targets), Square (5,000)
        return GRADIENT_PASS * _APGD_STEPS * eot * (1 + 9 + 9) + 5 * _SQUARE_QUERIES + 1
    raise ValueError(f"attack must be one of fgsm, pgd, eotpgd, apgd-ce, apgd-dlr, autoattack, square; "
                     f"got {attack!r}")


def periodic_evaluation_cost(*, brain_stimuli: Sequence[tuple[int, int]], n_images: int, image_pixels: int,
                             attack: str | None, steps: int, eot_iter: int, stochastic: bool) -> int:
    """Pixel-passes of one periodic evaluation.

    brain_stimuli: ``(n_stimuli, pixels per stimulus at the model's input size)`` per brain set.
    n_images, image_pixels: validation images of the accuracy and the attack, and their pixels (H * W).
    attack: the periodic attack (None: accuracy only).
    """
    if n_images < 0 or image_pixels < 0:
        raise ValueError(f"n_images and image_pixels must be >= 0; got {n_images} and {image_pixels}")
    brain = sum(int(n) * int(p) for n, p in brain_stimuli)
    per_image = 2 + (attack_passes(attack, steps=steps, eot_iter=eot_iter, stochastic=stochastic)
                     if attack else 0)
    return brain + int(n_images) * int(image_pixels) * per_image


def final_attack_passes(attacks: Sequence[str], *, n_eps: int, steps: int, eot_iter: int, stochastic: bool,
                        sanity: bool, n_draws: int = 5) -> int:
    """Forward-pass equivalents per image of the end-of-run attack suite (:func:`neuroreg.robustness.attack_suite`).

    attacks: the suite's attacks; n_eps: its positive budgets (the preset grid has 3); steps, eot_iter: its
    PGD iterations and EOT draws. With ``sanity`` the suite adds, as it does: every attack at eps 0 (PGD-like
    ones), the large-eps run, the same PGD at 1x and 4x steps and a Square black-box run (its 1,000-query bound).
    A stochastic model runs each attack ``n_draws`` times. The clean pass of the suite is one more pass.
    """
    if n_eps < 1 or n_draws < 1:
        raise ValueError(f"n_eps and n_draws must be >= 1; got n_eps={n_eps}, n_draws={n_draws}")
    per = {a: attack_passes(a, steps=steps, eot_iter=eot_iter, stochastic=stochastic) for a in attacks}
    grid = {a: n_eps + (1 if sanity and a not in ("autoattack", "square") else 0) for a in attacks}
    passes = sum(per[a] * grid[a] for a in attacks)
    if sanity:
        base = attack_passes("eotpgd" if stochastic else "pgd", steps=steps, eot_iter=eot_iter, stochastic=False)
        four = attack_passes("eotpgd" if stochastic else "pgd", steps=4 * steps, eot_iter=eot_iter, stochastic=False)
        passes += 2 * base + four + (0 if "square" in attacks else _SQUARE_QUERIES + 1)
        passes += attack_passes("pgd", steps=steps, eot_iter=1, stochastic=False) if stochastic and "pgd" not in \
            attacks else 0
    return 1 + passes * (n_draws if stochastic else 1)


def final_evaluation_cost(*, brain_stimuli: Sequence[tuple[int, int]], n_images: int, image_pixels: int,
                          attack_passes_per_image: int, corruption_passes_per_image: int = 0) -> int:
    """Pixel-passes of an end-of-run scorecard: one forward per brain stimulus (``(n_stimuli, pixels)`` per set),
    the accuracy pass, the attack suite (:func:`final_attack_passes` per image) and the corruptions (one pass per
    corruption and severity) on ``n_images`` validation images of ``image_pixels`` pixels."""
    if n_images < 0 or image_pixels < 0:
        raise ValueError(f"n_images and image_pixels must be >= 0; got {n_images} and {image_pixels}")
    brain = sum(int(n) * int(p) for n, p in brain_stimuli)
    per_image = 1 + int(attack_passes_per_image) + int(corruption_passes_per_image)
    return brain + int(n_images) * int(image_pixels) * per_image


def _images(batch: Any):
    if isinstance(batch, torch.Tensor):
        if batch.ndim == 4 and torch.is_floating_point(batch):
            yield batch
    elif isinstance(batch, Mapping):
        for v in batch.values():
            yield from _images(v)
    elif isinstance(batch, (list, tuple)):
        for v in batch:
            yield from _images(v)


def training_batch_cost(batch: Any) -> int:
    """Pixel-passes of one training batch: ``3 * N * H * W`` summed over the batch's image tensors.

    batch: a tensor, or a dict/list/tuple holding tensors; every float tensor
    ``(N, C, H, W)`` counts as N images (the task images and the neural images of
    :class:`~neuroreg.training.BrainRegularizedModule`'s batches).
    """
    pixels = sum(int(x.shape[0]) * int(x.shape[-2]) * int(x.shape[-1]) for x in _images(batch))
    if pixels == 0:
        raise ValueError("batch holds no images: expected float tensors of shape (N, C, H, W) in a tensor, "
                         f"dict, list or tuple; got {type(batch).__name__}")
    return GRADIENT_PASS * pixels


def default_interval(evaluation_cost: float, batch_cost: float, *, batches_per_epoch: float, budget: float,
                     accumulate_grad_batches: int = 1) -> tuple[int, int]:
    """``(every_n_epochs, every_n_steps)`` of the periodic evaluation; one of them is 0 (off).

    The periodic evaluation may cost at most ``budget`` (a fraction) of the
    training: it runs every ``k`` epochs, the smallest ``k >= 1`` with
    ``k * batches_per_epoch * batch_cost * budget >= evaluation_cost``. Where the
    epoch length is unknown (``batches_per_epoch`` infinite or 0: an iterable data
    set), every ``ceil(batches / accumulate_grad_batches)`` optimizer steps instead.
    """
    if not 0 < budget <= 1:
        raise ValueError(f"budget must be in (0, 1]; got {budget}")
    if batch_cost <= 0:
        raise ValueError(f"batch_cost must be > 0; got {batch_cost}")
    if evaluation_cost < 0:
        raise ValueError(f"evaluation_cost must be >= 0; got {evaluation_cost}")
    if accumulate_grad_batches < 1:
        raise ValueError(f"accumulate_grad_batches must be >= 1; got {accumulate_grad_batches}")
    batches = max(1, math.ceil(evaluation_cost / (budget * batch_cost)))
    if math.isfinite(batches_per_epoch) and batches_per_epoch >= 1:
        return max(1, math.ceil(batches / int(batches_per_epoch))), 0
    return 0, max(1, math.ceil(batches / accumulate_grad_batches))
