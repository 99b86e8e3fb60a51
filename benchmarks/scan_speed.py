"""How fast a scan runs, and that its speed paths find what the plain one does (issue 33's 5-minute target).

    python benchmarks/scan_speed.py --data ../shared/data/arabic_sc --vocab asc10 \\
        --models runs/speed_asc10/train_resnet_badnets.safetensors [--models ...] \\
        [--models-made-by 'python -m core.grid ... --work runs/speed_asc10'] \\
        [--variants plain,channels_last,default] [--threads auto] [--steps 200] \\
        --out benchmarks/results/scan_speed.json

Each checkpoint is scanned once per variant, the variants one after another on the same loaded clips, by
:func:`core.scan.scan` as ``python -m core.scan`` runs it (the checkpoint and the data loaded as it loads
them, its thread setting, the allocator every ``core`` import sets; the report writing left out). Variants:

- ``plain``: the scan as it was before 2026-12-05: the model's own layout (contiguous), its BatchNorms run;
- ``channels_last``: the conv weights in channels_last, the BatchNorms run;
- ``default``: today's :class:`core.scan.ScanConfig` (``memory_format=auto``: channels_last on a CPU; the
  BatchNorms folded into the convolutions, :func:`core.models.batchnorm.fold_batchnorm`);
- ``bf16``: the default with ``amp=bf16`` (bf16 autocast for the searches' passes; opt-in).

Per scan: its seconds (``ScanResult.seconds``, the product's own clock), the verdict, the suspected target,
the pooled anomaly index per class and each domain's sizes; per variant against the first listed (the
reference): the speed-up, whether the verdict and the class pointed at agree, and the largest change of a
pooled index and of a log size. The layouts round differently, so 200 optimisation steps end in slightly
different places: the agreement is measured, not assumed. Resumable: rows already in ``--out`` for the same
checkpoint, variant, steps and threads are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import this_command  # noqa: E402

VARIANTS = {
    "plain": {"memory_format": "contiguous", "fold_batchnorm": False},
    "channels_last": {"memory_format": "channels_last", "fold_batchnorm": False},
    "default": {},
    "bf16": {"amp": "bf16"},
}


def _key(row: dict[str, Any]) -> tuple:
    return row["model"], row["variant"], row["steps"], row["threads"]


def agreement(row: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """How ``row``'s scan compares with the reference variant's scan of the same checkpoint."""
    pooled = max(abs(a - b) for a, b in zip(row["pooled"], ref["pooled"]))
    logs = [
        abs(math.log(a) - math.log(b))
        for domain, sizes in row["sizes"].items()
        for a, b in zip(sizes, ref["sizes"][domain])
        if a is not None and b is not None and a > 0 and b > 0
    ]
    return {
        "speedup": round(ref["seconds"] / row["seconds"], 3),
        "same_verdict": row["backdoored"] == ref["backdoored"],
        "same_class_pointed_at": row["pointed_at"] == ref["pointed_at"],
        "max_pooled_index_change": round(pooled, 3),
        "max_log_size_change": round(max(logs, default=0.0), 4),
        "median_log_size_change": round(sorted(logs)[len(logs) // 2], 4) if logs else 0.0,
    }


def summarise(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    """Per architecture and variant: seconds per scan and the mean speed-up over the reference; how many
    scans agree with it."""
    out: dict[str, Any] = {}
    for arch in sorted({r["architecture"] for r in rows}):
        mine = [r for r in rows if r["architecture"] == arch]
        out[arch] = {}
        for variant in variants:
            these = [r for r in mine if r["variant"] == variant]
            if not these:
                continue
            entry: dict[str, Any] = {
                "scans": len(these),
                "seconds_per_scan": round(sum(r["seconds"] for r in these) / len(these), 1),
            }
            compared = [r["against_reference"] for r in these if "against_reference" in r]
            if compared:
                entry["mean_speedup"] = round(sum(c["speedup"] for c in compared) / len(compared), 3)
                entry["same_verdict"] = sum(c["same_verdict"] for c in compared)
                entry["same_class_pointed_at"] = sum(c["same_class_pointed_at"] for c in compared)
                entry["max_pooled_index_change"] = max(c["max_pooled_index_change"] for c in compared)
            out[arch][variant] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--vocab", default=None)
    p.add_argument("--models", action="append", required=True, help="checkpoint to scan (repeatable)")
    p.add_argument("--variants", default="plain,channels_last,default", help="comma list; the first is the reference")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps per domain (default: the scan's)")
    p.add_argument("--threads", default="auto", help="torch threads, as python -m core.scan --threads")
    p.add_argument("--out", default="benchmarks/results/scan_speed.json")
    p.add_argument("--models-made-by", default=None, help="how the checkpoints were made (recorded per checkpoint)")
    args = p.parse_args(argv)

    from core.checkpoint import load_checkpoint
    from core.data import load_dataset
    from core.runtime import machine_info, set_threads, write_json
    from core.scan import ScanConfig, scan

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    threads = set_threads(args.threads)
    steps = args.steps or ScanConfig().steps
    out = Path(args.out)
    earlier = json.loads(out.read_text()) if out.is_file() else {}
    rows: list[dict[str, Any]] = list(earlier.get("rows", []))
    done = {_key(r): r for r in rows}
    for path in args.models:
        model, meta = load_checkpoint(Path(path))
        data = load_dataset(
            args.data, vocab=args.vocab or list(meta["classes"]), sample_rate=meta["sample_rate"],
            num_samples=meta["front_end"]["num_samples"],
        )  # fmt: skip
        reference = None
        for variant in variants:
            key = (path, variant, steps, threads)
            if key in done:
                row = done[key]
            else:
                config = ScanConfig(steps=steps, **VARIANTS[variant])
                result = scan(model, data, config)
                row = {
                    "model": path,
                    "architecture": meta["architecture"],
                    "variant": variant,
                    "steps": steps,
                    "threads": threads,
                    "config": {k: v for k, v in dataclasses.asdict(config).items() if k in {*VARIANTS["plain"], "amp"}},
                    "seconds": result.seconds,
                    "backdoored": result.backdoored,
                    "suspected_target": result.suspected_target,
                    "pointed_at": result.classes[result.most_anomalous()],
                    "confidence": result.confidence,
                    "pooled": result.pooled,
                    "sizes": {d: r["sizes"] for d, r in result.domains.items()},
                }
                rows.append(row)
                done[key] = row
            if reference is None:
                reference = row
            else:
                row["against_reference"] = agreement(row, reference)
            print(f"{Path(path).name} {variant}: {row['seconds']:.1f} s, points at {row['pointed_at']}", flush=True)
            present = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
            commands = {**earlier.get("commands", {}), Path(path).name: this_command()}
            made_by = {
                **earlier.get("models_made_by", {}),
                **({Path(path).name: args.models_made_by} if args.models_made_by else {}),
            }
            write_json(
                out,
                {
                    "command": " ; ".join(commands.values()),
                    "commands": commands,
                    "models_made_by": made_by,
                    "machine": machine_info(),
                    "variants": {v: VARIANTS[v] or "ScanConfig() defaults" for v in present},
                    "reference": variants[0],
                    "summary": summarise(rows, present),
                    "rows": rows,
                },
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
