//! Running one point of a sweep: `tidemark bench` in fresh processes (one per `--processes`),
//! bounded in time, tied to the sweep's life, its report read back as a typed [`Report`].
//!
//! A run must not outlive its sweep: each process asks the kernel for SIGTERM when the sweep
//! dies (`PR_SET_PDEATHSIG`, whatever killed it, SIGKILL included), and inherits the results
//! directory's lock, so that a resumed sweep cannot start beside a run still ending.

use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::results::ResultsDir;
use super::spec::Run;
use crate::harness::report::Report;

/// The `tidemark bench` flags the sweep sets on every run itself; a spec may not set them.
pub const SET_BY_SWEEP: [&str; 4] = ["json", "hlog", "process", "hostfile"];

/// One run, checked and ready to start.
#[derive(Clone, Debug)]
pub struct Job<'a> {
    /// The `tidemark` executable.
    pub exe: &'a Path,
    /// The run.
    pub run: &'a Run,
    /// How many processes it takes (its `--processes`).
    pub processes: usize,
    /// The longest it may take; then it is killed and fails.
    pub limit: Duration,
}

/// A hostfile of free local ports for a run of `processes` processes.
fn hostfile(path: &Path, processes: usize) -> Result<(), String> {
    let listeners: Vec<TcpListener> = (0..processes)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot find free ports: {e}"))?;
    let mut text = String::new();
    for l in &listeners {
        let port = l.local_addr().map_err(|e| e.to_string())?.port();
        text.push_str(&format!("127.0.0.1:{port}\n"));
    }
    drop(listeners);
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The last lines of a child's log.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Ties a child to the sweep: it inherits the results lock (`lock_fd`) and gets SIGTERM when
/// the sweep dies.
fn tie_to_sweep(command: &mut Command, lock_fd: i32) {
    let sweep = std::process::id() as i32;
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (fcntl, prctl, getppid, _exit), touching no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(lock_fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The sweep died before the request took effect: nothing will signal us.
            if libc::getppid() != sweep {
                libc::_exit(143);
            }
            Ok(())
        });
    }
}

/// Runs a job in `dir`; its report, with the interval log moved to `hlog/NAME`.
///
/// Errors (one line): a process could not start, exited non-zero (with the last lines of its
/// output), the job ran past its limit, or the report is missing or not a report.
pub fn execute(job: &Job, dir: &ResultsDir) -> Result<Report, String> {
    let (run, root) = (job.run, dir.path());
    let id = std::process::id();
    let json = root.join(format!(".run-{id}.json"));
    let hlog = root.join("hlog").join(run.hlog_name());
    let hlog_tmp = root.join("hlog").join(format!(".{}.tmp", run.hlog_name()));
    let processes = job.processes.max(1);
    let hosts = root.join(format!(".hosts-{id}.txt"));
    if processes > 1 {
        hostfile(&hosts, processes)?;
    }
    let logs: Vec<PathBuf> = (0..processes)
        .map(|p| root.join(format!(".run-{id}-{p}.log")))
        .collect();
    let mut children: Vec<Child> = Vec::new();
    let mut failure = None;
    for (p, log) in logs.iter().enumerate() {
        let mut command = Command::new(job.exe);
        command.args(&run.args);
        if p == 0 {
            command
                .arg("--json")
                .arg(&json)
                .arg("--hlog")
                .arg(&hlog_tmp);
        }
        if processes > 1 {
            command
                .arg("--process")
                .arg(p.to_string())
                .arg("--hostfile")
                .arg(&hosts);
        }
        tie_to_sweep(&mut command, dir.lock_fd());
        let spawned = File::create(log)
            .and_then(|out| Ok((out.try_clone()?, out)))
            .and_then(|(out, err)| command.stdin(Stdio::null()).stdout(out).stderr(err).spawn());
        match spawned {
            Ok(child) => children.push(child),
            Err(e) => {
                failure = Some(format!("cannot start {}: {e}", job.exe.display()));
                break;
            }
        }
    }
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    if let Err(e) = dir.note_runs(&pids) {
        failure.get_or_insert(e.to_string());
    }
    let started = Instant::now();
    let mut statuses = vec![None; children.len()];
    while failure.is_none() && statuses.iter().any(Option::is_none) {
        for (p, child) in children.iter_mut().enumerate() {
            if statuses[p].is_none() {
                match child.try_wait() {
                    Ok(Some(status)) => statuses[p] = Some(status),
                    Ok(None) => {}
                    Err(e) => failure = Some(format!("cannot wait for the run: {e}")),
                }
            }
        }
        if let Some((p, status)) = statuses
            .iter()
            .enumerate()
            .find_map(|(p, s)| s.filter(|s| !s.success()).map(|s| (p, s)))
        {
            failure = Some(format!(
                "process {p} exited with {status}: {}",
                tail(&logs[p])
            ));
        } else if started.elapsed() > job.limit {
            failure = Some(format!("timed out after {:.0} s", job.limit.as_secs_f64()));
        }
        if failure.is_none() && statuses.iter().any(Option::is_none) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for child in &mut children {
        if failure.is_some() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
    let _ = dir.note_runs(&[]);
    let result = match failure {
        Some(e) => Err(e),
        None => fs::read_to_string(&json)
            .map_err(|e| format!("no report: {e}"))
            .and_then(|text| {
                serde_json::from_str::<Report>(&text).map_err(|e| format!("unreadable report: {e}"))
            })
            .and_then(|report| {
                fs::rename(&hlog_tmp, &hlog)
                    .map_err(|e| format!("cannot move the interval log: {e}"))?;
                Ok(report)
            }),
    };
    for path in logs.iter().chain([&json, &hosts, &hlog_tmp]) {
        let _ = fs::remove_file(path);
    }
    result
}
