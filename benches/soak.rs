//! Soak: a long plain open-loop run (YSB, 1 M events/s, one worker, no `--hlog`) through the
//! library's [`run`], with the process's resident memory sampled every second. A harness that
//! keeps something per second of run time (as it once kept one latency histogram per second,
//! about 0.27 MB/s) shows as a steady climb; a sound one is flat after the warm-up.
//!
//! Not a test and not timed: run it by hand, `cargo bench --bench soak` (60 s), or
//! `TIDEMARK_SOAK_SECONDS=3600 cargo bench --bench soak` for an hour. It prints the resident
//! memory over time and the growth between the first and last third of the measured part, and
//! exits 1 if memory grew by more than 16 MB over the run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidemark::cluster::Cluster;
use tidemark::harness::driver::RunConfig;
use tidemark::harness::run::{run, Engine, Settings};
use tidemark::workloads::ysb::Ysb;

/// Resident memory of this process in bytes (Linux), or 0 where `/proc` is missing.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn main() {
    let seconds: u64 = std::env::var("TIDEMARK_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
        .max(10);
    let warmup_s = 5;
    let settings = Settings {
        engine: Engine::Timely,
        config: RunConfig::open_loop(1_000_000, seconds * 1_000_000_000, warmup_s * 1_000_000_000),
        workers: 1,
        processes: 1,
    };
    let cluster = Cluster::new(1, 1, 0, None).expect("one local worker");
    let samples = Arc::new(Mutex::new(Vec::new()));
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (samples, running) = (Arc::clone(&samples), Arc::clone(&running));
        std::thread::spawn(move || {
            let start = Instant::now();
            while running.load(Ordering::SeqCst) {
                let t = start.elapsed().as_secs_f64();
                samples
                    .lock()
                    .expect("no panic")
                    .push((t, resident_bytes()));
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    eprintln!("soak: YSB at 1 M/s for {seconds} s, resident memory every second");
    let (report, _) = run(&Ysb::default(), &settings, &cluster)
        .expect("the run starts")
        .expect("one process has the report");
    running.store(false, Ordering::SeqCst);
    sampler.join().expect("sampler ends");
    let samples = samples.lock().expect("no panic").clone();
    for (t, bytes) in samples.iter().step_by((seconds as usize / 20).max(1)) {
        println!("{t:>8.1} s  {:>8.1} MB", *bytes as f64 / 1e6);
    }
    // Compare the first and last thirds after the warm-up (and the pool's generation).
    let measured: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t > (warmup_s + 2) as f64)
        .map(|&(_, b)| b)
        .collect();
    let third = (measured.len() / 3).max(1);
    let mean = |s: &[u64]| s.iter().sum::<u64>() as f64 / s.len().max(1) as f64;
    let growth = mean(&measured[measured.len().saturating_sub(third)..]) - mean(&measured[..third]);
    println!(
        "achieved {:.0} events/s, p99 {:?} ns; resident memory grew {:.2} MB ({:.3} MB per minute)",
        report.achieved_rate,
        report.latency_ns.p99,
        growth / 1e6,
        growth / 1e6 / ((seconds - warmup_s) as f64 * 2.0 / 3.0) * 60.0
    );
    if growth > 16e6 {
        eprintln!("soak: memory is not flat");
        std::process::exit(1);
    }
}
