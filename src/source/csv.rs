//! CSV event input: header lookup, field parsing with precise errors, and a [`Feed`] that
//! stamps each record with its watermark time.
//!
//! A reader thread parses the CSV framing (so a live input never blocks a worker) into byte
//! records, reused: batches of them go to the feed and come back empty, so reading allocates
//! nothing per row. The feed turns rows into records on the worker that runs the source,
//! reading fields in place (a field is copied only into the record's key, and into its row when
//! the record is behind the watermark). Every error names the file, the line and the field. With [`BadLines::Skip`], bad rows are counted and the rest is processed;
//! failures to read the file at all always stop the run.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::lines::Counted;
use super::{Feed, Poll, Position, SourceState, Stamped};
use crate::number::Fixed;
use crate::time::{Watermark, MAX_TIME};

/// An input error, located in the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
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
/// are not skipped. Serializable: a parallel reader's error travels to process 0, which reports
/// it (see [`super::blocks`]).
#[derive(Clone, Debug, thiserror::Error, Serialize, Deserialize)]
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

impl ReadError {
    /// The input `file` could not be opened or read: `error` says why.
    pub(crate) fn io(file: &str, error: impl std::fmt::Display) -> ReadError {
        ReadError::Io {
            file: file.to_string(),
            message: error.to_string(),
        }
    }
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
/// Records are equal when their input fields are (`ts`, `value`, `row`), wherever they were
/// read: a retraction cancels the insertion of an identical row, which was read at another
/// position. Equality, order and hash ignore [`CsvRecord::pos`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CsvRecord {
    /// Event time.
    pub ts: u64,
    /// Value (zero when no value column is read).
    pub value: Fixed,
    /// The input row without its `diff` column, kept for records that arrived behind the
    /// watermark (only those can be late, and the late output repeats the input columns) and,
    /// when retractions are allowed, for every record (a row is what a retraction names).
    pub row: Option<Vec<String>>,
    /// Where the record was read, as a number that orders records as their input does: for a
    /// file or standard input, the byte offset at which its row starts (the same for the
    /// single reader and every parallel reader of the file); for Kafka, see
    /// [`crate::source::kafka`]. Session windows apply records that share a time in this order
    /// ([`crate::keyed::window::WindowedStream::ordered_by`]), so that results do not depend on
    /// which worker read which record.
    pub pos: u64,
}

impl CsvRecord {
    /// The fields that make a record's identity: all but its position.
    fn identity(&self) -> (u64, &Fixed, &Option<Vec<String>>) {
        (self.ts, &self.value, &self.row)
    }
}

impl PartialEq for CsvRecord {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for CsvRecord {}

impl PartialOrd for CsvRecord {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CsvRecord {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.identity().cmp(&other.identity())
    }
}

impl std::hash::Hash for CsvRecord {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

/// Counters shared with whoever reports on the run.
#[derive(Debug, Default)]
pub struct FeedStats {
    /// Rows read into records.
    pub records: AtomicU64,
    /// Rows skipped as bad.
    pub bad_lines: AtomicU64,
}

/// Rows read by the reader thread, in byte records that travel back to it to be reused.
#[derive(Default)]
struct Rows {
    /// The rows: the first `len` records (the rest are spare allocations).
    records: Vec<csv::ByteRecord>,
    /// `lines[i]`: the line record `i` starts on (see [`super::lines`]).
    lines: Vec<u64>,
    len: usize,
    /// The error that stopped reading after these rows, if one did.
    error: Option<ReadError>,
    /// Where the reader stood after these rows: the next record's position, and the line of
    /// that byte (see [`super::lines`]).
    end: Option<(csv::Position, u64)>,
}

/// A CSV file (or standard input) as a [`Feed`] of `(key, record, diff)` triples, read by one
/// reader thread in input order.
pub struct CsvFeed {
    layout: Layout,
    rows: Receiver<Rows>,
    /// Where parsed batches go back to the reader thread to be refilled.
    spent: SyncSender<Rows>,
    bad_lines: BadLines,
    watermark: Watermark,
    stats: Arc<FeedStats>,
    /// A batch taken up to a checkpoint bound, and its first row not yet taken.
    partial: Option<(Rows, usize)>,
    /// The position of the next row not yet taken (when no batch is partly taken).
    next: (csv::Position, u64),
}

/// Where the columns are in a row, and how a row becomes a record: shared by the single reader
/// ([`CsvFeed`]) and the parallel one ([`super::blocks`]), so both read every row alike.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// The input's name, for errors.
    pub(crate) name: String,
    /// The line the header starts on (after any empty lines before it).
    pub(crate) header_line: u64,
    time: usize,
    key: usize,
    value: Option<usize>,
    diff: Option<usize>,
    /// The header's field names, in order: a row of another width is told which it lacks.
    header: Vec<String>,
    pub(crate) columns: Columns,
}

pub use super::key::CsvKey;

/// The item a CSV feed produces: key, record, diff (`1` or `-1`).
pub type CsvItem = (CsvKey, CsvRecord, isize);

/// What is wrong with a row (see [`Layout::parse`]): the field at fault, if one is, and what.
#[derive(Debug)]
pub(crate) struct BadRow {
    pub(crate) field: Option<String>,
    pub(crate) message: String,
}

/// A row read by [`Layout::parse`]: event time, value, diff, and the key's byte range.
pub(crate) struct Parsed {
    pub(crate) ts: u64,
    pub(crate) value: Fixed,
    pub(crate) diff: isize,
    pub(crate) key: std::ops::Range<usize>,
}

const ROWS_PER_BATCH: usize = 1024;
/// How many skipped rows are reported one by one before only counting.
pub(crate) const REPORTED_BAD_LINES: u64 = 10;

impl CsvFeed {
    /// Opens `path` (`-` for standard input), reads its header and checks that the columns exist.
    pub fn open(
        path: &Path,
        columns: Columns,
        bad_lines: BadLines,
        max_delay: u64,
    ) -> Result<(CsvFeed, csv::StringRecord), ReadError> {
        CsvFeed::open_at(path, columns, bad_lines, max_delay, None)
    }

