"""Agreement of neuroreg with the reference tools on the same real inputs: the largest difference of each.

- RDMs (1 - Pearson r) of a trained network's features on the 92 and 78 bundled images:
  ``neuroreg.scoring.rdm`` vs rsatoolbox ``calc_rdm(method="correlation")``.
- RDM comparisons (Pearson, Spearman, Kendall tau-a, rho-a) of those model RDMs with every real brain
  RDM: ``compare_rdms`` vs rsatoolbox ``rdm.compare``.
- Nili noise ceilings (lower, upper) of every real RDM set with >= 2 subjects, for each method:
  ``rdm_noise_ceiling`` vs rsatoolbox ``boot_noise_ceiling`` (leave-one-RDM-out; see docs/protocols.md
  for grouping sessions by subject).
- Ridge: ``RidgeGCV`` vs scikit-learn ``RidgeCV`` (leave-one-out, alpha per target) predicting real
  model features of one layer from another on the 92 images (chosen alphas and predictions).
- Models: the largest differences to the official implementations, as measured by the tests against the
  committed fixtures (``tests/fixtures/official/``) when that folder exists.

    python experiments/reproduce_reference_agreement.py        # under a minute on 2 cores

Writes ``results/reproduce/agreement/agreement.{csv,md}``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path("results/reproduce/agreement")


def _official_model_rows() -> list[dict]:
    """Largest differences of the models to outputs of the official code, from the committed fixtures
    (tests/fixtures/official, made by experiments/make_official_fixtures.py)."""
    import sys
    import tempfile

    import torch

    import neuroreg as nr

    helpers = Path(__file__).resolve().parents[1] / "tests" / "models"
    if not (helpers / "_official.py").is_file():
        return []
    sys.path.insert(0, str(helpers))
    from _official import load, rel_diff, write_official_checkpoint

    rows = []
    cases = [("cornet_z", "cornet_z", {}), ("cornet_r", "cornet_r", {}), ("cornet_s", "cornet_s", {}),
             ("vone_resnet50", "vone_resnet50", "image_size"), ("vone_cornets", "vone_cornet_s", "image_size"),
             ("vone_alexnet", "vone_alexnet", "image_size")]
    with tempfile.TemporaryDirectory() as tmp:
        for fixture, name, extra in cases:
            fx = load(fixture)
            path = write_official_checkpoint(fx, Path(tmp) / f"{fixture}.pth.tar")
            kw = {"image_size": int(fx["image_size"])} if extra else {}
            model = nr.create_model(name, pretrained=True, checkpoint_path=path, **kw).eval()
            with torch.no_grad():
                logits = model(torch.from_numpy(fx["input"]))
            rows.append(dict(check=f"{name} logits ({fx['input'].shape[0]} images, {fx['input'].shape[-1]} px)",
                             reference=f"official code ({'dicarlolab/vonenet' if 'vone' in name else 'dicarlolab/CORnet'})",
                             n_values=int(logits.numel()), max_difference=rel_diff(logits, fx["logits"]),
                             note="relative to the largest |logit|"))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="(same work; kept for a uniform interface)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    from rsatoolbox.data import Dataset
    from rsatoolbox.inference import boot_noise_ceiling
    from rsatoolbox.rdm import RDMs, calc_rdm, compare
    from sklearn.linear_model import RidgeCV

    import neuroreg as nr
    from neuroreg.brain import load_algonauts2019_78, load_kriegeskorte92
    from neuroreg.data.preprocessing import preprocessing_of
    from neuroreg.results.report import markdown_table
    from neuroreg.scoring import RidgeGCV, compare_rdms, rdm, rdm_noise_ceiling

    t0 = time.perf_counter()
    model = nr.create_model("efficientnet_lite0_imagenet", pretrained=True).eval()
    prep = preprocessing_of(model)
    rows = []

    def add(what, reference, n_values, diff, note=""):
        rows.append(dict(check=what, reference=reference, n_values=int(n_values), max_difference=float(diff),
                         note=note or "absolute"))

    ridge_x = ridge_y = None
    for data in (load_kriegeskorte92(), load_algonauts2019_78()):
        feats = nr.extract(model, data.images_tensor(), ["blocks.3", "blocks.5"], batch_size=16,
                           transform=prep.with_size(224), progress=False)
        x = feats.flat("blocks.5").double().numpy()
        ours = rdm(x)
        theirs = calc_rdm(Dataset(x), method="correlation").get_matrices()[0]
        add(f"RDM (1 - Pearson r), {data.name}, {x.shape[0]} x {x.shape[1]}", "rsatoolbox calc_rdm",
            ours.size, np.abs(ours - theirs).max())
        iu = np.triu_indices(len(x), 1)
        model_vec = ours[iu][None]
        for name, rset in data.rdms.items():
            brain = rset.condensed()
            for ours_m, theirs_m in (("pearson", "corr"), ("spearman", "spearman"), ("kendall_tau_a", "tau-a"),
                                     ("rho_a", "rho-a")):
                a = compare_rdms(model_vec, brain, ours_m)
                b = compare(RDMs(model_vec), RDMs(brain), method=theirs_m)
                add(f"compare_rdms {ours_m}, {data.name} {name} ({len(brain)} RDMs)", f"rsatoolbox compare {theirs_m}",
                    np.size(a), np.abs(np.asarray(a) - np.asarray(b)).max())
                if len(brain) >= 2:
                    nc = rdm_noise_ceiling(brain, ours_m)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        lo, up = boot_noise_ceiling(RDMs(brain), method=theirs_m)
                    add(f"Nili ceiling {ours_m}, {data.name} {name} ({len(brain)} RDMs)",
                        "rsatoolbox boot_noise_ceiling", 2, max(abs(nc.lower - lo), abs(nc.upper - up)),
                        "leave-one-RDM-out")
        if ridge_x is None:
            ridge_x, ridge_y = feats.flat("blocks.3").double().numpy(), x[:, :300]
    alphas = np.logspace(-1, 5, 7) * ridge_x.shape[1]
    ours = RidgeGCV(alphas=alphas, alpha_per_target=True).fit(ridge_x, ridge_y)
    ref = RidgeCV(alphas=alphas, alpha_per_target=True).fit(ridge_x, ridge_y)
    pred_diff = np.abs(ours.predict(ridge_x) - ref.predict(ridge_x)).max() / np.abs(ref.predict(ridge_x)).max()
    add(f"RidgeGCV predictions (relative), 92 images, {ridge_x.shape[1]} -> {ridge_y.shape[1]} features",
        "scikit-learn RidgeCV (LOO)", ridge_y.size, pred_diff)
    add("RidgeGCV chosen alphas (share different)", "scikit-learn RidgeCV (LOO)", ridge_y.shape[1],
        float(np.mean(np.asarray(ours.alpha_) != np.asarray(ref.alpha_))))
    rows.extend(_official_model_rows())
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "agreement.csv", index=False)
    (args.out / "agreement.md").write_text(markdown_table(table) + "\n")
    print(table.to_string(index=False))
    print(f"wrote {args.out}/agreement.csv, agreement.md in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
