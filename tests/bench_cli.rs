//! `tidemark bench`: the JSON report's schema, interval logs, an injected output delay showing
//! up in the measured latency, and one-line errors for bad arguments.

mod common;

use std::process::{Command, Output};

use common::cli::{bin, s, scratch, stderr};

fn bench(args: &[&str]) -> Output {
    bin().arg("bench").args(args).output().expect("binary runs")
}

/// Held by every test that runs a measured bench: the overloaded run and the sustainable search
/// load every core, and the others assert that their runs keep up (or measure latency), which
/// an honest report refuses to claim on starved cores.
static CORES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cores() -> std::sync::MutexGuard<'static, ()> {
    CORES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn report(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const SHORT: [&str; 6] = [
    "--duration",
    "1500ms",
    "--warmup",
    "500ms",
    "--pool",
    "10000",
];

/// Runs a short bench (`args` and [`SHORT`]), expecting success.
fn short_bench(args: &[&str]) -> Output {
    let out = bench(&[args, &SHORT].concat());
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

/// Runs a short bench (as [`short_bench`]) with its JSON report written to `dir/name`; returns
/// the output and the report.
fn short_report(dir: &std::path::Path, name: &str, args: &[&str]) -> (Output, serde_json::Value) {
    let json = dir.join(name);
    let out = short_bench(&[args, &["--json", s(&json)]].concat());
    (out, report(&json))
}

#[test]
fn json_report_has_the_schema_and_hlog_has_intervals() {
    let _cores = cores();
    let dir = scratch("schema");
    let hlog = dir.join("run.hlog");
    let (out, r) = short_report(
        &dir,
        "run.json",
        &["ysb", "--rate", "200k", "--hlog", s(&hlog)],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("latency p99"));
    for field in [
        "workload",
        "query",
        "engine",
        "workers",
        "processes",
        "offered_rate",
        "achieved_rate",
        "events",
        "overloaded",
        "samples",
        "duration_s",
        "epoch_ns",
        "latency_ns",
        "seed",
        "git_rev",
        "config_hash",
        "host",
    ] {
        assert!(r.get(field).is_some(), "missing {field}: {r}");
    }
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(r["latency_ns"][p].as_u64().is_some(), "latency {p}: {r}");
    }
    assert_eq!(r["overloaded"], false, "{r}");
    assert!(r["samples"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["workload"], "ysb");
    assert_eq!(r["offered_rate"], 200_000);
    // Open loop at a low rate: everything offered is processed, and nothing more is counted
    // (the measured part's events only: at most one event over the offered rate's worth in the
    // measured second).
    let achieved = r["achieved_rate"].as_f64().unwrap();
    assert!(
        (150_000.0..=200_001.0).contains(&achieved),
        "achieved {achieved}"
    );
    let log = std::fs::read_to_string(&hlog).unwrap();
    let intervals = log
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("\"StartTimestamp"))
        .count();
    assert!(intervals >= 1, "{log}");
}

#[test]
fn injected_output_delay_shows_in_reported_latency() {
    let _cores = cores();
    let dir = scratch("delay");
    let run = |delay: &str, name: &str| {
        let args = ["wordcount", "--rate", "100k", "--inject-delay", delay];
        let (_, r) = short_report(&dir, name, &args);
        let latency = &r["latency_ns"];
        let percentile = |p: &str| {
            latency[p]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: no {p} (no measured epoch completed): {r}"))
        };
        (percentile("p50"), percentile("p99"))
    };
    let (base, base_p99) = run("0", "base.json");
    let (delayed, _) = run("25ms", "delayed.json");
    // The median epoch latency grows by the injected 25 ms: never less (the delay cannot hide),
    // and not by much more than the base run's own spread (the delay is counted once).
    let added = delayed.saturating_sub(base);
    let noise = 3 * base_p99.max(5_000_000);
    assert!(
        (24_000_000..=25_000_000 + noise).contains(&added),
        "base p50 {base} ns (p99 {base_p99}), delayed p50 {delayed} ns"
    );
}

#[test]
fn baseline_engine_runs_through_the_same_harness() {
    let _cores = cores();
    let dir = scratch("baseline");
    let args = ["ysb", "--engine", "baseline", "--rate", "max"];
    let (_, r) = short_report(&dir, "b.json", &args);
    assert_eq!(r["engine"], "baseline");
    assert!(r["offered_rate"].is_null());
    assert!(r["achieved_rate"].as_f64().unwrap() > 0.0);
}

/// `--engine baseline --workers 2`, for every workload: two independent baselines at once, each
/// on its worker's share of the stream and the offered rate, reported as the parallel ceiling
/// (`ceiling`, the worker count); at a rate both keep up with, each copy completes every
/// measured epoch, so the samples (epochs times copies) are about twice one baseline's.
#[test]
fn baseline_on_several_workers_is_the_parallel_ceiling_for_every_workload() {
    let _cores = cores();
    let dir = scratch("ceiling");
    for workload in [
        &["ysb"][..],
        &["wordcount"],
        &["nexmark", "--query", "q5"],
        &["nexmark", "--query", "q7"],
    ] {
        let mut samples = Vec::new();
        for workers in ["1", "2"] {
            let name = format!("{}-{workers}.json", workload.join("-"));
            let flags = [
                "--engine",
                "baseline",
                "--workers",
                workers,
                "--rate",
                "20k",
            ];
            let (out, r) = short_report(&dir, &name, &[workload, &flags].concat());
            assert_eq!(r["engine"], "baseline", "{workload:?}");
            assert_eq!(r["workers"].to_string(), workers, "{workload:?}");
            assert_eq!(r["processes"], 1, "{workload:?}");
            assert_eq!(r["ceiling"], workers == "2", "{workload:?}: {r}");
            assert!(!r["overloaded"].as_bool().unwrap(), "{workload:?}: {r}");
            let table = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                table.contains("parallel ceiling"),
                workers == "2",
                "{workload:?}: {table}"
            );
            samples.push(r["samples"].as_u64().unwrap());
        }
        // One measured second of 1 ms epochs: about 1000 samples alone, 2000 for two copies.
        assert!(samples[0] > 0, "{workload:?}: {samples:?}");
        assert!(
            samples[1] * 2 > samples[0] * 3,
            "{workload:?}: two copies each complete every epoch: {samples:?}"
        );
    }
}

