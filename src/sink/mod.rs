//! Sinks: CSV changelog and late-record output, written by one worker, or by every process
//! into its own part file.
//!
//! This module owns output formats. By default every row is sent to worker 0 (of process 0),
//! which writes it ([`changelog_sink`], [`late_sink`]). With part files (`--output DIR/`) every
//! worker writes the rows it produced, without an exchange, into the one writer its process
//! shares among its workers ([`changelog_part_sink`], [`late_part_sink`]): `DIR/part-N.csv`
//! for process `N`. Which part a row lands in depends on which worker computed it, so the
//! parts together hold the single file's rows as a multiset, not in its order. Rows are
//! formatted into the writer's buffer (numbers on the stack), allocating nothing per row. The
//! writer is flushed whenever an activation wrote rows, so a live run's output is visible as
//! windows close, and within an activation after every [`FLUSH_ROWS`] rows, so that what it
//! buffers stays small. A write error stops writing and is stored for the caller.

use std::cell::RefCell;
use std::fmt::Display;
use std::io::Write;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::{Exchange as _, Operator, Probe};
use timely::dataflow::{ProbeHandle, StreamVec};
use timely::ExchangeData;

use crate::window::{Late, WindowResult};

pub mod commit;
pub mod kafka;
pub mod parts;

/// The header of a window changelog.
pub const CHANGELOG_HEADER: [&str; 5] = ["window_start", "window_end", "key", "value", "diff"];

/// Counts of what a changelog sink wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangelogCounts {
    /// Rows with `diff = +1`.
    pub insertions: u64,
    /// Rows with `diff = -1` (retractions, each part of a correction).
    pub retractions: u64,
}

impl ChangelogCounts {
    /// Counts one row by its diff: `+1` an insertion, otherwise a retraction.
    pub fn count(&mut self, diff: i64) {
        if diff > 0 {
            self.insertions += 1;
        } else {
            self.retractions += 1;
        }
    }
}

/// Where a sink writes: one writer for the run, or one per process.
pub enum SinkWriter<W: Write> {
    /// Every row goes to worker 0 of process 0, which holds the writer (the other workers
    /// pass `None`).
    One(Option<Box<csv::Writer<W>>>),
    /// Each worker writes the rows it produced into its process's writer (a part file).
    Part(SharedWriter<W>),
}

/// A CSV writer shared by the workers of one process: a part file's.
pub type SharedWriter<W> = Arc<Mutex<csv::Writer<W>>>;

/// Rows a sink writes between flushes within one activation. An [`crate::output::Output`]'s
/// writer holds what it is given until flushed (so that a FIFO receives whole rows): with a
/// flush per activation only, the rows of every window that one watermark closed were
/// buffered at once, 1 MB of the heap peak of 16 workers on the issue-14 file (`tumbling:10s`,
/// a fortieth of it), 256 KB of one worker's.
pub const FLUSH_ROWS: usize = 1024;

/// Writes each record of `stream` with `encode` into `writer` (see [`SinkWriter`]), a batch at
/// a time (under the lock, for a shared writer), flushing after each activation that wrote and
/// after every [`FLUSH_ROWS`] rows; `encode` writes the fields of one row and its terminator.
/// The first error stops this worker's writing and is stored in `error` (the caller ends the
/// run).
///
/// `written` probes the stream the writer reads, after the exchange to worker 0: a time is
/// passed only once every row at or before it has reached the writer, rows still queued in
/// the exchange included (and the writer takes in what reached it in the same round of its
/// worker), so a source paced by it (see [`crate::source::Pacing`]) cannot run ahead of a
/// slow writer.
pub fn csv_sink<'scope, D, W, E>(
    stream: StreamVec<'scope, u64, D>,
    writer: SinkWriter<W>,
    mut encode: E,
    error: Rc<RefCell<Option<csv::Error>>>,
    written: &ProbeHandle<u64>,
) where
    D: ExchangeData,
    W: Write + 'static,
    E: FnMut(&mut csv::Writer<W>, &D) -> csv::Result<()> + 'static,
{
    let (stream, mut writer) = match writer {
        SinkWriter::One(writer) => (stream.exchange(|_| 0), writer.map(Slot::Own)),
        SinkWriter::Part(shared) => (stream, Some(Slot::Shared(shared))),
    };
    stream
        .probe_with(written)
        .sink(Pipeline, "CsvSink", move |(input, _frontier)| {
            let Some(slot) = writer.as_mut() else {
                input.for_each(|_cap, _data| {});
                return;
            };
            let result = slot.with(|out| {
                // Rows written since the last flush.
                let (mut unflushed, mut result) = (0, Ok(()));
                input.for_each(|_cap, data| {
                    for item in data.iter() {
                        if result.is_ok() {
                            result = encode(out, item);
                            unflushed += 1;
                        }
                        if result.is_ok() && unflushed == FLUSH_ROWS {
                            result = out.flush().map_err(csv::Error::from);
                            unflushed = 0;
                        }
                    }
                });
                match result {
                    Ok(()) if unflushed > 0 => out.flush().map_err(csv::Error::from),
                    other => other,
                }
            });
            if let Err(e) = result {
                *error.borrow_mut() = Some(e);
                writer = None;
            }
        });
}

