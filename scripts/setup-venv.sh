#!/usr/bin/env bash
# `make venv`: the course virtualenv from requirements.lock, through one per-user cache shared by every clone.
#
# uv (pinned) installs the locked packages; its download and build cache lives in
# ~/.cache/opensky-labs (or $OPENSKY_LABS_CACHE), so a second clone on the same machine installs in seconds
# without the network. requirements.lock is re-made from pyproject.toml when the dependencies there change.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
UV_VERSION=0.13.8
CACHE=${OPENSKY_LABS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/opensky-labs}
UV_HOME="$CACHE/uv-$UV_VERSION"
UV="$UV_HOME/bin/uv"
export UV_CACHE_DIR="$CACHE/uv-cache"

if ! "$UV" --version >/dev/null 2>&1; then
    echo "[setup] uv $UV_VERSION, the package installer, into $UV_HOME"
    rm -rf "$UV_HOME"
    "$PYTHON" -m venv "$UV_HOME"
    "$UV_HOME/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

deps_sha=$("$PYTHON" -c 'import hashlib, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(hashlib.sha256("\n".join(deps).encode()).hexdigest()[:16])')
if ! grep -q "^# dependencies-sha256: $deps_sha " requirements.lock 2>/dev/null; then
    echo "[setup] pyproject.toml's dependencies changed: re-making requirements.lock"
    "$UV" pip compile pyproject.toml --quiet --python-version 3.11 --output-file requirements.lock \
        --custom-compile-command "make venv"
    sed -i "1i # dependencies-sha256: $deps_sha (pyproject.toml's dependencies this lock was made from)" \
        requirements.lock
fi

test -x "$VENV/bin/python" || "$UV" venv --quiet --seed --python "$PYTHON" "$VENV"
# Offline first: everything already in the cache installs without asking the package index.
if ! "$UV" pip install --quiet --offline --python "$VENV/bin/python" -r requirements.lock 2>/dev/null; then
    echo "[setup] downloading the locked packages (first run on this machine: a few minutes)…"
    "$UV" pip install --python "$VENV/bin/python" -r requirements.lock
fi
# The course's own packages (harness, bench) are used from this folder: a .pth file, no build step.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
pwd > "$site/opensky-labs.pth"
