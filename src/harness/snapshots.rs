//! Checkpoints while measuring (`tidemark bench --checkpoint-dir DIR`): every worker's
//! stateful operators hand their state to a [`SnapshotSink`] at each cut (see
//! [`crate::stash`]), and a writer thread makes each checkpoint durable in `DIR`, in the file
//! format and order of [`crate::checkpoint`]; the run's report then says what checkpointing
//! cost.
//!
//! # What happens at a cut
//!
//! Cuts are at `k * interval` in timely time, which in the harness is the events' due time in
//! nanoseconds since the run's start (see [`super::driver`]): a 1 s interval checkpoints once
//! per second of the offered stream. Each operator takes its cut once its input frontier has
//! passed it (the cut is exact, [`crate::stash`]), and hands its encoded state value to its
//! worker's `WorkerSink`. Once every operator of the worker has handed its state for the cut
//! (every operator asks for its first cut once, when it is built, so the sink knows how many
//! there are), the worker's snapshot goes to the process's writer thread and the worker goes
//! on: the durable part is asynchronous, as Flink's asynchronous snapshot phase, and only the
//! state's copy and encoding stay on the worker's thread. The writer's queue is bounded (two
//! snapshots per worker), so a writer that cannot keep up holds the workers back instead of
//! filling memory.
//!
//! The writer writes each worker's snapshot to `DIR/ckpt-<cut>-worker-<i>` (temporary file,
//! fsync, rename: [`file::write_replace`]); once the cut's snapshots of all workers are
//! written it fsyncs the directory and writes `DIR/MANIFEST` naming the snapshots with their
//! CRC-32 (the order of [`crate::checkpoint::CheckpointDir::commit`]), then removes the files of
//! the checkpoint before the previous one. A bench's checkpoints are measured, not resumed
//! across runs: the next bench run in `DIR` starts over.
//!
//! Each worker's snapshot also holds its input position at the cut: how many of its events it
//! had sent at times up to the cut. The driver records it as its input passes each cut (it
//! sends what it staged before it advances the input, so the events sent then are exactly
//! those at times up to the cut).
//!
//! # Failure and recovery (`--fail-at`)
//!
//! At the failure every worker freezes the writer (no manifest is written; a commit under way
//! finishes first), drops its dataflow and its input as a crash would (operator state and
//! everything in flight are lost), and waits for the others; then each reads the checkpoint in
//! force ([`Writer::in_force`]: the manifest and its own snapshot, checked against the
//! manifest's CRC-32), and once all have read it, builds the same dataflow again with its
//! operators restored from their states ([`Checkpoints::restoring`]), its input at the time
//! after the cut, and resumes the open loop from the snapshot's position: the events after it
//! are sent again on their original schedule, so the ones already due are overdue. The writer
//! then ignores what the torn-down dataflow still had queued ([`Writer::restart`]) and commits
//! the rebuilt dataflow's checkpoints, from the next cut after the one restored.
//!
//! # What is measured
//!
//! Per completed checkpoint ([`CheckpointStat`]): its cut, the bytes of its snapshot files
//! (all workers, headers included), and the *snapshot time*: from the moment the first worker
//! handed its snapshot over (its state already copied and encoded) until the manifest naming
//! the checkpoint was renamed into place. The time a worker spends copying and encoding its
//! state is not in it (the operators build the value inside [`crate::stash::Cut`]); it shows
//! in the run's throughput and latency, which the report sets beside those of the same run
//! without checkpoints.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::checkpoint::file::{self, Header};
use crate::checkpoint::{is_checkpoint_file, CheckpointError, CrashPoint, Manifest, MANIFEST};
use crate::stash::{Checkpoints, SnapshotSink};

/// The file that marks a directory as a bench's checkpoint directory, which a later bench may
/// empty; a directory holding anything else is refused.
pub const MARKER: &str = "BENCH";

/// What a bench's snapshot file holds for one worker: each operator's encoded state value at
/// the cut, by the name the sink saw (`N:operator`, see [`Checkpoints::cut`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchSnapshot {
    /// The worker's global index.
    pub worker: u32,
    /// `(operator, bincode of its state value)`, in the order the operators were built.
    pub operators: Vec<(String, Vec<u8>)>,
    /// The worker's input position at the cut: how many of its events it had sent at times up
    /// to the cut (the events after them are the ones a restore sends again); `None` where the
    /// driver did not record it.
    pub position: Option<u64>,
}

