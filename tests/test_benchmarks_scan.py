"""benchmarks/scan.py's scoring: AUROC, the summary against the issue's targets, and which core.grid scan
cells may stand for a scan of their checkpoint (default settings, seed 0, the checkpoint's SHA-256)."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scan import auroc, grid_scans, largest, most_anomalous, summarise  # noqa: E402
from core.scan import ScanConfig, pointed_class, pooled_index  # noqa: E402


def test_auroc_is_the_share_of_backdoored_clean_pairs_ranked_right_ties_half():
    assert auroc([5.0, 4.0], [1.0, 2.0]) == 1.0
    assert auroc([1.0], [2.0]) == 0.0
    assert auroc([2.0, 3.0], [2.0]) == pytest.approx(0.75)
    assert auroc([], [1.0]) is None


def row(attack, flagged, target, suspected, confidence, arch="smallcnn", repaired=False, top=None):
    return {"attack": attack, "flagged": flagged, "target": target, "suspected_target": suspected,
            "confidence": confidence, "architecture": arch, "repaired": repaired, "seconds": 10.0,
            "most_anomalous": top or suspected}  # fmt: skip


def test_the_summary_counts_detections_false_positives_targets_and_repaired_still_flagged():
    rows = [
        row("badnets", True, "up", "up", 5.0),
        row("blend", True, "up", "no", 4.0),  # flagged, wrong target
        row("jingleback", False, "up", None, 1.0, top="up"),  # pointed at, not flagged
        row("clean", False, None, None, 2.0),
        row("clean", True, None, "yes", 3.5, arch="resnet"),
        row("badnets", False, "up", None, 1.5, repaired=True),
        {"attack": "clean", "error": "failed", "architecture": "smallcnn", "repaired": False},
    ]
    # a scan the GPU machine made is timed apart from the CPU's (the target is a CPU's)
    gpu = {**row("badnets", True, "up", "up", 6.0, arch="resnet", repaired=True), "seconds": 900.0, "device": "cuda"}
    assert summarise([*rows, gpu])["seconds_per_scan"] == {"resnet": 10.0, "smallcnn": 10.0}
    assert summarise([*rows, gpu])["seconds_per_scan_cuda"] == {"resnet": 900.0}
    s = summarise(rows)
    assert (s["backdoored_models"], s["clean_models"], s["repaired_models"], s["errors"]) == (3, 2, 1, 1)
    assert s["detection_rate"] == pytest.approx(2 / 3) and s["false_positive_rate"] == 0.5
    assert s["target_accuracy"] == pytest.approx(1 / 3) and s["repaired_still_flagged"] == 0.0
    assert s["most_anomalous_is_target"] == pytest.approx(2 / 3)
    assert s["clean_most_anomalous"] == {"yes": 1, "None": 1}  # the flagged clean model's class; one points nowhere
    assert s["auroc"] == pytest.approx((2 + 2 + 0) / 6)  # 5 and 4 beat both clean scores, 1 beats none
    assert s["meets"] == {"auroc": False, "target_accuracy": False, "false_positive_rate": False,
                          "resnet_seconds": True}  # fmt: skip


def test_only_grid_scan_cells_made_like_python_m_core_scan_stand_for_a_scan(tmp_path):
    defaults = dataclasses.asdict(ScanConfig())
    cells = {
        "scan_smallcnn_badnets_seed0.json": {"config": {**defaults, "device": "cpu"}, "model_sha256": "aa"},
        # made before the search copy's layout settings existed: how it ran is not what it searched
        "scan_resnet_clean_seed0.json": {
            "config": {k: v for k, v in defaults.items() if k not in ("memory_format", "fold_batchnorm", "amp")},
            "model_sha256": "dd",
        },
        "scan_resnet_badnets_seed0.json": {"config": {**defaults, "steps": 50}, "model_sha256": "bb"},
        "scan_smallcnn_blend_seed0.json": {"config": defaults},  # no checkpoint named: not used
        "scan_smallcnn_badnets_seed1.json": {"config": {**defaults, "seed": 1}, "model_sha256": "cc"},
        "scan_smallcnn_pbsm_seed0.json": {"config": {**defaults, "amp": "bf16"}, "model_sha256": "ee"},  # rounded apart
    }
    for name, report in cells.items():
        (tmp_path / name).write_text(json.dumps(report))
    found = grid_scans([str(tmp_path)])
    assert sorted(found) == ["aa", "dd"] and found["aa"]["source"].startswith("core.grid scan cell ")


def test_the_class_a_report_points_at_is_its_target_or_the_spectrum_s_top_or_the_largest_index():
    domains = {"features": {"anomaly_index": [0.1, 2.0, 0.3]}, "waveform": {"anomaly_index": [2.5, 0.0, 0.2]}}
    assert most_anomalous({"suspected_target": None, "classes": ["a", "b", "c"], "domains": domains}) == "a"
    assert most_anomalous({"suspected_target": "c", "classes": ["a", "b", "c"], "domains": domains}) == "c"
    # unflagged with the spectrum domain searched: its top class, though another domain's index is larger
    spectrum = {**domains, "spectrum": {"anomaly_index": [0.0, 0.4, 1.9]}}
    assert most_anomalous({"suspected_target": None, "classes": ["a", "b", "c"], "domains": spectrum}) == "c"
    assert most_anomalous({"suspected_target": "b", "classes": ["a", "b", "c"], "domains": spectrum}) == "b"
    assert pointed_class(spectrum, None) == (2, "spectrum") and pointed_class(spectrum, 1) == (1, "features")
    # with the mix domain searched too, its top class comes before the spectrum's
    mixed = {**spectrum, "mix": {"anomaly_index": [0.0, 1.2, 0.4]}}
    assert pointed_class(mixed, None) == (1, "mix") and pointed_class(mixed, 2) == (2, "spectrum")
    assert pointed_class({}, None) == (None, None)


def test_the_compared_rule_is_the_largest_single_domain_index_and_its_class():
    report = {
        "classes": ["a", "b", "c", "d"],
        "domains": {"features": {"anomaly_index": [0.0, 3.4, 0.1, 2.0]}, "waveform": {"anomaly_index": [0, 0, 0, 2.5]}},
    }
    assert largest(report) == {"largest_max": 3.4, "largest_top": "b"}  # pooled, d leads: (2 + 2.5) / sqrt 2
    assert pooled_index(report["domains"])[3] > pooled_index(report["domains"])[1]
    assert largest({"classes": ["a"], "domains": {}}) == {"largest_max": None, "largest_top": None}


def test_a_scan_read_on_a_subset_of_its_domains_gets_the_scan_s_own_verdict_there():
    from benchmarks.scan import read_as, rows_as
    from core.scan import anomaly_index

    report = {
        "classes": ["a", "b", "c"],
        "config": {"threshold": 3.0},
        "domains": {  # the stored indices are an earlier rule's: the reading computes them from the sizes
            "features": {"anomaly_index": [0.5, 9.0, 0.0], "sizes": [0.5, 0.4, 0.6]},
            "latent": {"anomaly_index": [0.0, 0.0, 5.0], "sizes": [0.5, 0.45, 0.05]},
        },
    }
    features, latent = anomaly_index([0.5, 0.4, 0.6]), anomaly_index([0.5, 0.45, 0.05])
    assert max(features) < 3.0 < latent[2]
    every, first = read_as(report, ""), read_as(report, "features")
    assert every["flagged"] and every["suspected_target"] == "c"
    assert every["confidence"] == pytest.approx(latent[2] / math.sqrt(2), abs=1e-3)  # the domains pooled
    assert not first["flagged"] and first["suspected_target"] is None and first["most_anomalous"] == "b"
    assert first["anomaly_index_max"] == {"features": pytest.approx(features[1], abs=1e-3)}
    assert read_as(report, "waveform") == {"error": "the scan has no waveform domain"}
    rows = [{"attack": "x", "reading": "", **every, "readings": {"features": first}}, {"attack": "y", "reading": ""}]
    as_first = rows_as(rows, "features")
    assert len(as_first) == 1 and as_first[0]["flagged"] is False and as_first[0]["reading"] == "features"


def test_a_row_keeps_its_scan_s_sizes_and_is_read_again_by_today_s_rule_from_them():
    from benchmarks.scan import read_as, reread, stored

    report = {
        "classes": ["a", "b", "c", "d"],
        "config": {"threshold": 3.0, "steps": 200},
        "domains": {
            "features": {"anomaly_index": [0.0, 0.0, 0.0, 0.0], "sizes": [0.5, 0.02, 0.6, 0.55], "success": [1.0] * 4},
            "mix": {"anomaly_index": [0.0, 0.0, 0.0, 0.0], "sizes": [1.2, 0.01, 1.9, None], "success": [0.5] * 4},
        },
    }
    now = read_as(report, "")
    assert now["flagged"] and now["suspected_target"] == "b"
    row = {"group": "g", "reading": "", **now, "readings": {"features": read_as(report, "features")}}
    row["scan"] = stored(report)
    assert row["scan"]["domains"]["mix"] == {"sizes": [1.2, 0.01, 1.9, None], "success": [0.5] * 4}
    stale = {**row, "flagged": False, "suspected_target": None, "confidence": 0.1, "readings": {"features": {}}}
    again = reread(stale)  # an earlier rule's reading, read again from the stored sizes
    assert again["flagged"] and again["suspected_target"] == "b" and again["confidence"] == now["confidence"]
    assert again["readings"]["features"] == read_as(report, "features")
    old = {k: v for k, v in stale.items() if k != "scan"}
    assert reread(old) == old  # a row from before rows kept their sizes stays as it was
    assert now["standout"] == 1.25 and now["lead"] > 1.25  # read with today's margin; "b" stands well clear


def test_a_stored_row_is_read_with_the_standout_margin_its_scan_ran_with_else_today_s():
    from benchmarks.scan import read_as, stored, summarise

    # two classes equally small in both domains: above the threshold, but neither stands out
    sizes = [0.5, 0.02, 0.021, 0.55, 0.6, 0.45, 0.52, 0.58]
    domain = {"anomaly_index": [0.0] * 8, "sizes": sizes, "success": [1.0] * 8}
    report = {"classes": list("abcdefgh"), "config": {"threshold": 3.0}, "domains": {"x": domain, "y": domain}}
    today = read_as(report, "")
    assert not today["flagged"] and today["confidence"] > 3.0 and today["lead"] < 1.0
    kept = stored({**report, "config": {"threshold": 3.0, "standout": 0.0}})
    assert kept["config"] == {"threshold": 3.0, "standout": 0.0}
    assert read_as(kept, "")["flagged"]  # a scan run with the margin off is read so
    before = {"attack": "badnets", "target": "b", "flagged": True, "suspected_target": "b", "confidence": 5.0}
    rows = [  # the second: a row from before rows stored sizes, its flag as it was
        {"attack": "clean", "architecture": "smallcnn", "repaired": False, "model": "m", **today},
        {"architecture": "smallcnn", "repaired": False, "model": "n", **before},
    ]
    s = summarise(rows)
    assert s["read_with_standout"] == 1 and s["false_positive_rate"] == 0.0 and s["detection_rate"] == 1.0


def test_the_compared_summary_counts_only_rows_read_with_it():
    rows = [
        {**row("badnets", True, "up", "up", 5.0), "largest_max": 4.0, "largest_top": "up"},
        {**row("blend", False, "up", None, 1.0), "largest_max": 2.8, "largest_top": "no"},
        row("jingleback", False, "up", None, 1.0),  # an older report without that reading
        {**row("clean", False, None, None, 2.0), "largest_max": 3.2, "largest_top": "yes"},
    ]
    old = summarise(rows)["largest_single_domain"]
    assert old["models"] == {"backdoored": 2, "clean": 1}
    assert old["auroc"] == 0.5 and old["top_is_target"] == 0.5
    assert old["at_2.5"] == {"detection_rate": 1.0, "false_positive_rate": 1.0, "target_accuracy": 0.5}
    assert old["at_3.5"] == {"detection_rate": 0.5, "false_positive_rate": 0.0, "target_accuracy": 0.5}


def test_an_extra_scan_adds_its_domains_to_the_readings_and_is_reused(tmp_path):
    from benchmarks.scan import main as bench_main
    from core import models
    from core.checkpoint import make_metadata, save_checkpoint
    from core.features import FrontEndConfig
    from tests.conftest import TINY_WORDS, write_speech_commands

    data = write_speech_commands(tmp_path / "sc", speakers=6, per_speaker=1)
    front = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)
    torch.manual_seed(0)
    net = models.build("smallcnn", len(TINY_WORDS), front).eval()
    grid = tmp_path / "grid"
    grid.mkdir()
    save_checkpoint(
        grid / "train_smallcnn_clean.safetensors", net, make_metadata("smallcnn", TINY_WORDS, front.to_dict())
    )
    quick = "--steps 3 --batch-size 2 --clean-ratio 0.5 --device cpu --quiet"
    out, work = tmp_path / "scan.json", tmp_path / "work"
    argv = ["--group", "t", "--data", str(data), "--models", str(grid / "*.safetensors"), "--work", str(work)]
    argv += ["--out", str(out), "--read-as", "features,waveform", "--read-as", "features,waveform,spectrum"]
    argv += [f"--extra-scan=--domains spectrum {quick}", "--", "--domains", "features,waveform", *quick.split()]
    # a row another group left in the results, read by the earlier rule (no "rule"), its report gone
    older = {**row("badnets", True, "up", "up", 5.0), "group": "old", "model": "gone.safetensors"}
    out.write_text(json.dumps({"rows": [older]}))
    assert bench_main(argv) == 0
    first = json.loads(out.read_text())
    assert [x["group"] for x in first["rows"]] == ["old", "t"]  # kept, but not pooled into the summary
    assert first["summary"]["backdoored_models"] == 0 and first["summary"]["clean_models"] == 1
    assert first["summary_earlier_rule"]["backdoored_models"] == 1 and "old" in first["summary_earlier_rule"]["note"]
    first["rows"] = first["rows"][1:]
    (r,) = first["rows"]
    assert r["rule"] == "pooled"
    assert r["reading"] == "features,waveform" and set(r["anomaly_index_max"]) == {"features", "waveform"}
    pooled = r["readings"]["features,waveform,spectrum"]
    assert set(pooled["anomaly_index_max"]) == {"features", "waveform", "spectrum"}
    extra = json.loads((work / "t_grid_train_smallcnn_clean_extra1.json").read_text())
    assert pooled["anomaly_index_max"]["spectrum"] == max(extra["domains"]["spectrum"]["anomaly_index"])
    assert first["summaries"]["features,waveform,spectrum"]["clean_models"] == 1
    stamp = {p.name: p.stat().st_mtime_ns for p in work.glob("*.json")}
    assert bench_main(argv) == 0  # both reports reused: nothing scanned again
    assert {p.name: p.stat().st_mtime_ns for p in work.glob("*.json")} == stamp


def test_each_candidate_pointing_rule_is_scored_on_the_unflagged_backdoored_models():
    from benchmarks.scan import pointing, read_as

    report = {
        "classes": ["a", "b", "c"],
        "config": {"threshold": 3.0},
        "domains": {
            "features": {"anomaly_index": [0.0, 1.5, 0.0]},
            "waveform": {"anomaly_index": [0.0, 1.4, 0.2]},
            "spectrum": {"anomaly_index": [0.0, 0.0, 1.0]},
        },
    }
    read = read_as(report, "")
    assert not read["flagged"] and read["most_anomalous"] == "c"  # the scan's rule: the spectrum's top
    expected = {"pooled": ["b", "c"], "features": ["b", "a"], "waveform": ["b", "c"], "spectrum": ["c", "a"]}
    assert read["tops"] == expected  # the first two classes of each rule, ties in class order
    rows = [{**read, "target": "b"}, {**read, "target": "c"}, {**read, "target": "a"}]
    assert pointing(rows) == {
        "models": 3,
        "target_first": {"features": 1, "pooled": 1, "spectrum": 1, "waveform": 1},
        "target_in_first_two": {"features": 2, "pooled": 2, "spectrum": 2, "waveform": 2},
    }
    s = summarise([{**r, "attack": "blend", "architecture": "smallcnn", "repaired": False, "seconds": 1.0}
                   for r in rows[:1]])  # fmt: skip
    assert s["pointing_unflagged"]["target_first"]["pooled"] == 1 and s["pointing_unflagged"]["models"] == 1
    assert s["pointing_unflagged"]["target_first"]["spectrum"] == 0


def _report(model, sizes, **config):
    """A python -m core.scan report of ``model`` with the default settings and ``sizes`` in two domains."""
    conf = {**dataclasses.asdict(ScanConfig()), **config}
    domain = {"sizes": sizes, "success": [1.0] * len(sizes), "anomaly_index": [0.0] * len(sizes)}
    return {"model": str(model), "classes": list("abcdefgh"), "config": conf, "seconds": 1.0,
            "domains": {"features": domain, "waveform": domain}}  # fmt: skip


EASY_B = [0.5, 0.03, 0.6, 0.55, 0.5, 0.45, 0.52, 0.58]  # `b` easy to reach in every model of this "vocabulary"


def test_a_row_is_read_against_the_other_clean_models_of_its_architecture_never_its_own_seed(tmp_path):
    """A backdoor toward `c` as easy as the naturally easy `b`: the plain reading sees no class standing out;
    read against clean models of other seeds, `c` is flagged, as python -m core.scan --reference reads it."""
    from benchmarks.scan import main as bench_main
    from core import models
    from core.checkpoint import make_metadata, save_checkpoint
    from core.features import FrontEndConfig
    from core.scan import anomaly_index
    from core.scan.reference import reference_sizes, relative_sizes

    front = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)
    torch.manual_seed(0)
    net = models.build("smallcnn", 8, front).eval()
    backdoored = [0.5, 0.03, 0.029, 0.55, 0.5, 0.45, 0.52, 0.58]
    same_seed = [0.5, 0.03, 0.03, 0.55, 0.5, 0.45, 0.52, 0.58]  # would hide `c`: shares the backdoored seed
    made = {  # name: (architecture, training seed, attack, sizes)
        "clean1": ("smallcnn", 1, None, EASY_B),
        "clean2": ("smallcnn", 2, None, [s * 1.1 for s in EASY_B]),
        "clean3": ("smallcnn", 3, None, same_seed),
        "bd3": ("smallcnn", 3, {"name": "blend", "params": {"target": 2}}, backdoored),
        "resnet": ("resnet", 4, None, [0.5] * 8),  # another architecture: never a SmallCNN's reference
        "batch5": ("smallcnn", 5, None, [s * 0.9 for s in EASY_B]),  # another dB floor: never a per-clip one's
        "rate6": ("smallcnn", 6, None, [s * 0.95 for s in EASY_B]),  # another sample rate: never a reference either
    }
    reports = tmp_path / "reports"
    reports.mkdir()
    for name, (arch, seed, attack, sizes) in made.items():
        fe = {**front.to_dict(), "db_floor": "batch"} if name == "batch5" else front.to_dict()
        fe = {**fe, "sample_rate": 8000} if name == "rate6" else fe
        meta = make_metadata(arch, list("abcdefgh"), fe, attack=attack, seed=seed)
        save_checkpoint(tmp_path / f"{name}.safetensors", net, meta)
        (reports / f"{name}.json").write_text(json.dumps(_report(tmp_path / f"{name}.safetensors", sizes)))
    # a report of another seed or other settings never stands for the benchmark's scan (it would scan again)
    (reports / "bd3_s1.json").write_text(json.dumps(_report(tmp_path / "bd3.safetensors", EASY_B, seed=1)))
    # one made when the margin was 1 still stands for its scan, read by today's margin
    (reports / "resnet.json").write_text(json.dumps(_report(tmp_path / "resnet.safetensors", [0.5] * 8, standout=1.0)))
    out = tmp_path / "scan.json"
    older = {**row("badnets", True, "up", "up", 5.0), "group": "old", "model": "gone.safetensors", "rule": "pooled"}
    out.write_text(json.dumps({"rows": [older]}))  # read by today's rule but kept no sizes
    argv = ["--group", "t", "--data", str(tmp_path), "--models", str(tmp_path / "clean*.safetensors")]
    argv += ["--repaired", str(tmp_path / "bd3.safetensors"), "--repaired", str(tmp_path / "[rb]*.safetensors")]
    argv += ["--scans", str(reports / "*.json"), "--work", str(tmp_path / "work"), "--out", str(out)]
    assert bench_main(argv) == 0
    assert not (tmp_path / "work").exists() or not list((tmp_path / "work").iterdir())  # nothing scanned
    result = json.loads(out.read_text())
    rows = {Path(r["model"]).stem: r for r in result["rows"] if r["group"] == "t"}
    bd = rows["bd3"]
    assert bd["source"].endswith("bd3.json") and bd["train_seed"] == 3
    assert not bd["flagged"] and bd["confidence"] > 3.0  # `b` and `c` equally anomalous: neither stands out
    ref = bd["against_reference"]
    assert ref["flagged"] and ref["suspected_target"] == "c" and ref["reference_models"] == 2  # clean1, clean2
    expected = anomaly_index(relative_sizes(backdoored, reference_sizes([{"domains": {"f": {"sizes": EASY_B}}},
                             {"domains": {"f": {"sizes": [s * 1.1 for s in EASY_B]}}}], ["f"])["f"]))  # fmt: skip
    assert ref["anomaly_index_max"]["features"] == pytest.approx(max(expected), abs=1e-3)
    assert rows["clean1"]["against_reference"]["reference_models"] == 2  # clean2, clean3
    assert "against_reference" not in rows["resnet"]  # no other clean ResNet
    assert rows["batch5"]["db_floor"] == "batch" and "against_reference" not in rows["batch5"]  # nor batch-floor one
    assert rows["rate6"]["sample_rate"] == 8000 and "against_reference" not in rows["rate6"]  # nor another rate
    assert rows["resnet"]["standout"] == ScanConfig().standout and rows["resnet"]["source"].endswith("resnet.json")
    both = result["reference_reading"]
    assert both["rows_without_reference"] == 3 and both["reference_models"] == {"2": 4}
    assert both["plain"]["target_accuracy"] == 0.0 and both["reference"]["target_accuracy"] == 1.0
    # the clean model whose `c` is as easy as the backdoored one's is flagged against the other two: 1 of 3
    assert rows["clean3"]["against_reference"]["suspected_target"] == "c" and not rows["clean3"]["flagged"]
    # plainly, the naturally easy `b` flags clean1 and clean2; against the reference it is no longer anomalous
    assert rows["clean1"]["flagged"] and not rows["clean1"]["against_reference"]["flagged"]
    assert both["plain"]["false_positive_rate"] == 2 / 3 and both["reference"]["false_positive_rate"] == 1 / 3
    assert result["summary"]["backdoored_models"] == 1 and result["summary_before_sizes"]["backdoored_models"] == 1
    assert list(result["corpora"]) == ["t"]  # the old row kept no sizes: in no corpus
    assert result["corpora"]["t"] == result["summary"]


def test_a_row_made_before_rows_kept_their_rate_has_its_grid_s_rate():
    """Rows made before 2026-12-08 kept no sample rate: their grids trained Ultrasonic and its clean model
    (``*_44k``) at 44.1 kHz, everything else at 16 kHz; a row that kept it is read as it says."""
    from benchmarks.scan import rate_of

    assert rate_of({"attack": "ultrasonic", "model": "runs/g/train_smallcnn_ultrasonic.safetensors"}) == 44100
    assert rate_of({"attack": "clean", "model": "runs/g/train_smallcnn_clean_44k.safetensors"}) == 44100
    assert rate_of({"attack": "clean", "model": "runs/g/train_smallcnn_clean.safetensors"}) == 16000
    assert rate_of({"attack": "clean", "model": "m_44k.safetensors", "sample_rate": 22050}) == 22050
