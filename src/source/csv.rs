//! CSV event input: header lookup, field parsing with precise errors, and a [`Feed`] that
//! stamps each record with its watermark time.
//!
//! A reader thread parses the CSV framing (so a live input never blocks a worker); the feed
//! turns rows into records on the worker that runs the source. Every error names the file, the
//! line and the field. With [`BadLines::Skip`], bad rows are counted and the rest is processed;
//! failures to read the file at all always stop the run.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Feed, Poll};
use crate::number::Fixed;
use crate::time::{Watermark, MAX_TIME};

/// An input error, located in the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {}{message}", field.as_ref().map(|f| format!("field '{f}': ")).unwrap_or_default())]
pub struct InputError {
    /// The input's name (its path, or `-` for standard input).
    pub file: String,
    /// The 1-based line number (the header is line 1).
    pub line: u64,
    /// The field at fault, if one is.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// An error that stops reading: the file cannot be opened or read, or a row is bad and bad rows
/// are not skipped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The input could not be opened or read.
    #[error("{file}: {message}")]
    Io {
        /// The input's name.
        file: String,
        /// What went wrong.
        message: String,
    },
    /// A row is bad.
    #[error(transparent)]
    Input(#[from] InputError),
}

/// What to do with a bad row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BadLines {
    /// Stop with an error naming the row.
    Fail,
    /// Count it, report it, and go on.
    Skip,
}

/// Which columns to read.
#[derive(Clone, Debug)]
pub struct Columns {
    /// Event time: an integer in `0 ..= MAX_TIME` (milliseconds; see [`crate::time`]).
    pub time: String,
    /// The key: text.
    pub key: String,
    /// The value, if the aggregation needs one: an integer or decimal.
    pub value: Option<String>,
    /// The change column, read when the header has it: `1` inserts the row, `-1` retracts an
    /// earlier identical row. Without it every row is an insertion.
    pub diff: String,
    /// Whether rows may retract (`diff = -1`): only the incremental path can apply retractions,
    /// so elsewhere a retraction is a bad row.
    pub retractions: bool,
}

/// One input record.
///
/// Records are equal when all their fields are: a retraction cancels the insertion of an
/// identical row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CsvRecord {
    /// Event time.
    pub ts: u64,
    /// Value (zero when no value column is read).
    pub value: Fixed,
    /// The input row without its `diff` column, kept for records that arrived behind the
    /// watermark (only those can be late, and the late output repeats the input columns) and,
    /// when retractions are allowed, for every record (a row is what a retraction names).
    pub row: Option<Vec<String>>,
}

/// Counters shared with whoever reports on the run.
#[derive(Debug, Default)]
pub struct FeedStats {
    /// Rows read into records.
    pub records: AtomicU64,
    /// Rows skipped as bad.
    pub bad_lines: AtomicU64,
}

type Rows = Vec<Result<(u64, csv::StringRecord), ReadError>>;

/// A CSV file (or standard input) as a [`Feed`] of `(key, record, diff)` triples.
pub struct CsvFeed {
    name: String,
    rows: Receiver<Rows>,
    time: usize,
    key: usize,
    value: Option<usize>,
    diff: Option<usize>,
    width: usize,
    columns: Columns,
    bad_lines: BadLines,
    watermark: Watermark,
    stats: Arc<FeedStats>,
}

const ROWS_PER_BATCH: usize = 1024;
/// How many skipped rows are reported one by one before only counting.
const REPORTED_BAD_LINES: u64 = 10;

