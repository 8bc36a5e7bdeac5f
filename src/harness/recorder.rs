//! The latency recorder: one per worker, merged across workers and processes.
//!
//! Invariants: latencies are nanoseconds in an HdrHistogram with three significant digits (so every
//! reported percentile is within 0.1% of the recorded value) up to one hour; samples whose epoch
//! was due during the warm-up or at its end are discarded (an epoch due at the warm-up's end holds
//! only events due in the warm-up, which the achieved rate does not count either); when interval
//! logging is on, the samples of each one-second interval (by due time since the start) are also
//! kept apart, for latency-over-time plots (only with `--hlog`: the current interval as a
//! histogram, finished ones compressed, a few hundred bytes each); with a tail, the samples due at
//! or after a given time are also kept in one histogram of their own (the late part of a run that
//! the sustainability check looks at). Without intervals a recorder's memory does not grow with the
//! length of the run. A recorder travels between workers as bytes (HdrHistogram's V2 format), so
//! merging across processes uses timely's own channels.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The largest latency recorded exactly (larger ones are clamped to it): one hour.
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;
/// Interval length of the interval log.
pub const INTERVAL_NS: u64 = 1_000_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

/// Latency percentiles of a run, in nanoseconds; all `None` (`null` in JSON) when no sample
/// was recorded (no measured epoch completed: latency unbounded, not zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<u64>,
    /// 90th percentile.
    pub p90: Option<u64>,
    /// 99th percentile.
    pub p99: Option<u64>,
    /// 99.9th percentile.
    pub p999: Option<u64>,
    /// Largest.
    pub max: Option<u64>,
}

/// Per-second histograms: the one being recorded into as a histogram, the others compressed
/// (HdrHistogram's V2 deflate encoding), so that a long run's intervals take little memory.
#[derive(Clone, Debug, Default)]
struct Intervals {
    open: Option<(u64, Histogram<u64>)>,
    closed: BTreeMap<u64, Vec<u8>>,
}

impl Intervals {
    /// Records into `interval`; samples arrive in due order, so this is nearly always the open
    /// one.
    #[inline]
    fn record(&mut self, interval: u64, latency: u64) {
        if let Some((open, h)) = self.open.as_mut() {
            if *open == interval {
                h.record(latency).expect("clamped into range");
                return;
            }
        }
        self.close();
        let mut h = self.take(interval);
        h.record(latency).expect("clamped into range");
        self.open = Some((interval, h));
    }

    /// Adds a whole histogram to `interval`.
    fn add(&mut self, interval: u64, other: &Histogram<u64>) {
        self.close();
        let mut h = self.take(interval);
        h.add(other).expect("same bounds");
        self.closed.insert(interval, compress(&h));
    }

    /// Compresses the open interval.
    fn close(&mut self) {
        if let Some((interval, h)) = self.open.take() {
            self.closed.insert(interval, compress(&h));
        }
    }

    /// The histogram of `interval`, out of the closed ones (empty if there is none).
    fn take(&mut self, interval: u64) -> Histogram<u64> {
        self.closed
            .remove(&interval)
            .map_or_else(histogram, |bytes| {
                Deserializer::new()
                    .deserialize(&mut &bytes[..])
                    .expect("written by compress")
            })
    }

    /// Every interval's histogram, in order.
    fn histograms(&self) -> Vec<(u64, Histogram<u64>)> {
        let mut all: Vec<(u64, Histogram<u64>)> = self
            .closed
            .iter()
            .map(|(interval, bytes)| {
                let h = Deserializer::new()
                    .deserialize(&mut &bytes[..])
                    .expect("written by compress");
                (*interval, h)
            })
            .collect();
        all.extend(self.open.clone());
        all.sort_by_key(|(interval, _)| *interval);
        all
    }
}

fn compress(h: &Histogram<u64>) -> Vec<u8> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("in-memory write");
    bytes
}

/// Records epoch latencies of one worker.
#[derive(Clone, Debug)]
pub struct Recorder {
    warmup_ns: u64,
    total: Histogram<u64>,
    intervals: Option<Intervals>,
    /// Samples due at or after the first field, if a tail is kept.
    tail: Option<(u64, Histogram<u64>)>,
}

impl Recorder {
    /// A recorder discarding samples due at or before `warmup_ns`; `intervals` keeps per-second
    /// ones.
    pub fn new(warmup_ns: u64, intervals: bool) -> Self {
        Recorder {
            warmup_ns,
            total: histogram(),
            intervals: intervals.then(Intervals::default),
            tail: None,
        }
    }

