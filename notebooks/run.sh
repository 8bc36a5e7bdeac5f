#!/usr/bin/env bash
# Execute every notebook headless, check that each expected figure was written to
# paper/figures/, and regenerate paper/results.tex. Fails when a core spec has no results.
#
#   notebooks/run.sh              all notebooks
#   notebooks/run.sh latency      only notebooks/latency.ipynb (no figure check for the others)
#
# The virtual environment lives in target/venv (git-ignored) and is reused while
# notebooks/requirements.txt is unchanged; set TIDEMARK_VENV to put it elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${TIDEMARK_VENV:-target/venv}"
req=notebooks/requirements.txt
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
    echo "notebooks: creating $venv from $req"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$venv/requirements.txt"
fi
# Figures must be the same bytes on every machine, so that a figure that changes means the data
# changed. numpy picks SIMD code at run time (AVX-512 where the CPU has it), and its log and
# exp differ from the baseline code in the last bit, which moves coordinates in the PDFs: pin
# numpy to the x86-64-v2 baseline. The date is fixed for anything that stamps one (the figures
# are saved without dates, see tidemark_results.save).
if [ "$(uname -m)" = x86_64 ]; then
    export NPY_ENABLE_CPU_FEATURES=X86_V2
fi
export SOURCE_DATE_EPOCH=0
exec "$venv/bin/python" notebooks/run_notebooks.py "$@"