/// Where a sink's writer lives: its own, or one shared by the process's workers.
enum Slot<W: Write> {
    Own(Box<csv::Writer<W>>),
    Shared(SharedWriter<W>),
}

impl<W: Write> Slot<W> {
    /// Runs `write` on the writer (under the lock, if shared).
    fn with<R>(&mut self, write: impl FnOnce(&mut csv::Writer<W>) -> R) -> R {
        match self {
            Slot::Own(writer) => write(writer),
            // A worker that panicked while holding the lock leaves whole rows behind it: the
            // run fails anyway, and the part is not committed.
            Slot::Shared(shared) => write(&mut shared.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }
}

/// Counts `stream`'s records with `count` on every worker and adds the sums into `total` on
/// worker 0 (of process 0): one message per batch, so that the run's summary counts the rows
/// that every process wrote into its own part.
pub fn count_on_leader<'scope, D, T, F>(
    stream: StreamVec<'scope, u64, D>,
    count: F,
    total: Rc<RefCell<T>>,
) where
    D: ExchangeData,
    T: ExchangeData + std::ops::AddAssign + Default,
    F: Fn(&D) -> T + 'static,
{
    stream
        .unary(Pipeline, "CountRows", |_cap, _info| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let mut sum = T::default();
                    for item in data.iter() {
                        sum += count(item);
                    }
                    output.session(&cap).give(sum);
                })
            }
        })
        .container::<Vec<T>>()
        .sink(
            Exchange::new(|_: &T| 0),
            "CountRowsIn",
            move |(input, _frontier)| {
                let mut total = total.borrow_mut();
                input.for_each(|_cap, data| {
                    for sum in data.drain(..) {
                        *total += sum;
                    }
                });
            },
        );
}

impl std::ops::AddAssign for ChangelogCounts {
    fn add_assign(&mut self, other: Self) {
        self.insertions += other.insertions;
        self.retractions += other.retractions;
    }
}

/// [`changelog_sink`] into a part file: this worker's rows into its process's `writer`; the
/// counts are the whole run's, on worker 0 (see [`count_on_leader`]). `written` probes what
/// reached the writer (see [`csv_sink`]).
pub fn changelog_part_sink<'scope, K, O, W>(
    stream: StreamVec<'scope, u64, WindowResult<K, O>>,
    writer: SharedWriter<W>,
    counts: Rc<RefCell<ChangelogCounts>>,
    error: Rc<RefCell<Option<csv::Error>>>,
    written: &ProbeHandle<u64>,
) where
    K: ExchangeData + AsRef<str> + Clone,
    O: ExchangeData + Display + Clone,
    W: Write + 'static,
{
    let count = |row: &WindowResult<K, O>| ChangelogCounts {
        insertions: u64::from(row.diff > 0),
        retractions: u64::from(row.diff <= 0),
    };
    count_on_leader(stream.clone(), count, counts);
    csv_sink(
        stream,
        SinkWriter::Part(writer),
        |out, row| write_changelog_row(out, row),
        error,
        written,
    )
}

/// [`late_sink`] into a part file: this worker's late rows into its process's `writer`,
/// counted into `count` on worker 0 (see [`count_on_leader`]). `written` probes what reached
/// the writer (see [`csv_sink`]).
pub fn late_part_sink<'scope, K, W>(
    stream: StreamVec<'scope, u64, Late<K, LateFields>>,
    writer: SharedWriter<W>,
    count: Rc<RefCell<u64>>,
    error: Rc<RefCell<Option<csv::Error>>>,
    written: &ProbeHandle<u64>,
) where
    K: ExchangeData + Clone,
    W: Write + 'static,
{
    count_on_leader(stream.clone(), |_| 1u64, count);
    csv_sink(
        stream,
        SinkWriter::Part(writer),
        |out, late| write_late_row(out, late),
        error,
        written,
    )
}

