//! The machine a sweep ran on, as `machine.json` records it.

use serde::{Deserialize, Serialize};

/// The machine a sweep ran on (`machine.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Host name.
    pub host: String,
    /// Operating system and kernel release (`Linux 6.1.0`).
    pub os: String,
    /// CPU model (`model name` of `/proc/cpuinfo`).
    pub cpu_model: String,
    /// Cores this process may use (`std::thread::available_parallelism`).
    pub cores_available: usize,
    /// Processors listed in `/proc/cpuinfo`.
    pub cores_cpuinfo: usize,
    /// Physical memory (`MemTotal` of `/proc/meminfo`), bytes.
    pub memory_bytes: u64,
    /// When the sweep started, UTC (`2025-01-31T12:00:00Z`).
    pub date: String,
}

impl Machine {
    /// Describes this machine, from `/proc` (fields are `unknown` or 0 where it is missing).
    pub fn detect() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_string(), |(_, v)| v.trim().to_string());
        let cores_cpuinfo = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let memory_bytes = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let ostype = read("/proc/sys/kernel/ostype");
        let release = read("/proc/sys/kernel/osrelease");
        let os = format!(
            "{} {}",
            if ostype.trim().is_empty() {
                std::env::consts::OS
            } else {
                ostype.trim()
            },
            release.trim()
        )
        .trim()
        .to_string();
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Machine {
            host: crate::harness::report::host(),
            os,
            cpu_model,
            cores_available: std::thread::available_parallelism().map_or(0, usize::from),
            cores_cpuinfo,
            memory_bytes,
            date: utc_date(seconds),
        }
    }
}

/// Seconds since the Unix epoch as an ISO 8601 UTC date and time.
///
/// ```
/// use tidemark::harness::experiment::utc_date;
/// assert_eq!(utc_date(0), "1970-01-01T00:00:00Z");
/// assert_eq!(utc_date(1_709_210_096), "2024-02-29T12:34:56Z");
/// ```
pub fn utc_date(seconds: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_is_described() {
        let m = Machine::detect();
        assert!(m.date.ends_with('Z'));
        assert!(m.cores_available >= 1);
        let json = serde_json::to_value(&m).unwrap();
        for field in ["host", "os", "cpu_model", "cores_cpuinfo", "memory_bytes"] {
            assert!(json.get(field).is_some(), "{field}");
        }
    }
}
