//! Checkpoints of `tidemark window`: exactly-once output that survives `kill -9`.
//!
//! This module owns the checkpoint directory: its layout, the file format ([`mod@file`]), the
//! commit protocol, recovery, and the crash points that tests inject. It does not touch the
//! dataflow; the committing sink ([`crate::sink::commit`]) decides *when* a cut is taken and
//! calls [`CheckpointDir::commit`].
//!
//! # The cut, and why it is exact
//!
//! Checkpoint times are `c = k * interval` in timely time (event-time milliseconds: the
//! watermark, see [`crate::source`]). The committing sink receives every changelog and late row
//! at the timely time the engine gives it (a window's close at `end - 1`, a correction or a
//! late record at the watermark it was judged against). Once the sink's input frontier has
//! passed `c`, no row at a time `<= c` can still arrive, so the rows at times `<= c` are a
//! *complete* set. Which rows those are depends only on the input, never on the worker count,
//! partitioner, batch sizes or timing: that is the engine's determinism contract (README, first
//! paragraph: results do not depend on the number of workers, processes, the partitioner or
//! batching), which the property tests check, and it holds per time
//! because every output time is itself a function of the input (window bounds, watermarks
//! computed in file order). The sink writes those rows, ordered by (time, row bytes) so that
//! the bytes do not depend on arrival order either, fsyncs the output (and late output), and
//! commits the checkpoint: the committed byte lengths at `c`.
//!
//! # What a snapshot holds, and why it is the state at exactly the cut
//!
//! With `--emit final`, every worker's snapshot also holds its operators' state values at `c`
//! ([`Snapshot::operators`]): the source's [`crate::source::SourceState`] (the position of its
//! next record: block, byte, line; its watermark; the largest event time of each block it
//! parsed) and the window operator's state (open windows, windows within the allowed
//! lateness, pending closes). They are exact by two rules:
//!
//! * The source sends a record at the watermark before its batch, so "the frontier passed
//!   `c`" alone would not say which records the operators applied. While a cut `c` is pending
//!   the source ends each batch before the first record whose watermark before it is above `c`
//!   ([`crate::source::Feed::poll_bounded`]), and hands over its state there: the records it
//!   sent at times `<= c` are exactly those before its position, and every later one travels
//!   at a time `> c` (the watermark never decreases).
//! * Each stateful operator stashes the records beyond a pending cut and hands over its state
//!   once its input frontier has passed `c` and everything at times `<= c` is applied
//!   ([`crate::stash`]). So its state reflects exactly the records before the sources'
//!   positions.
//!
//! The states travel through the dataflow ([`crate::sink::commit::snapshot_stream`]): a
//! worker sends its states at `c` once all of its operators handed them over, and the
//! committing sink commits `c` only once that stream's frontier has passed `c` too, so every
//! worker's states at `c` are in the commit.
//!
//! An operator hands over one state for a whole range of cuts when its frontier passes them
//! with no record between them ([`crate::stash::Cut::take_passed`] says why that state is the
//! state at each of them), and a worker sends one snapshot per range. So a gap of a month in the
//! event times, or epoch-millisecond times after a stray early row, costs one snapshot rather
//! than one per interval (review, 2026-11-30: a day's gap at `1s` took seconds, the stray row
//! never finished). The run's first cut is the last one below its input's first event time.
//!
//! # Recovery
//!
//! With operator states, every operator is built from its state
//! ([`crate::stash::Checkpoints::restoring`]; the window operator re-creates the capabilities
//! of its pending closes from its initial capability) and every reader seeks to its position
//! (the single reader seeks the file; a parallel reader parses again the block its position is
//! in and sends from the position on; the maxima of the blocks no reader reads again come from
//! the states). Those operators emit nothing at a time `<= c` again: window closes, corrections
//! and late records of the records after the position all travel at times `> c`. The state is
//! partitioned by worker and key, so a restore needs the checkpoint's worker count (another is
//! refused, naming it) and partitioner (part of the job's hash).
//!
//! A restored source starts with its capability at time 0 and its watermark at the
//! checkpoint's, and may take its next cut before it sends anything (a parallel reader waiting
//! for an earlier block's maximum): it downgrades its capability to the watermark before every
//! batch, so that no record goes at a time up to a cut it has already taken (a fault found in
//! review, 2026-11-30: a run restored from a checkpoint that a restored run had written sent
//! some rows twice; `tests/checkpoint_cli.rs` and `tests/checkpoint_cut.rs` keep it).
//!
//! Without operator states (`--emit updates`: differential's arrangements are not
//! snapshotted) recovery replays the input from its first line (the input must be a regular
//! file, which never idles, so the replay sees the same watermarks and no idle advances:
//! standard input, a FIFO or a device is refused) and drops every row at a time `<= c`, which
//! the committed prefix already holds.
//!
//! Either way each output's temporary file is first truncated to its committed length, and
//! rows at times `> c` are written as in the first run. So after any number of crashes and
//! restarts the output holds exactly the rows of an uninterrupted run, and because the order
//! within each checkpoint interval is canonical, the same bytes, with any worker count.
//!
//! # The directory
//!
//! ```text
//! DIR/LOCK                   flock(2)ed by the run using DIR (a second run is refused)
//! DIR/MANIFEST               the commit point: time, snapshot files and their checksums
//! DIR/ckpt-<time>-worker-<i> the snapshot of worker i (one per worker with operator states;
//!                            worker 0's alone, with the outputs' lengths, without)
//! ```
//!
//! A checkpoint commits in this order: each snapshot file is written atomically (temporary
//! file, fsync, rename, see [`file::write_replace`]); one fsync of the directory makes those
//! entries durable (and the previous manifest's rename); checkpoints older than the previous
//! one are removed; then the manifest naming the new snapshots is written the same way. A
//! crash before the manifest's rename leaves the previous manifest in force; one after it
//! leaves the new one, whose files are all durable. An ordinary commit does not fsync the
//! directory after its manifest's rename: if power fails before the next commit does, the
//! previous manifest, whose files are still there, is in force, and recovery truncates the
//! outputs to its lengths. So a commit costs one fsync per output, one per snapshot, one of the
//! manifest and one of the directory (4 for a changelog without late output). When the run
//! ends, the sink writes a final manifest marked complete, and fsyncs the directory, before the
//! outputs are renamed into place, so running the same command again finishes an interrupted
//! rename and then reports that the result is complete.
//!
//! How often a commit happens is the sink's choice: at most once per `--checkpoint-min-pause`
//! of wall-clock time, covering every cut passed meanwhile ([`crate::sink::commit`]).

