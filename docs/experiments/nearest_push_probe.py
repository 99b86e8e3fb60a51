"""Where a latent push toward a scan's first two classes lands, before any repair (unlearn_top_asc10.md).

For each (model, scan report): the pooled index's first two classes; pushes (fc1, one per clip of the 10 %
clean share, seed 0) calibrated to reach 20 % of the clips, toward the nearest of the two, drawn between
them, and toward each alone; prints the calibrated radius and the classes the pushed clips landed in.

    python docs/experiments/nearest_push_probe.py   # reads runs/ (the models and scans of the notes)
"""

from __future__ import annotations

import json

import torch

from core.checkpoint import load_checkpoint
from core.data import load_dataset
from core.defenses.base import clean_subset, clip_features
from core.defenses.latent import LatentAdversary
from core.models import split_front_end
from core.scan import ScanResult

CASES = [
    ("runs/val_s6/train_smallcnn_blend.safetensors", "runs/scan/asc10_val_val_s6_train_smallcnn_blend.json"),
    ("runs/val_s8/train_smallcnn_blend.safetensors", "runs/scan/asc10_val_val_s8_train_smallcnn_blend.json"),
    ("runs/val_s7/train_smallcnn_blend.safetensors", "runs/scan/asc10_val_val_s7_train_smallcnn_blend.json"),
    ("runs/val_s7/train_smallcnn_jingleback.safetensors", "runs/scan/asc10_val_val_s7_train_smallcnn_jingleback.json"),
    ("runs/grid_asc10_h200/train_smallcnn_blend.safetensors", "runs/grid_asc10_h200/scan_smallcnn_blend_seed0.json"),
]


def main() -> None:
    torch.set_num_threads(1)
    data = load_dataset("../shared/data/arabic_sc", vocab="asc10")
    rows = clean_subset(data, 0.1, 0)
    for model_path, scan_path in CASES:
        model, _ = load_checkpoint(model_path)
        model.eval()
        found = ScanResult.from_report(json.loads(open(scan_path).read()))
        pooled = found.pooled
        top2 = sorted(range(len(pooled)), key=lambda i: (-pooled[i], i))[:2]
        front, body = split_front_end(model)
        with torch.no_grad():
            x = clip_features(front, data.waves[rows], 64)
        y = data.labels[rows]
        out = {}
        for mode, target, nearest in (
            ("nearest", top2, True),
            ("draw", top2, False),
            ("first", top2[0], False),
            ("second", top2[1], False),
        ):
            push = LatentAdversary(body, 1.0, 1.0, 0.5, 3, target, torch.Generator().manual_seed(0), nearest=nearest)
            radius = push.calibrate(body, x, y, 0.2)
            push.perturb(body, x, y)
            landed = {data.classes[c]: n for c, n in sorted(push.landed.items())}
            out[mode] = {"radius": round(radius, 3), "landed": landed, "pushed": push.pushed}
            push.remove()
        print(json.dumps({"model": model_path, "top2": [data.classes[c] for c in top2], **out}), flush=True)


if __name__ == "__main__":
    main()
