#!/usr/bin/env python3
"""Peers, side by side: the YSB-style tumbling count in tidemark, its baseline, Flink and Bytewax.

    python3 experiments/peers/run.py [--workers 2] [--events 20000000] [--bytewax-events 1000000]
                                     [--repetitions 1] [--engines timely,baseline,flink,bytewax]
                                     [--tidemark target/release/tidemark] [--out DIR]

Creates `experiments/peers/.venv` (git-ignored) with the pinned peers from
`experiments/peers/requirements.txt` on first use, then runs every engine at two sizes, N and
kN events (k = --factor, default 4), on the same cores, and appends one harness-schema JSON
line per engine and repetition to `OUT/runs.jsonl` (default `experiments/results/peers/`), plus `OUT/machine.json`.

Start-up is subtracted by difference: each engine runs N and kN events as whole processes
(JVM and mini-cluster, Python and Bytewax's cluster, or tidemark's pool generation and timely
start); the throughput is (k - 1) N / (t(kN) - t(N)), so everything that does not grow with the
input cancels. (With k = 2 the variation of Flink's start-up on the loaded VM, about 10 s, was as
large as the difference itself; k = 4 makes the difference three times the small run's work.)
tidemark runs by duration, not by count, so its two durations are chosen (from a short
calibration run) to give about N and kN events, but at least 2 s and 2k s (at tens of M events/s
N takes a fraction of a second, too short to time a process), and the exact counts from its
reports are used: (e2 - e1) / (t2 - t1). Its own harness rate (which excludes start-up by
design) is kept beside it as `harness_achieved_rate`.

Not part of the test command: this downloads hundreds of MB and takes minutes.
"""

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV = HERE / ".venv"
REQUIREMENTS = HERE / "requirements.txt"

METHOD = (
    "start-up subtracted by difference: the engine runs N and {k}N events (tidemark: durations of "
    "at least 2 s and {k2} s) as whole processes, timed from outside, and achieved_rate = "
    "(events({k}N) - events(N)) / (wall({k}N) - wall(N)); events and duration_s are the "
    "differences. Closed loop (as fast as it goes), no latency measured. Numbers from a noisy "
    "shared 2-core VM (other engineers' builds and tests ran at the same time): compare ratios "
    "from one run."
)


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> None:
    """Re-executes this script inside the venv, creating it and installing the peers first."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not venv_python().exists():
        print(f"creating {VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    marker = VENV / ".installed"
    wanted = REQUIREMENTS.read_text()
    if not marker.exists() or marker.read_text() != wanted:
        print(f"installing {REQUIREMENTS.name} (apache-flink is several hundred MB)", file=sys.stderr)
        subprocess.run(
            [str(venv_python()), "-m", "pip", "install", "-r", str(REQUIREMENTS)], check=True
        )
        marker.write_text(wanted)
    os.execv(str(venv_python()), [str(venv_python()), str(Path(__file__).resolve())] + sys.argv[1:])


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    """The fields of tidemark's `Machine` (experiment.rs), plus `cores` and `memory`."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
        "unknown",
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    cores = len(os.sched_getaffinity(0))
    return {
        "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "os_release": sh(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "cpu_model": cpu,
        "cores": cores,
        "cores_available": cores,
        "cores_cpuinfo": sum(1 for line in cpuinfo if line.startswith("processor")),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "memory_bytes": mem_kb * 1024,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "java": sh(["sh", "-c", "java -version 2>&1 | head -1"]),
        "note": "shared 2-core VM: other engineers' Rust builds and tests ran at the same time, "
        "so absolute numbers are noisy; compare ratios from one run",
    }


def timed(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, str]:
    """Runs `cmd` to completion; returns (wall seconds, stderr)."""
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return wall, proc.stderr


# ---- the engines: each returns (events, wall seconds, extra fields) for one size ------------


def run_flink(events: int, workers: int, mode: str = "query") -> tuple[int, float, dict]:
    wall, err = timed(
        [sys.executable, str(HERE / "flink_ysb.py"), str(events), str(workers), mode], cwd=HERE
    )
    job = [line for line in err.splitlines() if line.startswith("flink mode=")]
    return events, wall, {"log": job[-1] if job else ""}


