"""Probe (issue 33): how small is each attack's real trigger in the scan's mix domain, beside the sounds the
scan found for every class? The scan's verdict rests on one premise: a backdoor makes its target reachable by
a much smaller change than any class is naturally. This measures the premise where the scan missed (DABA) and
where it worked (Blend, BadNets), on the models of the test table.

For every backdoored model, the real trigger is taken as a sound: ``attack.apply_test`` of a silent clip (the
additive part of the trigger at the test loudness; for Blend ``alpha * s``). Its *mix size* is measured exactly
as the scan measures its own sounds (:func:`core.scan.invert._mix_weight`: the smallest weight, bisected on a
log scale, at which the sound, scaled to a peak of 1 and mixed in as ``(1 - a) x + a s`` at a random alignment,
sends 90 % of 64 clean clips a class of the other classes to the target), and once more with the trigger where
the attack puts it (no shift). The same for the clean model of the same architecture (is the route natural?).
Beside them: the scan's own mix sizes per class from the kept scan of that model (the Recommended's scan). Reads
each checkpoint's attack record (a probe, not the product). From the repository root, one torch thread:

    python docs/experiments/trigger_size_probe.py --data ../shared/data/arabic_sc \\
        --models runs/grid_asc10_h200 --scans runs/r9_test runs/r9_test_resnet \\
        --attacks daba,blend,badnets --out docs/experiments/trigger_size_probe.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.common import this_command  # noqa: E402
from core.attacks.base import attack_from_dict  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.data.speech_commands import load_speech_commands  # noqa: E402
from core.defenses.base import clean_subset  # noqa: E402
from core.events import NullObserver  # noqa: E402
from core.runtime import machine_info  # noqa: E402
from core.scan.invert import Search, _mix_weight  # noqa: E402


@torch.no_grad()
def size_in_place(
    model: torch.nn.Module,
    waves: torch.Tensor,
    labels: torch.Tensor,
    sound: torch.Tensor,
    target: int,
    clips: int,
    success: float,
    gen: torch.Generator,
    halvings: int = 8,
) -> float:
    """The smallest weight at which ``sound`` ``[S]`` (peak 1), mixed in without a shift, sends ``success`` of
    ``clips`` clean clips of the other classes to ``target``; 1 + the shortfall where weight 1 does not."""
    others = (labels != target).nonzero().flatten()
    rows = others[torch.randint(others.numel(), (clips,), generator=gen)]
    x = waves[rows]

    def share(w: float) -> float:
        return float((model((1 - w) * x + w * sound).argmax(-1) == target).float().mean())

    top = share(1.0)
    if top < success:
        return 1 + success - top
    lo, hi = math.log(1e-4), 0.0
    for _ in range(halvings):
        mid = (lo + hi) / 2
        if share(math.exp(mid)) >= success:
            hi = mid
        else:
            lo = mid
    return math.exp(hi)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--vocab", default="asc10")
    p.add_argument("--models", required=True, help="folder with train_<arch>_<attack>.safetensors and _clean")
    p.add_argument("--scans", nargs="+", required=True, help="folders with scan_<arch>_<attack>_seed0.json")
    p.add_argument("--archs", default="smallcnn,resnet")
    p.add_argument("--attacks", default="daba,blend,badnets")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    data = None
    rows = []
    for arch in args.archs.split(","):
        clean_model, _ = load_checkpoint(Path(args.models) / f"train_{arch}_clean.safetensors")
        for name in args.attacks.split(","):
            path = Path(args.models) / f"train_{arch}_{name}.safetensors"
            if not path.exists():
                continue
            model, meta = load_checkpoint(path)
            if data is None:
                data = load_speech_commands(args.data, args.vocab, sample_rate=meta["sample_rate"])
            attack = attack_from_dict(meta["provenance"]["attack"], meta["sample_rate"])
            if attack.domain != "waveform":
                continue
            target = (
                data.classes.index(attack.params.target)
                if isinstance(attack.params.target, str)
                else int(attack.params.target)
            )
            share = clean_subset(data, 0.1, args.seed)
            waves, labels = data.waves.index_select(0, share), data.labels.index_select(0, share)
            sound = attack.apply_test(torch.zeros(1, waves.shape[1]), data.sample_rate)[0]
            peak = float(sound.abs().max())
            if peak < 1e-6:  # a trigger that adds nothing to silence (a pitch shift, an effect): no sound to mix
                continue
            rms = float(sound.pow(2).mean().sqrt())
            unit = sound / peak
            row = {
                "architecture": arch,
                "attack": name,
                "target": data.classes[target],
                "trigger_peak": round(peak, 4),
                "trigger_rms_dbfs": round(20 * math.log10(max(rms, 1e-12)), 1),
            }
            for label, m in (("backdoored", model), ("clean", clean_model)):
                m.eval()
                gen = torch.Generator().manual_seed(args.seed)
                search = Search(labels, len(data.classes), 0, 0, 0.9, gen, NullObserver())
                sounds = unit.view(1, -1).expand(len(data.classes), -1).contiguous()
                size, _ = _mix_weight(m, waves, search, sounds, args.clips)
                row[f"{label}_mix_size_shifted"] = round(float(size[target]), 4)
                row[f"{label}_mix_size_in_place"] = round(
                    size_in_place(m, waves, labels, unit, target, args.clips, 0.9, torch.Generator().manual_seed(1)), 4
                )
            for folder in args.scans:
                scan_path = Path(folder) / f"scan_{arch}_{name}_seed0.json"
                if scan_path.exists():
                    scan = json.loads(scan_path.read_text())
                    sizes = scan["domains"]["mix"]["sizes"]
                    order = sorted(range(len(sizes)), key=sizes.__getitem__)
                    row["scan"] = str(scan_path)
                    row["scan_mix_sizes"] = {c: round(s, 4) for c, s in zip(scan["classes"], sizes)}
                    row["scan_mix_rank_of_target"] = order.index(target) + 1
                    row["scan_mix_median"] = round(sorted(sizes)[len(sizes) // 2], 4)
                    row["scan_mix_top"] = scan["classes"][order[0]]
                    row["scan_flagged"] = scan["backdoored"]
                    break
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = {"command": this_command(), "machine": machine_info(), "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
