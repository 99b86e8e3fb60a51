"""A clean reference for a scan (issue 33): is a class's minimal trigger small because the model was backdoored
toward it, or because that class is easy to reach in any model of this architecture and vocabulary?

Some classes are easy to reach in every clean model (on ASC-10, ``stop`` in the mix and spectrum domains), and a
whole-clip backdoor's target can sit among them: a Blend model's ``start`` was 36x easier to reach than in the
clean model of the same recipe, yet only as easy as ``up`` and ``stop``, so the plain anomaly index saw nothing.
Read against scans of clean models (:func:`read_reference`), each class's size is divided by the geometric mean
of the same class's size over those scans, and the anomaly index is taken of the ratios
(:func:`relative_index`). On 52 ASC-10 scans, references of other clean models of the same architecture put the
target first on all 31 backdoored scans (27 without), AUROC 0.95 (0.79 without); references of the other
architecture did not help (docs/experiments/scan_reference_probe.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.options import comma_items

__all__ = [
    "FRONT_END_FIELDS",
    "SIZE_FIELDS",
    "Reference",
    "finite_sizes",
    "front_end_difference",
    "read_reference",
    "reference_paths",
    "reference_sizes",
    "relative_sizes",
]

#: The scan settings a class's minimal trigger size depends on: a reference must have searched with the same.
SIZE_FIELDS = ("clean_ratio", "steps", "batch_size", "success", "peak", "amp")

#: The front-end settings it depends on too (the features the searches act on): a reference's models must share
#: them (a ``db_floor`` "batch" model, made before 2026-12-06, floors its log scale over the batch, not the clip).
FRONT_END_FIELDS = ("kind", "sample_rate", "n_coeffs", "n_fft", "hop_length", "n_mels", "num_samples", "db_floor")


@dataclass
class Reference:
    """Scans of clean models read as one: ``sizes`` per domain, per class, the geometric mean of the class's
    minimal trigger size over ``reports`` (of ``models`` distinct checkpoints)."""

    reports: list[str]
    models: int
    sizes: dict[str, list[float]]

    def to_dict(self) -> dict[str, Any]:
        """What a scan's report keeps of it (the sizes rounded to 6 significant digits)."""
        sizes = {d: [float(f"{s:.6g}") for s in v] for d, v in self.sizes.items()}
        return {"reports": self.reports, "scans": len(self.reports), "models": self.models, "sizes": sizes}


def finite_sizes(sizes: list[float | None]) -> list[float]:
    """A domain's sizes with the classes its search never reached (None, inf) set to the largest size reached
    (1 when none was): "as hard as the hardest", so that a ratio stays finite."""
    reached = [s for s in sizes if s is not None and math.isfinite(s)]
    top = max(reached, default=1.0)
    return [top if s is None or not math.isfinite(s) else max(float(s), 1e-12) for s in sizes]


def reference_sizes(reports: list[dict[str, Any]], domains: list[str]) -> dict[str, list[float]]:
    """Per domain of ``domains``, per class: the geometric mean of the class's size over ``reports``."""
    out: dict[str, list[float]] = {}
    for name in domains:
        rows = [finite_sizes(r["domains"][name]["sizes"]) for r in reports]
        out[name] = [math.exp(sum(math.log(row[i]) for row in rows) / len(rows)) for i in range(len(rows[0]))]
    return out


def relative_sizes(sizes: list[float], reference: list[float]) -> list[float]:
    """Each class's size (unreached ones as the largest reached) over the reference's size of the class."""
    return [s / r for s, r in zip(finite_sizes(sizes), reference)]


def reference_paths(text: str) -> list[str]:
    """The scan reports a reference's comma list names, a folder standing for the ``*.json`` files in it (sorted),
    so that a folder of clean models' scans kept for the purpose can be named once."""
    paths: list[str] = []
    for item in comma_items(text):
        where = Path(item)
        paths += sorted(str(p) for p in where.glob("*.json") if p.is_file()) if where.is_dir() else [item]
    return paths


def _load(path: str, option: str) -> dict[str, Any]:
    where = Path(path)
    if not where.is_file():
        raise ConfigError(f"{option}: {path}: no such file")
    try:
        report = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{option}: {path}: not a readable JSON report ({err.__class__.__name__})") from None
    if not isinstance(report, dict) or not isinstance(report.get("domains"), dict) or "classes" not in report:
        raise ConfigError(f"{option}: {path}: not a report of python -m core.scan (no per-class sizes)")
    return report


