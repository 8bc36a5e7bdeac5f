//! Event time and watermarks: how a source stamps records with timely times.
//!
//! This module owns the watermark policy; sources call it, operators never do. Invariants:
//!
//! * The watermark `W` never decreases. After a record with event time `ts` is read,
//!   `W = max(W, M - max_delay)`, where `M` is the largest event time read so far (saturating
//!   at zero, so there is no lateness before the first record).
//! * A record is stamped with `max(ts, W)`, using `W` from the records read *before* it. A record
//!   stamped above its own event time arrived behind the watermark; the window operators decide
//!   from the stamp alone whether it still counts (within the allowed lateness) or is late.
//! * While a live source is idle for at least the idle timeout, its watermark advances with
//!   processing time: `W = max(W, W_last + elapsed)`, where `W_last` was the watermark when the
//!   last record arrived and `elapsed` the milliseconds since.
//!
//! Because the stamp depends only on the order of the input (and idleness), results do not
//! depend on workers, processes, partitioners or batching, and agree with Flink's
//! bounded-out-of-orderness watermarks updated on every record.
//!
//! # The time domain
//!
//! Event times are integers in `0 ..= MAX_TIME` ([`MAX_TIME`] `= 2^62 - 1`: in milliseconds,
//! 146 million years; in nanoseconds since 1970, the year 2116). Durations (window sizes,
//! slides, gaps, the watermark delay, the allowed lateness, the idle timeout) are integers in
//! `0 ..= MAX_DURATION` ([`MAX_DURATION`] `= 2^62`; sizes, slides and gaps at least 1). Every
//! quantity the engine derives from them then fits its type exactly, with no wrapping and no
//! saturation: window starts lie in `-(2^62) ..= 2^62 - 1` (an `i64`; sliding windows may start
//! before zero), window ends in `1 ..= 2^63 - 1`, and the times at which a window is emitted
//! (`end - 1`), stops accepting records (`end + lateness`) and is freed
//! (`end + gap + lateness - 2` for sessions) below `2^64`. The CLI refuses an event time beyond
//! the domain with `file:line: field 'ts'`, and a duration beyond it as a usage error; the
//! watermark never leaves it (idle advances stop at [`MAX_TIME`]).

use std::time::Duration;

/// The largest event time, `2^62 - 1`; see the module documentation.
pub const MAX_TIME: u64 = (1 << 62) - 1;

/// The largest duration (size, slide, gap, delay, lateness), `2^62`; see the module
/// documentation.
pub const MAX_DURATION: u64 = 1 << 62;

/// A bounded-delay watermark.
///
/// ```
/// use tidemark::time::Watermark;
/// let mut w = Watermark::new(5);
/// assert_eq!(w.stamp(10), 10); // in order: sent at its own time
/// assert_eq!(w.current(), 5);  // 10 - 5
/// assert_eq!(w.stamp(3), 5);   // behind the watermark: sent at the watermark
/// assert_eq!(w.stamp(20), 20);
/// assert_eq!(w.current(), 15);
/// ```
// Serializable: a checkpoint stores it, so a restored source stamps as the original would.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Watermark {
    max_delay: u64,
    current: u64,
    at_last_record: u64,
}

impl Watermark {
    /// A watermark trailing the largest event time by `max_delay`.
    pub fn new(max_delay: u64) -> Self {
        Watermark {
            max_delay,
            current: 0,
            at_last_record: 0,
        }
    }

    /// The time to send a record with event time `ts` at; then accounts for the record.
    ///
    /// With `ts` in the time domain (at most [`MAX_TIME`]) the result is in it too.
    #[inline]
    pub fn stamp(&mut self, ts: u64) -> u64 {
        let time = ts.max(self.current);
        self.current = self.current.max(ts.saturating_sub(self.max_delay));
        self.at_last_record = self.current;
        time
    }

    /// The watermark: no record will be sent at a time below it.
    pub fn current(&self) -> u64 {
        self.current
    }

    /// Advances the watermark with processing time after the source was idle for `idle`.
    pub fn idle(&mut self, idle: Duration) {
        let elapsed = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let advanced = self.at_last_record.saturating_add(elapsed).min(MAX_TIME);
        self.current = self.current.max(advanced);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_advances_with_processing_time_and_never_back() {
        let mut w = Watermark::new(10);
        w.stamp(100);
        assert_eq!(w.current(), 90);
        w.idle(Duration::from_millis(25));
        assert_eq!(w.current(), 115);
        w.idle(Duration::from_millis(5));
        assert_eq!(w.current(), 115);
        // A record far behind does not move the watermark back.
        assert_eq!(w.stamp(50), 115);
        assert_eq!(w.current(), 115);
    }
}
