"""Probe (issue 31, latent unlearning): how large a latent push must be to send clean clips to each class.

For each model, at the last hidden layer (``latent_depth`` 1.0, the Recommended-with-latent layer), the
share of clean clips (10 % of the training split, seed 0, clips not of the class) that the push of
:class:`core.defenses.latent.LatentAdversary` (3 normalised steps, per-clip bound ``radius * ||h||``)
sends to each class, per radius. A backdoor's target should be reached at a much smaller radius than the
other classes; the radius where it is reached tells what a per-model radius could be. From the
repository root, one torch thread:

    python docs/experiments/latent_radius_probe.py runs/grid_asc10/train_smallcnn_blend.safetensors ...
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.scan import truth  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.defenses.base import clean_subset  # noqa: E402
from core.defenses.latent import LatentAdversary  # noqa: E402
from core.features import clip_features  # noqa: E402
from core.models import split_front_end  # noqa: E402

RADII = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


def reach(body, feats, labels, target: int, radius: float) -> float:
    """Share of the clips not of ``target`` that a push of ``radius`` sends there."""
    adversary = LatentAdversary(body, 1.0, 1.0, radius, 3, target, torch.Generator().manual_seed(0))
    try:
        return adversary.reach(body, feats, labels, radius)
    finally:
        adversary.remove()


def main(paths: list[str]) -> None:
    torch.set_num_threads(1)
    data = None
    for path in paths:
        model, meta = load_checkpoint(path)
        model.eval()
        if data is None:
            data = load_dataset(
                "../shared/data/arabic_sc",
                vocab=list(meta["classes"]),
                sample_rate=meta["sample_rate"],
                num_samples=meta["front_end"]["num_samples"],
            )
        rows = clean_subset(data, 0.1, 0)
        front, body = split_front_end(model)
        feats = clip_features(front, data.waves[rows], 256)
        labels = data.labels[rows]
        info = truth(Path(path))
        print(path, info["architecture"], info["attack"], "target", info["target"], flush=True)
        for radius in RADII:
            shares = [reach(body, feats, labels, t, radius) for t in range(len(data.classes))]
            line = " ".join(f"{c}:{100 * s:.0f}" for c, s in zip(data.classes, shares))
            print(f"  radius {radius:<5} {line}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
