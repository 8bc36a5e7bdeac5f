//! The `tidemark window` job: a keyed windowed aggregation of a CSV file (or Kafka topic) into
//! a CSV changelog, assembled from a [`WindowJob`] (sources, keyed windows, sinks, checkpoints,
//! Kafka). The command line (`crate::cli::window`) only parses its flags into a `WindowJob`
//! and calls [`run`].
//!
//! Every worker of every process reads a share of an input file (see [`crate::source::blocks`]:
//! the same stamps as one reader in file order); standard input, `--readers one`,
//! `--idle-timeout` and a run of one worker read on worker 0 of process 0, which defines the
//! watermark by input order.
//! Process 0 writes the outputs; every worker of every process aggregates its share of the keys.
//!
//! Outputs are created through [`crate::output`] (refused if they are the input or each other;
//! regular files appear under their names only when the run succeeded). Any failure while the
//! workers run (a bad line with `--on-bad-line fail`, a write error, a retraction of a row never
//! inserted, a panic, a signal, a peer process failing) ends the run at once through
//! [`crate::abort::fail`]: the windows still open are *not* closed and emitted as final.
//!
//! Errors are `anyhow` one-liners naming the file, flag or checkpoint concerned: this module
//! is the command's body, and every error it returns ends the command with that line.

use std::cell::RefCell;
use std::fmt::{Debug, Display};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::ValueEnum;
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, Exchange, Inspect, Operator, Probe};
use timely::dataflow::{ProbeHandle, Scope, StreamVec};

use crate::abort;
use crate::checkpoint::{config_hash, is_checkpoint_file, CheckpointDir, Resume, Snapshot};
use crate::cluster::Cluster;
use crate::incremental::{retime, WindowedCollection};
use crate::keyed::KeyBy;
use crate::output::{check_distinct, Output, OutputWriter};
use crate::partition::Partitioner;
use crate::sink::commit::{
    commit_sink, snapshot_stream, Collector, CommitFile, CommitFiles, WorkerSnapshot,
};
use crate::sink::kafka::{
    changelog_message, kafka_sink, late_message, KafkaCommit, KafkaOut, KafkaWriter,
};
use crate::sink::parts::{is_part_dir, open_part, part_path};
use crate::sink::{
    changelog_part_sink, changelog_sink, late_header, late_part_sink, late_sink, ChangelogCounts,
    LateFields, SharedWriter, CHANGELOG_HEADER,
};
use crate::source::blocks::{block_source, BlockPlan};
use crate::source::csv::FeedStats;
use crate::source::csv::{BadLines, Columns, CsvFeed, CsvItem, CsvKey, CsvRecord, ReadError};
use crate::source::kafka::{
    kafka_source, partitions_of, KafkaFeed, KafkaOptions, KafkaTopic, MessageFormat, PayloadFormat,
    SCHEME,
};
use crate::source::{
    feed_source_paced, Pacing, Payload, SendAt, SourceOptions, SourceState, Stamped,
};
use crate::stash::{Checkpoints, Cut, OperatorStates};
use crate::window::{
    on, Aggregator, Count, Late, Max, Mean, Min, Sum, Window, WindowAssigner, WindowResult,
};

/// The aggregations the command offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AggName {
    /// Number of records.
    Count,
    /// Exact sum of the value column.
    Sum,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Mean of the values, exact to nine decimals.
    Mean,
}

/// Which view of the windows to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EmitMode {
    /// Each window once, when the watermark passes its end (plus corrections for records
    /// within the allowed lateness): the timely window operators.
    Final,
    /// Every change of the incremental view at every epoch, with retractions of superseded
    /// values: differential dataflow. Accepts retractions in the input (`diff` column).
    Updates,
}

/// A `tidemark window` run, as its flags describe it (each field is the flag of its name; see
/// `tidemark window --help` and the README for their meaning). Times are in milliseconds of
/// event time, as the input's time column; `max_delay`, `allowed_lateness` and the checkpoint
/// times are milliseconds too.
#[derive(Clone, Debug)]
pub struct WindowJob {
    /// Input CSV with a header (`-` for standard input), or a `kafka://HOST:PORT/TOPIC`.
    pub input: PathBuf,
    /// Output CSV (`-` for standard output), a directory of per-process parts, or a
    /// `kafka://HOST:PORT/TOPIC`.
    pub output: PathBuf,
    /// The windows.
    pub window: WindowAssigner,
    /// The aggregation.
    pub agg: AggName,
    /// Event-time column (non-negative integer milliseconds).
    pub time_col: String,
    /// Key column.
    pub key_col: String,
    /// Value column (not read for count).
    pub value_col: String,
    /// Change column, if the input has it (+1 inserts, -1 retracts; `--emit updates`).
    pub diff_col: String,
    /// Which view of the windows to write.
    pub emit: EmitMode,
    /// Watermark delay (ms): the watermark trails the largest event time by this much.
    pub max_delay: u64,
    /// Records this far (ms) behind a window's end still count, as corrections.
    pub allowed_lateness: u64,
    /// Where records late beyond the allowed lateness go (a file or a directory of parts).
    pub late_output: Option<PathBuf>,
    /// How keys are spread over the workers.
    pub partition: Partitioner<CsvKey>,
    /// What to do with a bad input line.
    pub on_bad_line: BadLines,
    /// Advance the watermark with processing time once the input was idle this long (ms).
    pub idle_timeout: Option<u64>,
    /// Who reads an input file.
    pub readers: Readers,
    /// Bytes per block of a file read in parallel.
    pub read_block: u64,
    /// Checkpoint into, and resume from, this directory.
    pub checkpoint_dir: Option<PathBuf>,
    /// Event time (ms) between checkpoints.
    pub checkpoint_interval: u64,
    /// Wall-clock time (ms) to wait after a commit before the next.
    pub checkpoint_min_pause: u64,
    /// Kafka input and output settings.
    pub kafka: KafkaSettings,
    /// Threads, processes and hostfile, already checked.
    pub cluster: Cluster,
}

/// How Kafka messages are read and written (see README, "Kafka"); used only when the input or
/// output is a `kafka://HOST:PORT/TOPIC` address.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// Kafka input: each message is a JSON object or one CSV line (fields named by `columns`).
    pub format: PayloadFormat,
    /// Kafka input in CSV: the names of a message's fields, in order.
    pub columns: Vec<String>,
    /// Kafka input: read up to the end offsets found at the start, then finish.
    pub exit_at_end: bool,
    /// Kafka output: each changelog row as a JSON object or one CSV line.
    pub output_format: PayloadFormat,
}

/// Who reads the input file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Readers {
    /// Every worker of every process reads a share.
    All,
    /// Worker 0 of process 0 reads it all.
    One,
}

/// Runs the job: checks and opens its input and outputs, runs the cluster, commits the
/// outputs and says the summary line.
///
/// Errors: a one-line message naming the file, flag or checkpoint at fault; failures while the
/// workers run end the process through [`crate::abort::fail`] instead.
pub fn run(job: WindowJob) -> anyhow::Result<()> {
    let value = |r: &CsvRecord| r.value;
    match job.agg {
        AggName::Count => run_with(job, Count),
        AggName::Sum => run_with(job, on(Sum, value)),
        AggName::Min => run_with(job, on(Min, value)),
        AggName::Max => run_with(job, on(Max, value)),
        AggName::Mean => run_with(job, on(Mean, value)),
    }
}

/// How many batches the readers of a run may run ahead, in all, of the writers of the rows
/// their records become (see [`Sinks::write`]); shared among the readers, but at least
/// [`MIN_AHEAD`] each (see [`ahead_per_reader`]).
const AHEAD: usize = 16;

/// The fewest batches one reader may run ahead: with one, a reader would wait for each batch
/// to be written before it reads the next.
const MIN_AHEAD: usize = 2;

/// How many batches each of `readers` readers may run ahead: [`AHEAD`] shared among them, so
/// that what waits for the writers stays about the same whatever the number of readers (each
/// worker reads blocks of a file; Kafka partitions are spread over the workers), instead of
/// growing with it: 16 workers each reading 16 batches ahead held 16 times one worker's.
fn ahead_per_reader(readers: usize) -> usize {
    (AHEAD / readers.max(1)).max(MIN_AHEAD)
}

/// What a worker counted, summed into the run's summary line at the end (not a bench
/// [`Report`](crate::harness::report::Report)).
#[derive(Default)]
struct WorkerCounts {
    changelog: ChangelogCounts,
    late: u64,
}

/// The environment variable that makes one worker fail, for testing how a run ends:
/// `INDEX` (the worker's global index) returns an error there, `INDEX:panic` panics.
pub const FAIL_WORKER_VAR: &str = "TIDEMARK_FAIL_WORKER";

