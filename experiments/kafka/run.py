#!/usr/bin/env python3
"""End-to-end throughput and latency of `tidemark window` from Kafka to Kafka through tansu,
beside the broker's own produce and consume ceiling measured with `kcat` in the same run.

One tansu broker (in memory, a free local port) serves every step:

* **ceiling**: `kcat -P` produces the input (JSON lines) to a fresh topic, one kcat per
  partition; `kcat -C -c N` reads it back, with the fetch settings of tidemark's reader
  (`FETCH_SETTINGS`). Records per second of each.
* **throughput**, per checkpoint interval (`none`: no `--checkpoint-dir`, at-least-once output;
  else exactly-once output, a checkpoint every INTERVAL ms of event time): the input is
  produced first (kcat, as above), then `tidemark window --exit-at-end` reads it, counts per key
  in 1 s tumbling windows and writes the rows to an output topic. Records per second of the
  job's wall time (process start to exit: committed output included).
* **latency**, per checkpoint interval: kcat producers write RATE records a second for SECONDS
  seconds with event time = the wall clock (ms) while the job runs (no `--exit-at-end`); the
  output is read with `kcat -C -f '%T ...'`, and each row's latency is its output message's
  timestamp (when the sink produced it: for exactly-once output, at its checkpoint's commit)
  minus its window's end (the earliest wall time its last record could have been produced).

kcat needs a librdkafka newer than Debian's 2.0.2, which cannot parse tansu 0.6's ApiVersion v3
answer ("ApiVersionRequest failed: Local: Read underflow"; `-X api.version.request=false` and
`broker.version.fallback` do not avoid the request): the script runs kcat with the librdkafka
2.12 that the rdkafka crate builds (`target/*/build/rdkafka-sys-*/out/src`, `--librdkafka`) on
`LD_LIBRARY_PATH`.

With `--repeat N` (default 3) every measurement runs N times, interleaved: the ceiling, each
interval's throughput and each interval's latency, then all of them again, so that a burst of
load on a shared machine spreads over the points instead of landing on one; each result carries
its `repetition` (0 to N-1), and the notebook and `paper/gen_results.py` report the median of
the N and their range.

    python3 experiments/kafka/run.py --binary target/release/tidemark --records 200000 \\
        --intervals none 500 2000 10000 --seconds 20 --rate 2000 --repeat 3 \\
        --json experiments/kafka/results.json

Prints one JSON object per measurement; `--json FILE` writes them all, with the machine: cores,
CPU model, memory, `uptime` and load averages at start and end, the build (git revision of the checkout, whether
its tracked files differ from it, the binary's modification time) and `repeat`.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def librdkafka_dir():
    """The directory of the librdkafka.so.1 that the rdkafka crate built, or None."""
    found = sorted(ROOT.glob("target/*/build/rdkafka-sys-*/out/src/librdkafka.so.1"),
                   key=lambda p: p.stat().st_mtime)
    return str(found[-1].parent) if found else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tansu:
    """A tansu broker in memory on a free port, stopped by `stop`."""

    def __init__(self, binary):
        self.binary = binary
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        url = f"tcp://{self.address}"
        self.child = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            probe = subprocess.run(["kcat", "-L", "-b", self.address, "-m", "2"],
                                   capture_output=True)
            if probe.returncode == 0:
                break
            if time.time() > deadline:
                sys.exit("tansu did not answer in 60 s")
            time.sleep(0.2)

    def create(self, topic, partitions):
        subprocess.run([self.binary, "topic", "create", topic, "--partitions", str(partitions),
                        "--broker", f"tcp://{self.address}"], check=True, capture_output=True)

    def stop(self):
        self.child.kill()
        self.child.wait()


def lines(partition, records, start_ms):
    """JSON input of one partition: event times rising 1 ms a record from `start_ms`."""
    keys = "abcdefgh"
    return [f'{{"ts":{start_ms + i},"key":"{keys[(i * 7 + partition) % 8]}","value":{i % 100}}}'
            for i in range(records)]


def produce(broker, topic, data, extra=()):
    """Produces `data` (per partition, a list of lines) with one kcat per partition; returns the
    seconds it took."""
    started = time.monotonic()
    procs = []
    for p, rows in enumerate(data):
        proc = subprocess.Popen(["kcat", "-P", "-b", broker.address, "-t", topic, "-p", str(p),
                                 *extra], stdin=subprocess.PIPE)
        proc.stdin.write(("\n".join(rows) + "\n").encode())
        proc.stdin.close()
        procs.append(proc)
    for proc in procs:
        if proc.wait() != 0:
            sys.exit(f"kcat -P {topic} failed")
    return time.monotonic() - started


# The fetch settings of tidemark's Kafka reader (`src/source/kafka.rs`): tansu 0.6 holds every
# fetch for about its `fetch.wait.max.ms`, data or not (librdkafka's default 500 ms gave kcat
# 1.86 s for 200 k records in 1 MB fetches, 10 ms 0.15 s), so the ceiling reads as tidemark does.
FETCH_SETTINGS = ["-X", "fetch.wait.max.ms=10", "-X", "fetch.max.bytes=1048576"]


def consume(broker, topic, count):
    """Reads `count` messages of `topic` with kcat; returns the seconds it took."""
    started = time.monotonic()
    subprocess.run(["kcat", "-C", "-b", broker.address, "-t", topic, "-o", "beginning",
                    "-c", str(count), "-q", "-f", "%o\n", *FETCH_SETTINGS], check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def window_args(broker, topic_in, topic_out, interval, ckpt):
    args = ["window", "--input", f"kafka://{broker.address}/{topic_in}",
            "--output", f"kafka://{broker.address}/{topic_out}",
            "--window", "tumbling:1s", "--agg", "count", "--max-delay", "100"]
    if interval != "none":
        args += ["--checkpoint-dir", str(ckpt), "--checkpoint-interval", interval,
                 "--checkpoint-min-pause", "0"]
    return args


def throughput(broker, binary, records, partitions, interval, work, index):
    data = [lines(p, records // partitions, 1_000_000) for p in range(partitions)]
    topic_in, topic_out = f"tin{index}", f"tout{index}"
    broker.create(topic_in, partitions)
    broker.create(topic_out, 1)
    produce(broker, topic_in, data)
    args = window_args(broker, topic_in, topic_out, interval, work / f"ckpt-t{index}")
    started = time.monotonic()
    run = subprocess.run([binary, *args, "--exit-at-end", "--workers", "2"],
                         capture_output=True, text=True)
    seconds = time.monotonic() - started
    if run.returncode != 0:
        sys.exit(f"tidemark failed: {run.stderr}")
    total = sum(len(d) for d in data)
    # A run that stopped short would report a rate for records it never read.
    read = re.search(r"(\d+) records read", run.stderr)
    if not read or int(read.group(1)) != total:
        sys.exit(f"tidemark read {read.group(1) if read else 'no'} records of {total}: {run.stderr}")
    return {"measure": "throughput", "checkpoint_interval_ms": interval, "records": total,
            "seconds": round(seconds, 3), "records_per_s": round(total / seconds)}


def latency(broker, binary, rate, seconds, partitions, interval, work, index):
    topic_in, topic_out = f"lin{index}", f"lout{index}"
    broker.create(topic_in, partitions)
    broker.create(topic_out, 1)
    args = window_args(broker, topic_in, topic_out, interval, work / f"ckpt-l{index}")
    job = subprocess.Popen([binary, *args, "--workers", "2"], stderr=subprocess.PIPE, text=True)
    producers = [subprocess.Popen(["kcat", "-P", "-b", broker.address, "-t", topic_in,
                                   "-p", str(p), "-X", "linger.ms=1"], stdin=subprocess.PIPE)
                 for p in range(partitions)]
    per_tick = max(1, rate // 100 // partitions)
    end = time.time() + seconds
    sent = 0
    while time.time() < end:
        now = int(time.time() * 1000)
        for p, proc in enumerate(producers):
            rows = "".join(f'{{"ts":{now},"key":"{"abcd"[(sent + i) % 4]}","value":1}}\n'
                           for i in range(per_tick))
            proc.stdin.write(rows.encode())
            proc.stdin.flush()
            sent += per_tick
        time.sleep(0.01)
    # Let the last windows close, and with a checkpoint interval also the checkpoint that
    # commits their rows (checkpoints follow event time): event time goes on without data rows,
    # on every partition, for 3 s plus one interval. (Results before this rule stopped after
    # 3 s, so a 10 s interval lost its last windows' rows.)
    ticks = 30 + (int(interval) // 100 if interval != "none" else 0)
    for _ in range(ticks):
        now = int(time.time() * 1000)
        for proc in producers:
            proc.stdin.write(f'{{"ts":{now},"key":"tick","value":0}}\n'.encode())
            proc.stdin.flush()
        time.sleep(0.1)
    for proc in producers:
        proc.stdin.close()
        proc.wait()
    time.sleep(3 + (int(interval) / 1000 if interval != "none" else 0))
    job.send_signal(signal.SIGTERM)
    try:
        job.wait(timeout=30)
    except subprocess.TimeoutExpired:
        job.kill()
        job.wait()
    out = subprocess.run(["kcat", "-C", "-b", broker.address, "-t", topic_out, "-o", "beginning",
                          "-e", "-q", "-f", "%T %s\n"], capture_output=True, text=True,
                         timeout=60)
    lat = []
    for line in out.stdout.splitlines():
        ts, _, payload = line.partition(" ")
        try:
            row = json.loads(payload)
        except json.JSONDecodeError:
            continue
        if row.get("key") == "tick":
            continue
        lat.append(int(ts) - int(row["window_end"]))
    if not lat:
        return {"measure": "latency", "checkpoint_interval_ms": interval, "rows": 0,
                "stderr": job.stderr.read()[-500:] if job.stderr else ""}
    lat.sort()
    q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]
    return {"measure": "latency", "checkpoint_interval_ms": interval, "rate": rate,
            "seconds": seconds, "rows": len(lat), "latency_ms": {
                "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": lat[-1],
                "mean": round(statistics.mean(lat))}}


def git(*args):
    """Output of `git ARGS` in the checkout, or None where git fails (no checkout, no git)."""
    try:
        run = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    except OSError:
        return None
    return run.stdout.strip() if run.returncode == 0 else None


def uptime():
    """`uptime`'s line (wall clock, up time, users, load averages), or None without it."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip() or None
    except OSError:
        return None


