"""Module boundaries: the engine never imports Qt, audio devices or the application."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("gnft_gui", "PySide6", "PyQt5", "PyQt6", "pyqtgraph", "sounddevice")


def test_no_forbidden_import_statement_in_core():
    offenders = []
    for path in sorted((REPO / "core").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(REPO)}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in FORBIDDEN
            ]
    assert not offenders, "\n".join(offenders)


def test_importing_every_core_module_loads_no_qt():
    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / "core").rglob("*.py")
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"core pulled in: {out.stdout}"


def test_import_linter_contract_holds():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is a dev dependency and must be installed"
    out = subprocess.run([exe], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 kept, 0 broken" in out.stdout


ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"


def _documented_modules() -> set[str]:
    """Every ``.py`` path the architecture document's module tables name: a row whose first cell
    names ``core/x.py`` names that file; one that names a folder ``core/x/`` names each ``y.py``
    its second cell lists, as ``core/x/y.py``."""
    named: set[str] = set()
    for line in ARCHITECTURE.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        first, what = [cell.strip() for cell in line.strip().strip("|").split("|")][:2]
        for path in re.findall(r"`([\w/]+(?:\.py|/))`", first):
            if path.endswith(".py"):
                named.add(path)
            else:
                named.update(path + name for name in re.findall(r"`([\w/]+\.py)`", what))
    return named


def _modules_in_tree() -> set[str]:
    """Every module of the engine and the application, less package markers and ``python -m`` shims."""
    return {
        str(p.relative_to(REPO))
        for package in ("core", "gnft_gui")
        for p in (REPO / package).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    }


def test_architecture_document_names_only_modules_that_exist():
    missing = sorted(m for m in _documented_modules() if not (REPO / m).is_file())
    assert not missing, f"docs/ARCHITECTURE.md names modules that do not exist: {missing}"


def test_every_module_is_in_the_architecture_document():
    unnamed = sorted(_modules_in_tree() - _documented_modules())
    assert not unnamed, f"modules docs/ARCHITECTURE.md does not name: {unnamed}"


def test_the_readme_links_the_architecture_document():
    assert "docs/ARCHITECTURE.md" in (REPO / "README.md").read_text()


def test_ruff_lint_and_format_are_clean():
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert exe, "ruff is a dev dependency and must be installed"
    lint = subprocess.run([exe, "check", "--no-cache", "."], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [exe, "format", "--check", "--no-cache", "."], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
