//! Brute-force reference implementation of exact windowed aggregation.
//!
//! This module is written directly from the specification rules, favouring
//! obviously-correct code over speed. All intermediate window arithmetic is
//! done in `i128`/`u128` so that no overflow can occur for any `u64` input.
//!
//! Rules (summarised; see the doc comment of [`reference`] for details):
//! 1. Watermark before event `i`: `W_i = max(ts[0..i]).saturating_sub(max_delay)`,
//!    with `W_0 = 0`.
//! 2. Window assignment: tumbling `[k*size, (k+1)*size)`; sliding every
//!    `[k*slide, k*slide+size)` containing `ts` (any integer `k`, so starts may
//!    be negative); session `[ts, ts+gap)` for the event's own interval.
//! 3. Fixed windows: event `i` is late for window `w` iff `end(w) + lateness <= W_i`.
//! 4. Sessions (Flink's rule for merging windows), applied in input order: event `i`
//!    arrives at `T_i = max(ts, W_i)`. The sessions of its key (formed by the events
//!    counted before it) with `end + lateness > T_i` are kept; the others are forgotten
//!    (Flink purges a merging window at `end + lateness`). Its own window `[ts, ts+gap)`
//!    joined with the kept sessions that it overlaps is the session it merges into. It is
//!    late iff that session's `end + lateness <= T_i` (late row naming that session);
//!    otherwise it counts and that session replaces the ones it joined. Every session
//!    formed, forgotten or not, is a result.
//! 5. Aggregates: Count (n * 1e9), Sum, Min, Max, Mean (round half away from zero).
//! 6. `late` is sorted ascending.

use std::collections::BTreeMap;

/// Fixed-point scale: a value `v` is represented by the mantissa `v * SCALE`.
pub const SCALE: i128 = 1_000_000_000;

/// One input record, in input-line order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Event {
    /// Event time.
    pub ts: u64,
    /// Grouping key.
    pub key: String,
    /// Fixed-point value: mantissa at scale 1e9 (2.5 is `2_500_000_000`).
    pub value: i128,
}

/// Window shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowKind {
    /// Non-overlapping windows `[k*size, (k+1)*size)`.
    Tumbling { size: u64 },
    /// Windows `[k*slide, k*slide + size)` for every integer `k`.
    Sliding { size: u64, slide: u64 },
    /// Per-key activity sessions separated by at least `gap`.
    Session { gap: u64 },
}

/// Aggregation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Agg {
    Count,
    Sum,
    Min,
    Max,
    Mean,
}

/// Query parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Params {
    pub kind: WindowKind,
    pub agg: Agg,
    /// Watermark delay: the watermark trails the largest seen event time by this much.
    pub max_delay: u64,
    /// Allowed lateness: a window still accepts events until `end + lateness <= watermark`.
    pub lateness: u64,
}

/// Result of a run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Final answer: `(window_start, window_end, key) -> value` as a fixed-point
    /// mantissa at scale 1e9 (count `n` is reported as `n * 1_000_000_000`).
    pub windows: BTreeMap<(i64, u64, String), i128>,
    /// Late rows: `(index of the event in the input slice, window_start, window_end)`
    /// for every window the event missed; sorted ascending.
    pub late: Vec<(usize, i64, u64)>,
}

/// An engine changelog of `(start, end, key, value mantissa, diff)` rows, consolidated (see
/// [`super::consolidate`]) to the reference's `(start, end, key) -> value`.
pub fn windows_of(
    changelog: impl IntoIterator<Item = (i64, u64, String, i128, i64)>,
) -> BTreeMap<(i64, u64, String), i128> {
    let rows = changelog.into_iter();
    super::consolidate(rows.map(|(s, e, key, value, diff)| ((s, e, key), value, diff)))
}

impl Outcome {
    /// Asserts that an engine run's changelog rows `(start, end, key, value mantissa, diff)`
    /// consolidate to these windows and that its late rows `(input index, start, end)`, sorted,
    /// are these; `what` names the run in a failure.
    pub fn assert_run(
        &self,
        changelog: impl IntoIterator<Item = (i64, u64, String, i128, i64)>,
        late: &[(usize, i64, u64)],
        what: &str,
    ) {
        assert_eq!(windows_of(changelog), self.windows, "{what}");
        assert_eq!(late, self.late, "late rows, {what}");
    }
}