    /// [`CsvFeed::open`], resuming at a checkpoint's `state` (a regular file only): the reader
    /// seeks to its position and the watermark is the one there, so the records that follow
    /// get the stamps they would have had in one run. Rows before the position are not read.
    pub fn open_at(
        path: &Path,
        columns: Columns,
        bad_lines: BadLines,
        max_delay: u64,
        state: Option<&SourceState>,
    ) -> Result<(CsvFeed, csv::StringRecord), ReadError> {
        let name = path.display().to_string();
        let mut watermark = Watermark::new(max_delay);
        let (rows, spent, layout, header, next) = if name == "-" {
            let input: Box<dyn Read + Send> = Box::new(io::stdin());
            let (mut reader, layout, header) = Layout::reader(&name, input, columns)?;
            let next = reader.position().clone();
            let line = reader.get_mut().count_at(next.byte()).line;
            let next = (next, line);
            let (rows, spent) = spawn_reader(reader, &name)?;
            (rows, spent, layout, header, next)
        } else {
            let input = File::open(path).map_err(|e| ReadError::io(&name, e))?;
            let (mut reader, layout, header) = Layout::reader(&name, input, columns)?;
            if let Some(state) = state {
                let mut at = csv::Position::new();
                at.set_byte(state.position.byte)
                    .set_line(state.position.line);
                let line = state.position.line;
                reader.seek(at).map_err(|e| csv_error(&name, e, line))?;
                // Line numbers stay the file's own: the count of line ends before the position
                // (a byte scan of the prefix; its rows are not parsed again).
                let prefix = File::open(path).map_err(|e| ReadError::io(&name, e))?;
                let count = Counted::count_prefix(io::BufReader::new(prefix), state.position.byte)
                    .map_err(|e| ReadError::io(&name, e))?;
                reader.get_mut().resume(count);
                watermark = state.watermark.clone();
            }
            let next = reader.position().clone();
            let line = reader.get_mut().count_at(next.byte()).line;
            let next = (next, line);
            let (rows, spent) = spawn_reader(reader, &name)?;
            (rows, spent, layout, header, next)
        };
        let feed = CsvFeed {
            layout,
            rows,
            spent,
            bad_lines,
            watermark,
            stats: Arc::default(),
            partial: None,
            next,
        };
        Ok((feed, header))
    }

    /// The line the header is on (1, unless empty lines come first), for errors about it.
    pub fn header_line(&self) -> u64 {
        self.layout.header_line
    }

