//! Windows: assigners, aggregators, and the keyed window operators.
//!
//! This module owns the meaning of a window. A window is a half-open interval of event time
//! `[start, end)`; [`WindowAssigner`] says which windows a record belongs to; the state machines
//! in [`fixed`] (tumbling and sliding) and [`session`], which the keyed window operator
//! ([`crate::keyed::window`]) runs, maintain per-key aggregates and emit each window once, when
//! the input frontier passes `end - 1`. `kind` is the one place an assigner picks its kind's
//! state machine, phase one and differential view.
//!
//! # Time and lateness
//!
//! The operators run in a `u64` timely time domain that is the stream's *watermark*: a record
//! sent at time `T` says "no record with a smaller time will follow". A record's own event time
//! `ts` may be smaller than `T` (it arrived behind the watermark). For a window `w` containing
//! `ts`, with allowed lateness `L`:
//!
//! * `T < end(w)`: on time, the record counts in `w` before `w` is emitted;
//! * `end(w) <= T < end(w) + L`: the record still counts; `w` has already been emitted, so the
//!   operator emits a *correction* at time `T`: the old value with `diff = -1` and the new value
//!   with `diff = +1`;
//! * `end(w) + L <= T`: the record is *late* for `w` and is reported on the late output, once per
//!   window it missed. It is never dropped silently.
//!
//! Records that arrive behind the watermark are applied in timestamp order, after every window
//! that closes before them, so the changelog (not only its consolidation) is the same for every
//! number of workers, every partitioner and every batching. Tumbling and sliding window state is
//! freed once the frontier passes `end(w) - 1 + L`, after which every record for `w` is late:
//! state never grows with the number of windows already closed. For sessions `w` is the session
//! the record merges into (Flink's rule for merging windows, see [`session`]); as in Flink, a
//! session is forgotten, and its state freed, once it is beyond the lateness (`end + L <= T`).
//!
//! Event times, sizes, slides, gaps and lateness are in the time domain of [`crate::time`]
//! (times up to `2^62 - 1`, durations up to `2^62`), where every bound above is exact.

pub mod aggregate;
pub(crate) mod driver;
pub mod fixed;
mod keys;
pub(crate) mod kind;
pub(crate) mod partial;
pub mod session;
pub(crate) mod state;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time::MAX_DURATION;
use crate::units::parse_millis;

pub use aggregate::{on, Aggregator, Count, Max, Mean, Min, On, Sum};

/// A half-open interval of event time `[start, end)`.
///
/// `start` is signed because sliding windows that contain small event times may start before
/// zero (as in Flink); `end` is always positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// First instant in the window.
    pub start: i64,
    /// First instant after the window.
    pub end: u64,
}

/// Which windows a record belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowAssigner {
    /// Windows `[k*size, (k+1)*size)`.
    Tumbling(u64),
    /// Windows `[k*slide, k*slide + size)` for every integer `k`: `(size, slide)`.
    Sliding(u64, u64),
    /// Per key, the union of overlapping `[t, t + gap)` of its records, reported as
    /// `[first, last + gap)`: `(gap)`.
    Session(u64),
}

/// Why a window specification was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowSpecError {
    /// The text is not `tumbling:SIZE`, `sliding:SIZE/SLIDE` or `session:GAP`.
    #[error("expected tumbling:SIZE, sliding:SIZE/SLIDE or session:GAP, got {0:?}")]
    Syntax(String),
    /// A duration could not be read.
    #[error("{0}")]
    Duration(#[from] crate::units::DurationError),
    /// Sizes, slides and gaps must be positive.
    #[error("window sizes, slides and gaps must be positive, got {0:?}")]
    Zero(String),
    /// A slide longer than the size would leave gaps between windows.
    #[error("slide must not exceed size, got {0:?}")]
    SlideTooLong(String),
    /// A size, slide or gap beyond [`crate::time::MAX_DURATION`].
    #[error("window sizes, slides and gaps must be at most {max} (2^62), got {0:?}", max = MAX_DURATION)]
    TooLong(String),
    /// A sliding window whose record would belong to more than [`MAX_WINDOWS_PER_RECORD`]
    /// windows (`size / slide`, rounded up).
    #[error("a record would belong to more than {max} sliding windows (size / slide), got {0:?}", max = MAX_WINDOWS_PER_RECORD)]
    TooManyWindows(String),
}

/// The most sliding windows one record may belong to (`size / slide`, rounded up): each costs
/// an update per record, so a larger ratio is refused rather than left to run for ever.
pub const MAX_WINDOWS_PER_RECORD: u64 = 1 << 20;

impl FromStr for WindowAssigner {
    type Err = WindowSpecError;