/// A failure to inject: `(worker index, panic?)`.
fn injected_failure() -> anyhow::Result<Option<(usize, bool)>> {
    let Ok(text) = std::env::var(FAIL_WORKER_VAR) else {
        return Ok(None);
    };
    let (index, panic) = match text.split_once(':') {
        Some((index, "panic")) => (index, true),
        None => (text.as_str(), false),
        Some(_) => bail!("{FAIL_WORKER_VAR}: expected INDEX or INDEX:panic, got {text:?}"),
    };
    let index = index
        .parse()
        .map_err(|_| anyhow!("{FAIL_WORKER_VAR}: expected INDEX or INDEX:panic, got {text:?}"))?;
    Ok(Some((index, panic)))
}

/// An opened input: one reader's feed, or the plan every worker reads a share of.
enum Input {
    One(CsvFeed),
    All(BlockPlan),
}

impl Input {
    /// The line of the input's header, for errors about its columns.
    fn header_line(&self) -> u64 {
        match self {
            Input::One(feed) => feed.header_line(),
            Input::All(plan) => plan.header_line(),
        }
    }
}

/// What the readers of a file hold of its blocks, in all, in nominal bytes: blocks of
/// `--read-block` (256 KiB by default) for up to 2 readers, smaller ones for more (see
/// [`read_block`]). At 1 MiB (64 KiB blocks for 16 readers), the readers' parsed rows were
/// 15 MB of the 45 MB heap peak of 16 workers on the issue-14 file (about 1 MB each), and the
/// peak 3.1x one worker's; at 512 KiB 2.3x (see experiments/ingest/memory-2026-11-30-ingest11.md).
const READ_BYTES: u64 = 1 << 19;

/// The smallest block [`read_block`] makes: below it, the blocks' summaries (one message to
/// every worker per block), the parser's start and a poll (so a capability downgrade) per block
/// begin to cost: 16 workers on 2 cores took some 15% more user CPU with 32 KiB blocks than
/// with 64 KiB, and 25% more again with 16 KiB (which brought the peak to 1.8x one worker's).
const MIN_READ_BLOCK: u64 = 1 << 15;

/// The nominal block of each of `readers` readers of a file, given `--read-block`: at most
/// [`READ_BYTES`] shared among them, at least [`MIN_READ_BLOCK`]. A reader holds its block's
/// bytes and parsed rows (several times the bytes), so with one block size for all, what the
/// readers held grew with their number: 16 workers took 6x the peak memory of one on the
/// issue-14 file (126 MB against 21 MB, 2 M rows, `tumbling:10s`). Every block size reads the
/// same records with the same stamps (see [`crate::source::blocks`]); the processes of a
/// cluster compute the same size, and compare their plans anyway.
fn read_block(block: u64, readers: usize) -> u64 {
    let share = READ_BYTES / readers.max(1) as u64;
    block.min(share.max(MIN_READ_BLOCK))
}

/// Opens the input for one reader or for all; returns it with its header.
fn open_input(
    job: &WindowJob,
    parallel: bool,
    columns: Columns,
) -> anyhow::Result<(Input, csv::StringRecord)> {
    let (bad, delay) = (job.on_bad_line, job.max_delay);
    Ok(if parallel {
        let readers = job.cluster.workers * job.cluster.addresses.len().max(1);
        let block = read_block(job.read_block, readers);
        let (plan, header) = BlockPlan::open(&job.input, columns, bad, delay, block)?;
        (Input::All(plan), header)
    } else {
        let (feed, header) = CsvFeed::open(&job.input, columns, bad, delay)?;
        (Input::One(feed), header)
    })
}

/// A Kafka input, as every process reads it: the topic, its partition count, how messages are
/// read, and the process's counters.
struct KafkaInput {
    topic: KafkaTopic,
    partitions: u32,
    options: KafkaOptions,
    stats: Arc<FeedStats>,
}

/// The topic `path` names, if it is a `kafka://` address.
fn kafka_address(path: &Path) -> anyhow::Result<Option<KafkaTopic>> {
    match path.to_str().and_then(KafkaTopic::parse) {
        None => Ok(None),
        Some(topic) => topic.map(Some).map_err(|e| anyhow!(e)),
    }
}

/// Refuses two of the flags' Kafka topics that are one topic ([`KafkaTopic::same_topic`]: the
/// same name on the same cluster, however the brokers are spelt): a job reading its own output
/// feeds on itself, and late rows in the changelog topic corrupt it (and a checkpointed
/// restart then finds rows it does not produce there). Errors: one line naming both flags, or
/// a broker that cannot be reached (said as such, not taken for one topic).
fn refuse_shared_topics(flags: &[(&str, Option<&KafkaTopic>)]) -> anyhow::Result<()> {
    let named: Vec<(&str, &KafkaTopic)> = flags
        .iter()
        .filter_map(|(flag, topic)| topic.map(|t| (*flag, t)))
        .collect();
    for (i, (flag, topic)) in named.iter().enumerate() {
        for (other_flag, other) in &named[i + 1..] {
            if let Some(cluster) = topic.same_topic(other).map_err(|e| anyhow!(e))? {
                bail!(
                    "{flag} {} and {other_flag} {} are the same topic ({cluster})",
                    topic.url(),
                    other.url()
                );
            }
        }
    }
    Ok(())
}

/// Checks the Kafka flags and the topic (broker reachable, topic present) before the run starts.
fn open_kafka_input(
    job: &WindowJob,
    topic: KafkaTopic,
    columns: Columns,
) -> anyhow::Result<KafkaInput> {
    let kafka = &job.kafka;
    if kafka.format == PayloadFormat::Csv && kafka.columns.is_empty() {
        bail!("--format csv needs --columns (the names of a message's fields, e.g. ts,key,value)");
    }
    let partitions = topic.partitions().map_err(|e| anyhow!(e))?;
    let options = KafkaOptions {
        format: MessageFormat {
            format: kafka.format,
            columns: kafka.columns.clone(),
            read: columns,
        },
        bad_lines: job.on_bad_line,
        max_delay: job.max_delay,
        idle_timeout: job.idle_timeout.map(Duration::from_millis),
        exit_at_end: kafka.exit_at_end,
    };
    Ok(KafkaInput {
        topic,
        partitions,
        options,
        stats: Arc::default(),
    })
}

fn create(path: &Path) -> anyhow::Result<(Output, csv::Writer<OutputWriter>)> {
    let (output, writer) = Output::create(path)?;
    Ok((output, csv::Writer::from_writer(writer)))
}

/// The files a run writes: plain outputs, or committed ones with `--checkpoint-dir`.
enum Writers {
    // Boxed: csv writers are large, and the enum moves into the worker closure.
    Plain {
        /// `None` where the output is written in parts (see [`Parts`]).
        output: Option<Box<csv::Writer<OutputWriter>>>,
        late: Option<LateWriter>,
    },
    Commit(Box<CommitFiles>),
    /// The changelog to a Kafka topic; late rows to a file or a topic.
    Kafka {
        output: Box<KafkaWriter>,
        late: Option<LateWriter>,
    },
    /// The changelog to a Kafka topic, exactly once (`--checkpoint-dir`), and the late rows
    /// to another topic in the same commits (with their columns, see [`late_message`]).
    KafkaCommit {
        commit: Box<KafkaCommit>,
        late_columns: Option<Vec<String>>,
    },
}

/// Where the late rows of a run without `--checkpoint-dir` go.
enum LateWriter {
    File(Box<csv::Writer<OutputWriter>>),
    /// A topic, and the late output's columns (see [`late_message`]).
    Kafka {
        writer: Box<KafkaWriter>,
        columns: Vec<String>,
    },
}

/// The part files of this process (`--output DIR/`, `--late-output DIR/`), shared by its
/// workers; `None` for an output written as one file.
#[derive(Clone, Default)]
struct Parts {
    output: Option<SharedWriter<OutputWriter>>,
    late: Option<SharedWriter<OutputWriter>>,
}

impl Parts {
    /// Opens this process's parts of the outputs that are directories; `header` is the
    /// input's (for the late output's columns), `results` gets the outputs to commit.
    fn open(
        job: &WindowJob,
        process: usize,
        header: Option<&csv::StringRecord>,
        results: &mut Vec<Output>,
    ) -> anyhow::Result<Parts> {
        let mut parts = Parts::default();
        // A Kafka topic (even one written with a trailing `/`) is never a part directory.
        let to_kafka = job.output.to_str().and_then(KafkaTopic::parse).is_some();
        if is_part_dir(&job.output) && !to_kafka {
            let header: Vec<String> = CHANGELOG_HEADER.iter().map(|s| s.to_string()).collect();
            let (result, writer) = open_part(&job.output, process, &header)?;
            results.push(result);
            parts.output = Some(writer);
        }
        let late_dir = job
            .late_output
            .as_deref()
            .filter(|p| is_part_dir(p) && !p.to_str().is_some_and(|p| p.starts_with(SCHEME)));
        if let Some(dir) = late_dir {
            let header = match header {
                Some(header) => header.clone(),
                None => crate::source::csv::read_header(&job.input)?,
            };
            let columns = late_header(&header, &job.diff_col, job.emit == EmitMode::Updates)
                .map_err(|column| anyhow!("the late output adds a column named {column:?}"))?;
            let (result, writer) = open_part(dir, process, &columns)?;
            results.push(result);
            parts.late = Some(writer);
        }
        Ok(parts)
    }
}

