"""Load `tidemark sweep` results and write paper figures.

The contract (written by `tidemark sweep`, read here and by `paper/gen_results.py`):

* `experiments/results/<spec>/runs.jsonl`: one JSON object per run, the fields of a bench
  report (`src/harness/report.rs`) plus `spec`, `point` (the grid parameters of the run),
  `repetition` and `hlog` (an HdrHistogram interval log, relative to the results directory,
  values in nanoseconds).
* `experiments/results/<spec>/machine.json`: cores, cpu_model, memory, host, os, date.

Core specs must be present: a missing one raises `MissingResults`, so the notebook run fails.
Optional specs (peers, and runs on a 16-core machine that may not have been lent yet) print a
note and return `None`, and their figures are skipped.

Every figure is saved as PDF and PNG in `paper/figures/` under a name that starts with the spec
that produced it (`<spec>-<what>.pdf`), and its title names the spec as well.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("TIDEMARK_RESULTS", ROOT / "experiments" / "results"))
FIGURES = Path(os.environ.get("TIDEMARK_FIGURES", ROOT / "paper" / "figures"))

# Specs the paper's evaluation rests on: without them the notebook run fails.
CORE_SPECS = ["latency", "epochs", "scaling", "windows", "partitioners", "engines"]
# Specs that may legitimately be absent (documented in the README): peer systems need their
# own installs, and 16-core runs need a machine that is not always available.
OPTIONAL_SPECS = ["peers", "scaling16"]

# The figures each notebook must produce (base names in paper/figures, without extension).
FIGURES_BY_SPEC = {
    "latency": ["latency-ccdf", "latency-vs-rate"],
    "epochs": ["epochs-tradeoff"],
    "scaling": ["scaling-throughput"],
    "windows": ["windows-kinds"],
    "partitioners": ["partitioners"],
    "engines": ["engines"],
    "peers": ["peers"],
    "scaling16": ["scaling16-throughput"],
}


class MissingResults(FileNotFoundError):
    """A core spec has no results: its figures cannot be drawn."""


_SUFFIX = {"k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9}


def parse_rate(value) -> float | None:
    """`4M` -> 4e6, `250k` -> 2.5e5, numbers pass through; `max`/None -> None."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text in ("", "max"):
        return None
    if text[-1] in _SUFFIX:
        return float(text[:-1]) * _SUFFIX[text[-1]]
    return float(text)


_DURATION = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}


