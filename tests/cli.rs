//! The `tidemark window` command: its contract (output format, late output, summary), errors
//! on bad input, multi-process runs, idle timeout, and agreement with the reference.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use common::cli::{
    bin, expect_error, expect_usage_error, hostfile, run, s, scratch, scratch_input, spawn_piped,
    stderr, two_processes, window, write,
};
use common::gen;
use common::reference::{parse_fixed, reference, Params};

/// Consolidated output, typed: (start, end, key) -> value text; panics on a malformed
/// changelog.
fn consolidated(path: &Path) -> BTreeMap<(i64, u64, String), String> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec!["window_start", "window_end", "key", "value", "diff"]
    );
    common::cli::consolidated(path)
        .into_iter()
        .map(|((start, end, key), value)| {
            ((start.parse().unwrap(), end.parse().unwrap(), key), value)
        })
        .collect()
}

const EVENTS: &str = "ts,key,value\n1,a,5\n4,b,2.5\n7,a,-1\n12,a,3\n3,b,1\n25,b,4\n11,a,2\n2,a,9\n";

#[test]
fn readme_example_tumbling_sum_with_corrections_and_late_output() {
    let (dir, input) = scratch_input("readme", EVENTS);
    let (out, late) = (dir.join("out.csv"), dir.join("late.csv"));
    // The README's example, verbatim apart from paths.
    let result = window(&input, &out, "tumbling:10", "sum")
        .args([
            "--max-delay",
            "2",
            "--allowed-lateness",
            "5",
            "--late-output",
            s(&late),
        ])
        .output()
        .unwrap();
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
    let (dir, input) = scratch_input("sessions", EVENTS);
    let out = dir.join("out.csv");
    let result = window(&input, &out, "session:5", "count")
        .args([
            "--max-delay",
            "20",
            "--workers",
            "2",
            "--partition",
            "random",
        ])
        .output()
        .unwrap();
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

#[test]
fn bad_input_gets_one_line_naming_file_line_and_field() {
    let dir = scratch("errors");
    let out = dir.join("out.csv");
    let out = out.to_str().unwrap();
    let args = |input: &Path, extra: &[&str]| -> Vec<String> {
        ["window", "--input", s(input), "--output", out]
            .into_iter()
            .chain(["--window", "tumbling:10", "--agg", "sum"])
            .chain(extra.iter().copied())
            .map(str::to_string)
            .collect()
    };
    // (file, its text or none for a missing file, extra flags, what the one line says)
    let bad_value = "ts,key,value\n1,a,1\n2,a,1\n3,a,x1\n";
    for (name, text, extra, needle) in [
        ("missing.csv", None, &[][..], "missing.csv: No such file"),
        (
            "novalue.csv",
            Some("ts,key\n1,a\n"),
            &[],
            "novalue.csv:1: field 'value': no such column in the header (columns: ts, key)",
        ),
        (
            "badtime.csv",
            Some("ts,key,value\n1,a,1\nsoon,b,2\n"),
            &[],
            "badtime.csv:3: field 'ts': expected a non-negative integer event time (milliseconds), got \"soon\"",
        ),
        (
            "negative.csv",
            Some("ts,key,value\n-5,a,1\n"),
            &[],
            "negative.csv:2: field 'ts': event time must not be negative, got \"-5\"",
        ),
        (
            "badvalue.csv",
            Some(bad_value),
            &[],
            "badvalue.csv:4: field 'value': expected a number",
        ),
        (
            "short.csv",
            Some("ts,key,value\n1,a\n"),
            &[],
            concat!(
                "short.csv:2: field 'value': missing: ",
                "the row has 2 of the header's 3 fields (ts, key, value)"
            ),
        ),
        (
            "long.csv",
            Some("ts,key,value\n1,a,2\n3,b,4,5\n"),
            &[],
            "long.csv:3: expected 3 fields (ts, key, value), found 4",
        ),
        (
            "shortkey.csv",
            Some("key,ts,value\nb,3,4\na\n"),
            &["--workers", "2", "--read-block", "8"],
            concat!(
                "shortkey.csv:3: field 'ts': missing: ",
                "the row has 1 of the header's 3 fields (key, ts, value)"
            ),
        ),
        (
            "badvalue.csv",
            Some(bad_value),
            &["--time-col", "time"],
            "field 'time': no such column",
        ),
    ] {
        let input = match text {
            Some(text) => write(&dir, name, text),
            None => dir.join(name),
        };
        expect_error(&args(&input, extra), needle);
    }
    assert!(
        !Path::new(out).exists(),
        "a failed run leaves no output behind"
    );

    let good = write(&dir, "good.csv", EVENTS);
    let hosts = write(&dir, "hosts.txt", "127.0.0.1:1\nlocalhost\n");
    let base = |window: &str, agg: &str, output: &str, extra: &[&str]| -> Vec<String> {
        ["window", "--input", s(&good), "--output", output]
            .into_iter()
            .chain(["--window", window, "--agg", agg])
            .chain(extra.iter().copied())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // (window, agg, extra flags, what the usage error names)
    for (window, agg, extra, needle) in [
        ("tumbling:x", "count", &[][..], "--window"),
        ("sliding:5/10", "count", &[], "slide must not exceed size"),
        ("tumbling:5", "median", &[], "--agg"),
        (
            "tumbling:5",
            "count",
            &["--partition", "range:z,a"],
            "strictly increasing",
        ),
    ] {
        expect_usage_error(&base(window, agg, out, extra), needle);
    }
    // (output, extra flags, what the one-line error says)
    for (output, extra, needle) in [
        (
            "/nonexistent-dir/out.csv",
            &[][..],
            "cannot create /nonexistent-dir/out.csv",
        ),
        (
            out,
            &["--processes", "2", "--hostfile", s(&hosts)],
            "hosts.txt:2: expected host:port, got \"localhost\"",
        ),
        (out, &["--processes", "2"], "--hostfile"),
    ] {
        expect_error(&base("tumbling:5", "count", output, extra), needle);
    }
}

#[test]
fn skipped_bad_lines_are_counted_and_the_rest_processed() {
    let (dir, input) = scratch_input("skip", "ts,key,value\n1,a,1\nnope,a,1\n2,a,x\n3,a,2\n");
    let out = dir.join("out.csv");
    let result = window(&input, &out, "tumbling:10", "sum")
        .args(["--on-bad-line", "skip"])
        .output()
        .unwrap();
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

#[test]
fn two_processes_on_localhost_match_one_process() {
    let dir = scratch("cluster");
    let mut text = String::from("ts,key,value\n");
    for i in 0..2000u64 {
        text.push_str(&format!("{},k{},{}\n", (i * 37) % 500 + i, i % 13, i % 7));
    }
    let input = write(&dir, "events.csv", &text);
    let (hosts, _) = hostfile(&dir);
    let command = |out: &Path| {
        let mut command = window(&input, out, "sliding:100/30", "mean");
        command.args(["--max-delay", "40", "--allowed-lateness", "30"]);
        command
    };
    let single = dir.join("single.csv");
    let result = command(&single).output().unwrap();
    assert!(result.status.success(), "{}", stderr(&result));

    let multi = dir.join("multi.csv");
    let spawn = |process: usize| {
        command(&multi)
            .args(two_processes(&hosts, process))
            .args(["--connect-timeout", "60s"])
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
    let (dir, input) = scratch_input("unreachable", EVENTS);
    let (hosts, _) = hostfile(&dir);
    // Process 1 connects to process 0, which never starts.
    let result = window(&input, dir.join("o.csv"), "tumbling:5", "count")
        .args(["--processes", "2", "--process", "1"])
        .args(["--hostfile", s(&hosts), "--connect-timeout", "2s"])
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
    let mut command = bin();
    command
        .args(["window", "--input", "-", "--output", "-"])
        .args([
            "--window",
            "tumbling:10",
            "--agg",
            "count",
            "--idle-timeout",
            "100ms",
        ]);
    let mut child = spawn_piped(&mut command);
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
        let (dir, input) = scratch_input("prop", &gen::to_csv(&events));
        let (out, late) = (dir.join("out.csv"), dir.join("late.csv"));
        let result = window(&input, &out, &gen::window_spec(&p), gen::agg_name(&p.agg))
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
    let result = window(input, out_path, "tumbling:1.5s", "sum")
        .args(["--max-delay", "0.5s", "--allowed-lateness", "250000us"])
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", stderr(&result));
    let rows: Vec<_> = consolidated(&out).into_iter().collect();
    let a = |start, end, value: &str| ((start, end, "a".to_string()), value.to_string());
    assert_eq!(rows, vec![a(0, 1500, "3"), a(1500, 3000, "4")]);
    for bad in ["99999999999999999h", "-1s", "ten"] {
        let (delay, warmup) = (format!("--max-delay={bad}"), format!("--warmup={bad}"));
        let window_err = stderr(
            &window(input, out_path, "tumbling:10s", "sum")
                .arg(&delay)
                .output()
                .unwrap(),
        );
        let bench_err = stderr(&run(&["bench", "ysb", &warmup]));
        assert!(window_err.contains("expected a duration"), "{window_err}");
        assert!(bench_err.contains("expected a duration"), "{bench_err}");
    }
    // A whole number of milliseconds only: event times are milliseconds.
    let args = ["window", "--input", input, "--output", out_path];
    let args = [&args[..], &["--window", "tumbling:1500us", "--agg", "sum"]].concat();
    expect_usage_error(&args, "whole number of milliseconds");
    std::fs::remove_dir_all(&dir).ok();
}