/// A checkpointed run's state at the edge: the directory and what the sink leaves for the end.
struct Checkpointing {
    dir: Arc<CheckpointDir>,
    /// The last commit's snapshot, set by the sink at the end of the input.
    last: Arc<Mutex<Option<Snapshot>>>,
    /// The snapshot resumed from, if the run resumed after its final commit.
    resumed_final: Option<Snapshot>,
}

/// Everything that decides a checkpointed run's output, as text for [`config_hash`]: the
/// options that change rows or bytes, and the input's identity (resolved name, length,
/// modification time), so that a checkpoint is never applied to a changed input. The
/// partitioner is in it because the operators' snapshotted state is partitioned by it; the
/// readers (`--readers`, `--read-block`, and `--idle-timeout`, which makes one reader) because
/// a reader's snapshotted position names a block of its layout (review, 2026-11-30: a restart
/// with another block size or reader layout resumed from the other layout's positions and lost
/// and repeated rows); the worker count is checked apart, with its own message
/// ([`Restore::from`]).
fn job_text(job: &WindowJob) -> anyhow::Result<String> {
    let input = if let Some(topic) = kafka_address(&job.input)? {
        // How messages are read changes the rows.
        let kafka = &job.kafka;
        format!(
            "{} {:?} {:?}",
            topic.identity(),
            kafka.format,
            kafka.columns
        )
    } else {
        let meta = std::fs::metadata(&job.input)
            .map_err(|e| anyhow!("cannot open {}: {e}", job.input.display()))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let input = std::fs::canonicalize(&job.input).unwrap_or_else(|_| job.input.clone());
        format!("{} {} {modified}", input.display(), meta.len())
    };
    let late = match job.late_output.as_deref() {
        Some(path) => Some(path_identity(path)?),
        None => None,
    };
    Ok(format!(
        "input={input}\noutput={} {:?}\nlate={late:?}\nwindow={:?}\nagg={:?}\n\
         columns={} {} {} {}\nemit={:?}\nmax_delay={}\nlateness={}\nbad={:?}\ninterval={}\n\
         partition={:?}\nreaders={:?} {}\nidle={:?}\n",
        path_identity(&job.output)?,
        job.kafka.output_format,
        job.window,
        job.agg,
        job.time_col,
        job.key_col,
        job.value_col,
        job.diff_col,
        job.emit,
        job.max_delay,
        job.allowed_lateness,
        job.on_bad_line,
        job.checkpoint_interval,
        job.partition,
        job.readers,
        job.read_block,
        job.idle_timeout,
    ))
}

/// An output path as the job's identity: a file's name, or a topic's [`KafkaTopic::identity`]
/// (so that a restart naming the broker by another address is the same job, not a new one
/// writing every row again).
fn path_identity(path: &Path) -> anyhow::Result<String> {
    Ok(match kafka_address(path)? {
        Some(topic) => topic.identity(),
        None => path.display().to_string(),
    })
}

/// Refuses what a checkpointed run cannot replay or take back.
fn check_checkpointable(job: &WindowJob) -> anyhow::Result<()> {
    if job.checkpoint_interval == 0 {
        bail!("--checkpoint-interval must be positive");
    }
    if kafka_address(&job.input)?.is_some() {
        // Recovery seeks every partition to its checkpointed offset, or re-reads it from its
        // beginning (a Kafka output): per-partition stamps do not depend on interleaving, so
        // either stamps every record as the first run did.
        return Ok(());
    }
    let stdin = job.input == Path::new("-") || job.input == Path::new("/dev/stdin");
    if stdin {
        bail!(
            "--checkpoint-dir needs a file as --input: standard input cannot be read again to resume after a crash"
        );
    }
    let meta = std::fs::metadata(&job.input)
        .map_err(|e| anyhow!("cannot open {}: {e}", job.input.display()))?;
    if !meta.is_file() {
        bail!(
            "--checkpoint-dir needs a regular file as --input: {} (a FIFO or device) cannot be read again to resume after a crash",
            job.input.display()
        );
    }
    Ok(())
}

/// Checks that `output`, which a finished run committed with `length` bytes, still holds
/// them: a result deleted, cut short or appended to since is not reported complete (a check of
/// the length, not of every byte).
fn check_finished(output: &Path, length: Option<u64>, dir: &Path) -> anyhow::Result<()> {
    let Some(length) = length else {
        return Ok(());
    };
    let again = format!(
        "remove the checkpoint directory {} to compute it again",
        dir.display()
    );
    match std::fs::metadata(output) {
        Ok(meta) if meta.len() == length => Ok(()),
        Ok(meta) => bail!(
            "{} has {} bytes, but the finished run in {} committed {length}: it changed since; {again}",
            output.display(),
            meta.len(),
            dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} is gone, but the finished run in {} committed it ({length} bytes); {again}",
            output.display(),
            dir.display()
        ),
        Err(e) => bail!("cannot read {}: {e}", output.display()),
    }
}

