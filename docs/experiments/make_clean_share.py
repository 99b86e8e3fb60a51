"""A Speech Commands folder of symbolic links (made outside the project, e.g. under /tmp) holding a 10 % share of
ASC-10's training split, stratified by class and seeded: what a user's clean share is, to train a model on it
alone (``scan_reference_probe.md``, the ``clean_share`` reading). The real validation and test lists are kept.

    python docs/experiments/make_clean_share.py ../shared/data/arabic_sc /tmp/asc_share_31 31
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

WORDS = "yes no up down left right stop start enable disable".split()


def main(argv: list[str]) -> int:
    src, dst, seed = Path(argv[0]).resolve(), Path(argv[1]), int(argv[2])
    val = set((src / "validation_list.txt").read_text().split())
    test = set((src / "testing_list.txt").read_text().split())
    rng = random.Random(seed)
    dst.mkdir(parents=True, exist_ok=True)
    for word in WORDS:
        (dst / word).mkdir(exist_ok=True)
        files = sorted(f"{word}/{p.name}" for p in (src / word).iterdir() if p.suffix == ".flac")
        train = [f for f in files if f not in val and f not in test]
        keep = rng.sample(train, round(0.1 * len(train)))
        for name in keep + [f for f in files if f in val or f in test]:
            link = dst / name
            if not link.exists():
                link.symlink_to(src / name)
    for name in ("validation_list.txt", "testing_list.txt"):
        lines = [line for line in (src / name).read_text().split() if line.split("/")[0] in WORDS]
        (dst / name).write_text("\n".join(lines) + "\n")
    print(dst, sum(1 for _ in dst.rglob("*.flac")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
