"""Run the notebooks headless (nbclient), check their figures, regenerate paper/results.tex.

Called by notebooks/run.sh inside its virtual environment. Executed copies of the notebooks go
to target/notebooks/ (the committed notebooks stay without outputs). Exit status is non-zero
when a notebook fails, when an expected figure of a core spec (or of an optional spec whose
results exist) was not written by this run, or when results.tex cannot be generated.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import tidemark_results as tr  # noqa: E402

EXECUTED = ROOT / "target" / "notebooks"
# Which notebook draws which specs' figures: notebooks/<spec>.ipynb draws the core spec and,
# when its results exist, the spec's 16-core variant.
NOTEBOOK_SPECS = {s: [s, s + tr.SIXTEEN] for s in tr.CORE_SPECS}
NOTEBOOK_SPECS[tr.PEERS] = [tr.PEERS]
# notebooks/kafka.ipynb draws Kafka end to end from experiments/kafka/results.json.
NOTEBOOK_SPECS[tr.KAFKA] = [tr.KAFKA]


def run_notebook(name: str) -> str | None:
    """Execute one notebook; None on success, else the error."""
    path = HERE / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = str(HERE) + (os.pathsep + env_path if env_path else "")
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    )
    error = None
    try:
        client.execute()
    except CellExecutionError as e:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
        error = text.splitlines()[-1] if text else repr(e)
    except Exception as e:  # kernel death, timeouts
        error = f"{type(e).__name__}: {e}"
    EXECUTED.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, EXECUTED / f"{name}.ipynb")
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("name") == "stdout":
                for line in out.get("text", "").splitlines():
                    if line.startswith(("NOTE", "wrote")):
                        print(f"  {name}: {line}")
    return error


def check_figures(specs: list[str], started: float) -> list[str]:
    """Expected figures (PDF and PNG) not written since `started`."""
    missing = []
    for spec in specs:
        if tr.is_optional(spec) and not tr.has_results(spec):
            continue
        for fig in tr.expected_figures(spec):
            for ext in ("pdf", "png"):
                f = tr.FIGURES / f"{fig}.{ext}"
                if not f.is_file() or f.stat().st_mtime < started - 1:
                    shown = f.relative_to(ROOT) if f.is_relative_to(ROOT) else f
                    missing.append(f"{shown} (spec '{spec}')")
    return missing


def main(argv: list[str]) -> int:
    names = argv or list(NOTEBOOK_SPECS)
    unknown = [n for n in names if n not in NOTEBOOK_SPECS]
    if unknown:
        print(f"unknown notebook(s): {', '.join(unknown)}; known: {', '.join(NOTEBOOK_SPECS)}")
        return 2
    print(f"notebooks: results from {tr.RESULTS}, figures to {tr.FIGURES}")
    started = time.time()
    passed, failed = 0, []
    for name in names:
        t0 = time.time()
        error = run_notebook(name)
        if error:
            failed.append(name)
            print(f"FAIL {name}.ipynb ({time.time() - t0:.1f} s): {error}")
        else:
            passed += 1
            print(f"ok   {name}.ipynb ({time.time() - t0:.1f} s)")
    specs = [s for n in names for s in NOTEBOOK_SPECS[n]]
    missing = check_figures(specs, started)
    for m in missing:
        print(f"FAIL figure not produced: {m}")
    results_ok = True
    if not argv:
        gen = subprocess.run([sys.executable, str(ROOT / "paper" / "gen_results.py")])
        results_ok = gen.returncode == 0
        if not results_ok:
            print("FAIL paper/gen_results.py")
    bad = len(failed) + len(missing) + (0 if results_ok else 1)
    print(f"notebooks: {passed} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