/// Refuses an output (`flag` names it) that is a file the checkpoint directory `dir` writes
/// (its manifest, lock, snapshots or their temporary files, [`is_checkpoint_file`]): the
/// checkpoint would overwrite the output, or the output the checkpoint (review, 2026-11-30:
/// `--output DIR/MANIFEST` replaced the commit point with rows). Other names in `dir` are
/// allowed.
///
/// Errors: one line naming the flag, the file and the directory.
fn check_outside(flag: &str, output: &Path, dir: &Path) -> anyhow::Result<()> {
    let Ok(resolved) = crate::output::resolve(output) else {
        // Not a name a file can be created at: opening it says why.
        return Ok(());
    };
    let dir =
        std::fs::canonicalize(dir).map_err(|e| anyhow!("checkpoint {}: {e}", dir.display()))?;
    let name = resolved
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let inside = resolved.parent() == Some(dir.as_path());
    if inside && name.is_some_and(|n| n == "LOCK" || is_checkpoint_file(&n)) {
        bail!(
            "{flag} {}: the checkpoint directory {} writes a file of that name; name the output \
             otherwise or place it outside the directory",
            output.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Opens the committed outputs of a checkpointed run, fresh or resumed after `resume`; writes
/// the headers of fresh ones. Returns `Ok(None)` when the checkpoint says the run finished.
fn open_committed(
    job: &WindowJob,
    late_columns: Option<Vec<String>>,
    dir: &Path,
    results: &mut Vec<Output>,
) -> anyhow::Result<Option<(CommitFiles, Checkpointing, Option<Restore>)>> {
    let workers = (job.cluster.workers * job.cluster.addresses.len().max(1)) as u32;
    let hash = config_hash(&job_text(job)?);
    let outside = |dir: &Path| -> anyhow::Result<()> {
        check_outside("--output", &job.output, dir)?;
        match &job.late_output {
            Some(late) => check_outside("--late-output", late, dir),
            None => Ok(()),
        }
    };
    // Before opening (a checkpoint in force would otherwise be called foreign: the output's
    // name is part of the job), or, for a directory the opening creates, once it exists.
    let existed = dir.is_dir();
    if existed {
        outside(dir)?;
    }
    let (dir, resume) = CheckpointDir::open(dir, hash, workers)?;
    if !existed {
        outside(dir.path())?;
    }
    let restore = Restore::from(&resume, job, dir.path())?;
    let (resumed, lengths, resumed_final) = match resume {
        Resume::Complete { snapshots } => {
            // The final commit's lengths, changelog first (worker 0 writes the outputs).
            let committed: Vec<u64> = snapshots
                .iter()
                .find(|s| s.worker == 0)
                .map(|s| s.sinks.iter().map(|(_, n)| *n).collect())
                .unwrap_or_default();
            let outputs = std::iter::once(&job.output).chain(job.late_output.as_ref());
            for (output, length) in outputs.zip(committed.iter().map(Some).chain([None; 2])) {
                Output::finish_resumed(output)?;
                check_finished(output, length.copied(), dir.path())?;
            }
            crate::abort::say(format_args!(
                "tidemark window: the result in {} is complete (checkpoint {}); nothing to do",
                job.output.display(),
                dir.path().display()
            ));
            return Ok(None);
        }
        Resume::Fresh => (None, Vec::new(), None),
        Resume::From {
            time, snapshots, ..
        } => {
            let snapshot = snapshots
                .into_iter()
                .map(|(_, snapshot)| snapshot)
                .find(|s| s.worker == 0)
                .ok_or_else(|| {
                    anyhow!(
                        "checkpoint {}: no snapshot of worker 0, which writes the outputs",
                        dir.path().display()
                    )
                })?;
            let lengths: Vec<u64> = snapshot.sinks.iter().map(|(_, n)| *n).collect();
            let last = (time == u64::MAX).then_some(snapshot);
            (Some(time), lengths, last)
        }
    };
    let expected = 1 + usize::from(job.late_output.is_some());
    if resumed.is_some() && lengths.len() != expected {
        bail!(
            "checkpoint {}: it commits {} files, this run writes {expected}",
            dir.path().display(),
            lengths.len()
        );
    }
    let mut open = |path: &Path, header: &[String], index: usize| -> anyhow::Result<CommitFile> {
        let (output, mut writer, sync) =
            Output::create_resumable(path, lengths.get(index).copied())?;
        results.push(output);
        if resumed.is_none() {
            let mut csv = csv::Writer::from_writer(Vec::new());
            csv.write_record(header)?;
            csv.flush()?;
            writer.write_all(csv.get_ref())?;
            writer.flush()?;
        }
        Ok(CommitFile {
            name: path.display().to_string(),
            writer,
            sync,
        })
    };
    let header: Vec<String> = CHANGELOG_HEADER.iter().map(|s| s.to_string()).collect();
    let output = open(&job.output, &header, 0)?;
    let late = match (&job.late_output, late_columns) {
        (Some(path), Some(columns)) => Some(open(path, &columns, 1)?),
        _ => None,
    };
    if let Some(time) = resumed {
        // Said once the outputs are open: a run that cannot resume says only why not.
        crate::abort::say(format_args!(
            "tidemark window: resuming from the checkpoint at time {} in {}",
            if time == u64::MAX {
                "end".to_string()
            } else {
                time.to_string()
            },
            dir.path().display()
        ));
    }
    let dir = Arc::new(dir);
    let last = Arc::new(Mutex::new(None));
    let files = CommitFiles {
        output,
        late,
        dir: Arc::clone(&dir),
        interval: job.checkpoint_interval,
        min_pause: std::time::Duration::from_millis(job.checkpoint_min_pause),
        resumed,
        last: Arc::clone(&last),
        workers,
    };
    Ok(Some((
        files,
        Checkpointing {
            dir,
            last,
            resumed_final,
        },
        restore,
    )))
}

/// The canonical checkpoint directory `dir` (which must exist) of a run of `job` with a Kafka
/// output, and the job id naming its transactions and consumer group: a hash of the directory
/// and everything that decides the rows.
fn kafka_job(job: &WindowJob, dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    let dir =
        std::fs::canonicalize(dir).map_err(|e| anyhow!("checkpoint {}: {e}", dir.display()))?;
    let hash = config_hash(&format!("dir={}\n{}", dir.display(), job_text(job)?));
    Ok((dir, format!("tidemark-{hash:016x}")))
}

/// Opens the exactly-once Kafka output of a checkpointed run (see [`KafkaCommit`]): its
/// transactional id and consumer group name the job (the checkpoint directory and everything
/// that decides the rows). Returns `Ok(None)` when the previous run committed everything.
fn open_transactional(
    job: &WindowJob,
    topic: &KafkaTopic,
    late: Option<&KafkaTopic>,
    dir: &Path,
) -> anyhow::Result<Option<KafkaCommit>> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("checkpoint {}: {e}", dir.display()))?;
    let (dir, job_id) = kafka_job(job, dir)?;
    let topics: Vec<KafkaTopic> = std::iter::once(topic).chain(late).cloned().collect();
    let format = job.kafka.output_format;
    let mut commit = KafkaCommit::open(&topics, format, &job_id, &dir).map_err(|e| anyhow!(e))?;
    if commit.complete() {
        crate::abort::say(format_args!(
            "tidemark window: the result in {} is complete (job {job_id}); nothing to do",
            topic.url()
        ));
        return Ok(None);
    }
    if let Some(why) = commit.transactions_refused() {
        crate::abort::say(format_args!(
            "tidemark window: {} lists EndTxn but refuses a transactional producer ({why}); \
             writing by deterministic replay",
            topic.url()
        ));
    }
    if let Some(time) = commit.resumed {
        crate::abort::say(format_args!(
            "tidemark window: resuming from the checkpoint at time {time} committed to {}",
            topic.url()
        ));
    }
    if commit.already_written() > 0 || commit.read_back() > 0 {
        crate::abort::say(format_args!(
            "tidemark window: {} already holds {} rows of job {job_id} up to its last commit \
             and {} past it (a broker without transactions: deterministic replay; {} messages \
             read back); checking those past it and sending the rest",
            topic.url(),
            commit.before_tails(),
            commit.already_written(),
            commit.read_back()
        ));
    }
    commit.interval = job.checkpoint_interval;
    commit.min_pause = Duration::from_millis(job.checkpoint_min_pause);
    Ok(Some(commit))
}

/// What a run restores from a checkpoint: every worker's operator states at its cut.
struct Restore {
    /// The cut.
    time: u64,
    /// Per worker (global index): its snapshot file (for messages) and its states by
    /// operator id.
    workers: Vec<(PathBuf, OperatorStates)>,
    /// Per worker: its source's state (`None` on a worker without a reader).
    sources: Vec<Option<SourceState>>,
}

impl Restore {
    /// The restore that `resume` calls for in a run of `job`: `None` when it starts afresh,
    /// resumes after its final commit, or replays (the checkpoint holds no operator states:
    /// `--emit updates`). The checkpoint in `dir` must have been written by as many workers.
    ///
    /// Errors: another worker count, a missing worker, a source state that does not decode;
    /// each names the checkpoint.
    fn from(resume: &Resume, job: &WindowJob, dir: &Path) -> anyhow::Result<Option<Restore>> {
        let Resume::From {
            time,
            workers,
            snapshots,
        } = resume
        else {
            return Ok(None);
        };
        let stateful = snapshots.iter().any(|(_, s)| !s.operators.is_empty());
        if *time == u64::MAX || !stateful || job.emit != EmitMode::Final {
            return Ok(None);
        }
        let here = job.cluster.workers * job.cluster.addresses.len().max(1);
        if *workers as usize != here {
            bail!(
                "checkpoint {}: written by a run of {workers} workers (all processes together), this run has {here}; \
                 restart with {workers} workers, or remove the directory to start over",
                dir.display()
            );
        }
        let mut by_worker: Vec<Option<(PathBuf, OperatorStates)>> = vec![None; here];
        for (path, snapshot) in snapshots {
            if let Some(slot) = by_worker.get_mut(snapshot.worker as usize) {
                *slot = Some((path.clone(), snapshot.operators.iter().cloned().collect()));
            }
        }
        let mut restore = Restore {
            time: *time,
            workers: Vec::new(),
            sources: Vec::new(),
        };
        for (worker, entry) in by_worker.into_iter().enumerate() {
            let (path, states) = entry.ok_or_else(|| {
                anyhow!(
                    "checkpoint {}: it holds no snapshot of worker {worker}",
                    dir.display()
                )
            })?;
            let source = match states.iter().find(|(id, _)| id.ends_with(":Source")) {
                Some((id, bytes)) => {
                    crate::stash::decode::<Option<SourceState>>(bytes).map_err(|e| {
                        anyhow!(
                            "checkpoint {}: the state of operator {id} does not decode ({e})",
                            path.display()
                        )
                    })?
                }
                None => bail!(
                    "checkpoint {}: it holds no state of the source",
                    path.display()
                ),
            };
            restore.sources.push(source);
            restore.workers.push((path, states));
        }
        Ok(Some(restore))
    }
}

fn run_with<A>(job: WindowJob, agg: A) -> anyhow::Result<()>
where
    A: Aggregator<CsvRecord> + Send + Sync,
    A::Output: Display + Debug + Ord + std::hash::Hash,
{
    let cluster = job.cluster.clone();
    let inject = injected_failure()?;
    let all_workers = cluster.workers * cluster.addresses.len().max(1);
    if let Some((index, _)) = inject.filter(|(index, _)| *index >= all_workers) {
        // A test hook that names no worker would inject nothing: a test that cannot fail.
        bail!("{FAIL_WORKER_VAR}: there is no worker {index} ({all_workers} workers in all)");
    }
    let columns = Columns {
        time: job.time_col.clone(),
        key: job.key_col.clone(),
        value: (job.agg != AggName::Count).then(|| job.value_col.clone()),
        diff: job.diff_col.clone(),
        retractions: job.emit == EmitMode::Updates,
    };
    let kafka_out = kafka_address(&job.output)?;
    let kafka_in = kafka_address(&job.input)?;
    let kafka_late = match job.late_output.as_deref() {
        Some(path) => kafka_address(path)?,
        None => None,
    };
    refuse_shared_topics(&[
        ("--input", kafka_in.as_ref()),
        ("--output", kafka_out.as_ref()),
        ("--late-output", kafka_late.as_ref()),
    ])?;
    let kafka_input = match kafka_in {
        Some(topic) => Some(Arc::new(open_kafka_input(&job, topic, columns.clone())?)),
        None => None,
    };
    if job.checkpoint_dir.is_some() {
        if let (Some(out), Some(late)) = (&kafka_out, &kafka_late) {
            // One producer, connected to the output's brokers, writes both topics in the same
            // transactions (or replay): it would write the late rows to a topic of that name
            // on the output's cluster.
            // An unreachable broker or a missing topic is said as such first.
            late.partitions().map_err(|e| anyhow!(e))?;
            if out.same_cluster(late).map_err(|e| anyhow!(e))?.is_none() {
                bail!(
                    "--late-output {} with --checkpoint-dir must be on the cluster of --output \
                     {}: the late rows go out in the output's exactly-once commits, which cannot \
                     span two clusters",
                    late.url(),
                    out.url()
                );
            }
        }
        if kafka_out.is_none() && kafka_late.is_some() {
            // A file output's commit cannot hold rows sent to a topic.
            bail!(
                "--late-output kafka://... with --checkpoint-dir needs a Kafka --output: the \
                 late rows go out in the output topic's exactly-once commits, which a file \
                 output does not make"
            );
        }
        if kafka_out.is_some() && job.late_output.is_some() && kafka_late.is_none() {
            // The late file would be written outside the Kafka output's commit: a crash
            // would lose or repeat late rows, which --checkpoint-dir promises it does not.
            bail!(
                "--late-output cannot be used with --checkpoint-dir and a Kafka --output: the \
                 late file is not part of the topic's exactly-once commit, so a crash could \
                 lose or repeat late rows; drop --late-output or write --output to a file"
            );
        }
        if kafka_input.is_some() && job.idle_timeout.is_some() {
            bail!(
                "--checkpoint-dir with a Kafka --input cannot use --idle-timeout: recovery re-reads or seeks each partition, and processing-time watermarks would differ"
            );
        }
    }

    // A regular file never idles: it is all there. Where its reader waits (for its parsing
    // thread), an idle timeout would advance the watermark by processing time, differently in
    // every run, so its results and a checkpoint's replay would depend on timing (review,
    // 2026-11-30). The timeout applies to live inputs only: standard input, a pipe, Kafka.
    let file_input =
        kafka_input.is_none() && std::fs::metadata(&job.input).is_ok_and(|m| m.is_file());
    let idle_timeout = job.idle_timeout.filter(|_| !file_input);
    // A file is read by every worker unless the user or a live input says otherwise; an idle
    // timeout is about a live input, whose watermark then follows processing time. A single
    // worker reads faster with the one reader, whose thread parses beside the worker.
    let mut parallel = job.readers == Readers::All
        && kafka_input.is_none()
        && job.input.as_os_str() != "-"
        && idle_timeout.is_none()
        && all_workers > 1;
    // Blocks are read by seeking to byte offsets found from the file's length: a pipe
    // (`<(zcat f.gz)`, a FIFO) or a device can be read once, front to back, by one reader. A missing file fails
    // when it is opened, with the reader's message.
    let regular =
        kafka_input.is_some() || std::fs::metadata(&job.input).map_or(true, |m| m.is_file());
    if parallel && !regular {
        // Every process must build the same dataflow: one process alone cannot fall back.
        if cluster.addresses.len() > 1 {
            bail!(
                "{}: not a regular file, which every worker of every process reads a share of \
                 (--readers all); use --readers one, where process 0 reads it",
                job.input.display()
            );
        }
        parallel = false;
    }
    // The leader opens everything before the cluster starts, so bad input fails fast; with
    // parallel readers every process opens (and cuts) the input.
    let mut plan = None;
    let mut leader = None;
    let mut results = Vec::new();
    let mut checkpointing = None;
    let in_parts = is_part_dir(&job.output)
        || (kafka_late.is_none() && job.late_output.as_deref().is_some_and(is_part_dir));
    if in_parts && job.checkpoint_dir.is_some() {
        bail!("--checkpoint-dir commits single output files; --output and --late-output must be files, not directories, with it");
    }
    // Every worker's operator states, when the run resumes from a checkpoint that holds them.
    let mut restore: Option<Restore> = None;
    if let Some(dir) = &job.checkpoint_dir {
        crate::checkpoint::check_crash_var().map_err(|e| anyhow!(e))?;
        if cluster.is_leader() {
            check_checkpointable(&job)?;
        } else if CheckpointDir::is_complete(dir)
            || match &kafka_out {
                // A Kafka output's completion is in the topic's consumer group, not the
                // directory (see `open_transactional`).
                Some(topic) if dir.is_dir() => {
                    let (_, job_id) = kafka_job(&job, dir)?;
                    crate::sink::kafka::job_complete(topic, &job_id).map_err(|e| anyhow!(e))?
                }
                _ => false,
            }
        {
            // Process 0 finds the same and ends at once: waiting for it would wait forever.
            crate::abort::say(format_args!(
                "tidemark window: the result is complete (checkpoint {}); nothing to do",
                dir.display()
            ));
            return Ok(());
        } else {
            // Process 0 holds the lock and checks the job; the others read their workers'
            // states from the same directory (on a shared file system across hosts).
            let resume = CheckpointDir::peek(dir)?;
            restore = Restore::from(&resume, &job, dir)?;
        }
    }
    let mut parts = Parts::default();
    if cluster.is_leader() {
        // A part of this process, not the directory, is what must differ from the others.
        let named = |path: &Path| match is_part_dir(path) {
            true => part_path(path, cluster.process),
            false => path.to_path_buf(),
        };
        let (output, late_output) = (named(&job.output), job.late_output.as_deref().map(named));
        let mut outputs = vec![];
        if kafka_out.is_none() {
            outputs.push(("--output", output.as_path()));
        }
        if kafka_late.is_none() {
            outputs.extend(late_output.iter().map(|p| ("--late-output", p.as_path())));
        }
        let input = kafka_input
            .is_none()
            .then_some(("--input", job.input.as_path()));
        check_distinct(input, &outputs)?;
        let (feed, header) = match &kafka_input {
            // Every worker opens its own partitions once the cluster runs.
            Some(kafka) => (None, csv::StringRecord::from(kafka.options.format.header())),
            None => {
                let (feed, header) = open_input(&job, parallel, columns.clone())?;
                (Some(feed), header)
            }
        };
        // Only a late output adds columns that an input column could clash with: without one,
        // an input column named `window_start` is an ordinary column (as the README says).
        let late_columns = job
            .late_output
            .as_ref()
            .map(|_| late_header(&header, &job.diff_col, job.emit == EmitMode::Updates))
            .transpose()
            .map_err(|column| {
                anyhow!(
                    "{}:{}: field '{column}': the late output adds a column of that name; rename it in the input",
                    job.input.display(),
                    feed.as_ref().map_or(1, Input::header_line)
                )
            })?;
        let writers = match (&job.checkpoint_dir, kafka_out.as_ref()) {
            (Some(dir), Some(topic)) => {
                match open_transactional(&job, topic, kafka_late.as_ref(), dir)? {
                    Some(commit) => Writers::KafkaCommit {
                        commit: Box::new(commit),
                        late_columns,
                    },
                    None => return Ok(()),
                }
            }
            (Some(dir), None) => match open_committed(&job, late_columns, dir, &mut results)? {
                Some((files, state, restored)) => {
                    restore = restored;
                    checkpointing = Some(state);
                    Writers::Commit(Box::new(files))
                }
                None => return Ok(()),
            },
            (None, _) => {
                parts = Parts::open(&job, cluster.process, Some(&header), &mut results)?;
                let output = match &kafka_out {
                    Some(topic) => {
                        let format = job.kafka.output_format;
                        Err(KafkaWriter::open(topic, format).map_err(|e| anyhow!(e))?)
                    }
                    None if parts.output.is_some() => Ok(None),
                    None => {
                        let (result, mut output) = create(&job.output)?;
                        results.push(result);
                        output.write_record(CHANGELOG_HEADER)?;
                        Ok(Some(Box::new(output)))
                    }
                };
                let late = match (&job.late_output, late_columns, kafka_late.as_ref()) {
                    (Some(_), Some(_), _) if parts.late.is_some() => None,
                    (Some(_), Some(columns), Some(topic)) => {
                        let format = job.kafka.output_format;
                        let writer = KafkaWriter::open(topic, format).map_err(|e| anyhow!(e))?;
                        Some(LateWriter::Kafka {
                            writer: Box::new(writer),
                            columns,
                        })
                    }
                    (Some(path), Some(late_columns), _) => {
                        let (result, mut late) = create(path)?;
                        results.push(result);
                        late.write_record(&late_columns)?;
                        Some(LateWriter::File(Box::new(late)))
                    }
                    _ => None,
                };
                match output {
                    Ok(output) => Writers::Plain { output, late },
                    Err(producer) => Writers::Kafka {
                        output: Box::new(producer),
                        late,
                    },
                }
            }
        };
        let feed = match feed {
            Some(Input::One(feed)) => match restore.as_ref().and_then(|r| r.sources[0].as_ref()) {
                // The reader resumes at its position at the cut: the rows before it are not
                // read again.
                Some(state) => Some(
                    CsvFeed::open_at(
                        &job.input,
                        columns.clone(),
                        job.on_bad_line,
                        job.max_delay,
                        Some(state),
                    )?
                    .0,
                ),
                None => Some(feed),
            },
            Some(Input::All(blocks)) => {
                plan = Some(blocks);
                None
            }
            None => None,
        };
        leader = Some((feed, writers));
    } else if kafka_input.is_some() {
        crate::abort::say(format_args!(
            "note: process {} reads its share of the topic's partitions and leaves --output and --late-output to process 0; they are not used here",
            cluster.process
        ));
    } else if parallel {
        let (input, header) = open_input(&job, parallel, columns.clone())?;
        if let Input::All(blocks) = input {
            plan = Some(blocks);
        }
        parts = Parts::open(&job, cluster.process, Some(&header), &mut results)?;
        crate::abort::say(format_args!(
            "note: process {} reads its share of --input and leaves --output and --late-output to process 0; they are not used here{}",
            cluster.process,
            if in_parts { ", except for this process's part files" } else { "" }
        ));
    } else {
        parts = Parts::open(&job, cluster.process, None, &mut results)?;
        crate::abort::say(format_args!(
            "note: process {} leaves --input, --output and --late-output to process 0; they are not used here{}",
            cluster.process,
            if in_parts { ", except for this process's part files" } else { "" }
        ));
    }
    let name = |path: &Path| match path.to_str() {
        Some("-") => "standard output".to_string(),
        _ => path.display().to_string(),
    };
    let output_name = name(&job.output);
    let late_name = job.late_output.as_deref().map(name).unwrap_or_default();
    let stats = match (&plan, &leader) {
        // The records of this process's partitions (all of them with one process).
        (_, Some(_)) if kafka_input.is_some() => kafka_input.as_ref().map(|k| Arc::clone(&k.stats)),
        (Some(plan), Some(_)) => Some(plan.stats()),
        (None, Some((Some(feed), _))) => Some(feed.stats()),
        _ => None,
    };
    let leader = Arc::new(Mutex::new(leader));
    // Held here too, so the writers outlive the outputs if the cluster fails to start: the
    // outputs, dropped first, disown their writers, which then write nothing (no header).
    let writers = Arc::clone(&leader);

    let (assigner, lateness, partitioner, emit) = (
        job.window,
        job.allowed_lateness,
        job.partition.clone(),
        job.emit,
    );
    let source_options = SourceOptions {
        idle_timeout: idle_timeout.map(Duration::from_millis),
        ..SourceOptions::default()
    };
    let checkpointed = job.checkpoint_dir.is_some();
    let to_kafka = kafka_out.is_some();
    let late_to_kafka = kafka_late.is_some();
    // Operator snapshots: the window operators' state and the readers' positions (one reader's,
    // every parallel reader's, or a Kafka reader's: each partition's offset and watermark). The
    // differential path (`--emit updates`) and a Kafka output (whose commit holds no snapshots:
    // its recovery re-reads each partition from its beginning) replay the input instead.
    let snapshots = checkpointed && emit == EmitMode::Final && !to_kafka;
    let interval = job.checkpoint_interval;
    // Cuts are every `k * interval`; which ones a run takes only decides when it can commit,
    // not what it commits, as long as every operator of every worker takes the same ones. A
    // fresh run starts at the last cut below the first row's watermark: with event times in
    // epoch milliseconds the cuts from 0 on (10^11 of them at a 10 s interval) would each be
    // taken in turn, with the same states, before the first record's. (Every process reads
    // the same first row; of a topic, each partition's first message. Gaps in the data still
    // cost a cut per interval.)
    let first_cut = match &restore {
        Some(r) => r.time.saturating_add(interval),
        None if snapshots => match &kafka_input {
            // Every process asks the broker: a topic written meanwhile may answer processes
            // differently, which only delays the first commit (see `commit_sink`).
            Some(kafka) => {
                let all: Vec<i32> = (0..kafka.partitions as i32).collect();
                KafkaFeed::first_event_time(&kafka.topic, &all, &kafka.options)
            }
            None => crate::source::csv::first_event_time(&job.input, columns.clone()),
        }
        .map_or(0, |ts| {
            ts.saturating_sub(job.max_delay) / interval * interval
        }),
        None => 0,
    };
    let restore = restore.map(Arc::new);
    let plan = plan.map(Arc::new);
    let running = cluster.execute(move |worker| {
        let mine = if worker.index() == 0 {
            leader.lock().ok().and_then(|mut l| l.take())
        } else {
            None
        };
        let (feed, writers) = match mine {
            Some((feed, writers)) => (feed, Some(writers)),
            None => (None, None),
        };
        let feed_error = Rc::new(RefCell::new(None));
        let write_error = Rc::new(RefCell::new(None));
        let late_write_error = Rc::new(RefCell::new(None));
        let commit_error = Rc::new(RefCell::new(None::<String>));
        let counts = Rc::new(RefCell::new(ChangelogCounts::default()));
        let late_count = Rc::new(RefCell::new(0u64));
        let (agg, partitioner) = (agg.clone(), partitioner.clone());
        let invalid = Rc::new(RefCell::new(Invalid::default()));
        // Kafka: this worker's partitions (global index modulo all workers), if it has any.
        let kafka_feed = kafka_input.as_ref().and_then(|kafka| {
            let mine = partitions_of(worker.index(), worker.peers(), kafka.partitions);
            if mine.is_empty() {
                return None;
            }
            let stats = Arc::clone(&kafka.stats);
            let restored = restore
                .as_ref()
                .and_then(|r| r.sources.get(worker.index()))
                .and_then(Option::as_ref);
            match KafkaFeed::open(&kafka.topic, &mine, &kafka.options, stats, restored) {
                Ok(feed) => Some(feed),
                Err(e) => abort::fail(&e.to_string(), 1),
            }
        });
        let collector =
            snapshots.then(|| Rc::new(RefCell::new(Collector::new(first_cut, interval))));
        let checkpoints = match (&collector, restore.as_ref()) {
            (Some(collector), Some(restore)) => {
                let states = restore
                    .workers
                    .get(worker.index())
                    .map(|(_, states)| states.clone())
                    .unwrap_or_default();
                Checkpoints::restoring(Rc::clone(collector) as _, states)
            }
            (Some(collector), None) => Checkpoints::new(Rc::clone(collector) as _),
            (None, _) => Checkpoints::default(),
        };
        let readers = match (&plan, &kafka_input) {
            (Some(_), _) => worker.peers(),
            (None, Some(kafka)) => worker.peers().min(kafka.partitions as usize),
            (None, None) => 1,
        };
        let probe = worker.dataflow::<u64, _, _>(|scope| {
            // Each reader is held back while the writers (and so every operator before them)
            // are more than its share of `AHEAD` batches behind (see `Sinks::write`). With
            // `--emit final` on-time records go at the watermark (exact for the window
            // operators, see `source`); with `--emit updates` a batch goes at the watermark
            // too, each record carrying its stamp as its update's time (exact for differential,
            // see `source`).
            let consumed = ProbeHandle::new();
            let pacing = Pacing {
                send_at: SendAt::Watermark,
                ahead: Some((consumed.clone(), ahead_per_reader(readers))),
            };
            // The source registers first: its id is `0:Source` on every worker.
            let (cut, _own) = checkpoints.cut_restored::<Option<SourceState>>("Source");
            let source = JobSource {
                plan: plan.as_ref(),
                restored: restore.as_ref().map(|r| &r.sources[..]),
                kafka: kafka_input.as_ref().map(|k| (kafka_feed, k.partitions)),
                feed,
                options: source_options,
                pacing,
                error: Rc::clone(&feed_error),
                cut,
            };
            let snapshots = collector
                .as_ref()
                .map(|c| snapshot_stream(scope, Rc::clone(c), checkpoints.clone()));
            let sinks = Sinks {
                writers,
                parts: parts.clone(),
                counts: Rc::clone(&counts),
                late_count: Rc::clone(&late_count),
                write_error: Rc::clone(&write_error),
                late_write_error: Rc::clone(&late_write_error),
                commit_error: Rc::clone(&commit_error),
                paced: consumed,
                checkpointed,
                to_kafka,
                late_to_kafka,
                snapshots,
            };
            match emit {
                EmitMode::Final => final_windows(
                    source.open(scope),
                    &checkpoints,
                    assigner,
                    lateness,
                    partitioner,
                    agg,
                    sinks,
                ),
                EmitMode::Updates => incremental_windows(
                    source.open(scope),
                    assigner,
                    lateness,
                    partitioner,
                    agg,
                    sinks,
                    Rc::clone(&invalid),
                ),
            }
        });
        if let Err(e) = checkpoints.restore_result() {
            let file = restore
                .as_ref()
                .and_then(|r| r.workers.get(worker.index()))
                .map(|(path, _)| path.display().to_string())
                .unwrap_or_default();
            abort::fail(&format!("checkpoint {file}: {e}"), 1);
        }
        let fail_here = inject.filter(|(index, _)| *index == worker.index());
        // Every failure ends the whole run at once, leaving open windows open: a worker that
        // merely stopped would leave the others waiting, and closing the windows would emit
        // them as final.
        // Also after the last step: an error raised in it (the final flush or commit, at the
        // end of the input) fails the run as well.
        let check_errors = || {
            if let Some(e) = feed_error.borrow_mut().take() {
                abort::fail(&e.to_string(), 1);
            }
            if let Some(e) = write_error.borrow_mut().take() {
                abort::fail(&format!("writing {output_name}: {e}"), 1);
            }
            if let Some(e) = late_write_error.borrow_mut().take() {
                abort::fail(&format!("writing {late_name}: {e}"), 1);
            }
            if let Some(e) = commit_error.borrow_mut().take() {
                abort::fail(&e, 1);
            }
        };
        while worker.step_or_park(None) {
            check_errors();
            match fail_here {
                Some((index, true)) => {
                    panic!("injected panic in worker {index} ({FAIL_WORKER_VAR})")
                }
                Some((index, false)) => abort::fail(
                    &format!("worker {index}: injected failure ({FAIL_WORKER_VAR})"),
                    1,
                ),
                None => {}
            }
        }
        check_errors();
        drop(probe);
        if let Some(e) = invalid.borrow().error() {
            abort::fail(&e, 1);
        }
        let counts = *counts.borrow();
        let late = *late_count.borrow();
        WorkerCounts {
            changelog: counts,
            late,
        }
    });
    let running = match running {
        Ok(running) => running,
        Err(e) => {
            drop(results);
            drop(writers);
            return Err(e.into());
        }
    };
    drop(writers);

    let mut report = WorkerCounts::default();
    for worker_report in running.join().map_err(|e| anyhow!("{e}"))? {
        report.changelog.insertions += worker_report.changelog.insertions;
        report.changelog.retractions += worker_report.changelog.retractions;
        report.late += worker_report.late;
    }
    if let Some(state) = checkpointing {
        // Every row is committed and no worker failed: mark the checkpoint complete before
        // the renames, so a crash between them leaves a run that the next one finishes.
        let last = state.last.lock().unwrap_or_else(|p| p.into_inner()).take();
        let snapshot = last
            .or(state.resumed_final)
            .ok_or_else(|| anyhow!("the committing sink ended without its final commit"))?;
        state.dir.commit(u64::MAX, &[snapshot], true)?;
    }
    // Every process finished: the results are complete and may appear under their names.
    for result in results {
        result.commit()?;
    }
    if let Some(stats) = stats {
        let bad = stats.bad_lines.load(Ordering::Relaxed);
        let (insertions, retractions) = (report.changelog.insertions, report.changelog.retractions);
        // A retraction is a correction of an emitted window in the final changelog, and any
        // superseded value in the incremental one.
        let changes = match job.emit {
            EmitMode::Final => format!("{retractions} corrections"),
            EmitMode::Updates => {
                format!("{insertions} insertions and {retractions} retractions in the view")
            }
        };
        crate::abort::say(format_args!(
            "tidemark window: {} records read, {} bad lines skipped, {} windows emitted, {changes}, {} late records{}",
            stats.records.load(Ordering::Relaxed),
            bad,
            insertions - retractions,
            report.late,
            if report.late > 0 && job.late_output.is_none() { " (use --late-output FILE to keep them)" } else { "" },
        ));
    }
    Ok(())
}

/// Where a worker's dataflow writes (the writers only on the leader's worker 0).
struct Sinks<'scope> {
    writers: Option<Writers>,
    /// This process's part files, written by every worker (see [`Parts`]).
    parts: Parts,
    counts: Rc<RefCell<ChangelogCounts>>,
    late_count: Rc<RefCell<u64>>,
    write_error: Rc<RefCell<Option<csv::Error>>>,
    late_write_error: Rc<RefCell<Option<csv::Error>>>,
    commit_error: Rc<RefCell<Option<String>>>,
    /// Whether the run checkpoints: every worker builds the committing sink then (the
    /// dataflow's shape must be the same on all).
    checkpointed: bool,
    /// Whether the changelog goes to Kafka: every worker builds the Kafka sink then.
    to_kafka: bool,
    /// Whether the late rows go to Kafka: every worker builds their Kafka sink then (with
    /// `checkpointed`, the changelog's, which commits both).
    late_to_kafka: bool,
    /// The probe the source is paced by: every sink's input joins it where the writer reads
    /// it (see [`Sinks::write`]), so the source waits for the rows its records become, up to
    /// the writer (and the operators between).
    paced: ProbeHandle<u64>,
    /// This worker's operator snapshots, for the committing sink (with `--emit final`).
    snapshots: Option<StreamVec<'scope, u64, WorkerSnapshot>>,
}