def run_bytewax(events: int, workers: int, processes: bool) -> tuple[int, float, dict]:
    stats = Path(tempfile.mkdtemp(prefix="bytewax-stats-"))
    env = dict(os.environ, YSB_EVENTS=str(events), YSB_PARTITIONS=str(workers), YSB_STATS=str(stats))
    env["PYTHONPATH"] = str(HERE)
    # Workers as threads of one process (-w N), or one process per worker (-p N -w 1). Threads
    # share Python's interpreter lock, processes pickle every exchanged item; on the 2-core VM
    # threads were faster (about 43 k/s against 28 k/s under load).
    layout = ["-p", str(workers), "-w", "1"] if processes else ["-w", str(workers)]
    wall, _ = timed(
        [sys.executable, "-m", "bytewax.testing", *layout, "bytewax_ysb:flow"],
        env=env,
        cwd=HERE,
    )
    rows = views = late = 0
    for f in stats.iterdir():
        n, total = (int(x) for x in f.read_text().split())
        if f.name.startswith("late-"):
            late += n
        else:
            rows += n
            views += total
    shutil.rmtree(stats, ignore_errors=True)
    if late or not (0.3 * events < views < 0.37 * events):
        raise RuntimeError(f"bytewax miscounted: {views} views of {events} events, {late} late")
    return events, wall, {"views_counted": views, "rows": rows, "late": late}


