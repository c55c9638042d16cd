"""``neuroreg evaluate``: the full scorecard (accuracy, attacks, corruptions, brain) of one model."""

from __future__ import annotations

import argparse
from pathlib import Path

from neuroreg.commands._model_args import add_model_arguments, build_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--task-data", type=Path, default=None,
                        help="labelled images in ImageFolder layout (<root>/<class>/*.jpg); class order = sorted "
                             "folder names, which must match the model's output order")
    parser.add_argument("--image-size", type=int, default=None, help="input size (default: the model's)")
    parser.add_argument("--max-images", type=int, default=None, help="evaluate on the first N task images (seeded pick)")
    parser.add_argument("--attacks", nargs="*", default=["pgd"], help="attacks (fgsm pgd eotpgd apgd-ce apgd-dlr square autoattack)")
    parser.add_argument("--eps", nargs="*", type=float, default=None, help="budgets (default: the preset grid)")
    parser.add_argument("--norm", default="Linf", choices=["Linf", "L2"])
    parser.add_argument("--corruptions", nargs="*", default=None, help="'imagenet-c' or corruption names")
    parser.add_argument("--severities", nargs="*", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--brain", nargs="*", default=["kriegeskorte92"], help="bundled neural sets")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/evaluate/<model>)")


def _task_dataset(root: Path, image_size: int, max_images: int | None, seed: int):
    import torch
    from torchvision import datasets, transforms

    if not root.is_dir():
        raise FileNotFoundError(f"--task-data folder does not exist: {root}")
    tf = transforms.Compose([transforms.Resize(image_size), transforms.CenterCrop(image_size), transforms.ToTensor()])
    ds = datasets.ImageFolder(str(root), transform=tf)
    if max_images is not None and max_images < len(ds):
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:max_images]
        ds = torch.utils.data.Subset(ds, idx.tolist())
    return ds


def run(args: argparse.Namespace) -> int:
    from neuroreg.evaluate import evaluate, preprocessing_of

    model = build_model(args)
    size = args.image_size or preprocessing_of(model)["input_size"][-1]
    task = _task_dataset(args.task_data, size, args.max_images, args.seed) if args.task_data else None
    card = evaluate(model, task, brain_sets=args.brain, attacks=args.attacks, eps=args.eps, norm=args.norm,
                    corruptions=args.corruptions, severities=args.severities, model_name=args.model,
                    device=args.device, batch_size=args.batch_size, seed=args.seed)
    out = args.out or Path("results") / "evaluate" / args.model
    paths = card.save(out)
    for key, value in card.summary().items():
        print(f"{key:<60} {value:.4f}")
    print(f"wrote {paths['html']}")
    return 0
