"""How fast the espeak-ng corpus generator is: raw synthesis per word and whole-corpus clips/s.

    python benchmarks/synth_speed.py [--speakers 30] [--clips-per-speaker 1] [--repeats 200]

Writes benchmarks/results/synth_speed.json (command, machine, rows).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data.synth import VOCABULARIES, Synthesizer, generate_corpus  # noqa: E402
from core.runtime import machine_info, write_json  # noqa: E402


def time_raw_synthesis(repeats: int) -> list[dict]:
    """Milliseconds per espeak-ng call (state reset + voice + synthesis + trim), per variant kind."""
    synth = Synthesizer()
    words = VOCABULARIES["scd10"]
    rows = []
    for variant in ("m3", "f3", "adam"):  # plain formant, breath + echo, Klatt (speechPlayer)
        synth.synthesize("yes", "en-us", variant)  # warm the voice files
        seconds = []
        audio = 0.0
        for i in range(repeats):
            start = time.perf_counter()
            wave, rate = synth.synthesize(words[i % len(words)], "en-us", variant, seed=i)
            seconds.append(time.perf_counter() - start)
            audio += wave.size / rate
        rows.append(
            {
                "what": "synthesize",
                "variant": variant,
                "words": repeats,
                "ms_per_word_median": round(1000 * float(np.median(seconds)), 3),
                "ms_per_word_mean": round(1000 * float(np.mean(seconds)), 3),
                "realtime_factor": round(audio / float(np.sum(seconds)), 1),
            }
        )
    return rows


def time_corpus(speakers: int, clips_per_speaker: int, workers: int) -> dict:
    """A whole scd10 corpus written to a temporary folder: clips per second, all steps included."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = generate_corpus(
            Path(tmp) / "corpus",
            "scd10",
            speakers=speakers,
            clips_per_speaker=clips_per_speaker,
            seed=0,
            workers=workers,
            progress=False,
        )
        seconds = time.perf_counter() - start
    return {
        "what": "corpus",
        "vocabulary": "scd10",
        "speakers": summary.speakers,
        "workers": workers,
        "clips": summary.clips,
        "seconds": round(seconds, 3),
        "clips_per_second": round(summary.clips / seconds, 1),
        "ms_per_clip": round(1000 * seconds / summary.clips, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", type=int, default=30, help="speakers in the scd10 corpus (default 30)")
    parser.add_argument("--clips-per-speaker", type=int, default=1, help="utterances per word and speaker (default 1)")
    parser.add_argument("--repeats", type=int, default=200, help="raw synthesis calls per variant (default 200)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="worker counts to time (default 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "synth_speed.json")
    args = parser.parse_args()

    rows = time_raw_synthesis(args.repeats)
    for workers in args.workers:
        rows.append(time_corpus(args.speakers, args.clips_per_speaker, workers))
    result = {
        "command": "python benchmarks/synth_speed.py " + " ".join(sys.argv[1:]),
        "machine": {**machine_info(), "load_average_1min": round(os.getloadavg()[0], 2)},
        "rows": rows,
    }
    write_json(args.out, result)
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
