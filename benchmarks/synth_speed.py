"""Speed of the espeak-ng synthetic corpus: raw synthesis per word and whole-corpus clips/s.

    python benchmarks/synth_speed.py [--clips-per-word 40] [--out benchmarks/results/synth_speed.json]

Rows: ``synthesize`` (one word through ctypes, trimmed; mean over many calls) and ``corpus``
(the whole pipeline: synthesis, resampling to 16 kHz, noise, WAV writing, lists) with 1 and
2 worker processes, measured one after the other in this run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.data.speech_commands import VOCABULARIES  # noqa: E402
from core.data.synth import Synthesizer, generate_corpus  # noqa: E402
from core.runtime import machine_info, write_json  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips-per-word", type=int, default=40)
    p.add_argument("--calls", type=int, default=300, help="raw synthesis calls to time")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "synth_speed.json"))
    args = p.parse_args()
    words = VOCABULARIES["scd10"]
    synth = Synthesizer()
    synth.synthesize("yes")  # warm-up: library load and voice files
    started = time.perf_counter()
    samples = 0
    for i in range(args.calls):
        wave, rate = synth.synthesize(words[i % len(words)], pitch=30 + i % 40, seed=i)
        samples += wave.size
    raw_seconds = time.perf_counter() - started
    rows = [{
        "what": "synthesize", "calls": args.calls, "seconds": round(raw_seconds, 4),
        "ms_per_word": round(1000 * raw_seconds / args.calls, 3),
        "audio_seconds_per_second": round(samples / rate / raw_seconds, 1),
    }]
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            summary = generate_corpus(Path(tmp) / "corpus", "scd10", clips_per_word=args.clips_per_word, seed=0,
                                      workers=workers, progress=False)
            seconds = time.perf_counter() - started
        rows.append({"what": "corpus", "vocab": "scd10", "workers": workers, "clips": summary.clips,
                     "seconds": round(seconds, 3), "clips_per_second": round(summary.clips / seconds, 1)})
    write_json(args.out, {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
                          "machine": machine_info(), "rows": rows})
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
