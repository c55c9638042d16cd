"""The FactorTopy training loop: the start of the positions, AdamW epochs with an annealed layer softmax,
and early stopping on the mean validation r.

Every function takes ``ft``, the :class:`~neuroreg.scoring.factortopy.FactorTopy` being fitted: its
parameters and its feature normalisation (``ft._normalise``, ``ft._prepare``, ``ft._predict_z``, set up
by ``fit`` before training starts).
"""

from __future__ import annotations

import copy
import time
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from neuroreg.scoring.columnwise import pearson_per_column
from neuroreg.scoring.factortopy.initialization import correlation_peaks
from neuroreg.scoring.factortopy.network import FactorTopyNet, _combine
from neuroreg.scoring.factortopy.pooling import _layer_terms, _Tables

__all__: list[str] = []


class TrainResult(NamedTuple):
    """What training leaves besides the network (which holds the weights of the kept epoch)."""

    history: list[dict[str, float]]  # per epoch: loss, mean validation r, temperature, entropy weight, seconds
    best_epoch: int
    temperature: float               # layer-softmax temperature of the kept epoch


def temperature_at(temperature: tuple[float, float], anneal_epochs: int, epoch: int) -> float:
    """Layer-softmax temperature at ``epoch``: geometric from ``temperature[0]`` to ``temperature[1]``
    over ``anneal_epochs``, then constant."""
    t0, t1 = temperature
    frac = 1.0 if anneal_epochs == 0 else min(epoch / anneal_epochs, 1.0)
    return float(t0 * (t1 / t0) ** frac)


def init_positions(ft: Any, net: FactorTopyNet, source, y: Tensor, enc: Tensor, train_idx: np.ndarray,
                   device: torch.device) -> tuple[np.ndarray, float]:
    """Start the space selector at each voxel's ridge-fit peak (:func:`correlation_peaks`).

    The selector MLP is fitted to the peaks (pre-tanh values, least squares, ``ft.init_steps`` Adam
    steps) before training, so the positions stay a smooth function of cortical coordinates wherever
    the data allow. Returns the peaks ``(n_voxels, L, 2)`` and the last fitting loss (NaN without steps).
    """
    peaks, height = correlation_peaks(
        lambda: ((idx, ft._normalise(maps)) for idx, maps in source.batches(train_idx, ft.batch_size * 4, device)),
        y.to(device), y.shape[1], alpha=ft.peak_alpha)
    init_space = peaks.double().cpu().numpy()
    if not net.per_layer_space:  # one position per voxel: the layer whose peak is highest
        peaks = peaks[torch.arange(len(peaks)), height.argmax(1)]
    goal = torch.atanh(peaks.clamp(-0.95, 0.95)).reshape(len(peaks), -1).to(device)
    sel = net.space_selector
    opt = torch.optim.Adam(sel.parameters(), lr=3e-3)
    loss = torch.tensor(float("nan"))
    for _ in range(ft.init_steps):
        opt.zero_grad(set_to_none=True)
        loss = (sel(enc) - goal).square().mean()
        loss.backward()
        opt.step()
    return init_space, float(loss.detach())