    /// The counters of this feed.
    pub fn stats(&self) -> Arc<FeedStats> {
        Arc::clone(&self.stats)
    }
}

/// The reader thread of a [`CsvFeed`]: batches of rows go out on the first channel, and come
/// back empty on the second to be refilled.
fn spawn_reader<R: Read + Send + 'static>(
    mut reader: csv::Reader<Counted<R>>,
    name: &str,
) -> Result<(Receiver<Rows>, SyncSender<Rows>), ReadError> {
    let name = name.to_string();
    let (sender, rows) = sync_channel::<Rows>(4);
    // Room for every batch in flight, so that handing one back never blocks.
    let (spent, refill) = sync_channel::<Rows>(8);
    let thread_name = name.clone();
    // A live input (standard input) hands over every row at once: the next read may block.
    let rows_per_batch = if name == "-" { 1 } else { ROWS_PER_BATCH };
    std::thread::Builder::new()
        .name("tidemark-csv".into())
        .spawn(move || loop {
            let mut batch = refill.try_recv().unwrap_or_default();
            batch.len = 0;
            let mut done = false;
            while batch.len < rows_per_batch {
                if batch.records.len() == batch.len {
                    batch.records.push(csv::ByteRecord::new());
                    batch.lines.push(0);
                }
                let record = &mut batch.records[batch.len];
                match reader.read_byte_record(record) {
                    Ok(true) => {
                        let byte = record.position().map_or(0, |p| p.byte());
                        batch.lines[batch.len] = reader.get_mut().record_line(byte);
                        batch.len += 1;
                    }
                    Ok(false) => done = true,
                    // Byte records are not checked for UTF-8 (the feed does that), so an
                    // error here is a failure to read: it stops the input.
                    Err(e) => {
                        let byte = e.position().map_or(0, |p| p.byte());
                        let line = reader.get_mut().record_line(byte);
                        batch.error = Some(csv_error(&thread_name, e, line));
                        done = true;
                    }
                }
                if done {
                    break;
                }
            }
            let end = reader.position().clone();
            let line = reader.get_mut().count_at(end.byte()).line;
            batch.end = Some((end, line));
            if (batch.len > 0 || batch.error.is_some()) && sender.send(batch).is_err() {
                return;
            }
            if done {
                return;
            }
        })
        .map_err(|e| ReadError::io(&name, e))?;
    Ok((rows, spent))
}

