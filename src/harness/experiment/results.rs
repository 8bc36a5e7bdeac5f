//! The results directory of a sweep: which runs it holds, how a run is recorded, and the lock
//! that keeps two sweeps (or a sweep and the orphaned run of an earlier one) from measuring in
//! it at once.
//!
//! The lock is an advisory `flock` on `DIR/.sweep.lock`, which holds the pids of the sweep and
//! of its current run. The runs inherit the locked descriptor, so the lock is held until the
//! sweep *and* every process it started are gone: a run left behind by a killed sweep keeps
//! the directory locked until it ends, and a resumed sweep never measures beside it. The file
//! is removed when the sweep ends normally (a sweep that was killed leaves it, unlocked).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::machine::Machine;
use super::spec::{run_key, Run};
use crate::harness::report::Report;

/// Why a results directory cannot be read or used; the message names the path.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ResultsError {
    /// The file or directory (with `:LINE` where a line is known).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn error(path: &Path, message: impl Into<String>) -> ResultsError {
    ResultsError {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// One line of `runs.jsonl`: the run's report and where it belongs in the sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The bench report, its fields at the top level of the line.
    #[serde(flatten)]
    pub report: Report,
    /// The spec's name.
    pub spec: String,
    /// The run's arguments, argument name to value as in the spec.
    pub point: serde_json::Map<String, serde_json::Value>,
    /// Which repetition, from 0.
    pub repetition: u64,
    /// The interval log, relative to the results directory (`hlog/NAME.hlog`).
    pub hlog: String,
}

impl Record {
    /// The record of `run` of spec `spec`, whose interval log is `hlog`.
    pub fn new(report: Report, spec: &str, run: &Run, hlog: &str) -> Record {
        Record {
            report,
            spec: spec.to_string(),
            point: run
                .point
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
            repetition: run.repetition,
            hlog: hlog.to_string(),
        }
    }
}

/// The part of a `runs.jsonl` line that says which run it is; every other field is ignored,
/// so rows of any report version resume alike.
#[derive(Deserialize)]
struct RecordKey {
    point: serde_json::Map<String, serde_json::Value>,
    repetition: u64,
}

/// The resume keys ([`Run::key`]) of the runs recorded in a `runs.jsonl` (none if the file
/// does not exist); a line that is not a record is an error naming its line.
pub fn completed(path: &Path) -> Result<BTreeSet<String>, ResultsError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(error(path, format!("cannot read: {e}"))),
    };
    let mut done = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let key: RecordKey = serde_json::from_str(line).map_err(|e| ResultsError {
            path: format!("{}:{}", path.display(), i + 1),
            message: format!("not a run record (\"point\" object, \"repetition\" number): {e}"),
        })?;
        done.insert(run_key(
            &serde_json::Value::Object(key.point),
            key.repetition,
        ));
    }
    Ok(done)
}

/// A results directory in use by this sweep, locked for as long as the value lives (see the
/// module documentation).
#[derive(Debug)]
pub struct ResultsDir {
    path: PathBuf,
    lock: File,
}

/// The lock file's name in the results directory.
pub const LOCK_FILE: &str = ".sweep.lock";

/// How long a sweep waits for an earlier holder of the lock to go away: a run orphaned by a
/// killed sweep is sent SIGTERM by the kernel and usually ends within this.
const LOCK_WAIT: Duration = Duration::from_secs(5);