/// `ysb` on 2 workers at `rate` with `--profile` and `more` flags, its report in a scratch
/// directory `name`: the output, the report and its per-worker profiles (checked to be two).
fn profiled(
    name: &str,
    rate: &str,
    more: &[&str],
) -> (Output, serde_json::Value, Vec<serde_json::Value>) {
    let args = [
        &["ysb", "--workers", "2", "--rate", rate, "--profile"],
        more,
    ]
    .concat();
    let (out, r) = short_report(&scratch(name), "report.json", &args);
    let profiles = r["profile"]
        .as_array()
        .expect("a profile per worker")
        .clone();
    assert_eq!(profiles.len(), 2, "{r}");
    (out, r, profiles)
}

/// `--profile` on 2 workers: per worker, the query's operators by name from timely's log (YSB's
/// window among them) with their shares of the worker's time summing to at most 1, and the
/// records the window received from both workers adding up to what its upstream sent.
#[test]
fn profile_lists_the_query_s_operators_with_shares_per_worker() {
    let _cores = cores();
    let (out, r, profiles) = profiled("profile", "20k", &[]);
    let (mut window_in, mut upstream_out) = (0, 0);
    for (index, p) in profiles.iter().enumerate() {
        assert_eq!(p["worker"], index);
        let operators = p["operators"].as_array().unwrap();
        let share: f64 = operators.iter().map(|o| o["share"].as_f64().unwrap()).sum();
        assert!(
            share > 0.0 && share <= 1.0 + 1e-9,
            "worker {index}: {share}"
        );
        let window = operators
            .iter()
            .find(|o| o["name"].as_str().unwrap().starts_with("Window"))
            .unwrap_or_else(|| panic!("worker {index} lists the window: {p}"));
        window_in += window["records_in"].as_u64().unwrap();
        // The window's input comes from the operator just before it in the dataflow.
        let address = window["address"].as_array().unwrap().clone();
        let mut before = address.clone();
        let last = before.len() - 1;
        before[last] = (address[last].as_u64().unwrap() - 1).into();
        let upstream = operators
            .iter()
            .find(|o| o["address"].as_array() == Some(&before))
            .unwrap_or_else(|| panic!("worker {index}: the window's upstream: {p}"));
        upstream_out += upstream["records_out"].as_u64().unwrap();
    }
    assert!(window_in > 0, "{r}");
    assert_eq!(
        window_in, upstream_out,
        "every record sent is received: {r}"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("profile, worker 1"), "{table}");
    expect_one_line_error(
        &["ysb", "--engine", "baseline", "--profile"],
        "--profile reads timely's event log",
    );
}