/// Watermark in effect *before* each event: `result[i] = W_i`.
///
/// `W_i = max(ts of events 0..i).saturating_sub(max_delay)`, and `W_0 = 0`.
pub fn watermarks(events: &[Event], max_delay: u64) -> Vec<u64> {
    let mut out = Vec::with_capacity(events.len());
    for i in 0..events.len() {
        let w = match events[..i].iter().map(|e| e.ts).max() {
            None => 0,
            Some(m) => m.saturating_sub(max_delay),
        };
        out.push(w);
    }
    out
}

/// Every fixed (tumbling or sliding) window `[start, end)` that contains `ts`,
/// in increasing order of start. Panics for session windows or zero sizes.
pub fn fixed_windows_of(ts: u64, kind: &WindowKind) -> Vec<(i64, u64)> {
    match *kind {
        WindowKind::Tumbling { size } => {
            assert!(size > 0, "tumbling size must be positive");
            let k = ts / size; // floor, ts is non-negative
            let start = k as i128 * size as i128;
            let end = start + size as i128;
            vec![(to_i64(start), to_u64(end))]
        }
        WindowKind::Sliding { size, slide } => {
            assert!(
                size > 0 && slide > 0,
                "sliding size and slide must be positive"
            );
            let (ts, size, slide) = (ts as i128, size as i128, slide as i128);
            // The largest k with k*slide <= ts is floor(ts / slide) (ts >= 0).
            // Walk k downwards while the window still contains ts.
            let mut k = ts / slide;
            let mut out = Vec::new();
            while k * slide + size > ts {
                debug_assert!(k * slide <= ts);
                out.push((to_i64(k * slide), to_u64(k * slide + size)));
                k -= 1;
            }
            out.reverse();
            out
        }
        WindowKind::Session { .. } => panic!("fixed_windows_of called with session windows"),
    }
}

/// Mean of `n` values with mantissa sum `sum`, rounded to the nearest integer
/// mantissa with ties rounded away from zero. Panics if `n == 0`.
///
/// Examples: (5, 2) -> 3; (-5, 2) -> -3; (7, 3) -> 2; (-7, 3) -> -2; (8, 3) -> 3.
pub fn mean_round(sum: i128, n: u64) -> i128 {
    assert!(n > 0, "mean of zero values");
    let n = n as i128;
    let q = sum / n; // truncates toward zero
    let r = sum % n; // same sign as sum
    if 2 * r.abs() >= n {
        q + sum.signum()
    } else {
        q
    }
}

/// Apply an aggregate to the (non-empty) list of counted mantissas.
pub fn aggregate(agg: Agg, values: &[i128]) -> i128 {
    assert!(
        !values.is_empty(),
        "every output window has at least one event"
    );
    match agg {
        Agg::Count => values.len() as i128 * SCALE,
        Agg::Sum => values.iter().sum(),
        Agg::Min => *values.iter().min().unwrap(),
        Agg::Max => *values.iter().max().unwrap(),
        Agg::Mean => mean_round(values.iter().sum(), values.len() as u64),
    }
}