/// The header of the file `path`, for a process that writes rows repeating the input's
/// columns (a late output's part) without reading the input.
///
/// Errors: standard input (`-`), which only process 0 reads; the file cannot be opened or its
/// header read.
pub fn read_header(path: &Path) -> Result<csv::StringRecord, ReadError> {
    let name = path.display().to_string();
    if name == "-" {
        return Err(ReadError::io(
            &name,
            "standard input is read by process 0 only, and a late output in parts repeats the \
             input's columns in every process: use a file input, or a single late output file",
        ));
    }
    let file = File::open(path).map_err(|e| ReadError::io(&name, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(Counted::new(file));
    Ok(header(&name, &mut reader)?.0)
}

/// The event time of the first row of the file `path` that reads (looking at no more than
/// its first 1,000 rows), or `None`: a file that cannot be opened, has no such row, or is not
/// a regular file (which could not be read twice). A hint only: a checkpointed run starts its
/// cuts just below it (see `crate::job::window`), and errors are the feed's to report.
pub fn first_event_time(path: &Path, columns: Columns) -> Option<u64> {
    let file = File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let name = path.display().to_string();
    let (mut reader, layout, _) = Layout::reader(&name, io::BufReader::new(file), columns).ok()?;
    let mut record = csv::ByteRecord::new();
    for _ in 0..1000 {
        if !reader.read_byte_record(&mut record).ok()? {
            return None;
        }
        if let Ok(parsed) = layout.parse(&record) {
            return Some(parsed.ts);
        }
    }
    None
}

/// The header of `reader` (the input `name`) and the line it starts on.
fn header<R: Read>(
    name: &str,
    reader: &mut csv::Reader<Counted<R>>,
) -> Result<(csv::StringRecord, u64), ReadError> {
    let header = reader.headers().cloned();
    // The header is the first record: the parser read it from its position on.
    let byte = match &header {
        Ok(h) => h.position().map_or(0, |p| p.byte()),
        Err(e) => e.position().map_or(0, |p| p.byte()),
    };
    let line = reader.get_mut().record_line(byte);
    Ok((header.map_err(|e| csv_error(name, e, line))?, line))
}

impl Layout {
    /// A CSV reader of `input` (named `name`; rows may differ in length, the feed reports them)
    /// past its header, with the layout of `columns` in it and the header (see
    /// [`Layout::read_header`]). The input is wrapped to count lines (see [`Counted`]).
    pub(crate) fn reader<R: Read>(
        name: &str,
        input: R,
        columns: Columns,
    ) -> Result<(csv::Reader<Counted<R>>, Layout, csv::StringRecord), ReadError> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(Counted::new(input));
        let (layout, header) = Layout::read_header(name, &mut reader, columns)?;
        Ok((reader, layout, header))
    }

    /// Reads the header of `reader` (the input `name`) and finds `columns` in it: a missing or
    /// repeated column is an error on the header's line (1, unless empty lines precede it).
    fn read_header<R: Read>(
        name: &str,
        reader: &mut csv::Reader<Counted<R>>,
        columns: Columns,
    ) -> Result<(Layout, csv::StringRecord), ReadError> {
        let (header, line) = header(name, reader)?;
        // A repeated name would make every lookup by name (ours, and a reader's of the late
        // output, which repeats the input's columns) silently pick one of the columns.
        for (i, column) in header.iter().enumerate() {
            if header.iter().take(i).any(|earlier| earlier == column) {
                return Err(InputError {
                    file: name.to_string(),
                    line,
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
                    file: name.to_string(),
                    line,
                    field: Some(column.to_string()),
                    message: format!(
                        "no such column in the header (columns: {})",
                        header.iter().collect::<Vec<_>>().join(", ")
                    ),
                })
        };
        let layout = Layout {
            name: name.to_string(),
            header_line: line,
            time: find(&columns.time)?,
            key: find(&columns.key)?,
            value: columns.value.as_deref().map(find).transpose()?,
            diff: header.iter().position(|h| h == columns.diff),
            header: header.iter().map(|h| h.to_string()).collect(),
            columns,
        };
        Ok((layout, header))
    }

    /// The error of a bad row on `line`.
    pub(crate) fn error(&self, line: u64, bad: BadRow) -> InputError {
        InputError {
            file: self.name.clone(),
            line,
            field: bad.field,
            message: bad.message,
        }
    }

    /// Reads the row `record`: checks UTF-8 (once, for the whole row) and the number of
    /// fields, parses the event time, value and diff. Errors name the field; the caller, who
    /// knows the record's line ([`super::lines`]), locates them with [`Layout::error`] (lines
    /// are counted only for bad rows where that saves a pass).
    pub(crate) fn parse(&self, record: &csv::ByteRecord) -> Result<Parsed, BadRow> {
        let bad = |field: Option<&str>, message: String| BadRow {
            field: field.map(str::to_string),
            message,
        };
        let row = Row::new(record).ok_or_else(|| bad(None, "not valid UTF-8".into()))?;
        let width = self.header.len();
        if row.len() < width {
            // The first field the row lacks: the fields of a short row are the header's first.
            let message = format!(
                "missing: the row has {} of the header's {width} fields ({})",
                row.len(),
                self.header.join(", ")
            );
            return Err(bad(Some(&self.header[row.len()]), message));
        }
        if row.len() > width {
            let message = format!(
                "expected {width} fields ({}), found {}",
                self.header.join(", "),
                row.len()
            );
            return Err(bad(None, message));
        }
        let time_field = Some(self.columns.time.as_str());
        let text = row.get(self.time);
        let ts = match text.parse::<u64>() {
            Ok(ts) if ts <= MAX_TIME => ts,
            Ok(_) => return Err(bad(time_field, beyond_domain(text))),
            Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(bad(time_field, beyond_domain(text)));
            }
            Err(_) if text.starts_with('-') && text[1..].bytes().all(|b| b.is_ascii_digit()) => {
                let message = format!("event time must not be negative, got {text:?}");
                return Err(bad(time_field, message));
            }
            Err(_) => {
                let message = format!(
                    "expected a non-negative integer event time (milliseconds), got {text:?}"
                );
                return Err(bad(time_field, message));
            }
        };
        let value = match (self.value, &self.columns.value) {
            (Some(index), Some(column)) => row
                .get(index)
                .parse::<Fixed>()
                .map_err(|e| bad(Some(column), e.to_string()))?,
            _ => Fixed::ZERO,
        };
        let diff = match self.diff {
            None => 1,
            Some(index) => match row.get(index) {
                "1" | "+1" => 1,
                "-1" if self.columns.retractions => -1,
                "-1" => {
                    let message =
                        "a retraction (-1) needs the incremental path (--emit updates)".to_string();
                    return Err(bad(Some(&self.columns.diff), message));
                }
                text => {
                    let message = format!("expected 1 or -1, got {text:?}");
                    return Err(bad(Some(&self.columns.diff), message));
                }
            },
        };
        let key = record.range(self.key).unwrap_or_default();
        Ok(Parsed {
            ts,
            value,
            diff,
            key,
        })
    }

    /// The record of a parsed row, stamped `time` (see [`Stamped`]). The key is copied out of
    /// the row; the whole row only when the record may be late or retracted.
    pub(crate) fn item(
        &self,
        record: &csv::ByteRecord,
        parsed: &Parsed,
        time: u64,
        pos: u64,
    ) -> Stamped<CsvItem> {
        let key = &record.as_slice()[parsed.key.clone()];
        let row = self
            .keeps_row(parsed, time)
            .then(|| self.row(record.iter()));
        self.stamped(key, row, parsed, time, pos)
    }

    /// Whether the record of `parsed`, stamped `time`, carries its row: only a record behind
    /// the watermark can be late, and the late output repeats its input columns; a retraction
    /// names its row.
    pub(crate) fn keeps_row(&self, parsed: &Parsed, time: u64) -> bool {
        time > parsed.ts || self.columns.retractions
    }

    /// A record's row: its fields but the `diff` column's, as text.
    pub(crate) fn row<'a>(&self, fields: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
        fields
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.diff)
            .map(|(_, field)| String::from_utf8_lossy(field).into_owned())
            .collect()
    }

    /// The record of a parsed row whose key field is `key` and whose row (where
    /// [`Layout::keeps_row`]) is `row`, stamped `time`.
    pub(crate) fn stamped(
        &self,
        key: &[u8],
        row: Option<Vec<String>>,
        parsed: &Parsed,
        time: u64,
        pos: u64,
    ) -> Stamped<CsvItem> {
        // The row was checked to be UTF-8 as a whole, and the key's range is cut at ASCII
        // delimiters, so this never fails.
        let key = CsvKey::new(std::str::from_utf8(key).unwrap_or_default());
        let record = CsvRecord {
            ts: parsed.ts,
            value: parsed.value,
            row,
            pos,
        };
        Stamped {
            time,
            behind: time > parsed.ts,
            record: (key, record, parsed.diff),
        }
    }
}