def parse_duration_ns(value) -> float | None:
    """`100us` -> 1e5, `1s` -> 1e9; plain numbers are milliseconds (as on the CLI)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) * 1e6
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ns|us|ms|s|m|h)?\s*", str(value))
    if not m:
        raise ValueError(f"not a duration: {value!r}")
    return float(m.group(1)) * _DURATION[m.group(2) or "ms"]


def spec_dir(spec: str) -> Path:
    return RESULTS / spec


def is_optional(spec: str) -> bool:
    return spec in OPTIONAL_SPECS


def load_runs(spec: str) -> pd.DataFrame | None:
    """All runs of a spec as a DataFrame, one row per run.

    Columns: the report fields, `point_<name>` for each grid parameter, `p50_ms` ... `max_ms`
    (latency in milliseconds), `offered` (events/s, NaN for closed loop), `achieved` (events/s),
    `hlog_path` (absolute). For an optional spec without results: prints a note, returns None.
    For a core spec without results: raises MissingResults.
    """
    path = spec_dir(spec) / "runs.jsonl"
    if not path.is_file():
        if is_optional(spec):
            print(f"NOTE: {path} is absent; spec '{spec}' is optional, its figures are skipped.")
            return None
        raise MissingResults(
            f"{path} is absent: spec '{spec}' is a core spec; run `tidemark sweep "
            f"experiments/{spec}.toml` (see README, 'Reproducing the paper')."
        )
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise MissingResults(f"{path} has no runs")
    df = pd.json_normalize(rows, sep="_")
    df.columns = [c.replace("latency_ns_", "lat_") for c in df.columns]
    for q in ["p50", "p90", "p99", "p999", "max"]:
        df[f"{q}_ms"] = df[f"lat_{q}"].astype(float) / 1e6
    df["offered"] = pd.to_numeric(df["offered_rate"], errors="coerce")
    df["achieved"] = df["achieved_rate"].astype(float)
    df["closed_loop"] = df["offered"].isna()
    if "hlog" in df.columns:
        df["hlog_path"] = [
            str(spec_dir(spec) / h) if isinstance(h, str) and h else None for h in df["hlog"]
        ]
    else:
        df["hlog_path"] = None
    if "repetition" not in df.columns:
        df["repetition"] = 0
    df["job"] = [
        w if q in (None, "", w) else f"{w} {q}" for w, q in zip(df["workload"], df["query"])
    ]
    return df


def load_machine(spec: str) -> dict:
    """machine.json of a spec ({} when absent)."""
    path = spec_dir(spec) / "machine.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def point_columns(df: pd.DataFrame) -> list[str]:
    """The grid parameters of a spec (`point_*` columns)."""
    return [c for c in df.columns if c.startswith("point_")]


def varying(df: pd.DataFrame, exclude=()) -> list[str]:
    """Grid parameters that take more than one value in this spec."""
    return [
        c
        for c in point_columns(df)
        if c not in exclude and df[c].astype(str).nunique() > 1
    ]


def find_point(df: pd.DataFrame, *names: str) -> str | None:
    """The first `point_<name>` column present, else None."""
    for n in names:
        if f"point_{n}" in df.columns:
            return f"point_{n}"
    return None


def label(df: pd.DataFrame) -> pd.Series:
    """A short configuration label per run (the varying grid parameters)."""
    cols = varying(df, exclude=["point_repetition"])
    if not cols:
        return pd.Series(["run"] * len(df), index=df.index)
    return df[cols].astype(str).apply(
        lambda r: ", ".join(f"{c[len('point_'):]}={v}" for c, v in r.items()), axis=1
    )


def summarize(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Median over repetitions, with min and max of achieved rate and p99, per group."""
    g = df.groupby(by, dropna=False)
    out = g.agg(
        achieved=("achieved", "median"),
        achieved_min=("achieved", "min"),
        achieved_max=("achieved", "max"),
        offered=("offered", "first"),
        p50_ms=("p50_ms", "median"),
        p90_ms=("p90_ms", "median"),
        p99_ms=("p99_ms", "median"),
        p999_ms=("p999_ms", "median"),
        max_ms=("max_ms", "median"),
        p99_min=("p99_ms", "min"),
        p99_max=("p99_ms", "max"),
        runs=("achieved", "size"),
    )
    return out.reset_index()


# ---------------------------------------------------------------- HdrHistogram interval logs


def read_hlog(path: str | Path):
    """Merge every interval histogram of an HdrHistogram log into one histogram (ns)."""
    from hdrh.histogram import HdrHistogram
    from hdrh.log import HistogramLogReader

    total = HdrHistogram(1, 3_600_000_000_000, 3)
    reader = HistogramLogReader(str(path), total)
    while True:
        h = reader.get_next_interval_histogram()
        if h is None:
            break
        total.add(h)
    reader.close()
    return total


