"""How well ``python -m core.scan`` finds a backdoor it was not told about (issue 33).

Runs the product's own command on every checkpoint a glob names (the grids' clean and backdoored
models, and repaired ones), then compares its verdict with the truth, which only this benchmark reads
from the checkpoint's attack record (the scan never does):

    python benchmarks/scan.py --group asc10 --data ../shared/data/arabic_sc --vocab asc10 \\
        --models 'runs/grid_asc10/train_*.safetensors' \\
        --repaired 'runs/grid_asc10/defend_*_gnft@recommended.safetensors' \\
        --work runs/scan --out benchmarks/results/scan.json --threads 1 [-- SCAN OPTIONS]

``--scans GLOB`` (repeatable) takes reports ``python -m core.scan`` already wrote with its default settings and
seed 0 (by the checkpoint they name): a checkpoint with such a report is not scanned again.
``--grid-scans FOLDER`` (repeatable) also takes the scans ``core.grid`` made for its unlearning columns
(``scan_<model>_<attack>_seed0.json``: the product's ``scan()`` with ``python -m core.scan``'s default
settings and seed 0, naming the checkpoint's SHA-256): a checkpoint with such a scan is not scanned again.

Resumable: each scan's JSON stays in ``--work`` and is reused while its command is the same. Rows of
other groups already in ``--out`` are kept, so one file gathers every corpus; each row stores its scan's
sizes (``scan``), and kept rows are read again by today's rule from them (rows made before 2026-12-05 did not
store them and stay as they were); the summary (detection
rate, false positives, AUROC of the anomaly index, target-class accuracy, seconds per scan by
architecture, share of repaired models still flagged) is computed over all of them.

Each row also keeps the two classes each candidate pointing rule ranks first (``tops``: the pooled index and
each domain), and the summary counts, over the unflagged backdoored models, how often each rule's first
class, or one of its first two, is the target (``pointing_unflagged``): the evidence for the class an
unflagged scan points a repair at (``docs/experiments/pointing_rule_asc10.md``). Scans made on the GPU
machine (``core.grid`` scan cells run with ``--device cuda``) are timed apart (``seconds_per_scan_cuda``).

Every row whose scan kept its sizes is also read against a clean reference as ``python -m core.scan --reference``
reads it (``against_reference``; :mod:`core.scan.reference`): the scans, among the rows, of the other clean models
of the same architecture and classes, searched with the same settings, never the row's own checkpoint nor one
trained with its training seed (which shares its initialisation and batch order). ``reference_reading`` summarises
those rows both ways, side by side: what a user who has clean models of the architecture gets, against what one
without gets. Rows made before rows kept their sizes cannot be read so, nor by today's margin: they are summarised
apart (``summary_before_sizes``). ``corpora`` summarises the rows that kept their sizes per corpus, plainly: a
group's corpus is its name up to the first ``_`` (``asc10_seeds`` and ``asc10_val`` are ASC-10, ``fsdd_xeon`` FSDD).

``--read-as DOMAINS`` (repeatable) reads every scan on a subset of the domains it searched, by the scan's
own rule: scans with ``-- --domains features,waveform,latent`` read as ``features,waveform`` give exactly
what a scan of those two domains alone reports (the domains run in order on one random stream), so one
set of searches compares several sets of domains (``summaries``).

``--extra-scan=ARGS`` (repeatable, e.g. ``'--extra-scan=--domains spectrum'``) also runs ``python -m
core.scan`` with those options on each checkpoint (its report beside the first, ``..._extra<N>.json``) and
adds the domains it searched to the first report's, so that readings can pool domains searched apart
(each such scan has its own random stream: the numbers a scan of all the domains at once would give
differ by the search's chance, not in kind).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, this_command  # noqa: E402

#: Thresholds at which the compared rule's rates are reported (the scan's own default is 3).
COMPARED_THRESHOLDS = (2.5, 3.0, 3.5)

#: The verdict rule of ``core.scan`` the rows are read with (``pooled``: the domains' indices pooled per class,
#: since 2026-12-04); rows kept from a run under another rule (no ``rule``: the largest single-domain index)
#: whose reports are gone cannot be read again and are summarised apart.
RULE = "pooled"

TARGETS = {"auroc": 0.95, "target_accuracy": 0.90, "false_positive_rate": 0.10, "resnet_seconds": 300.0}


def truth(path: Path) -> dict[str, Any]:
    """What the checkpoint really is: its attack (``clean`` when none) and target word, and whether a
    defense was run on it. Only the benchmark reads this; the scan gets the weights and classes."""
    from core.checkpoint import read_metadata

    meta = read_metadata(path)
    attack = meta["provenance"].get("attack")
    target = None
    if attack:
        index = (attack.get("params") or {}).get("target")
        target = meta["classes"][index] if isinstance(index, int) else None
    return {
        "architecture": meta["architecture"],
        "db_floor": meta["front_end"].get("db_floor", "batch"),
        "sample_rate": meta["front_end"]["sample_rate"],
        "train_seed": meta["provenance"].get("seed"),
        "attack": attack["name"] if attack else "clean",
        "target": target,
        "repaired": bool(meta["provenance"].get("defenses")),
    }


def scan_one(
    path: Path, args: argparse.Namespace, work: Path, options: list[str] | None = None, tag: str = ""
) -> dict[str, Any]:
    """``python -m core.scan`` on one checkpoint with ``options`` (default: the benchmark's scan options;
    skipped when its report exists for the same command)."""
    out = work / f"{args.group}_{path.parent.name}_{path.stem}{tag}.json"  # grids of other seeds share stems
    cmd = [sys.executable, "-m", "core.scan", "--model", str(path), "--data", args.data, "--out", str(out)]
    options = args.scan_args if options is None else options
    cmd += (["--vocab", args.vocab] if args.vocab else []) + ["--threads", str(args.threads), *options]
    if out.is_file() and json.loads(out.read_text()).get("benchmark_command") == cmd[1:]:
        return json.loads(out.read_text())
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    report = json.loads(out.read_text())
    report["benchmark_command"] = cmd[1:]
    out.write_text(json.dumps(report, indent=1))
    return report


def with_extra_scans(report: dict[str, Any], path: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """``report`` with the domains of each ``--extra-scan`` of ``path`` added (a domain it has is kept)."""
    if "error" in report or not args.extra_scan:
        return report
    domains = dict(report["domains"])
    for n, options in enumerate(args.extra_scan, 1):
        extra = scan_one(path, args, work, shlex.split(options), f"_extra{n}")
        if "error" in extra:
            return {"error": f"extra scan {options!r}: {extra['error']}"}
        domains.update({d: r for d, r in extra["domains"].items() if d not in domains})
    return {**report, "domains": domains}


def grid_scans(folders: list[str]) -> dict[str, dict[str, Any]]:
    """The scan cells core.grid kept in ``folders`` made with ``python -m core.scan``'s defaults and seed 0,
    by the SHA-256 of the checkpoint they scanned."""
    import dataclasses

    from core.scan import ScanConfig

    defaults = ScanConfig.searched(dataclasses.asdict(ScanConfig()))  # how a scan ran (device, layout) aside
    found: dict[str, dict[str, Any]] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("scan_*_seed0.json")):
            report = json.loads(path.read_text())
            if report.get("model_sha256") and ScanConfig.searched(report["config"]) == defaults:
                found[report["model_sha256"]] = {**report, "source": f"core.grid scan cell {path}"}
    return found


#: A scan's settings that read its searches, not make them: a kept report is read by today's defaults of these.
READ_FIELDS = ("threshold", "standout", "reference")


def kept_reports(patterns: list[str]) -> dict[str, dict[str, Any]]:
    """Reports ``python -m core.scan`` wrote with its default search settings and seed 0 that ``patterns``
    (globs) name, by the resolved path of the checkpoint each scanned (a report whose checkpoint is gone is left
    out), each set to be read by today's verdict rule (:data:`READ_FIELDS`), not the one it was made with."""
    import dataclasses

    from core.scan import ScanConfig

    today = {k: getattr(ScanConfig(), k) for k in READ_FIELDS}

    def searched(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in ScanConfig.searched(config).items() if k not in READ_FIELDS}

    defaults = searched(dataclasses.asdict(ScanConfig()))
    found: dict[str, dict[str, Any]] = {}
    for path in sorted({Path(x) for pattern in patterns for x in glob.glob(pattern)}):
        report = json.loads(path.read_text())
        model = Path(report.get("model", ""))
        if "domains" in report and model.is_file() and searched(report.get("config", {})) == defaults:
            config = {**report["config"], **today}  # read by today's rule, as a scan made now would be
            found[str(model.resolve())] = {**report, "config": config, "source": f"python -m core.scan report {path}"}
    return found


