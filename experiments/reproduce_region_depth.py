"""Seed 002's region-to-depth claim on real fMRI: does early visual cortex match earlier layers than IT?

Gupta, Lazarova, Nabeel & Pateria (seed 002, "Are DNN representations always similar to
cortical representations?") report for ImageNet classifiers: "Lower visual regions (e.g. V1)
show higher similarity with the earlier layers of the neural network. Higher visual regions
(e.g. Lateral Occipital Region) show higher similarity with middle layers of the network."
Tested here on the bundled 78-image set (``nr.brain.load_algonauts2019_78()``: EVC and IT fMRI
RDMs of the same 15 subjects) with the ImageNet-trained EfficientNet-Lite0 and, as a control,
the same architecture randomly initialised with several seeds (what the architecture alone gives).

Per network, subject and region: the cRSA profile over every layer (stem, every MBConv block,
head; Pearson r between 1 - Pearson r RDMs, unreduced features, all 78 stimuli: only the layer's
*position* is used, never its score as a result), and from it

* ``argmax``: the relative depth (0 = stem, 1 = head) of the best layer;
* ``soft``: the centre of mass of the profile above its minimum,
  sum_l depth_l (r_l - min r) / sum_l (r_l - min r), which does not jump with the argmax's noise.
  It is pulled towards 0.5 by every layer's weight, so its gaps are smaller than the argmax's: the
  published gap (in best-layer units) is not on its scale, and it can only confirm a direction.

The statistic is depth(IT) - depth(EVC) per subject (positive = the claim's direction), averaged
over subjects (and, for the random control, over seeds). Uncertainty over what varies in the claim:
a hierarchical bootstrap that draws seeds (random control), subjects and stimuli with replacement
(stimuli are shared by all subjects: one draw per resample, pairs of a stimulus with its own copy
left out) and recomputes every profile; next to it the subjects-only bootstrap, a sign count and
Wilcoxon's signed-rank test with subjects as the unit, and the power of a one-sample t-test over
the 15 subjects to detect the depth gap the claim implies ("early" vs "middle": at least a quarter
of the network, ``--published-gap``).

    python experiments/reproduce_region_depth.py --quick   # smoke run: 2 random seeds, 112 px, 100 resamples
    python experiments/reproduce_region_depth.py           # 5 random seeds, 224 px, 2,000 resamples

Writes ``results/reproduce/region_depth/`` (``--quick``: ``.../region_depth/quick/``):
``profiles.csv`` (every layer x subject x region x network), ``per_subject.csv``, ``summary.{csv,md}``
and ``region_depth.png``. Every table has a ``mode`` column (``full`` or ``quick``); quick tables and
the figure say so: a smoke run's numbers are not the result.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

OUT = Path("results/reproduce/region_depth")
REGIONS = ("EVC", "IT")
TRAINED = "efficientnet_lite0 (ImageNet)"
MEASURES = ("argmax", "soft")


@dataclass(frozen=True)
class Network:
    """One network's layer RDMs of the stimuli in sorted-id order: ``rdms`` (layers, n, n)."""

    name: str
    group: str  # "trained" or "random"
    seed: int | None
    rdms: np.ndarray


def layer_sweep(model: torch.nn.Module):
    """Stem, every MBConv block (the library's sweep) and head, shallow to deep, with relative depths."""
    from neuroreg.features.layers import sweep_layers

    blocks = sweep_layers(model).layers.values()
    return sweep_layers(model, ["conv_stem", *blocks, "conv_head"])