impl<'scope> Sinks<'scope> {
    /// Whether the changelog's rows all go to worker 0 (of process 0) to be written: unless
    /// each process writes a part file of its own (and the run neither commits nor writes to
    /// Kafka, whose sinks gather on worker 0).
    fn gathers_changelog(&self) -> bool {
        self.checkpointed || self.to_kafka || self.parts.output.is_none()
    }

    /// Whether the late rows all go to worker 0 (of process 0) to be written: unless each
    /// process writes a late part file of its own, and the late rows do not go along with a
    /// committing changelog (the file sink's, or Kafka's when the late rows go to Kafka too).
    fn gathers_late(&self) -> bool {
        let committed = self.checkpointed && (!self.to_kafka || self.late_to_kafka);
        committed || self.parts.late.is_none()
    }

    /// Writes the changelog and the late rows (counting both); returns the changelog's probe.
    ///
    /// The source is paced by the writers (`paced` probes what reaches each), not by the
    /// operators before them: with one output file every row goes to worker 0, and a reader
    /// paced by the operators alone filled worker 0's queue without limit when it wrote more
    /// slowly than the others computed (`--emit updates` writes about two rows per input row:
    /// 4 workers held 0.5 GB at 200 k rows, 0.64 GB at 1 M). The writers' frontier is at or
    /// behind every operator's before them, so this paces those too.
    fn write<O>(
        self,
        results: StreamVec<'scope, u64, WindowResult<CsvKey, O>>,
        late: StreamVec<'scope, u64, Late<CsvKey, LateFields>>,
    ) -> ProbeHandle<u64>
    where
        O: timely::ExchangeData + Display + Clone,
    {
        let (probe, results) = results.probe();
        self.written(results, late);
        probe
    }

