"""Probe (issue 31, round 20): how far the real trigger moves the last hidden layer, against the latent push's radius.

The Recommended's latent push trains the model to keep each clip's label under a push of at most ``radius *
||h||`` at the last hidden layer toward the suspected class. With ``latent_recalibrate`` the radius grows until the
push can no longer reach the class (2.0, the bisection's bound, on the ASC-10 SmallCNN PIBA model), yet the real
trigger still works on 19 % of the clips. For each checkpoint: on the validation clips not of the target, the real
trigger's shift at that layer relative to the clip's norm (median, 90th percentile), the ASR, and the share a push
of radius 0.3 / 1 / 2 sends to the target (3 steps, as in the repair). From the repository root, one torch thread:

    python docs/experiments/latent_recalibrate/latent_shift_probe.py OUT.json BACKDOORED.safetensors REPAIRED...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from core.attacks.base import attack_from_dict  # noqa: E402
from core.checkpoint import load_checkpoint, read_metadata  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.defenses.latent import LatentAdversary, latent_layer  # noqa: E402
from core.features import clip_features  # noqa: E402
from core.models import split_front_end  # noqa: E402

RADII = (0.3, 1.0, 2.0)


def hidden(body: torch.nn.Module, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The last hidden layer's output ``[n, d]`` and the logits for ``feats``."""
    _, module = latent_layer(body, 1.0)
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append(o.detach().flatten(1)))
    try:
        with torch.no_grad():
            logits = body(feats)
    finally:
        handle.remove()
    return seen[0], logits


def main(out: str, paths: list[str]) -> None:
    torch.set_num_threads(1)
    first = read_metadata(paths[0])
    attack = attack_from_dict(first["provenance"]["attack"], sample_rate=first["sample_rate"])
    target = attack.params.target
    data = load_dataset(
        "../shared/data/arabic_sc",
        vocab=list(first["classes"]),
        sample_rate=first["sample_rate"],
        num_samples=first["front_end"]["num_samples"],
    )
    idx = data.splits["validation"]
    idx = idx[data.labels[idx] != target]
    waves, labels = data.waves[idx], data.labels[idx]
    triggered = attack.apply_test(waves, data.sample_rate)
    rows = []
    for path in paths:
        model, _ = load_checkpoint(path)
        model.eval()
        front, body = split_front_end(model)
        clean_f, trig_f = clip_features(front, waves, 256), clip_features(front, triggered, 256)
        h, _ = hidden(body, clean_f)
        ht, logits = hidden(body, trig_f)
        shift = (ht - h).norm(dim=1) / h.norm(dim=1).clamp(min=1e-12)
        asr = float((logits.argmax(-1) == target).float().mean())
        adversary = LatentAdversary(body, 1.0, 1.0, 0.3, 3, target, torch.Generator().manual_seed(0))
        try:
            reach = {str(r): round(adversary.reach(body, clean_f, labels, r), 4) for r in RADII}
        finally:
            adversary.remove()
        row = {
            "checkpoint": path,
            "asr": round(asr, 4),
            "shift_median": round(float(shift.median()), 3),
            "shift_p90": round(float(shift.quantile(0.9)), 3),
            "shift_of_hits_median": round(float(shift[logits.argmax(-1) == target].median()), 3) if asr > 0 else None,
            "push_reach": reach,
        }
        print(row, flush=True)
        rows.append(row)
    Path(out).write_text(json.dumps({"command": " ".join(sys.argv), "target": target, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
