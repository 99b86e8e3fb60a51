"""Synthetic speakers: the voice lists they are drawn from, seeded sampling and held-out splits.

Pure Python and numpy (no espeak-ng): a speaker is a :class:`SpeakerConfig`, its id a hash of
the configuration, and the same seed always draws the same speakers and the same splits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.errors import ConfigError

__all__ = [
    "ACCENTS",
    "VARIANTS",
    "RATES",
    "PITCHES",
    "PITCH_RANGES",
    "LOWPASS_HZ",
    "HIGHPASS_HZ",
    "SpeakerConfig",
    "speaker_pool",
    "stable_int",
    "sample_speakers",
    "assign_splits",
]

#: English accents, by espeak-ng language code; used when the bundled data has them
#: (``en-shaw`` is left out: it reads the Shavian alphabet and is en-gb for Latin text).
ACCENTS: tuple[str, ...] = (
    "en-us",
    "en-us-nyc",
    "en-gb",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
)

#: Voice variants (files in ``espeak-ng-data/voices/!v``) that sound like a person:
#: name -> (gender, family). Left out on purpose: whisper/whisperf, croak, Demonic,
#: robosoft*, UniRobot, anikaRobot, announcer, klatt1-5 (buzzy), caleb (no voicing),
#: RicishayMax* and Marco (heavy echo), Tweaky/Mr serious, fast, Storm, Nguyen, sandro,
#: zac (a child's pitch), iven* (extreme voicing). Variants that are near copies of one
#: another share a family, and a family never straddles two splits.
VARIANTS: dict[str, tuple[str, str]] = {
    "m1": ("male", "m1"),
    "m2": ("male", "m2"),
    "m3": ("male", "m3"),
    "m4": ("male", "m4"),
    "m5": ("male", "m5"),
    "m6": ("male", "m6"),
    "m7": ("male", "m7"),
    "m8": ("male", "m8"),
    "Alex": ("male", "alex"),
    "Andy": ("male", "andy"),
    "Lee": ("male", "andy"),
    "Gene": ("male", "gene"),
    "Gene2": ("male", "gene"),
    "Jacky": ("male", "jacky"),
    "Mario": ("male", "mario"),
    "Michael": ("male", "mario"),
    "gustave": ("male", "mario"),
    "marcelo": ("male", "mario"),
    "Mike": ("male", "mike"),
    "mike2": ("male", "mike"),
    "Denis": ("male", "denis"),
    "Diogo": ("male", "diogo"),
    "Henrique": ("male", "diogo"),
    "Hugo": ("male", "diogo"),
    "michel": ("male", "diogo"),
    "miguel": ("male", "diogo"),
    "adam": ("male", "adam"),
    "benjamin": ("male", "benjamin"),
    "david": ("male", "david"),
    "edward2": ("male", "edward"),
    "antonio": ("male", "antonio"),
    "boris": ("male", "boris"),
    "max": ("male", "max"),
    "grandpa": ("male", "grandpa"),
    "ian": ("male", "ian"),
    "john": ("male", "john"),
    "pedro": ("male", "john"),
    "norbert": ("male", "norbert"),
    "kaukovalta": ("male", "kaukovalta"),
    "paul": ("male", "paul"),
    "quincy": ("male", "quincy"),
    "rob": ("male", "rob"),
    "robert": ("male", "rob"),
    "travis": ("male", "travis"),
    "victor": ("male", "victor"),
    "f1": ("female", "f1"),
    "f2": ("female", "f2"),
    "f3": ("female", "f3"),
    "f4": ("female", "f4"),
    "f5": ("female", "f5"),
    "Andrea": ("female", "andrea"),
    "Annie": ("female", "annie"),
    "Alicia": ("female", "alicia"),
    "anika": ("female", "anika"),
    "aunty": ("female", "aunty"),
    "belinda": ("female", "belinda"),
    "linda": ("female", "linda"),
    "grandma": ("female", "grandma"),
    "shelby": ("female", "shelby"),
    "steph": ("female", "steph"),
    "steph2": ("female", "steph"),
    "steph3": ("female", "steph"),
}

RATES: tuple[int, ...] = (120, 145, 170, 195, 220)  # words per minute (espeak-ng default 175)
PITCHES: tuple[int, ...] = (
    30,
    40,
    50,
    60,
    70,
)  # espeak-ng base pitch 0-100 (default 50); male F0 ~75-130 Hz, female ~140-260 Hz
PITCH_RANGES: tuple[int, ...] = (20, 50, 80)  # espeak-ng pitch range 0-100 (default 50)
#: Per-speaker microphone band limits in Hz (None: not limited).
LOWPASS_HZ: tuple[int | None, ...] = (None, 7000, 5500, 4500, 3400)
HIGHPASS_HZ: tuple[int | None, ...] = (None, 80, 150, 300)


@dataclass(frozen=True)
class SpeakerConfig:
    """One synthetic speaker: accent, variant, rate, pitch, pitch range and microphone band."""

    accent: str
    variant: str
    rate: int
    pitch: int
    pitch_range: int
    lowpass_hz: int | None = None
    highpass_hz: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON-able values (what the speaker id hashes)."""
        return asdict(self)

    @property
    def speaker_id(self) -> str:
        """First 8 hex digits of the SHA-1 of the configuration: stable across runs and seeds."""
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]

    @property
    def gender(self) -> str:
        """``male``/``female`` from :data:`VARIANTS` (``unknown`` for a variant outside it)."""
        return VARIANTS.get(self.variant, ("unknown", self.variant))[0]

    @property
    def family(self) -> str:
        """The voice family (a variant and its near-clones); splits never share one."""
        return VARIANTS.get(self.variant, ("unknown", self.variant))[1]


