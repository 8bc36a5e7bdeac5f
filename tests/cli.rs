//! The `tidemark window` command: its contract (output format, late output, summary), errors
//! on bad input, multi-process runs, idle timeout, and agreement with the reference.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use common::gen;
use common::reference::{parse_fixed, reference, Params};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
}

/// A fresh scratch directory per test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tidemark-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Consolidated output: (start, end, key) -> value text; panics on a malformed changelog.
fn consolidated(path: &Path) -> BTreeMap<(i64, u64, String), String> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec!["window_start", "window_end", "key", "value", "diff"]
    );
    let mut totals: BTreeMap<(i64, u64, String, String), i64> = BTreeMap::new();
    for row in reader.records() {
        let row = row.unwrap();
        let key = (
            row[0].parse().unwrap(),
            row[1].parse().unwrap(),
            row[2].to_string(),
            row[3].to_string(),
        );
        *totals.entry(key).or_default() += row[4].parse::<i64>().unwrap();
    }
    let mut answer = BTreeMap::new();
    for ((start, end, key, value), total) in totals {
        assert!(total == 0 || total == 1, "total diff {total}");
        if total == 1 {
            assert!(answer.insert((start, end, key), value).is_none());
        }
    }
    answer
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const EVENTS: &str = "ts,key,value\n1,a,5\n4,b,2.5\n7,a,-1\n12,a,3\n3,b,1\n25,b,4\n11,a,2\n2,a,9\n";