def network_rdms(model: torch.nn.Module, sweep, data, order: np.ndarray, subjects: list[str], *,
                  image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(layers, n, n) float64 RDMs (1 - Pearson r) of every swept layer, rows in sorted-id order, and the
    library's cRSA profile of the same features on all stimuli: (regions, subjects, layers)."""
    import neuroreg as nr
    from neuroreg.data.preprocessing import preprocessing_of
    from neuroreg.scoring import crsa, rdm

    feats = nr.extract(model.eval(), data.images_tensor(), sweep.layers, batch_size=16, pool=None, seed=0,
                       transform=preprocessing_of(model).with_size(image_size),
                       stimulus_ids=data.stimulus_ids, progress=False)
    table = crsa(feats, data, split=None, ceiling=False, progress=False).to_pandas()
    table["subject"] = table["subject"].astype(str)
    profile = (table.pivot_table(index=["rdm_set", "subject"], columns="layer_index", values="score")
               .reindex(pd.MultiIndex.from_product([list(REGIONS), subjects])).to_numpy()
               .reshape(len(REGIONS), len(subjects), -1))
    rdms = np.stack([rdm(feats.flat(label).double().numpy())[np.ix_(order, order)] for label in sweep.layers])
    return rdms, profile


def profiles_on(nets: list[Network], brains: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """cRSA on the stimulus pairs (i, j): (networks, regions, subjects, layers)."""
    from neuroreg.scoring import compare_vectors

    n_reg, n_sub = brains.shape[:2]
    b = brains[:, :, i, j].reshape(n_reg * n_sub, -1)
    out = [compare_vectors(net.rdms[:, i, j], b).T.reshape(n_reg, n_sub, -1) for net in nets]
    return np.stack(out)


def depths(prof: np.ndarray, depth: np.ndarray) -> dict[str, np.ndarray]:
    """Best-layer depth and the profile's centre of mass above its minimum, over the last axis."""
    w = prof - prof.min(axis=-1, keepdims=True)
    total = w.sum(axis=-1)
    soft = np.where(total > 0, (w * depth).sum(axis=-1) / np.where(total > 0, total, 1.0), 0.5)
    return {"argmax": depth[prof.argmax(axis=-1)], "soft": soft}


def gaps(prof: np.ndarray, depth: np.ndarray) -> dict[str, np.ndarray]:
    """depth(IT) - depth(EVC) per network x subject, for both measures (regions on axis 1 in REGIONS order)."""
    d = depths(prof, depth)
    return {m: d[m][:, 1] - d[m][:, 0] for m in MEASURES}


def group_gap(prof: np.ndarray, depth: np.ndarray) -> dict[str, np.ndarray]:
    """The same, on the profile averaged over subjects first (the group-average analysis): per network."""
    d = depths(prof.mean(axis=2), depth)
    return {m: d[m][:, 1] - d[m][:, 0] for m in MEASURES}


def power_one_sample(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of a two-sided one-sample t-test of mean 0 against a true mean ``effect`` (sd ``sd``, n units)."""
    if sd <= 0:
        return 1.0 if effect != 0 else alpha
    df = n - 1
    t_crit = stats.t.ppf(1 - alpha / 2, df)
    nc = effect / sd * np.sqrt(n)
    # nct's tails can come back NaN far from the centre, where they are 0
    return float(np.nan_to_num(stats.nct.sf(t_crit, df, nc)) + np.nan_to_num(stats.nct.cdf(-t_crit, df, nc)))


def detectable_gap(sd: float, n: int, power: float = 0.8, alpha: float = 0.05) -> float:
    """Smallest true mean gap a two-sided one-sample t-test over ``n`` units detects with ``power``."""
    from scipy.optimize import brentq

    if sd <= 0:
        return 0.0
    return float(brentq(lambda e: power_one_sample(e, sd, n, alpha) - power, 1e-9, 20 * sd))


def verdict(lo: float, hi: float, published_gap: float | None, power: float | None) -> str:
    """"reproduced" (interval above 0), "not reproduced" (interval below the published gap, with >= 80% power
    to detect it) or "inconclusive". Without a published gap on the measure's scale: never "not reproduced"."""
    if lo > 0:
        return "reproduced"
    if published_gap is not None and power is not None and hi < published_gap and power >= 0.8:
        return "not reproduced"
    return "inconclusive"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 random seeds, 100 resamples, 112 px images (a smoke run, not the result)")
    parser.add_argument("--random-seeds", type=int, default=5)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--published-gap", type=float, default=0.25,
                        help="depth(IT) - depth(EVC) the claim implies (early vs middle layers), for the power")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default {OUT}, or {OUT}/quick with --quick)")
    args = parser.parse_args(argv)
    n_seeds = 2 if args.quick else args.random_seeds
    n_boot = 100 if args.quick else args.n_boot
    size = 112 if args.quick else 224
    mode = "quick" if args.quick else "full"
    banner = (f"QUICK smoke run ({n_seeds} random seeds, {n_boot} resamples, {size} px): not the result"
              if args.quick else f"full run ({n_seeds} random seeds, {n_boot} resamples, {size} px)")
    out = args.out if args.out is not None else (OUT / "quick" if args.quick else OUT)
    out.mkdir(parents=True, exist_ok=True)

    import neuroreg as nr
    from neuroreg.results.report import markdown_table
    from neuroreg.scoring import bootstrap_mean

    t0 = time.perf_counter()
    data = nr.brain.load_algonauts2019_78()
    ids = np.asarray(data.stimulus_ids)
    order = np.argsort(ids, kind="stable")
    sets = [data.rdms[r] for r in REGIONS]
    subjects = [str(s) for s in sets[0].subject]
    if [str(s) for s in sets[1].subject] != subjects:
        raise ValueError(f"EVC and IT RDMs must come from the same subjects in the same order; got "
                         f"{subjects} and {list(sets[1].subject)}")
    for name, rs in zip(REGIONS, sets):
        if not np.array_equal(np.asarray(rs.stimulus_ids), ids):
            raise ValueError(f"{name} RDMs are not in the stimulus set's order")
    brains = np.stack([np.asarray(rs.rdms, dtype=np.float64)[:, order][:, :, order] for rs in sets])

    trained = nr.create_model("efficientnet_lite0_imagenet", pretrained=True)
    sweep = layer_sweep(trained)
    depth = np.array([sweep.depth[label] for label in sweep.layers])
    labels = list(sweep.layers)
    rdms, lib_profile = network_rdms(trained, sweep, data, order, subjects, image_size=size)
    nets = [Network(TRAINED, "trained", None, rdms)]
    lib_profiles = [lib_profile]
    del trained
    for s in range(n_seeds):
        torch.manual_seed(s)
        model = nr.create_model("efficientnet_lite0_imagenet", pretrained=False)
        rdms, lib_profile = network_rdms(model, sweep, data, order, subjects, image_size=size)
        nets.append(Network(f"efficientnet_lite0 (random init, seed {s})", "random", s, rdms))
        lib_profiles.append(lib_profile)
    n = len(ids)
    iu = np.triu_indices(n, 1)
    prof = profiles_on(nets, brains, *iu)  # (networks, regions, subjects, layers)
    # the resampled profiles below are computed here, vectorised: on all stimuli they must be the library's cRSA
    if not np.allclose(prof, np.stack(lib_profiles), atol=1e-6, rtol=0):  # they agree to about 1e-8
        raise RuntimeError("the profiles computed here do not match neuroreg.scoring.crsa on the same features")
    print(f"[{mode}] RDMs of {len(nets)} networks x {len(labels)} layers in {time.perf_counter() - t0:.0f} s")

    rows = []
    for k, net in enumerate(nets):
        for r, region in enumerate(REGIONS):
            for s, subj in enumerate(subjects):
                for li, lab in enumerate(labels):
                    rows.append(dict(network=net.name, group=net.group, seed=net.seed, region=region, subject=subj,
                                     layer=lab, layer_index=li, depth=depth[li], crsa=prof[k, r, s, li], mode=mode))
    pd.DataFrame(rows).to_csv(out / "profiles.csv", index=False)

    d_point = depths(prof, depth)
    g_point = gaps(prof, depth)
    per_subject = []
    for k, net in enumerate(nets):
        for s, subj in enumerate(subjects):
            for m in MEASURES:
                per_subject.append(dict(network=net.name, group=net.group, seed=net.seed, subject=subj, measure=m,
                                        depth_EVC=d_point[m][k, 0, s], depth_IT=d_point[m][k, 1, s],
                                        layer_EVC=labels[prof[k, 0, s].argmax()] if m == "argmax" else "",
                                        layer_IT=labels[prof[k, 1, s].argmax()] if m == "argmax" else "",
                                        gap=g_point[m][k, s], mode=mode))
    per_subject_df = pd.DataFrame(per_subject)
    per_subject_df.to_csv(out / "per_subject.csv", index=False)

    # hierarchical bootstrap: random seeds, subjects, stimuli (one crossed draw of each per resample)
    rng = np.random.default_rng(0)
    random_idx = np.array([k for k, net in enumerate(nets) if net.group == "random"])
    n_sub = len(subjects)
    boot: dict[str, list[float]] = {}
    degenerate = 0
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        subj_b = rng.integers(0, n_sub, size=n_sub)
        seeds_b = random_idx[rng.integers(0, random_idx.size, size=random_idx.size)]
        if np.unique(idx).size < 3:
            degenerate += 1
            continue
        i, j = idx[iu[0]], idx[iu[1]]
        keep = i != j
        p = profiles_on(nets, brains, i[keep], j[keep])
        g = gaps(p, depth)
        gg = group_gap(p[:, :, subj_b], depth)
        for m in MEASURES:
            tr = g[m][0, subj_b].mean()
            rd = g[m][seeds_b][:, subj_b].mean()
            for key, v in ((f"trained {m}", tr), (f"random {m}", rd), (f"trained - random {m}", tr - rd),
                           (f"trained group {m}", gg[m][0]), (f"random group {m}", gg[m][seeds_b].mean())):
                boot.setdefault(key, []).append(float(v))

    summary = []
    gg_point = group_gap(prof, depth)
    for m in MEASURES:
        tr_gap = g_point[m][0]
        rd_gap = g_point[m][random_idx]  # (seeds, subjects)
        rd_subject = rd_gap.mean(axis=0)  # each subject's gap averaged over seeds
        cases = [
            ("trained", "per subject", tr_gap, float(tr_gap.mean())),
            ("random", "per subject", rd_subject, float(rd_gap.mean())),
            ("trained - random", "per subject", tr_gap - rd_subject, float(tr_gap.mean() - rd_gap.mean())),
            ("trained group", "subject-mean profile", None, float(gg_point[m][0])),
            ("random group", "subject-mean profile", None, float(gg_point[m][random_idx].mean())),
        ]
        for name, unit, per_subj, point in cases:
            hb = np.asarray(boot[f"{name} {m}"])
            lo, hi = np.quantile(hb, [0.025, 0.975])
            row = dict(network=name, measure=m, unit=unit, gap=point, ci_low=float(lo), ci_high=float(hi),
                       ci_over=("seeds, subjects, stimuli" if "random" in name else "subjects, stimuli"),
                       n_subjects=n_sub, n_random_seeds=random_idx.size, n_boot=hb.size)
            power = None
            if per_subj is not None:
                sb = bootstrap_mean(per_subj, n_boot=n_boot, seed=0)
                nonzero = per_subj[per_subj != 0]
                sd = float(per_subj.std(ddof=1))
                row.update(subjects_ci_low=sb.low, subjects_ci_high=sb.high, n_positive=int((per_subj > 0).sum()),
                           n_negative=int((per_subj < 0).sum()), n_zero=int((per_subj == 0).sum()),
                           sign_test_p=(stats.binomtest(int((nonzero > 0).sum()), nonzero.size).pvalue
                                        if nonzero.size else np.nan),
                           wilcoxon_p=(stats.wilcoxon(nonzero).pvalue if nonzero.size >= 2 else np.nan),
                           sd_over_subjects=sd, detectable_gap_80=detectable_gap(sd, n_sub))
                if m == "argmax":
                    power = power_one_sample(args.published_gap, sd, n_sub)
                    row["power_at_published_gap"] = power
            if name.startswith("trained"):
                on_scale = m == "argmax" and unit == "per subject"
                row["verdict"] = verdict(float(lo), float(hi), args.published_gap if on_scale else None,
                                         power if on_scale else None)
            summary.append(row)
    summary_df = pd.DataFrame(summary)
    summary_df["published_gap"] = args.published_gap
    summary_df["mode"] = mode
    summary_df.to_csv(out / "summary.csv", index=False)
    (out / "summary.md").write_text(f"{banner}\n\n" + markdown_table(summary_df) + "\n")
    fig_path = plot(prof, depth, per_subject_df, summary_df, nets, out / "region_depth.png", mode=mode)
    print(banner)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(per_subject_df[per_subject_df["group"] == "trained"].to_string(index=False))
        print(summary_df.drop(columns=["mode"]).to_string(index=False))
    print(f"[{mode}] wrote {out}/ (profiles.csv, per_subject.csv, summary.*, {fig_path.name}) in "
          f"{time.perf_counter() - t0:.0f} s; {degenerate} degenerate resamples")


def plot(prof: np.ndarray, depth: np.ndarray, per_subject: pd.DataFrame, summary: pd.DataFrame,
         nets: list[Network], path: Path, *, mode: str) -> Path:
    from matplotlib.figure import Figure

    from neuroreg.results.figures import save_figure

    fig = Figure(figsize=(15.5, 4.3), layout="constrained")
    ax_prof, ax_sub, ax_gap = fig.subplots(1, 3)
    colours = {"EVC": "tab:blue", "IT": "tab:orange"}
    random = [k for k, net in enumerate(nets) if net.group == "random"]
    for r, region in enumerate(REGIONS):
        ax_prof.plot(depth, prof[0, r].mean(axis=0), marker="o", ms=3, color=colours[region],
                     label=f"{region}, ImageNet-trained")
        ax_prof.plot(depth, prof[random, r].mean(axis=(0, 1)), ls="--", color=colours[region],
                     label=f"{region}, random init (mean of {len(random)} seeds)")
    ax_prof.axhline(0, color="k", lw=0.5)
    ax_prof.set(title="cRSA profile, mean over 15 subjects", xlabel="relative layer depth (0 = stem, 1 = head)",
                ylabel="cRSA (Pearson r, 78 images)")
    ax_prof.legend(fontsize=7)

    tr = per_subject[per_subject["group"] == "trained"]
    jitter = np.random.default_rng(0).uniform(-0.012, 0.012, size=(2, len(tr) // 2))
    for (m, style), jit in zip((("argmax", "o"), ("soft", "s")), jitter):
        part = tr[tr["measure"] == m]
        ax_sub.scatter(part["depth_EVC"] + jit, part["depth_IT"] - jit, marker=style,
                       facecolors="none" if m == "soft" else "tab:green", edgecolors="tab:green",
                       label=f"{m} (one point per subject)")
    ax_sub.plot([0, 1], [0, 1], color="k", lw=0.5)
    ax_sub.set(xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), xlabel="EVC: depth of best layer",
               ylabel="IT: depth of best layer",
               title="ImageNet-trained, per subject (above the line = the claim)")
    ax_sub.legend(fontsize=7)

    rows = summary[summary["unit"] == "per subject"].reset_index(drop=True)
    y = np.arange(len(rows))
    ax_gap.errorbar(rows["gap"], y, xerr=[rows["gap"] - rows["ci_low"], rows["ci_high"] - rows["gap"]], fmt="o",
                    color="k", capsize=3)
    ax_gap.axvline(0, color="k", lw=0.5)
    ax_gap.axvline(float(summary["published_gap"].iloc[0]), color="tab:red", ls=":",
                   label="smallest gap the claim implies")
    ax_gap.set_yticks(y, [f"{a} ({b})" for a, b in zip(rows["network"], rows["measure"])], fontsize=8)
    ax_gap.set(xlabel="depth(IT) - depth(EVC), mean over subjects (95% hierarchical bootstrap)",
               title="region-to-depth gap")
    ax_gap.legend(fontsize=7)
    if mode != "full":
        fig.suptitle(f"{mode.upper()} smoke run: not the result", color="tab:red")
    return save_figure(fig, path)


if __name__ == "__main__":
    main()
