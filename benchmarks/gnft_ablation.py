"""GN-FT against plain fine-tuning as the clean share grows (the paper's Table IV trend).

    python benchmarks/gnft_ablation.py --model BACKDOORED.safetensors --data DIR [--vocab scd10]
        [--ratios 0.02,0.05,0.1,0.2] [--defenses gnft,ft] [--epochs 300] [--device auto]
        [--set gnft.alpha=0.7 ...] [--out benchmarks/results/gnft_ablation]

For each clean share and defense: CA, ASR and RA on the test split after the defense (the
attack is the checkpoint's own record), wall time. Every run is a file in ``<out>_work`` so the
script resumes. Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import this_command  # noqa: E402
from core.attacks import attack_from_dict  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.defenses import DEFENSES  # noqa: E402
from core.evaluation import evaluate  # noqa: E402
from core.repair import repair  # noqa: E402
from core.runtime import machine_info, resolve_device, write_json  # noqa: E402

KEYS = ("clean_accuracy", "attack_success_rate", "robust_accuracy")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--vocab")
    p.add_argument("--ratios", default="0.02,0.05,0.1,0.2")
    p.add_argument("--defenses", default="gnft,ft")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--set", action="append", default=[], metavar="DEFENSE.KEY=VALUE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gnft_ablation"))
    args = p.parse_args()
    device = resolve_device(args.device)
    model, meta = load_checkpoint(args.model)
    model = model.to(device)
    data = load_dataset(
        args.data,
        vocab=args.vocab or meta["classes"],
        sample_rate=meta["sample_rate"],
        num_samples=meta["front_end"]["num_samples"],
    ).to(device)
    attack = attack_from_dict(meta["provenance"]["attack"], sample_rate=meta["sample_rate"])
    cache: dict = {}
    before = evaluate(model, data, "test", attack, cache=cache)
    overrides: dict[str, dict[str, str]] = {}
    for item in args.set:
        scope, _, pair = item.partition(".")
        key, _, value = pair.partition("=")
        overrides.setdefault(scope, {})[key] = value
    out = Path(args.out)
    work = out.with_name(out.name + "_work")
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for ratio in [float(r) for r in args.ratios.split(",")]:
        for name in args.defenses.split(","):
            cell = work / f"{name}_{ratio:g}.json"
            if not cell.is_file():
                cls = DEFENSES[name]
                defaults = cls.Config()
                values = {k: type(getattr(defaults, k))(v) for k, v in overrides.get(name, {}).items()}
                config = cls.Config(
                    **{**values, "clean_ratio": ratio, "epochs": args.epochs, "seed": args.seed, "device": args.device}
                )
                result = repair(model, data, cls(config), attack=attack)
                write_json(
                    cell,
                    {
                        "defense": name,
                        "clean_ratio": ratio,
                        **result.report(model=args.model),
                        **{k: result.after[k] for k in KEYS},
                    },
                )
            row = json.loads(cell.read_text())
            print({k: row[k] for k in ("defense", "clean_ratio", *KEYS, "seconds")}, flush=True)
            rows.append(row)
    write_json(
        out.with_name(out.name + ".json"),
        {
            "command": this_command(),
            "machine": machine_info(device),
            "model": args.model,
            "before": {k: before[k] for k in KEYS},
            "rows": rows,
        },
    )
    lines = [
        "# GN-FT vs fine-tuning by clean share",
        "",
        f"Backdoored model `{args.model}`: CA {100 * before['clean_accuracy']:.1f} %, "
        f"ASR {100 * before['attack_success_rate']:.1f} %. {args.epochs} epochs each.",
        "",
        "| clean share | clips | " + " | ".join(f"{d} CA / ASR" for d in args.defenses.split(",")) + " |",
        "|---|---|" + "---|" * len(args.defenses.split(",")),
    ]
    for ratio in sorted({r["clean_ratio"] for r in rows}):
        cells = {r["defense"]: r for r in rows if r["clean_ratio"] == ratio}
        clips = next(iter(cells.values()))["clean_clips"]
        lines.append(
            f"| {100 * ratio:g} % | {clips} | "
            + " | ".join(
                f"{100 * cells[d]['clean_accuracy']:.1f} / {100 * cells[d]['attack_success_rate']:.1f}"
                if d in cells
                else "-"
                for d in args.defenses.split(",")
            )
            + " |"
        )
    out.with_name(out.name + ".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
