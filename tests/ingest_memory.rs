//! `tidemark window` on a file reads in bounded memory: the reader does not run ahead of the
//! workers without limit.
//!
//! Protects: peak memory (the child's maximum resident set, from `wait4`) on a file 10x larger
//! stays within a small factor of the smaller file's, with 1 and 4 workers. The windows are
//! small and the keys few, so window state is the same for both files; what could grow with the
//! file is only what the reader buffers ahead of the workers. A ratio of two runs, not a number
//! of bytes or seconds, so the test does not depend on the machine.

use std::io::{BufWriter, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A fresh scratch directory per test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tidemark-mem-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `ts,key,value` rows, event time rising 0-2 ms a row, 100 keys.
fn write_input(path: &Path, rows: u64) {
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, "ts,key,value").unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut ts = 0;
    for _ in 0..rows {
        // xorshift: deterministic, no dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ts += state % 3;
        writeln!(out, "{ts},k{},{}", (state >> 8) % 100, (state >> 20) % 1000).unwrap();
    }
}

/// Peak resident memory in KiB of `tidemark window` on `input` with `workers` workers.
fn peak_kib(input: &Path, output: &Path, workers: usize) -> i64 {
    let child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["window", "--input"])
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(["--window", "tumbling:10s", "--agg", "sum", "--workers"])
        .arg(workers.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary runs");
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills; the pid is our own unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    assert!(
        std::process::ExitStatus::from_raw(status).success(),
        "tidemark window failed on {}",
        input.display()
    );
    usage.ru_maxrss
}

#[test]
fn peak_memory_does_not_grow_with_the_file() {
    let dir = scratch("peak");
    let (small, large) = (dir.join("small.csv"), dir.join("large.csv"));
    write_input(&small, 40_000);
    write_input(&large, 400_000);
    for workers in [1, 4] {
        let small_peak = peak_kib(&small, &dir.join("out-small.csv"), workers);
        let large_peak = peak_kib(&large, &dir.join("out-large.csv"), workers);
        let ratio = large_peak as f64 / small_peak as f64;
        assert!(
            ratio < 1.5,
            "{workers} workers: peak {large_peak} KiB on 10x the rows, {small_peak} KiB on the \
             small file (ratio {ratio:.2})"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
