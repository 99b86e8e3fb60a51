"""Reports for people and files: a repair's Markdown table; an exported model, its JSON summary and page.

What the application's File > Export writes (through :meth:`core.session.Session.export`): each
file atomically, so a failure leaves whatever was there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from core.checkpoint import save_checkpoint
from core.defenses import DEFENSE_TITLES
from core.metrics import percent
from core.presets import PRESETS
from core.runtime import write_json, write_text_atomic

__all__ = ["export_markdown", "export_report", "repair_markdown", "rescan_markdown", "scan_verdicts", "write_export"]


def export_report(path: Path, source: Path | None, meta: dict[str, Any]) -> dict[str, Any]:
    """The exported model's JSON report: where it came from, what it classifies, its attack and defenses."""
    provenance = meta["provenance"]
    return {
        "checkpoint": str(path),
        "source": str(source),
        "architecture": meta["architecture"],
        "classes": meta["classes"],
        "attack": provenance.get("attack"),
        "defenses": provenance.get("defenses", []),
    }


def export_markdown(path: Path, source: Path | None, meta: dict[str, Any]) -> str:
    """The exported model's report for people: what it is and every defense in its history, in percent."""
    lines = [
        f"# {path.name}",
        "",
        f"Architecture {meta['architecture']}, {len(meta['classes'])} classes, exported from {source}.",
    ]
    attack = meta["provenance"].get("attack")
    if attack:
        lines.append(f"Backdoor measured with the {attack.get('name')} attack recorded in the checkpoint.")
    defenses = meta["provenance"].get("defenses", [])
    if defenses:
        lines += [
            "",
            "| defense | preset | CA before | CA after | ASR before | ASR after | clean clips | time |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for d in defenses:
            name = d["defense"]["name"]
            preset = (d.get("preset") or {}).get("name", "not recorded")
            preset = PRESETS[preset].title if preset in PRESETS else preset
            b, a = d.get("before", {}), d.get("after", {})
            lines.append(
                f"| {DEFENSE_TITLES.get(name, name)} | {preset} | {percent(b.get('clean_accuracy'))} | "
                f"{percent(a.get('clean_accuracy'))} | {percent(b.get('attack_success_rate'))} | "
                f"{percent(a.get('attack_success_rate'))} | {d.get('clean_clips', '')} | "
                f"{d.get('seconds', 0):.1f} s |"
            )
    else:
        lines += ["", "No defense has been run on this model."]
    return "\n".join(lines) + "\n"


def write_export(path: str | os.PathLike, model: nn.Module, meta: dict[str, Any], source: Path | None) -> Path:
    """Write ``model`` with ``meta`` to ``path`` (``.safetensors``) and ``<stem>.json`` and ``<stem>.md``
    beside it; returns the checkpoint's path. Raises a GnftError naming the file that could not be written."""
    path = Path(path)
    save_checkpoint(path, model, meta)
    write_json(path.with_suffix(".json"), export_report(path, source, meta))
    write_text_atomic(path.with_suffix(".md"), export_markdown(path, source, meta))
    return path


def repair_markdown(report: dict[str, Any]) -> str:
    """A repair report (:meth:`core.repair.RepairResult.report`) as a before/after table for people."""

    def pct(v: float | None) -> str:
        return percent(v, digits=2)

    preset = report.get("preset") or {}
    title = f"# {report['defense']['name']} on {report['model']}"
    if preset.get("name") in PRESETS:
        title += f" ({PRESETS[preset['name']].title} preset)"
    elif preset.get("from"):
        title += f" (custom, from the {PRESETS[preset['from']].title} preset)"
    lines = [title, "", f"CA, ASR and RA measured on the {report.get('eval_split', 'test')} split.", ""]
    lines += ["| metric | before | after |", "|---|---|---|"]
    for key, label in (
        ("clean_accuracy", "clean accuracy (CA)"),
        ("attack_success_rate", "attack success rate (ASR)"),
        ("robust_accuracy", "robust accuracy (RA)"),
    ):
        lines.append(f"| {label} | {pct(report['before'].get(key))} | {pct(report['after'].get(key))} |")
    held = (report.get("defense_details") or {}).get("holdout")
    if held:
        lines.append(
            f"| clean accuracy on {held['clips']} held-out clean clips | {pct(held['accuracy_before'])} "
            f"| {pct(held['accuracy_after'])} |"
        )
    unlearned = (report.get("defense_details") or {}).get("unlearn")
    if unlearned and unlearned.get("asr_before") is not None:
        which = "flagged" if unlearned.get("flagged") else "most anomalous, not flagged"
        lines.append(
            f"| ASR of the unlearned trigger (the scan's reconstruction for {unlearned['class']}, {which}) "
            f"| {pct(unlearned['asr_before'])} | {pct(unlearned['asr_after'])} |"
        )
    if "defense_effectiveness_rating" in report:
        lines.append(f"| defense effectiveness rating (DER, 0-1) | | {report['defense_effectiveness_rating']:.3f} |")
    lines += [
        "",
        f"Wall time {report['seconds']:.1f} s on {report['device']}, {report['clean_clips']} clean clips.",
        "",
        "Hyperparameters: " + ", ".join(f"{k}={v}" for k, v in report["defense"].items() if k != "name"),
    ]
    if unlearned:
        source = {
            "scan": "the trigger a scan of the model reconstructed",
            "file": f"the trigger in {unlearned.get('file')}",
        }
        lines += [
            "",
            f"Unlearned: {source.get(unlearned['source'], 'the trigger given')} was added to "
            f"{100 * report['defense'].get('unlearn', 0):g} % of each batch's clips, with their true labels.",
        ]
    pruned = (report.get("defense_details") or {}).get("trigger_pruned")
    if pruned:
        lines += ["", trigger_pruned_sentence(pruned)]
    searched = (report.get("defense_details") or {}).get("searched_again")
    if searched:
        lines += ["", searched_again_sentence(searched, unlearned or {})]
    not_searched = (report.get("defense_details") or {}).get("searched_again_skipped")
    if not_searched:
        lines += ["", f"The trigger was not searched again during the repair: {not_searched}."]
    passes = (report.get("defense_details") or {}).get("rescan_passes")
    if passes:
        lines += ["", rescan_passes_sentence(passes)]
    if report.get("note"):
        lines += ["", f"Note: {report['note']}"]
    if report.get("rescan"):
        lines += ["", rescan_markdown(report["rescan"]).rstrip("\n")]
    if report.get("findings"):
        lines += ["", "## Findings", "", *(f"- {f}" for f in report["findings"])]
    return "\n".join(lines) + "\n"


def trigger_pruned_sentence(pruned: dict[str, Any]) -> str:
    """A repair's pruning by the trigger (``trigger_prune``) in a sentence: skipped and why, or how many of the
    output layer's inputs were zeroed and what that did to the trigger and the clean clips of the clean share."""
    if "skipped" in pruned:
        return f"Pruning by the trigger: skipped ({pruned['skipped']})."
    if "undone" in pruned:
        tried, before = pruned["undone"], pruned["triggered_accuracy"][0]
        return (
            f"Pruning by the trigger: undone. Zeroing the {tried['tried_inputs']} output-layer inputs the trigger "
            f"raises most took its accuracy on the clean share only from {100 * before:.1f} % to "
            f"{100 * tried['triggered_accuracy']:.1f} % (less than {100 * tried['min_gain']:.0f} % of what it "
            "costs): the trigger's path is not in those inputs, so none was pruned."
        )
    triggered, clean = pruned["triggered_accuracy"], pruned["clean_accuracy"]
    return (
        f"Pruned by the trigger: {pruned['pruned_inputs']} of the output layer's {pruned['output_layer_inputs']} "
        f"inputs, those the trigger raises most, were zeroed before fine-tuning and held there (on the clean share, "
        f"accuracy with the trigger {100 * triggered[0]:.1f} % -> {100 * triggered[1]:.1f} %, without it "
        f"{100 * clean[0]:.1f} % -> {100 * clean[1]:.1f} %)."
    )


def rescan_passes_sentence(passes: list[dict[str, Any]]) -> str:
    """A repair's scans of the repaired model (``rescan_passes``) in sentences: what each flagged, and for each
    pass it started, the class unlearned, the figures it started from and its trigger's ASR before and after."""
    out = []
    for p in passes:
        scanned = p["scan"]
        top = scanned.get("most_anomalous")
        if not p["repaired"]:
            if not scanned["flagged"]:
                near = f" (its most anomalous class {top}, index {scanned['most_anomalous_index']:.2f})" if top else ""
                out.append(f"The scan of the repaired model flagged nothing{near}: no further pass.")
            else:
                out.append(
                    f"The scan of the repaired model flagged {scanned['class']}, already unlearned: no further pass."
                )
            continue
        start, unlearned = p.get("started_from", {}), p.get("unlearn", {})
        figures = ", ".join(
            f"{name} {100 * start[key]:.1f} %"
            for key, name in (("clean_accuracy", "CA"), ("attack_success_rate", "ASR"))
            if start.get(key) is not None
        )
        asr = ""
        if unlearned.get("asr_before") is not None:
            asr = (
                f"; its trigger's ASR {100 * unlearned['asr_before']:.1f} % -> "
                f"{100 * unlearned['asr_after']:.1f} % over the pass"
            )
        out.append(
            f"The scan of the repaired model flagged {scanned['class']} (anomaly index "
            f"{scanned['anomaly_index']:.2f}), which the repair had not unlearned: pass {p['pass']} repaired again, "
            f"unlearning its trigger (from {figures}{asr})."
        )
    return " ".join(out)


def searched_again_sentence(searches: list[dict[str, Any]], unlearned: dict[str, Any]) -> str:
    """A repair's searches mid-run (``unlearn_refresh``) in a sentence: at which epochs, and per search what
    was found (the trigger's size and its success on the search's clips), beside the scan's first trigger."""

    def found(f: dict[str, Any]) -> str:
        size = "none reached the scan's success" if f.get("size") is None else f"size {f['size']:.4g}"
        return f"{f['class']}: {size}, {100 * f['success']:.0f} % success"

    each = "; ".join(f"epoch {s['epoch']}, " + ", ".join(found(f) for f in s.get("found", [])) for s in searches)
    first = ""
    if unlearned.get("trigger_success") is not None:
        scanned = {"class": unlearned.get("class"), "size": unlearned.get("trigger_size")}
        first = f" The first trigger (the scan's): {found({**scanned, 'success': unlearned['trigger_success']})}."
    return (
        f"Searched again {len(searches)} time(s) on the model being repaired, each trigger found unlearned too from "
        f"the next epoch ({each}).{first}"
    )


def scan_verdicts(record: dict[str, Any]) -> tuple[str, str]:
    """A repair's scan before and after (:meth:`core.scan.Rescan.to_dict`) as two verdicts in words."""
    out = []
    for side in ("before", "after"):
        flagged, target = record[f"flagged_{side}"], record[f"suspected_target_{side}"]
        confidence = record[f"confidence_{side}"]
        out.append(f"flagged, target {target} (anomaly index {confidence:.2f})" if flagged else "not flagged")
    return out[0], out[1]


def rescan_markdown(record: dict[str, Any]) -> str:
    """A repair's scan before and after (:meth:`core.scan.Rescan.to_dict`) as a section for people."""
    config = record["config"]
    gone = {True: "the flag is gone", False: "still flagged", None: "the input model was not flagged"}
    before, after = scan_verdicts(record)
    lines = [
        "## Scan before and after (trigger inversion, without the attack record)",
        "",
        f"Anomaly index threshold {config['threshold']:g}, {config['steps']} steps, domains {config['domains']}: "
        f"{gone[record['flag_gone']]}.",
        "",
        "| | before | after |",
        "|---|---|---|",
        f"| verdict | {before} | {after} |",
    ]
    trigger = record["trigger"]
    if trigger["asr_before"] is not None:
        which = "flagged" if trigger["flagged"] else "most anomalous, not flagged"
        lines.append(
            f"| ASR of the reconstructed trigger of {trigger['class']} ({which}) on {trigger['clips']} "
            f"{trigger['split']} clips of the other classes | {percent(trigger['asr_before'], digits=2)} "
            f"| {percent(trigger['asr_after'], digits=2)} |"
        )
    else:
        lines += ["", "No waveform trigger was searched (domains without waveform): no trigger ASR."]
    return "\n".join(lines) + "\n"