def ccdf(paths) -> tuple[np.ndarray, np.ndarray]:
    """Latency CCDF of one or more interval logs (merged): values (ms) and P[latency > value]."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    h = None
    for p in paths:
        one = read_hlog(p)
        if h is None:
            h = one
        else:
            h.add(one)
    if h is None:
        return np.array([]), np.array([])
    n = h.get_total_count()
    if n == 0:
        return np.array([]), np.array([])
    values, counts = [], []
    for item in h.get_recorded_iterator():
        values.append(item.value_iterated_to)
        counts.append(item.count_at_value_iterated_to)
    values = np.asarray(values, dtype=float) / 1e6
    above = n - np.cumsum(np.asarray(counts, dtype=float))
    return values, above / n


# ---------------------------------------------------------------- figures


def style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.figsize": (5.0, 3.2),
            "figure.dpi": 120,
            "font.size": 9,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.fontsize": 7,
            "savefig.bbox": "tight",
        }
    )
    return plt


def machine_note(spec: str) -> str:
    m = load_machine(spec)
    if not m:
        return ""
    return f"{m.get('cores', '?')} cores"


def save(fig, name: str, spec: str):
    """Write `paper/figures/<name>.pdf` and `.png`; `name` must start with the spec."""
    assert name.startswith(spec), f"figure {name} must be named after its spec {spec}"
    FIGURES.mkdir(parents=True, exist_ok=True)
    # No timestamps in the files, so regenerating the same results gives the same bytes.
    fig.savefig(FIGURES / f"{name}.pdf", metadata={"CreationDate": None, "ModDate": None})
    fig.savefig(FIGURES / f"{name}.png", dpi=200, metadata={"Software": None})
    print(f"wrote {FIGURES / name}.pdf and .png (spec '{spec}')")


def rate_fmt(x: float) -> str:
    """Events/s as `4M`, `250k`."""
    for div, suffix in [(1e9, "G"), (1e6, "M"), (1e3, "k")]:
        if abs(x) >= div:
            v = x / div
            return f"{v:.3g}{suffix}"
    return f"{x:.3g}"


def throughput_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Runs that measure throughput: closed-loop ones when the spec has them, else all."""
    closed = df[df["closed_loop"]]
    return closed if len(closed) else df


def latency_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Runs that measure latency: open-loop ones when the spec has them, else all."""
    opened = df[~df["closed_loop"]]
    return opened if len(opened) else df


def bar_panels(df: pd.DataFrame, x: str, hue: str | None, spec: str, name: str, title: str):
    """Two panels, throughput (median over repetitions, min-max whiskers) and p99 latency,
    as grouped bars: one group per value of `x`, one bar per value of `hue`."""
    plt = style()
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.0))
    panels = [
        (axes[0], throughput_rows(df), "achieved", "achieved_min", "achieved_max", 1e-6,
         "throughput (M events/s)"),
        (axes[1], latency_rows(df), "p99_ms", "p99_min", "p99_max", 1.0, "p99 latency (ms)"),
    ]
    for ax, rows, col, lo, hi, scale, ylabel in panels:
        by = [x] + ([hue] if hue else [])
        s = summarize(rows, by)
        xs = sorted(s[x].astype(str).unique(), key=_natural)
        hs = sorted(s[hue].astype(str).unique(), key=_natural) if hue else [None]
        width = 0.8 / len(hs)
        for i, h in enumerate(hs):
            part = s if h is None else s[s[hue].astype(str) == h]
            vals, errs = [], [[], []]
            for xv in xs:
                r = part[part[x].astype(str) == xv]
                if len(r):
                    v = r[col].iloc[0] * scale
                    vals.append(v)
                    errs[0].append(v - r[lo].iloc[0] * scale)
                    errs[1].append(r[hi].iloc[0] * scale - v)
                else:
                    vals.append(np.nan)
                    errs[0].append(0)
                    errs[1].append(0)
            pos = np.arange(len(xs)) + (i - (len(hs) - 1) / 2) * width
            ax.bar(pos, vals, width, yerr=errs, capsize=2, label=h)
        ax.set_xticks(np.arange(len(xs)))
        ax.set_xticklabels(xs, rotation=20, ha="right")
        ax.set_ylabel(ylabel)
        ax.set_xlabel(x.replace("point_", ""))
        if hue and len(hs) > 1:
            ax.legend(title=hue.replace("point_", ""))
    fig.suptitle(f"{title} (spec: {spec})")
    save(fig, name, spec)
    return fig


def _natural(s: str):
    """Sort key that orders `q11` after `q7` and `16` after `2`."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]
