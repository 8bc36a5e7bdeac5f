//! `tidemark sweep`: a tiny spec runs into its results directory (runs.jsonl, hlog/,
//! machine.json), a second sweep re-runs nothing, and bad specs fail with one line naming the
//! file and the key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sweep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("sweep")
        .args(args)
        .output()
        .expect("binary runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tidemark-sweep-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const TINY: &str = r#"
description = "two rates and the baseline, twice"
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
    let spec = dir.join("tiny.toml");
    std::fs::write(&spec, TINY).unwrap();

    let dry = sweep(&[spec.to_str().unwrap(), "--dry-run"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let listing = String::from_utf8_lossy(&dry.stdout);
    // 2 rates x (timely x 2 workers + baseline x 1 worker) x 2 repetitions.
    assert!(listing.contains("12 to run"), "{listing}");
    assert!(listing.contains("single-threaded"), "{listing}");
    assert!(!dir.join("results").exists(), "a dry run writes nothing");

    let out = sweep(&[spec.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = dir.join("results/tiny");
    let runs = lines(&results.join("runs.jsonl"));
    assert_eq!(runs.len(), 12);
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
    assert_eq!(hlogs.len(), 12, "one interval log per run");
    assert!(runs
        .iter()
        .any(|r| r["achieved_rate"].as_f64().unwrap() > 0.0));
    assert_eq!(std::fs::read_dir(results.join("hlog")).unwrap().count(), 12);
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

    // Resuming: nothing is run again.
    let again = sweep(&[spec.to_str().unwrap()]);
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(lines(&results.join("runs.jsonl")).len(), 12);

    // A wider spec runs only the new points (and clears what an interrupted sweep left).
    std::fs::write(results.join(".run-1.json"), "{").unwrap();
    std::fs::write(results.join("hlog/.ysb-0-r0.hlog.tmp"), "").unwrap();
    std::fs::write(&spec, TINY.replace("\"20k\"]", "\"20k\", \"30k\"]")).unwrap();
    let more = sweep(&[spec.to_str().unwrap()]);
    assert!(
        more.status.success(),
        "{}",
        String::from_utf8_lossy(&more.stderr)
    );
    let runs = lines(&results.join("runs.jsonl"));
    assert_eq!(runs.len(), 18);
    assert!(runs[12..].iter().all(|r| r["point"]["rate"] == "30k"));
    assert!(!results.join(".run-1.json").exists());
    assert_eq!(std::fs::read_dir(results.join("hlog")).unwrap().count(), 18);
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
    let out = sweep(&[spec.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        let out = sweep(&[&[spec.to_str().unwrap()][..], extra].concat());
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
    assert!(e.contains("duration=50ms"), "{e}");
    assert_eq!(lines(&dir.join("out/runs.jsonl")).len(), 1);
    let e = run(failing, &[]);
    assert!(e.contains("duration=50ms") && e.contains("--warmup"), "{e}");
    let e = run("workload = \"ysb\"\n", &["--output", "/proc/no/such/dir"]);
    assert!(e.contains("/proc/no/such/dir"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