    /// Reads `tumbling:SIZE`, `sliding:SIZE/SLIDE` or `session:GAP`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || WindowSpecError::Syntax(text.to_string());
        let (kind, args) = text.split_once(':').ok_or_else(syntax)?;
        let assigner = match kind {
            "tumbling" => WindowAssigner::Tumbling(parse_millis(args)?),
            "sliding" => {
                let (size, slide) = args.split_once('/').ok_or_else(syntax)?;
                WindowAssigner::Sliding(parse_millis(size)?, parse_millis(slide)?)
            }
            "session" => WindowAssigner::Session(parse_millis(args)?),
            _ => return Err(syntax()),
        };
        assigner.validate().map_err(|e| match e {
            WindowSpecError::Zero(_) => WindowSpecError::Zero(text.to_string()),
            WindowSpecError::SlideTooLong(_) => WindowSpecError::SlideTooLong(text.to_string()),
            WindowSpecError::TooLong(_) => WindowSpecError::TooLong(text.to_string()),
            WindowSpecError::TooManyWindows(_) => WindowSpecError::TooManyWindows(text.to_string()),
            other => other,
        })?;
        Ok(assigner)
    }
}

impl fmt::Display for WindowAssigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowAssigner::Tumbling(size) => write!(f, "tumbling:{size}"),
            WindowAssigner::Sliding(size, slide) => write!(f, "sliding:{size}/{slide}"),
            WindowAssigner::Session(gap) => write!(f, "session:{gap}"),
        }
    }
}

impl WindowAssigner {
    /// Checks that sizes, slides and gaps are positive and at most
    /// [`crate::time::MAX_DURATION`], that slides do not exceed sizes, and that a record belongs
    /// to at most [`MAX_WINDOWS_PER_RECORD`] sliding windows. The window operators assume a
    /// valid assigner and event times of at most [`crate::time::MAX_TIME`].
    pub fn validate(&self) -> Result<(), WindowSpecError> {
        let text = self.to_string();
        match *self {
            WindowAssigner::Tumbling(d) | WindowAssigner::Session(d) if d > MAX_DURATION => {
                Err(WindowSpecError::TooLong(text))
            }
            WindowAssigner::Sliding(size, slide) if size.max(slide) > MAX_DURATION => {
                Err(WindowSpecError::TooLong(text))
            }
            WindowAssigner::Tumbling(0) | WindowAssigner::Session(0) => {
                Err(WindowSpecError::Zero(text))
            }
            WindowAssigner::Sliding(size, slide) if size == 0 || slide == 0 => {
                Err(WindowSpecError::Zero(text))
            }
            WindowAssigner::Sliding(size, slide) if slide > size => {
                Err(WindowSpecError::SlideTooLong(text))
            }
            WindowAssigner::Sliding(size, slide)
                if size.div_ceil(slide) > MAX_WINDOWS_PER_RECORD =>
            {
                Err(WindowSpecError::TooManyWindows(text))
            }
            _ => Ok(()),
        }
    }

    /// A short description for operator names, with durations in units of `unit_ns`
    /// nanoseconds (the time domain's: 1 ms for the `window` command, 1 ns for the workloads).
    ///
    /// ```
    /// use tidemark::window::WindowAssigner;
    /// assert_eq!(WindowAssigner::Sliding(10_000, 2_000).describe(1_000_000), "sliding 10s/2s");
    /// assert_eq!(WindowAssigner::Session(5).describe(1), "session 5ns");
    /// ```
    pub fn describe(&self, unit_ns: u64) -> String {
        let d = |t: u64| crate::units::format_nanos(t.saturating_mul(unit_ns));
        match *self {
            WindowAssigner::Tumbling(size) => format!("tumbling {}", d(size)),
            WindowAssigner::Sliding(size, slide) => format!("sliding {}/{}", d(size), d(slide)),
            WindowAssigner::Session(gap) => format!("session {}", d(gap)),
        }
    }

    /// Every window containing event time `ts`, in order of their ends.
    ///
    /// For sessions this is the record's own window `[ts, ts + gap)`.
    ///
    /// ```
    /// use tidemark::window::{Window, WindowAssigner};
    /// let windows: Vec<Window> = WindowAssigner::Sliding(10, 5).windows_of(1).collect();
    /// assert_eq!(windows, vec![Window { start: -5, end: 5 }, Window { start: 0, end: 10 }]);
    /// ```
    pub fn windows_of(&self, ts: u64) -> impl Iterator<Item = Window> {
        let (fixed, session) = match *self {
            WindowAssigner::Tumbling(size) => (Some(Panes::new(size, size)), None),
            WindowAssigner::Sliding(size, slide) => (Some(Panes::new(size, slide)), None),
            WindowAssigner::Session(gap) => (None, Some(Window::session(ts, ts, gap))),
        };
        let fixed = fixed
            .into_iter()
            .flat_map(move |panes| panes.windows_of(ts));
        fixed.chain(session)
    }
}