def speaker_pool(accents: Sequence[str], variants: Sequence[str]) -> list[tuple[str, str, int, int, int]]:
    """The full product accent x variant x rate x pitch x range that speakers are drawn from."""
    return [(a, v, r, p, g) for a in accents for v in variants for r in RATES for p in PITCHES for g in PITCH_RANGES]


def stable_int(*parts: object) -> int:
    """A 64-bit integer from text, the same in every process (unlike ``hash``): seeds sub-streams."""
    digest = hashlib.sha1("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def _gender_balanced_weights(pool: Sequence[tuple[str, str, int, int, int]]) -> np.ndarray:
    """Sampling weights, shape (len(pool),): 1/(configurations of the same gender), normalised."""
    genders = np.array([VARIANTS.get(v, ("unknown", v))[0] for _, v, *_ in pool])
    weights = np.zeros(len(pool))
    for g in set(genders.tolist()):
        mask = genders == g
        weights[mask] = 1.0 / mask.sum()
    return weights / weights.sum()


def sample_speakers(n: int, seed: int, accents: Sequence[str], variants: Sequence[str]) -> list[SpeakerConfig]:
    """Draw ``n`` distinct speakers from the pool, balanced between male and female variants.

    Each configuration's weight is 1/(number of configurations of its gender), so half the
    speakers are female even though more male variants exist. Same seed, same speakers.
    """
    pool = speaker_pool(accents, variants)
    if n < 1:
        raise ConfigError(f"the number of speakers must be at least 1, got {n}")
    if n > len(pool):
        raise ConfigError(
            f"{n} speakers asked for, but only {len(pool)} distinct voice configurations exist; ask for fewer"
        )
    weights = _gender_balanced_weights(pool)
    rng = np.random.default_rng([seed, stable_int("speakers") % 2**32])
    chosen = rng.choice(len(pool), size=n, replace=False, p=weights)
    speakers = []
    for index in chosen:
        a, v, r, p, g = pool[int(index)]
        sub = np.random.default_rng([seed, stable_int("channel", a, v, r, p, g) % 2**32])
        lowpass = LOWPASS_HZ[int(sub.integers(len(LOWPASS_HZ)))]
        highpass = HIGHPASS_HZ[int(sub.integers(len(HIGHPASS_HZ)))]
        speakers.append(SpeakerConfig(a, v, r, p, g, lowpass, highpass))
    ids = [s.speaker_id for s in speakers]
    if len(set(ids)) != len(ids):  # pragma: no cover - 8 hex digits, a few thousand speakers
        raise ConfigError("two sampled speakers share an id; use another --seed")
    return sorted(speakers, key=lambda s: s.speaker_id)


def _group(speakers: Sequence[SpeakerConfig], key: Callable[[SpeakerConfig], str]) -> dict[str, list[SpeakerConfig]]:
    """Speakers grouped by ``key`` (family or speaker id), each group in speaker-id order."""
    groups: dict[str, list[SpeakerConfig]] = {}
    for s in sorted(speakers, key=lambda s: s.speaker_id):
        groups.setdefault(key(s), []).append(s)
    return groups


def _stratified_order(groups: dict[str, list[SpeakerConfig]], seed: int) -> list[str]:
    """Group names in a seeded order that spreads each gender's groups evenly over [0, 1), merged."""
    rng = np.random.default_rng([seed, stable_int("splits") % 2**32])
    by_gender: dict[str, list[str]] = {}
    for name in sorted(groups):
        by_gender.setdefault(groups[name][0].gender, []).append(name)
    positioned = []
    for gender in sorted(by_gender):
        names = by_gender[gender]
        order = rng.permutation(len(names))
        offset = rng.random()
        for rank, i in enumerate(order):
            positioned.append(((rank + offset) / len(names), names[i]))
    return [name for _, name in sorted(positioned)]


def assign_splits(
    speakers: Sequence[SpeakerConfig],
    seed: int,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_by: str = "family",
) -> tuple[dict[str, str], str]:
    """Map speaker id -> ``train``/``validation``/``test``; return the map and the rule used.

    ``split_by="family"`` keeps each voice family in one split (test voices are never heard
    in training), falling back to ``speaker`` when fewer than 5 families are present. Groups
    are ordered stratified by gender and taken until each held-out split has its share of
    speakers; with 2+ speakers the test split gets at least one, with 3+ validation too.
    """
    if split_by not in ("family", "speaker"):
        raise ConfigError(f"unknown split rule {split_by!r}; use family or speaker")
    if not (0 <= validation_fraction < 1 and 0 <= test_fraction < 1 and validation_fraction + test_fraction < 1):
        raise ConfigError("validation and test fractions must be in [0, 1) and leave room for training")
    n = len(speakers)
    rule = split_by
    if rule == "family" and len({s.family for s in speakers}) < 5:
        rule = "speaker"
    groups = _group(speakers, (lambda s: s.family) if rule == "family" else (lambda s: s.speaker_id))
    want_test = max(1 if n >= 2 else 0, round(test_fraction * n)) if test_fraction > 0 else 0
    want_val = max(1 if n >= 3 else 0, round(validation_fraction * n)) if validation_fraction > 0 else 0
    split_of: dict[str, str] = {}
    counts = {"test": 0, "validation": 0}
    for name in _stratified_order(groups, seed):
        members = groups[name]
        left_for_training = n - counts["test"] - counts["validation"] - len(members)
        if counts["test"] < want_test and left_for_training >= 1:
            target = "test"
        elif counts["validation"] < want_val and left_for_training >= 1:
            target = "validation"
        else:
            target = "train"
        if target != "train":
            counts[target] += len(members)
        for s in members:
            split_of[s.speaker_id] = target
    return split_of, rule
