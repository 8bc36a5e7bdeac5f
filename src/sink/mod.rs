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
    let mut text = String::new();
    let encode = move |out: &mut csv::Writer<W>, row: &WindowResult<K, O>| {
        {
            let mut counts = counts.borrow_mut();
            if row.diff > 0 {
                counts.insertions += 1;
            } else {
                counts.retractions += 1;
            }
        }
        use std::fmt::Write as _;
        text.clear();
        let _ = write!(text, "{}", row.window.start);
        out.write_field(&text)?;
        text.clear();
        let _ = write!(text, "{}", row.window.end);
        out.write_field(&text)?;
        out.write_field(row.key.as_ref())?;
        text.clear();
        let _ = write!(text, "{}", row.value);
        out.write_field(&text)?;
        out.write_field(if row.diff > 0 { "1" } else { "-1" })?;
        out.write_record(None::<&[u8]>)
    };
    csv_sink(stream, writer, encode, error);
}

/// Writes late records: the input row, then the missed window's `window_start,window_end`.
pub fn late_sink<'scope, K, W>(
    stream: StreamVec<'scope, u64, Late<K, Vec<String>>>,
    writer: Option<csv::Writer<W>>,
    error: Rc<RefCell<Option<csv::Error>>>,
) where
    K: ExchangeData,
    W: Write + 'static,
{
    let encode = |out: &mut csv::Writer<W>, late: &Late<K, Vec<String>>| {
        for field in &late.record {
            out.write_field(field)?;
        }
        out.write_field(late.window.start.to_string())?;
        out.write_field(late.window.end.to_string())?;
        out.write_record(None::<&[u8]>)
    };
    csv_sink(stream, writer, encode, error);
}
