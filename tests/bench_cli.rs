//! `tidemark bench`: the JSON report's schema, interval logs, an injected output delay showing
//! up in the measured latency, and one-line errors for bad arguments.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("bench")
        .args(args)
        .output()
        .expect("binary runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tidemark-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

#[test]
fn json_report_has_the_schema_and_hlog_has_intervals() {
    let dir = scratch("schema");
    let (json, hlog) = (dir.join("run.json"), dir.join("run.hlog"));
    let out = bench(
        &[
            &[
                "ysb",
                "--rate",
                "200k",
                "--json",
                json.to_str().unwrap(),
                "--hlog",
                hlog.to_str().unwrap(),
            ][..],
            &SHORT,
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("latency p99"));
    let r = report(&json);
    for field in [
        "workload",
        "query",
        "engine",
        "workers",
        "processes",
        "offered_rate",
        "achieved_rate",
        "events",
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
    assert_eq!(r["workload"], "ysb");
    assert_eq!(r["offered_rate"], 200_000);
    // Open loop at a low rate: everything offered is processed.
    let achieved = r["achieved_rate"].as_f64().unwrap();
    assert!(
        (150_000.0..=210_000.0).contains(&achieved),
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
    let dir = scratch("delay");
    let run = |delay: &str, name: &str| {
        let json = dir.join(name);
        let out = bench(
            &[
                &[
                    "wordcount",
                    "--rate",
                    "100k",
                    "--inject-delay",
                    delay,
                    "--json",
                    json.to_str().unwrap(),
                ][..],
                &SHORT,
            ]
            .concat(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let latency = &report(&json)["latency_ns"];
        (
            latency["p50"].as_u64().unwrap(),
            latency["p99"].as_u64().unwrap(),
        )
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
    let dir = scratch("baseline");
    let json = dir.join("b.json");
    let out = bench(
        &[
            &[
                "ysb",
                "--engine",
                "baseline",
                "--rate",
                "max",
                "--json",
                json.to_str().unwrap(),
            ][..],
            &SHORT,
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&json);
    assert_eq!(r["engine"], "baseline");
    assert!(r["offered_rate"].is_null());
    assert!(r["achieved_rate"].as_f64().unwrap() > 0.0);
}

fn expect_error(args: &[&str], needle: &str) {
    let out = bench(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
    // Usage errors are shown as clap writes them (usage, possible values, "try --help");
    // every other error is one line.
    if !err.contains("For more information, try '--help'") {
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    }
}

#[test]
fn bad_arguments_get_one_line_errors() {
    expect_error(&["tpch"], "invalid value 'tpch'");
    expect_error(&["ysb", "--rate", "0"], "the rate must be positive");
    expect_error(&["ysb", "--rate", "-5"], "the rate must be positive");
    expect_error(&["ysb", "--rate", "fast"], "expected events per second");
    expect_error(
        &["ysb", "--duration", "1s", "--warmup", "2s"],
        "must be longer than --warmup",
    );
    expect_error(
        &["ysb", "--duration", "1s", "--warmup", "0s", "--epoch", "2s"],
        "--epoch must be positive and at most --duration",
    );
    expect_error(
        &["ysb", "--json", "/nonexistent-dir/run.json"],
        "/nonexistent-dir/run.json: No such file or directory",
    );
    expect_error(
        &["ysb", "--engine", "baseline", "--workers", "2"],
        "single-threaded",
    );
}

#[test]
fn every_partitioner_gives_a_report_and_its_own_config_hash() {
    let dir = scratch("partitioners");
    let mut hashes = std::collections::BTreeSet::new();
    for workload in ["ysb", "wordcount"] {
        for partitioner in ["hash", "range", "random"] {
            let json = dir.join(format!("{workload}-{partitioner}.json"));
            let out = bench(
                &[
                    &[
                        workload,
                        "--rate",
                        "50k",
                        "--workers",
                        "2",
                        "--partitioner",
                        partitioner,
                        "--json",
                        json.to_str().unwrap(),
                    ][..],
                    &SHORT,
                ]
                .concat(),
            );
            assert!(
                out.status.success(),
                "{workload} {partitioner}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let r = report(&json);
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
    assert!(String::from_utf8_lossy(&out.stderr).contains("--partitioner"));
    let out = bench(&["ysb", "--partitioner", "modulo"]);
    assert!(!out.status.success());
}
