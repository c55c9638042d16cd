"""The Neural Harmonizer loss: align where a network looks with where humans look (Fel et al. 2022).

L = task loss + weight * L_harm, with (as ``harmonization.training.harmonizer_loss``,
harmonization 0.0.9, the released TensorFlow code):

1. saliency ``s = mean over colour channels of d logit[true class] / d image`` (the
   gradient of the summed true-class logits with respect to the input pixels,
   kept in the graph, so that ``L_harm`` trains the network: double backpropagation);
2. ``standardize_cut`` of ``s`` and of the human importance map ``h`` (ClickMe):
   per map, zero mean and unit (population) standard deviation, ``epsilon = 1e-5``
   added to the standard deviation, then ReLU;
3. ``h`` rescaled to the maximum of ``s``: ``h / (max h + 1e-6) * (max s + 1e-6)``,
   with no gradient through ``max s``;
4. the pyramidal MSE of the two (:func:`pyramidal_mse`), each image weighted by its
   token (1 where a human map exists, 0 otherwise). With the release's
   ``nb_levels=5`` it averages over 5 maps: the original and 4 binomial
   downsamplings (the release builds a fifth one but leaves it out of the mean).

The saliency and everything after it are computed in float32, also under
mixed precision (the release casts the gradient to float32).

Stochastic networks (the VOneBlock's noise, in training and evaluation alike):
with ``draws = k > 1`` the batch enters the network ``k`` times in one forward
pass (``images.repeat(k, 1, 1, 1)``, each copy with its own noise), and the
saliency is the mean over the ``k`` draws of the gradient, i.e. the gradient of
the mean true-class logit (an expectation-over-transformation estimate). With
``k = 1`` (the default, and the release's setting for its deterministic
networks) the saliency of a stochastic network is that of the one noise draw
of the step: unbiased for the mean gradient, noisier. The logits and the
saliency come from the *same* forward pass as the task loss: the term runs no
forward pass of its own, so BatchNorm running statistics are updated once per
step; in training mode the saliency of an image depends on the other images of
the batch through the batch statistics, as in the release.

>>> images = images.requires_grad_(True)       # before the forward pass
>>> logits = model(images)
>>> term = HarmonizationLoss(weight=1.0)        # the release's lambda_harmonization
>>> loss = F.cross_entropy(logits, labels, label_smoothing=0.1) + term.weight * term(logits, images, labels,
...                                                                                  human_maps, tokens)

The release's recipe also smooths the cross-entropy labels by 0.1 and adds an L2
penalty ``1e-5 * sum(w**2) / 2`` on the weights that are not normalisation
parameters; those belong to the training configuration, not to this term.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuroreg.alignment.base import _no_autocast
from neuroreg.alignment.pyramid import pyramid
from neuroreg.alignment.schedule import WeightSchedule
from neuroreg.errors import NonFiniteError, ShapeError

__all__ = ["standardize_cut", "pyramid", "pyramidal_mse", "harmonization_term", "input_saliency",
           "saliency_maps", "harmonization_loss", "HarmonizationLoss"]

# The release's constants (harmonization/training/loss.py, 0.0.9).
STANDARDIZE_EPSILON = 1e-5
_MAX_EPSILON = 1e-6
_TINY_VARIANCE = 1e-30   # floor of the variance in standardize_cut: a finite gradient for constant maps


def standardize_cut(maps: Tensor, epsilon: float = STANDARDIZE_EPSILON) -> Tensor:
    """``relu((m - mean m) / (std m + epsilon))`` per map; ``maps (B, H, W)`` -> ``(B, H, W)``.

    ``std`` is the population standard deviation over the ``H x W`` pixels
    (``tf.math.reduce_std``). A constant map becomes all zeros, with a zero
    gradient: the release's gradient there is NaN (``sqrt`` at 0), which would
    put NaN into every weight once a network's saliency goes flat on one image;
    here the variance is floored at 1e-30 (its square root, 1e-15, vanishes next
    to ``epsilon``), which changes no value the release computes.
    """
    _check_maps(maps, "maps")
    mean = maps.mean(dim=(1, 2), keepdim=True)
    centred = maps - mean
    std = centred.square().mean(dim=(1, 2), keepdim=True).clamp_min(_TINY_VARIANCE).sqrt()
    return F.relu(centred / (std + epsilon))


def pyramidal_mse(a: Tensor, b: Tensor, tokens: Tensor | None = None, levels: int = 5) -> Tensor:
    """Token-weighted MSE between two sets of maps, averaged over pyramid levels.

    a, b: ``(B, H, W)``; tokens: ``(B,)`` weights (``None``: all 1). Returns the
    0-d mean over levels ``k = 0 .. levels - 1`` of ``mean over (B, H_k, W_k) of
    (a_k - b_k)**2 * tokens``, where ``a_k`` is level ``k`` of :func:`pyramid`
    (``a_0 = a``). As ``pyramidal_mse_with_tokens(..., nb_levels=5)`` of the
    release: it builds ``levels`` downsamplings but averages over the first
    ``levels`` maps (the original and ``levels - 1`` downsamplings), so the
    coarsest level of ``pyramid(a, levels)`` does not enter. The mean runs over
    all images, weighted or not: tokens of 0 lower the value rather than drop the image.
    """
    _check_maps(a, "a")
    if b.shape != a.shape:
        raise ShapeError(f"a and b must have the same shape (B, H, W); got a {tuple(a.shape)} and b {tuple(b.shape)}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be an integer >= 1; got {levels!r}")
    weights = _tokens(tokens, a)[:, None, None]
    terms = [((x - y).square() * weights).mean() for x, y in zip(pyramid(a, levels - 1), pyramid(b, levels - 1))]
    return torch.stack(terms).mean()


def harmonization_term(saliency: Tensor, human_maps: Tensor, tokens: Tensor | None = None, levels: int = 5) -> Tensor:
    """The release's harmonization loss given saliency maps: 0-d float32 tensor (float64 for float64 saliency).

    saliency: ``(B, H, W)`` model saliency; human_maps: ``(B, H, W)`` (or
    ``(B, 1, H, W)``) human importance maps on the same pixels; tokens: ``(B,)``,
    1 where a human map exists (``None``: all 1). Both maps are standardize-cut,
    the human maps rescaled to the saliency's per-image maximum (no gradient
    through that maximum), then :func:`pyramidal_mse`.
    """
    _check_maps(saliency, "saliency")
    human_maps = _human_maps(human_maps, saliency)
    with _no_autocast(saliency.device):
        sal = standardize_cut(_at_least_float32(saliency))
        human = standardize_cut(_at_least_float32(human_maps).to(sal.dtype))
        human_max = human.amax(dim=(1, 2), keepdim=True) + _MAX_EPSILON
        sal_max = sal.detach().amax(dim=(1, 2), keepdim=True) + _MAX_EPSILON
        human = human / human_max * sal_max
        return pyramidal_mse(sal, human, None if tokens is None else tokens.to(sal.dtype), levels)


def input_saliency(logits: Tensor, images: Tensor, labels: Tensor, create_graph: bool = True,
                   draws: int = 1) -> Tensor:
    """Gradient of the true-class logits with respect to the images, averaged over channels (and noise draws).

    logits: ``(draws * B, C)`` computed from ``images (B, channels, H, W)`` (repeated
    ``draws`` times, ``images.repeat(draws, 1, 1, 1)``, for a stochastic network),
    which must have had ``requires_grad=True`` before the forward pass; labels:
    ``(B,)`` class indices or ``(B, C)`` one-hot (or soft) labels, the score being
    ``sum(logits * labels, -1)`` as in the release. Returns ``(B, H, W)`` float32
    (float64 for float64 images), in logit units per unit of input: the mean over
    the draws of each draw's gradient. ``create_graph=True`` keeps the graph so a
    loss on the saliency trains the network.
    """
    draws = _check_draws(draws)
    if images.ndim != 4:
        raise ShapeError(f"images must be (B, channels, H, W); got shape {tuple(images.shape)}")
    if not images.requires_grad:
        raise ValueError("images must have requires_grad=True before the forward pass that gave the logits "
                         "(images.requires_grad_(True)); got a tensor without gradient")
    if logits.ndim != 2 or logits.shape[0] != draws * images.shape[0]:
        raise ShapeError(f"logits must be (draws * B, classes) = ({draws} * {images.shape[0]}, classes) for the "
                         f"B={images.shape[0]} images; got shape {tuple(logits.shape)}")
    if draws > 1:
        labels = labels.repeat(draws, *([1] * (labels.ndim - 1)))
    score = _true_class_score(_at_least_float32(logits), labels)
    (grad,) = torch.autograd.grad(score.sum(), images, create_graph=create_graph, allow_unused=True)
    if grad is None:
        raise ValueError("the logits do not depend on images: pass the tensor the logits were computed from")
    saliency = _at_least_float32(grad).mean(dim=1)
    return saliency / draws if draws > 1 else saliency


def _check_draws(draws: int) -> int:
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws (noise draws per image) must be an integer >= 1; got {draws!r}")
    return draws


def _true_class_score(logits: Tensor, labels: Tensor) -> Tensor:
    """``(B,)`` score of the true class: ``logits[i, labels[i]]`` or ``sum(logits * labels, -1)`` for one-hot labels."""
    b, c = logits.shape
    if labels.ndim == 1 and not labels.is_floating_point():
        if labels.shape[0] != b:
            raise ShapeError(f"labels must be (B,) with B={b}; got shape {tuple(labels.shape)}")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= c:
            raise ValueError(f"labels must be class indices in [0, {c}); got values in [{low}, {high}]")
        return logits.gather(1, labels[:, None].long())[:, 0]
    if labels.shape != logits.shape:
        raise ShapeError(f"labels must be (B,) class indices or (B, C) one-hot like logits {tuple(logits.shape)}; "
                         f"got shape {tuple(labels.shape)} ({labels.dtype})")
    return (logits * labels.to(logits.dtype)).sum(-1)


def saliency_maps(model: nn.Module, images: Tensor, labels: Tensor, create_graph: bool = False,
                  draws: int = 1) -> Tensor:
    """The model's input saliency ``(B, H, W)`` (see :func:`input_saliency`) from one forward pass of ``images``.

    images: ``(B, channels, H, W)`` as the model takes them; labels: ``(B,)`` or
    ``(B, C)``; ``draws``: noise draws of a stochastic model, averaged (the batch
    enters ``draws`` times in the one pass). Runs ``model`` in its current mode:
    in training mode this pass updates BatchNorm statistics, so a training step
    uses :func:`input_saliency` on its own logits instead. Works inside
    ``torch.no_grad()`` and ``torch.inference_mode()`` (the images are copied out of it).
    """
    draws = _check_draws(draws)
    with torch.inference_mode(False), torch.enable_grad():
        x = images.detach().clone().requires_grad_(True)
        logits = model(x.repeat(draws, 1, 1, 1) if draws > 1 else x)
        return input_saliency(logits, x, labels.clone(), create_graph=create_graph, draws=draws)


def harmonization_loss(logits: Tensor, images: Tensor, labels: Tensor, human_maps: Tensor,
                       tokens: Tensor | None = None, *, levels: int = 5, draws: int = 1) -> Tensor:
    """The harmonization term of a training step: :func:`harmonization_term` of :func:`input_saliency`.

    logits ``(draws * B, C)`` from ``images (B, channels, H, W)`` (``requires_grad=True``
    before that forward pass; repeated ``draws`` times for a stochastic network);
    labels ``(B,)`` or ``(B, C)``; human_maps ``(B, H, W)``; tokens ``(B,)``.
    Differentiable in the network's parameters (double backpropagation). Returns
    the unweighted 0-d float32 loss.
    """
    saliency = input_saliency(logits, images, labels, create_graph=True, draws=draws)
    return harmonization_term(saliency, human_maps, tokens, levels)


class HarmonizationLoss(nn.Module):
    """Neural Harmonizer term: ``weight * harmonization_loss(logits, images, labels, human_maps, tokens)``.

    Parameters
    ----------
    weight: multiplier in the total loss (the release's ``lambda_harmonization``, 1.0).
    levels: pyramid levels of the MSE (the release's ``nb_levels``, 5).
    noise_draws: forward passes of each image whose saliencies are averaged, for
        a stochastic network (``vone_*``: a fresh VOneBlock noise draw per copy);
        1 (the default) for a deterministic one, where more draws only cost time.
        In a training step the copies also enter the cross-entropy (the mean over draws).
    schedule: ``None`` (constant), a :class:`WeightSchedule` or a callable
        ``step -> factor``; the effective weight is ``weight * schedule(step)``.
    name: tag in logs; defaults to ``"harmonization"``.

    ``forward`` returns the unweighted 0-d loss; the caller adds
    ``weight_at(step) * loss`` to the task loss, as for
    :class:`~neuroreg.alignment.CKALoss`.
    """

    kind = "harmonization"

    def __init__(self, weight: float = 1.0, levels: int = 5, noise_draws: int = 1,
                 schedule: WeightSchedule | Callable[[int], float] | None = None, name: str | None = None) -> None:
        super().__init__()
        if not weight >= 0:
            raise ValueError(f"weight must be >= 0; got {weight}")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be an integer >= 1; got {levels!r}")
        self.weight = float(weight)
        self.levels = levels
        self.noise_draws = _check_draws(noise_draws)
        self.schedule = schedule
        self._name = name

    @property
    def name(self) -> str:
        return self._name or self.kind

    def weight_at(self, step: int) -> float:
        """Effective weight at optimizer step ``step``."""
        return self.weight * (1.0 if self.schedule is None else float(self.schedule(step)))

    def forward(self, logits: Tensor, images: Tensor, labels: Tensor, human_maps: Tensor,
                tokens: Tensor | None = None) -> Tensor:
        return harmonization_loss(logits, images, labels, human_maps, tokens, levels=self.levels,
                                  draws=self.noise_draws)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, levels={self.levels}, noise_draws={self.noise_draws}"


def _at_least_float32(t: Tensor) -> Tensor:
    """Half and bfloat16 (mixed precision) to float32; float64 kept (gradient checks)."""
    return t if t.dtype == torch.float64 else t.float()


def _check_maps(maps: Tensor, what: str) -> None:
    if maps.ndim != 3:
        raise ShapeError(f"{what} must be (B, H, W); got shape {tuple(maps.shape)}")


def _human_maps(human_maps: Tensor, saliency: Tensor) -> Tensor:
    if human_maps.ndim == 4 and human_maps.shape[1] == 1:
        human_maps = human_maps[:, 0]
    if human_maps.shape != saliency.shape:
        raise ShapeError(f"human_maps must be (B, H, W) on the saliency's pixels {tuple(saliency.shape)}; "
                         f"got shape {tuple(human_maps.shape)}")
    if not torch.isfinite(human_maps).all():
        bad = (~torch.isfinite(human_maps)).nonzero()[0].tolist()
        raise NonFiniteError(f"human_maps contains NaN or inf (first at index {bad})")
    return human_maps


def _tokens(tokens: Tensor | None, maps: Tensor) -> Tensor:
    if tokens is None:
        return maps.new_ones(maps.shape[0])
    if tokens.shape != (maps.shape[0],):
        raise ShapeError(f"tokens must be (B,) with B={maps.shape[0]}; got shape {tuple(tokens.shape)}")
    return tokens.to(device=maps.device, dtype=maps.dtype)