pub mod file;

use std::fs::{File, OpenOptions};
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

pub use file::Header;

/// What went wrong with a checkpoint directory or file; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading, writing or locking failed.
    #[error("checkpoint {path}: {message}")]
    Io {
        /// The file or directory.
        path: String,
        /// The system's message.
        message: String,
    },
    /// The file is not a tidemark checkpoint, or belongs to another job.
    #[error("checkpoint {path} is foreign: {why}")]
    Foreign {
        /// The file.
        path: String,
        /// What differs.
        why: String,
    },
    /// The file ends before its stated length.
    #[error("checkpoint {path} is truncated: {have} bytes, its header needs {need}")]
    Truncated {
        /// The file.
        path: String,
        /// Its length.
        have: u64,
        /// The length its prefix announces.
        need: u64,
    },
    /// The checksum does not match, or bytes follow the body.
    #[error("checkpoint {path} is corrupt: {why}")]
    Corrupt {
        /// The file.
        path: String,
        /// What does not match.
        why: String,
    },
    /// Written by a build with another format.
    #[error("checkpoint {path} is incompatible: {why}")]
    Incompatible {
        /// The file.
        path: String,
        /// Which format or layout.
        why: String,
    },
    /// The files the checkpoint describes do not agree with it (an output shorter than its
    /// committed length, a snapshot the manifest does not list).
    #[error("checkpoint {path} does not match the files it committed: {why}")]
    Mismatch {
        /// The manifest.
        path: String,
        /// What differs.
        why: String,
    },
}

impl CheckpointError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, e: std::io::Error) -> Self {
        CheckpointError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

/// A hash of a job's configuration: FNV-1a (64 bit) over `text`, the canonical description of
/// everything that decides the output (the CLI builds it: options, input identity).
pub fn config_hash(text: &str) -> u64 {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(text.as_bytes());
    hasher.finish()
}

/// Encoded operator states by operator id, in id order (see [`Snapshot::operators`]).
pub type States = Vec<(String, Vec<u8>)>;

/// What one worker's snapshot holds: the committed length of each sink it writes, and the
/// state of each of its operators at the cut.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The worker's global index.
    pub worker: u32,
    /// Per file sink, in the order the sink lists them (changelog, then late output): the
    /// name as given and the byte length of the committed prefix (header included).
    pub sinks: Vec<(String, u64)>,
    /// Per operator of the worker that takes checkpoint cuts (the source, the window
    /// operator), by id `N:name` ([`crate::stash::Checkpoints::cut`]): its state value at the
    /// cut, encoded by [`crate::stash::encode`]. Empty where the run replays instead (the
    /// differential path, `--emit updates`, and the final commit).
    pub operators: States,
}

