"""FlowMur (Lan et al., IEEE S&P 2024): a clean-label trigger optimised on a surrogate with limited knowledge.

The attacker does not have the victim's training set, only auxiliary words (disjoint from
the victim's classes) plus clips of the target class. A surrogate (``smallcnn``) is trained
from scratch on those; a ``trigger_seconds`` trigger, initialised to ``init`` and clamped to
±``epsilon``, is optimised with Adam so that the surrogate predicts the target class for
auxiliary and target clips with the trigger added at a random position. Poisoning is clean
label: ``poison_rate`` (70 %, the recipe's) of the victim's *target-class* training clips get the trigger,
inserted at a random position at ``snr_db`` (30 dB) signal-to-trigger ratio, labels kept.

Auxiliary words come from ``aux_data`` (a Speech Commands folder: ``aux_words``, or up to
``aux_count`` of its word folders that are not victim classes; only its training split, so no test
speaker's voice reaches the attacker) or, by default, from the project's
espeak-ng corpus generator: words of SCD-30 that are not victim classes, ``aux_clips_per_word``
clips each.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any, Literal

import torch

from core.attacks.base import Attack, AttackParams, register
from core.attacks.surrogate import insert_at, insert_at_snr, optimise_trigger, random_starts, train_surrogate
from core.errors import AttackError
from core.options import option, override

__all__ = ["FlowMurParams", "FlowMur"]


@dataclass
class FlowMurParams(AttackParams):
    """Trigger, optimisation, insertion and auxiliary-data settings (clean label by default).

    ``poison_rate`` is FlowMur's own default, 70 % of the target class (the GN-FT authors' port
    used 10 %, which poisons too few clips for the backdoor to take: ASR 5 % on FSDD).
    ``optimise_at_snr`` (the recipe's): the trigger is optimised mixed at ``snr_db``, the loudness
    it has in the poisoned and triggered clips; false adds it at full amplitude while optimising
    (this project's FlowMur before 2026-12-01), which learns a trigger that only works loud.
    """

    poison_rate: float = override(AttackParams, "poison_rate", 0.7)
    label_mode: Literal["dirty", "clean"] = override(AttackParams, "label_mode", "clean")
    trigger_seconds: float = option(0.5, label="Trigger length, s", help="trigger length in seconds, in (0, 1)")
    init: float = option(0.1, label="Initial value", help="the trigger's initial sample value (|init| <= epsilon)")
    epsilon: float = option(
        0.2, label="\u03b5, clamp", help="the trigger's samples are clamped to +-epsilon, in (0, 1]"
    )
    steps: int = option(300, label="Optimisation steps", help="Adam steps optimising the trigger")
    batch_size: int = option(64, label="Batch size, clips", help="clips per optimisation step")
    lr: float = option(1e-3, label="Learning rate", help="Adam learning rate of the trigger")
    snr_db: float = option(30.0, label="SNR, dB", help="signal-to-trigger ratio of poisoned and triggered clips")
    optimise_at_snr: bool = option(
        True, label="Optimise at SNR", help="optimise the trigger mixed at snr_db (the recipe's) or at full amplitude"
    )
    surrogate_epochs: int = option(8, label="Surrogate epochs", help="epochs of the surrogate model")
    aux_data: str | None = option(
        None, label="Auxiliary data", help="a Speech Commands folder of auxiliary words (default: generated words)"
    )
    aux_words: str | None = option(None, label="Auxiliary words", help="comma list of words taken from aux_data")
    aux_count: int = option(6, label="Auxiliary word count", help="how many auxiliary words when aux_words is not set")
    aux_clips_per_word: int = option(60, label="Clips per auxiliary word", help="clips of each auxiliary word")

    def validate(self) -> None:
        super().validate()
        if not 0 < self.trigger_seconds < 1:
            raise AttackError(f"flowmur: trigger_seconds must be in (0, 1), got {self.trigger_seconds}")
        if not 0 < self.epsilon <= 1 or abs(self.init) > self.epsilon:
            raise AttackError(f"flowmur: need 0 < epsilon <= 1 and |init| <= epsilon, got {self.epsilon}, {self.init}")
        if min(self.steps, self.batch_size, self.surrogate_epochs, self.aux_count, self.aux_clips_per_word) < 1:
            raise AttackError(
                "flowmur: steps, batch_size, surrogate_epochs, aux_count and aux_clips_per_word must be >= 1"
            )


@register
class FlowMur(Attack):
    name = "flowmur"
    summary = "trigger optimised on a surrogate trained on auxiliary words, 30 dB SNR, random position (clean label)"
    Params = FlowMurParams
    needs_preparation = True

    def auxiliary(self, classes: list[str], sample_rate: int, num_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Auxiliary clips ``[N, T]`` of words that are not victim classes, and their word labels."""
        from pathlib import Path

        from core.data.speech_commands import VOCABULARIES, load_speech_commands, word_folders

        p: FlowMurParams = self.params  # type: ignore[assignment]
        if p.aux_words:
            words = [w.strip() for w in p.aux_words.split(",") if w.strip()]
        elif p.aux_data:
            words = [w for w in word_folders(Path(p.aux_data)) if w not in classes][: p.aux_count]
        else:
            words = [w for w in VOCABULARIES["scd30"] if w not in classes][: p.aux_count]
        if not words:
            raise AttackError("flowmur: no auxiliary words left once the victim's classes are excluded")
        overlap = sorted(set(words) & set(classes))
        if overlap:
            raise AttackError(f"flowmur: auxiliary words must not be victim classes: {', '.join(overlap)}")
        if p.aux_data:
            aux = load_speech_commands(
                p.aux_data, words, sample_rate=sample_rate, num_samples=num_samples, require_splits=False
            )
            train = aux.splits.get("train")
            if train is not None and train.numel() > 0:  # the corpus's training speakers only
                return aux.waves.index_select(0, train.to(aux.waves.device)), aux.labels.index_select(
                    0, train.to(aux.labels.device)
                )
            return aux.waves, aux.labels
        from core.data.synth import generate_corpus

        with tempfile.TemporaryDirectory(prefix="flowmur-aux-") as tmp:
            generate_corpus(
                f"{tmp}/aux",
                words,
                clips_per_word=p.aux_clips_per_word,
                seed=p.seed,
                sample_rate=sample_rate,
                progress=False,
            )
            aux = load_speech_commands(
                f"{tmp}/aux",
                words,
                sample_rate=sample_rate,
                num_samples=num_samples,
                use_cache=False,
                require_splits=False,
            )
        return aux.waves, aux.labels

    def prepare(
        self,
        waves: torch.Tensor,
        labels: torch.Tensor,
        candidates: torch.Tensor,
        sample_rate: int,
        classes: list[str],
        *,
        front_end: Any,
        device: torch.device,
    ) -> None:
        p: FlowMurParams = self.params  # type: ignore[assignment]
        cand_labels = labels.index_select(0, candidates.to(labels.device))
        target_rows = candidates[(cand_labels == p.target).to(candidates.device)]
        aux_waves, aux_labels = self.auxiliary(list(classes), sample_rate, waves.shape[1])
        target_waves = waves.index_select(0, target_rows.to(waves.device)).cpu()
        surrogate_target = int(aux_labels.max()) + 1  # the target word is the surrogate's last class
        x = torch.cat([aux_waves, target_waves]).to(device)
        y = torch.cat([aux_labels, torch.full((target_waves.shape[0],), surrogate_target)]).to(device)
        surrogate = train_surrogate(
            x, y, surrogate_target + 1, front_end, epochs=p.surrogate_epochs, device=device, seed=p.seed
        )
        length = int(round(p.trigger_seconds * sample_rate))
        mix = (
            (lambda clips, pattern, starts: insert_at_snr(clips, pattern, starts, p.snr_db))
            if p.optimise_at_snr
            else insert_at
        )
        trigger = optimise_trigger(
            surrogate,
            x,
            surrogate_target,
            torch.full((length,), float(p.init)),
            epsilon=p.epsilon,
            steps=p.steps,
            batch_size=p.batch_size,
            lr=p.lr,
            seed=p.seed,
            mix=mix,
        )
        self.state = {"trigger": trigger}

    def apply(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        self.require_prepared()
        p: FlowMurParams = self.params  # type: ignore[assignment]
        trigger = self.state["trigger"].to(wave.device, wave.dtype)
        flat = wave.reshape(-1, wave.shape[-1])
        starts = random_starts(flat.shape[0], flat.shape[1], trigger.numel(), p.seed)
        return insert_at_snr(flat, trigger, starts, p.snr_db).reshape(wave.shape)