/// Writes a window changelog (`window_start,window_end,key,value,diff`) and counts its rows.
/// `written` probes what reached the writer (see [`csv_sink`]).
pub fn changelog_sink<'scope, K, O, W>(
    stream: StreamVec<'scope, u64, WindowResult<K, O>>,
    writer: Option<csv::Writer<W>>,
    counts: Rc<RefCell<ChangelogCounts>>,
    error: Rc<RefCell<Option<csv::Error>>>,
    written: &ProbeHandle<u64>,
) where
    K: ExchangeData + AsRef<str>,
    O: ExchangeData + Display,
    W: Write + 'static,
{
    let encode = move |out: &mut csv::Writer<W>, row: &WindowResult<K, O>| {
        counts.borrow_mut().count(row.diff);
        write_changelog_row(out, row)
    };
    csv_sink(
        stream,
        SinkWriter::One(writer.map(Box::new)),
        encode,
        error,
        written,
    )
}

/// Writes one changelog row (`window_start,window_end,key,value,diff` and its terminator).
pub fn write_changelog_row<K, O, W>(
    out: &mut csv::Writer<W>,
    row: &WindowResult<K, O>,
) -> csv::Result<()>
where
    K: AsRef<str>,
    O: Display,
    W: Write,
{
    write_display(out, row.window.start)?;
    write_display(out, row.window.end)?;
    out.write_field(row.key.as_ref())?;
    write_display(out, &row.value)?;
    out.write_field(if row.diff > 0 { "1" } else { "-1" })?;
    out.write_record(None::<&[u8]>)
}

/// Writes `value` as one field, formatted on the stack: a row's numbers cost no allocation
/// (the writer buffers its output; only a text longer than the stack buffer, which no number
/// of ours is, goes through a `String`).
fn write_display<W: Write>(out: &mut csv::Writer<W>, value: impl Display) -> csv::Result<()> {
    use std::fmt::Write as _;
    let mut text = StackText::default();
    if write!(text, "{value}").is_ok() {
        out.write_field(text.as_bytes())
    } else {
        out.write_field(value.to_string())
    }
}

/// A fixed buffer that text is formatted into; a write past its end fails.
struct StackText {
    bytes: [u8; 96],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            bytes: [0; 96],
            len: 0,
        }
    }
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The fields of a late row: the input row's columns (without its change column) and, in a
/// changelog of the incremental view, the update's diff.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct LateFields {
    /// The input row, in the input's column order, without its change column.
    pub row: Vec<String>,
    /// `Some(+1 | -1)` for a late update of the incremental view, `None` for the final path.
    pub diff: Option<i64>,
}

/// The header of a late output, the one place that decides its column order (which
/// [`late_sink`] follows row by row): the input's columns except `diff_col`, then
/// `window_start,window_end`, then `diff` when `with_diff` (`--emit updates`).
///
/// Errors with the name of an input column that is also one of the late output's own columns,
/// since a reader could not tell the two apart.
///
/// ```
/// use tidemark::sink::late_header;
/// assert_eq!(
///     late_header(["ts", "key", "value", "diff"], "diff", true).unwrap(),
///     ["ts", "key", "value", "window_start", "window_end", "diff"],
/// );
/// assert_eq!(late_header(["window_end", "key"], "diff", false).unwrap_err(), "window_end");
/// ```
pub fn late_header<'a>(
    input: impl IntoIterator<Item = &'a str>,
    diff_col: &str,
    with_diff: bool,
) -> Result<Vec<String>, String> {
    let own: &[&str] = if with_diff {
        &["window_start", "window_end", "diff"]
    } else {
        &["window_start", "window_end"]
    };
    let mut header = Vec::new();
    for column in input.into_iter().filter(|c| *c != diff_col) {
        if own.contains(&column) {
            return Err(column.to_string());
        }
        header.push(column.to_string());
    }
    header.extend(own.iter().map(|c| c.to_string()));
    Ok(header)
}

/// Writes late records in the column order of [`late_header`]: the input row, the missed
/// window's `window_start,window_end`, then the diff if the row has one. `written` probes what
/// reached the writer (see [`csv_sink`]).
pub fn late_sink<'scope, K, W>(
    stream: StreamVec<'scope, u64, Late<K, LateFields>>,
    writer: Option<csv::Writer<W>>,
    error: Rc<RefCell<Option<csv::Error>>>,
    written: &ProbeHandle<u64>,
) where
    K: ExchangeData,
    W: Write + 'static,
{
    csv_sink(
        stream,
        SinkWriter::One(writer.map(Box::new)),
        |out, late| write_late_row(out, late),
        error,
        written,
    )
}

/// Writes one late row in the column order of [`late_header`].
pub fn write_late_row<K, W: Write>(
    out: &mut csv::Writer<W>,
    late: &Late<K, LateFields>,
) -> csv::Result<()> {
    for field in &late.record.row {
        out.write_field(field)?;
    }
    write_display(out, late.window.start)?;
    write_display(out, late.window.end)?;
    if let Some(diff) = late.record.diff {
        write_display(out, diff)?;
    }
    out.write_record(None::<&[u8]>)
}
