"""Load `tidemark sweep` results and write paper figures.

The contract (written by `tidemark sweep`, read here and by `paper/gen_results.py`):

* `experiments/results/<spec>/runs.jsonl`: one JSON object per run, the fields of a bench
  report (`src/harness/report.rs`) plus `spec`, `point` (the grid parameters of the run),
  `repetition` and `hlog` (an HdrHistogram interval log, relative to the results directory,
  values in nanoseconds).
* `experiments/results/<spec>/machine.json`: cores, cpu_model, memory, host, os, date.
* `experiments/kafka/results.json` (not a sweep: `experiments/kafka/run.py` writes it): the
  machine, and one object per measurement of Kafka end to end through tansu (spec `kafka`).

Core specs must be present: a missing one raises `MissingResults`, so the notebook run fails.
Optional specs (peers, and runs on a 16-core machine that may not have been lent yet) print a
note and return `None`, and their figures are skipped.

Every figure is saved as PDF and PNG in `paper/figures/` under a name that starts with the spec
that produced it (`<spec>-<what>.pdf`), and its title names the spec as well.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("TIDEMARK_RESULTS", ROOT / "experiments" / "results"))
FIGURES = Path(os.environ.get("TIDEMARK_FIGURES", ROOT / "paper" / "figures"))

# Specs the paper's evaluation rests on (experiments/<spec>.toml): without their results the
# notebook run fails.
CORE_SPECS = ["latency", "epoch", "scaling", "windows", "partitioners", "engines", "recovery"]
# Specs that may legitimately be absent (documented in the README): the peer systems need their
# own installations, and `<core spec>-16core` needs a 16-core machine that is not always lent.
PEERS = "peers"
SIXTEEN = "-16core"

# The figures of each spec, as `<spec>-<kind>` (PDF and PNG in paper/figures/).
FIGURE_KINDS = {
    "latency": ["ccdf", "vs-rate"],
    "epoch": ["tradeoff"],
    "scaling": ["throughput"],
    "windows": ["kinds"],
    "partitioners": ["throughput"],
    "engines": ["throughput"],
    "peers": ["throughput"],
    "recovery": ["overhead", "size", "failure"],
    "kafka": ["end-to-end"],
}

# Kafka end to end (experiments/kafka/run.py): one sitting's results, committed, so a core spec.
KAFKA = "kafka"
KAFKA_RESULTS = Path(
    os.environ.get("TIDEMARK_KAFKA_RESULTS", ROOT / "experiments" / "kafka" / "results.json")
)


def base_spec(spec: str) -> str:
    """`latency-16core` -> `latency`."""
    return spec[: -len(SIXTEEN)] if spec.endswith(SIXTEEN) else spec


def expected_figures(spec: str) -> list[str]:
    """Base names of the figures a spec's notebook draws (a scaling spec with a measured
    parallel ceiling also draws `<spec>-fraction`)."""
    figures = [f"{spec}-{k}" for k in FIGURE_KINDS[base_spec(spec)]]
    if base_spec(spec) == "scaling" and (spec_dir(spec) / CEILING).is_file():
        figures.append(f"{spec}-fraction")
    return figures


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
    return spec == PEERS or spec.endswith(SIXTEEN)


def has_results(spec: str) -> bool:
    return (spec_dir(spec) / "runs.jsonl").is_file()


def load_runs(spec: str) -> pd.DataFrame | None:
    """All runs of a spec as a DataFrame, one row per run.

    Columns: the report fields, `point_<name>` for each grid parameter, `p50_ms` ... `max_ms`
    (latency in milliseconds), `offered` (events/s, NaN for closed loop), `achieved` (events/s),
    `overloaded` (bool), `hlog_path` (absolute); `engine` is `ceiling` for parallel-ceiling
    runs (`"ceiling": true`: the baseline on several workers at once). For an optional spec without results: prints a
    note, returns None. For a core spec without results: raises MissingResults.

    Overload: a run that completed no epoch while events kept arriving has unbounded latency.
    Reports say so with `"overloaded": true` and null percentiles; rows from before that field
    (zero percentiles and `samples` 0, with an epoch shorter than the measured part) are read
    the same way. Its percentiles are set to infinity, never 0, so that a median over
    repetitions shows the overload instead of hiding it, figures mark it and tables print it as
    unbounded. Rows whose latency was not measured at all (`"latency_measured": false`, the
    peer systems) get NaN percentiles instead.
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
    not_measured = (
        df["latency_measured"].eq(False) if "latency_measured" in df.columns
        else pd.Series(False, index=df.index)
    )
    derived = (df["samples"] == 0) & (df["epoch_ns"] < df["duration_s"] * 1e9) & ~not_measured
    if "overloaded" in df.columns:
        df["overloaded"] = df["overloaded"].astype("boolean").fillna(derived).astype(bool)
    else:
        df["overloaded"] = derived
    for q in ["p50", "p90", "p99", "p999", "max"]:
        col = f"lat_{q}"
        # A report may write the percentiles as null one by one or `latency_ns` as null.
        ns = pd.to_numeric(df[col], errors="coerce") if col in df.columns else np.nan
        df[f"{q}_ms"] = pd.Series(ns, index=df.index, dtype=float) / 1e6
        df.loc[df["overloaded"], f"{q}_ms"] = np.inf
        df.loc[not_measured, f"{q}_ms"] = np.nan
    df["offered"] = pd.to_numeric(df["offered_rate"], errors="coerce")
    df["achieved"] = df["achieved_rate"].astype(float)
    # Rounded inputs (far finer than any figure or table shows), so that figures and numbers
    # depend on the measurements, not on the last bits of how a report printed them.
    for col in ["achieved", "offered", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"]:
        df[col] = round_sig(df[col])
    df["closed_loop"] = df["offered"].isna()
    if "hlog" in df.columns:
        df["hlog_path"] = [
            str(spec_dir(spec) / h) if isinstance(h, str) and h else None for h in df["hlog"]
        ]
    else:
        df["hlog_path"] = None
    df["epoch_ms"] = df["epoch_ns"].astype(float) / 1e6
    if "repetition" not in df.columns:
        df["repetition"] = 0
    df["job"] = [
        w if q in (None, "", w) else f"{w} {q}" for w, q in zip(df["workload"], df["query"])
    ]
    # The parallel ceiling (`--engine baseline --workers N`, N > 1: N independent baselines at
    # once) is its own series, `ceiling`, so that `baseline` stays the one-thread COST baseline.
    if "ceiling" in df.columns:
        ceiling = df["ceiling"].astype("boolean").fillna(False).astype(bool)
        df.loc[ceiling, "engine"] = "ceiling"
    return df


# The machine's parallel ceiling beside a scaling spec's runs: one bench report per process of
# independent single-threaded baselines started at once (see experiments/results/*/README.md).
CEILING = "ceiling.jsonl"


def load_ceiling(spec: str) -> dict | None:
    """The parallel ceiling measured beside a spec's runs, or None: `workload`, `processes`
    (baselines run at once), `total` (their achieved rates summed, events/s) and `each` (the
    per-process rates)."""
    path = spec_dir(spec) / CEILING
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return None
    workloads = {r["workload"] for r in rows}
    assert len(workloads) == 1, f"{path}: one workload expected, got {sorted(workloads)}"
    each = [float(r["achieved_rate"]) for r in rows]
    return {"workload": workloads.pop(), "processes": len(rows), "total": sum(each), "each": each}


def round_sig(values, digits: int = 9):
    """Rounds to `digits` significant digits; infinities and NaN pass through."""
    x = np.asarray(values, dtype=float)
    finite = np.isfinite(x) & (x != 0)
    out = x.copy()
    scale = np.zeros_like(x)
    scale[finite] = digits - 1 - np.floor(np.log10(np.abs(x[finite])))
    out[finite] = [round(v, int(s)) for v, s in zip(x[finite], scale[finite])]
    return pd.Series(out, index=values.index) if isinstance(values, pd.Series) else out


def load_kafka() -> tuple[dict, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """`experiments/kafka/results.json`: `(machine, throughput, ceiling, latency)`, one row per
    run, each with its `repetition` (0 to N-1 for `run.py --repeat N`; 0 in a file written
    before `--repeat`).

    `throughput` has one row per run of a checkpoint interval (`interval`: `none` or
    milliseconds as text, `records_per_s`, `records`, `seconds`), in the run's order;
    `ceiling` one per run of kcat (`produce_per_s`, `consume_per_s`, `records`); `latency` one
    per run of an interval with `p50`, `p90`, `p99`, `max` and `mean` (ms from a window's end
    to its row's output message; NaN for a run whose output had no rows), `rows`, `rate`
    (records/s produced) and `seconds`. `machine` is run.py's machine object, with `repeat`
    (1 in a file written before `--repeat`). Raises `MissingResults` without the file or
    without any of the three measures. Summarize with `kafka_spread`."""
    if not KAFKA_RESULTS.is_file():
        raise MissingResults(f"{KAFKA_RESULTS}: no results (experiments/kafka/run.py --json)")
    data = json.loads(KAFKA_RESULTS.read_text())
    runs = [{"repetition": 0, **r} for r in data.get("runs", [])]
    of = lambda measure: [r for r in runs if r.get("measure") == measure]
    ceiling = pd.DataFrame(of("kcat_ceiling"))
    tput = pd.DataFrame([{"interval": str(r["checkpoint_interval_ms"]), **r}
                         for r in of("throughput")])
    lat = pd.DataFrame(
        [{"interval": str(r["checkpoint_interval_ms"]), "repetition": r["repetition"],
          "rows": r["rows"], "rate": r.get("rate", np.nan), "seconds": r.get("seconds", np.nan),
          **r.get("latency_ms", {q: np.nan for q in ["p50", "p90", "p99", "max", "mean"]})}
         for r in of("latency")])
    if ceiling.empty or tput.empty or lat.empty:
        raise MissingResults(f"{KAFKA_RESULTS}: lacks the kcat ceiling, throughput or latency")
    machine = {"repeat": 1, **data.get("machine", {})}
    return machine, tput, ceiling, lat


def kafka_spread(df: pd.DataFrame, columns: list[str], by: str | None = "interval"
                 ) -> pd.DataFrame:
    """The runs of `load_kafka`'s frames summarized per value of `by` (in the order of first
    appearance; `None`: all rows as one group): for each of `columns`, the median over the runs
    (`<column>`), the smallest (`<column>_lo`) and the largest (`<column>_hi`); `runs` counts
    the runs with a value (a latency run without output rows has none, and is left out)."""
    key = df[by] if by else pd.Series(0, index=df.index)
    out = []
    for value in dict.fromkeys(key):
        group = df[key == value]
        row = {by: value} if by else {}
        row["runs"] = int(group[columns].notna().all(axis=1).sum())
        for c in columns:
            row[c] = group[c].median()
            row[f"{c}_lo"] = group[c].min()
            row[f"{c}_hi"] = group[c].max()
        out.append(row)
    return pd.DataFrame(out)


def kafka_interval_label(interval: str) -> str:
    """`none` -> `no checkpoints`, `500` -> `500 ms`, `2000` -> `2 s`."""
    if interval == "none":
        return "no checkpoints"
    ms = float(interval)
    return f"{ms / 1000:g} s" if ms >= 1000 else f"{ms:g} ms"


def load_machine(spec: str) -> dict:
    """machine.json of a spec ({} when absent), with `cores` (usable cores) and `memory_gib`
    filled in from whichever fields the sweep wrote."""
    path = spec_dir(spec) / "machine.json"
    m = json.loads(path.read_text()) if path.is_file() else {}
    if m:
        m.setdefault("cores", m.get("cores_available") or m.get("cores_cpuinfo") or "?")
        mem = m.get("memory_bytes", m.get("memory"))
        if isinstance(mem, (int, float)) and mem > 0:
            m.setdefault("memory_gib", mem / 2**30)
    return m


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
    return df[cols].apply(
        lambda r: ", ".join(f"{c[len('point_'):]}={v}" for c, v in r.items() if not pd.isna(v)),
        axis=1,
    )


def summarize(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Median over repetitions, with min and max of achieved rate and p99, per group."""
    g = df.groupby(by, dropna=False)
    extra = {} if "offered" in by else {"offered": ("offered", "first")}
    out = g.agg(
        achieved=("achieved", "median"),
        achieved_min=("achieved", "min"),
        achieved_max=("achieved", "max"),
        **extra,
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


_V2_ENCODING = 0x1C849303
_V2_COMPRESSED = 0x1C849304


def _compressed_b64(b64: str) -> bytes:
    """A histogram of a log line as base64 of the compressed V2 encoding (what `hdrh` decodes);
    an uncompressed V2 encoding (also valid in interval logs) is deflated here first."""
    raw = base64.b64decode(b64)
    (cookie,) = struct.unpack(">I", raw[:4])
    if cookie & ~0xF0 == _V2_ENCODING:
        z = zlib.compress(raw)
        raw = struct.pack(">II", _V2_COMPRESSED | 0x10, len(z)) + z
    elif cookie & ~0xF0 != _V2_COMPRESSED:
        raise ValueError(f"not an HdrHistogram V2 encoding (cookie {cookie:#x})")
    return base64.b64encode(raw)


def read_hlog(path: str | Path):
    """Merge every interval histogram of an HdrHistogram interval log into one histogram (ns).

    Reads the standard log format: `#` comment and header lines, an optional CSV legend line,
    then `[Tag=...,]start,length,max,histogram` lines with base64 V2 histograms.
    """
    from hdrh.histogram import HdrHistogram

    total = HdrHistogram(1, 3_600_000_000_000, 3)
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith('"StartTimestamp"'):
            continue
        fields = line.split(",")
        if fields[0].startswith("Tag="):
            fields = fields[1:]
        if len(fields) != 4:
            raise ValueError(f"{path}: not an interval log line: {line[:60]}")
        total.add(HdrHistogram.decode(_compressed_b64(fields[3])))
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
            "figure.constrained_layout.use": True,
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
        if abs(x) >= div * 0.9995:
            v = x / div
            return f"{v:.3g}{suffix}"
    return f"{x:.3g}"


def throughput_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Runs that measure throughput: closed-loop ones when the spec has them, else all."""
    closed = df[df["closed_loop"]]
    return closed if len(closed) else df


def latency_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Runs that measure latency: open-loop ones when the spec has them, else all.

    A run without a single latency sample has one of two reasons. If its epoch is at least as
    long as the measured part, nothing could be measured: it is left out, with a note.
    Otherwise it is overloaded (see `load_runs`: its latency is already infinite); a note
    lists such runs."""
    opened = df[~df["closed_loop"]]
    rows = (opened if len(opened) else df).copy()
    empty = (rows["samples"] == 0) & ~rows["overloaded"]
    unmeasurable = empty & (rows["epoch_ns"] >= rows["duration_s"] * 1e9)
    if unmeasurable.any():
        print(f"NOTE: {int(unmeasurable.sum())} run(s) with an epoch as long as the measured part "
              "left out: " + "; ".join(sorted(set(label(df).loc[rows.index[unmeasurable]]))))
    overloaded = rows["overloaded"]
    if overloaded.any():
        print(f"NOTE: {int(overloaded.sum())} run(s) completed no epoch (overloaded): latency "
              "unbounded: " + "; ".join(sorted(set(label(df).loc[rows.index[overloaded]]))))
    return rows[~unmeasurable]


def mark_unbounded(ax, x, y, **kw):
    """Mark points whose latency is unbounded (inf) at the top of a log-scale latency axis."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    inf = np.isinf(y)
    if inf.any():
        ax.plot(x[inf], np.full(inf.sum(), 1.0), marker="x", ls="none", ms=6,
                transform=ax.get_xaxis_transform(), clip_on=False, **kw)
    return inf.any()


def config(df: pd.DataFrame) -> pd.Series:
    """`engine` plus `, N workers` where the worker count varies: one line per configuration."""
    engine = df["engine"].astype(str)
    if df["workers"].nunique() > 1:
        return engine + ", " + df["workers"].astype(str) + " workers"
    return engine


def load_label(df: pd.DataFrame) -> pd.Series:
    """`closed loop` or the offered rate (`4M/s`)."""
    return df["offered"].map(lambda r: "closed loop" if pd.isna(r) else f"{rate_fmt(r)}/s")


def _bars(ax, s: pd.DataFrame, x: str, hue: str | None, col: str, lo: str, hi: str, scale: float):
    xs = sorted(s[x].astype(str).unique(), key=_natural)
    hs = sorted(s[hue].astype(str).unique(), key=_natural) if hue else [None]
    width = 0.8 / len(hs)
    for i, h in enumerate(hs):
        part = s if h is None else s[s[hue].astype(str) == h]
        vals, errs = [], [[], []]
        for xv in xs:
            r = part[part[x].astype(str) == xv]
            v = r[col].iloc[0] * scale if len(r) else np.nan
            ok = np.isfinite(v) and np.isfinite(r[hi].iloc[0]) if len(r) else False
            vals.append(v if np.isfinite(v) else np.nan)
            errs[0].append(v - r[lo].iloc[0] * scale if ok else 0)
            errs[1].append(r[hi].iloc[0] * scale - v if ok else 0)
        pos = np.arange(len(xs)) + (i - (len(hs) - 1) / 2) * width
        ax.bar(pos, vals, width, yerr=errs, capsize=2, label=h)
        for p, xv in zip(pos, xs):
            r = part[part[x].astype(str) == xv]
            if len(r) and np.isinf(r[col].iloc[0]):
                ax.annotate("no epoch completed", (p, 0.02), xycoords=ax.get_xaxis_transform(),
                            ha="center", va="bottom", fontsize=6, rotation=90)
    ax.set_xlim(-0.5, len(xs) - 0.5)
    ax.set_xticks(np.arange(len(xs)))
    ax.set_xticklabels(xs, rotation=20, ha="right")
    ax.set_xlabel(x.replace("point_", ""))
    if hue and len(hs) > 1:
        ax.legend(title=hue.replace("point_", "").replace("_", " "))


def bar_panels(df: pd.DataFrame, x: str, hue: str | None, spec: str, name: str, title: str,
               log: bool = False):
    """Grouped bars, one group per value of `x`, one bar per value of `hue`, medians over
    repetitions with min-max whiskers. Left: throughput of the closed-loop runs. Right: p99
    latency of the open-loop runs, one bar per `hue` and offered rate. A panel without runs
    (no closed-loop runs, or no latency measured) is left out."""
    plt = style()
    df = df.copy()
    closed = df[df["closed_loop"]]
    opened = latency_rows(df[~df["closed_loop"]]) if (~df["closed_loop"]).any() else df.iloc[0:0]
    if closed.empty and opened.empty:
        closed = df
    panels = []
    if len(closed):
        panels.append(("thr", closed))
    if len(opened):
        opened = opened.copy()
        rates = load_label(opened)
        several = rates.nunique() > 1
        if hue:
            opened["_hue"] = opened[hue].astype(str) + (", " + rates if several else "")
        else:
            opened["_hue"] = rates
        hue_title = ", ".join(
            ([hue.replace("point_", "")] if hue else []) + (["offered rate"] if several or not hue else [])
        )
        panels.append(("lat", opened))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    for ax, (kind, rows) in zip(axes[0], panels):
        if kind == "thr":
            s = summarize(rows, [c for c in [x, hue] if c])
            _bars(ax, s, x, hue, "achieved", "achieved_min", "achieved_max", 1e-6)
            ax.set_ylabel("throughput, closed loop (M events/s)")
            if log:
                ax.set_yscale("log")
        else:
            h = "_hue" if rows["_hue"].nunique() > 1 else None
            s = summarize(rows, [c for c in [x, h] if c])
            _bars(ax, s, x, h, "p99_ms", "p99_min", "p99_max", 1.0)
            ax.set_ylabel("p99 epoch latency, open loop (ms)")
            ax.set_yscale("log")
            if h:
                ax.get_legend().set_title(hue_title)
    fig.suptitle(f"{title} (spec: {spec})")
    save(fig, name, spec)
    return fig


def _natural(s: str):
    """Sort key that orders `q11` after `q7` and `16` after `2`."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s)))


# The grid parameter the partitioners spec compares (first present that varies).

PARTITIONERS_X = ["partitioner", "partition"]

# Grid parameters that are not configurations to compare (load, run length, seeds).
_NOT_GROUPS = {"point_rate", "point_duration", "point_warmup", "point_seed", "point_pool"}


def main_parameter(df: pd.DataFrame, names: list[str]) -> str:
    """The parameter a spec compares: the first of `names` that varies, else the first varying
    grid parameter that is not load or run length, else the job (workload and query)."""
    for n in names:
        c = f"point_{n}"
        if c in df.columns and df[c].astype(str).nunique() > 1:
            return c
    rest = [c for c in varying(df) if c not in _NOT_GROUPS]
    return rest[0] if rest else "job"


def second_parameter(df: pd.DataFrame, x: str) -> str | None:
    """Another compared parameter besides `x` (bars within a group), or None."""
    same_job = {"job", "point_workload", "point_query"}
    cand = [c for c in varying(df) if c not in _NOT_GROUPS and c != x and c not in same_job]
    if x not in same_job and df["job"].nunique() > 1:
        cand.insert(0, "job")
    return cand[0] if cand else None


def rate_label(df: pd.DataFrame) -> pd.Series:
    """`4M events/s` or `closed loop`, plus the engine and worker count where they vary."""
    out = df["offered"].map(lambda r: "closed loop" if pd.isna(r) else f"{rate_fmt(r)} events/s")
    if df["engine"].nunique() > 1:
        out = out + ", " + df["engine"].astype(str)
    if df["workers"].nunique() > 1:
        out = out + ", " + df["workers"].astype(str) + " workers"
    return out


# The window kind of each job of the windows spec, and the flag that sizes it.
WINDOW_KIND = {
    "ysb": ("tumbling", "window"),
    "nexmark q7": ("tumbling", "window"),
    "nexmark q5": ("sliding", "slide"),
    "nexmark q11": ("session", "gap"),
}


def window_configs(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `kind` (tumbling, sliding, session), `size_flag` (window, slide or gap), `size`
    (its value as written in the spec), `size_ms` and `series` (`ysb, tumbling`) per run."""
    df = df.copy()
    kinds, flags, sizes = [], [], []
    for _, r in df.iterrows():
        kind, flag = WINDOW_KIND.get(r["job"], ("?", "window"))
        value = r.get(f"point_{flag}")
        kinds.append(kind)
        flags.append(flag)
        sizes.append(value if isinstance(value, str) else None)
    df["kind"], df["size_flag"], df["size"] = kinds, flags, sizes
    df["size_ms"] = [parse_duration_ns(v) / 1e6 if v else np.nan for v in df["size"]]
    df["series"] = df["job"] + " (" + df["kind"] + ", " + df["size_flag"] + ")"
    return df


def peer_config(df: pd.DataFrame) -> pd.Series:
    """`workers x processes`, plus the epoch where the run has one (tidemark runs)."""
    out = df["workers"].astype(str) + " x " + df["processes"].astype(str)
    if "point_epoch" in df.columns:
        out = out + df["point_epoch"].map(lambda e: f", epoch {e}" if isinstance(e, str) else "")
    return out


def checkpoint_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Runs with checkpoints (`tidemark bench --checkpoint-dir`), with columns for what their
    report's `checkpoints` says: `interval_s`, `campaigns` (YSB's state size, from the
    parameters), `ckpt_count`, `snapshot_ms` and `snapshot_max_ms` (mean and largest snapshot
    time), `snapshot_kb` and `snapshot_max_kb` (mean and largest checkpoint size, all workers),
    `throughput_ratio` and `p99_ratio` (with over without checkpoints; `p99_ratio` NaN when
    either run's latency was unbounded), `without_achieved`, `without_p99_ms`, and `failed`
    with `failure` (the report's `checkpoints.failure` object, for `--fail-at` runs)."""
    if "checkpoints_interval_ns" not in df.columns:
        return df.iloc[0:0]
    df = df[df["checkpoints_interval_ns"].notna()].copy()
    df["interval_s"] = df["checkpoints_interval_ns"].astype(float) / 1e9
    df["campaigns"] = df["parameters"].str.extract(r"campaigns=(\d+)")[0].astype(float)
    df["ckpt_count"] = df["checkpoints_count"].astype(int)
    num = lambda col: pd.to_numeric(df[col], errors="coerce").astype(float)
    df["snapshot_ms"] = round_sig(num("checkpoints_snapshot_ns_mean") / 1e6)
    df["snapshot_max_ms"] = round_sig(num("checkpoints_snapshot_ns_max") / 1e6)
    df["snapshot_kb"] = round_sig(num("checkpoints_bytes_mean") / 1e3)
    df["snapshot_max_kb"] = round_sig(num("checkpoints_bytes_max") / 1e3)
    df["throughput_ratio"] = round_sig(num("checkpoints_throughput_ratio"))
    df["p99_ratio"] = round_sig(num("checkpoints_p99_ratio"))
    df["without_achieved"] = round_sig(num("checkpoints_without_achieved_rate"))
    df["without_p99_ms"] = round_sig(num("checkpoints_without_lat_p99") / 1e6)
    if "checkpoints_failure_at_ns" in df.columns:
        df["failed"] = df["checkpoints_failure_at_ns"].notna()
        df["failure"] = [
            {
                "at_ns": r["checkpoints_failure_at_ns"],
                "restored_cut_ns": r.get("checkpoints_failure_restored_cut_ns"),
                "recovery_ns": None if pd.isna(r.get("checkpoints_failure_recovery_ns")) else r.get("checkpoints_failure_recovery_ns"),
                "timeline": r["checkpoints_failure_timeline"],
            } if failed else None
            for failed, (_, r) in zip(df["failed"], df.iterrows())
        ]
    else:
        df["failed"] = False
        df["failure"] = None
    return df
