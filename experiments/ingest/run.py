#!/usr/bin/env python3
"""Times `tidemark window` on a large CSV file against DuckDB on the same file and query.

The file has the shape of issue 14: `ts,key,value`, event times rising 0-2 ms a row, 10 k keys,
integer values; it is generated (seeded, deterministic) under target/ and never committed. The
query is a keyed tumbling sum (`--window tumbling:SIZE --agg sum`); DuckDB computes the same
aggregation from the same CSV into a CSV, on one thread, as the single-thread reference.

Runs are interleaved (every configuration once, then again), because the machine is shared:
compare the ratios taken in one run, not the seconds. Peak memory is the child's VmHWM (peak
resident set), sampled while it runs. Each tidemark run's output is checked against DuckDB's (same rows, as sets).

    python3 experiments/ingest/run.py --rows 10000000 --window 1h --workers 1 2 --repeat 3

`--readers all one` also times the single reader (`tidemark window --readers one`) beside the
parallel one (the default, `all`); the first value is the one the ratios are taken for.
`--outputs file parts` also times `--output DIR/` (one part file per process, written by that
process's workers) beside the single output file (the default, `file`).

`--quote-keys` writes every key as a quoted field (`"k17"`, the same data): a file with quotes,
which the parallel readers cut with the CSV parser rather than by newlines.

`--before BINARY` also times an earlier build with the same flags (engine `tidemark-before`), so a
change is measured against its base in one sitting.

Every run records its wall time, its CPU time (user + system, all threads) and the load average:
on a shared machine the wall time follows the other load (and a run with more threads gets a
larger share of a loaded machine), the CPU time much less, so both ratios are printed.

Prints one JSON line per run and a summary of median ratios; `--json FILE` appends the runs.
"""

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "target"
VENV = TARGET / "ingest-venv"
DUCKDB_VERSION = "1.4.2"

UNITS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}


def millis(text):
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            return int(text[: -len(unit)]) * UNITS[unit]
    return int(text)


def generate(path, rows, keys, seed, quote=False):
    """Writes the input: ts rising by 0, 1 or 2 ms a row, uniform keys, values in [0, 1000).

    With `quote`, every key is a quoted field (`"k17"`): the same data, but a file with quotes,
    whose record ends only a CSV parser can tell (the parallel readers' slower path)."""
    q = '"' if quote else ""
    rng = random.Random(seed)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write("ts,key,value\n")
        ts = 0
        chunk = []
        for _ in range(rows):
            ts += rng.randrange(3)
            chunk.append(f"{ts},{q}k{rng.randrange(keys)}{q},{rng.randrange(1000)}\n")
            if len(chunk) == 65536:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))
    tmp.rename(path)


def python_with_duckdb():
    python = VENV / "bin" / "python"
    if not python.exists():
        venv.create(VENV, with_pip=True)
    probe = subprocess.run([python, "-c", "import duckdb"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run(
            [python, "-m", "pip", "install", "-q", f"duckdb=={DUCKDB_VERSION}"], check=True
        )
    return python


DUCKDB_QUERY = """
import duckdb, sys
size, src, dst = int(sys.argv[1]), sys.argv[2], sys.argv[3]
con = duckdb.connect()
con.execute("SET threads TO 1")
con.execute(f'''
COPY (
  SELECT (ts // {size}) * {size} AS window_start, (ts // {size} + 1) * {size} AS window_end,
         key, sum(value) AS value, 1 AS diff
  FROM read_csv('{src}', header = true, columns = {{'ts': 'BIGINT', 'key': 'VARCHAR', 'value': 'BIGINT'}})
  GROUP BY ALL
) TO '{dst}' (HEADER)''')
"""


def vm_hwm_kib(pid):
    """The peak resident set of a running process (VmHWM), or None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_of_children():
    """User plus system CPU seconds of every child this script has waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd, log):
    """Runs `cmd` (stderr to `log`); returns (wall seconds, peak RSS in MiB, CPU seconds).

    The peak is the child's VmHWM, read every 10 ms while it runs (the kernel keeps a spawned
    child's rusage high-water mark across exec, so wait4 would report this script's own). The
    CPU time (user + system, all threads) is the growth of the waited-for children's rusage
    over the run: runs are one at a time, so it is this child's alone. On a shared machine the
    wall time depends on the other load; the CPU time much less.
    """
    with open(log, "wb") as err:
        cpu_before = cpu_of_children()
        start = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=err)
        peak = 0
        while True:
            peak = max(peak, vm_hwm_kib(proc.pid) or 0)
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        wall = time.perf_counter() - start
        cpu = cpu_of_children() - cpu_before
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{Path(log).read_text()}")
    return wall, peak / 1024, cpu


