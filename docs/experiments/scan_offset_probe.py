"""Probe (issue 33, docs/experiments/scan_seeds_asc10.md): a 'spectral offset' domain for the scan.

Per class, one offset per feature coefficient added to every frame of the clean clips' features (a fixed
EQ, or a stationary added sound, as the front end sees it), in units of each coefficient's clean
standard deviation; its size is the offset's mean absolute value. The scan's own loop and schedule
(``core.scan.invert._optimise``), 200 steps, 8 clips a class a step, the scan's 10 % share at seed 0, one
torch thread. From the repository root:

    python docs/experiments/scan_offset_probe.py runs/grid_asc10/train_smallcnn_blend.safetensors ...
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.scan import truth  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.defenses.base import clean_subset  # noqa: E402
from core.events import NullObserver  # noqa: E402
from core.features import clip_features  # noqa: E402
from core.models import split_front_end  # noqa: E402
from core.scan import anomaly_index  # noqa: E402
from core.scan.invert import _optimise  # noqa: E402


def invert_offset(body, feats, labels, k, gen, steps=200, batch=8, success=0.9, lr=0.05, lam0=0.01) -> list[float]:
    """Per class, the smallest per-coefficient offset (mean |offset| in clean stds) that sends 90 % of a batch there."""
    _, c, t, f = feats.shape
    std = feats.std(dim=(0, 2), keepdim=True)[0]  # [C, 1, F]
    raw = torch.zeros((k, c, 1, f), requires_grad=True)

    def candidate(rows):
        x = feats[rows] + (std * raw).unsqueeze(1)
        return body(x.reshape(-1, c, t, f)).view(k, rows.shape[1], -1), raw.flatten(1).abs().mean(1)

    size, _, _ = _optimise("offset", k, steps, [raw], candidate, labels, batch, success, lam0, lr, gen, NullObserver())
    return size.tolist()


def main(paths: list[str]) -> None:
    torch.set_num_threads(1)
    data = None
    for path in paths:
        model, meta = load_checkpoint(path)
        for p in model.parameters():
            p.requires_grad_(False)
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
        started = time.time()
        sizes = invert_offset(body, feats, data.labels[rows], len(data.classes), torch.Generator().manual_seed(0))
        index = anomaly_index(sizes)
        top = max(range(len(index)), key=lambda i: index[i])
        print(
            path, truth(Path(path))["attack"], f"{time.time() - started:.0f} s", "top", data.classes[top],
            round(index[top], 2), "index", [round(a, 2) for a in index], "sizes", [round(s, 3) for s in sizes],
            flush=True,
        )  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
