#!/usr/bin/env python3
"""Peers, side by side: the YSB-style tumbling count in tidemark, its baseline, Flink and Bytewax.

    python3 experiments/peers/run.py [--workers 2] [--events 20000000] [--bytewax-events 1000000]
                                     [--repetitions 1] [--engines timely,baseline,flink,bytewax]
                                     [--tidemark target/release/tidemark] [--out DIR]

Creates `experiments/peers/.venv` (git-ignored) with the pinned peers from
`experiments/peers/requirements.txt` on first use, then runs every engine at two sizes, N and
2N events, on the same cores, and appends one harness-schema JSON line per engine and
repetition to `OUT/runs.jsonl` (default `experiments/results/peers/`), plus `OUT/machine.json`.

Start-up is subtracted by difference: each engine runs N and 2N events as whole processes
(JVM and mini-cluster, Python and Bytewax's cluster, or tidemark's pool generation and timely
start); the throughput is N / (t(2N) - t(N)), so everything that does not grow with the input
cancels. tidemark runs by duration, not by count, so its two durations are chosen (from a short
calibration run) to give about N and 2N events, and the exact counts from its reports are used:
(e2 - e1) / (t2 - t1). Its own harness rate (which excludes start-up by design) is kept beside
it as `harness_achieved_rate`.

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
    "start-up subtracted by difference: the engine runs N and 2N events as whole processes and "
    "achieved_rate = (events(2N) - events(N)) / (wall(2N) - wall(N)); events and duration_s are "
    "the differences. Closed loop (as fast as it goes), no latency measured. Numbers from a "
    "noisy shared 2-core VM (other builds ran at the same time): compare ratios from one run."
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
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "memory_bytes": mem_kb * 1024,
        "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()} ({sh(['sh', '-c', '. /etc/os-release && echo $PRETTY_NAME'])})",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "java": sh(["sh", "-c", "java -version 2>&1 | head -1"]),
        "note": "shared 2-core VM: other engineers' Rust builds ran at the same time, so absolute numbers are noisy",
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


def run_bytewax(events: int, workers: int) -> tuple[int, float, dict]:
    stats = Path(tempfile.mkdtemp(prefix="bytewax-stats-"))
    env = dict(os.environ, YSB_EVENTS=str(events), YSB_PARTITIONS=str(workers), YSB_STATS=str(stats))
    env["PYTHONPATH"] = str(HERE)
    # One process per worker (-p N -w 1): Python threads would share one interpreter lock.
    wall, _ = timed(
        [sys.executable, "-m", "bytewax.testing", "-p", str(workers), "-w", "1", "bytewax_ysb:flow"],
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


def run_tidemark(binary: Path, engine: str, duration_s: float, workers: int, seed: int) -> tuple[int, float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "r.json"
        cmd = [
            str(binary), "bench", "ysb", "--rate", "max", "--engine", engine,
            "--duration", f"{int(duration_s * 1000)}ms", "--warmup", "0s",
            "--seed", str(seed), "--json", str(report),
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
    query = {
        "flink": "ysb (Flink SQL: datagen -> WHERE event_type = 0 -> ad_id / 10 -> TUMBLE 10 s COUNT(*) -> blackhole)",
        "bytewax": "ysb (Bytewax: pooled generator -> filter views -> count_window, EventClock, TumblingWindower 10 s)",
    }.get(engine, "ysb")
    report = {
        "workload": "ysb",
        "query": query,
        "parameters": parameters,
        "engine": engine,
        "workers": workers,
        "processes": 1,
        "offered_rate": None,
        "achieved_rate": rate,
        "events": events,
        "duration_s": seconds,
        "warmup_s": 0.0,
        "epoch_ns": 1_000_000 if engine in ("timely", "baseline") else 0,
        "latency_ns": {"p50": 0, "p90": 0, "p99": 0, "p999": 0, "max": 0},
        "latency_measured": False,
        "samples": 0,
        "generator_rate": extra.pop("generator_rate", 0.0),
        "seed": args.seed,
        "git_rev": sh(["git", "-C", str(ROOT), "rev-parse", "HEAD"]),
        "config_hash": config_hash(f"ysb {parameters} {engine} workers={workers} n={e1},{e2}"),
        "host": socket.gethostname(),
        "spec": "peers",
        "point": {"engine": engine, "events": e1, "workers": workers},
        "repetition": repetition,
        "method": METHOD,
        "sizes": [{"events": e1, "wall_s": round(t1, 3)}, {"events": e2, "wall_s": round(t2, 3)}],
    }
    report.update(extra)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--events", type=int, default=20_000_000, help="N for tidemark, baseline and Flink")
    ap.add_argument("--bytewax-events", type=int, default=1_000_000, help="N for Bytewax (Python: slower)")
    ap.add_argument("--repetitions", type=int, default=1)
    ap.add_argument("--engines", default="timely,baseline,flink,bytewax")
    ap.add_argument("--flink-generator", action="store_true", help="also time Flink's datagen alone (its generator_rate)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tidemark", default=str(ROOT / "target" / "release" / "tidemark"))
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "peers"))
    args = ap.parse_args()
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
    n, wn = args.events, args.workers
    for rep in range(args.repetitions):
        rows = []
        for engine in engines:
            print(f"[rep {rep}] {engine} ...", file=sys.stderr, flush=True)
            extra: dict = {}
            if engine in ("timely", "baseline"):
                workers = wn if engine == "timely" else 1
                # Calibrate: a short run gives the rate, from which the two durations follow.
                e, _, x = run_tidemark(binary, engine, 0.5, workers, args.seed)
                rate = x["report"]["achieved_rate"]
                d1 = max(0.2, n / rate)
                small = run_tidemark(binary, engine, d1, workers, args.seed)
                large = run_tidemark(binary, engine, 2 * d1, workers, args.seed)
                extra = {
                    "harness_achieved_rate": [small[2]["report"]["achieved_rate"], large[2]["report"]["achieved_rate"]],
                    "generator_rate": large[2]["report"]["generator_rate"],
                    "command": f"{binary} bench ysb --rate max --engine {engine} --warmup 0s --duration {int(d1 * 1000)}ms|{int(2 * d1 * 1000)}ms"
                    + (f" --workers {workers}" if engine == "timely" else ""),
                }
            elif engine == "flink":
                workers = wn
                small, large = run_flink(n, wn), run_flink(2 * n, wn)
                extra = {
                    "peer_version": f"apache-flink {versions['apache-flink']}",
                    "command": f"python flink_ysb.py {n}|{2 * n} {wn} query",
                    "logs": [small[2]["log"], large[2]["log"]],
                }
                if args.flink_generator:
                    g1, g2 = run_flink(n, wn, "generator"), run_flink(2 * n, wn, "generator")
                    extra["generator_rate"] = n / (g2[1] - g1[1]) / wn
                    extra["generator_note"] = "datagen -> blackhole alone, by the same difference, per worker"
            elif engine == "bytewax":
                workers = wn
                m = args.bytewax_events
                small, large = run_bytewax(m, wn), run_bytewax(2 * m, wn)
                extra = {
                    "peer_version": f"bytewax {versions['bytewax']}",
                    "command": f"YSB_EVENTS={m}|{2 * m} python -m bytewax.testing -p {wn} -w 1 bytewax_ysb:flow",
                    "bytewax_processes": wn,
                    "checked": {"views_counted": large[2]["views_counted"], "late": large[2]["late"]},
                }
            else:
                raise SystemExit(f"unknown engine {engine}")
            r = row(engine, workers, small, large, rep, args, extra)
            rows.append(r)
            with open(out / "runs.jsonl", "a") as f:
                f.write(json.dumps(r) + "\n")
            print(
                f"[rep {rep}] {engine:8} workers={workers} N={small[0]:>11} "
                f"t(N)={small[1]:7.2f}s t(2N)={large[1]:7.2f}s -> {r['achieved_rate'] / 1e6:9.3f} M events/s",
                file=sys.stderr,
                flush=True,
            )
        by = {r["engine"]: r["achieved_rate"] for r in rows}
        if "timely" in by:
            for peer in ("baseline", "flink", "bytewax"):
                if peer in by:
                    print(f"[rep {rep}] timely / {peer} = {by['timely'] / by[peer]:.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()