/// Why a checkpoint directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The directory holds files a bench did not write.
    #[error("--checkpoint-dir {0}: not empty and not a bench's checkpoint directory (no {MARKER} file); give a new or empty directory")]
    NotBench(String),
    /// Creating, reading or writing failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Where and how often a run checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// The directory (see [`prepare`]).
    pub dir: PathBuf,
    /// Time between cuts, in timely time (ns of the offered stream); positive.
    pub interval_ns: u64,
}

/// Makes `dir` ready for a bench's checkpoints: creates it, or empties a bench's earlier
/// checkpoints from it, and marks it with [`MARKER`].
///
/// Errors: [`SnapshotError::NotBench`] when `dir` holds anything but a bench's files (it may
/// be a `tidemark window` checkpoint, which must not be lost), or the I/O error naming the
/// file.
pub fn prepare(dir: &Path) -> Result<(), SnapshotError> {
    let io = |path: &Path, e| SnapshotError::from(CheckpointError::io(path, e));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| io(dir, e))?;
    if !entries.is_empty() && !dir.join(MARKER).is_file() {
        return Err(SnapshotError::NotBench(dir.display().to_string()));
    }
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_checkpoint_file(&name) {
            std::fs::remove_file(entry.path()).map_err(|e| io(&entry.path(), e))?;
        }
    }
    let marker = dir.join(MARKER);
    std::fs::write(
        &marker,
        "checkpoints of `tidemark bench`: measured, never resumed; the next bench here removes them\n",
    )
    .map_err(|e| io(&marker, e))?;
    Ok(())
}

/// One completed checkpoint, as the writer measured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointStat {
    /// The cut (ns of the offered stream).
    pub cut_ns: u64,
    /// Bytes of its snapshot files, all workers, headers included.
    pub bytes: u64,
    /// From the first worker's hand-over to the manifest's rename (ns).
    pub duration_ns: u64,
}

/// A worker's snapshot of one cut, handed to the writer.
struct Job {
    snapshot: BenchSnapshot,
    cut: u64,
    handed: Instant,
    /// The dataflow it comes from: 0, then one more after each rebuild ([`Writer::restart`]).
    generation: u64,
}

/// Where the process's checkpoints stand, shared by the writer thread and the workers.
#[derive(Default)]
struct State {
    /// Jobs of older generations come from a torn-down dataflow: ignored.
    generation: u64,
    /// No manifest is written while frozen (between a failure and the rebuild).
    frozen: bool,
    /// Per cut: the snapshots written so far.
    cuts: BTreeMap<u64, Partial>,
    /// The files of the last checkpoints committed by this generation, oldest first: the
    /// checkpoint in force and the one before it are kept (see [`commit`]).
    committed: VecDeque<Vec<String>>,
}

/// A cut's snapshots written so far, not yet all workers'.
struct Partial {
    /// The files (name, CRC-32).
    files: Vec<(String, u32)>,
    /// Their bytes.
    bytes: u64,
    /// The first worker's hand-over.
    first: Instant,
}

/// An operator's encoded state, by operator id.
type States = Vec<(String, Vec<u8>)>;

/// The checkpoint in force, as one worker restores it: the cut and the worker's snapshot.
pub type InForce = Option<(u64, BenchSnapshot)>;

/// The process's checkpoint writer: a thread that makes the workers' snapshots durable.
pub struct Writer {
    sender: Mutex<SyncSender<Option<Job>>>,
    thread: JoinHandle<Result<Vec<CheckpointStat>, CheckpointError>>,
    interval_ns: u64,
    dir: PathBuf,
    state: Arc<Mutex<State>>,
}

impl Writer {
    /// Starts the writer for `workers` workers (all in this process) checkpointing into
    /// `settings.dir` (made ready by [`prepare`]); `config_hash` goes into every file's header.
    pub fn start(settings: &CheckpointSettings, workers: usize, config_hash: u64) -> Writer {
        let workers = workers.max(1);
        let (sender, receiver) = sync_channel(2 * workers);
        let header = Header {
            revision: super::report::git_rev(),
            config_hash,
            workers: workers as u32,
            time: 0,
        };
        let dir = settings.dir.clone();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let thread = std::thread::spawn(move || write_all(&dir, header, receiver, &shared));
        Writer {
            sender: Mutex::new(sender),
            thread,
            interval_ns: settings.interval_ns,
            dir: settings.dir.clone(),
            state,
        }
    }

