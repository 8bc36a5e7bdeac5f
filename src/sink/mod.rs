//! Sinks: CSV changelog and late-record output, written by one worker.
//!
//! This module owns output formats. Every row is sent to worker 0 (of process 0), which writes
//! it; the writer is flushed whenever an activation wrote rows, so a live run's output is
//! visible as windows close. A write error stops writing and is stored for the caller.

use std::cell::RefCell;
use std::fmt::Display;
use std::io::Write;
use std::rc::Rc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use crate::window::{Late, WindowResult};

pub mod commit;
pub mod kafka;

/// The header of a window changelog.
pub const CHANGELOG_HEADER: [&str; 5] = ["window_start", "window_end", "key", "value", "diff"];

/// Counts of what a changelog sink wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

/// Writes each record of `stream` with `encode` on worker 0's `writer` (other workers pass
/// `None`); `encode` writes the fields of one row and its terminator.
pub fn csv_sink<'scope, D, W, E>(
    stream: StreamVec<'scope, u64, D>,
    writer: Option<csv::Writer<W>>,
    mut encode: E,
    error: Rc<RefCell<Option<csv::Error>>>,
) where
    D: ExchangeData,
    W: Write + 'static,
    E: FnMut(&mut csv::Writer<W>, &D) -> csv::Result<()> + 'static,
{
    let mut writer = writer;
    stream.sink(
        Exchange::new(|_: &D| 0),
        "CsvSink",
        move |(input, _frontier)| {
            let mut wrote = false;
            input.for_each(|_cap, data| {
                let Some(out) = writer.as_mut() else { return };
                for item in data.iter() {
                    if let Err(e) = encode(out, item) {
                        *error.borrow_mut() = Some(e);
                        writer = None;
                        return;
                    }
                    wrote = true;
                }
            });
            if wrote {
                if let Some(Err(e)) = writer.as_mut().map(|w| w.flush()) {
                    *error.borrow_mut() = Some(e.into());
                    writer = None;
                }
            }
        },
    );
}

/// Writes a window changelog (`window_start,window_end,key,value,diff`) and counts its rows.
pub fn changelog_sink<'scope, K, O, W>(
    stream: StreamVec<'scope, u64, WindowResult<K, O>>,
    writer: Option<csv::Writer<W>>,
    counts: Rc<RefCell<ChangelogCounts>>,
    error: Rc<RefCell<Option<csv::Error>>>,
) where
    K: ExchangeData + AsRef<str>,
    O: ExchangeData + Display,
    W: Write + 'static,
{
    let encode = move |out: &mut csv::Writer<W>, row: &WindowResult<K, O>| {
        counts.borrow_mut().count(row.diff);
        write_changelog_row(out, row)
    };
    csv_sink(stream, writer, encode, error);
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
    out.write_field(row.window.start.to_string())?;
    out.write_field(row.window.end.to_string())?;
    out.write_field(row.key.as_ref())?;
    out.write_field(row.value.to_string())?;
    out.write_field(if row.diff > 0 { "1" } else { "-1" })?;
    out.write_record(None::<&[u8]>)
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
/// window's `window_start,window_end`, then the diff if the row has one.
pub fn late_sink<'scope, K, W>(
    stream: StreamVec<'scope, u64, Late<K, LateFields>>,
    writer: Option<csv::Writer<W>>,
    error: Rc<RefCell<Option<csv::Error>>>,
) where
    K: ExchangeData,
    W: Write + 'static,
{
    csv_sink(stream, writer, |out, late| write_late_row(out, late), error);
}

/// Writes one late row in the column order of [`late_header`].
pub fn write_late_row<K, W: Write>(
    out: &mut csv::Writer<W>,
    late: &Late<K, LateFields>,
) -> csv::Result<()> {
    for field in &late.record.row {
        out.write_field(field)?;
    }
    out.write_field(late.window.start.to_string())?;
    out.write_field(late.window.end.to_string())?;
    if let Some(diff) = late.record.diff {
        out.write_field(diff.to_string())?;
    }
    out.write_record(None::<&[u8]>)
}