    /// The same recorder, also keeping the samples due at or after `from_ns` apart (see
    /// [`Recorder::tail_p99`]).
    pub fn with_tail(mut self, from_ns: u64) -> Self {
        self.tail = Some((from_ns, histogram()));
        self
    }

    /// Records the latency of an epoch due at `due_ns` (since the start) and retired at `now_ns`
    /// (discarded if due at or before the warm-up's end).
    #[inline]
    pub fn record(&mut self, due_ns: u64, now_ns: u64) {
        if due_ns <= self.warmup_ns {
            return;
        }
        let latency = now_ns.saturating_sub(due_ns).clamp(1, MAX_LATENCY_NS);
        self.total.record(latency).expect("clamped into range");
        if let Some((from, tail)) = self.tail.as_mut() {
            if due_ns >= *from {
                tail.record(latency).expect("clamped into range");
            }
        }
        if let Some(intervals) = self.intervals.as_mut() {
            intervals.record(due_ns / INTERVAL_NS, latency);
        }
    }

    /// Number of samples kept.
    pub fn samples(&self) -> u64 {
        self.total.len()
    }

    /// The percentiles of the samples kept.
    pub fn percentiles(&self) -> Percentiles {
        let h = &self.total;
        let at = |q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q));
        Percentiles {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: (!h.is_empty()).then(|| h.max()),
        }
    }

    /// The 99th percentile of the tail's samples (`None` without a tail or without samples in
    /// it).
    pub fn tail_p99(&self) -> Option<u64> {
        let (_, tail) = self.tail.as_ref()?;
        (!tail.is_empty()).then(|| tail.value_at_quantile(0.99))
    }

    /// Merges another recorder's samples into this one (its intervals and tail too, taken over
    /// where this one keeps none).
    pub fn merge(&mut self, other: &Recorder) {
        self.total.add(&other.total).expect("same bounds");
        match (self.tail.as_mut(), other.tail.as_ref()) {
            (Some((_, mine)), Some((_, theirs))) => mine.add(theirs).expect("same bounds"),
            (None, Some(theirs)) => self.tail = Some(theirs.clone()),
            _ => {}
        }
        match (self.intervals.as_mut(), other.intervals.as_ref()) {
            (Some(mine), Some(theirs)) => {
                for (interval, h) in theirs.histograms() {
                    mine.add(interval, &h);
                }
            }
            (None, Some(theirs)) => self.intervals = Some(theirs.clone()),
            _ => {}
        }
    }

    /// The recorder as bytes, to send to another worker: the warm-up, then length-prefixed
    /// HdrHistogram V2 encodings of the total and of each interval, then the tail's start and
    /// histogram (`u64::MAX` for none; little-endian `u64`s).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut serializer = V2Serializer::new();
        let mut put = |out: &mut Vec<u8>, h: &Histogram<u64>| {
            let mut bytes = Vec::new();
            serializer
                .serialize(h, &mut bytes)
                .expect("in-memory write");
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(&bytes);
        };
        out.extend_from_slice(&self.warmup_ns.to_le_bytes());
        put(&mut out, &self.total);
        match &self.intervals {
            None => out.extend_from_slice(&u64::MAX.to_le_bytes()),
            Some(intervals) => {
                let intervals = intervals.histograms();
                out.extend_from_slice(&(intervals.len() as u64).to_le_bytes());
                for (interval, h) in &intervals {
                    out.extend_from_slice(&interval.to_le_bytes());
                    put(&mut out, h);
                }
            }
        }
        match &self.tail {
            None => out.extend_from_slice(&u64::MAX.to_le_bytes()),
            Some((from, h)) => {
                out.extend_from_slice(&from.to_le_bytes());
                put(&mut out, h);
            }
        }
        out
    }

    /// A recorder from [`Recorder::to_bytes`].
    pub fn from_bytes(mut bytes: &[u8]) -> Recorder {
        let mut deserializer = Deserializer::new();
        let word = |bytes: &mut &[u8]| -> u64 {
            let (head, rest) = bytes.split_at(8);
            *bytes = rest;
            u64::from_le_bytes(head.try_into().expect("eight bytes"))
        };
        let warmup_ns = word(&mut bytes);
        let mut histogram = |bytes: &mut &[u8]| -> Histogram<u64> {
            let len = word(bytes) as usize;
            let (head, rest) = bytes.split_at(len);
            *bytes = rest;
            deserializer
                .deserialize(&mut &head[..])
                .expect("written by to_bytes")
        };
        let total = histogram(&mut bytes);
        let count = word(&mut bytes);
        let intervals = (count != u64::MAX).then(|| {
            let mut intervals = Intervals::default();
            for _ in 0..count {
                let interval = word(&mut bytes);
                intervals.add(interval, &histogram(&mut bytes));
            }
            intervals
        });
        let from = word(&mut bytes);
        let tail = (from != u64::MAX).then(|| (from, histogram(&mut bytes)));
        Recorder {
            warmup_ns,
            total,
            intervals,
            tail,
        }
    }

    /// Writes the interval histograms as an HdrHistogram interval log (readable by the standard
    /// HdrHistogram log tools: compressed V2 histograms, as Java's `HistogramLogWriter` writes),
    /// one interval per second of due time.
    pub fn write_interval_log(&self, out: &mut impl Write, comment: &str) -> std::io::Result<()> {
        let mut serializer = V2DeflateSerializer::new();
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment(comment)
            .with_max_value_divisor(1_000_000.0);
        let mut log = builder.begin_log_with(out, &mut serializer)?;
        for (interval, h) in self.intervals.iter().flat_map(Intervals::histograms) {
            let start = Duration::from_nanos(interval * INTERVAL_NS);
            log.write_histogram(&h, start, Duration::from_nanos(INTERVAL_NS), None)
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_intervals_are_kept_compressed() {
        let mut r = Recorder::new(0, true);
        // 100 s of 1 ms epochs, latencies 50 us to ~5 ms, and one sample back in interval 3.
        for epoch in 0..100_000u64 {
            let due = epoch * 1_000_000;
            r.record(due, due + 50_000 + (epoch * 7919 % 5_000) * 1_000);
        }
        r.record(3 * INTERVAL_NS, 3 * INTERVAL_NS + 1_000);
        let intervals = r.intervals.as_ref().unwrap();
        let kept: usize = intervals.closed.values().map(Vec::len).sum();
        // An uncompressed histogram of this range is about 0.25 MB; 100 of them would be 25 MB.
        assert!(kept < 100 * 8_192, "{kept} bytes for 100 intervals");
        let all = intervals.histograms();
        assert_eq!(all.len(), 100);
        // All but the sample due at 0, the end of the (empty) warm-up.
        assert_eq!(all.iter().map(|(_, h)| h.len()).sum::<u64>(), 100_000);
        assert_eq!(all[3].1.len(), 1_001);
        assert_eq!(Recorder::from_bytes(&r.to_bytes()).samples(), 100_000);
    }

    #[test]
    fn no_samples_means_no_percentiles() {
        let mut r = Recorder::new(1_000, false).with_tail(0);
        r.record(500, 10_000); // warm-up only
        let r = Recorder::from_bytes(&r.to_bytes());
        assert_eq!(r.samples(), 0);
        assert_eq!(r.percentiles(), Percentiles::default());
        assert_eq!(r.percentiles().p99, None);
        assert_eq!(r.tail_p99(), None);
    }

    #[test]
    fn discards_warmup_and_merges_through_bytes() {
        let mut a = Recorder::new(1_000, true).with_tail(INTERVAL_NS);
        a.record(500, 10_500); // warm-up: dropped
        a.record(1_000, 1_500); // due at the warm-up's end: a warm-up epoch, dropped
        a.record(2_000, 3_000); // 1 us
        let mut b = Recorder::new(1_000, true).with_tail(INTERVAL_NS);
        b.record(INTERVAL_NS + 5, INTERVAL_NS + 5 + 2_000_000); // 2 ms, second interval
        let mut merged = Recorder::from_bytes(&a.to_bytes());
        merged.merge(&Recorder::from_bytes(&b.to_bytes()));
        assert_eq!(merged.samples(), 2);
        let p = merged.percentiles();
        assert!((999..=1001).contains(&p.p50.unwrap()), "{p:?}");
        assert!((1_999_000..=2_002_000).contains(&p.max.unwrap()), "{p:?}");
        // Only the 2 ms sample is due in the tail.
        assert!((1_999_000..=2_002_000).contains(&merged.tail_p99().unwrap()));
        let mut log = Vec::new();
        merged.write_interval_log(&mut log, "test").unwrap();
        let text = String::from_utf8(log).unwrap();
        let intervals: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(intervals.len(), 2, "{text}");
        for line in intervals {
            // The compressed V2 cookie (0x1c849304) in base64, as the standard tools expect.
            assert!(line.contains(",HISTFAA"), "{line}");
        }
    }
}
