"""packaging/: the .desktop entry, the AppStream metainfo, the icon, the PyInstaller spec and build script
agree with each other and with pyproject.toml (the bundle itself is built by packaging/build.sh)."""

from __future__ import annotations

import configparser
import ctypes.util
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import core
from gnft_gui.app import APP_ID, ICON

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
DESKTOP = PACKAGING / f"{APP_ID}.desktop"
METAINFO = PACKAGING / f"{APP_ID}.metainfo.xml"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(DESKTOP.read_text(encoding="utf-8"))
    assert parser.sections() == ["Desktop Entry"]
    return parser["Desktop Entry"]


@pytest.fixture(scope="module")
def component() -> ET.Element:
    root = ET.parse(METAINFO).getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    return root


def _scripts(pyproject: dict) -> dict[str, str]:
    project = pyproject["project"]
    return {**project.get("scripts", {}), **project.get("gui-scripts", {})}


def test_desktop_entry_launches_an_existing_script_with_the_icon(entry, pyproject):
    assert entry["Type"] == "Application" and entry["Terminal"] == "false"
    command, *codes = entry["Exec"].split()
    assert command in _scripts(pyproject) and entry["TryExec"] == command
    assert codes == ["%F"]  # gnft-gui takes files and folders as positional PATHs
    assert entry["Name"] == "GN-FT Workbench" and entry["Comment"]
    assert entry["Icon"] == ICON.stem and ICON.is_file() and ICON.parent.name == "resources"
    categories = entry["Categories"].split(";")
    assert categories[-1] == "" and {"Science", "Education", "Audio", "AudioVideo"} <= set(categories)
    assert entry["Keywords"].endswith(";")


def test_metainfo_matches_the_desktop_entry_and_pyproject(component, entry, pyproject):
    assert component.findtext("id") == APP_ID == DESKTOP.stem
    assert component.findtext("metadata_license") == "CC0-1.0"
    assert component.findtext("project_license") == pyproject["project"]["license"]
    assert component.findtext("name") == entry["Name"]
    summary = component.findtext("summary")
    assert summary and not summary.endswith(".") and len(summary) <= 80
    assert component.find("description/p") is not None
    launchable = component.find("launchable")
    assert launchable.get("type") == "desktop-id" and launchable.text == DESKTOP.name
    assert [b.text for b in component.findall("provides/binary")] == [entry["Exec"].split()[0]]
    assert component.find("content_rating").get("type") == "oars-1.1"


def test_metainfo_release_is_the_package_version(component, pyproject):
    releases = component.findall("releases/release")
    assert releases, "no <release>"
    assert releases[0].get("version") == core.__version__ == pyproject["project"]["version"]
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", r.get("date", "")) for r in releases)


def test_metainfo_screenshots_are_the_repository_screenshots(component):
    shots = component.findall("screenshots/screenshot")
    assert [s.get("type") for s in shots].count("default") == 1
    for shot in shots:
        url = shot.findtext("image")
        assert url.startswith("https://") and shot.findtext("caption")
        relative = url.split("/main/", 1)[1]
        assert relative.startswith("docs/screenshots/") and (ROOT / relative).is_file(), url


def test_icon_is_svg_with_a_square_viewbox_and_renders(qapp):
    root = ET.parse(ICON).getroot()
    assert root.tag == f"{SVG}svg" and root.get("version") == "1.1"
    assert root.get("viewBox") == "0 0 256 256"
    assert root.find(f"{SVG}title").text == "GN-FT Workbench"
    from PySide6.QtGui import QIcon

    image = QIcon(str(ICON)).pixmap(64, 64).toImage()
    assert not image.isNull() and image.width() == 64
    assert image.pixelColor(32, 32).alpha() == 255 and image.pixelColor(0, 0).alpha() == 0  # drawn, rounded corners


@pytest.mark.parametrize(
    "command",
    [["desktop-file-validate", str(DESKTOP)], ["appstreamcli", "validate", "--no-net", str(METAINFO)]],
    ids=["desktop-file-validate", "appstreamcli"],
)
def test_system_validators_accept_the_files(command):
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed (desktop-file-utils / appstream)")
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "error" not in (out.stdout + out.stderr).lower().replace("errors: 0", "")


def test_spec_names_files_that_exist_and_the_build_script_parses():
    spec = (PACKAGING / "gnft-gui.spec").read_text()
    compile(spec, "gnft-gui.spec", "exec")
    for name in re.findall(r'PACKAGING / "([^"]+)"', spec):
        assert (PACKAGING / name).is_file(), name
    assert 'ROOT / "resources"' in spec and 'name="gnft-gui"' in spec
    assert "from gnft_gui.app import main" in (PACKAGING / "gnft_gui_main.py").read_text()
    assert subprocess.run(["bash", "-n", str(PACKAGING / "build.sh")]).returncode == 0
    assert "--self-test" in (PACKAGING / "build.sh").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^bundle:.*\n\tpackaging/build\.sh", makefile, re.M)


def test_runtime_hook_finds_the_bundled_portaudio_first(tmp_path, monkeypatch):
    bundled = tmp_path / "libportaudio.so.2"
    bundled.write_bytes(b"")
    original = ctypes.util.find_library
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    spec = importlib.util.spec_from_file_location("pyi_rth_gnft_portaudio", PACKAGING / "pyi_rth_gnft_portaudio.py")
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        assert ctypes.util.find_library("portaudio") == str(bundled)
        assert ctypes.util.find_library("c") == original("c")  # other names: the system's answer
        bundled.unlink()
        assert ctypes.util.find_library("portaudio") == original("portaudio")
    finally:
        ctypes.util.find_library = original