def row_of(path: Path, report: dict[str, Any], group: str, readings: list[str]) -> dict[str, Any]:
    """One checkpoint's truth and its scan read under each of ``readings`` (comma lists of domains; the
    first gives the row's verdict, the others go under ``readings``)."""
    row: dict[str, Any] = {"group": group, "model": str(path), **truth(path)}
    if "error" in report:
        return {**row, "error": report["error"]}
    read = {name: read_as(report, name) for name in readings}
    return {
        **row,
        **read[readings[0]],
        "reading": readings[0],
        "readings": {name: r for name, r in read.items() if name != readings[0]},
        "scan": stored(report),
        "seconds": report.get("seconds"),
        # where the scan ran: a core.grid scan cell made on the GPU machine names cuda in its config
        "device": (report.get("machine") or {}).get("device") or report.get("config", {}).get("device"),
        "source": report.get("source", "python -m core.scan"),
    }


def stored(report: dict[str, Any]) -> dict[str, Any]:
    """What a row keeps of its scan so that a later rule can read it again once the report in ``--work`` is
    gone (a fresh checkout has no ``runs/``): the classes, the threshold, each domain's sizes and success."""
    from core.scan.reference import SIZE_FIELDS

    kept = ("threshold", "standout", *SIZE_FIELDS)
    return {
        "classes": report["classes"],
        "config": {k: report["config"][k] for k in kept if k in report["config"]},
        "domains": {d: {k: r[k] for k in ("sizes", "success") if k in r} for d, r in report.get("domains", {}).items()},
    }


