//! `tidemark window` on a file reads in bounded memory: the reader does not run ahead of the
//! workers without limit.
//!
//! Protects: peak memory (the child's peak resident set, VmHWM) on a file 10x larger stays
//! within a small factor of the smaller file's, with 1, 2 and 4 workers reading blocks of the
//! file (`--readers all`, the default: what each worker holds of the blocks' summaries, and how
//! far it reads ahead of the others), and with 2 workers fed by the single reader
//! (`--readers one`: how far it runs ahead of the exchange). The windows are short and the keys few, so window state and output are the
//! same for both files; what could grow with the file is what the reader buffers ahead of the
//! workers. Before the bound, 10x the rows took 3.2x (2 workers) and 2.2x (4 workers) the
//! memory; with it, 1.0x. With `--emit updates`, 4 workers are compared with 1 on the same file
//! instead (see that test). A ratio of two runs, not a number of bytes or seconds, so the tests
//! do not depend on the machine.

mod common;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Stdio;

use common::cli::scratch;

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

/// The peak resident set (VmHWM, KiB) of a running process, or `None` once it has exited.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident memory in KiB of `tidemark window --window tumbling:10s --agg sum` on `input`
/// with `workers` workers and the further arguments `args`.
///
/// Sampled from the running child's VmHWM: `wait4`'s maximum RSS would not do, as the kernel
/// keeps a spawned child's high-water mark across exec, so it reports at least the test's own.
fn peak_kib(input: &Path, output: &Path, workers: usize, args: &[&str]) -> u64 {
    let mut child = common::cli::window(input, output, "tumbling:10s", "sum")
        .args(["--workers", &workers.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary runs");
    let mut peak = 0;
    loop {
        peak = peak.max(vm_hwm_kib(child.id()).unwrap_or(0));
        if let Some(status) = child.try_wait().expect("wait for tidemark") {
            assert!(
                status.success(),
                "tidemark window failed on {}",
                input.display()
            );
            return peak;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn peak_memory_does_not_grow_with_the_file() {
    let dir = scratch("peak");
    let (small, large) = (dir.join("small.csv"), dir.join("large.csv"));
    write_input(&small, 100_000);
    write_input(&large, 1_000_000);
    for (workers, readers) in [(1, "all"), (2, "all"), (4, "all"), (2, "one")] {
        let args = ["--readers", readers];
        let small_peak = peak_kib(&small, &dir.join("out-small.csv"), workers, &args);
        let large_peak = peak_kib(&large, &dir.join("out-large.csv"), workers, &args);
        let ratio = large_peak as f64 / small_peak as f64;
        assert!(
            small_peak > 0 && ratio < 1.5,
            "{workers} workers, readers {readers}: peak {large_peak} KiB on 10x the rows, {small_peak} KiB on the \
             small file (ratio {ratio:.2})"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rows of the `--emit updates` test's file: past the rows that the readers may hold ahead of
/// the writer on 4 workers, so that the run reaches its steady state, and small enough for a
/// debug build.
const UPDATES_ROWS: u64 = 100_000;

/// `--emit updates` writes about two changelog rows per input row, all on worker 0: the rows
/// the other workers compute wait in the exchange to it, and the reader must not run ahead of
/// that writer either. Compared with one worker on the same file (the target: more
/// workers within a small factor of one), as the growth with the file showed only past 100 k
/// rows, too slow for a debug build. Before the bound, each row crossed to worker 0 in a
/// message, and an 8 KiB buffer, of its own, and a jump of the frontier released thousands at
/// once: in a debug build, 4 workers took 2.3x the memory of 1 on this file without the
/// gathering on worker 0 and the cap on releases (7x on 300 k rows on main, release build);
/// with them, 1.75x, and 1.59x once the capped releases hold one capability instead of one
/// per time (see experiments/ingest/memory-2026-11-30-ingest8.md and -ingest10.md).
#[test]
fn peak_memory_with_emit_updates_on_4_workers_stays_near_1_worker() {
    let dir = scratch("peak-updates");
    let input = dir.join("input.csv");
    write_input(&input, UPDATES_ROWS);
    let args = ["--emit", "updates"];
    let one = peak_kib(&input, &dir.join("out-1.csv"), 1, &args);
    let four = peak_kib(&input, &dir.join("out-4.csv"), 4, &args);
    let ratio = four as f64 / one as f64;
    assert!(
        one > 0 && ratio < 2.0,
        "--emit updates: peak {four} KiB on 4 workers, {one} KiB on 1 worker (ratio {ratio:.2})"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
