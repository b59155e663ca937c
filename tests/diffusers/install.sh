#!/bin/sh
# Create the torch venv that runs the example diffusers predictor in the tests
# (torch, diffusers, transformers, accelerate, kserve; see requirements.txt),
# separate from the main venv so that one stays free of torch. Used by `make test`
# (through the stamp file) and by tests/diffusers when pytest runs without make.
# Usage: tests/diffusers/install.sh [PREFIX]   (default .cache/diffusers-venv)
set -eu
prefix=${1:-.cache/diffusers-venv}
here=$(dirname "$0")
rm -rf "$prefix"
"${PYTHON:-python3}" -m venv "$prefix"
# nice: torch is large and the machine's two cores are shared.
nice "$prefix/bin/python" -m pip install --disable-pip-version-check -q \
    -r "$here/requirements.txt"
touch "$prefix/.installed"
