#!/usr/bin/env bash
# Build the one-folder PyInstaller bundle dist/gnft-gui/ and smoke-test it with --self-test.
#
#     packaging/build.sh            (or: make bundle)
#
# Uses the project's virtual environment ($VENV, default .venv; `make install` makes it) and
# installs PyInstaller into it if missing. Output: dist/gnft-gui/ (the bundle), build/pyinstaller/
# (PyInstaller's work folder) and build/self-test-*.log. The bundle is then run headless
# (QT_QPA_PLATFORM=offscreen) twice:
#   1. with an empty GNFT_DATA_DIR: the built-in model and generated clips;
#   2. with the cached demo, if there is one (python -m core.demo builds it): the demo workspace.
# Prints the build's wall time, the bundle's size and each self-test's exit code; exits non-zero if
# the build or a self-test fails. BUNDLE_INCREMENTAL=1 reuses PyInstaller's cache (no --clean).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
BUNDLE="dist/gnft-gui"

if [ ! -x "$PY" ]; then
    echo "build.sh: $PY not found; run 'make install' first" >&2
    exit 2
fi
if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
    echo "build.sh: installing PyInstaller into $VENV"
    "$PY" -m pip install --quiet pyinstaller || { echo "build.sh: pip install pyinstaller failed" >&2; exit 2; }
fi
mkdir -p build

clean="--clean"
[ "${BUNDLE_INCREMENTAL:-0}" = "1" ] && clean=""
echo "build.sh: $("$PY" -m PyInstaller --version | sed 's/^/PyInstaller /'), $("$PY" --version)"
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm $clean --log-level WARN --distpath dist --workpath build/pyinstaller \
    packaging/gnft-gui.spec
build_rc=$?
build_s=$(( $(date +%s) - start ))
if [ $build_rc -ne 0 ] || [ ! -x "$BUNDLE/gnft-gui" ]; then
    echo "build.sh: the PyInstaller build failed (exit $build_rc) after ${build_s} s" >&2
    exit 1
fi
size=$(du -sh "$BUNDLE" | cut -f1)

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# run_self_test NAME [ENV=VALUE ...]: the bundle's --self-test, headless, output to build/self-test-NAME.log
run_self_test() {
    local name="$1"; shift
    local log="build/self-test-$name.log" rc t0
    t0=$(date +%s)
    env -u DISPLAY -u WAYLAND_DISPLAY QT_QPA_PLATFORM=offscreen GNFT_LOG_DIR="$scratch/logs" "$@" \
        timeout 900 "$BUNDLE/gnft-gui" --self-test >"$log" 2>&1
    rc=$?
    echo "build.sh: self-test ($name): exit $rc in $(( $(date +%s) - t0 )) s; output:"
    sed 's/^/    /' "$log"
    return $rc
}

run_self_test builtin GNFT_DATA_DIR="$scratch/empty"
builtin_rc=$?

demo_rc="skipped (no cached demo; python -m core.demo builds one)"
if "$PY" -c "import sys; from core.demo import cached_demo, demo_dir; sys.exit(cached_demo(demo_dir()) is None)"; then
    run_self_test demo
    demo_rc=$?
fi

echo
echo "build.sh: build: ${build_s} s (PyInstaller, one-folder)"
echo "build.sh: bundle: $size $BUNDLE"
echo "build.sh: self-test exit codes: built-in model $builtin_rc; cached demo $demo_rc"
if [ "$builtin_rc" != 0 ] || { [ "${demo_rc%% *}" != skipped ] && [ "$demo_rc" != 0 ]; }; then
    echo "build.sh: a self-test of the bundle failed" >&2
    exit 1
fi