/// Brute-force reference: compute the exact final windows and late rows.
///
/// * Tumbling/sliding: for each event `i` and each window `w` containing its
///   time, if `end(w) + lateness <= W_i` the event is late for `w` (a late row
///   `(i, start, end)`), otherwise it counts in `w`. An event can thus be late
///   for some of its sliding windows and counted in others.
/// * Sessions: events are applied in input order under Flink's rule for merging
///   windows (rule 4 of the module documentation): event `i` is late iff the
///   session it merges into (its own window joined with the sessions of the
///   events counted before it that it overlaps) has `end + lateness <= T_i`,
///   with `T_i = max(ts, W_i)`; the late row names that session. Only sessions
///   kept at `T_i` (`end + lateness > T_i`) are joined; a forgotten session is
///   never merged again, so a later session may overlap it. A session's window is
///   `[first, last + gap)` of its events.
pub fn reference(events: &[Event], p: &Params) -> Outcome {
    let wm = watermarks(events, p.max_delay);
    let lateness = p.lateness as u128;
    let mut late = Vec::new();
    // (start, end, key) -> counted mantissas
    let mut groups: BTreeMap<(i64, u64, String), Vec<i128>> = BTreeMap::new();

    match p.kind {
        WindowKind::Tumbling { .. } | WindowKind::Sliding { .. } => {
            for (i, e) in events.iter().enumerate() {
                for (start, end) in fixed_windows_of(e.ts, &p.kind) {
                    if end as u128 + lateness <= wm[i] as u128 {
                        late.push((i, start, end));
                    } else {
                        groups
                            .entry((start, end, e.key.clone()))
                            .or_default()
                            .push(e.value);
                    }
                }
            }
        }
        WindowKind::Session { gap } => {
            assert!(gap > 0, "session gap must be positive");
            let gap = gap as u128;
            // key -> sessions (start, end, counted values), in creation order
            let mut sessions: BTreeMap<String, Vec<(u128, u128, Vec<i128>)>> = BTreeMap::new();
            for (i, e) in events.iter().enumerate() {
                let time = e.ts.max(wm[i]) as u128;
                let (ts, own_end) = (e.ts as u128, e.ts as u128 + gap);
                let mine = sessions.entry(e.key.clone()).or_default();
                let joins = |s: &(u128, u128, Vec<i128>)| {
                    s.1 + lateness > time && s.0 < own_end && ts < s.1
                };
                let start = mine
                    .iter()
                    .filter(|s| joins(s))
                    .map(|s| s.0)
                    .fold(ts, u128::min);
                let end = mine
                    .iter()
                    .filter(|s| joins(s))
                    .map(|s| s.1)
                    .fold(own_end, u128::max);
                if end + lateness <= time {
                    late.push((i, to_i64(start as i128), to_u64(end as i128)));
                    continue;
                }
                let mut values = vec![e.value];
                for s in mine.iter().filter(|s| joins(s)) {
                    values.extend(&s.2);
                }
                mine.retain(|s| !joins(s));
                mine.push((start, end, values));
            }
            for (key, mine) in sessions {
                for (start, end, values) in mine {
                    let window = (to_i64(start as i128), to_u64(end as i128), key.clone());
                    let clash = groups.insert(window, values);
                    assert!(clash.is_none(), "two sessions with one window");
                }
            }
        }
    }

    late.sort();
    let windows = groups
        .into_iter()
        .map(|(k, vals)| {
            let agg = aggregate(p.agg, &vals);
            (k, agg)
        })
        .collect();
    Outcome { windows, late }
}

/// For fixed (tumbling/sliding) windows only: for every `(window, key)`, the
/// number of events whose time falls in the window, whether counted or late.
/// Used to check `counted + late == falling`. Panics for session windows.
pub fn conservation_counts(events: &[Event], p: &Params) -> BTreeMap<(i64, u64, String), u64> {
    assert!(
        !matches!(p.kind, WindowKind::Session { .. }),
        "conservation_counts is only defined for fixed windows"
    );
    let mut out = BTreeMap::new();
    for e in events {
        for (start, end) in fixed_windows_of(e.ts, &p.kind) {
            *out.entry((start, end, e.key.clone())).or_insert(0u64) += 1;
        }
    }
    out
}

/// Parse a decimal such as `"12"`, `"-3"`, `"2.5"`, `"0.125"` (optional leading
/// `-` or `+`, at least one integer digit, and if a `.` is present 1..=9
/// fractional digits) into a mantissa at scale 1e9. Panics on bad input.
pub fn parse_fixed(s: &str) -> i128 {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    assert!(
        all_digits(int_part),
        "parse_fixed: bad integer part in {s:?}"
    );
    let mut m: i128 = int_part.parse::<i128>().expect("integer part") * SCALE;
    if let Some(f) = frac_part {
        assert!(all_digits(f), "parse_fixed: bad fraction in {s:?}");
        assert!(
            f.len() <= 9,
            "parse_fixed: more than 9 fractional digits in {s:?}"
        );
        let digits: i128 = f.parse().expect("fraction digits");
        m += digits * 10i128.pow(9 - f.len() as u32);
    }
    if neg {
        -m
    } else {
        m
    }
}

/// Canonical decimal form of a mantissa at scale 1e9: integer part, then (only
/// if the fraction is non-zero) `.` and the fraction with trailing zeros
/// stripped. Examples: `"2.5"`, `"-0.125"`, `"3"`, `"-0.5"`, `"0"`.
pub fn format_fixed(m: i128) -> String {
    let sign = if m < 0 { "-" } else { "" };
    let abs = m.unsigned_abs();
    let scale = SCALE as u128;
    let int = abs / scale;
    let frac = abs % scale;
    if frac == 0 {
        format!("{sign}{int}")
    } else {
        let digits = format!("{frac:09}");
        format!("{sign}{int}.{}", digits.trim_end_matches('0'))
    }
}

fn to_i64(x: i128) -> i64 {
    i64::try_from(x).expect("window start out of i64 range")
}

fn to_u64(x: i128) -> u64 {
    u64::try_from(x).expect("window end out of u64 range")
}