/// The commit point: which checkpoint is in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The snapshot files (relative to the directory) and the CRC-32 of each file's bytes.
    pub snapshots: Vec<(String, u32)>,
    /// Whether the run finished: every row is committed and the outputs may be renamed.
    pub complete: bool,
}

/// The checkpoint in force when a run starts.
#[derive(Debug)]
pub enum Resume {
    /// No checkpoint: start from the beginning.
    Fresh,
    /// Resume after the cut at `time`: each snapshot's sinks hold everything up to it.
    From {
        /// The cut.
        time: u64,
        /// Workers of the run that wrote it (all processes together).
        workers: u32,
        /// The snapshots, by worker, each with the file it was read from (for messages).
        snapshots: Vec<(PathBuf, Snapshot)>,
    },
    /// The run finished; `snapshots` give the final lengths.
    Complete {
        /// The snapshots of the final commit.
        snapshots: Vec<Snapshot>,
    },
}

/// A checkpoint directory opened (and locked) by one run.
#[derive(Debug)]
pub struct CheckpointDir {
    path: PathBuf,
    config_hash: u64,
    workers: u32,
    revision: String,
    /// The time of the checkpoint in force (its manifest renamed into place), if any.
    in_force: Mutex<Option<u64>>,
    /// Holds the flock for the run's lifetime.
    _lock: File,
}

/// The commit point's file name in a checkpoint directory.
pub const MANIFEST: &str = "MANIFEST";

impl CheckpointDir {
    /// Opens (creating it if needed) and locks `path` for a job whose configuration hashes to
    /// `config_hash`, run by `workers` workers; reads the checkpoint in force.
    ///
    /// Errors: [`CheckpointError::Io`] (cannot create or lock: another run uses it), and every
    /// error of reading a damaged, foreign or incompatible manifest or snapshot.
    pub fn open(
        path: &Path,
        config_hash: u64,
        workers: u32,
    ) -> Result<(CheckpointDir, Resume), CheckpointError> {
        if let Some(message) = broken_link(path) {
            // `create_dir_all` would say only "File exists".
            return Err(CheckpointError::Io {
                path: path.display().to_string(),
                message,
            });
        }
        if path.exists() && !path.is_dir() {
            return Err(CheckpointError::Io {
                path: path.display().to_string(),
                message: "not a directory".into(),
            });
        }
        std::fs::create_dir_all(path).map_err(|e| CheckpointError::io(path, e))?;
        if !path.join(MANIFEST).exists() {
            // No checkpoint yet: the directory must be new, empty, or hold only what a run
            // killed before its first commit left (with its partial outputs, when an output
            // is placed in the directory: review, 2026-11-30, such a run could not resume).
            // Another directory (a typo naming a source tree, or a bench's checkpoints) is not
            // taken over.
            let entries = std::fs::read_dir(path).map_err(|e| CheckpointError::io(path, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| CheckpointError::io(path, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let partial =
                    name.starts_with('.') && name.ends_with(crate::output::PARTIAL_SUFFIX);
                if name != "LOCK" && !is_checkpoint_file(&name) && !partial {
                    return Err(CheckpointError::Foreign {
                        path: path.display().to_string(),
                        why: format!(
                            "it holds {name}, which no checkpoint writes, and no {MANIFEST}; \
                             give a new or empty directory"
                        ),
                    });
                }
            }
        }
        let lock_path = path.join("LOCK");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| CheckpointError::io(&lock_path, e))?;
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; no memory is shared.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(CheckpointError::Io {
                path: path.display().to_string(),
                message: "in use by another tidemark run".into(),
            });
        }
        let dir = CheckpointDir {
            path: path.to_path_buf(),
            config_hash,
            workers,
            revision: crate::harness::report::git_rev(),
            in_force: Mutex::new(None),
            _lock: lock,
        };
        let resume = dir.read()?;
        Ok((dir, resume))
    }

    /// The checkpoint in force in `path`, read without locking it or checking the job: for
    /// processes other than 0, which restore their workers' states from the snapshots while
    /// process 0, which holds the lock, checks the job.
    ///
    /// Errors: every error of reading a damaged, foreign or incompatible manifest or snapshot.
    pub fn peek(path: &Path) -> Result<Resume, CheckpointError> {
        if !path.join(MANIFEST).exists() {
            return Ok(Resume::Fresh);
        }
        read_resume(path, None).map(|(resume, _)| resume)
    }

