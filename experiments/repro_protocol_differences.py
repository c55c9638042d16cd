"""How much neuroreg's own veRSA differs from ``protocol="conwell"``, and why, on the reference problem.

On ``tests/fixtures/protocol_problems.py::nsd_like`` (1,000 stimuli, the problem
the reference numbers were made on) prints, per region: the test veRSA of the
train-chosen layer under neuroreg's defaults and under the preset, the preset
with the nominal alpha grid (its effective grid without the x n_train), and how
often the two alpha rules (lowest leave-one-out error vs best leave-one-out r)
pick the same alpha per voxel.

    python experiments/repro_protocol_differences.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuroreg.brain import BrainData  # noqa: E402
from neuroreg.scoring import CONWELL_ALPHAS, RidgeGCV, versa  # noqa: E402
from neuroreg.scoring.protocols.conwell import _ridge_by_loo_r, _srp, conwell_projection_dim  # noqa: E402
from tests.fixtures.protocol_problems import nsd_like  # noqa: E402


def _best(table) -> dict:
    df = table.to_pandas()
    df = df[(df["metric"] == "versa") & (df["split"] == "test") & df["is_best"]]
    return df.groupby("region")["score"].mean().to_dict()


def main() -> None:
    feats, resp, ids, roi, subj = nsd_like()
    keep = roi != "hV4"
    brain = BrainData(resp[:, keep], ids, {"roi": roi[keep], "subject": subj[keep]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = _best(versa(feats, brain))
        preset = _best(versa(feats, brain, protocol="conwell"))
        nominal = _best(versa(feats, brain, protocol="conwell", alphas=CONWELL_ALPHAS / 500))
    print("test veRSA of the train-chosen layer, mean over subjects")
    print(f"{'region':<8}{'neuroreg':>10}{'conwell':>10}{'conwell, nominal alphas':>26}")
    for region in sorted(default):
        print(f"{region:<8}{default[region]:>10.4f}{preset[region]:>10.4f}{nominal[region]:>26.4f}")
    x = _srp(feats["layer3"], conwell_projection_dim(1000), 0)
    train, test = np.arange(0, 1000, 2), np.arange(1, 1000, 2)
    x = (x - x[train].mean(0)) / x[train].std(0)
    y = brain.responses
    alphas = CONWELL_ALPHAS * train.size
    _, _, by_r = _ridge_by_loo_r(x[train], y[train], x[test], alphas)
    by_err = RidgeGCV(alphas).fit(x[train], y[train]).alpha_
    print(f"layer3: the two alpha rules agree on {np.mean(by_r == by_err):.1%} of {y.shape[1]} voxels; "
          f"r-rule alpha larger on {np.mean(by_r > by_err):.1%}, smaller on {np.mean(by_r < by_err):.1%}")


if __name__ == "__main__":
    main()
