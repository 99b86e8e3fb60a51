"""Does the paper's mechanism show on our data? Gradient norms by zone, and zone counts before/after GN-FT.

    python benchmarks/mechanism.py --case NAME DATA_DIR BACKDOORED.safetensors REPAIRED.safetensors [--case ...]
                                   [--layers L1,L2] [--vocab scd10] [--device auto]

Claim 1 (Figure 2): on clean data, backdoor- and hybrid-zone neurons have larger gradient norms
than clean-zone neurons -> ``backdoor_hybrid_over_clean_grad_norm`` > 1 on the backdoored model.
Claim 2 (Figure 4): after GN-FT fewer neurons sit in the backdoor and hybrid zones.
Each case is analysed with core.analyze's engine functions (exact CLC/BLC on the test split,
L2 gradient norms on the 5 % clean share), with CA/ASR of both models on the test split. Writes
benchmarks/results/mechanism.json and .md, whichever way the claims come out; rows of other
cases already in the JSON are kept (each row carries the command that made it), so cases can be
added one run at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import this_command  # noqa: E402
from core.analysis.model import analyse_model, default_layers  # noqa: E402
from core.attacks import attack_from_dict  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.evaluation import evaluate  # noqa: E402
from core.runtime import machine_info, resolve_device, write_json  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--case", nargs=4, action="append", required=True, metavar=("NAME", "DATA", "BACKDOORED", "REPAIRED")
    )
    p.add_argument("--layers", help="comma list (default: the 3 deepest before the output)")
    p.add_argument("--vocab")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mechanism"))
    args = p.parse_args()
    device = resolve_device(args.device)
    rows = []
    for name, data_dir, before_path, after_path in args.case:
        before, meta = load_checkpoint(before_path)
        after, _ = load_checkpoint(after_path)
        data = load_dataset(
            data_dir,
            vocab=args.vocab or meta["classes"],
            sample_rate=meta["sample_rate"],
            num_samples=meta["front_end"]["num_samples"],
        ).to(device)
        attack = attack_from_dict(meta["provenance"]["attack"], sample_rate=meta["sample_rate"])
        layers = args.layers.split(",") if args.layers else default_layers(before)
        a = analyse_model(before.to(device), data, attack, layers)
        b = analyse_model(after.to(device), data, attack, layers)
        sa, sb = a["summary"], b["summary"]
        cache: dict = {}
        ma, mb = (evaluate(m.eval(), data, "test", attack, cache=cache) for m in (before, after))
        row = {
            "case": name,
            "command": this_command(),
            "data": data_dir,
            "backdoored": before_path,
            "repaired": after_path,
            "attack": attack.name,
            "layers": layers,
            "clean_accuracy_before": ma["clean_accuracy"],
            "attack_success_rate_before": ma["attack_success_rate"],
            "clean_accuracy_after": mb["clean_accuracy"],
            "attack_success_rate_after": mb["attack_success_rate"],
            "backdoor_hybrid_over_clean_grad_norm_before": sa["backdoor_hybrid_over_clean_grad_norm"],
            "backdoor_hybrid_over_clean_grad_norm_after": sb["backdoor_hybrid_over_clean_grad_norm"],
            "mean_grad_norm_by_zone_before": sa["mean_grad_norm_by_zone"],
            "zone_counts_before": sa["zone_counts"],
            "zone_counts_after": sb["zone_counts"],
            "first_order_rank_correlation": {
                name: a["layers"][name].get("first_order_rank_correlation") for name in layers
            },
        }
        ratio = row["backdoor_hybrid_over_clean_grad_norm_before"]
        row["claim_grad_norm_holds"] = ratio is not None and ratio > 1
        bh = lambda c: c["backdoor"] + c["hybrid"]  # noqa: E731
        row["claim_fewer_backdoor_hybrid_after_holds"] = bh(sb["zone_counts"]) < bh(sa["zone_counts"])
        print(row, flush=True)
        rows.append(row)
    out = Path(args.out)
    path = out.with_name(out.name + ".json")
    new_cases = {r["case"] for r in rows}
    kept = [r for r in json.loads(path.read_text())["rows"] if r["case"] not in new_cases] if path.is_file() else []
    rows = kept + rows
    write_json(path, {"command": this_command(), "machine": machine_info(device), "rows": rows})
    lines = [
        "# Mechanism check (paper Figures 2 and 4)",
        "",
        "| case | attack | CA / ASR backdoored | CA / ASR after GN-FT | grad norm (backdoor+hybrid) / clean, "
        "backdoored | zones before (C/B/H/R) | zones after GN-FT (C/B/H/R) | claim 1 | claim 2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["backdoor_hybrid_over_clean_grad_norm_before"]

        def fmt(c: dict) -> str:
            return "/".join(str(c[z]) for z in ("clean", "backdoor", "hybrid", "redundant"))

        def ca_asr(w: str, r: dict = r) -> str:
            if f"clean_accuracy_{w}" not in r:
                return ""
            return f"{100 * r[f'clean_accuracy_{w}']:.1f} / {100 * r[f'attack_success_rate_{w}']:.1f}"

        lines.append(
            f"| {r['case']} | {r['attack']} | {ca_asr('before')} | {ca_asr('after')} | "
            f"{'-' if ratio is None else f'{ratio:.2f}'} | "
            f"{fmt(r['zone_counts_before'])} | {fmt(r['zone_counts_after'])} | "
            f"{'holds' if r['claim_grad_norm_holds'] else 'does not hold'} | "
            f"{'holds' if r['claim_fewer_backdoor_hybrid_after_holds'] else 'does not hold'} |"
        )
    out.with_name(out.name + ".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