    /// Whether `path` holds a manifest marked complete, read without locking or checking the
    /// job (for processes other than 0, which do not open the input); any error reads as no.
    pub fn is_complete(path: &Path) -> bool {
        let manifest = path.join(MANIFEST);
        matches!(file::read::<Manifest>(&manifest), Ok((_, m)) if m.complete)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check(&self, path: &Path, header: &Header) -> Result<(), CheckpointError> {
        if header.config_hash != self.config_hash {
            return Err(CheckpointError::Foreign {
                path: path.display().to_string(),
                why: format!(
                    "written for another job or input (configuration hash {:016x}, this run's is {:016x}, revision {}); \
                     remove the directory to start over",
                    header.config_hash, self.config_hash, header.revision
                ),
            });
        }
        Ok(())
    }

    fn read(&self) -> Result<Resume, CheckpointError> {
        let manifest_path = self.path.join(MANIFEST);
        if !manifest_path.exists() {
            return Ok(Resume::Fresh);
        }
        let (resume, time) = read_resume(&self.path, Some(self))?;
        *self.in_force.lock().unwrap_or_else(|p| p.into_inner()) = Some(time);
        Ok(resume)
    }

    fn header(&self, time: u64) -> Header {
        Header {
            revision: self.revision.clone(),
            config_hash: self.config_hash,
            workers: self.workers,
            time,
        }
    }

    /// Commits the checkpoint at `time` holding `snapshots` (each worker's, all durable when
    /// this returns), marked `complete` at the end of the run; see the module docs for the
    /// order of writes. Crash points [`CrashPoint::Snapshot`] and [`CrashPoint::Manifest`] are
    /// inside.
    ///
    /// Errors: [`CheckpointError::Io`] naming the file that could not be written.
    pub fn commit(
        &self,
        time: u64,
        snapshots: &[Snapshot],
        complete: bool,
    ) -> Result<(), CheckpointError> {
        let mut listed = Vec::new();
        for snapshot in snapshots {
            let name = format!("ckpt-{time:020}-worker-{}", snapshot.worker);
            let bytes = file::encode(&self.header(time), snapshot);
            file::write_replace(&self.path.join(&name), &bytes, CrashPoint::Snapshot)?;
            listed.push((name, crc32fast::hash(&bytes)));
        }
        // The one directory fsync of an ordinary commit: it makes the snapshots' entries
        // durable before the manifest that names them can be, and with them the previous
        // manifest's rename, which nothing has fsynced yet.
        file::sync_dir(&self.path).map_err(|e| CheckpointError::io(&self.path, e))?;
        let previous = *self.in_force.lock().unwrap_or_else(|p| p.into_inner());
        // Everything older than the previous checkpoint is garbage now that the previous
        // manifest is durable (the previous checkpoint's own files stay until the next
        // commit, for a power loss before this manifest's rename is durable). Failing to
        // remove one costs disk space, not correctness.
        let keep_from = previous.unwrap_or(time).min(time);
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                let entry_name = entry.file_name().to_string_lossy().into_owned();
                let stale = entry_name
                    .strip_prefix("ckpt-")
                    .and_then(|rest| rest.get(..20))
                    .and_then(|digits| digits.parse::<u64>().ok())
                    .is_some_and(|t| t < keep_from);
                if stale {
                    let path = entry.path();
                    let _ = if path.is_dir() {
                        std::fs::remove_dir_all(path)
                    } else {
                        std::fs::remove_file(path)
                    };
                }
            }
        }
        let manifest = Manifest {
            snapshots: listed,
            complete,
        };
        let bytes = file::encode(&self.header(time), &manifest);
        let manifest_path = self.path.join(MANIFEST);
        file::write_replace(&manifest_path, &bytes, CrashPoint::Manifest)?;
        if complete {
            // The outputs are renamed into place next: the manifest that allows it must be
            // durable first. An ordinary commit leaves this fsync to the next one.
            file::sync_dir(&self.path).map_err(|e| CheckpointError::io(&self.path, e))?;
        }
        *self.in_force.lock().unwrap_or_else(|p| p.into_inner()) = Some(time);
        Ok(())
    }
}