impl Window {
    /// The session window of records with event times `first` to `last`: `[first, last + gap)`.
    pub(crate) fn session(first: u64, last: u64, gap: u64) -> Window {
        Window {
            start: first as i64,
            end: last.saturating_add(gap),
        }
    }
}

/// The geometry of tumbling and sliding windows, cut into panes.
///
/// Panes are the intervals of width `gcd(size, slide)`; every record in a pane belongs to
/// exactly the same windows, so a pane is the unit of pre-aggregation and of window lookup.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Panes {
    pub(crate) size: u64,
    pub(crate) slide: u64,
    pub(crate) width: u64,
}

impl Panes {
    pub(crate) fn new(size: u64, slide: u64) -> Panes {
        let width = gcd(size, slide);
        Panes { size, slide, width }
    }

    /// Every window containing event time `ts`, in order of their ends.
    pub(crate) fn windows_of(self, ts: u64) -> impl Iterator<Item = Window> {
        let (first, last) = self.window_ends(self.pane_start(ts));
        (first..=last)
            .step_by(self.slide as usize)
            .map(move |end| self.window(end))
    }

    /// Start of the pane containing `ts`.
    #[inline]
    pub(crate) fn pane_start(&self, ts: u64) -> u64 {
        ts - ts % self.width
    }

    /// The smallest and largest end of the windows containing the pane starting at `pane`;
    /// the ends in between are spaced by `slide`.
    #[inline]
    pub(crate) fn window_ends(&self, pane: u64) -> (u64, u64) {
        let last = (pane / self.slide) * self.slide + self.size;
        let lowest = pane + self.width;
        let residue = self.size % self.slide;
        let first = lowest + (residue + self.slide - lowest % self.slide) % self.slide;
        (first, last)
    }

    /// The window ending at `end`.
    #[inline]
    pub(crate) fn window(&self, end: u64) -> Window {
        Window {
            start: end as i64 - self.size as i64,
            end,
        }
    }
}

/// The greatest common divisor of `a` and `b` (Euclid's algorithm; `gcd(a, 0) = a`).
pub(crate) fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// One row of a window changelog: `value` enters (`diff = +1`) or leaves (`diff = -1`) the
/// result of `key` in `window`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowResult<K, O> {
    /// The window.
    pub window: Window,
    /// The key.
    pub key: K,
    /// The aggregate.
    pub value: O,
    /// `+1` for a value that enters the result, `-1` for a retraction.
    pub diff: i64,
}

/// A record that arrived too late for `window` (beyond the allowed lateness).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Late<K, V> {
    /// The window the record missed.
    pub window: Window,
    /// The record's key.
    pub key: K,
    /// The record.
    pub record: V,
}

/// What a window state emits; the operator routes results and late records to its two outputs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Emit<K, O, V> {
    /// A changelog row.
    Result(WindowResult<K, O>),
    /// A late record.
    Late(Late<K, V>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(size: u64, slide: u64, ts: u64) -> Vec<Window> {
        let mut out = Vec::new();
        let mut k = -(size as i64 / slide as i64) - 2;
        while k * (slide as i64) <= ts as i64 {
            let start = k * slide as i64;
            if start <= ts as i64 && (ts as i64) < start + size as i64 {
                out.push(Window {
                    start,
                    end: (start + size as i64) as u64,
                });
            }
            k += 1;
        }
        out
    }

    #[test]
    fn sliding_windows_match_brute_force() {
        for size in 1..13 {
            for slide in 1..=size {
                for ts in 0..40 {
                    let got: Vec<_> = WindowAssigner::Sliding(size, slide)
                        .windows_of(ts)
                        .collect();
                    assert_eq!(
                        got,
                        brute(size, slide, ts),
                        "size {size} slide {slide} ts {ts}"
                    );
                }
            }
        }
    }

    #[test]
    fn parses_specs() {
        assert_eq!("tumbling:10s".parse(), Ok(WindowAssigner::Tumbling(10_000)));
        assert_eq!(
            "sliding:1m/10s".parse(),
            Ok(WindowAssigner::Sliding(60_000, 10_000))
        );
        assert_eq!("session:30".parse(), Ok(WindowAssigner::Session(30)));
        // Each refusal names the text it refused.
        type Refusal = fn(String) -> WindowSpecError;
        let refusals = [
            ("tumbling:0", WindowSpecError::Zero as Refusal),
            ("sliding:5/10", WindowSpecError::SlideTooLong),
            ("hopping:5", WindowSpecError::Syntax),
        ];
        for (text, refusal) in refusals {
            assert_eq!(
                text.parse::<WindowAssigner>(),
                Err(refusal(text.to_owned()))
            );
        }
        assert!(matches!(
            "tumbling:5x".parse::<WindowAssigner>(),
            Err(WindowSpecError::Duration(_))
        ));
    }
}