def train(ft: Any, net: FactorTopyNet, source, y: Tensor, enc: Tensor, train_idx: np.ndarray, val_idx: np.ndarray,
          neighbours: Tensor | None, device: torch.device) -> TrainResult:
    """Train ``net`` in place on the ``train_idx`` stimuli, keep the epoch of the best mean validation r.

    y: ``(n_stimuli, n_voxels)`` z-scored responses; enc: ``(n_voxels, n_coord)`` coordinate encoding;
    neighbours: ``(n_voxels, k)`` nearest voxels for the smoothness penalty, or None.
    Raises ``RuntimeError`` when no epoch gives a finite validation r.
    """
    rng = np.random.default_rng(ft.random_state)
    select_idx = None
    if ft.expert_weight > 0:
        # stimuli the read-outs never train on: the layer choice is made on out-of-sample fit,
        # otherwise the layer with the most read-out capacity wins
        n_sel = max(1, int(round(ft.select_fraction * len(train_idx))))
        is_sel = np.zeros(len(train_idx), dtype=bool)
        is_sel[rng.permutation(len(train_idx))[:n_sel]] = True  # positions in sorted-id order
        select_idx, train_idx = train_idx[is_sel], train_idx[~is_sel]
    opt = torch.optim.AdamW(net.parameters(), lr=ft.lr, weight_decay=ft.weight_decay)
    start_checking = ft.warmup_epochs + ft.anneal_epochs
    best_r, best_state, best_epoch, waited = -np.inf, None, -1, 0
    history: list[dict[str, float]] = []
    bar = tqdm(range(ft.max_epochs), desc="FactorTopy", unit="epoch", leave=False,
               disable=None if ft.progress is None else not ft.progress)
    for epoch in bar:
        tic = time.perf_counter()
        tau = temperature_at(ft.temperature, ft.anneal_epochs, epoch)
        ent_w = 0.0 if epoch < ft.warmup_epochs else \
            ft.entropy_weight * ft.entropy_decay ** (epoch - ft.warmup_epochs)
        loss = _epoch(ft, net, opt, source, y, enc, (train_idx, select_idx), rng, (tau, ent_w), neighbours, device)
        net.eval()
        val_r = pearson_per_column(ft._predict_z(net, source, enc, val_idx, tau, device).double().numpy(),
                                   y[torch.as_tensor(val_idx)].double().numpy())
        mean_r = float(np.mean(val_r))
        history.append({"epoch": epoch, "loss": loss, "val_r": mean_r, "temperature": tau, "entropy_weight": ent_w,
                        "seconds": time.perf_counter() - tic})
        bar.set_postfix(loss=f"{loss:.4f}", val_r=f"{mean_r:.3f}")
        if epoch + 1 < start_checking and epoch + 1 < ft.max_epochs:
            continue
        if mean_r > best_r:
            best_r, best_epoch, waited = mean_r, epoch, 0
            best_state = (copy.deepcopy(net.state_dict()), tau)
        else:
            waited += 1
            if waited > ft.patience:
                break
    bar.close()
    if best_state is None:
        raise RuntimeError(f"FactorTopy training gave no finite validation r in {len(history)} epochs (last mean r "
                           f"{history[-1]['val_r'] if history else 'none'}); check the responses and features "
                           f"for constant or non-finite columns")
    net.load_state_dict(best_state[0])
    net.eval()
    return TrainResult(history, best_epoch, best_state[1])


