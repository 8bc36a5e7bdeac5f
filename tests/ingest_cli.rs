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

use common::cli::{self, finish, hostfile, scratch, two_processes, write};

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
            // A byte order mark mid-file is part of its line (a bad time), also where a block
            // starts (a fresh CSV parser drops one at its start).
            3 if bad => format!("\u{feff}{ts},k1,1"),
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

/// A byte order mark at the start of a line after the header, alone or before a quote (which
/// then does not open a quoted field), is part of the line for every reader, on every block
/// size: a fresh CSV parser for a block, or for the plan scan, dropped it.
#[test]
fn a_byte_order_mark_inside_the_file_is_part_of_its_line() {
    let dir = scratch("bom");
    let files = [
        "ts,key,value\n1,a,1\n\u{feff}5,b,2\n3,a,3\n12,a,4\n",
        "ts,key,value\n\u{feff}\"5\n6\",a,1\n7,b,2\n3,\"a\nq\",3\n12,a,4\n\u{feff}\n9,a,1\n",
    ];
    for (i, text) in files.iter().enumerate() {
        let input = dir.join(format!("bom-{i}.csv"));
        std::fs::write(&input, text).unwrap();
        for bad in ["fail", "skip"] {
            let args: Flags = ("tumbling:10", "sum", &["--on-bad-line", bad]);
            check(&input, &dir, args);
            let one = window(&input, &dir, args, &["--readers".into(), "one".into()])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&one.stderr);
            assert!(err.contains(":2: ") || err.contains(":3: "), "{err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two processes that find different files at the input's path (each host has its own copy)
/// fail at once, both, naming the difference: they used to wait forever for blocks that only
/// the other process's plan has.
#[test]
fn processes_with_different_copies_of_the_input_fail_at_once() {
    let dir = scratch("copies");
    let text = random_file(4, 400, false);
    let cut = text[..text.len() / 3].rfind('\n').unwrap() + 1;
    for (process, copy) in [(0, &text[..]), (1, &text[..cut])] {
        std::fs::create_dir_all(dir.join(format!("p{process}"))).unwrap();
        std::fs::write(dir.join(format!("p{process}/events.csv")), copy).unwrap();
    }
    let (hosts, _) = hostfile(&dir);
    let spawn = |process: usize| {
        let here = dir.join(format!("p{process}"));
        let mut command = window(
            Path::new("events.csv"),
            &here,
            ("tumbling:20", "count", &["--read-block", "97"]),
            &two_processes(&hosts, process),
        );
        command.current_dir(&here).spawn().unwrap()
    };
    let (p1, p0) = (spawn(1), spawn(0));
    for (status, err) in [finish(p0), finish(p1)] {
        assert!(!status.success(), "{err}");
        assert!(
            err.contains("every process must read the same file"),
            "{err}"
        );
    }
    assert!(!dir.join("p0/out.csv").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A named pipe cannot be cut into blocks (it is read once, front to back): one process reads
/// it with the single reader, as it reads standard input, and gives what a file gives; a
/// cluster, whose processes must all read alike, refuses it with one line instead of failing
/// on the first seek.
#[cfg(unix)]
#[test]
fn a_pipe_is_read_by_one_reader() {
    let dir = scratch("pipe");
    let text = random_file(5, 300, false);
    let file = dir.join("events.csv");
    std::fs::write(&file, &text).unwrap();
    let args: Flags = ("sliding:40/10", "sum", &["--max-delay", "15"]);
    let want = outcome(
        &window(&file, &dir, args, &["--readers".into(), "one".into()])
            .output()
            .unwrap(),
        &dir,
    );
    let fifo = dir.join("events.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let writer = {
        let (fifo, text) = (fifo.clone(), text.clone());
        std::thread::spawn(move || std::fs::write(fifo, text).unwrap())
    };
    let extra = ["--workers", "2", "--read-block", "7"].map(String::from);
    let got = outcome(&window(&fifo, &dir, args, &extra).output().unwrap(), &dir);
    writer.join().unwrap();
    assert_eq!(got, want);
    // Two processes: both refuse before they connect (nothing is written to the pipe).
    let (hosts, _) = hostfile(&dir);
    for process in [0, 1] {
        let run = window(&fifo, &dir, args, &two_processes(&hosts, process))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{err}");
        assert!(
            err.contains("not a regular file") && err.contains("--readers one"),
            "{err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
