//! `tidemark window` at its edges (issue 10): every file the CLI writes read back by header name,
//! exact sums beyond 128 bits, event times at the ends of the time domain, Flink's lateness rule
//! for sessions, every partitioner under both emit modes, and what the CLI refuses.
//!
//! Protects: that each output row agrees with its header (both emit modes, late output,
//! standard input, input columns in any order), that results do not depend on workers,
//! partitioner or input order, and that nothing wraps, panics or is dropped silently.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::cli::{
    answer, consolidated, row, rows_by_name, run_window, s, scratch, stderr, with_stdin, Answer,
    Row,
};

/// The largest event time.
const MAX_TIME: u64 = tidemark::time::MAX_TIME;

/// Runs `tidemark window` on `input` into `output` with `--window WINDOW --agg AGG` and `extra`.
fn window(input: &str, output: &Path, spec: [&str; 2], extra: &[&str]) -> Output {
    run_window(input, output, spec[0], spec[1], extra)
}

/// A scratch directory for `name`, and its `in.csv` and `out.csv`.
fn files(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = scratch(name);
    let (input, output) = (dir.join("in.csv"), dir.join("out.csv"));
    (dir, input, output)
}

/// `tumbling:10` and `sum`, the window most of these tests use.
const T10_SUM: [&str; 2] = ["tumbling:10", "sum"];

const PARTITIONERS: [&str; 4] = ["hash", "range:m", "random", "broadcast"];
const EMITS: [&str; 2] = ["final", "updates"];