def _epoch(ft: Any, net: FactorTopyNet, opt: torch.optim.Optimizer, source, y: Tensor, enc: Tensor,
           rows: tuple[np.ndarray, np.ndarray | None], rng: np.random.Generator, schedule: tuple[float, float],
           neighbours: Tensor | None, device: torch.device) -> float:
    """One pass over the training stimuli ``rows[0]`` in a seeded order (with matching batches of the
    selection stimuli ``rows[1]``, or None) at ``schedule = (temperature, entropy weight)``; the mean loss."""
    train_idx, select_idx = rows
    n_vox = y.shape[1]
    chunks = [slice(s, min(s + ft.voxel_batch_size, n_vox)) for s in range(0, n_vox, ft.voxel_batch_size)]
    net.train()
    order = rng.permutation(train_idx)
    total, steps = 0.0, 0
    sel_batches = None
    if select_idx is not None:
        n_steps = -(-len(order) // ft.batch_size)
        sel_size = max(1, -(-len(select_idx) // n_steps))
        sel_batches = source.batches(rng.permutation(select_idx), sel_size, device)
    for idx, maps in source.batches(order, ft.batch_size, device):
        opt.zero_grad(set_to_none=True)
        target = y[torch.as_tensor(idx)].to(device)
        select = None
        if sel_batches is not None:
            sel = next(sel_batches, None)
            if sel is not None:
                select = (sel[0], ft._normalise(sel[1]), y[torch.as_tensor(sel[0])].to(device))
        total += _step(ft, net, (idx, ft._normalise(maps)), target, enc, schedule, neighbours, chunks, select)
        opt.step()
        steps += 1
    return total / max(steps, 1)


def _step(ft: Any, net: FactorTopyNet, batch: tuple[np.ndarray, list[Tensor]], target: Tensor, enc: Tensor,
          schedule: tuple[float, float], neighbours: Tensor | None, chunks: list[slice],
          select: tuple[np.ndarray, list[Tensor], Tensor] | None = None) -> float:
    """One optimisation step's gradients on a batch ``(stimulus rows, normalised maps)``, accumulated over
    voxel chunks; returns the loss."""
    tau, ent_w = schedule
    probs, space, scale = net.selectors(enc, tau)
    # the selectors run once; chunks backpropagate into detached copies, then into the MLPs
    leaves = [t.detach().requires_grad_(True) for t in (probs, space, scale)]
    align = list(net.align)
    n_chunk = chunks[0].stop - chunks[0].start
    # so do the tables shared by all chunks (aligned ones depend on B_l): built once per batch
    prepared: list[_Tables | Tensor] = []
    shared: list[Tensor] = []
    shared_leaves: list[Tensor] = []
    for prep in ft._prepare(*batch, align, n_chunk):
        part = prep.rows if isinstance(prep, _Tables) else prep
        if not part.requires_grad:
            prepared.append(prep)
            continue
        copy = part.detach().requires_grad_(True)
        shared.append(part)
        shared_leaves.append(copy)
        prepared.append(prep._replace(rows=copy) if isinstance(prep, _Tables) else copy)
    sel_prepared = None
    if select is not None:
        with torch.no_grad():
            sel_prepared = ft._prepare(select[0], select[1], align, n_chunk)
    total = 0.0
    for sl in chunks:
        p, sp, sc = (leaf[sl] for leaf in leaves)
        per = _combine(_layer_terms(prepared, align, sp, sc, net.weights[sl]), p, net.bias[sl], True)  # (b, n, L)
        pred = (per * p).sum(-1)
        loss = F.smooth_l1_loss(pred, target[:, sl], beta=ft.beta, reduction="sum")
        if ft.expert_weight > 0:
            each = F.smooth_l1_loss(per, target[:, sl, None].expand_as(per), beta=ft.beta, reduction="none")
            # Every layer's read-out learns to explain the voxel alone, whatever the current
            # choice (gating its gradient by p lets the first layer to fit win for good);
            # the choice moves towards the layer whose read-out fits best.
            loss = loss + ft.expert_weight * each.mean(-1).sum()
        loss = loss / target.numel()
        if select is not None and sel_prepared is not None:
            with torch.no_grad():
                per_sel = _combine(_layer_terms(sel_prepared, align, sp.detach(), sc.detach(), net.weights[sl]),
                                   p, net.bias[sl], True)
                each_sel = F.smooth_l1_loss(per_sel, select[2][:, sl, None].expand_as(per_sel), beta=ft.beta,
                                            reduction="none").mean(0)  # (n, L)
            loss = loss + ft.expert_weight * (each_sel * p).sum() / target.shape[1]
        loss.backward()
        total += float(loss.detach())
    reg = probs.new_zeros(())
    if ent_w > 0:
        ent = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()
        reg = reg + ent_w * ent
    if neighbours is not None:
        reg = reg + ft.smooth_weight * ((probs[:, None, :] - probs[neighbours]) ** 2).sum(-1).mean()
    pairs = [(out, leaf.grad) for out, leaf in zip([probs, space, scale, *shared], [*leaves, *shared_leaves])
             if leaf.grad is not None]
    if reg.requires_grad:
        pairs.append((reg, torch.ones_like(reg)))
    if pairs:
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
    return total + float(reg.detach())