    /// The sinks of [`Self::write`], each paced by `self.paced`: the file sinks probe what
    /// reaches their writer, the Kafka sinks return what they have taken in.
    fn written<O>(
        self,
        results: StreamVec<'scope, u64, WindowResult<CsvKey, O>>,
        late: StreamVec<'scope, u64, Late<CsvKey, LateFields>>,
    ) where
        O: timely::ExchangeData + Display + Clone,
    {
        let paced = &self.paced;
        let mut kafka = None;
        let mut late_columns = None;
        let (output, late_output) = match self.writers {
            Some(Writers::Commit(files)) => {
                commit_sink(
                    results,
                    late,
                    self.snapshots,
                    Some(*files),
                    self.counts,
                    self.late_count,
                    self.commit_error,
                    paced,
                );
                return;
            }
            Some(Writers::Plain { output, late }) => (output.map(|o| *o), late),
            Some(Writers::Kafka { output, late }) => {
                kafka = Some(KafkaOut::Plain(*output));
                (None, late)
            }
            Some(Writers::KafkaCommit {
                commit,
                late_columns: columns,
            }) => {
                kafka = Some(KafkaOut::Exactly(commit));
                late_columns = columns;
                (None, None)
            }
            None => (None, None),
        };
        let (late_output, late_kafka) = match late_output {
            Some(LateWriter::File(writer)) => (Some(*writer), None),
            Some(LateWriter::Kafka { writer, columns }) => {
                late_columns = Some(columns);
                (None, Some(KafkaOut::Plain(*writer)))
            }
            None => (None, None),
        };
        if self.checkpointed && !self.to_kafka {
            // Not the writing worker of a checkpointed run: its rows go to worker 0's sink.
            commit_sink(
                results,
                late,
                self.snapshots,
                None,
                self.counts,
                self.late_count,
                self.commit_error,
                paced,
            );
            return;
        }
        // The late rows' encoder for a Kafka late output: counted where written (worker 0 of
        // process 0), as for a file.
        let late_count = self.late_count;
        let columns = late_columns.unwrap_or_default();
        let counted = Rc::clone(&late_count);
        let late_row = move |row: &Late<CsvKey, LateFields>, format, target: usize| {
            *counted.borrow_mut() += 1;
            let (key, payload) = late_message(row, &columns, format);
            (target, key, payload)
        };
        if self.to_kafka {
            let counts = self.counts;
            let changelog_row = move |row: &WindowResult<CsvKey, O>, format| {
                counts.borrow_mut().count(row.diff);
                let (key, payload) = changelog_message(row, format);
                (0, key, payload)
            };
            if self.checkpointed && self.late_to_kafka {
                // Late rows go in the changelog's commits: one sink, one producer, both topics.
                let rows = results
                    .map(KafkaRow::Changelog)
                    .concat(late.map(KafkaRow::Late));
                let encode = move |row: &KafkaRow<O>, format| match row {
                    KafkaRow::Changelog(row) => changelog_row(row, format),
                    KafkaRow::Late(row) => late_row(row, format, 1),
                };
                kafka_sink(rows, kafka, encode, self.commit_error).probe_with(paced);
                return;
            }
            kafka_sink(results, kafka, changelog_row, Rc::clone(&self.commit_error))
                .probe_with(paced);
        } else if let Some(part) = self.parts.output {
            changelog_part_sink(results, part, self.counts, self.write_error, paced);
        } else {
            changelog_sink(results, output, self.counts, self.write_error, paced);
        }
        match self.parts.late {
            Some(part) => late_part_sink(late, part, late_count, self.late_write_error, paced),
            None if self.late_to_kafka => {
                let encode = move |row: &Late<CsvKey, LateFields>, format| late_row(row, format, 0);
                kafka_sink(late, late_kafka, encode, self.commit_error).probe_with(paced);
            }
            None => {
                // Counted where the rows are written (worker 0 of process 0), so the summary
                // counts every process's late records, as the file holds them.
                let late = late
                    .exchange(|_| 0)
                    .inspect(move |_| *late_count.borrow_mut() += 1);
                late_sink(late, late_output, self.late_write_error, paced);
            }
        }
    }
}