def run_tidemark(
    binary: Path, engine: str, duration_s: float, workers: int, seed: int, epoch: str
) -> tuple[int, float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "r.json"
        cmd = [
            str(binary), "bench", "ysb", "--rate", "max", "--engine", engine,
            "--duration", f"{int(duration_s * 1000)}ms", "--warmup", "0s",
            "--seed", str(seed), "--epoch", epoch, "--json", str(report),
        ]
        if engine == "timely":
            cmd += ["--workers", str(workers)]
        wall, _ = timed(cmd, cwd=ROOT)
        rep = json.loads(report.read_text())
    return rep["events"], wall, {"report": rep}


# ---- reports ----------------------------------------------------------------------------------


def config_hash(description: str) -> str:
    return hashlib.sha256(description.encode()).hexdigest()[:16]


def row(engine: str, workers: int, small: tuple, large: tuple, repetition: int, args, extra: dict) -> dict:
    (e1, t1, x1), (e2, t2, x2) = small, large
    events, seconds = e2 - e1, t2 - t1
    rate = events / seconds if seconds > 0 else float("nan")
    parameters = "window_ns=10000000000 campaigns=100 ads_per_campaign=10"
    implementation = {
        "timely": "tidemark bench ysb (timely dataflow, tidemark operators)",
        "baseline": "tidemark bench ysb --engine baseline (hand-written, single-threaded)",
        "flink": "ysb (Flink SQL: datagen -> WHERE event_type = 0 -> ad_id / 10 -> TUMBLE 10 s COUNT(*) -> blackhole)",
        "bytewax": "ysb (Bytewax: pooled generator -> filter views -> count_window, EventClock, TumblingWindower 10 s)",
    }[engine]
    report = {
        "workload": "ysb",
        "query": "ysb",
        "parameters": parameters,
        "engine": engine,
        "workers": workers,
        "processes": 1,
        "offered_rate": None,
        "achieved_rate": rate,
        "events": events,
        "duration_s": seconds,
        "warmup_s": 0.0,
        "epoch_ns": extra.pop("epoch_ns", 0),
        "latency_ns": {"p50": 0, "p90": 0, "p99": 0, "p999": 0, "max": 0},
        "latency_measured": False,
        "samples": 0,
        "generator_rate": extra.pop("generator_rate", 0.0),
        "seed": args.seed,
        "git_rev": args.git_rev or sh(["git", "-C", str(ROOT), "rev-parse", "HEAD"]),
        "config_hash": config_hash(f"ysb {parameters} {engine} workers={workers} n={e1},{e2}"),
        "host": socket.gethostname(),
        "spec": "peers",
        "point": {"engine": engine, "events": e1, "workers": workers, **extra.pop("point_extra", {})},
        "repetition": repetition,
        "method": METHOD.format(k=args.factor, k2=2 * args.factor),
        "implementation": implementation,
        "sizes": [{"events": e1, "wall_s": round(t1, 3)}, {"events": e2, "wall_s": round(t2, 3)}],
    }
    report.update(extra)
    return report


def summary(path: Path) -> str:
    """A markdown table of runs.jsonl: median rate per engine and workers, and ratios to it."""
    import statistics

    groups: dict = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            key = (r["engine"], r["point"]["workers"], r["point"].get("epoch", ""))
            groups.setdefault(key, []).append(r)
    order = {"timely": 0, "baseline": 1, "flink": 2, "bytewax": 3}
    keys = sorted(groups, key=lambda k: (order.get(k[0], 9), k[1], k[2]))
    med = {k: statistics.median(r["achieved_rate"] for r in groups[k]) for k in keys}
    timely = [k for k in keys if k[0] == "timely"]
    head = "| engine | workers | epoch | N events | runs | M events/s (median; min-max) |"
    head += "".join(f" timely {w}w {e} / this |" for _, w, e in timely)
    lines = [head, "|" + " --- |" * (6 + len(timely))]
    for k in keys:
        rates = [r["achieved_rate"] / 1e6 for r in groups[k]]
        line = (
            f"| {k[0]} | {k[1]} | {k[2] or '-'} | {groups[k][0]['point']['events']:,} | {len(rates)} | "
            f"{med[k] / 1e6:.3g} ({min(rates):.3g}-{max(rates):.3g}) |"
        )
        line += "".join(f" {med[t] / med[k]:.3g} |" for t in timely)
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--events", type=int, default=20_000_000, help="N for tidemark, baseline and Flink")
    ap.add_argument("--bytewax-events", type=int, default=1_000_000, help="N for Bytewax (Python: slower)")
    ap.add_argument("--bytewax-processes", action="store_true", help="Bytewax workers as processes, not threads")
    ap.add_argument("--factor", type=int, default=4, help="the large size is FACTOR x N (default 4)")
    ap.add_argument("--repetitions", type=int, default=1)
    ap.add_argument("--engines", default="timely,baseline,flink,bytewax")
    ap.add_argument(
        "--timely-workers", default=None,
        help="comma-separated worker counts for tidemark's timely rows (default: --workers)",
    )
    ap.add_argument("--flink-generator", action="store_true", help="also time Flink's datagen alone (its generator_rate)")
    ap.add_argument(
        "--timely-epochs", default="1ms",
        help="comma-separated epochs for tidemark's timely rows (1ms is the bench default; Flink's "
        "watermark interval is 200 ms)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tidemark", default=str(ROOT / "target" / "release" / "tidemark"))
    ap.add_argument("--git-rev", default=None, help="the revision the tidemark binary was built from (default: HEAD)")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "peers"))
    ap.add_argument("--summary", action="store_true", help="only print the table of OUT/runs.jsonl")
    args = ap.parse_args()
    if args.summary:
        print(summary(Path(args.out) / "runs.jsonl"))
        return
    ensure_venv()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "machine.json").write_text(json.dumps(machine(), indent=2) + "\n")
    engines = args.engines.split(",")
    binary = Path(args.tidemark)
    if ("timely" in engines or "baseline" in engines) and not binary.exists():
        print("building tidemark (cargo build --release)", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "--bin", "tidemark"], cwd=ROOT, check=True)

    versions = {
        "apache-flink": sh([sys.executable, "-c", "import importlib.metadata as m; print(m.version('apache-flink'))"]),
        "bytewax": sh([sys.executable, "-c", "import importlib.metadata as m; print(m.version('bytewax'))"]),
    }
    n, wn, k = args.events, args.workers, args.factor
    first = 0
    if (out / "runs.jsonl").exists():
        old = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines() if x.strip()]
        first = 1 + max((r.get("repetition", 0) for r in old), default=-1)
    session = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for rep in range(first, first + args.repetitions):
        rows = []
        todo = []
        for engine in engines:
            if engine == "timely":
                for w in (args.timely_workers or str(wn)).split(","):
                    for epoch in args.timely_epochs.split(","):
                        todo.append((engine, int(w), epoch))
            else:
                todo.append((engine, wn if engine != "baseline" else 1, "1ms"))
        for engine, workers, epoch in todo:
            print(f"[rep {rep}] {engine} workers={workers} ...", file=sys.stderr, flush=True)
            extra: dict = {}
            if engine in ("timely", "baseline"):
                # Calibrate: a short run gives the rate, from which the two durations follow.
                e, _, x = run_tidemark(binary, engine, 0.5, workers, args.seed, epoch)
                rate = x["report"]["achieved_rate"]
                # At least 2 s (shorter runs are all start-up and noise), at most 5 s (a slow
                # calibration must not make the run long).
                d1 = min(5.0, max(2.0, n / rate))
                small = run_tidemark(binary, engine, d1, workers, args.seed, epoch)
                large = run_tidemark(binary, engine, k * d1, workers, args.seed, epoch)
                extra = {
                    "harness_achieved_rate": [small[2]["report"]["achieved_rate"], large[2]["report"]["achieved_rate"]],
                    "generator_rate": large[2]["report"]["generator_rate"],
                    "epoch_ns": large[2]["report"]["epoch_ns"],
                    "point_extra": {"epoch": epoch},
                    "command": f"{binary} bench ysb --rate max --engine {engine} --warmup 0s --epoch {epoch} --duration {int(d1 * 1000)}ms|{int(k * d1 * 1000)}ms"
                    + (f" --workers {workers}" if engine == "timely" else ""),
                }
            elif engine == "flink":
                small, large = run_flink(n, wn), run_flink(k * n, wn)
                extra = {
                    "peer_version": f"apache-flink {versions['apache-flink']}",
                    "command": f"python flink_ysb.py {n}|{k * n} {wn} query",
                    "logs": [small[2]["log"], large[2]["log"]],
                }
                if args.flink_generator and rep == first:
                    g1, g2 = run_flink(n, wn, "generator"), run_flink(k * n, wn, "generator")
                    extra["generator_rate"] = (k - 1) * n / (g2[1] - g1[1]) / wn
                    extra["generator_note"] = "datagen -> blackhole alone, by the same difference, per worker"
            elif engine == "bytewax":
                m = args.bytewax_events
                bp = args.bytewax_processes
                small, large = run_bytewax(m, wn, bp), run_bytewax(k * m, wn, bp)
                layout = f"-p {wn} -w 1" if bp else f"-w {wn}"
                extra = {
                    "peer_version": f"bytewax {versions['bytewax']}",
                    "command": f"YSB_EVENTS={m}|{k * m} python -m bytewax.testing {layout} bytewax_ysb:flow",
                    "bytewax_layout": "processes" if bp else "threads",
                    "processes": wn if bp else 1,
                    "workers": 1 if bp else wn,
                    "checked": {"views_counted": large[2]["views_counted"], "late": large[2]["late"]},
                }
            else:
                raise SystemExit(f"unknown engine {engine}")
            if large[1] <= small[1] or large[0] <= small[0]:
                # The noise of start-up swallowed the difference: not a measurement.
                print(f"[rep {rep}] {engine} workers={workers}: t(large) {large[1]:.2f}s <= "
                      f"t(small) {small[1]:.2f}s, not recorded", file=sys.stderr, flush=True)
                continue
            extra["session"] = session
            r = row(engine, workers, small, large, rep, args, extra)
            rows.append(r)
            with open(out / "runs.jsonl", "a") as f:
                f.write(json.dumps(r) + "\n")
            print(
                f"[rep {rep}] {engine:8} workers={workers} N={small[0]:>11} "
                f"t(N)={small[1]:7.2f}s t({k}N)={large[1]:7.2f}s -> {r['achieved_rate'] / 1e6:9.3f} M events/s",
                file=sys.stderr,
                flush=True,
            )
        for t in (r for r in rows if r["engine"] == "timely"):
            for peer in (r for r in rows if r["engine"] != "timely"):
                print(
                    f"[rep {rep}] timely ({t['point']['workers']} workers) / {peer['engine']} "
                    f"({peer['point']['workers']}) = {t['achieved_rate'] / peer['achieved_rate']:.2f}",
                    file=sys.stderr,
                )
    print(summary(out / "runs.jsonl"))


if __name__ == "__main__":
    main()
