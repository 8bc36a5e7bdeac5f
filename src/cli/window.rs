//! `tidemark window`: a keyed windowed aggregation of a CSV file into a CSV changelog.
//!
//! Process 0 reads the input (on its worker 0, which defines the watermark by input order) and
//! writes the outputs; every worker of every process aggregates its share of the keys.

use std::cell::RefCell;
use std::fmt::Display;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, ValueEnum};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Probe;

use crate::cli::ClusterArgs;
use crate::cluster::Cluster;
use crate::keyed::KeyBy;
use crate::partition::Partitioner;
use crate::sink::{changelog_sink, late_sink, ChangelogCounts, CHANGELOG_HEADER};
use crate::source::csv::{BadLines, Columns, CsvFeed, CsvRecord};
use crate::source::{feed_source, SourceOptions};
use crate::window::{
    on, parse_millis, Aggregator, Count, Late, Max, Mean, Min, Sum, WindowAssigner,
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

fn millis(text: &str) -> Result<u64, String> {
    parse_millis(text).map_err(|e| e.to_string())
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
    /// Output CSV: window_start,window_end,key,value,diff.
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
    /// Watermark delay: the watermark trails the largest event time by this much.
    #[arg(long, default_value = "0", value_parser = millis)]
    pub max_delay: u64,
    /// Records this far behind a window's end still count, as corrections.
    #[arg(long, default_value = "0", value_parser = millis)]
    pub allowed_lateness: u64,
    /// Where records late beyond the allowed lateness go (input columns + missed window).
    #[arg(long)]
    pub late_output: Option<PathBuf>,
    /// hash | range:K1,K2,... | random | broadcast.
    #[arg(long, default_value = "hash")]
    pub partition: Partitioner<String>,
    /// What to do with a bad input line.
    #[arg(long, value_enum, default_value = "fail")]
    pub on_bad_line: BadLines,
    /// Advance the watermark with processing time once the input was idle this long.
    #[arg(long, value_parser = millis)]
    pub idle_timeout: Option<u64>,
    /// Threads, processes and hostfile.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Runs the command.
pub fn run(args: WindowArgs) -> anyhow::Result<()> {
    let value = |r: &CsvRecord| r.value;
    match args.agg {
        AggName::Count => run_with(args, Count),
        AggName::Sum => run_with(args, on(Sum, value)),
        AggName::Min => run_with(args, on(Min, value)),
        AggName::Max => run_with(args, on(Max, value)),
        AggName::Mean => run_with(args, on(Mean, value)),
    }
}

/// What the leader's worker reports at the end.
#[derive(Default)]
struct Report {
    changelog: ChangelogCounts,
    late: u64,
}

fn create(path: &Path) -> anyhow::Result<csv::Writer<BufWriter<File>>> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(csv::Writer::from_writer(BufWriter::new(file)))
}

fn run_with<A>(args: WindowArgs, agg: A) -> anyhow::Result<()>
where
    A: Aggregator<CsvRecord> + Send + Sync,
    A::Output: Display,
{
    let cluster = Cluster::new(
        args.cluster.workers,
        args.cluster.processes,
        args.cluster.process,
        args.cluster.hostfile.as_deref(),
    )?;
    let columns = Columns {
        time: args.time_col.clone(),
        key: args.key_col.clone(),
        value: (args.agg != AggName::Count).then(|| args.value_col.clone()),
    };

    // The leader opens everything before the cluster starts, so bad input fails fast.
    let mut leader = None;
    if cluster.is_leader() {
        let (feed, header) = CsvFeed::open(&args.input, columns, args.on_bad_line, args.max_delay)?;
        let mut output = create(&args.output)?;
        output.write_record(CHANGELOG_HEADER)?;
        let late = match &args.late_output {
            Some(path) => {
                let mut late = create(path)?;
                late.write_record(header.iter().chain(["window_start", "window_end"]))?;
                Some(late)
            }
            None => None,
        };
        leader = Some((feed, output, late));
    }
    let stats = leader.as_ref().map(|(feed, _, _)| feed.stats());
    let leader = Arc::new(Mutex::new(leader));

    let (assigner, lateness, partitioner) =
        (args.window, args.allowed_lateness, args.partition.clone());
    let source_options = SourceOptions {
        idle_timeout: args.idle_timeout.map(Duration::from_millis),
        ..SourceOptions::default()
    };
    let started = cluster.watchdog(Duration::from_millis(args.cluster.connect_timeout));
    let guards = timely::execute(cluster.config(), move |worker| {
        started.store(true, Ordering::SeqCst);
        let mine = if worker.index() == 0 {
            leader.lock().ok().and_then(|mut l| l.take())
        } else {
            None
        };
        let (feed, output, late_output) = match mine {
            Some((feed, output, late)) => (Some(feed), Some(output), late),
            None => (None, None, None),
        };
        let feed_error = Rc::new(RefCell::new(None));
        let write_error = Rc::new(RefCell::new(None));
        let counts = Rc::new(RefCell::new(ChangelogCounts::default()));
        let late_count = Rc::new(RefCell::new(0u64));
        let (agg, partitioner) = (agg.clone(), partitioner.clone());
        let probe = worker.dataflow::<u64, _, _>(|scope| {
            let records = feed_source(scope, feed, source_options, Rc::clone(&feed_error));
            let windowed = records
                .key_by(partitioner)
                .window(assigner)
                .allowed_lateness(lateness)
                .aggregate(|r: &CsvRecord| r.ts, agg);
            let (probe, results) = windowed.results.probe();
            changelog_sink(results, output, Rc::clone(&counts), Rc::clone(&write_error));
            let late_count = Rc::clone(&late_count);
            let late = windowed.late.map(move |late: Late<String, CsvRecord>| {
                *late_count.borrow_mut() += 1;
                let row = late
                    .record
                    .row
                    .expect("records stamped behind the watermark keep their row");
                Late {
                    window: late.window,
                    key: late.key,
                    record: row,
                }
            });
            late_sink(late, late_output, Rc::clone(&write_error));
            probe
        });
        while worker.step_or_park(None) {}
        drop(probe);
        let failure = feed_error
            .borrow_mut()
            .take()
            .map(|e| e.to_string())
            .or_else(|| {
                write_error
                    .borrow_mut()
                    .take()
                    .map(|e| format!("writing output: {e}"))
            });
        let counts = *counts.borrow();
        let late = *late_count.borrow();
        (
            failure,
            Report {
                changelog: counts,
                late,
            },
        )
    })
    .map_err(|e| anyhow!("cannot start workers: {e}"))?;

    let mut report = Report::default();
    let mut failure = None;
    for result in guards.join() {
        let (worker_failure, worker_report) =
            result.map_err(|e| anyhow!("a worker failed: {e}"))?;
        failure = failure.or(worker_failure);
        report.changelog.insertions += worker_report.changelog.insertions;
        report.changelog.retractions += worker_report.changelog.retractions;
        report.late += worker_report.late;
    }
    if let Some(failure) = failure {
        let _ = std::fs::remove_file(&args.output);
        if let Some(late) = &args.late_output {
            let _ = std::fs::remove_file(late);
        }
        bail!("{failure}");
    }
    if let Some(stats) = stats {
        let bad = stats.bad_lines.load(Ordering::Relaxed);
        eprintln!(
            "tidemark window: {} records read, {} bad lines skipped, {} windows emitted, {} corrections, {} late records{}",
            stats.records.load(Ordering::Relaxed),
            bad,
            report.changelog.insertions - report.changelog.retractions,
            report.changelog.retractions,
            report.late,
            if report.late > 0 && args.late_output.is_none() { " (use --late-output FILE to keep them)" } else { "" },
        );
    }
    Ok(())
}