def rows_of(path):
    """The rows of an output file, or of every part file in an output directory, as a set."""
    rows = set()
    for part in sorted(path.iterdir()) if path.is_dir() else [path]:
        with open(part) as f:
            next(f)
            rows.update(tuple(line.rstrip("\n").split(",")) for line in f)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--window", default="1h", help="tumbling window size (ms/s/m/h)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--readers", nargs="+", default=["all"], choices=["all", "one"],
                   help="tidemark window --readers values to time (ratios use the first)")
    p.add_argument("--outputs", nargs="+", default=["file"], choices=["file", "parts"],
                   help="--output FILE, or --output DIR/ (part files); ratios use the first")
    p.add_argument("--tidemark", default=str(TARGET / "release" / "tidemark"))
    p.add_argument("--before", help="another tidemark binary (an earlier build) to time beside "
                   "--tidemark with the same flags, as engine tidemark-before")
    p.add_argument("--json", help="append the runs to this JSON lines file")
    p.add_argument("--quote-keys", action="store_true",
                   help="every key a quoted field (the same data; a file with quotes)")
    args = p.parse_args()

    data = TARGET / "ingest-data"
    data.mkdir(parents=True, exist_ok=True)
    quoted = "-quoted" if args.quote_keys else ""
    src = data / f"events-{args.rows}-{args.keys}-{args.seed}{quoted}.csv"
    if not src.exists():
        generate(src, args.rows, args.keys, args.seed, args.quote_keys)
    python = python_with_duckdb()
    size = millis(args.window)

    engines = ["tidemark"] + (["tidemark-before"] if args.before else [])
    configs = [("duckdb", 1, "one", "file")] + [
        (e, w, r, o) for e in engines for o in args.outputs for r in args.readers
        for w in args.workers]

    def output(engine, workers, readers, kind):
        name = f"out-{engine}-{workers}-{readers}"
        return data / name if kind == "parts" else data / f"{name}.csv"

    runs = []
    for rep in range(args.repeat):
        for engine, workers, readers, kind in configs:
            out = output(engine, workers, readers, kind)
            if engine == "duckdb":
                cmd = [python, "-c", DUCKDB_QUERY, str(size), str(src), str(out)]
            else:
                target = f"{out}/" if kind == "parts" else out
                binary = args.before if engine == "tidemark-before" else args.tidemark
                cmd = [binary, "window", "--input", src, "--output", target,
                       "--window", f"tumbling:{size}", "--agg", "sum", "--workers", str(workers),
                       "--readers", readers]
            wall, rss, cpu = timed(cmd, data / "stderr.log")
            run = {"engine": engine, "workers": workers, "readers": readers, "output": kind,
                   "quoted_keys": args.quote_keys,
                   "repetition": rep, "rows": args.rows,
                   "window_ms": size, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                   "peak_rss_mib": round(rss, 1), "rows_per_s": round(args.rows / wall),
                   "load_1m": round(os.getloadavg()[0], 1)}
            print(json.dumps(run), flush=True)
            runs.append(run)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(run) + "\n")
        if rep == 0:
            reference = rows_of(output("duckdb", 1, "one", "file"))
            for engine, workers, readers, kind in configs[1:]:
                if rows_of(output(engine, workers, readers, kind)) != reference:
                    sys.exit(f"{engine} with {workers} workers ({readers}, {kind}) disagrees "
                             "with DuckDB")

    def median(engine, workers, readers, kind="file", field="wall_s"):
        return statistics.median(
            r[field] for r in runs
            if r["engine"] == engine and r["workers"] == workers and r["readers"] == readers
            and r["output"] == kind)

    duck, duck_cpu = median("duckdb", 1, "one"), median("duckdb", 1, "one", field="cpu_s")
    print(f"median wall (CPU): duckdb {duck:.2f} s ({duck_cpu:.2f} s); " + ", ".join(
        f"tidemark {w} worker(s) --readers {r} --output {o} {median('tidemark', w, r, o):.2f} s "
        f"({median('tidemark', w, r, o, 'cpu_s'):.2f} s), "
        f"{median('tidemark', w, r, o, 'peak_rss_mib'):.0f} MiB"
        for o in args.outputs for r in args.readers for w in args.workers))
    loads = [r["load_1m"] for r in runs]
    print(f"load average (1 min) during the runs: {min(loads)} to {max(loads)}")
    readers, kind = args.readers[0], args.outputs[0]
    one = median("tidemark", args.workers[0], readers, kind)
    one_cpu = median("tidemark", args.workers[0], readers, kind, "cpu_s")
    print(f"tidemark {args.workers[0]} worker(s) / duckdb 1 thread (rate ratio): {duck / one:.2f}"
          f" (wall), {duck_cpu / one_cpu:.2f} (CPU time)")
    if args.before:
        for w in args.workers:
            before = median("tidemark-before", w, readers, kind)
            before_cpu = median("tidemark-before", w, readers, kind, "cpu_s")
            now, now_cpu = median("tidemark", w, readers, kind), median(
                "tidemark", w, readers, kind, "cpu_s")
            print(f"{w} worker(s): before {before:.2f} s ({before_cpu:.2f} s CPU), now "
                  f"{now:.2f} s ({now_cpu:.2f} s CPU): {before / now:.2f}x wall, "
                  f"{before_cpu / now_cpu:.2f}x CPU")
    for w in args.workers[1:]:
        speedup = one / median("tidemark", w, readers, kind)
        cpu = median("tidemark", w, readers, kind, "cpu_s")
        print(f"speed-up {w} vs {args.workers[0]} worker(s), --readers {readers}: {speedup:.2f}"
              f" (wall); CPU time {cpu / one_cpu:.2f}x the {args.workers[0]}-worker run's")


if __name__ == "__main__":
    main()
