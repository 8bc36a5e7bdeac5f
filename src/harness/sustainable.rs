//! Sustainable throughput (Karimov et al., ICDE 2018): the highest offered rate whose latency
//! stays bounded over the run.
//!
//! A rate is sustainable when the run was not overloaded (see [`super::driver`]), its p99 is
//! within the bound, the p99 of the run's last
//! third is within it too (latency not growing), and the engine processed at least 99% of
//! what was offered. The search brackets the rate between zero and the closed-loop maximum and
//! bisects; each probe is a full run of the configured duration.

use super::report::Report;

/// The verdict on one probe run.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// Offered rate.
    pub rate: u64,
    /// Whether it was sustainable.
    pub sustainable: bool,
    /// The run's report.
    pub report: Report,
}

/// Whether a run at `rate` was sustainable under `bound_ns`, given the p99 of its last third.
/// An overloaded run, or one without latency samples, never is.
pub fn sustainable(report: &Report, late_p99_ns: Option<u64>, bound_ns: u64) -> bool {
    let offered = report.offered_rate.unwrap_or(0) as f64;
    !report.overloaded
        && report.latency_ns.p99.is_some_and(|p99| p99 <= bound_ns)
        && late_p99_ns.is_some_and(|p99| p99 <= bound_ns)
        && report.achieved_rate >= 0.99 * offered
}

/// Bisects between 0 and `max_rate` with `run(rate) -> (report, late p99)`, `steps` probes.
/// Returns every probe, and the best sustainable one if any.
pub fn search(
    max_rate: u64,
    bound_ns: u64,
    steps: usize,
    mut run: impl FnMut(u64) -> anyhow::Result<(Report, Option<u64>)>,
) -> anyhow::Result<(Vec<Probe>, Option<Probe>)> {
    let (mut lo, mut hi) = (0u64, max_rate.max(1));
    let mut probes = Vec::new();
    let mut best: Option<Probe> = None;
    // Start at the maximum: if even that is sustainable, there is nothing to search.
    let mut rate = hi;
    for _ in 0..steps {
        let (report, late) = run(rate)?;
        let ok = sustainable(&report, late, bound_ns);
        let probe = Probe {
            rate,
            sustainable: ok,
            report,
        };
        if ok {
            lo = rate;
            if best.as_ref().is_none_or(|b| b.rate < rate) {
                best = Some(probe.clone());
            }
        } else {
            hi = rate;
        }
        probes.push(probe);
        if ok && rate == max_rate.max(1) {
            break;
        }
        rate = lo + (hi - lo) / 2;
        if rate == lo || rate == 0 {
            break;
        }
    }
    Ok((probes, best))
}
