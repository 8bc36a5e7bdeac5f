//! `tidemark sweep`: a tiny spec runs into its results directory (runs.jsonl, hlog/,
//! machine.json), a second sweep re-runs nothing, bad specs fail with one line naming the
//! file and the key, a spec with one invalid run runs nothing (and its dry run fails), and a
//! run never outlives its sweep nor runs beside an earlier sweep's.

mod common;

use std::path::Path;
use std::process::Output;

use common::cli::{bin, json_lines as lines, s, scratch, stderr, write};

fn sweep(args: &[&str]) -> Output {
    bin().arg("sweep").args(args).output().expect("binary runs")
}

/// Runs `tidemark sweep args`, expecting success.
fn sweep_ok(args: &[&str]) -> Output {
    let out = sweep(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

const TINY: &str = r#"
description = "two rates, the engine and the baseline (on 2 workers: the parallel ceiling), twice"
workload = "ysb"
repetitions = 2

[fixed]
duration = "300ms"
warmup = "100ms"
pool = 10000

[grid]
rate = ["10k", "20k"]
engine = ["timely", "baseline"]
workers = [1, 2]
"#;

#[test]
fn sweep_writes_the_results_layout_and_resumes() {
    let dir = scratch("tiny");
    let spec = write(&dir, "tiny.toml", TINY);

    let dry = sweep_ok(&[s(&spec), "--dry-run"]);
    let listing = String::from_utf8_lossy(&dry.stdout);
    // 2 rates x (timely + baseline) x 2 workers x 2 repetitions: the baseline on 2 workers
    // is the parallel ceiling, not left out.
    assert!(
        listing.contains("16 to run, 0 already recorded"),
        "{listing}"
    );
    assert!(!dir.join("results").exists(), "a dry run writes nothing");

    sweep_ok(&[s(&spec)]);
    let results = dir.join("results/tiny");
    let runs = lines(&results.join("runs.jsonl"));
    assert_eq!(runs.len(), 16);
    for run in &runs {
        assert_eq!(run["spec"], "tiny");
        assert_eq!(run["workload"], "ysb");
        // Debug builds on a loaded machine may retire nothing in 200 ms: only the schema here.
        assert!(run["achieved_rate"].as_f64().is_some(), "{run}");
        assert!(run["latency_ns"]["p99"].as_u64().is_some(), "{run}");
        assert_eq!(run["point"]["duration"], "300ms");
        assert_eq!(run["point"]["workload"], "ysb");
        let rep = run["repetition"].as_u64().unwrap();
        assert!(rep < 2);
        let engine = run["point"]["engine"].as_str().unwrap();
        assert_eq!(run["engine"], engine);
        assert_eq!(run["workers"], run["point"]["workers"]);
        let ceiling = engine == "baseline" && run["workers"] == 2;
        assert_eq!(run["ceiling"], ceiling, "{run}");
        let hlog = run["hlog"].as_str().unwrap();
        assert!(
            hlog.starts_with("hlog/") && hlog.ends_with(".hlog"),
            "{hlog}"
        );
        let text = std::fs::read_to_string(results.join(hlog)).unwrap();
        assert!(text.starts_with("#tidemark ysb"), "{hlog}: {text}");
    }
    let hlogs: std::collections::BTreeSet<&str> =
        runs.iter().map(|r| r["hlog"].as_str().unwrap()).collect();
    assert_eq!(hlogs.len(), 16, "one interval log per run");
    assert!(runs
        .iter()
        .any(|r| r["achieved_rate"].as_f64().unwrap() > 0.0));
    assert_eq!(std::fs::read_dir(results.join("hlog")).unwrap().count(), 16);
    let machine: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("machine.json")).unwrap())
            .unwrap();
    for field in [
        "host",
        "os",
        "cpu_model",
        "cores_available",
        "cores_cpuinfo",
        "memory_bytes",
        "date",
    ] {
        assert!(machine.get(field).is_some(), "machine.json lacks {field}");
    }
    // Nothing but the layout is left behind.
    let mut names: Vec<String> = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["hlog", "machine.json", "runs.jsonl"]);

    // The dry run now says every run is recorded.
    let dry = sweep(&[s(&spec), "--dry-run"]);
    assert!(dry.status.success());
    let listing = String::from_utf8_lossy(&dry.stdout);
    assert!(
        listing.contains("0 to run, 16 already recorded"),
        "{listing}"
    );
    assert_eq!(
        listing.matches("\n  recorded  tidemark bench ysb").count(),
        16,
        "{listing}"
    );

    // Resuming: nothing is run again.
    let again = sweep(&[s(&spec)]);
    assert!(again.status.success());
    assert!(stderr(&again).contains("already"), "{}", stderr(&again));
    assert_eq!(lines(&results.join("runs.jsonl")).len(), 16);

    // A wider spec runs only the new points (and clears what an interrupted sweep left).
    std::fs::write(results.join(".run-1.json"), "{").unwrap();
    std::fs::write(results.join("hlog/.ysb-0-r0.hlog.tmp"), "").unwrap();
    std::fs::write(&spec, TINY.replace("\"20k\"]", "\"20k\", \"30k\"]")).unwrap();
    sweep_ok(&[s(&spec)]);
    let runs = lines(&results.join("runs.jsonl"));
    assert_eq!(runs.len(), 24);
    assert!(runs[16..].iter().all(|r| r["point"]["rate"] == "30k"));
    assert!(!results.join(".run-1.json").exists());
    assert_eq!(std::fs::read_dir(results.join("hlog")).unwrap().count(), 24);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn partitioners_and_processes_run_through_the_sweep() {
    let dir = scratch("partitioners");
    let spec = dir.join("parts.toml");
    std::fs::write(
        &spec,
        r#"
        workload = "wordcount"
        output = "out"
        [fixed]
        duration = "300ms"
        warmup = "100ms"
        pool = 10000
        rate = "100k"
        words = 1000
        [[grid]]
        partitioner = ["hash", "range", "random"]
        workers = [2]
        [[grid]]
        processes = [2]
        "#,
    )
    .unwrap();
    sweep_ok(&[s(&spec)]);
    let runs = lines(&dir.join("out/runs.jsonl"));
    assert_eq!(runs.len(), 4);
    let params: Vec<&str> = runs
        .iter()
        .map(|r| r["parameters"].as_str().unwrap())
        .collect();
    for p in ["hash", "range", "random"] {
        assert!(
            params
                .iter()
                .any(|s| s.contains(&format!("partitioner={p}"))),
            "{params:?}"
        );
    }
    assert_eq!(runs[3]["processes"], 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failures_name_the_file_the_key_or_the_run() {
    let dir = scratch("errors");
    let spec = dir.join("bad.toml");
    let run = |text: &str, extra: &[&str]| {
        std::fs::write(&spec, text).unwrap();
        let out = sweep(&[&[s(&spec)][..], extra].concat());
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        // Progress lines (once runs started), then the error.
        stderr[stderr.find("error: ").expect("an error line")..].to_string()
    };
    let e = run("workload = \"ysb\"\n[grid]\nrates = [\"1M\"]\n", &[]);
    assert!(e.starts_with("error: ") && e.contains("bad.toml"), "{e}");
    assert!(e.contains("key 'rates'"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    let e = run("workload = \"ysb\"\n[grid]\nengine = [\"warp\"]\n", &[]);
    assert!(e.contains("warp"), "{e}");
    // A run that fails names the run; the sweep stops, and records nothing for it.
    let failing = "workload = \"ysb\"\n[fixed]\nduration = \"300ms\"\nwarmup = \"100ms\"\n\
                   pool = 10000\n[grid]\nwarmup_extra = 1\n";
    let e = run(failing, &[]);
    assert!(
        e.contains("warmup_extra") || e.contains("warmup-extra"),
        "{e}"
    );
    let failing = "workload = \"ysb\"\noutput = \"out\"\n[fixed]\nwarmup = \"100ms\"\n\
                   pool = 10000\n[grid]\nduration = [\"50ms\", \"300ms\"]\n";
    let e = run(failing, &["--keep-going"]);
    assert!(e.contains("1 of 2 runs failed"), "{e}");
    assert!(e.contains("--warmup"), "{e}");
    assert!(e.contains("duration=50ms"), "{e}");
    assert_eq!(lines(&dir.join("out/runs.jsonl")).len(), 1);
    let e = run(failing, &[]);
    assert!(e.contains("duration=50ms") && e.contains("--warmup"), "{e}");
    let e = run("workload = \"ysb\"\n", &["--output", "/proc/no/such/dir"]);
    assert!(e.contains("/proc/no/such/dir"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pids of the run a sweep is running, from its lock file (waits for the run to start).
fn run_pids(results: &Path) -> Vec<i32> {
    for _ in 0..600 {
        let text = std::fs::read_to_string(results.join(".sweep.lock")).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("run ")) {
            return line[4..]
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the sweep never started its run");
}

/// Whether a process is still running (a zombie nobody has reaped yet is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Waits (up to a minute, polling) for a process to end; whether it did. One that did not is
/// killed, so that a failing test leaves no hour-long run behind.
fn ends(pid: i32) -> bool {
    for _ in 0..600 {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: signals the run this test's sweep started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    false
}

/// A sweep started by a test, killed when the test ends however it ends (its run follows it).
struct Started(std::process::Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(spec: &Path) -> Started {
    Started(
        bin()
            .args(["sweep", s(spec)])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

const LONG: &str = r#"
workload = "ysb"
output = "out"
[fixed]
duration = "1h"
warmup = "100ms"
rate = "10k"
pool = 10000
[grid]
processes = [1, 2]
"#;

#[test]
fn a_spec_with_one_invalid_run_runs_nothing_and_its_dry_run_fails() {
    let dir = scratch("invalid");
    let spec = dir.join("bad.toml");
    // Each key is a valid flag, but one value of each is not valid for the bench.
    for (text, bad) in [
        (
            "workload = \"nexmark\"\noutput = \"out\"\n[fixed]\nduration = \"300ms\"\n\
             warmup = \"100ms\"\npool = 10000\n[grid]\nquery = [\"q3\", \"q42\"]\n",
            "q42",
        ),
        (
            "workload = \"ysb\"\noutput = \"out\"\n[fixed]\nwarmup = \"1s\"\npool = 10000\n\
             [grid]\nduration = [\"300ms\", \"2s\"]\nrate = [\"10k\"]\n",
            "--warmup",
        ),
        (
            "workload = \"ysb\"\noutput = \"out\"\n[fixed]\nduration = \"300ms\"\n\
             warmup = \"100ms\"\n[grid]\nengine = [\"timely\", \"differential\"]\n\
             partitioner = [\"hash\", \"diagonal\"]\n",
            "diagonal",
        ),
    ] {
        std::fs::write(&spec, text).unwrap();
        let dry = sweep(&[s(&spec), "--dry-run"]);
        assert!(!dry.status.success(), "{text}");
        let listing = String::from_utf8_lossy(&dry.stdout);
        assert!(listing.contains("  invalid   tidemark bench"), "{listing}");
        assert!(listing.contains(bad), "{listing}");
        let stderr = String::from_utf8_lossy(&dry.stderr);
        assert!(
            stderr.starts_with("error: ") && stderr.contains("invalid runs"),
            "{stderr}"
        );
        let out = sweep(&[s(&spec)]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(bad) && stderr.contains("nothing was run"),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!dir.join("out").exists(), "no run started: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killing_the_sweep_stops_its_run() {
    for (signal, name) in [(libc::SIGKILL, "kill"), (libc::SIGTERM, "term")] {
        let dir = scratch(name);
        let spec = write(&dir, "long.toml", LONG);
        let mut sweep = start(&spec);
        let pids = run_pids(&dir.join("out"));
        assert_eq!(pids.len(), 1);
        assert!(alive(pids[0]));
        // SAFETY: signals a child this test started.
        assert_eq!(unsafe { libc::kill(sweep.0.id() as i32, signal) }, 0);
        let _ = sweep.0.wait();
        assert!(
            ends(pids[0]),
            "{name}: the run {} outlived its sweep",
            pids[0]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_second_sweep_never_runs_beside_the_first() {
    let dir = scratch("beside");
    let spec = write(&dir, "long.toml", LONG);
    let first = start(&spec);
    let pids = run_pids(&dir.join("out"));
    let second = sweep(&[s(&spec)]);
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use by another sweep"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", first.0.id())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("run: pid {}", pids[0])),
        "{stderr}"
    );
    assert!(alive(pids[0]), "the first sweep's run goes on");
    drop(first);
    assert!(ends(pids[0]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A dry run read by a reader that stops early (`| head`, found 2026-11-30: it panicked with
/// "failed printing to stdout"): the listing is cut, and the sweep exits 0 with nothing on
/// standard error.
#[test]
fn a_dry_run_into_a_closed_pipe_exits_quietly() {
    let dir = scratch("closed-pipe");
    let spec = write(&dir, "tiny.toml", TINY);
    let mut child = bin()
        .args(["sweep", s(&spec), "--dry-run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary runs");
    // Closed before the sweep writes: its one write meets a reader that is gone.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}
