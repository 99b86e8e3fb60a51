"""A scan read against a clean reference (issue 33): scans of clean models of the same architecture and classes,
each class's size read as its ratio to their geometric mean. What the ratios change (a class easy in every clean
model is no longer taken for a target; one a backdoor made easy is), what the report keeps, and the one-line
refusals of references that do not fit. Detection rates are measured in docs/experiments/scan_reference_probe.md."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from core import models
from core.checkpoint import make_metadata, save_checkpoint
from core.cli.defend import main as defend_main
from core.cli.scan import main as scan_main
from core.data.speech_commands import load_speech_commands
from core.errors import ConfigError
from core.features import FrontEndConfig
from core.runtime import run_command
from core.scan import ScanConfig, ScanResult, anomaly_index, pointed_class, pooled_index, scan, verdict
from core.scan.reference import finite_sizes, read_reference, relative_sizes
from tests.conftest import TINY_WORDS, write_speech_commands

FRONT_END = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)
QUICK = ["--steps", "4", "--batch-size", "2", "--clean-ratio", "0.5", "--device", "cpu", "--quiet"]
CONFIG = ScanConfig(steps=4, batch_size=2, clean_ratio=0.5, device="cpu")
DOMAINS = ["features", "waveform", "spectrum", "mix"]
K = len(TINY_WORDS)


def report(sizes: dict[str, list[float | None]], config: ScanConfig = CONFIG, **extra) -> dict:
    """A scan report as python -m core.scan writes it, as far as a reference reads one."""
    domains = {d: {"sizes": s, "anomaly_index": anomaly_index(finite_sizes(s))} for d, s in sizes.items()}
    base = {"model": "elsewhere/clean.safetensors", "classes": TINY_WORDS, "config": asdict(config), "domains": domains}
    return {**base, **extra}


def write(path: Path, content: dict) -> str:
    path.write_text(json.dumps(content))
    return str(path)


def even(value: float = 0.1, easy: int | None = None, factor: float = 1.0) -> dict[str, list[float | None]]:
    """Sizes of every domain of a TINY_WORDS model: about ``value`` for every class, class ``easy``'s times
    ``factor``."""
    return {d: [value * (factor if i == easy else 1.0) * (1 + 0.02 * i) for i in range(K)] for d in DOMAINS}


#: ten classes whose sizes spread as a clean model's do (log sizes, about 0.3 apart), class 1 naturally easy
WORDS = [f"w{i}" for i in range(10)]
SPREAD = [0.3, -0.2, 0.5, 0.1, -0.4, 0.2, -0.1, 0.4, 0.0, -0.3]


def model_sizes(jitter: float = 0.0, planted: int | None = None) -> dict[str, list[float | None]]:
    """Every domain's sizes of a model of WORDS: class 1 at 0.7x (easy in any model), the rest moved by
    ``jitter`` (another training seed); ``planted``: a class a backdoor made as easy as class 1."""
    out = [0.1 * math.exp(SPREAD[i] + jitter * ((i * 3) % 5 - 2) / 10) * (0.7 if i == 1 else 1.0) for i in range(10)]
    if planted is not None:
        out[planted] = out[1]
    return {d: list(out) for d in DOMAINS}


def test_a_class_easy_in_every_clean_model_is_not_taken_for_a_target_and_a_planted_one_is(tmp_path):
    """A backdoor made class 3 as easy as the naturally easy class 1 (the Blend `start` model of the probe): the
    plain index sees a tie and flags nothing; read against clean models, class 3 stands out and class 1 does
    not. A clean model of another seed stays unflagged."""
    refs = [report(model_sizes(j), classes=WORDS) for j in (0.3, -0.3, 0.1)]
    paths = [write(tmp_path / f"ref{i}.json", r) for i, r in enumerate(refs)]
    ref = read_reference(",".join(paths), WORDS, asdict(CONFIG), architecture="smallcnn")
    assert ref is not None and ref.models == 1 and len(ref.reports) == 3  # one model path named by all three
    expected = math.exp(sum(math.log(r["domains"]["mix"]["sizes"][1]) for r in refs) / 3)  # the geometric mean
    assert ref.sizes["mix"][1] == pytest.approx(expected)

    def verdicts(sizes: dict[str, list[float | None]]) -> tuple[int | None, int | None]:
        plain = {d: {"anomaly_index": anomaly_index(s)} for d, s in sizes.items()}
        relative = {d: {"anomaly_index": anomaly_index(relative_sizes(s, ref.sizes[d]))} for d, s in sizes.items()}
        return verdict(plain, 3.0, 1.25)[0], verdict(relative, 3.0, 1.25)[0]

    assert verdicts(model_sizes(planted=3)) == (None, 3)
    assert verdicts(model_sizes(0.6)) == (None, None)


def test_a_class_never_reached_counts_as_the_hardest_reached():
    assert finite_sizes([0.2, None, 0.5, math.inf]) == [0.2, 0.5, 0.5, 0.5]
    assert finite_sizes([None, None]) == [1.0, 1.0]
    assert relative_sizes([0.2, None], [0.1, 0.25]) == pytest.approx([2.0, 0.8])


def test_an_unflagged_scan_read_against_a_reference_points_at_its_pooled_top_class():
    """Without a reference an unflagged scan points at the mix domain's top class; with one, at the pooled top
    class (the target of all 31 backdoored ASC-10 scans of the probe)."""
    domains = {
        "mix": {"anomaly_index": [0.0, 2.0, 0.0, 0.0]},
        "spectrum": {"anomaly_index": [0.0, 0.0, 2.5, 0.0]},
        "features": {"anomaly_index": [0.0, 0.0, 2.0, 0.0]},
    }
    assert pointed_class(domains, None) == (1, "mix")
    assert pointed_class(domains, None, pooled=True) == (2, "spectrum")
    assert pooled_index(domains).index(max(pooled_index(domains))) == 2
    base = {"classes": TINY_WORDS, "domains": domains, "gradient_norm_gini": {}, "clean_clips": 8, "seconds": 1.0}
    plain = ScanResult.from_report(
        {**base, "backdoored": False, "suspected_target": None, "confidence": 0.0, "config": {}}
    )
    assert plain.most_anomalous() == 1
    read = replace(plain, reference={"scans": 2, "models": 2, "reports": [], "sizes": {}})
    assert read.most_anomalous() == 2 and read.pointed_classes() == [2]


@pytest.mark.parametrize(
    "change, message",
    [
        ("missing", "no such file"),
        ("not_json", "not a readable JSON report"),
        ("not_scan", "not a report of python -m core.scan"),
        ("classes", "scanned a model of the classes"),
        ("architecture", "scanned a resnet, the model is a smallcnn"),
        ("itself", "is a scan of this model itself"),
        ("domain", "holds no sizes of the domain(s) mix"),
        ("steps", "searched with steps 8, this scan with 4"),
        ("front_end", "scanned a model with another front end (db_floor 'batch', the model's 'clip')"),
        ("sample_rate", "another front end (sample_rate 44100, the model's 16000)"),
        ("flagged", "flags its own model (suspected target 'up')"),
        ("twice", "is given twice"),
    ],
)
def test_a_reference_that_does_not_fit_is_one_line_naming_it(tmp_path, change, message):
    good = report(even())
    content: object = good
    if change == "classes":
        content = {**good, "classes": list(reversed(TINY_WORDS))}
    elif change == "architecture":
        content = {**good, "architecture": "resnet"}
    elif change == "itself":
        content = {**good, "model": str(tmp_path / "model.safetensors")}
    elif change == "domain":
        content = {**good, "domains": {d: r for d, r in good["domains"].items() if d != "mix"}}
    elif change == "steps":
        content = {**good, "config": {**good["config"], "steps": 8}}
    elif change == "front_end":  # a model made before db_floor: its log scale floored over the batch
        content = {**good, "front_end": {**FRONT_END.to_dict(), "db_floor": "batch"}}
    elif change == "sample_rate":
        content = {**good, "front_end": {**FRONT_END.to_dict(), "sample_rate": 44100}}
    elif change == "flagged":
        content = report(even(easy=TINY_WORDS.index("up"), factor=0.01))
    elif change == "not_scan":
        content = {"classes": TINY_WORDS}
    path = tmp_path / "ref.json"
    if change == "not_json":
        path.write_text("{not json")
    elif change != "missing":
        write(path, content)  # type: ignore[arg-type]
    text = f"{path},{path}" if change == "twice" else str(path)
    with pytest.raises(ConfigError) as err:
        read_reference(
            text,
            TINY_WORDS,
            asdict(CONFIG),
            architecture="smallcnn",
            front_end=FRONT_END.to_dict(),
            model=str(tmp_path / "model.safetensors"),
        )
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"--reference: {path}") and message in line


def test_an_empty_reference_is_none_and_a_scan_without_one_keeps_no_reference_fields(tiny_sc):
    assert read_reference(" , ", TINY_WORDS, asdict(CONFIG)) is None
    torch.manual_seed(0)
    net = models.build("smallcnn", K, FRONT_END).eval()
    result = scan(net, load_speech_commands(tiny_sc, TINY_WORDS), CONFIG)
    assert result.reference is None and all(
        set(r) == {"sizes", "success", "anomaly_index"} for r in result.domains.values()
    )
    assert result.front_end == {**FRONT_END.to_dict(), "num_samples": result.front_end["num_samples"]}
    assert result.front_end["db_floor"] == "clip" and result.to_dict()["front_end"] == result.front_end


def test_a_reports_front_end_is_read_from_its_checkpoint_when_it_kept_none(tmp_path):
    """A report from before reports kept the front end is checked against its checkpoint's, when it is still there:
    a model made before db_floor (format 1, read as "batch") is refused as a reference of a per-clip model, the
    same report is taken for a batch-floor model, and one whose checkpoint is gone cannot be checked."""
    old = save_checkpoint(
        tmp_path / "old.safetensors",
        models.build("smallcnn", K, FRONT_END),
        make_metadata("smallcnn", TINY_WORDS, {**FRONT_END.to_dict(), "db_floor": "batch"}),
    )
    path = write(tmp_path / "old.json", report(even(), model=str(old)))
    clip, batch = FRONT_END.to_dict(), {**FRONT_END.to_dict(), "db_floor": "batch"}
    with pytest.raises(ConfigError, match=r"another front end \(db_floor 'batch', the model's 'clip'\)"):
        read_reference(path, TINY_WORDS, asdict(CONFIG), front_end=clip)
    assert read_reference(path, TINY_WORDS, asdict(CONFIG), front_end=batch).models == 1
    old.unlink()
    assert read_reference(path, TINY_WORDS, asdict(CONFIG), front_end=clip).models == 1


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan_reference")
    data = write_speech_commands(root / "sc", speakers=6, per_speaker=1)
    torch.manual_seed(0)
    net = models.build("smallcnn", K, FRONT_END).eval()
    model = save_checkpoint(root / "model.safetensors", net, make_metadata("smallcnn", TINY_WORDS, FRONT_END.to_dict()))
    return root, data, model


def test_python_m_core_scan_reads_the_model_against_the_reference_and_keeps_it_in_the_report(
    workspace, tmp_path, capsys
):
    """The report keeps the reference (its reports, models, sizes), each domain's plain index beside the one of
    the ratios, and the verdict is made from the ratios; the same scan without a reference has the same sizes."""
    _, data, model = workspace
    plain_out = tmp_path / "plain.json"
    assert run_command(scan_main, ["--model", str(model), "--data", str(data), *QUICK, "--out", str(plain_out)]) == 0
    plain = json.loads(plain_out.read_text())
    assert plain["architecture"] == "smallcnn" and plain["reference"] is None
    refs = [write(tmp_path / f"ref{i}.json", report(even(0.05 * (i + 1)), architecture="smallcnn")) for i in range(2)]
    out = tmp_path / "read.json"
    argv = ["--model", str(model), "--data", str(data), *QUICK, "--reference", ",".join(refs), "--out", str(out)]
    assert run_command(scan_main, argv) == 0, capsys.readouterr().err
    read = json.loads(out.read_text())
    assert read["reference"]["reports"] == refs and read["reference"]["scans"] == 2 and read["reference"]["models"] == 1
    assert read["config"]["reference"] == ",".join(refs)
    for name, record in read["domains"].items():
        assert record["sizes"] == plain["domains"][name]["sizes"]  # the search is the same: only the reading differs
        assert record["plain_anomaly_index"] == plain["domains"][name]["anomaly_index"]
        ref_sizes = read["reference"]["sizes"][name]
        assert ref_sizes == pytest.approx([math.sqrt(0.05 * 0.1) * (1 + 0.02 * i) for i in range(K)], rel=1e-5)
        assert record["relative_sizes"] == pytest.approx(relative_sizes(record["sizes"], ref_sizes), rel=1e-5)
        assert record["anomaly_index"] == pytest.approx(anomaly_index(record["relative_sizes"]), abs=2e-3)
    # the plain scan read again against the same reference, with no search: the same as scanning with it
    reread = ScanResult.from_report(plain).read_against(read_reference(",".join(refs), TINY_WORDS, plain["config"]))
    assert reread.domains == read["domains"] and reread.pooled == read["pooled"]
    assert reread.backdoored == read["backdoored"] and reread.reference == read["reference"]
    assert ScanResult.from_report(read).read_against(None).domains == plain["domains"]  # and back
    again = ScanResult.from_report(read)  # read back: the verdict and the pointing made from the ratios again
    assert again.backdoored == read["backdoored"] and again.reference == read["reference"]
    assert read["most_anomalous"]["index"] == again.most_anomalous()
    assert "read against a clean reference: 2 scan(s) of 1 model(s)" in capsys.readouterr().out


def test_a_reference_that_does_not_fit_is_refused_before_any_work_and_nothing_is_written(workspace, tmp_path, capsys):
    _, data, model = workspace
    ref = write(tmp_path / "ref.json", report(even(), architecture="resnet"))
    out = tmp_path / "scan.json"
    argv = ["--model", str(model), "--data", str(data), *QUICK, "--reference", ref, "--out", str(out)]
    assert run_command(scan_main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--reference" in err[0] and "scanned a resnet" in err[0]
    assert not out.exists() and not (tmp_path / "scan_triggers").exists()
    # core.defend's scan (to unlearn a scanned trigger) refuses it the same way, naming its own option
    argv = ["--model", str(model), "--data", str(data), "--defense", "ft", "--unlearn", "0.2"]
    argv += ["--scan-reference", ref, "--out", str(tmp_path / "repaired.safetensors"), "--quiet"]
    assert run_command(defend_main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--scan-reference" in err[0] and "scanned a resnet" in err[0]
    assert not (tmp_path / "repaired.safetensors").exists()


def test_a_reference_is_judged_clean_on_the_domains_this_scan_searches(tmp_path):
    """A domain the reference searched and this scan does not (latent, say) neither flags it nor enters the
    sizes; the same report read by a scan that searches it too is refused as flagging its own model."""
    sizes = {**even(), "latent": [0.1 * (0.01 if i == 2 else 1.0) for i in range(K)]}
    path = write(tmp_path / "ref.json", report(sizes))
    ref = read_reference(path, TINY_WORDS, asdict(CONFIG))
    assert ref is not None and set(ref.sizes) == set(DOMAINS)
    with pytest.raises(ConfigError, match="flags its own model"):
        read_reference(path, TINY_WORDS, asdict(replace(CONFIG, domains="latent")))


def test_a_folder_names_the_scan_reports_in_it_and_an_empty_one_is_refused(tmp_path):
    """A folder of clean models' scans kept for the purpose is named once: it stands for its *.json files (sorted),
    alone or beside single reports; one with none in it is a one-line refusal, not an empty reference."""
    from core.scan.reference import reference_paths

    kept = tmp_path / "clean_scans"
    kept.mkdir()
    a = write(kept / "b_clean.json", report(even(), model="m/b.safetensors"))
    b = write(kept / "a_clean.json", report(even(0.11), model="m/a.safetensors"))
    (kept / "notes.txt").write_text("not a report")
    (kept / "a_clean_triggers").mkdir()  # what python -m core.scan writes beside a report
    single = write(tmp_path / "c.json", report(even(0.12), model="m/c.safetensors"))
    assert reference_paths(f"{kept}, {single}") == [b, a, single]
    ref = read_reference(f"{kept},{single}", TINY_WORDS, asdict(CONFIG), architecture="smallcnn")
    assert ref is not None and ref.reports == [b, a, single] and ref.models == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"^--reference: .*empty: a folder with no scan reports"):
        read_reference(f"{empty},{single}", TINY_WORDS, asdict(CONFIG))
    # a folder holding the same report as a listed one: given twice
    with pytest.raises(ConfigError, match="is given twice"):
        read_reference(f"{kept},{a}", TINY_WORDS, asdict(CONFIG))