/// Runs `csv` under both emit modes, every partitioner and 1, 2, 4 workers, checks that all runs
/// agree, and returns the consolidated changelog and the late rows (by name, without the
/// updates mode's `diff`, which must be `1` here).
fn run_everywhere(name: &str, csv: &str, args: &[&str]) -> (Answer, Vec<Row>) {
    let dir = scratch(name);
    let input = dir.join("in.csv");
    std::fs::write(&input, csv).unwrap();
    let (output, late) = (dir.join("out.csv"), dir.join("late.csv"));
    let mut first = None;
    for emit in EMITS {
        for partition in PARTITIONERS {
            for workers in ["1", "2", "4"] {
                let out = common::cli::bin()
                    .args(["window", "--input", s(&input), "--output", s(&output)])
                    .args(["--late-output", s(&late), "--emit", emit])
                    .args(["--partition", partition, "--workers", workers])
                    .args(args)
                    .output()
                    .unwrap();
                let what = format!("{emit}, --partition {partition}, {workers} workers");
                assert!(out.status.success(), "{what}: {}", stderr(&out));
                let mut late_rows = rows_by_name(&late);
                for r in &mut late_rows {
                    let diff = r.remove("diff");
                    let expected = (emit == "updates").then(|| "1".to_string());
                    assert_eq!(diff, expected, "{what}: {r:?}");
                }
                late_rows.sort();
                let got = (consolidated(&output), late_rows);
                match &first {
                    None => first = Some(got),
                    Some(first) => assert_eq!(&got, first, "{what}"),
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    first.expect("at least one run")
}

#[test]
fn late_rows_agree_with_their_header_in_both_emit_modes_and_any_column_order() {
    // Issue 10, part 1: the late row of `3,s,9` under `--emit updates` is `3,s,9,0,10,1`.
    let dir = scratch("late-header");
    let inputs = [
        "ts,key,value\n5,s,7\n20,s,1\n3,s,9\n",
        "value,key,ts\n7,s,5\n1,s,20\n9,s,3\n",
        "note,key,diff,value,ts\nx,s,1,7,5\ny,s,1,1,20\nz,s,1,9,3\n",
    ];
    for (i, csv) in inputs.iter().enumerate() {
        for emit in EMITS {
            for stdin in [false, true] {
                let input = dir.join("in.csv");
                std::fs::write(&input, csv).unwrap();
                let (output, late) = (dir.join("out.csv"), dir.join("late.csv"));
                let input_arg = if stdin { "-" } else { input.to_str().unwrap() };
                let mut command = common::cli::window(input_arg, &output, "tumbling:10", "sum");
                command.args(["--late-output", s(&late), "--emit", emit]);
                let out = match stdin {
                    true => with_stdin(&mut command, csv),
                    false => command.output().unwrap(),
                };
                let what = format!("input {i}, {emit}, stdin {stdin}");
                assert!(out.status.success(), "{what}: {}", stderr(&out));
                let mut expected = vec![
                    ("ts", "3"),
                    ("key", "s"),
                    ("value", "9"),
                    ("window_start", "0"),
                    ("window_end", "10"),
                ];
                if csv.starts_with("note") {
                    expected.push(("note", "z"));
                }
                if emit == "updates" {
                    expected.push(("diff", "1"));
                }
                assert_eq!(rows_by_name(&late), vec![row(&expected)], "{what}");
                let mut changelog: Vec<_> = rows_by_name(&output)
                    .into_iter()
                    .map(|r| {
                        let field = |name: &str| r[name].clone();
                        [
                            field("window_start"),
                            field("window_end"),
                            field("key"),
                            field("value"),
                            field("diff"),
                        ]
                    })
                    .collect();
                changelog.sort();
                let expected: Vec<[String; 5]> =
                    [["0", "10", "s", "7", "1"], ["20", "30", "s", "1", "1"]]
                        .iter()
                        .map(|r| r.map(str::to_string))
                        .collect();
                assert_eq!(changelog, expected, "{what}");
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn corrections_and_retractions_are_read_back_by_name() {
    let (dir, input, output) = files("corrections");
    // A correction within the allowed lateness, with the input's columns in another order.
    std::fs::write(&input, "key,ts,value\na,1,2\na,12,1\na,3,5\n").unwrap();
    let out = window(s(&input), &output, T10_SUM, &["--allowed-lateness", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let names = ["window_start", "window_end", "key", "value", "diff"];
    let expected: Vec<Row> = [
        ["0", "10", "a", "2", "1"],
        ["0", "10", "a", "2", "-1"],
        ["0", "10", "a", "7", "1"],
        ["10", "20", "a", "1", "1"],
    ]
    .iter()
    .map(|fields| {
        row(&names
            .iter()
            .copied()
            .zip(fields.iter().copied())
            .collect::<Vec<_>>())
    })
    .collect();
    let (mut got, mut expected) = (rows_by_name(&output), expected);
    got.sort();
    expected.sort();
    assert_eq!(got, expected);

    // A retraction in the input (--emit updates), the diff column first.
    std::fs::write(&input, "diff,value,ts,key\n1,2,1,a\n1,4,2,a\n-1,2,1,a\n").unwrap();
    let out = window(s(&input), &output, T10_SUM, &["--emit", "updates"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(consolidated(&output), answer(&[("0", "10", "a", "4")]));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sums_beyond_128_bits_are_exact_everywhere() {
    // Issue 10, part 2: exact, whatever the workers, partitioner and emit mode.
    let csv = "ts,key,value\n1,acct,100000000000000000000000000000\n\
               2,acct,100000000000000000000000000000\n3,other,5\n";
    let (sum, mean) = (
        "200000000000000000000000000000",
        "100000000000000000000000000000",
    );
    for (agg, value) in [("sum", sum), ("mean", mean)] {
        let args = ["--window", "tumbling:10", "--agg", agg];
        let (got, late) = run_everywhere(&format!("big-{agg}"), csv, &args);
        let expected = [("0", "10", "acct", value), ("0", "10", "other", "5")];
        assert_eq!(got, answer(&expected), "{agg}");
        assert!(late.is_empty());
    }
}

#[test]
fn sums_do_not_depend_on_the_order_of_huge_values() {
    // 1e29, -1e29, 1e29, 1e29, -1e29 in every distinct order: always exactly 1e29. And the
    // ends of the input range add up exactly too: 3 * max - max = 2 * (2^127 - 1) nano-units.
    let big = "100000000000000000000000000000";
    let max = "170141183460469231731687303715.884105727";
    let (dir, input, output) = files("orders");
    for mask in (0u32..32).filter(|m| m.count_ones() == 3) {
        let mut csv = String::from("ts,key,value\n");
        for i in 0..5 {
            let sign = if mask & (1 << i) != 0 { "" } else { "-" };
            csv.push_str(&format!("{i},k,{sign}{big}\n"));
        }
        for i in 0..4 {
            let sign = if i == mask % 4 { "-" } else { "" };
            csv.push_str(&format!("{i},m,{sign}{max}\n"));
        }
        std::fs::write(&input, &csv).unwrap();
        for workers in ["1", "2"] {
            let extra = ["--partition", "random", "--workers", workers];
            let out = window(s(&input), &output, T10_SUM, &extra);
            assert!(out.status.success(), "{}", stderr(&out));
            assert_eq!(
                consolidated(&output),
                answer(&[
                    ("0", "10", "k", big),
                    ("0", "10", "m", "340282366920938463463374607431.768211454"),
                ]),
                "{csv}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn times_beyond_the_domain_are_refused_with_file_line_and_field() {
    // Issue 10, part 3: no wrapped window, no panic, no silent drop.
    let (dir, input, output) = files("domain");
    let just_beyond = (MAX_TIME + 1).to_string();
    for bad in [
        "9223372036854775810",
        "18446744073709551610",
        "18446744073709551616",
        just_beyond.as_str(),
    ] {
        std::fs::write(&input, format!("ts,key,value\n1,a,1\n{bad},a,2\n")).unwrap();
        for (emit, partition, workers) in [
            ("final", "hash", "1"),
            ("final", "random", "2"),
            ("updates", "hash", "2"),
            ("updates", "random", "2"),
        ] {
            let extra = [
                "--emit",
                emit,
                "--partition",
                partition,
                "--workers",
                workers,
            ];
            let out = window(s(&input), &output, T10_SUM, &extra);
            assert!(!out.status.success(), "{bad} accepted");
            let err = stderr(&out);
            assert!(err.contains("in.csv:3: field 'ts'"), "{err}");
            assert!(err.contains(&MAX_TIME.to_string()), "{err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    // Durations beyond the domain, and sliding windows with too many windows per record.
    std::fs::write(&input, "ts,key,value\n1,a,1\n").unwrap();
    for args in [
        ["--window", "sliding:18446744073709551615/1"],
        ["--window", "tumbling:4611686018427387905"],
        ["--window", "session:4611686018427387905"],
        ["--window", "sliding:10000000/1"],
        ["--max-delay", "18446744073709551615"],
        ["--allowed-lateness", "4611686018427387905"],
    ] {
        let (spec, extra) = match args {
            ["--window", spec] => (spec, &[][..]),
            _ => ("tumbling:10", &args[..]),
        };
        let out = window(s(&input), &output, [spec, "count"], extra);
        assert!(!out.status.success(), "{args:?} accepted");
        let err = stderr(&out);
        assert!(err.contains(args[1]), "{args:?}: {err}");
        assert!(err.contains("2^62") || err.contains("windows"), "{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn windows_at_the_end_of_the_domain_are_exact() {
    let top = MAX_TIME.to_string();
    let below = (MAX_TIME - 2).to_string();
    let text = |t: u64| t.to_string();
    // Tumbling: the last window reaches past the domain's end, exactly.
    let csv = format!("ts,key,value\n1,a,1\n{below},a,2\n{top},a,4\n{below},b,8\n");
    let args = ["--window", "tumbling:10", "--agg", "sum"];
    let (got, late) = run_everywhere("top-tumbling", &csv, &args);
    let last = MAX_TIME - MAX_TIME % 10;
    let (start, end) = (text(last), text(last + 10));
    assert_eq!(
        got,
        answer(&[
            ("0", "10", "a", "1"),
            (&start, &end, "a", "6"),
            (&start, &end, "b", "8"),
        ])
    );
    assert!(late.is_empty(), "{late:?}");
    // The largest gap: a session from 0 to the domain's end ends at 2^63 - 1.
    let csv = format!("ts,key,value\n0,a,1\n{top},a,2\n");
    let args = ["--window", "session:4611686018427387904", "--agg", "count"];
    let (got, _) = run_everywhere("top-session", &csv, &args);
    assert_eq!(got, answer(&[("0", &text(u64::MAX / 2), "a", "2")]));
    // The largest size, sliding by half of it: windows start before zero and end past 2^62
    // (the domain's last time, 2^62 - 1, is in [0, 2^62) and [2^61, 3 * 2^61)).
    let half = 1u64 << 61;
    let args = [
        "--window",
        "sliding:4611686018427387904/2305843009213693952",
        "--agg",
        "count",
    ];
    let (got, _) = run_everywhere("top-sliding", &csv, &args);
    assert_eq!(
        got,
        answer(&[
            (&format!("-{half}"), &text(half), "a", "1"),
            ("0", &text(2 * half), "a", "2"),
            (&text(half), &text(3 * half), "a", "1"),
        ])
    );
}

#[test]
fn a_session_record_joining_an_open_session_counts() {
    // Issue 10, part 4: `5,a` falls in the session [0,34), whose end is past the watermark 30.
    let args = ["--window", "session:10", "--agg", "count"];
    let csv = "ts,key,value\n0,a,1\n8,a,1\n16,a,1\n24,a,1\n30,b,1\n5,a,1\n";
    let (got, late) = run_everywhere("session-open", csv, &args);
    assert_eq!(
        got,
        answer(&[("0", "34", "a", "5"), ("30", "40", "b", "1")])
    );
    assert!(late.is_empty(), "{late:?}");
    // Once the session is beyond the watermark it is forgotten (Flink purges it at
    // end + lateness = 34 <= 50): the record does not join it, and is late for its own window.
    let csv = "ts,key,value\n0,a,1\n8,a,1\n16,a,1\n24,a,1\n50,b,1\n5,a,1\n";
    let (got, late) = run_everywhere("session-late", csv, &args);
    assert_eq!(
        got,
        answer(&[("0", "34", "a", "4"), ("50", "60", "b", "1")])
    );
    let expected = row(&[
        ("ts", "5"),
        ("key", "a"),
        ("value", "1"),
        ("window_start", "5"),
        ("window_end", "15"),
    ]);
    assert_eq!(late, vec![expected]);
    // A record that would bridge two closed sessions at watermark 30: with no lateness both
    // are forgotten and it is late for [14,19); with lateness 8 only [18,23) is kept
    // (23 + 8 > 30), so it merges with that one only (a correction), and the forgotten [10,15)
    // stays; with lateness 16 both are kept and it merges them.
    let csv = "ts,key,value\n10,a,1\n18,a,1\n30,b,1\n14,a,1\n";
    let args = ["--window", "session:5", "--agg", "count"];
    let (_, late) = run_everywhere("session-bridge", csv, &args);
    let named: Vec<_> = late
        .iter()
        .map(|r| (r["window_start"].as_str(), r["window_end"].as_str()))
        .collect();
    assert_eq!(named, [("14", "19")]);
    for (lateness, right) in [
        (
            "8",
            answer(&[
                ("10", "15", "a", "1"),
                ("14", "23", "a", "2"),
                ("30", "35", "b", "1"),
            ]),
        ),
        (
            "16",
            answer(&[("10", "23", "a", "3"), ("30", "35", "b", "1")]),
        ),
    ] {
        let args = [
            "--window",
            "session:5",
            "--agg",
            "count",
            "--allowed-lateness",
            lateness,
        ];
        let name = format!("session-bridge-{lateness}");
        let (got, late) = run_everywhere(&name, csv, &args);
        assert_eq!(got, right, "lateness {lateness}");
        assert!(late.is_empty(), "lateness {lateness}: {late:?}");
    }
}

#[test]
fn a_late_record_does_not_bridge_a_purged_session_to_an_open_one() {
    // Gap 10, no lateness. a: [0,10), then 12 and 13 form [12,23) while b at 20 moves the
    // watermark to 20, which purges [0,10). The 5's window [5,15) overlaps both; it merges
    // with the open [12,23) only: [5,23) with 3 records, and [0,10) stays as it was emitted.
    let csv = "ts,key,value\n0,a,1\n12,a,1\n20,b,1\n13,a,1\n5,a,1\n";
    let args = ["--window", "session:10", "--agg", "count"];
    let (got, late) = run_everywhere("session-purged", csv, &args);
    assert_eq!(
        got,
        answer(&[
            ("0", "10", "a", "1"),
            ("5", "23", "a", "3"),
            ("20", "30", "b", "1"),
        ])
    );
    assert!(late.is_empty(), "{late:?}");
    // With lateness 11, [0,10) is kept at 20 (10 + 11 > 20): the 5 bridges it into [0,23).
    let args = [
        "--window",
        "session:10",
        "--agg",
        "count",
        "--allowed-lateness",
        "11",
    ];
    let (got, late) = run_everywhere("session-kept", csv, &args);
    assert_eq!(
        got,
        answer(&[("0", "23", "a", "4"), ("20", "30", "b", "1")])
    );
    assert!(late.is_empty(), "{late:?}");
}

#[test]
fn a_duplicated_header_column_is_refused_by_name() {
    let (dir, input, output) = files("duplicate");
    let late = dir.join("late.csv");
    for (header, column, words) in [
        ("ts,key,value,key", "key", "more than once"),
        ("ts,ts,key,value", "ts", "more than once"),
        ("note,ts,key,value,note", "note", "more than once"),
        ("ts,,key,value,", "", "more than one column without a name"),
    ] {
        std::fs::write(&input, format!("{header}\n1,a,1,1\n")).unwrap();
        let out = window(s(&input), &output, T10_SUM, &[]);
        assert!(!out.status.success(), "{header} accepted");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("in.csv:1: field '{column}'")) && err.contains(words),
            "{err}"
        );
    }
    // An input column named like one the late output adds would make that output ambiguous.
    std::fs::write(&input, "ts,key,value,window_end\n1,a,1,x\n").unwrap();
    let out = window(s(&input), &output, T10_SUM, &["--late-output", s(&late)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("in.csv:1: field 'window_end'"),
        "{}",
        stderr(&out)
    );
    // Without a late output there is nothing to clash with: the column is an ordinary one, in
    // both emit modes.
    for emit in ["final", "updates"] {
        let out = window(s(&input), &output, T10_SUM, &["--emit", emit]);
        assert!(out.status.success(), "{emit}: {}", stderr(&out));
        assert_eq!(
            consolidated(&output),
            answer(&[("0", "10", "a", "1")]),
            "{emit}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
