//! `tidemark window`: its flags, checked into a [`WindowJob`], which
//! [`crate::job::window::run`] runs (the pipeline is assembled there, not here).

use std::path::PathBuf;

use clap::Args;

use crate::cli::ClusterArgs;
use crate::job::window::{AggName, EmitMode, KafkaSettings, Readers, WindowJob};
use crate::partition::Partitioner;
use crate::source::blocks::BLOCK_BYTES;
use crate::source::csv::BadLines;
use crate::source::csv::CsvKey;
use crate::source::kafka::PayloadFormat;
use crate::window::WindowAssigner;

fn millis(text: &str) -> Result<u64, String> {
    crate::units::parse_millis(text).map_err(|e| e.to_string())
}

/// Arguments of `tidemark window`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  tidemark window --input events.csv --output out.csv \
    --window tumbling:10s --agg count --max-delay 2s --late-output late.csv"
)]
pub struct WindowArgs {
    /// Input CSV with a header (`-` for standard input).
    #[arg(long)]
    pub input: PathBuf,
    /// Output CSV: window_start,window_end,key,value,diff (`-` for standard output). A regular
    /// file is replaced only when the run succeeds; a FIFO or device is written as it goes.
    /// A directory (`DIR/`, or one that exists) gets one part per process, DIR/part-N.csv for
    /// process N, each with the header, written by that process's workers: together the
    /// parts hold the single file's rows, in another order (no --checkpoint-dir).
    #[arg(long)]
    pub output: PathBuf,
    /// tumbling:SIZE | sliding:SIZE/SLIDE | session:GAP (plain milliseconds or ms/s/m/h).
    #[arg(long)]
    pub window: WindowAssigner,
    /// The aggregation.
    #[arg(long, value_enum)]
    pub agg: AggName,
    /// Event-time column (non-negative integer milliseconds).
    #[arg(long, default_value = "ts")]
    pub time_col: String,
    /// Key column.
    #[arg(long, default_value = "key")]
    pub key_col: String,
    /// Value column (integers or decimals; not read for count).
    #[arg(long, default_value = "value")]
    pub value_col: String,
    /// Change column, if the input has it: 1 inserts the row, -1 retracts an earlier identical
    /// row (retractions need `--emit updates`).
    #[arg(long, default_value = "diff")]
    pub diff_col: String,
    /// final: one result per window when it closes; updates: the incremental changelog.
    #[arg(long, value_enum, default_value = "final")]
    pub emit: EmitMode,
    /// Watermark delay: the watermark trails the largest event time by this much.
    #[arg(long, default_value = "0", value_parser = millis)]
    pub max_delay: u64,
    /// Records this far behind a window's end still count, as corrections.
    #[arg(long, default_value = "0", value_parser = millis)]
    pub allowed_lateness: u64,
    /// Where records late beyond the allowed lateness go (input columns + missed window); a
    /// directory gets one part per process, as --output does.
    #[arg(long)]
    pub late_output: Option<PathBuf>,
    /// hash | range:K1,K2,... | random | broadcast.
    #[arg(long, default_value = "hash")]
    pub partition: Partitioner<CsvKey>,
    /// What to do with a bad input line.
    #[arg(long, value_enum, default_value = "fail")]
    pub on_bad_line: BadLines,
    /// Advance the watermark with processing time once the input was idle this long (live
    /// inputs: standard input, a pipe, Kafka; a regular file never idles and ignores it).
    #[arg(long, value_parser = millis)]
    pub idle_timeout: Option<u64>,
    /// all: every worker of every process reads a share of the input file (which must be at
    /// the same path on every host); one: worker 0 of process 0 reads it all. Results are the
    /// same. Standard input, a pipe and a single worker use one reader (a cluster refuses a
    /// pipe with --readers all).
    #[arg(long, value_enum, default_value = "all")]
    pub readers: Readers,
    /// Bytes per block of a file read in parallel (tests use small blocks).
    #[arg(long, default_value_t = BLOCK_BYTES, hide = true)]
    pub read_block: u64,
    /// Checkpoint into this directory, and resume from it: running the same command again
    /// after a crash continues from the last checkpoint, and the output holds every row exactly
    /// once (see README, "Checkpoints and recovery"). Needs a regular input and output file.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Event time between checkpoints (with --checkpoint-dir).
    #[arg(long, default_value = "10s", value_parser = millis)]
    pub checkpoint_interval: u64,
    /// Wall-clock time to wait after a commit before the next (with --checkpoint-dir): the
    /// checkpoint times passed meanwhile are committed together, which bounds the cost of
    /// fsyncs on fast input; the output is the same. 0 commits every checkpoint time.
    #[arg(long, default_value = "1s", value_parser = millis)]
    pub checkpoint_min_pause: u64,
    /// Kafka input and output (`kafka://HOST:PORT/TOPIC` as --input or --output).
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Threads, processes and hostfile.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// The flags of Kafka input and output (see README, "Kafka"); used only when --input or
/// --output is a `kafka://HOST:PORT/TOPIC` address.
#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Kafka input: each message is a JSON object or one CSV line (fields named by --columns).
    #[arg(long, value_enum, default_value = "json")]
    pub format: PayloadFormat,
    /// Kafka input with --format csv: the names of a message's fields, in order (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Kafka input: read up to the end offsets found at the start, then finish (without it the
    /// run reads until stopped).
    #[arg(long)]
    pub exit_at_end: bool,
    /// Kafka output: each changelog row as a JSON object or one CSV line.
    #[arg(long, value_enum, default_value = "json")]
    pub output_format: PayloadFormat,
}

impl WindowArgs {
    /// The job these flags describe, with the cluster flags checked (`--workers`,
    /// `--processes`, `--hostfile`, the timeouts).
    ///
    /// Errors: the cluster flags' [`crate::cluster::ClusterError`].
    pub fn job(self) -> anyhow::Result<WindowJob> {
        let cluster = self.cluster.cluster()?;
        let kafka = self.kafka;
        Ok(WindowJob {
            input: self.input,
            output: self.output,
            window: self.window,
            agg: self.agg,
            time_col: self.time_col,
            key_col: self.key_col,
            value_col: self.value_col,
            diff_col: self.diff_col,
            emit: self.emit,
            max_delay: self.max_delay,
            allowed_lateness: self.allowed_lateness,
            late_output: self.late_output,
            partition: self.partition,
            on_bad_line: self.on_bad_line,
            idle_timeout: self.idle_timeout,
            readers: self.readers,
            read_block: self.read_block,
            checkpoint_dir: self.checkpoint_dir,
            checkpoint_interval: self.checkpoint_interval,
            checkpoint_min_pause: self.checkpoint_min_pause,
            kafka: KafkaSettings {
                format: kafka.format,
                columns: kafka.columns,
                exit_at_end: kafka.exit_at_end,
                output_format: kafka.output_format,
            },
            cluster,
        })
    }
}

/// Runs the command: the job its flags describe.
pub fn run(args: WindowArgs) -> anyhow::Result<()> {
    crate::job::window::run(args.job()?)
}