def _recorded(report: dict[str, Any], key: str) -> Any:
    """What a report says of the model it scanned under ``key`` (``architecture``, ``front_end``): its own
    record, else its checkpoint's metadata when that is still there (a checkpoint made before ``db_floor`` reads
    as "batch"); None when neither can tell (moved, deleted or unreadable)."""
    if report.get(key):
        return report[key]
    from core.checkpoint import read_metadata

    try:
        return read_metadata(report["model"])[key]
    except Exception:  # moved, deleted or unreadable: it cannot be checked
        return None


def front_end_difference(theirs: dict[str, Any], ours: dict[str, Any]) -> str | None:
    """The first of :data:`FRONT_END_FIELDS` two front-end records differ in, as "name 'a', the model's 'b'";
    None when they agree."""
    for name in FRONT_END_FIELDS:
        a, b = (record.get(name, "batch" if name == "db_floor" else None) for record in (theirs, ours))
        if a != b:
            return f"{name} {a!r}, the model's {b!r}"
    return None


def read_reference(
    text: str,
    classes: list[str],
    config: dict[str, Any],
    *,
    architecture: str | None = None,
    front_end: dict[str, Any] | None = None,
    model: str | None = None,
    option: str = "--reference",
) -> Reference | None:
    """The clean reference a comma list of scan reports or folders of them (``text``, :func:`reference_paths`)
    makes for a scan of ``model`` (a checkpoint
    of ``architecture`` with ``classes`` and the ``front_end`` record) with ``config`` (a
    :class:`core.scan.ScanConfig` as a dict); None for an empty list. Raises :class:`ConfigError`, naming
    ``option`` and the report, for a report that is missing or not a scan, of other classes, another
    architecture or front end, or this very model, that lacks a domain this scan
    searches, searched with other settings (:data:`SIZE_FIELDS`), or flagged its own model (a reference must be
    clean)."""
    from core.scan import ScanConfig, anomaly_index, verdict  # the scan's own rule, read on the plain sizes

    paths: list[str] = []
    for item in comma_items(text):  # each folder globbed once; one with no reports is refused, not skipped
        found = reference_paths(item)
        if not found:
            raise ConfigError(f"{option}: {item}: a folder with no scan reports (*.json) in it")
        paths += found
    if not paths:
        return None
    domains = comma_items(config["domains"])
    wanted = ScanConfig.searched(config)
    reports, models = [], set()
    for path in paths:
        if paths.count(path) > 1:
            raise ConfigError(f"{option}: {path} is given twice")
        report = _load(path, option)
        if list(report["classes"]) != list(classes):
            raise ConfigError(
                f"{option}: {path} scanned a model of the classes {report['classes']}, not the model's {classes}"
            )
        if model is not None and report.get("model") and Path(report["model"]).resolve() == Path(model).resolve():
            raise ConfigError(f"{option}: {path} is a scan of this model itself; a reference is of other, clean models")
        found = _recorded(report, "architecture")
        if architecture is not None and found is not None and found != architecture:
            raise ConfigError(
                f"{option}: {path} scanned a {found}, the model is a {architecture}: a reference must be of the same "
                "architecture (another's did not help, docs/experiments/scan_reference_probe.md)"
            )
        other = _recorded(report, "front_end") if front_end is not None else None
        differs = front_end_difference(other, front_end) if isinstance(other, dict) and front_end else None
        if differs:
            raise ConfigError(
                f"{option}: {path} scanned a model with another front end ({differs}): a reference must be of "
                "models whose features are computed alike"
            )
        missing = [d for d in domains if len((report["domains"].get(d) or {}).get("sizes") or []) != len(classes)]
        if missing:
            names = ", ".join(missing)
            raise ConfigError(f"{option}: {path} holds no sizes of the domain(s) {names} this scan searches")
        searched = ScanConfig.searched(report.get("config", {}))
        for name in SIZE_FIELDS:
            if searched.get(name) != wanted.get(name):
                raise ConfigError(
                    f"{option}: {path} searched with {name} {searched.get(name)!r}, this scan with "
                    f"{wanted.get(name)!r}: scan the reference with the same settings"
                )
        plain = {d: {"anomaly_index": anomaly_index(finite_sizes(report["domains"][d]["sizes"]))} for d in domains}
        flagged, _ = verdict(plain, float(wanted["threshold"]), float(wanted["standout"]))
        if flagged is not None:
            raise ConfigError(
                f"{option}: {path} flags its own model (suspected target {classes[flagged]!r}): a reference must be "
                "a scan of a clean model"
            )
        reports.append(report)
        models.add(str(Path(report["model"]).resolve()) if report.get("model") else path)
    return Reference(paths, len(models), reference_sizes(reports, domains))