def reread(row: dict[str, Any]) -> dict[str, Any]:
    """A kept row read again by today's rule from the sizes it stored (:func:`stored`), under the readings it
    was made with; a row from before rows stored their sizes stays as it was."""
    if "error" in row or "domains" not in row.get("scan", {}):
        return row
    names = [row["reading"], *row.get("readings", {})]
    read = {name: read_as(row["scan"], name) for name in names}
    return {**row, **read[names[0]], "readings": {name: read[name] for name in names[1:]}}


def sized(row: dict[str, Any]) -> bool:
    """Whether a row kept its scan's sizes (:func:`stored`): only such rows are read by today's rule."""
    return "error" not in row and "domains" in row.get("scan", {})


def reference_of(row: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The clean rows ``row``'s scan is read against: the other clean, unrepaired models of its architecture,
    classes, dB floor (``db_floor``: rows made before rows kept it are of batch-floor models) and sample rate
    (:func:`rate_of`) among ``rows`` whose scans searched with the same settings and every domain of its reading,
    never its own checkpoint nor one trained with its training seed."""
    from core.scan.reference import SIZE_FIELDS

    def settings(r: dict[str, Any]) -> dict[str, Any]:
        return {k: r["scan"]["config"].get(k) for k in SIZE_FIELDS}

    own, domains = row.get("train_seed"), _domains(row)
    return [
        c
        for c in rows
        if sized(c)
        and c["attack"] == "clean"
        and not c["repaired"]
        and Path(c["model"]).resolve() != Path(row["model"]).resolve()
        and c["architecture"] == row["architecture"]
        and c.get("db_floor", "batch") == row.get("db_floor", "batch")
        and rate_of(c) == rate_of(row)
        and c["scan"]["classes"] == row["scan"]["classes"]
        and settings(c) == settings(row)
        and (own is None or c.get("train_seed") != own)
        and all(d in c["scan"]["domains"] for d in domains)
    ]


def rate_of(row: dict[str, Any]) -> int:
    """A row's model's sample rate, as ``python -m core.scan --reference`` compares it. Rows made before
    2026-12-08 did not keep it; their grids trained Ultrasonic, and the clean model beside it (``*_44k``),
    at 44.1 kHz and every other model at 16 kHz."""
    if "sample_rate" in row:
        return int(row["sample_rate"])
    return 44100 if row["attack"] == "ultrasonic" or Path(row["model"]).stem.endswith("_44k") else 16000


def _domains(row: dict[str, Any]) -> list[str]:
    """The domains a row's verdict reads (its reading's, else every domain its scan kept)."""
    return [d for d in row["reading"].split(",") if d] or list(row["scan"]["domains"])


def with_reference(row: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``row`` with its reading against the clean reference ``rows`` give it (:func:`reference_of`) under
    ``against_reference`` (with how many models the reference holds); without it when there is none."""
    from core.scan.reference import reference_sizes

    plain = {k: v for k, v in row.items() if k != "against_reference"}
    refs = reference_of(row, rows) if sized(row) else []
    if not refs:
        return plain
    sizes = reference_sizes([c["scan"] for c in refs], _domains(row))
    read = read_as(row["scan"], row["reading"], sizes)
    return {**plain, "against_reference": {**read, "reference_models": len(refs)}}