type Records<'scope> = StreamVec<'scope, u64, CsvItem>;

/// A row of an exactly-once Kafka output that also takes the late rows: both kinds go through
/// one sink, so an interval's late rows are in the same commit as its changelog rows.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
enum KafkaRow<O> {
    Changelog(WindowResult<CsvKey, O>),
    Late(Late<CsvKey, LateFields>),
}

/// This worker's source, before the type of what it sends is chosen (see [`Payload`]): a
/// file's blocks, a Kafka topic's partitions (`kafka`: `Some`, with this worker's feed if it
/// has partitions), or the single reader (`feed`, on worker 0 of process 0).
struct JobSource<'a> {
    plan: Option<&'a Arc<BlockPlan>>,
    restored: Option<&'a [Option<SourceState>]>,
    /// A Kafka input: this worker's reader, if it reads a partition, and the partition count.
    kafka: Option<(Option<KafkaFeed>, u32)>,
    feed: Option<CsvFeed>,
    options: SourceOptions,
    pacing: Pacing,
    error: Rc<RefCell<Option<ReadError>>>,
    cut: Cut<Option<SourceState>>,
}

impl JobSource<'_> {
    /// The source operator, sending a `P` per record.
    fn open<'scope, P: Payload<CsvItem>>(
        self,
        scope: Scope<'scope, u64>,
    ) -> StreamVec<'scope, u64, P> {
        let JobSource {
            plan,
            restored,
            kafka,
            feed,
            options,
            pacing,
            error,
            cut,
        } = self;
        match (plan, kafka) {
            (Some(plan), _) => block_source(scope, plan, options, pacing, error, cut, restored),
            // Every worker builds the source; those without partitions end it at once.
            (None, Some((kafka, partitions))) => {
                kafka_source(scope, kafka, partitions, options, pacing, error, cut)
            }
            (None, None) => feed_source_paced(scope, feed, options, pacing, error, cut),
        }
    }
}