/// `--profile`'s frontier fields on 2 workers with a deliberately slow stage (`--inject-delay`:
/// the driver's `HoldFrontier` passes the frontier on 30 ms late): per worker, every operator's
/// frontier hold is between 0 and the profiled time and its longest hold at most its total,
/// `HoldFrontier` is the operator that held the frontier back longest, and the frontier-lag log
/// has intervals in order whose output frontier never passes the input time offered; the table
/// shows the columns.
#[test]
fn profile_names_the_operator_that_holds_the_frontier_back() {
    let _cores = cores();
    let (out, _, profiles) = profiled("profile-hold", "20k", &["--inject-delay", "30ms"]);
    for p in &profiles {
        let profiled = p["profiled_ns"].as_u64().unwrap();
        let operators = p["operators"].as_array().unwrap();
        let hold = |o: &serde_json::Value| o["frontier_hold_ns"].as_u64().unwrap();
        for o in operators {
            let longest = o["frontier_hold_max_ns"].as_u64().unwrap();
            assert!(longest <= hold(o) && hold(o) <= profiled, "{o}");
        }
        let top = operators.iter().max_by_key(|o| hold(o)).unwrap();
        assert_eq!(top["name"], "HoldFrontier", "{p}");
        assert!(hold(top) > 0, "{p}");
        let lag = p["frontier_lag"].as_array().expect("a lag log");
        assert!(lag.len() >= 2, "{p}");
        let mut previous = 0;
        for interval in lag {
            let at = interval["at_ns"].as_u64().unwrap();
            assert!(at > previous, "{interval}");
            previous = at;
            if let (Some(offered), Some(frontier)) =
                (interval["offered"].as_u64(), interval["frontier"].as_u64())
            {
                assert!(frontier <= offered, "{interval}");
            }
        }
        // The delay holds the output back behind the input: some interval shows it.
        assert!(
            lag.iter().any(|i| i["max_lag_ns"].as_u64().unwrap() > 0),
            "{p}"
        );
    }
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("held back"), "{table}");
    assert!(table.contains("frontier lag"), "{table}");
}

/// The closed loop keeps every worker's share of the stream flowing: on 2 workers each worker's
/// input (`--profile`'s `Input` records out) takes at least a quarter of all input events. The
/// closed loop once judged each worker by the global probe, which let the worker whose input
/// lagged send and starved the other (66.7 M events against 49 152 in a 4 s run). Under load it
/// also failed now and then (1.31 M of 7.52 M): each worker started its clock when it saw the
/// start barrier pass, and under load they see it tens of milliseconds apart, so the worker whose
/// clock ran ahead stamped its events that far ahead of the other's input and they waited that
/// long to retire (see `harness::driver::run_engine`). The workers of a process now share one
/// start instant. With worker 1 held back 500 ms after the barrier (a build made for the
/// purpose, 3 runs each): worker 0 put 3.1 M of 134-142 M events in with clocks of their own, a
/// share of 0.02 to 0.024, and 0.46 to 0.48 of all with the shared start.
#[test]
fn the_closed_loop_feeds_every_worker_its_share() {
    let _cores = cores();
    let (_, r, profiles) = profiled("closed-loop-share", "max", &[]);
    let inputs: Vec<u64> = profiles
        .iter()
        .map(|p| {
            p["operators"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["name"] == "Input")
                .map(|o| o["records_out"].as_u64().unwrap())
                .sum()
        })
        .collect();
    let total: u64 = inputs.iter().sum();
    assert!(total > 0, "{r}");
    for (worker, &events) in inputs.iter().enumerate() {
        assert!(
            events * 4 >= total,
            "worker {worker} put {events} of {total} events into its input: {inputs:?}"
        );
    }
}