def read_as(report: dict[str, Any], reading: str, reference: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """The verdict of a scan report read on only the domains ``reading`` names (``""``: all it searched),
    by the scan's own rule (:func:`core.scan.verdict`), its anomaly indices computed again from the sizes the
    report kept (:func:`core.scan.anomaly_index` of today, so a change of the statistic re-reads every kept
    scan). The domains are searched in order with one random stream, so a reading of the first ones is exactly
    what a scan of those alone reports; another subset reads the same searches. With ``reference`` (a clean
    reference's sizes per domain, :func:`core.scan.reference.reference_sizes`) the indices are of the sizes'
    ratios to it, and an unflagged scan points at the pooled index's top class, as ``--reference`` reads."""
    from core.scan import ScanConfig, lead, pooled_index, verdict

    wanted = [d for d in reading.split(",") if d] or list(report.get("domains", {}))
    missing = [d for d in wanted if d not in report.get("domains", {})]
    if missing:
        return {"error": f"the scan has no {', '.join(missing)} domain"}
    records = {d: reindexed(report["domains"][d], None if reference is None else reference[d]) for d in wanted}
    standout = report["config"].get("standout", ScanConfig().standout)  # a scan from before it: today's
    target, confidence = verdict(records, report["config"]["threshold"], standout)
    sub = {**report, "domains": records, "suspected_target": None if target is None else report["classes"][target]}
    return {
        "rule": RULE,
        "flagged": target is not None,
        "standout": standout,
        "lead": round(lead(pooled_index(records))[1], 3),
        "suspected_target": sub["suspected_target"],
        "confidence": round(confidence, 3),
        "anomaly_index_max": {d: max(r["anomaly_index"]) for d, r in records.items()},
        "most_anomalous": most_anomalous(sub, pooled=reference is not None),
        "tops": tops(sub),
        **largest(sub),
    }


def reindexed(record: dict[str, Any], reference: list[float] | None = None) -> dict[str, Any]:
    """A domain's record with its anomaly indices computed from its sizes (``None``: no trigger found), or from
    their ratios to a clean ``reference``'s sizes of the domain."""
    import math

    from core.scan import anomaly_index
    from core.scan.reference import relative_sizes

    if "sizes" not in record:
        return record
    sizes = [math.inf if s is None else s for s in record["sizes"]]
    values = sizes if reference is None else relative_sizes(record["sizes"], reference)
    return {**record, "anomaly_index": [round(a, 3) for a in anomaly_index(values)]}


def tops(report: dict[str, Any]) -> dict[str, list[str]]:
    """The two classes each candidate pointing rule ranks first on this scan, the first first: the pooled
    index's (``pooled``) and each domain's own, so the rule an unflagged scan points by
    (:func:`core.scan.pointed_class`) can be compared with the others on the same searches."""
    from core.scan import pooled_index

    classes, records = report["classes"], report.get("domains", {})
    if not records:
        return {}
    columns = {"pooled": pooled_index(records), **{d: r["anomaly_index"] for d, r in records.items()}}
    ranked = {name: sorted(range(len(values)), key=lambda i: -values[i]) for name, values in columns.items()}
    return {name: [classes[i] for i in order[:2]] for name, order in ranked.items()}


def largest(report: dict[str, Any]) -> dict[str, Any]:
    """The verdict's statistic before 2026-12-04, for comparison: the largest anomaly index of any single
    domain (``largest_max``) and its class (``largest_top``); None without domains."""
    records = report.get("domains", {})
    if not records:
        return {"largest_max": None, "largest_top": None}
    value, top = max((a, -i) for r in records.values() for i, a in enumerate(r["anomaly_index"]))
    return {"largest_max": round(value, 3), "largest_top": report["classes"][-top]}


def most_anomalous(report: dict[str, Any], pooled: bool = False) -> str | None:
    """The class a scan report points at, by the scan's own rule (:func:`core.scan.pointed_class`; ``pooled``:
    as a scan read against a clean reference points)."""
    from core.scan import pointed_class

    classes = report["classes"]
    suspected = report.get("suspected_target")
    index, _ = pointed_class(report.get("domains", {}), classes.index(suspected) if suspected else None, pooled)
    return None if index is None else classes[index]


def auroc(positives: list[float], negatives: list[float]) -> float | None:
    """Probability that a backdoored model scores above a clean one (ties count half)."""
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def rows_as(rows: list[dict[str, Any]], reading: str) -> list[dict[str, Any]]:
    """``rows`` with the verdict of another of their readings (rows without it are left out)."""
    out = []
    for r in rows:
        if r.get("reading") == reading:
            out.append(r)
        elif reading in r.get("readings", {}):
            out.append({**r, **r["readings"][reading], "reading": reading})
    return out


def share(items: list[dict[str, Any]], test) -> float | None:
    """The share of ``items`` that pass ``test`` (None when there are none)."""
    return sum(1 for r in items if test(r)) / len(items) if items else None


def counts(names) -> dict[str, int]:
    """How often each name occurs, most frequent first."""
    out: dict[str, int] = {}
    for name in names:
        out[str(name)] = out.get(str(name), 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def compared_summary(backdoored: list[dict[str, Any]], clean: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """AUROC, the share whose top class is the target, and rates at :data:`COMPARED_THRESHOLDS` of another
    rule's statistic (``{key}_max``, its class ``{key}_top``)."""
    top, most = f"{key}_top", f"{key}_max"
    return {
        "models": {"backdoored": len(backdoored), "clean": len(clean)},
        "auroc": auroc([r[most] for r in backdoored], [r[most] for r in clean]),
        "top_is_target": share(backdoored, lambda r: r[top] == r["target"]),
        "clean_top": counts(r[top] for r in clean),
        **{
            f"at_{t:g}": {
                "detection_rate": share(backdoored, lambda r, t=t: r[most] > t),
                "false_positive_rate": share(clean, lambda r, t=t: r[most] > t),
                "target_accuracy": share(backdoored, lambda r, t=t: r[most] > t and r[top] == r["target"]),
            }
            for t in COMPARED_THRESHOLDS
        },
    }


def seconds_by_architecture(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean seconds of a scan per architecture over ``rows`` that record it."""
    seconds: dict[str, float] = {}
    for arch in sorted({r["architecture"] for r in rows}):
        times = [r["seconds"] for r in rows if r["architecture"] == arch and r.get("seconds") is not None]
        if times:
            seconds[arch] = round(sum(times) / len(times), 1)
    return seconds


def pointing(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per candidate pointing rule (:func:`tops`), on how many of ``rows`` its first class is the target,
    and on how many the target is one of its first two."""
    names = sorted({name for r in rows for name in r["tops"]})
    return {
        "models": len(rows),
        "target_first": {n: sum(1 for r in rows if r["tops"].get(n, [None])[0] == r["target"]) for n in names},
        "target_in_first_two": {n: sum(1 for r in rows if r["target"] in r["tops"].get(n, [])) for n in names},
    }


def corpus_of(group: str) -> str:
    """The corpus a group's rows come from: its name up to the first ``_`` (``fsdd_xeon`` -> ``fsdd``)."""
    return group.split("_", 1)[0]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if "error" not in r]
    backdoored = [r for r in ok if r["attack"] != "clean" and not r["repaired"]]
    clean = [r for r in ok if r["attack"] == "clean"]
    repaired = [r for r in ok if r["repaired"]]

    seconds = seconds_by_architecture([r for r in ok if r.get("device") != "cuda"])
    out = {
        "backdoored_models": len(backdoored),
        "clean_models": len(clean),
        "repaired_models": len(repaired),
        "errors": len(rows) - len(ok),
        "detection_rate": share(backdoored, lambda r: r["flagged"]),
        "false_positive_rate": share(clean, lambda r: r["flagged"]),
        "auroc": auroc([r["confidence"] for r in backdoored], [r["confidence"] for r in clean]),
        "target_accuracy": share(backdoored, lambda r: r["flagged"] and r["suspected_target"] == r["target"]),
        # flagged or not, the class the scan points at (and whose trigger a repair would unlearn)
        "most_anomalous_is_target": share(backdoored, lambda r: r.get("most_anomalous") == r["target"]),
        # the same pick on the clean models: how often each class comes first without a backdoor (every
        # backdoored model here has one target, so a pick that favours it anyway is no evidence)
        "clean_most_anomalous": counts(r.get("most_anomalous") for r in clean),
        "repaired_still_flagged": share(repaired, lambda r: r["flagged"]),
        # unflagged backdoored models: how often each candidate rule's class is the target (the class a
        # repair unlearns when the scan flags nothing; the scan's own rule is core.scan.POINTING_DOMAINS')
        "pointing_unflagged": pointing([r for r in backdoored if not r["flagged"] and r.get("tops")]),
        # the rule the verdict used before 2026-12-04 (the largest single-domain index, not the domains
        # pooled), over the rows whose scan report it was read from
        "largest_single_domain": compared_summary(
            [r for r in backdoored if r.get("largest_max") is not None],
            [r for r in clean if r.get("largest_max") is not None],
            "largest",
        ),
        # rows read with the standout margin (made since rows stored their sizes); the others keep the flags of
        # the threshold alone, which the margin can only remove: their rates are upper bounds of today's
        "read_with_standout": sum("standout" in r for r in backdoored + clean),
        "seconds_per_scan": seconds,  # scans not on a GPU (a cell of --device auto on a CPU names "auto")
        "seconds_per_scan_cuda": seconds_by_architecture([r for r in ok if r.get("device") == "cuda"]),
    }
    out["meets"] = {
        "auroc": out["auroc"] is not None and out["auroc"] >= TARGETS["auroc"],
        "target_accuracy": out["target_accuracy"] is not None and out["target_accuracy"] >= TARGETS["target_accuracy"],
        "false_positive_rate": out["false_positive_rate"] is not None
        and out["false_positive_rate"] <= TARGETS["false_positive_rate"],
        "resnet_seconds": "resnet" in seconds and seconds["resnet"] <= TARGETS["resnet_seconds"],
    }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--group",
        required=True,
        help="name of these rows: their corpus (asc10, fsdd, synth), optionally _ and a suffix (fsdd_xeon)",
    )
    p.add_argument("--data", required=True, help="clean data the scan may use (its training split)")
    p.add_argument("--vocab", default=None, help="vocabulary of the data, as the models were trained")
    p.add_argument(
        "--models", required=True, action="append", help="glob of clean and backdoored checkpoints (repeatable)"
    )
    p.add_argument(
        "--repaired", action="append", default=[], help="glob of repaired checkpoints (share still flagged; repeatable)"
    )
    p.add_argument("--work", default="runs/scan", help="folder of the per-model scan reports (resumable)")
    p.add_argument("--out", default="benchmarks/results/scan.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--scans",
        action="append",
        default=[],
        help="glob of python -m core.scan reports (default settings, seed 0) that stand for the scans of the "
        "checkpoints they name (repeatable; not with scan options)",
    )
    p.add_argument(
        "--grid-scans",
        action="append",
        default=[],
        help="a core.grid --work folder whose scan cells (default settings, seed 0) stand for the scans of "
        "their checkpoints (repeatable; not with scan options)",
    )
    p.add_argument(
        "--read-as",
        action="append",
        default=None,
        help="comma list of domains to read each scan on (repeatable; the first gives the summary, the others "
        "'summaries'; default: every domain it searched), e.g. features,waveform out "
        "of scans that also searched latent",
    )
    p.add_argument(
        "--extra-scan",
        action="append",
        default=[],
        help="options of a second python -m core.scan per checkpoint (repeatable; give them after '=', e.g. "
        "'--extra-scan=--domains spectrum'); its domains are added to the first scan's for the readings",
    )
    args, rest = p.parse_known_args(argv)
    args.read_as = args.read_as or [""]
    args.scan_args = [a for a in rest if a != "--"]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    patterns = [*args.models, *args.repaired]
    paths = sorted({Path(x) for pattern in patterns for x in glob.glob(pattern)})
    if not paths:
        print(f"--models: no checkpoint matches {', '.join(args.models)}", file=sys.stderr)
        return 2
    kept_scans = grid_scans(args.grid_scans) if not args.scan_args else {}
    reports = kept_reports(args.scans) if not args.scan_args else {}
    rows = []
    for path in paths:
        from core.cli.grid import _file_digest

        report = (kept_scans.get(_file_digest(path)) if kept_scans else None) or reports.get(str(path.resolve()))
        report = with_extra_scans(report or scan_one(path, args, work), path, args, work)
        rows.append(row_of(path, report, args.group, args.read_as))
        r = rows[-1]
        verdict = r.get("error") or (f"flagged {r['suspected_target']}" if r["flagged"] else "not flagged")
        print(f"{path.name}: {verdict} (truth: {r['attack']}, target {r['target']})", flush=True)
    out = Path(args.out)
    earlier = json.loads(out.read_text()) if out.is_file() else {}
    kept = [reread(r) for r in earlier.get("rows", []) if r["group"] != args.group]
    every = [with_reference(r, kept + rows) for r in kept + rows]
    current = [r for r in every if "error" in r or (r.get("rule") == RULE and sized(r))]
    before = [r for r in every if "error" not in r and r.get("rule") == RULE and not sized(r)]
    older = [r for r in every if "error" not in r and r.get("rule") != RULE]
    both = [r for r in current if "against_reference" in r]
    read_against = [{**r, **r["against_reference"]} for r in both]
    commands = {**earlier.get("commands", {}), args.group: this_command()}
    from core.runtime import machine_info

    result = {
        "command": " ; ".join(commands.values()),
        "commands": commands,
        "machine": machine_info(),
        "machines": {**earlier.get("machines", {}), args.group: machine_info()},  # each group's own
        "targets": TARGETS,
        "summary": summarise(current),
        "summaries": {name: summarise(rows_as(current, name)) for name in args.read_as[1:]},
        "reference_reading": {
            "note": "the rows with a clean reference (other clean models of the architecture and classes, other "
            "training seeds, among the rows) read plainly and against it, side by side",
            "rows_without_reference": sum(1 for r in current if sized(r)) - len(both),
            "reference_models": counts(r["against_reference"]["reference_models"] for r in both),
            "plain": summarise(both),
            "reference": summarise(read_against),
            "architectures": {
                arch: {
                    "plain": summarise([r for r in both if r["architecture"] == arch]),
                    "reference": summarise([r for r in read_against if r["architecture"] == arch]),
                }
                for arch in sorted({r["architecture"] for r in both})
            },
        },
        "corpora": {
            corpus: summarise([r for r in current if corpus_of(r["group"]) == corpus])
            for corpus in sorted({corpus_of(r["group"]) for r in current})
        },
        "rows": every,
    }
    if before:
        groups = sorted({r["group"] for r in before})
        result["summary_before_sizes"] = {
            "note": f"rows of {', '.join(groups)} made before rows kept their scan's sizes: read without today's "
            "standout margin and with no reference; their reports are not here to read again",
            **summarise(before),
        }
    if older:
        groups = sorted({r["group"] for r in older})
        result["summary_earlier_rule"] = {
            "note": f"rows of {', '.join(groups)} read by an earlier verdict rule (the largest single-domain "
            "index); their reports are not here to read again",
            **summarise(older),
        }
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