impl ResultsDir {
    /// Creates (if needed) and locks the results directory `path` with its `hlog/`, removes
    /// what an interrupted sweep left behind (temporary reports, hostfiles, logs and
    /// unfinished interval logs: all dot files but the lock) and writes `machine.json`.
    ///
    /// Errors: the directory cannot be created or written, or another sweep or one of its runs
    /// still holds the lock after a few seconds (the message gives their pids).
    pub fn open(path: &Path) -> Result<ResultsDir, ResultsError> {
        let hlog = path.join("hlog");
        fs::create_dir_all(&hlog).map_err(|e| error(&hlog, format!("cannot create: {e}")))?;
        let lock = lock(&path.join(LOCK_FILE))?;
        let dir = ResultsDir {
            path: path.to_path_buf(),
            lock,
        };
        dir.note_runs(&[])?;
        dir.remove_stale();
        let machine = path.join("machine.json");
        let text = serde_json::to_string_pretty(&Machine::detect())
            .map_err(|e| error(&machine, e.to_string()))?;
        fs::write(&machine, text + "\n")
            .map_err(|e| error(&machine, format!("cannot write: {e}")))?;
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `runs.jsonl`.
    pub fn runs(&self) -> PathBuf {
        self.path.join("runs.jsonl")
    }

    /// The locked descriptor, for the runs to inherit (so that they hold the lock too).
    pub fn lock_fd(&self) -> RawFd {
        self.lock.as_raw_fd()
    }

    /// Writes the sweep's pid and those of its current run (`pids`) into the lock file, so
    /// that a sweep that finds the directory locked can say who holds it.
    pub fn note_runs(&self, pids: &[u32]) -> Result<(), ResultsError> {
        let path = self.path.join(LOCK_FILE);
        let mut text = format!("sweep {}\n", std::process::id());
        if !pids.is_empty() {
            let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
            text.push_str(&format!("run {}\n", pids.join(" ")));
        }
        // At offset 0: the descriptor's own offset moves on with every write.
        self.lock
            .set_len(0)
            .and_then(|()| self.lock.write_all_at(text.as_bytes(), 0))
            .map_err(|e| error(&path, format!("cannot write: {e}")))
    }

    /// Appends one record to `runs.jsonl`, in one write.
    pub fn append(&self, record: &Record) -> Result<(), ResultsError> {
        let path = self.runs();
        let line = serde_json::to_string(record).map_err(|e| error(&path, e.to_string()))?;
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()))
            .map_err(|e| error(&path, format!("cannot write: {e}")))
    }

    fn remove_stale(&self) {
        for (folder, prefixes) in [
            (self.path.clone(), &[".run-", ".hosts-"][..]),
            (self.path.join("hlog"), &["."][..]),
        ] {
            let Ok(entries) = fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if prefixes.iter().any(|p| name.starts_with(p)) && entry.path().is_file() {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
}

impl Drop for ResultsDir {
    fn drop(&mut self) {
        // Remove the file only while it is still the one we locked; the lock itself goes
        // with the descriptor.
        let path = self.path.join(LOCK_FILE);
        if same_file(&self.lock, &path) {
            let _ = fs::remove_file(path);
        }
    }
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Takes the exclusive lock on `path`, creating the file; waits up to [`LOCK_WAIT`] for a
/// holder to go away.
fn lock(path: &Path) -> Result<File, ResultsError> {
    let started = Instant::now();
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| error(path, format!("cannot open the lock file: {e}")))?;
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if locked {
            // An ending sweep removes the file after we opened it: lock the new one instead.
            if same_file(&file, path) {
                return Ok(file);
            }
            continue;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::WouldBlock {
            return Err(error(path, format!("cannot lock: {e}")));
        }
        if started.elapsed() > LOCK_WAIT {
            return Err(error(path.parent().unwrap_or(path), holders(path)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Who holds the lock, from the pids in the lock file.
fn holders(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let alive = |pid: &str| {
        pid.parse::<i32>()
            // SAFETY: signal 0 only asks whether the process exists.
            .is_ok_and(|pid| pid > 0 && unsafe { libc::kill(pid, 0) } == 0)
    };
    let mut sweep = None;
    let mut runs = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("sweep") => sweep = words.next().filter(|p| alive(p)).map(str::to_string),
            Some("run") => runs.extend(words.filter(|p| alive(p)).map(str::to_string)),
            _ => {}
        }
    }
    let runs = if runs.is_empty() {
        String::new()
    } else {
        format!(" (run: pid {})", runs.join(", "))
    };
    match sweep {
        Some(pid) => format!(
            "in use by another sweep, pid {pid}{runs}: wait for it, or stop it (kill {pid})"
        ),
        None if !runs.is_empty() => {
            format!("a run of an earlier sweep is still running{runs}: wait for it, or stop it")
        }
        None => "in use by another sweep or one of its runs".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::experiment::spec::{Param, Point};

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tidemark-results-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// A report as the bench writes it (built from JSON, so that fields the report gains
    /// with serde defaults need no change here).
    fn report() -> Report {
        serde_json::from_value(serde_json::json!({
            "workload": "ysb", "query": "ysb", "parameters": "p", "engine": "timely",
            "workers": 1, "processes": 1, "offered_rate": 1, "achieved_rate": 1.0, "events": 1,
            "duration_s": 1.0, "warmup_s": 1.0, "epoch_ns": 1,
            "latency_ns": {"p50": 1, "p90": 1, "p99": 1, "p999": 1, "max": 1},
            "samples": 1, "generator_rate": 1.0, "seed": 1, "git_rev": "x",
            "config_hash": "y", "host": "z"
        }))
        .unwrap()
    }

    #[test]
    fn records_resume_and_bad_lines_name_their_line() {
        let dir = scratch("records");
        let results = ResultsDir::open(&dir).unwrap();
        let path = results.runs();
        assert!(completed(&path).unwrap().is_empty());
        let mut point = Point::new();
        point.insert("workload".into(), Param::Text("ysb".into()));
        point.insert("rate".into(), Param::Int(2_000_000));
        let flags = crate::harness::experiment::spec::BenchFlags {
            positionals: vec!["workload".into()],
            ..Default::default()
        };
        let run = Run::new(point.clone(), 1, &flags);
        let other = Run::new(point, 0, &flags);
        results
            .append(&Record::new(report(), "demo", &run, "hlog/x.hlog"))
            .unwrap();
        let line = fs::read_to_string(&path).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(parsed["spec"], "demo");
        assert_eq!(parsed["point"]["rate"], 2_000_000);
        assert_eq!(parsed["repetition"], 1);
        assert_eq!(parsed["hlog"], "hlog/x.hlog");
        assert_eq!(parsed["achieved_rate"], 1.0);
        let done = completed(&path).unwrap();
        assert!(done.contains(&run.key()));
        assert!(!done.contains(&other.key()));
        // Rows of other report versions resume alike: only point and repetition matter.
        fs::write(
            &path,
            format!(
                "{line}{{\"point\": {{\"workload\": \"ysb\"}}, \"repetition\": 0, \"new\": 1}}\n"
            ),
        )
        .unwrap();
        assert_eq!(completed(&path).unwrap().len(), 2);
        fs::write(&path, format!("{line}{{\"point\": 3}}\n")).unwrap();
        let m = completed(&path).unwrap_err().to_string();
        assert!(m.contains("runs.jsonl:2"), "{m}");
        drop(results);
        assert!(
            !dir.join(LOCK_FILE).exists(),
            "the lock file goes with the sweep"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_locked_directory_is_refused_naming_the_holder() {
        let dir = scratch("lock");
        let first = ResultsDir::open(&dir).unwrap();
        first.note_runs(&[std::process::id()]).unwrap();
        let m = ResultsDir::open(&dir).unwrap_err().to_string();
        assert!(m.contains("in use by another sweep"), "{m}");
        assert!(m.contains(&format!("pid {}", std::process::id())), "{m}");
        drop(first);
        let again = ResultsDir::open(&dir).unwrap();
        drop(again);
        let _ = fs::remove_dir_all(&dir);
    }
}