/// Reports a skipped bad line on standard error: the first [`REPORTED_BAD_LINES`] one by one,
/// then once that more were skipped. `skipped` counts the bad lines so far, this one included.
pub(crate) fn warn_skipped(skipped: u64, message: &str) {
    if skipped <= REPORTED_BAD_LINES {
        crate::abort::say(format_args!(
            "warning: skipped {}",
            crate::abort::one_line(message)
        ));
    } else if skipped == REPORTED_BAD_LINES + 1 {
        crate::abort::say(format_args!(
            "warning: more bad lines skipped; the summary counts them all"
        ));
    }
}

fn beyond_domain(text: &str) -> String {
    format!("event time {text} is beyond the largest supported, {MAX_TIME} (2^62 - 1)")
}

/// A CSV parser's `error` while reading `name`, in the record on `line` (the parser's own line
/// count is not the physical line: see [`super::lines`]).
pub(crate) fn csv_error(name: &str, error: csv::Error, line: u64) -> ReadError {
    match error.kind() {
        csv::ErrorKind::Utf8 { .. } => ReadError::Input(InputError {
            file: name.to_string(),
            line,
            field: None,
            message: "not valid UTF-8".to_string(),
        }),
        _ => ReadError::io(name, error),
    }
}

impl Feed for CsvFeed {
    type Item = CsvItem;
    type Error = ReadError;

    /// Takes the batches the reader has ready, until `max` rows (at least one batch).
    fn poll(&mut self, max: usize, out: &mut Vec<Stamped<Self::Item>>) -> Result<Poll, ReadError> {
        self.poll_until(max, out, None)
    }

    fn watermark(&mut self) -> &mut Watermark {
        &mut self.watermark
    }