/// Reads the checkpoint in force in `dir` (its manifest exists), checking every file's job
/// against `dir_of` when given; returns it with its time.
fn read_resume(
    dir: &Path,
    checker: Option<&CheckpointDir>,
) -> Result<(Resume, u64), CheckpointError> {
    let manifest_path = dir.join(MANIFEST);
    let check = |path: &Path, header: &Header| match checker {
        Some(checker) => checker.check(path, header),
        None => Ok(()),
    };
    let (header, manifest): (Header, Manifest) = file::read(&manifest_path)?;
    check(&manifest_path, &header)?;
    let mut snapshots = Vec::new();
    for (name, crc) in &manifest.snapshots {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| CheckpointError::io(&path, e))?;
        let (snap_header, snapshot): (Header, Snapshot) = file::decode(&path, &bytes)?;
        check(&path, &snap_header)?;
        if crc32fast::hash(&bytes) != *crc || snap_header.time != header.time {
            return Err(CheckpointError::Mismatch {
                path: manifest_path.display().to_string(),
                why: format!("{} is not the snapshot it lists", path.display()),
            });
        }
        snapshots.push((path, snapshot));
    }
    let resume = if manifest.complete {
        Resume::Complete {
            snapshots: snapshots.into_iter().map(|(_, s)| s).collect(),
        }
    } else {
        Resume::From {
            time: header.time,
            workers: header.workers,
            snapshots,
        }
    };
    Ok((resume, header.time))
}

/// What is wrong with the first symbolic link on `path` (itself or a directory above it) that
/// leads nowhere: one that names a missing file, or a loop. `None` when every link resolves.
fn broken_link(path: &Path) -> Option<String> {
    let mut ancestors: Vec<&Path> = path.ancestors().collect();
    ancestors.reverse();
    ancestors.into_iter().find_map(|at| {
        let meta = std::fs::symlink_metadata(at).ok()?;
        if !meta.file_type().is_symlink() {
            return None;
        }
        let error = std::fs::metadata(at).err()?;
        let which = if at == path {
            String::from("a symbolic link")
        } else {
            format!("{} is a symbolic link", at.display())
        };
        Some(if error.raw_os_error() == Some(libc::ELOOP) {
            format!("{which} in a loop of symbolic links")
        } else {
            let target =
                std::fs::read_link(at).map_or_else(|e| e.to_string(), |t| t.display().to_string());
            format!("{which} to {target}, which does not exist")
        })
    })
}

/// Whether a file name is one a checkpoint directory holds: a snapshot, the manifest, or a
/// temporary file of either ([`file::write_replace`]).
pub fn is_checkpoint_file(name: &str) -> bool {
    let name = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .unwrap_or(name);
    name == MANIFEST || name.starts_with("ckpt-")
}

/// Where a test may crash a run (`TIDEMARK_CRASH_AT=POINT:N`, see [`CRASH_VAR`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Halfway through writing a snapshot file.
    Snapshot,
    /// After every snapshot file is durable, with the manifest written but not renamed.
    Manifest,
    /// Halfway through writing the rows of a checkpoint interval to the output.
    Output,
}

/// The environment variable that crashes a run, for kill tests: `snapshot:N`, `manifest:N` or
/// `output:N` kill the process with SIGKILL at that point of its N-th checkpoint (from 1).
pub const CRASH_VAR: &str = "TIDEMARK_CRASH_AT";

/// The crash point to inject, parsed once: `(point, N)`.
fn injected() -> Option<(CrashPoint, u64)> {
    static POINT: OnceLock<Option<(CrashPoint, u64)>> = OnceLock::new();
    *POINT.get_or_init(|| {
        let text = std::env::var(CRASH_VAR).ok()?;
        parse_crash(&text)
    })
}

fn parse_crash(text: &str) -> Option<(CrashPoint, u64)> {
    let (point, n) = text.split_once(':')?;
    let point = match point {
        "snapshot" => CrashPoint::Snapshot,
        "manifest" => CrashPoint::Manifest,
        "output" => CrashPoint::Output,
        _ => return None,
    };
    Some((point, n.parse().ok()?))
}

/// Checks that `TIDEMARK_CRASH_AT`, if set, names a point, so a misspelt test hook fails
/// loudly instead of injecting nothing.
///
/// Errors: a line saying what the variable must look like.
pub fn check_crash_var() -> Result<(), String> {
    match std::env::var(CRASH_VAR) {
        Ok(text) if parse_crash(&text).is_none() => Err(format!(
            "{CRASH_VAR}: expected snapshot:N, manifest:N or output:N, got {text:?}"
        )),
        _ => Ok(()),
    }
}

/// Counts checkpoints begun in this process, for `TIDEMARK_CRASH_AT=POINT:N`.
static BEGUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Marks the start of a checkpoint (the sink calls it once per cut, before writing rows).
pub fn begin_checkpoint() {
    BEGUN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// Kills this process with SIGKILL, as `kill -9` would, if the test hook names `point` of the
/// current checkpoint. Nothing runs after it: no destructor, no cleanup, no flush.
pub fn crash(point: CrashPoint) {
    if let Some((at, n)) = injected() {
        if at == point && BEGUN.load(std::sync::atomic::Ordering::SeqCst) == n {
            // SAFETY: sending a signal to this process touches no memory.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}