    /// The time between cuts (ns).
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// The checkpoint hooks of worker `index`, for a dataflow built fresh: hand them to the
    /// worker's dataflow. Cuts start at one interval.
    pub fn worker(&self, index: usize) -> Checkpoints {
        self.checkpoints(index, None, 0, Rc::default())
    }

    /// The checkpoint hooks of worker `index` for the dataflow of `generation` (0 for the
    /// first, one more per rebuild), resuming after the checkpoint `resume` (its cut and this
    /// worker's snapshot: the operators are built from its states) or from nothing; the sink
    /// takes each snapshot's input position from `positions` (cut to position, filled by the
    /// driver as its input passes each cut).
    pub fn checkpoints(
        &self,
        index: usize,
        resume: InForce,
        generation: u64,
        positions: Rc<RefCell<BTreeMap<u64, u64>>>,
    ) -> Checkpoints {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let first = resume.as_ref().map_or(self.interval_ns, |(cut, _)| {
            cut.saturating_add(self.interval_ns)
        });
        let sink = Rc::new(RefCell::new(WorkerSink {
            worker: index as u32,
            interval_ns: self.interval_ns,
            first,
            generation,
            operators: Cell::new(0),
            pending: BTreeMap::new(),
            positions,
            sender,
        }));
        match resume {
            Some((_, snapshot)) => {
                Checkpoints::restoring(sink, snapshot.operators.into_iter().collect())
            }
            None => Checkpoints::new(sink),
        }
    }

    /// Stops committing: no manifest is written until [`Writer::restart`] (a failure: the
    /// checkpoint in force must not change while the workers read it). A commit under way
    /// finishes first.
    pub fn freeze(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).frozen = true;
    }

    /// The checkpoint in force, as worker `index` restores it: the manifest's cut and the
    /// worker's snapshot, checked against the manifest's CRC-32; `None` when no checkpoint was
    /// completed yet.
    ///
    /// Errors: the manifest or the snapshot is missing, damaged or not the worker's, naming
    /// the file.
    pub fn in_force(&self, index: usize) -> Result<InForce, CheckpointError> {
        let manifest_path = self.dir.join(MANIFEST);
        if !manifest_path.exists() {
            return Ok(None);
        }
        let (header, manifest): (Header, Manifest) = file::read(&manifest_path)?;
        let suffix = format!("-worker-{index}");
        let mismatch = |why: String| CheckpointError::Mismatch {
            path: manifest_path.display().to_string(),
            why,
        };
        let (name, crc) = manifest
            .snapshots
            .iter()
            .find(|(name, _)| name.ends_with(&suffix))
            .ok_or_else(|| mismatch(format!("it lists no snapshot of worker {index}")))?;
        let path = self.dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| CheckpointError::io(&path, e))?;
        if crc32fast::hash(&bytes) != *crc {
            return Err(mismatch(format!(
                "{} is not the snapshot it lists",
                path.display()
            )));
        }
        let (_, snapshot): (Header, BenchSnapshot) = file::decode(&path, &bytes)?;
        if snapshot.worker != index as u32 {
            return Err(mismatch(format!(
                "{} is not worker {index}'s",
                path.display()
            )));
        }
        Ok(Some((header.time, snapshot)))
    }

    /// Resumes committing for the dataflow of `generation`, rebuilt from the checkpoint in
    /// force: snapshots of older generations still queued are ignored,
    /// and so are the cuts they left incomplete. Every worker calls it; the first call of a
    /// generation acts.
    pub fn restart(&self, generation: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if generation > state.generation {
            state.generation = generation;
            state.frozen = false;
            state.cuts.clear();
            // The restored checkpoint's files and those of the torn-down dataflow stay until
            // the next bench empties the directory: the names of later cuts come again.
            state.committed.clear();
        }
    }

    /// Waits for every snapshot handed over so far to be written (call it once the workers
    /// have finished) and returns the completed checkpoints, in the order they were committed
    /// (after a rebuild, cuts after the one restored are committed again).
    ///
    /// Errors: the first write that failed, naming the file.
    pub fn finish(self) -> Result<Vec<CheckpointStat>, CheckpointError> {
        let sender = self.sender.into_inner().unwrap_or_else(|p| p.into_inner());
        // The workers have finished: everything they sent is queued before this.
        let _ = sender.send(None);
        self.thread.join().unwrap_or_else(|_| {
            Err(CheckpointError::Io {
                path: "checkpoint writer".into(),
                message: "the writer thread panicked".into(),
            })
        })
    }
}