/// Runs `tidemark bench args` expecting a usage or validation error: a non-zero exit, an error
/// line naming the problem (`needle`), no panic and no report.
fn expect_error(args: &[&str], needle: &str) {
    let out = bench(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = stderr(&out);
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    assert!(err.starts_with("error"), "{args:?}: {err:?}");
    assert!(!err.contains("panicked"), "{args:?}: {err:?}");
    assert!(out.stdout.is_empty(), "{args:?} printed a report");
    // Usage errors are shown as clap writes them (usage, possible values, "try --help");
    // every other error is one line.
    if !err.contains("For more information, try '--help'") {
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    }
}

/// Like [`expect_error`], for errors of tidemark's own checks: exactly one line.
fn expect_one_line_error(args: &[&str], needle: &str) {
    expect_error(args, needle);
    let err = String::from_utf8_lossy(&bench(args).stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
}

#[test]
fn bad_arguments_get_one_line_errors() {
    expect_error(&["tpch"], "invalid value 'tpch'");
    expect_error(&["ysb", "--rate", "0"], "the rate must be positive");
    expect_error(&["ysb", "--rate", "-5"], "the rate must be positive");
    expect_error(&["ysb", "--rate", "fast"], "expected events per second");
    expect_one_line_error(
        &["ysb", "--duration", "1s", "--warmup", "2s"],
        "must be longer than --warmup",
    );
    expect_one_line_error(
        &["ysb", "--duration", "1s", "--warmup", "0s", "--epoch", "2s"],
        "--epoch must be positive and at most --duration",
    );
    expect_one_line_error(
        &["ysb", "--json", "/nonexistent-dir/run.json"],
        "/nonexistent-dir/run.json: No such file or directory",
    );
    expect_one_line_error(
        &["ysb", "--engine", "baseline", "--processes", "2"],
        "the baseline runs in one process",
    );
}

#[test]
fn every_bench_parameter_is_checked_before_running() {
    let dir = scratch("checked");
    let json = dir.join("never.json");
    let json = s(&json);
    let ckpt = dir.join("ckpt");
    let ckpt = s(&ckpt);
    // Sizes that divided by zero, or were accepted and then useless or unbounded.
    for (args, needle) in [
        (
            &["ysb", "--campaigns", "0"][..],
            "--campaigns must be between 1",
        ),
        (
            &["ysb", "--campaigns", "4294967295"],
            "--campaigns must be between 1",
        ),
        (&["ysb", "--window", "0"], "--window must be positive"),
        (&["ysb", "--pool", "0"], "--pool must be between 1"),
        (
            &["ysb", "--pool", "1000000000000"],
            "--pool must be between 1",
        ),
        (&["wordcount", "--words", "0"], "--words must be between 1"),
        (
            &["wordcount", "--words", "18446744073709551615"],
            "--words must be between 1",
        ),
        (&["nexmark", "--query", "q5", "--window", "0"], "positive"),
        // Flags of another workload would be silently ignored.
        (&["ysb", "--query", "q3"], "--query does not apply to ysb"),
        (&["ysb", "--words", "10"], "--words does not apply to ysb"),
        (&["ysb", "--slide", "1s"], "--slide does not apply to ysb"),
        (
            &["wordcount", "--window", "1s"],
            "--window does not apply to wordcount",
        ),
        (
            &["wordcount", "--campaigns", "5"],
            "--campaigns does not apply to wordcount",
        ),
        (
            &["nexmark", "--campaigns", "5"],
            "--campaigns does not apply to nexmark",
        ),
        (
            &["nexmark", "--words", "5"],
            "--words does not apply to nexmark",
        ),
        (&["nexmark", "--query", "q42"], "unknown NEXMark query"),
        // --find-sustainable chooses the rates itself.
        (
            &["ysb", "--find-sustainable", "--rate", "1M"],
            "exclude each other",
        ),
        (
            &["ysb", "--find-sustainable", "--p99-bound", "0"],
            "--p99-bound must be positive",
        ),
        // What cannot checkpoint, or fail and recover.
        (
            &[
                "ysb",
                "--checkpoint-dir",
                ckpt,
                "--checkpoint-interval",
                "0s",
            ],
            "--checkpoint-interval must be positive",
        ),
        (
            &["ysb", "--checkpoint-dir", ckpt, "--find-sustainable"],
            "--checkpoint-dir and --find-sustainable exclude each other",
        ),
        (
            &["ysb", "--checkpoint-dir", ckpt, "--engine", "baseline"],
            "--engine baseline has no operator state",
        ),
        (
            &["ysb", "--checkpoint-dir", ckpt, "--engine", "differential"],
            "--engine differential has no operator state",
        ),
        (
            &["nexmark", "--checkpoint-dir", ckpt, "--query", "q5"],
            "nexmark q5 does not hand its operator state to checkpoints",
        ),
        (
            &["ysb", "--checkpoint-dir", ckpt, "--processes", "2"],
            "checkpoints are measured in one process",
        ),
        (
            &["ysb", "--checkpoint-dir", ckpt, "--fail-at", "10s"],
            "--fail-at must be within the run",
        ),
        (
            &[
                "ysb",
                "--checkpoint-dir",
                ckpt,
                "--fail-at",
                "1s",
                "--rate",
                "max",
            ],
            "--fail-at needs an open-loop run",
        ),
    ] {
        expect_one_line_error(&[args, &["--json", json]].concat(), needle);
    }
    // Values that do not fit: rejected by the one duration and rate parser, not wrapped.
    for (args, needle) in [
        (
            &["ysb", "--rate", "1e400"][..],
            "expected events per second",
        ),
        (&["ysb", "--rate", "99999999999999999999"], "too large"),
        (&["ysb", "--rate", "2000G"], "more than 1000G"),
        (&["ysb", "--rate", "0.5"], "whole number of events"),
        (&["ysb", "--duration", "99999999999999999h"], "too large"),
        (&["ysb", "--warmup=-1s"], "expected a duration"),
        (&["ysb", "--epoch", "0.5ns"], "finer than the unit allows"),
        (&["ysb", "--window", "10parsecs"], "unknown unit"),
        (&["nexmark", "--gap", "1e3s"], "expected a duration"),
    ] {
        expect_error(&[args, &["--json", json]].concat(), needle);
    }
    // Checkpoint flags without --checkpoint-dir are usage errors.
    for flag in ["--checkpoint-interval", "--fail-at"] {
        expect_error(&["ysb", flag, "1s"], "--checkpoint-dir");
    }
    // Nothing ran: no report was written, no checkpoint directory made.
    assert!(!std::path::Path::new(json).exists());
    assert!(!std::path::Path::new(ckpt).exists());
}

/// Peak resident memory of a running child, sampled from `/proc` until it exits; kills it and
/// fails once it passes `limit` bytes or runs past `deadline` (a guard against the unbounded
/// buffering this test exists for, not a timing measurement).
fn watch(mut child: std::process::Child, limit: u64, deadline: std::time::Duration) -> Output {
    let pid = child.id();
    let start = std::time::Instant::now();
    let mut peak = 0;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        peak = peak.max(rss);
        if peak > limit || start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "unbounded: {} MB resident after {:?}",
                peak / 1_000_000,
                start.elapsed()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn an_overloaded_run_is_bounded_and_reported_as_overloaded() {
    let _cores = cores();
    let dir = scratch("overload");
    for (engine, workers) in [("timely", "2"), ("baseline", "1")] {
        let json = dir.join(format!("{engine}.json"));
        let child = bin()
            .args(["bench", "ysb", "--rate", "20G", "--duration", "3s"])
            .args(["--warmup", "500ms", "--pool", "10000", "--engine", engine])
            .args(["--workers", workers, "--json", s(&json)])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Unbounded, this run buffered 20 G events/s (tens of GB within seconds).
        let out = watch(child, 3 << 30, std::time::Duration::from_secs(120));
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
        // Documented: an overloaded run is a result, not a failure (exit 0, with a warning).
        assert!(out.status.success(), "{engine}: {stderr}");
        assert!(stderr.contains("warning: overloaded"), "{engine}: {stderr}");
        assert!(!stderr.contains("panicked"), "{engine}: {stderr}");
        assert!(stdout.contains("OVERLOADED"), "{engine}: {stdout}");
        let r = report(&json);
        assert_eq!(r["overloaded"], true, "{engine}: {r}");
        // Far behind: stopped early, well within the asked 2.5 s of measurement.
        assert!(r["duration_s"].as_f64().unwrap() < 2.5, "{engine}: {r}");
        assert!(r["achieved_rate"].as_f64().unwrap() < 20e9, "{engine}: {r}");
        let samples = r["samples"].as_u64().unwrap();
        for p in ["p50", "p90", "p99", "p999", "max"] {
            // Latency is null, not 0, when no measured epoch completed.
            assert_eq!(
                r["latency_ns"][p].is_null(),
                samples == 0,
                "{engine} {p}: {r}"
            );
        }
        if samples == 0 {
            assert!(stdout.contains("unbounded"), "{engine}: {stdout}");
        }
    }
}

#[test]
fn a_run_that_keeps_up_is_not_overloaded_and_says_what_duration_means() {
    let _cores = cores();
    let dir = scratch("keeps-up");
    let (out, r) = short_report(&dir, "run.json", &["ysb", "--rate", "50k"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // --duration is the whole run: 1.5 s = 0.5 s warm-up + 1.0 s measured.
    assert!(
        stdout.contains("1.5 s = 0.5 s warm-up + 1.0 s measured"),
        "{stdout}"
    );
    for row in ["generator ceiling:", "config:", "events:", "latency:"] {
        assert!(stdout.contains(row), "the table explains {row}: {stdout}");
    }
    assert!(!stderr(&out).contains("warning"));
    assert_eq!(r["overloaded"], false, "{r}");
    assert_eq!(r["duration_s"], 1.0, "{r}");
}

#[test]
fn the_git_revision_is_the_build_s_not_the_working_directory_s() {
    let _cores = cores();
    let dir = scratch("git-rev");
    let json = dir.join("run.json");
    // Run from a directory outside any repository: the revision must still be the build's.
    let out = bin()
        .current_dir(&dir)
        .args(["bench", "ysb", "--rate", "10k", "--json", "run.json"])
        .args(SHORT)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let rev = report(&json)["git_rev"].as_str().unwrap().to_string();
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        // Built in a checkout: its HEAD (when the build is current), dirty or not.
        Some(head) => assert!(
            rev == head || rev == format!("{head}-dirty"),
            "git_rev {rev} vs HEAD {head}"
        ),
        None => assert_eq!(rev, "unknown"),
    }
}

#[test]
fn every_partitioner_gives_a_report_and_its_own_config_hash() {
    let _cores = cores();
    let dir = scratch("partitioners");
    let mut hashes = std::collections::BTreeSet::new();
    for workload in ["ysb", "wordcount"] {
        for partitioner in ["hash", "range", "random"] {
            let name = format!("{workload}-{partitioner}.json");
            let args = [workload, "--rate", "50k", "--workers", "2"];
            let (_, r) = short_report(
                &dir,
                &name,
                &[&args[..], &["--partitioner", partitioner]].concat(),
            );
            assert!(
                r["parameters"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("partitioner={partitioner}")),
                "{r}"
            );
            assert_eq!(r["workers"], 2);
            assert!(r["latency_ns"]["p99"].as_u64().is_some(), "{r}");
            hashes.insert(r["config_hash"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        hashes.len(),
        6,
        "the partitioner is part of the configuration"
    );
    let out = bench(&[&["nexmark", "--partitioner", "range"][..], &SHORT].concat());
    assert!(!out.status.success());
    // The workloads that read it, as the registry says (`Registered::SHARED`).
    let refusal = "--partitioner applies to ysb, wordcount; nexmark uses hash";
    assert!(stderr(&out).contains(refusal), "{}", stderr(&out));
    let out = bench(&["ysb", "--partitioner", "modulo"]);
    assert!(!out.status.success());
}

#[test]
fn find_sustainable_reports_a_sustainable_run_with_its_interval_log() {
    let _cores = cores();
    let dir = scratch("sustainable");
    let (json, hlog) = (dir.join("s.json"), dir.join("s.hlog"));
    let search = "ysb --find-sustainable --p99-bound 500ms --duration 1s --warmup 300ms";
    let mut args: Vec<&str> = search.split(' ').collect();
    args.extend(["--pool", "10000", "--json", s(&json), "--hlog", s(&hlog)]);
    let out = bench(&args);
    let stderr = stderr(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("p99 0.000 ms"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sustainable throughput"),
        "{stderr}"
    );
    let r = report(&json);
    assert_eq!(r["overloaded"], false, "{r}");
    assert!(
        r["latency_ns"]["p99"].as_u64().unwrap() <= 500_000_000,
        "{r}"
    );
    // The interval log is the sustainable run's, not an empty one.
    let log = std::fs::read_to_string(&hlog).unwrap();
    assert!(
        log.lines().any(|l| l.contains(",HISTFAA")),
        "empty interval log: {log}"
    );
}

/// `--checkpoint-dir` on 1 and 2 workers, YSB (windows) and word count (rolling reduce): the
/// report counts the checkpoints at cuts within the run, each a multiple of the interval; the
/// checkpoint in force in the directory is a manifest naming one snapshot per worker with its
/// CRC-32, each holding the worker's one stateful operator with a non-empty state; its size is
/// what the report says; and the comparison with the run without checkpoints is the ratio of
/// the two runs' reported numbers.
#[test]
fn checkpointed_bench_reports_its_checkpoints_and_commits_them() {
    use tidemark::checkpoint::file::{read, Header};
    use tidemark::checkpoint::Manifest;
    use tidemark::harness::snapshots::BenchSnapshot;

    let _cores = cores();
    let dir = scratch("checkpointed");
    let interval: u64 = 250_000_000;
    for (workload, operator) in [("ysb", "Window["), ("wordcount", "Reduce[")] {
        for workers in [1u32, 2] {
            let json = dir.join(format!("{workload}-{workers}.json"));
            let ckpt = dir.join(format!("{workload}-{workers}"));
            let out = short_bench(&[
                workload,
                "--workers",
                &workers.to_string(),
                "--rate",
                "20k",
                "--checkpoint-dir",
                s(&ckpt),
                "--checkpoint-interval",
                "250ms",
                "--json",
                s(&json),
            ]);
            let what = format!("{workload} on {workers} workers");
            let table = String::from_utf8_lossy(&out.stdout);
            assert!(table.contains("checkpoints"), "{what}: {table}");
            let r = report(&json);
            let c = &r["checkpoints"];
            assert_eq!(c["interval_ns"], interval, "{what}: {c}");
            let each = c["each"].as_array().unwrap();
            assert_eq!(c["count"], each.len(), "{what}: {c}");
            assert!(
                !each.is_empty(),
                "{what}: a 1.5 s run at 250 ms takes cuts: {c}"
            );
            let cuts: Vec<u64> = each.iter().map(|e| e["cut_ns"].as_u64().unwrap()).collect();
            assert!(
                cuts.windows(2).all(|w| w[0] < w[1])
                    && cuts
                        .iter()
                        .all(|c| c.is_multiple_of(interval) && *c > 0 && *c < 1_500_000_000),
                "{what}: cuts within the run, at multiples of the interval: {cuts:?}"
            );
            let bytes: Vec<u64> = each.iter().map(|e| e["bytes"].as_u64().unwrap()).collect();
            assert_eq!(c["bytes"]["max"], *bytes.iter().max().unwrap(), "{what}");
            // The comparison is the two runs' own numbers.
            let without = &c["without"];
            let ratio =
                r["achieved_rate"].as_f64().unwrap() / without["achieved_rate"].as_f64().unwrap();
            assert!(
                (c["throughput_ratio"].as_f64().unwrap() - ratio).abs() < 1e-9,
                "{what}: {c}"
            );
            let p99 = r["latency_ns"]["p99"].as_u64().unwrap() as f64
                / without["latency_ns"]["p99"].as_u64().unwrap() as f64;
            assert!(
                (c["p99_ratio"].as_f64().unwrap() - p99).abs() < 1e-9,
                "{what}: {c}"
            );
            assert_ne!(without["config_hash"], r["config_hash"], "{what}");

            // The checkpoint in force: every file it names is there, whole, one per worker.
            let (header, manifest): (Header, Manifest) = read(&ckpt.join("MANIFEST")).unwrap();
            assert_eq!(header.workers, workers, "{what}");
            assert_eq!(header.time % interval, 0, "{what}");
            assert!(
                !manifest.complete,
                "{what}: a bench's checkpoints are never complete"
            );
            assert_eq!(manifest.snapshots.len(), workers as usize, "{what}");
            let mut total = 0;
            for (index, (name, crc)) in manifest.snapshots.iter().enumerate() {
                let path = ckpt.join(name);
                let file = std::fs::read(&path).unwrap();
                assert_eq!(crc32fast::hash(&file), *crc, "{what}: {name}");
                total += file.len() as u64;
                let (snap_header, snapshot): (Header, BenchSnapshot) = read(&path).unwrap();
                assert_eq!(snap_header.time, header.time, "{what}: {name}");
                assert_eq!(snapshot.worker, index as u32, "{what}: {name}");
                assert_eq!(snapshot.operators.len(), 1, "{what}: {name}");
                let (op, state) = &snapshot.operators[0];
                assert!(op.starts_with(&format!("0:{operator}")), "{what}: {op}");
                assert!(!state.is_empty(), "{what}: {name}");
                if header.time < 1_500_000_000 && r["overloaded"] == false {
                    // The input position at the cut: the worker's events sent at times up to
                    // it. At 20k/s nothing waits (unless the machine starves the run, which
                    // the report then says), so event j (the worker's k-th, j = index +
                    // k * workers) is sent at its due epoch, 1 ms: those due before cut + 1 ms.
                    let due = |j: u64| j * 1_000_000_000 / 20_000;
                    let expected = (0..)
                        .take_while(|k| {
                            due(index as u64 + k * workers as u64) < header.time + 1_000_000
                        })
                        .count() as u64;
                    assert_eq!(snapshot.position, Some(expected), "{what}: {name}");
                }
            }
            if let Some(i) = cuts.iter().position(|&c| c == header.time) {
                assert_eq!(
                    bytes[i], total,
                    "{what}: reported size of cut {}",
                    header.time
                );
            }
        }
    }
}

/// A checkpoint directory that is not a bench's is refused and left as it was.
#[test]
fn a_directory_that_is_not_a_bench_s_is_refused() {
    let dir = scratch("checkpoint-flags");
    // A directory holding someone else's files (a `tidemark window` checkpoint, say).
    let foreign = dir.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("MANIFEST"), "not a bench's").unwrap();
    expect_one_line_error(
        &["ysb", "--checkpoint-dir", s(&foreign)],
        "not empty and not a bench's checkpoint directory",
    );
    assert_eq!(
        std::fs::read_to_string(foreign.join("MANIFEST")).unwrap(),
        "not a bench's"
    );
}

/// `--fail-at` on 1 and 2 workers: the dataflow is rebuilt from the checkpoint in force at the
/// failure (a cut at a multiple of the interval, before the failure), the report says when it
/// failed, what it resumed from and the recovery time (within the run, if given), and the
/// timeline of epoch latencies around it starts 2 s before the failure (or at 0) in 100 ms
/// buckets; the run without checkpoints did not fail. The run goes on to its end: the events
/// processed are counted once (at most what was offered).
#[test]
fn fail_at_rebuilds_from_the_last_checkpoint_and_reports_the_recovery() {
    let _cores = cores();
    let dir = scratch("fail-at");
    for workers in ["1", "2"] {
        let json = dir.join(format!("{workers}.json"));
        let ckpt = dir.join(format!("ckpt-{workers}"));
        let out = bench(&[
            "ysb",
            "--workers",
            workers,
            "--rate",
            "20k",
            "--duration",
            "2500ms",
            "--warmup",
            "500ms",
            "--pool",
            "10000",
            "--checkpoint-dir",
            s(&ckpt),
            "--checkpoint-interval",
            "250ms",
            "--fail-at",
            "1500ms",
            "--json",
            s(&json),
        ]);
        assert!(out.status.success(), "{workers}: {}", stderr(&out));
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains("recovery time"), "{table}");
        let r = report(&json);
        let f = &r["checkpoints"]["failure"];
        let at = f["at_ns"].as_u64().unwrap();
        assert!((1_500_000_000..2_500_000_000).contains(&at), "{f}");
        let cut = f["restored_cut_ns"]
            .as_u64()
            .expect("a checkpoint before 1.5 s");
        assert!(
            cut.is_multiple_of(250_000_000) && cut > 0 && cut < at,
            "{f}"
        );
        if let Some(recovery) = f["recovery_ns"].as_u64() {
            assert!(at + recovery <= 2_500_000_000, "{f}");
        }
        let timeline = f["timeline"].as_array().unwrap();
        assert!(!timeline.is_empty(), "{f}");
        let starts: Vec<u64> = timeline
            .iter()
            .map(|b| b["start_ns"].as_u64().unwrap())
            .collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
        assert!(
            starts.iter().all(|s| s.is_multiple_of(100_000_000)),
            "{starts:?}"
        );
        assert!(starts[0] + 2_000_000_000 >= at, "{starts:?}");
        for b in timeline {
            assert!(b["epochs"].as_u64().unwrap() > 0, "{b}");
            assert!(b["p50_ns"].as_u64() <= b["max_ns"].as_u64(), "{b}");
        }
        assert!(r["checkpoints"]["without"].get("failure").is_none());
        // Events are counted once: at most what 2 measured seconds offer at 20k/s.
        assert!(r["events"].as_u64().unwrap() <= 42_000, "{r}");
    }
}
