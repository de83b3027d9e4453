#!/usr/bin/env bash
# Set up napari-cellclass on a fresh Debian/Ubuntu machine: system libraries for
# Qt/OpenGL (+ Xvfb for machines without a screen), a virtual environment in .venv,
# and the package with its test extras.  Safe to run again: it only does what is
# missing.  CELLCLASS_VENV_CACHE=DIR keeps the venv outside the clone (keyed by the
# hash of pyproject.toml) and links .venv to it, so a CI machine can reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 \
libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 \
libxcb-shape0 libdbus-1-3 libfontconfig1 libglib2.0-0"

if command -v dpkg-query >/dev/null 2>&1; then
  missing=""
  for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    echo "== installing system packages:$missing"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing
  fi
else
  echo "== not a Debian/Ubuntu system: make sure Qt's X11/OpenGL libraries (and xvfb for --screenshot) are installed"
fi

PY=${PYTHON:-python3}
key=$(sha256sum pyproject.toml | cut -c1-16)
if [ -n "${CELLCLASS_VENV_CACHE:-}" ]; then
  VENV="$CELLCLASS_VENV_CACHE/venv-$key"
  mkdir -p "$CELLCLASS_VENV_CACHE"
else
  VENV=".venv"
fi

healthy() {
  [ -x "$1/bin/python" ] && [ -f "$1/.cellclass-deps-$key" ] && \
    "$1/bin/python" -c "import torch, torchvision, timm, napari, PyQt6.QtWidgets, safetensors, sklearn, skimage, hatchling, editables, bioimageio.spec, bioimageio.core" >/dev/null 2>&1
}

if ! healthy "$VENV"; then
  echo "== creating the virtual environment in $VENV (torch is large: a few minutes)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip hatchling editables
  "$VENV/bin/python" -m pip install -q -e ".[testing]"
  # bioimage.io's validator for the tests: core 0.11.0 pins an older spec that fails under
  # pydantic 2.14, so it comes without its pins (its runtime needs are in the extra)
  "$VENV/bin/python" -m pip install -q --no-deps "bioimageio.core==0.11.0"
  touch "$VENV/.cellclass-deps-$key"
fi
# (re)point the editable install at this clone: a cached venv may come from another path
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
if [ "$VENV" != ".venv" ]; then
  rm -rf .venv
  ln -s "$VENV" .venv
fi
echo "== ready: .venv/bin/cellclass, .venv/bin/python -m pytest"
