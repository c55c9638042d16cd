"""Fine-tuning moves the hierarchy (Yang et al., "Brain Decodes Deep Nets", seed 003), on simulated voxels.

The genuinely ImageNet-trained EfficientNet-Lite0 is fine-tuned (all layers) on a second domain (six
classes of generated patterns, ``PatternDataModule``). Voxels are simulated from the *starting* network
(``simulate_voxels``: each voxel reads one block at a cortical-map position, so the true layer is known
and ordered along the simulated ROIs V1 -> V2V3 -> OPA -> EBA). FactorTopy is fitted to the same voxels
with the start's and with the fine-tuned network's features: the hierarchy slope and the layer-choice
confidence before and after, next to the CKA drift of every block and the cRSA change on the real
bundled sets (``forgetting_report``, the same code ``neuroreg finetune`` runs).

    python experiments/reproduce_finetune_hierarchy.py --quick     # 300 images, 1 epoch: minutes on 2 cores
    python experiments/reproduce_finetune_hierarchy.py             # 900 images, 3 epochs

Writes ``results/reproduce/finetune_hierarchy/``: ``forgetting.{csv,json,md}``, its figures and
``hierarchy.{csv,md}`` (slope and confidence before / after / change).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

OUT = Path("results/reproduce/finetune_hierarchy")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 images, 1 epoch, short FactorTopy fits")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import lightning as L

    from neuroreg.results.report import markdown_table
    from neuroreg.finetune import FinetuneModule
    from neuroreg.data import PatternDataModule
    from neuroreg.finetune.forgetting import forgetting_report
    from neuroreg.finetune.forgetting_output import write_forgetting

    t0 = time.perf_counter()
    n_images, epochs, size = (300, 1, 64) if args.quick else (900, 3, 64)
    name = "efficientnet_lite0_imagenet"
    L.seed_everything(args.seed, verbose=False)
    data = PatternDataModule(n_images=n_images, batch_size=32, image_size=size, model_name=name, num_workers=0,
                             seed=args.seed)
    module = FinetuneModule(name, num_classes=data.num_classes, strategy="full", lr=1e-4, head_lr=1e-3,
                            scheduler="none")
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, default_root_dir=str(args.out))
    trainer.fit(module, datamodule=data)
    layers = {f"blocks.{i}": f"blocks.{i}" for i in range(7)}
    ft = {"max_epochs": 10 if args.quick else 30}
    table = forgetting_report(module.start_model(), module.backbone, task_data=data, brain="simulate",
                              layers=layers, factortopy=ft, image_size=size, batch_size=32, seed=args.seed,
                              model=name, dataset="patterns")
    paths = write_forgetting(table, args.out)
    df = table.to_pandas()
    hier = df[df["metric"].astype(str).str.startswith(("hierarchy", "factortopy", "confidence"))]
    if hier.empty:
        raise RuntimeError("the forgetting report has no FactorTopy rows; was brain='simulate' honoured?")
    keep = [c for c in ("metric", "stage", "region", "score") if c in hier]
    hier[keep].to_csv(args.out / "hierarchy.csv", index=False)
    (args.out / "hierarchy.md").write_text(markdown_table(hier[keep]) + "\n")
    drift = df[(df["metric"] == "cka_to_start")][["layer", "dataset", "score"]]
    print(markdown_table(hier[keep]))
    print(markdown_table(drift))
    print(f"wrote {args.out}/ ({', '.join(p.name for p in paths.values())}, hierarchy.csv, hierarchy.md) "
          f"in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