impl CsvFeed {
    /// Opens `path` (`-` for standard input), reads its header and checks that the columns exist.
    pub fn open(
        path: &Path,
        columns: Columns,
        bad_lines: BadLines,
        max_delay: u64,
    ) -> Result<(CsvFeed, csv::StringRecord), ReadError> {
        let name = path.display().to_string();
        let io_error = |e: io::Error| ReadError::Io {
            file: name.clone(),
            message: e.to_string(),
        };
        let input: Box<dyn Read + Send> = if name == "-" {
            Box::new(io::stdin())
        } else {
            Box::new(File::open(path).map_err(&io_error)?)
        };
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
        let header = reader.headers().map_err(|e| csv_error(&name, e))?.clone();
        // A repeated name would make every lookup by name (ours, and a reader's of the late
        // output, which repeats the input's columns) silently pick one of the columns.
        for (i, column) in header.iter().enumerate() {
            if header.iter().take(i).any(|earlier| earlier == column) {
                return Err(InputError {
                    file: name.clone(),
                    line: 1,
                    field: Some(column.to_string()),
                    // An empty name (`a,,b,`) is easy to miss in the message: say so.
                    message: if column.is_empty() {
                        "the header has more than one column without a name".to_string()
                    } else {
                        "the header names this column more than once".to_string()
                    },
                }
                .into());
            }
        }
        let find = |column: &str| {
            header
                .iter()
                .position(|h| h == column)
                .ok_or_else(|| InputError {
                    file: name.clone(),
                    line: 1,
                    field: Some(column.to_string()),
                    message: format!(
                        "no such column in the header (columns: {})",
                        header.iter().collect::<Vec<_>>().join(", ")
                    ),
                })
        };
        let time = find(&columns.time)?;
        let key = find(&columns.key)?;
        let value = columns.value.as_deref().map(find).transpose()?;
        let diff = header.iter().position(|h| h == columns.diff);
        let (sender, rows) = sync_channel::<Rows>(4);
        let thread_name = name.clone();
        // A live input (standard input) hands over every row at once: the next read may block.
        let rows_per_batch = if name == "-" { 1 } else { ROWS_PER_BATCH };
        std::thread::Builder::new()
            .name("tidemark-csv".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(rows_per_batch);
                for row in reader.into_records() {
                    let row = row
                        .map(|r| (r.position().map_or(0, |p| p.line()), r))
                        .map_err(|e| csv_error(&thread_name, e));
                    let stop = row
                        .as_ref()
                        .is_err_and(|e| matches!(e, ReadError::Io { .. }));
                    batch.push(row);
                    if (batch.len() == rows_per_batch || stop)
                        && sender.send(std::mem::take(&mut batch)).is_err()
                    {
                        return;
                    }
                    if stop {
                        return;
                    }
                }
                if !batch.is_empty() {
                    let _ = sender.send(batch);
                }
            })
            .map_err(io_error)?;
        let feed = CsvFeed {
            name,
            rows,
            time,
            key,
            value,
            diff,
            width: header.len(),
            columns,
            bad_lines,
            watermark: Watermark::new(max_delay),
            stats: Arc::default(),
        };
        Ok((feed, header))
    }

    /// The counters of this feed.
    pub fn stats(&self) -> Arc<FeedStats> {
        Arc::clone(&self.stats)
    }

    fn error(&self, line: u64, field: Option<&str>, message: String) -> InputError {
        InputError {
            file: self.name.clone(),
            line,
            field: field.map(str::to_string),
            message,
        }
    }

    fn parse(
        &self,
        line: u64,
        row: &csv::StringRecord,
    ) -> Result<(u64, String, Fixed, isize), InputError> {
        if row.len() != self.width {
            let message = format!("expected {} fields, found {}", self.width, row.len());
            return Err(self.error(line, None, message));
        }
        let time_field = Some(self.columns.time.as_str());
        let text = &row[self.time];
        let ts = match text.parse::<u64>() {
            Ok(ts) if ts <= MAX_TIME => ts,
            Ok(_) => return Err(self.error(line, time_field, beyond_domain(text))),
            Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(self.error(line, time_field, beyond_domain(text)));
            }
            Err(_) if text.starts_with('-') && text[1..].bytes().all(|b| b.is_ascii_digit()) => {
                let message = format!("event time must not be negative, got {text:?}");
                return Err(self.error(line, time_field, message));
            }
            Err(_) => {
                let message = format!(
                    "expected a non-negative integer event time (milliseconds), got {text:?}"
                );
                return Err(self.error(line, time_field, message));
            }
        };
        let value = match (self.value, &self.columns.value) {
            (Some(index), Some(column)) => row[index]
                .parse::<Fixed>()
                .map_err(|e| self.error(line, Some(column), e.to_string()))?,
            _ => Fixed::ZERO,
        };
        let diff = match self.diff {
            None => 1,
            Some(index) => match &row[index] {
                "1" | "+1" => 1,
                "-1" if self.columns.retractions => -1,
                "-1" => {
                    let message =
                        "a retraction (-1) needs the incremental path (--emit updates)".to_string();
                    return Err(self.error(line, Some(&self.columns.diff), message));
                }
                text => {
                    let message = format!("expected 1 or -1, got {text:?}");
                    return Err(self.error(line, Some(&self.columns.diff), message));
                }
            },
        };
        Ok((ts, row[self.key].to_string(), value, diff))
    }
}

fn beyond_domain(text: &str) -> String {
    format!("event time {text} is beyond the largest supported, {MAX_TIME} (2^62 - 1)")
}

fn csv_error(name: &str, error: csv::Error) -> ReadError {
    let line = error.position().map_or(0, |p| p.line());
    match error.kind() {
        csv::ErrorKind::Utf8 { .. } => ReadError::Input(InputError {
            file: name.to_string(),
            line,
            field: None,
            message: "not valid UTF-8".to_string(),
        }),
        _ => ReadError::Io {
            file: name.to_string(),
            message: error.to_string(),
        },
    }
}

impl Feed for CsvFeed {
    type Item = (String, CsvRecord, isize);
    type Error = ReadError;

    fn poll(&mut self, _max: usize, out: &mut Vec<(u64, Self::Item)>) -> Result<Poll, ReadError> {
        let batch = match self.rows.try_recv() {
            Ok(batch) => batch,
            Err(TryRecvError::Empty) => return Ok(Poll::Pending),
            Err(TryRecvError::Disconnected) => return Ok(Poll::Done),
        };
        for row in batch {
            let parsed = match row {
                Ok((line, row)) => self.parse(line, &row).map(|p| (p, row)),
                Err(ReadError::Input(e)) => Err(e),
                Err(io) => return Err(io),
            };
            match parsed {
                Ok(((ts, key, value, diff), row)) => {
                    let time = self.watermark.stamp(ts);
                    let keep = time > ts || self.columns.retractions;
                    let diff_column = self.diff;
                    let row = keep.then(|| {
                        row.iter()
                            .enumerate()
                            .filter(|(i, _)| Some(*i) != diff_column)
                            .map(|(_, field)| field.to_string())
                            .collect()
                    });
                    out.push((time, (key, CsvRecord { ts, value, row }, diff)));
                    self.stats.records.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if self.bad_lines == BadLines::Skip => {
                    let skipped = self.stats.bad_lines.fetch_add(1, Ordering::Relaxed) + 1;
                    if skipped <= REPORTED_BAD_LINES {
                        eprintln!(
                            "warning: skipped {}",
                            crate::abort::one_line(&e.to_string())
                        );
                    } else if skipped == REPORTED_BAD_LINES + 1 {
                        eprintln!("warning: more bad lines skipped; the summary counts them all");
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Poll::Ready)
    }

    fn watermark(&mut self) -> &mut Watermark {
        &mut self.watermark
    }
}