def hardware():
    """The CPU model and memory (GiB) from /proc, or None where /proc lacks them."""
    def field(path, name):
        try:
            text = Path(path).read_text()
        except OSError:
            return None
        found = re.search(rf"^{name}\s*:\s*(.+)$", text, re.MULTILINE)
        return found.group(1).strip() if found else None

    mem_kb = field("/proc/meminfo", "MemTotal")
    return {"cpu_model": field("/proc/cpuinfo", "model name"),
            "memory_gib": round(int(mem_kb.split()[0]) / 2**20, 1) if mem_kb else None}


def build_info(binary):
    """The build measured: the checkout's revision and whether its tracked files differ from it
    (a binary built from a dirty tree is not that revision), and the binary's modification time
    (UTC), to compare with the revision's date."""
    status = git("status", "--porcelain", "--untracked-files=no")
    # The revision is the checkout's: it names the binary only when the binary is built here.
    return {"binary_in_checkout": binary.resolve().is_relative_to(ROOT),
            "git_rev": git("rev-parse", "HEAD"),
            "git_dirty": None if status is None else bool(status),
            "binary_mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                          time.gmtime(Path(binary).stat().st_mtime))}


def ceiling(broker, records, partitions, index):
    """kcat's own produce and consume rate on a fresh topic of `records` JSON lines."""
    data = [lines(p, records // partitions, 0) for p in range(partitions)]
    topic = f"ceiling{index}"
    broker.create(topic, partitions)
    total = sum(len(d) for d in data)
    produced = produce(broker, topic, data)
    consumed = consume(broker, topic, total)
    return {"measure": "kcat_ceiling", "records": total,
            "produce_per_s": round(total / produced), "consume_per_s": round(total / consumed)}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=str(ROOT / "target/release/tidemark"))
    parser.add_argument("--tansu", default=shutil.which("tansu") or
                        str(Path.home() / ".cargo/bin/tansu"))
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--intervals", nargs="+", default=["none", "1000", "10000"])
    parser.add_argument("--rate", type=int, default=2000, help="latency runs: records/s")
    parser.add_argument("--seconds", type=int, default=10, help="latency runs: how long")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of every measurement, interleaved (default 3)")
    parser.add_argument("--json")
    parser.add_argument("--librdkafka", default=librdkafka_dir(),
                        help="a directory with a librdkafka.so.1 for kcat")
    a = parser.parse_args()
    if a.librdkafka:
        os.environ["LD_LIBRARY_PATH"] = a.librdkafka
    if a.repeat < 1:
        parser.error("--repeat must be at least 1")
    binary = Path(a.binary)
    if not binary.is_file():
        parser.error(f"--binary {a.binary}: no such file")
    machine = {"host": platform.node(), "cores": os.cpu_count(), **hardware(),
               "uptime_at_start": uptime(), "load_at_start": os.getloadavg(),
               "date_start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "binary": a.binary, **build_info(binary), "tansu": a.tansu,
               "kcat_librdkafka": a.librdkafka, "repeat": a.repeat}
    broker = Tansu(a.tansu)
    results = []

    def write(final):
        """Writes `--json`: after every measurement too, so that a sitting cut short (or a
        failed run, which exits) leaves what it measured, marked `complete: false`."""
        if not a.json:
            return
        machine.update({"uptime_at_end": uptime(), "load_at_end": os.getloadavg(),
                        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "complete": final})
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"machine": machine, "runs": results}, indent=1)
                                + "\n")

    def record(result, repetition):
        results.append({"repetition": repetition, **result})
        print(json.dumps(results[-1]), flush=True)
        write(False)

    try:
        with tempfile.TemporaryDirectory() as work:
            work = Path(work)
            for r in range(a.repeat):
                # Topic and checkpoint names carry the repetition: every run starts fresh.
                record(ceiling(broker, a.records, a.partitions, r), r)
                for i, interval in enumerate(a.intervals):
                    record(throughput(broker, a.binary, a.records, a.partitions, interval, work,
                                      f"{r}_{i}"), r)
                if not a.skip_latency:
                    for i, interval in enumerate(a.intervals):
                        record(latency(broker, a.binary, a.rate, a.seconds, a.partitions,
                                       interval, work, f"{r}_{i}"), r)
    finally:
        broker.stop()
    write(True)


if __name__ == "__main__":
    main()
