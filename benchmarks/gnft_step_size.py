"""How much larger is GN-FT's gradient than plain fine-tuning's on a converged backdoored model?

    python benchmarks/gnft_step_size.py --data DIR --model M1.safetensors [--model M2 ...]
        [--r 0.05] [--alpha 0.7] [--clean-ratio 0.05] [--batchnorm train,frozen]
        [--out benchmarks/results/gnft_step_size]

For each model, on its clean share of the training split (one full batch, train mode, as the
first step of a defense): the clean loss, ‖g1‖ (the fine-tuning gradient) and ‖g‖ of GN-FT,
g = (1 − α)·g1 + α·g2, with the perturbation normalised per tensor (the authors' code) and
globally (GNP). With SGD the first step's length is lr·‖g‖, so the ratio ‖g‖/‖g1‖ says which
learning rate makes GN-FT step as far as fine-tuning: it explains why one lr cannot suit both.
It also gives the loss rise over the perturbation ε, L(θ + ε) − L(θ), beside a quadratic
model's, ε·(g1 + g2)/2: where they agree, g2 − g1 is the Hessian term the approximation
stands on, and a large rise is curvature (sharpness), not a perturbation out of range.
``--batchnorm train,frozen`` measures each model in both BatchNorm modes of the defenses'
``batchnorm`` option (frozen: running statistics normalise, so nothing renormalises the
perturbed weights).
Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import this_command  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.defenses.base import clean_subset, train_mode  # noqa: E402
from core.defenses.gnft import GNFTStep, total_norm  # noqa: E402
from core.features import clip_features  # noqa: E402
from core.models import split_front_end  # noqa: E402
from core.runtime import machine_info, resolve_device, write_json  # noqa: E402


def measure(
    path: str,
    data_dir: str,
    vocab: str | None,
    r: float,
    alpha: float,
    ratio: float,
    device: torch.device,
    batchnorm: str = "train",
) -> dict:
    """First-step gradient norms of FT and GN-FT (both norms) for one checkpoint."""
    model, meta = load_checkpoint(path)
    data = load_dataset(
        data_dir, vocab=vocab, sample_rate=meta["sample_rate"], num_samples=meta["front_end"]["num_samples"]
    )
    rows = clean_subset(data, ratio, 0)
    front, body = split_front_end(model.to(device))
    x = clip_features(front, data.waves[rows].to(device), 256)
    y = data.labels[rows].to(device)
    row = {
        "model": path,
        "architecture": meta["architecture"],
        "clean_clips": int(rows.numel()),
        "r": r,
        "alpha": alpha,
        "batchnorm": batchnorm,
    }
    for norm in ("per-tensor", "global"):
        work = train_mode(copy.deepcopy(body), batchnorm)
        step = GNFTStep(work, alpha, r, norm=norm)
        torch.manual_seed(0)  # the same dropout masks in every pass
        loss, g1 = step(work, x, y)
        row["clean_loss"], row["g1_norm"] = loss, total_norm(g1)
        row[f"perturbed_loss_{norm}"] = float(step.perturbed_loss)
        row[f"g_norm_{norm}"] = total_norm(p.grad for p in step.params)
        row[f"ratio_{norm}"] = row[f"g_norm_{norm}"] / max(row["g1_norm"], 1e-12)
        # the loss rise over ε against a quadratic model's, ε·(g1 + g2)/2 (exact for a quadratic loss):
        # near 1, g2 − g1 is the Hessian term GN-FT's approximation stands on; α = 1 leaves g2 in .grad
        sam = train_mode(copy.deepcopy(body), batchnorm)
        sam_step = GNFTStep(sam, 1.0, r, norm=norm)
        torch.manual_seed(0)
        sam_step(sam, x, y)
        scale = (
            [r / max(total_norm(g1), 1e-12)] * len(g1)
            if norm == "global"
            else [None if g is None else r / max(float(g.norm()), 1e-12) for g in g1]
        )
        quadratic = sum(
            float((s * g * (g + p.grad)).sum()) / 2
            for g, s, p in zip(g1, scale, sam_step.params)
            if g is not None and p.grad is not None
        )
        row[f"rise_{norm}"] = row[f"perturbed_loss_{norm}"] - loss
        row[f"rise_quadratic_{norm}"] = quadratic
    plain = train_mode(copy.deepcopy(body), batchnorm)
    torch.manual_seed(0)
    F.cross_entropy(plain(x), y).backward()
    assert abs(total_norm(p.grad for p in plain.parameters()) - row["g1_norm"]) <= 1e-4 * max(1.0, row["g1_norm"])
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--vocab")
    p.add_argument("--model", action="append", required=True)
    p.add_argument("--r", type=float, default=0.05)
    p.add_argument("--alpha", type=float, default=0.7)
    p.add_argument("--clean-ratio", type=float, default=0.05)
    p.add_argument("--batchnorm", default="train", help="comma list of BatchNorm modes: train, frozen (default train)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/gnft_step_size"))
    args = p.parse_args()
    torch.manual_seed(0)
    device = resolve_device(args.device)
    modes = args.batchnorm.split(",")
    if not set(modes) <= {"train", "frozen"}:
        p.error(f"--batchnorm takes train and/or frozen, got {args.batchnorm!r}")
    rows = [
        measure(m, args.data, args.vocab, args.r, args.alpha, args.clean_ratio, device, mode)
        for m in args.model
        for mode in modes
    ]
    write_json(f"{args.out}.json", {"command": this_command(), "machine": machine_info(device), "rows": rows})
    lines = [
        "# GN-FT first-step gradient against fine-tuning's",
        "",
        f"Command: `{this_command()}`",
        "",
        f"r = {args.r}, alpha = {args.alpha}, clean share {args.clean_ratio}.",
        "",
        "Loss rise: L(θ + ε) − L(θ), and in brackets a quadratic model's, ε·(g1 + g2)/2.",
        "",
        "| model | BatchNorm | clean loss | ‖g1‖ (FT) | ‖g‖ GN-FT per-tensor | ratio | loss rise | "
        "‖g‖ GN-FT global | ratio | loss rise |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {Path(r['model']).stem} | {r['batchnorm']} | {r['clean_loss']:.4f} | {r['g1_norm']:.3f} | "
            f"{r['g_norm_per-tensor']:.2f} | {r['ratio_per-tensor']:.1f}x | "
            f"{r['rise_per-tensor']:.3f} ({r['rise_quadratic_per-tensor']:.3f}) | "
            f"{r['g_norm_global']:.2f} | {r['ratio_global']:.1f}x | "
            f"{r['rise_global']:.3f} ({r['rise_quadratic_global']:.3f}) |"
        )
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
