"""Neuron forensics of a whole model: the clean and backdoor sets, gradient norms and zones per layer.

The library half of ``python -m core.analyze`` (which only parses options and writes files), and
:class:`ZoneWatcher`, which measures a layer's zones at a repair's fixed points for a live view.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

import torch

from core.analysis.grad_norms import mean_grad_norms
from core.analysis.zones import ZONES, analyse_layer, backdoor_set, first_order_loss_changes, rank_correlation
from core.attacks import Attack
from core.data.audioset import AudioSet
from core.defenses import clean_subset
from core.errors import ConfigError
from core.events import Cancelled, NeuronStats, NullObserver, Observer
from core.features import FrontEnd, clip_features
from core.models import analysable_layers
from core.repair import RepairWatcher

__all__ = ["ZoneWatcher", "analyse_model", "default_layers", "summarise", "zone_model", "zone_sets"]

log = logging.getLogger("core.analysis")


def default_layers(model: torch.nn.Module, count: int = 3) -> list[str]:
    """The ``count`` deepest analysable layers before the output layer (where backdoor features live)."""
    names = [n for n, _ in analysable_layers(model)]
    return names[-(count + 1) : -1] if len(names) > count else names[:-1] or names


def zone_sets(
    data, attack: Attack | None, split: str = "test", max_clips: int | None = None, model: torch.nn.Module | None = None
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]:
    """The clean set ``(inputs, labels)`` of ``split`` and the backdoor set (None without an attack).

    The inputs are waveforms, or for a feature-domain trigger (``badnets-mfcc``) the front-end
    features of ``model`` with the patch applied to the backdoor set's: measure those on
    :func:`zone_model` of the model, whose layers keep their names."""
    idx = data.splits[split]
    if max_clips is not None:
        idx = idx[:max_clips]
    waves, labels = data.waves[idx], data.labels[idx]
    if attack is None:
        return (waves, labels), None
    if attack.domain == "waveform":
        return (waves, labels), backdoor_set(
            waves, labels, attack.apply_test(waves, data.sample_rate), attack.params.target
        )
    front = model[0] if model is not None and isinstance(model[0], FrontEnd) else None
    if front is None:
        raise ConfigError(f"{attack.name} acts on features: its CLC/BLC need the model's front end")
    feats = clip_features(front, waves.to(next((b.device for b in front.buffers()), waves.device)), 64)  # no_grad
    return (feats, labels), backdoor_set(feats, labels, attack.apply_features(feats), attack.params.target)


def zone_model(model: torch.nn.Module, attack: Attack | None) -> torch.nn.Module:
    """The model CLC/BLC are measured on: ``model`` itself, or for a feature-domain trigger its
    classifier behind an identity front end (the inputs are then features, the layer names the same)."""
    if attack is None or attack.domain == "waveform":
        return model
    wrapper = torch.nn.Sequential(OrderedDict([("front_end", torch.nn.Identity()), ("classifier", model[1])]))
    return wrapper.train(model.training)  # the analysis restores this mode on the shared classifier


def analyse_model(
    model: torch.nn.Module,
    data,
    attack: Attack | None,
    layers: list[str],
    *,
    split: str = "test",
    clean_ratio: float = 0.05,
    seed: int = 0,
    grad_ord: int = 2,
    grad_batch_size: int = 32,
    max_clips: int | None = None,
    method: str = "exact",
    t_clc: float = 0.0,
    t_blc: float = 0.0,
    observer: Observer | None = None,
) -> dict[str, Any]:
    """Gradient norms, CLC/BLC and zones for ``layers`` of ``model`` (on the data's device).

    An ``observer`` gets each layer's figures as :class:`NeuronStats` when it is done and can stop
    the analysis between layers (``Cancelled`` is raised).
    """
    observer = observer or NullObserver()
    grad_rows = clean_subset(data, clean_ratio, seed).to(data.waves.device)
    grads = mean_grad_norms(
        model, data.waves[grad_rows], data.labels[grad_rows], batch_size=grad_batch_size, ord=grad_ord, layers=layers
    )
    (waves, labels), bd = zone_sets(data, attack, split, max_clips, model)
    zmodel = zone_model(model, attack)
    out: dict[str, Any] = {}
    for layer in layers:
        if observer.should_stop():
            raise Cancelled()
        started = time.perf_counter()
        entry: dict[str, Any] = {"grad_norm": grads[layer].tolist() if layer in grads else None}
        if bd is not None:
            zones = analyse_layer(zmodel, layer, (waves, labels), bd, method=method, t_clc=t_clc, t_blc=t_blc)
            entry.update(zones.to_dict())
            if method == "exact":
                entry["first_order_rank_correlation"] = {
                    "clc": rank_correlation(first_order_loss_changes(zmodel, layer, waves, labels), zones.clc),
                    "blc": rank_correlation(first_order_loss_changes(zmodel, layer, *bd), zones.blc),
                }
        entry["seconds"] = round(time.perf_counter() - started, 2)
        log.info("%s: %s", layer, entry.get("counts", "gradient norms only"))
        out[layer] = entry
        observer.on_neurons(
            NeuronStats(
                layer,
                {k: entry[k] for k in ("grad_norm", "clc", "blc") if entry.get(k) is not None},
                label=f"analysis ({method})",
            )
        )
    return {"layers": out, "summary": summarise(out)}


def summarise(layers: dict[str, Any]) -> dict[str, Any]:
    """Zone counts over all layers and the mean gradient norm per zone (Figure 2's comparison)."""
    counts = {z: 0 for z in ZONES}
    norms: dict[str, list[float]] = {z: [] for z in ZONES}
    for entry in layers.values():
        if "zones" not in entry:
            continue
        for z, g in zip(entry["zones"], entry["grad_norm"] or [None] * len(entry["zones"])):
            counts[z] += 1
            if g is not None:
                norms[z].append(g)
    mean = {z: (sum(v) / len(v) if v else None) for z, v in norms.items()}
    bh = norms["backdoor"] + norms["hybrid"]
    ratio = (sum(bh) / len(bh)) / mean["clean"] if bh and mean["clean"] else None
    return {"zone_counts": counts, "mean_grad_norm_by_zone": mean, "backdoor_hybrid_over_clean_grad_norm": ratio}


class ZoneWatcher(RepairWatcher):
    """CLC/BLC of one layer during a repair, sent to ``observer`` as :class:`NeuronStats`: exact before
    and after (when ``exact``), the first-order estimate at every evaluation. Nothing without an attack."""

    def __init__(
        self, observer: Observer, data: AudioSet, attack: Attack | None, layer: str, exact: bool = True
    ) -> None:
        self.observer, self.data, self.attack, self.layer, self.exact = observer, data, attack, layer, exact
        self.sets: tuple[Any, Any] | None = None

    def before(self, model: torch.nn.Module) -> None:
        if self.attack is None:
            return
        device = next(model.parameters()).device  # the sets move once, not at every evaluation
        self.sets = tuple((x.to(device), y.to(device)) for x, y in zone_sets(self.data, self.attack, model=model))
        if self.exact:
            self._zones(model, "before (exact)", "exact")

    def evaluated(self, model: torch.nn.Module, number: int, metrics: dict[str, float]) -> None:
        self._zones(model, f"evaluation {number} (first-order)", "first-order")

    def after(self, model: torch.nn.Module) -> None:
        if self.exact:
            self._zones(model, "after (exact)", "exact")

    def _zones(self, model: torch.nn.Module, label: str, method: str) -> None:
        if self.sets is None:
            return
        zones = analyse_layer(zone_model(model, self.attack), self.layer, *self.sets, method=method)
        self.observer.on_neurons(
            NeuronStats(self.layer, {"clc": zones.clc.tolist(), "blc": zones.blc.tolist()}, label=label)
        )
