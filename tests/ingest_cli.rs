//! `tidemark window` reads a file with every worker of every process (`--readers all`, the
//! default) and gives what one reader gives (`--readers one`).
//!
//! Protects: on random files with late lines, quoted fields, quoted newlines, `\r\n`, empty
//! lines and bad lines, cut into small blocks (`--read-block`), the changelog, the late rows,
//! the summary line, the skipped-line warnings and the exit status are those of the single
//! reader, on 1, 2 and 4 workers and 2 processes, every partitioner, both emit modes; with
//! `--on-bad-line fail` the error names the same file, line and field (reported by process 0
//! whichever process read the line).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::cli::{self, hostfile, scratch, two_processes, write};

/// A random file (xorshift from `seed`): `ts,key,value` rows with event times walking up,
/// about one row in eight far behind, keys quoted in several ways, and `bad` bad rows.
fn random_file(seed: u64, rows: usize, bad: bool) -> String {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = String::from("ts,key,value\n");
    let mut walk = 0u64;
    for _ in 0..rows {
        let r = next();
        walk += r % 4;
        let ts = if r % 8 == 0 {
            walk.saturating_sub((r >> 8) % 60)
        } else {
            walk
        };
        let k = (r >> 16) % 6;
        let key = match (r >> 24) % 6 {
            0 => format!("\"k{k},c\""),
            1 => format!("\"k{k}\nn\""),
            2 => format!("\"k{k}\"\"q\"\"\""),
            _ => format!("k{k}"),
        };
        let line = match (r >> 32) % 60 {
            0 if bad => "x,k1,1".to_string(),
            1 if bad => "3,k1".to_string(),
            2 => String::new(),
            _ => format!("{ts},{key},{}", (r >> 40) % 100),
        };
        text.push_str(&line);
        text.push_str(if (r >> 48) % 3 == 0 { "\r\n" } else { "\n" });
    }
    text
}

/// What a run gave: exit status, its stderr without notes, and the output files' sorted rows.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    success: bool,
    stderr: Vec<String>,
    output: Vec<String>,
    late: Vec<String>,
}

fn sorted_rows(path: &Path) -> Vec<String> {
    let mut rows: Vec<String> = std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default();
    rows.sort();
    rows
}

fn outcome(result: &Output, dir: &Path) -> Outcome {
    let stderr = String::from_utf8_lossy(&result.stderr)
        .lines()
        .filter(|l| !l.starts_with("note: ") && !l.contains("exceeds the 2 cores"))
        .filter(|l| !l.contains("cores available here"))
        .map(str::to_string)
        .collect();
    Outcome {
        success: result.status.success(),
        stderr,
        output: sorted_rows(&dir.join("out.csv")),
        late: sorted_rows(&dir.join("late.csv")),
    }
}

/// The flags of a run: `--window`, `--agg` and the rest.
type Flags<'a> = (&'a str, &'a str, &'a [&'a str]);

/// `tidemark window` over `input` into `dir` (`out.csv`, `late.csv`) with `flags` and `extra`.
fn window(input: &Path, dir: &Path, (spec, agg, args): Flags, extra: &[String]) -> Command {
    let _ = std::fs::remove_file(dir.join("out.csv"));
    let _ = std::fs::remove_file(dir.join("late.csv"));
    let mut command = cli::window(input, dir.join("out.csv"), spec, agg);
    command
        .arg("--late-output")
        .arg(dir.join("late.csv"))
        .args(args)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// The run of `args` by one reader, then by all readers on every cluster shape: all alike.
fn check(input: &Path, dir: &Path, args: Flags) {
    let one = outcome(
        &window(input, dir, args, &["--readers".into(), "one".into()])
            .output()
            .unwrap(),
        dir,
    );
    for block in ["1", "97"] {
        for workers in ["1", "2", "4"] {
            let extra = ["--read-block", block, "--workers", workers].map(String::from);
            let all = outcome(&window(input, dir, args, &extra).output().unwrap(), dir);
            assert_eq!(all, one, "{args:?} {extra:?}");
        }
        // Two processes of two workers.
        let (hosts, _) = hostfile(dir);
        let cluster = |process: usize| {
            let mut flags = two_processes(&hosts, process);
            flags.extend(["--read-block", block, "--connect-timeout", "60s"].map(String::from));
            flags
        };
        // Process 1 writes nowhere: its outputs are process 0's.
        let p1 = window(input, dir, args, &cluster(1)).spawn().unwrap();
        let p0 = window(input, dir, args, &cluster(0)).spawn().unwrap();
        let (o0, o1) = (
            p0.wait_with_output().unwrap(),
            p1.wait_with_output().unwrap(),
        );
        let all = outcome(&o0, dir);
        assert_eq!(all, one, "{args:?} two processes, block {block}");
        if one.success {
            assert!(
                o1.status.success(),
                "{}",
                String::from_utf8_lossy(&o1.stderr)
            );
        }
    }
}

#[test]
fn parallel_readers_give_what_one_reader_gives() {
    let dir = scratch("same");
    for (seed, bad) in [(1, false), (2, true)] {
        let input = write(
            &dir,
            &format!("events-{seed}.csv"),
            &random_file(seed, 300, bad),
        );
        for emit in ["final", "updates"] {
            for partition in ["hash", "range:k2,k4", "random", "broadcast"] {
                // Broadcast and random are checked on the final path only (the updates path
                // takes them alike); every cluster shape on each.
                if emit == "updates" && partition != "hash" {
                    continue;
                }
                let flags = [
                    "--max-delay",
                    "15",
                    "--allowed-lateness",
                    "10",
                    "--emit",
                    emit,
                    "--partition",
                    partition,
                    "--on-bad-line",
                    "skip",
                ];
                check(&input, &dir, ("sliding:40/10", "sum", &flags));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_first_bad_line_in_the_file_is_the_error_whichever_worker_reads_it() {
    let dir = scratch("fail");
    let input = write(&dir, "events.csv", &random_file(3, 400, true));
    let args = ("tumbling:20", "count", &["--max-delay", "5"][..]);
    check(&input, &dir, args);
    // The check compares with the single reader; that it failed, and where, is this:
    let one = window(&input, &dir, args, &["--readers".into(), "one".into()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&one.stderr);
    assert!(
        !one.status.success() && err.contains("events.csv:"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