/// One worker's sink: collects its operators' states per cut and hands each complete snapshot
/// to the writer.
struct WorkerSink {
    worker: u32,
    interval_ns: u64,
    /// The first cut: one interval, or one after the checkpoint resumed from.
    first: u64,
    generation: u64,
    /// Operators that asked for their first cut: how many states make a snapshot.
    operators: Cell<usize>,
    /// States handed over per cut, not yet complete.
    pending: BTreeMap<u64, (States, Instant)>,
    /// The worker's input position at each cut its input passed.
    positions: Rc<RefCell<BTreeMap<u64, u64>>>,
    sender: SyncSender<Option<Job>>,
}

impl SnapshotSink for WorkerSink {
    fn first_cut(&self) -> Option<u64> {
        // Every operator asks once, when it is built (`Checkpoints::cut`).
        self.operators.set(self.operators.get() + 1);
        Some(self.first)
    }

    fn write(&mut self, operator: &str, cut: u64, state: Vec<u8>) -> Option<u64> {
        let entry = self
            .pending
            .entry(cut)
            .or_insert_with(|| (Vec::new(), Instant::now()));
        entry.0.push((operator.to_string(), state));
        if entry.0.len() >= self.operators.get() {
            let (operators, handed) = self.pending.remove(&cut).expect("just inserted");
            // An operator takes a cut once its input frontier has passed it, so the driver's
            // input has passed it too and recorded where it was then.
            let position = {
                let mut positions = self.positions.borrow_mut();
                let position = positions.get(&cut).copied();
                positions.retain(|&c, _| c > cut);
                position
            };
            let job = Job {
                snapshot: BenchSnapshot {
                    worker: self.worker,
                    operators,
                    position,
                },
                cut,
                handed,
                generation: self.generation,
            };
            // The writer outlives the workers ([`Writer::finish`] joins it after them); a
            // send fails only if it stopped on a failed write, which `finish` reports.
            let _ = self.sender.send(Some(job));
        }
        cut.checked_add(self.interval_ns)
    }
}