    fn poll_bounded(
        &mut self,
        max: usize,
        out: &mut Vec<Stamped<Self::Item>>,
        bound: u64,
    ) -> Result<Poll, ReadError> {
        self.poll_until(max, out, Some(bound))
    }

    fn state(&self, done: bool) -> Option<SourceState> {
        let (byte, line) = match &self.partial {
            Some((batch, at)) => (batch.records[*at].position()?.byte(), batch.lines[*at]),
            None => (self.next.0.byte(), self.next.1),
        };
        Some(SourceState {
            position: Position {
                block: 0,
                byte,
                line,
            },
            watermark: self.watermark.clone(),
            done,
            blocks: Vec::new(),
            partitions: Vec::new(),
        })
    }
}

impl CsvFeed {
    /// [`Feed::poll`] and, with a `bound`, [`Feed::poll_bounded`].
    fn poll_until(
        &mut self,
        max: usize,
        out: &mut Vec<Stamped<<Self as Feed>::Item>>,
        bound: Option<u64>,
    ) -> Result<Poll, ReadError> {
        let mut taken = 0;
        while taken < max.max(1) {
            if bound.is_some_and(|b| self.watermark.current() > b) {
                break;
            }
            let (batch, from) = match self.partial.take() {
                Some(partial) => partial,
                None => match self.rows.try_recv() {
                    Ok(batch) => (batch, 0),
                    Err(TryRecvError::Empty) if taken == 0 => return Ok(Poll::Pending),
                    Err(TryRecvError::Disconnected) if taken == 0 => return Ok(Poll::Done),
                    Err(_) => break,
                },
            };
            taken += batch.len - from;
            self.take(batch, from, bound, out)?;
        }
        Ok(Poll::Ready)
    }

    /// Turns the rows of `batch` from row `from` on into records, then hands it back to the
    /// reader; with a `bound`, stops before a row once the watermark is above it and keeps the
    /// rest of the batch for the next poll.
    fn take(
        &mut self,
        mut batch: Rows,
        from: usize,
        bound: Option<u64>,
        out: &mut Vec<Stamped<<Self as Feed>::Item>>,
    ) -> Result<(), ReadError> {
        let mut records = 0;
        for (at, record) in batch.records[..batch.len].iter().enumerate().skip(from) {
            if bound.is_some_and(|b| self.watermark.current() > b) {
                self.stats.records.fetch_add(records, Ordering::Relaxed);
                self.partial = Some((batch, at));
                return Ok(());
            }
            let line = batch.lines[at];
            match self
                .layout
                .parse(record)
                .map_err(|bad| self.layout.error(line, bad))
            {
                Ok(parsed) => {
                    let time = self.watermark.stamp(parsed.ts);
                    let pos = record.position().map_or(0, |p| p.byte());
                    out.push(self.layout.item(record, &parsed, time, pos));
                    records += 1;
                }
                Err(e) if self.bad_lines == BadLines::Skip => {
                    let skipped = self.stats.bad_lines.fetch_add(1, Ordering::Relaxed) + 1;
                    warn_skipped(skipped, &e.to_string());
                }
                Err(e) => {
                    self.stats.records.fetch_add(records, Ordering::Relaxed);
                    return Err(e.into());
                }
            }
        }
        self.stats.records.fetch_add(records, Ordering::Relaxed);
        if let Some(error) = batch.error.take() {
            return Err(error);
        }
        if let Some(end) = batch.end.take() {
            self.next = end;
        }
        // The reader may have stopped (a full channel of spares is fine too): drop it then.
        let _ = self.spent.try_send(batch);
        Ok(())
    }
}

/// The fields of a byte record that is valid UTF-8, as text.
struct Row<'r> {
    record: &'r csv::ByteRecord,
    text: &'r str,
}

impl<'r> Row<'r> {
    /// `None` if some field is not valid UTF-8 (checked once, for the whole record).
    fn new(record: &'r csv::ByteRecord) -> Option<Self> {
        let text = std::str::from_utf8(record.as_slice()).ok()?;
        Some(Row { record, text })
    }

    fn len(&self) -> usize {
        self.record.len()
    }

    /// Field `index` (which must be below `len()`).
    fn get(&self, index: usize) -> &'r str {
        // Fields are cut at ASCII delimiters, so each range is on character boundaries.
        self.record
            .range(index)
            .and_then(|range| self.text.get(range))
            .unwrap_or_default()
    }
}