/// `--emit final`: the timely window operators; returns the probe of the results. The source
/// is paced by the writers (see [`Sinks::write`]).
fn final_windows<'scope, A>(
    records: Records<'scope>,
    checkpoints: &Checkpoints,
    assigner: WindowAssigner,
    lateness: u64,
    partitioner: Partitioner<CsvKey>,
    agg: A,
    sinks: Sinks<'scope>,
) -> ProbeHandle<u64>
where
    A: Aggregator<CsvRecord>,
    A::Output: Display,
{
    // Without `--emit updates` the feed rejects retractions, so every diff is +1.
    let windowed = records
        .map(|(key, record, _)| (key, record))
        .key_by(partitioner)
        .checkpoints(checkpoints)
        .window(assigner)
        .allowed_lateness(lateness)
        // Records that share a time in input order, which several readers do not keep.
        .ordered_by(|r: &CsvRecord| r.pos)
        .aggregate(|r: &CsvRecord| r.ts, agg);
    let late = windowed.late.map(move |late: Late<CsvKey, CsvRecord>| {
        let row = late
            .record
            .row
            .expect("records stamped behind the watermark keep their row");
        Late {
            window: late.window,
            key: late.key,
            record: LateFields { row, diff: None },
        }
    });
    sinks.write(windowed.results, late)
}

/// Windows of keys whose input retracted more than it inserted, as seen by one worker.
#[derive(Default)]
struct Invalid {
    windows: hashbrown::HashMap<(Window, CsvKey), isize>,
}

impl Invalid {
    /// The error to report if some window is still invalid at the end of the input.
    fn error(&self) -> Option<String> {
        let mut bad: Vec<_> = self.windows.iter().filter(|(_, n)| **n != 0).collect();
        bad.sort();
        let ((window, key), _) = bad.first()?;
        Some(format!(
            "the input retracts rows it never inserted: key {key:?}, window [{}, {}) ({} windows in all)",
            window.start,
            window.end,
            bad.len()
        ))
    }
}

/// `--emit updates`: the differential view; returns the probe of the changelog. The source is
/// paced by the writers (see [`Sinks::write`]): it reads ahead of them by a bounded number of
/// batches.
fn incremental_windows<'scope, A>(
    records: StreamVec<'scope, u64, Stamped<CsvItem>>,
    assigner: WindowAssigner,
    lateness: u64,
    partitioner: Partitioner<CsvKey>,
    agg: A,
    sinks: Sinks<'scope>,
    invalid: Rc<RefCell<Invalid>>,
) -> ProbeHandle<u64>
where
    A: Aggregator<CsvRecord>,
    A::Output: Display + Debug + Ord + std::hash::Hash,
{
    // Each record's update at its stamp (the message's time is at or below it: see `source`).
    let updates = records
        .map(|stamped| {
            let (key, record, diff) = stamped.record;
            ((key, record), stamped.time, diff)
        })
        .as_collection();
    // Sessions replay records that share a time in input order, which several readers do
    // not keep: each record's position gives it.
    let view = updates.window_view_ordered(
        partitioner,
        assigner,
        lateness,
        (|r: &CsvRecord| r.ts, |r: &CsvRecord| r.pos),
        agg,
    );
    // Rows that are written on worker 0 go there before they are re-timed: an update travels
    // in the view's batches (one message for many times), and re-timed it travels in a message
    // of its own time. Across the exchange, each message fills a buffer of its own (8 KiB), so
    // re-timing first multiplied what waits for worker 0 by about a hundred: 4 workers held
    // 0.5 GB at 200 k rows and 0.7 GB at 1 M with `--emit updates`, 1 worker 90 MB.
    let results = gathered(view.results, sinks.gathers_changelog());
    let late = gathered(view.late, sinks.gathers_late());
    let results = retime(results)
        .inner
        .map(|((window, key, value), _time, diff)| WindowResult {
            window,
            key,
            value,
            diff: diff as i64,
        });
    // One late row per late input row, with its diff (+1 or -1): an update of multiplicity
    // `n` (identical late rows, consolidated) is `n` rows. Re-timed like the results:
    // differential may send an update under an earlier time's capability, which depends on
    // scheduling, and the committing sink cuts by the time a row travels at.
    let late = retime(late).inner.flat_map(move |(late, _time, diff)| {
        let row = late
            .record
            .row
            .expect("with retractions every record keeps its row");
        let late = Late {
            window: late.window,
            key: late.key,
            record: LateFields {
                row,
                diff: Some(diff.signum() as i64),
            },
        };
        std::iter::repeat_n(late, diff.unsigned_abs())
    });
    let probe = sinks.write(results, late);
    view.invalid.inner.sink(
        timely::dataflow::channels::pact::Pipeline,
        "Invalid",
        move |(input, _frontier)| {
            let mut invalid = invalid.borrow_mut();
            input.for_each(|_cap, data| {
                for (window_key, _time, diff) in data.drain(..) {
                    *invalid.windows.entry(window_key).or_insert(0) += diff;
                }
            });
        },
    );
    probe
}

/// `updates` moved to worker 0 (of process 0) if `gathers`, else left where they are.
fn gathered<'scope, D>(
    updates: VecCollection<'scope, u64, D>,
    gathers: bool,
) -> VecCollection<'scope, u64, D>
where
    D: differential_dataflow::ExchangeData,
{
    if gathers {
        updates.inner.exchange(|_| 0).as_collection()
    } else {
        updates
    }
}