#[test]
fn readme_example_tumbling_sum_with_corrections_and_late_output() {
    let dir = scratch("readme");
    let input = write(&dir, "events.csv", EVENTS);
    let (out, late) = (dir.join("out.csv"), dir.join("late.csv"));
    // The README's example, verbatim apart from paths.
    let result = run(&[
        "window",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--window",
        "tumbling:10",
        "--agg",
        "sum",
        "--max-delay",
        "2",
        "--allowed-lateness",
        "5",
        "--late-output",
        late.to_str().unwrap(),
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let text = std::fs::read_to_string(&out).unwrap();
    let mut rows: Vec<&str> = text.lines().skip(1).collect();
    rows.sort();
    // [0,10) b: 2.5, then 3 (ts 3, behind watermark 10) corrects it to 3.5.
    // [10,20) a: 3, then 2 (ts 11, behind watermark 23, within lateness 5) corrects it to 5.
    // ts 2 arrives when the watermark is 23: window [0,10) ended at 10, 10 + 5 <= 23: late.
    assert_eq!(
        rows,
        vec![
            "0,10,a,4,1",
            "0,10,b,2.5,-1",
            "0,10,b,2.5,1",
            "0,10,b,3.5,1",
            "10,20,a,3,-1",
            "10,20,a,3,1",
            "10,20,a,5,1",
            "20,30,b,4,1",
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&late).unwrap(),
        "ts,key,value,window_start,window_end\n2,a,9,0,10\n"
    );
    let summary = stderr(&result);
    assert!(
        summary.contains(
            "8 records read, 0 bad lines skipped, 4 windows emitted, 2 corrections, 1 late records"
        ),
        "{summary}"
    );
}

#[test]
fn readme_example_sessions_on_two_workers_with_random_partitioning() {
    let dir = scratch("sessions");
    let input = write(&dir, "events.csv", EVENTS);
    let out = dir.join("out.csv");
    let result = run(&[
        "window",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--window",
        "session:5",
        "--agg",
        "count",
        "--max-delay",
        "20",
        "--workers",
        "2",
        "--partition",
        "random",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let got = consolidated(&out);
    let expected: BTreeMap<_, _> = [
        ((1, 7, "a".to_string()), "2".to_string()), // 1, 2 (7 is not < 2 + 5)
        ((7, 17, "a".to_string()), "3".to_string()), // 7, 11, 12
        ((3, 9, "b".to_string()), "2".to_string()), // 3, 4
        ((25, 30, "b".to_string()), "1".to_string()),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, expected);
}

fn expect_error(args: &[&str], needle: &str) {
    let result = run(args);
    assert!(!result.status.success(), "expected failure for {args:?}");
    let err = stderr(&result);
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
}

/// A usage error is shown as clap writes it: the message, then how to get help; exit status 2.
fn expect_usage_error(args: &[&str], needle: &str) {
    let result = run(args);
    assert_eq!(
        result.status.code(),
        Some(2),
        "expected a usage error for {args:?}"
    );
    let err = stderr(&result);
    assert!(
        err.starts_with("error: ") && err.contains(needle),
        "stderr {err:?} lacks {needle:?}"
    );
    assert!(err.contains("For more information, try '--help'"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_gets_one_line_naming_file_line_and_field() {
    let dir = scratch("errors");
    let out = dir.join("out.csv");
    let out = out.to_str().unwrap();
    let args = |input: &Path, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "window",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out,
            "--window",
            "tumbling:10",
            "--agg",
            "sum",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let check = |input: &Path, extra: &[&str], needle: &str| {
        let a = args(input, extra);
        expect_error(&a.iter().map(String::as_str).collect::<Vec<_>>(), needle);
    };
    check(&dir.join("missing.csv"), &[], "missing.csv: No such file");
    let no_value = write(&dir, "novalue.csv", "ts,key\n1,a\n");
    check(
        &no_value,
        &[],
        "novalue.csv:1: field 'value': no such column in the header (columns: ts, key)",
    );
    let bad_time = write(&dir, "badtime.csv", "ts,key,value\n1,a,1\nsoon,b,2\n");
    check(&bad_time, &[], "badtime.csv:3: field 'ts': expected a non-negative integer event time (milliseconds), got \"soon\"");
    let negative = write(&dir, "negative.csv", "ts,key,value\n-5,a,1\n");
    check(
        &negative,
        &[],
        "negative.csv:2: field 'ts': event time must not be negative, got \"-5\"",
    );
    let bad_value = write(&dir, "badvalue.csv", "ts,key,value\n1,a,1\n2,a,1\n3,a,x1\n");
    check(
        &bad_value,
        &[],
        "badvalue.csv:4: field 'value': expected a number",
    );
    let short = write(&dir, "short.csv", "ts,key,value\n1,a\n");
    check(&short, &[], "short.csv:2: expected 3 fields, found 2");
    check(
        &bad_value,
        &["--time-col", "time"],
        "field 'time': no such column",
    );
    assert!(
        !Path::new(out).exists(),
        "a failed run leaves no output behind"
    );

    let good = write(&dir, "good.csv", EVENTS);
    let g = good.to_str().unwrap();
    expect_usage_error(
        &[
            "window",
            "--input",
            g,
            "--output",
            out,
            "--window",
            "tumbling:x",
            "--agg",
            "count",
        ],
        "--window",
    );
    expect_usage_error(
        &[
            "window",
            "--input",
            g,
            "--output",
            out,
            "--window",
            "sliding:5/10",
            "--agg",
            "count",
        ],
        "slide must not exceed size",
    );
    expect_usage_error(
        &[
            "window",
            "--input",
            g,
            "--output",
            out,
            "--window",
            "tumbling:5",
            "--agg",
            "median",
        ],
        "--agg",
    );
    expect_usage_error(
        &[
            "window",
            "--input",
            g,
            "--output",
            out,
            "--window",
            "tumbling:5",
            "--agg",
            "count",
            "--partition",
            "range:z,a",
        ],
        "strictly increasing",
    );
    expect_error(
        &[
            "window",
            "--input",
            g,
            "--output",
            "/nonexistent-dir/out.csv",
            "--window",
            "tumbling:5",
            "--agg",
            "count",
        ],
        "cannot create /nonexistent-dir/out.csv",
    );
    let hosts = write(&dir, "hosts.txt", "127.0.0.1:1\nlocalhost\n");
    expect_error(
        &[
            "window",
            "--input",
            g,
            "--output",
            out,
            "--window",
            "tumbling:5",
            "--agg",
            "count",
            "--processes",
            "2",
            "--hostfile",
            hosts.to_str().unwrap(),
        ],
        "hosts.txt:2: expected host:port, got \"localhost\"",
    );
    expect_error(
        &[
            "window",
            "--input",
            g,
            "--output",
            out,
            "--window",
            "tumbling:5",
            "--agg",
            "count",
            "--processes",
            "2",
        ],
        "--hostfile",
    );
}

#[test]
fn skipped_bad_lines_are_counted_and_the_rest_processed() {
    let dir = scratch("skip");
    let input = write(
        &dir,
        "events.csv",
        "ts,key,value\n1,a,1\nnope,a,1\n2,a,x\n3,a,2\n",
    );
    let out = dir.join("out.csv");
    let result = run(&[
        "window",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--window",
        "tumbling:10",
        "--agg",
        "sum",
        "--on-bad-line",
        "skip",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let err = stderr(&result);
    assert!(
        err.contains("warning: skipped ") && err.contains("events.csv:3: field 'ts'"),
        "{err}"
    );
    assert!(err.contains("events.csv:4: field 'value'"), "{err}");
    assert!(err.contains("2 records read, 2 bad lines skipped"), "{err}");
    assert_eq!(
        consolidated(&out),
        [((0, 10, "a".to_string()), "3".to_string())]
            .into_iter()
            .collect()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn two_processes_on_localhost_match_one_process() {
    let dir = scratch("cluster");
    let mut text = String::from("ts,key,value\n");
    for i in 0..2000u64 {
        text.push_str(&format!("{},k{},{}\n", (i * 37) % 500 + i, i % 13, i % 7));
    }
    let input = write(&dir, "events.csv", &text);
    let hosts = write(
        &dir,
        "hosts.txt",
        &format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    );
    let common = |out: &Path| -> Vec<String> {
        [
            "window",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--window",
            "sliding:100/30",
            "--agg",
            "mean",
            "--max-delay",
            "40",
            "--allowed-lateness",
            "30",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let single = dir.join("single.csv");
    let result = bin().args(common(&single)).output().unwrap();
    assert!(result.status.success(), "{}", stderr(&result));

    let multi = dir.join("multi.csv");
    let spawn = |process: usize| {
        bin()
            .args(common(&multi))
            .args([
                "--workers",
                "2",
                "--processes",
                "2",
                "--process",
                &process.to_string(),
            ])
            .args([
                "--hostfile",
                hosts.to_str().unwrap(),
                "--connect-timeout",
                "60s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (p0, p1) = (spawn(0), spawn(1));
    let (o0, o1) = (
        p0.wait_with_output().unwrap(),
        p1.wait_with_output().unwrap(),
    );
    assert!(o0.status.success(), "process 0: {}", stderr(&o0));
    assert!(o1.status.success(), "process 1: {}", stderr(&o1));
    assert!(!consolidated(&single).is_empty());
    assert_eq!(consolidated(&multi), consolidated(&single));
}

#[test]
fn unreachable_peer_is_a_clear_error() {
    let dir = scratch("unreachable");
    let input = write(&dir, "events.csv", EVENTS);
    let hosts = write(
        &dir,
        "hosts.txt",
        &format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    );
    // Process 1 connects to process 0, which never starts.
    let result = bin()
        .args([
            "window",
            "--input",
            input.to_str().unwrap(),
            "--output",
            dir.join("o.csv").to_str().unwrap(),
        ])
        .args([
            "--window",
            "tumbling:5",
            "--agg",
            "count",
            "--processes",
            "2",
            "--process",
            "1",
        ])
        .args([
            "--hostfile",
            hosts.to_str().unwrap(),
            "--connect-timeout",
            "2s",
        ])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!result.status.success());
    let err = stderr(&result);
    assert!(
        err.contains("error: cluster did not start within 2s: unreachable peer(s): 127.0.0.1:"),
        "{err}"
    );
}

#[test]
fn idle_timeout_closes_windows_while_the_input_stays_open() {
    // A live run writes to a stream (standard output here): a regular output file appears only
    // when the run succeeded.
    let mut child = bin()
        .args(["window", "--input", "-", "--output", "-"])
        .args([
            "--window",
            "tumbling:10",
            "--agg",
            "count",
            "--idle-timeout",
            "100ms",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (rows, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if rows.send(line).is_err() {
                return;
            }
        }
    });
    stdin.write_all(b"ts,key,value\n1,a,1\n2,a,1\n").unwrap();
    stdin.flush().unwrap();
    // Without more input, the watermark advances with processing time past 10 and the window
    // [0, 10) is written while standard input is still open.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l == "0,10,a,2,1") {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("window not emitted while idle; output: {seen:?}"),
        }
    }
    drop(stdin);
    let result = child.wait_with_output().unwrap();
    assert!(result.status.success(), "{}", stderr(&result));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// The command (CSV in, CSV out, text keys with quoting) agrees with the reference.
    #[test]
    fn command_matches_reference(events in gen::events(30), p in gen::params(), workers in 1usize..=4) {
        let dir = scratch("prop");
        let input = write(&dir, "events.csv", &gen::to_csv(&events));
        let (out, late) = (dir.join("out.csv"), dir.join("late.csv"));
        let result = bin()
            .args(["window", "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()])
            .args(["--window", &gen::window_spec(&p), "--agg", gen::agg_name(&p.agg)])
            .args(["--max-delay", &p.max_delay.to_string(), "--allowed-lateness", &p.lateness.to_string()])
            .args(["--late-output", late.to_str().unwrap(), "--workers", &workers.to_string()])
            .output()
            .unwrap();
        prop_assert!(result.status.success(), "{}", stderr(&result));
        let expected = reference(&events, &p as &Params);
        let got: BTreeMap<_, _> = consolidated(&out).into_iter().map(|(k, v)| (k, parse_fixed(&v))).collect();
        let expected_windows: BTreeMap<_, _> = expected
            .windows
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        prop_assert_eq!(got, expected_windows);
        let mut late_rows: Vec<String> = std::fs::read_to_string(&late).unwrap().lines().skip(1).map(str::to_string).collect();
        late_rows.sort();
        let mut expected_late: Vec<String> = expected
            .late
            .iter()
            .map(|(i, s, e)| {
                let line = gen::to_csv(&events[*i..=*i]);
                format!("{},{s},{e}", line.lines().nth(1).unwrap())
            })
            .collect();
        expected_late.sort();
        prop_assert_eq!(late_rows, expected_late);
    }
}

/// Every duration flag of the CLI goes through one parser (`tidemark::units`): `window` reads
/// the spellings `bench` reads (decimals, `us`), and refuses what it refuses with the same words.
#[test]
fn window_and_bench_read_durations_with_one_parser() {
    let dir = scratch("one-duration-parser");
    let input = write(&dir, "in.csv", "ts,key,value\n0,a,1\n1400,a,2\n1600,a,4\n");
    let out = dir.join("out.csv");
    let (input, out_path) = (input.to_str().unwrap(), out.to_str().unwrap());
    let result = run(&[
        "window",
        "--input",
        input,
        "--output",
        out_path,
        "--window",
        "tumbling:1.5s",
        "--agg",
        "sum",
        "--max-delay",
        "0.5s",
        "--allowed-lateness",
        "250000us",
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
    let rows: Vec<_> = consolidated(&out).into_iter().collect();
    let a = |start, end, value: &str| ((start, end, "a".to_string()), value.to_string());
    assert_eq!(rows, vec![a(0, 1500, "3"), a(1500, 3000, "4")]);
    for bad in ["99999999999999999h", "-1s", "ten"] {
        let (delay, warmup) = (format!("--max-delay={bad}"), format!("--warmup={bad}"));
        let window_err = stderr(&run(&[
            "window",
            "--input",
            input,
            "--output",
            out_path,
            "--window",
            "tumbling:10s",
            "--agg",
            "sum",
            &delay,
        ]));
        let bench_err = stderr(&run(&["bench", "ysb", &warmup]));
        assert!(window_err.contains("expected a duration"), "{window_err}");
        assert!(bench_err.contains("expected a duration"), "{bench_err}");
    }
    // A whole number of milliseconds only: event times are milliseconds.
    expect_usage_error(
        &[
            "window",
            "--input",
            input,
            "--output",
            out_path,
            "--window",
            "tumbling:1500us",
            "--agg",
            "sum",
        ],
        "whole number of milliseconds",
    );
    std::fs::remove_dir_all(&dir).ok();
}