/// The writer thread: writes each job's file, and each cut's manifest once all workers'
/// files are written (unless frozen).
fn write_all(
    dir: &Path,
    header: Header,
    receiver: Receiver<Option<Job>>,
    state: &Mutex<State>,
) -> Result<Vec<CheckpointStat>, CheckpointError> {
    let workers = header.workers as usize;
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let mut stats = Vec::new();
    let mut failed = None;
    while let Ok(Some(job)) = receiver.recv() {
        // After a failure, keep receiving so that the workers are never blocked on a full
        // queue; a torn-down dataflow's snapshots are not written.
        if failed.is_some() || job.generation < lock().generation {
            continue;
        }
        let header = Header {
            time: job.cut,
            ..header.clone()
        };
        let name = format!("ckpt-{:020}-worker-{}", job.cut, job.snapshot.worker);
        let bytes = file::encode(&header, &job.snapshot);
        if let Err(e) = file::write_replace(&dir.join(&name), &bytes, CrashPoint::Snapshot) {
            failed = Some(e);
            continue;
        }
        let mut state = lock();
        if job.generation < state.generation {
            continue;
        }
        let entry = state.cuts.entry(job.cut).or_insert_with(|| Partial {
            files: Vec::new(),
            bytes: 0,
            first: job.handed,
        });
        entry.files.push((name, crc32fast::hash(&bytes)));
        entry.bytes += bytes.len() as u64;
        entry.first = entry.first.min(job.handed);
        if entry.files.len() < workers {
            continue;
        }
        let Partial {
            files: mut snapshots,
            bytes: total,
            first,
        } = state.cuts.remove(&job.cut).expect("just updated");
        if state.frozen {
            continue;
        }
        snapshots.sort();
        // Under the lock: a failure's freeze waits for this commit to finish.
        if let Err(e) = commit(dir, &header, &snapshots) {
            failed = Some(e);
            continue;
        }
        state
            .committed
            .push_back(snapshots.into_iter().map(|(name, _)| name).collect());
        // The manifest in force names the newest; the one before stays for a power loss
        // before this manifest's rename is durable; older ones are garbage (a file left
        // behind costs disk space, not correctness).
        while state.committed.len() > 2 {
            for name in state.committed.pop_front().unwrap_or_default() {
                let _ = std::fs::remove_file(dir.join(name));
            }
        }
        stats.push(CheckpointStat {
            cut_ns: job.cut,
            bytes: total,
            duration_ns: first.elapsed().as_nanos() as u64,
        });
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

/// Commits the checkpoint whose snapshot files are written: a directory fsync (the files'
/// entries durable before the manifest naming them, and the previous manifest's rename with
/// them), then the manifest (see [`crate::checkpoint`] for the order).
fn commit(dir: &Path, header: &Header, snapshots: &[(String, u32)]) -> Result<(), CheckpointError> {
    file::sync_dir(dir).map_err(|e| CheckpointError::io(dir, e))?;
    let manifest = Manifest {
        snapshots: snapshots.to_vec(),
        complete: false,
    };
    file::write_replace(
        &dir.join(MANIFEST),
        &file::encode(header, &manifest),
        CrashPoint::Manifest,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stash::Cut;

    /// A worker's snapshot of a cut goes to the writer once all its operators handed their
    /// state for it; a cut some operator has not taken yet is not committed.
    #[test]
    fn a_cut_commits_once_every_operator_of_every_worker_handed_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let interval = 10;
        let settings = CheckpointSettings {
            dir: dir.path().to_path_buf(),
            interval_ns: interval,
        };
        prepare(dir.path()).unwrap();
        // Two workers, each with operators a and b; a passes cuts 10 and 20, b passes those
        // below `b_limits[worker]`.
        let run = |b_limits: [u64; 2]| {
            let writer = Writer::start(&settings, 2, 7);
            for (worker, b_limit) in b_limits.into_iter().enumerate() {
                let checkpoints = writer.worker(worker);
                let mut a: Cut<u64> = checkpoints.cut("a");
                let mut b: Cut<Vec<u8>> = checkpoints.cut("b");
                assert!(a.take_passed(Some(25), None, |cut| cut));
                b.take_passed(Some(b_limit), None, |cut| vec![cut as u8]);
            }
            writer.finish().unwrap()
        };
        // Worker 1's b takes no cut: no checkpoint is complete.
        assert!(run([15, 5]).is_empty());
        let stats = run([15, 15]);
        assert_eq!(stats.iter().map(|s| s.cut_ns).collect::<Vec<_>>(), [10]);
        let (header, manifest): (Header, Manifest) =
            file::read(&dir.path().join(MANIFEST)).unwrap();
        assert_eq!(
            (header.time, header.workers, header.config_hash),
            (10, 2, 7)
        );
        let mut total = 0;
        for (worker, (name, _)) in manifest.snapshots.iter().enumerate() {
            let path = dir.path().join(name);
            total += std::fs::metadata(&path).unwrap().len();
            let (_, snapshot): (Header, BenchSnapshot) = file::read(&path).unwrap();
            assert_eq!(snapshot.worker, worker as u32);
            let names: Vec<&str> = snapshot.operators.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["0:a", "1:b"]);
            assert_eq!(snapshot.operators[0].1, crate::stash::encode(&10u64));
            assert_eq!(snapshot.operators[1].1, crate::stash::encode(&vec![10u8]));
        }
        assert_eq!(stats[0].bytes, total);
        // What a rebuilt worker reads back.
        let reader = Writer::start(&settings, 2, 7);
        let (cut, snapshot) = reader.in_force(1).unwrap().expect("a checkpoint in force");
        assert_eq!((cut, snapshot.worker), (10, 1));
        reader.finish().unwrap();
    }

    #[test]
    fn prepare_empties_a_bench_directory_and_refuses_any_other() {
        let dir = tempfile::tempdir().unwrap();
        let bench = dir.path().join("bench");
        prepare(&bench).unwrap();
        for name in [
            "ckpt-00000000000000000010-worker-0",
            ".MANIFEST.tmp",
            MANIFEST,
        ] {
            std::fs::write(bench.join(name), "old").unwrap();
        }
        std::fs::write(bench.join("notes.txt"), "mine").unwrap();
        prepare(&bench).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&bench)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [MARKER, "notes.txt"]);

        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join(MANIFEST), "a window checkpoint").unwrap();
        let error = prepare(&other).unwrap_err().to_string();
        assert!(
            error.contains("not a bench's checkpoint directory"),
            "{error}"
        );
        assert!(!other.join(MARKER).exists());
    }
}
