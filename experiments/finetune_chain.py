"""A chain of fine-tuning runs and what each later run does to the earlier tasks (backward transfer).

ImageNet's EfficientNet-Lite0 (``efficientnet_lite0_imagenet``) is fine-tuned with
``neuroreg finetune`` on the generated pattern domain (task A: all six families),
then a second run starts from A's checkpoint and learns task B (three of the
families, other draws, a new 3-way head). B's forgetting report follows the
chain back through A's run folder and scores A's test split with A's head at the
end of A and after B, and the chain's backward transfer. Both runs are ordinary
CLI runs: their folders hold ``splits.csv``, checkpoints and the full
``forgetting.csv/.md`` with figures.

    python experiments/finetune_chain.py --out runs/chain                     # about a minute on 2 CPU cores
    python experiments/finetune_chain.py --out runs/chain --epochs 5 --image-size 96
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "finetune_tiny.yaml"
MODEL = "efficientnet_lite0_imagenet"


def finetune(root: Path, start: str, num_classes: int, seed: int, args: argparse.Namespace) -> Path:
    """One ``neuroreg finetune`` run on the pattern domain; returns its last checkpoint."""
    from neuroreg.cli.finetune import cli_main

    n_train = int(args.n_images * 0.7)
    steps = args.epochs * -(-n_train // args.batch_size)
    rc = cli_main(["--config", str(CONFIG), "--trainer.default_root_dir", str(root), "--model.start_from", start,
                   "--trainer.max_steps", str(steps), "--trainer.enable_progress_bar", "false",
                   "--trainer.enable_model_summary", "false",
                   "--model.lr", str(args.lr), "--model.head_lr", "1e-3", "--model.scheduler", "none",
                   "--data.init_args.model_name", MODEL, "--data.init_args.num_classes", str(num_classes),
                   "--data.init_args.seed", str(seed), "--data.init_args.n_images", str(args.n_images),
                   "--data.init_args.image_size", str(args.image_size),
                   "--data.init_args.batch_size", str(args.batch_size), "--scorecard.enabled", "false"])
    if rc != 0:
        raise SystemExit(f"neuroreg finetune failed in {root} (exit {rc})")
    return root / "checkpoints" / "last.ckpt"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/chain", help="folder for the two run folders a/ and b/")
    ap.add_argument("--n-images", type=int, default=600, help="generated images per task (70/10/20 split)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    args = ap.parse_args(argv)

    out = Path(args.out)
    ckpt_a = finetune(out / "a", MODEL, 6, 0, args)
    finetune(out / "b", str(ckpt_a), 3, 1, args)
    rows = pd.DataFrame(json.loads((out / "b" / "forgetting.json").read_text()))
    a_after = pd.DataFrame(json.loads((out / "a" / "forgetting.json").read_text()))
    keep = rows["metric"].isin(["task_accuracy", "balanced_accuracy", "finetuned_head_accuracy", "previous_task_accuracy",
                                "previous_task_balanced_accuracy", "backward_transfer"])
    table = rows[keep].pivot_table(index=["metric", "dataset"], columns="stage", values="score", aggfunc="first",
                                   sort=False)
    acc_a = a_after[(a_after["metric"] == "finetuned_head_accuracy") & (a_after["stage"] == "after")]["score"].iloc[0]
    print(f"task A at the end of run a: accuracy of the fine-tuned head {acc_a:.3f}")
    print("run b (task B, started from run a's checkpoint):")
    print(table.reindex(columns=[c for c in ("before", "after", "change") if c in table]).round(3).to_string())
    print(f"full reports: {out / 'a' / 'forgetting.md'}, {out / 'b' / 'forgetting.md'}; accuracy matrix: "
          f"{out / 'b' / 'forgetting_chain.csv'} and .png")


if __name__ == "__main__":
    main()
