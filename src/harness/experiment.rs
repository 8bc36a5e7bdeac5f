//! Experiment specs: a grid of `tidemark bench` parameters, repeated, with results in one
//! directory (`tidemark sweep`).
//!
//! A spec is a TOML file; its name is the file's stem. Every key other than the few spec keys is
//! a `tidemark bench` flag (without the dashes; `_` and `-` are the same), plus `workload`, the
//! benchmark's positional argument:
//!
//! ```toml
//! description = "latency against offered rate"
//! workload = "ysb"            # shorthand for fixed.workload
//! repetitions = 2             # each point runs this many times (default 1)
//! # output = "results/latency" # default: results/NAME beside the spec file
//!
//! [fixed]                     # the same for every run
//! duration = "3s"
//! warmup = "1s"
//!
//! [grid]                      # the cartesian product of these lists
//! rate = ["1M", "2M", "4M"]
//! epoch = ["1ms", "10ms"]
//! ```
//!
//! `[[grid]]` (an array of tables) gives a union of products, for runs that do not share every
//! dimension (NEXMark queries beside YSB). `exclude = [{ engine = "baseline", rate = "4M" }]`
//! drops every point that matches all the keys of one entry (a list matches any of its values).
//! Points with `engine = "baseline"` and more than one worker or process are always skipped: the
//! baseline is single-threaded.
//!
//! A point is the full set of flags of one run (fixed and grid together); a run is a point and a
//! repetition (0 to `repetitions - 1`). Runs go repetition by repetition (every point once, then
//! every point again), so that slow drift of a shared machine spreads over all points.
//!
//! Results, the layout notebooks read (`DIR` = the output directory):
//!
//! * `DIR/runs.jsonl`: one JSON object per completed run: the fields of
//!   [`Report`](super::report::Report), plus `spec` (the name), `point` (flag to value, as in
//!   the spec), `repetition` and `hlog` (the interval log's path relative to `DIR`).
//! * `DIR/hlog/*.hlog`: the runs' HdrHistogram interval logs.
//! * `DIR/machine.json`: the machine ([`Machine`]).
//!
//! A run whose point and repetition are already in `runs.jsonl` is not run again, so an
//! interrupted sweep resumes where it stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::partition::route_hash;

/// One parameter value, as written in the spec.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// A string (`"1M"`, `"10ms"`, `"ysb"`).
    Text(String),
    /// An integer (`workers = 4`).
    Int(i64),
    /// A decimal number.
    Float(f64),
    /// A switch: `true` passes the flag, `false` leaves it out.
    Bool(bool),
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::Text(s) => f.write_str(s),
            Param::Int(n) => write!(f, "{n}"),
            Param::Float(x) => write!(f, "{x}"),
            Param::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl Param {
    fn from_toml(value: &toml::Value) -> Option<Param> {
        match value {
            toml::Value::String(s) => Some(Param::Text(s.clone())),
            toml::Value::Integer(n) => Some(Param::Int(*n)),
            toml::Value::Float(x) => Some(Param::Float(*x)),
            toml::Value::Boolean(b) => Some(Param::Bool(*b)),
            _ => None,
        }
    }

    /// The value as JSON (numbers stay numbers).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Param::Text(s) => serde_json::Value::String(s.clone()),
            Param::Int(n) => serde_json::Value::from(*n),
            Param::Float(x) => serde_json::Value::from(*x),
            Param::Bool(b) => serde_json::Value::Bool(*b),
        }
    }

    /// The value as an integer, if it is one (also `"4"`).
    fn as_int(&self) -> Option<i64> {
        match self {
            Param::Int(n) => Some(*n),
            Param::Text(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// One point of the grid: flag name (without dashes) to value, `workload` included.
pub type Point = BTreeMap<String, Param>;

/// A point's JSON object, keys sorted.
pub fn point_json(point: &Point) -> serde_json::Value {
    serde_json::Value::Object(
        point
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect(),
    )
}

/// The resume key of a run: the point (as canonical JSON, keys sorted) and the repetition.
pub fn run_key(point: &serde_json::Value, repetition: u64) -> String {
    fn canonical(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::Object(map) => {
                let sorted: BTreeMap<&String, String> =
                    map.iter().map(|(k, v)| (k, canonical(v))).collect();
                let fields: Vec<String> = sorted
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::Value::String(k.clone())))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }
            other => other.to_string(),
        }
    }
    format!("{}#{repetition}", canonical(point))
}

/// One run of a sweep: a point and a repetition.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// The flags.
    pub point: Point,
    /// Which repetition, from 0.
    pub repetition: u64,
}

impl Run {
    /// The resume key ([`run_key`]).
    pub fn key(&self) -> String {
        run_key(&point_json(&self.point), self.repetition)
    }

    /// The workload (the point's `workload`).
    pub fn workload(&self) -> String {
        self.point
            .get("workload")
            .map_or_else(|| "unknown".to_string(), Param::to_string)
    }

    /// The file name of the run's interval log: workload, a hash of the point, repetition.
    pub fn hlog_name(&self) -> String {
        let point = run_key(&point_json(&self.point), 0);
        format!(
            "{}-{:016x}-r{}.hlog",
            self.workload(),
            route_hash(&point),
            self.repetition
        )
    }

    /// The arguments of `tidemark bench` for this run (without `--json` and `--hlog`):
    /// the workload first, then `--flag value` in name order (`--flag` alone for `true`).
    pub fn bench_args(&self) -> Vec<String> {
        let mut args = vec!["bench".to_string(), self.workload()];
        for (flag, value) in &self.point {
            match value {
                _ if flag == "workload" => {}
                Param::Bool(false) => {}
                Param::Bool(true) => args.push(format!("--{flag}")),
                value => {
                    args.push(format!("--{flag}"));
                    args.push(value.to_string());
                }
            }
        }
        args
    }

    /// The run in one line: the flags that vary in its sweep, and the repetition.
    pub fn label(&self, varying: &BTreeSet<String>) -> String {
        let mut parts: Vec<String> = vec![self.workload()];
        parts.extend(
            self.point
                .iter()
                .filter(|(k, _)| *k != "workload" && varying.contains(*k))
                .map(|(k, v)| format!("{k}={v}")),
        );
        parts.push(format!("r{}", self.repetition));
        parts.join(" ")
    }
}

/// Why a spec was rejected; the message names the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct SpecError {
    /// The spec file.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

/// Flags that the sweep sets itself, or that need more than one command.
const RESERVED: [&str; 7] = [
    "json",
    "hlog",
    "process",
    "hostfile",
    "help",
    "version",
    "connect-timeout",
];

/// A parsed experiment spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// The spec's name (the file stem).
    pub name: String,
    /// What the experiment is for.
    pub description: String,
    /// Runs per point.
    pub repetitions: u64,
    /// Where results go.
    pub output: PathBuf,
    /// Parameters of every run.
    pub fixed: Point,
    /// The grids; their products are joined.
    pub grids: Vec<BTreeMap<String, Vec<Param>>>,
    /// Points matching one of these (every key, a value among the listed) are left out.
    pub exclude: Vec<BTreeMap<String, Vec<Param>>>,
    /// The longest one run may take, if the spec sets one (text, e.g. `"5m"`).
    pub timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    description: Option<String>,
    workload: Option<toml::Value>,
    repetitions: Option<i64>,
    output: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    fixed: toml::Table,
    grid: Option<RawGrid>,
    #[serde(default)]
    exclude: Vec<toml::Table>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawGrid {
    One(toml::Table),
    Many(Vec<toml::Table>),
}

/// The outcome of expanding a spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expansion {
    /// The runs, repetition by repetition.
    pub runs: Vec<Run>,
    /// Points left out, with the reason.
    pub skipped: Vec<(Point, String)>,
    /// The flags whose value differs between points.
    pub varying: BTreeSet<String>,
}

impl Spec {
    /// Reads and parses a spec file; `flags` are the long flags `tidemark bench` accepts.
    pub fn load(path: &Path, flags: &[String]) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        Spec::parse(path, &text, flags)
    }

    /// Parses spec text; `path` gives the name, the default output directory and error
    /// messages, `flags` the long flags `tidemark bench` accepts.
    pub fn parse(path: &Path, text: &str, flags: &[String]) -> Result<Spec, SpecError> {
        let file = path.display().to_string();
        let err = |message: String| SpecError {
            file: file.clone(),
            message,
        };
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| err("the spec file needs a name".into()))?
            .to_string();
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            err(e
                .to_string()
                .trim_end()
                .replace('\n', " ")
                .replace("  ", " "))
        })?;
        let key = |section: &str, key: &str| -> Result<String, SpecError> {
            let flag = key.replace('_', "-");
            if flag == "workload" {
                return Ok(flag);
            }
            if RESERVED.contains(&flag.as_str()) {
                return Err(err(format!(
                    "{section}: key '{key}': --{flag} cannot be set in a spec (the sweep sets it, \
                     or it needs several commands)"
                )));
            }
            if !flags.contains(&flag) {
                return Err(err(format!(
                    "{section}: key '{key}' is not a `tidemark bench` flag (known: workload, {})",
                    flags
                        .iter()
                        .filter(|f| !RESERVED.contains(&f.as_str()))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Ok(flag)
        };
        let scalar = |section: &str, k: &str, v: &toml::Value| -> Result<Param, SpecError> {
            Param::from_toml(v).ok_or_else(|| {
                err(format!(
                    "{section}: key '{k}': expected a string, number or boolean, got {v}"
                ))
            })
        };
        let list = |section: &str, k: &str, v: &toml::Value| -> Result<Vec<Param>, SpecError> {
            match v {
                toml::Value::Array(items) if items.is_empty() => {
                    Err(err(format!("{section}: key '{k}': the list is empty")))
                }
                toml::Value::Array(items) => {
                    items.iter().map(|item| scalar(section, k, item)).collect()
                }
                v => Ok(vec![scalar(section, k, v)?]),
            }
        };

        let mut fixed = Point::new();
        for (k, v) in &raw.fixed {
            fixed.insert(key("fixed", k)?, scalar("fixed", k, v)?);
        }
        if let Some(workload) = &raw.workload {
            if fixed.contains_key("workload") {
                return Err(err("workload is set twice (top level and [fixed])".into()));
            }
            fixed.insert(
                "workload".into(),
                scalar("top level", "workload", workload)?,
            );
        }
        let raw_grids = match raw.grid {
            None => vec![],
            Some(RawGrid::One(table)) => vec![table],
            Some(RawGrid::Many(tables)) => tables,
        };
        let mut grids = Vec::new();
        for (i, table) in raw_grids.iter().enumerate() {
            let section = if raw_grids.len() == 1 {
                "grid".to_string()
            } else {
                format!("grid {}", i + 1)
            };
            let mut grid = BTreeMap::new();
            for (k, v) in table {
                let flag = key(&section, k)?;
                if fixed.contains_key(&flag) {
                    return Err(err(format!(
                        "{section}: key '{k}' is also in [fixed]: set it in one place"
                    )));
                }
                grid.insert(flag, list(&section, k, v)?);
            }
            grids.push(grid);
        }
        let mut exclude = Vec::new();
        for table in &raw.exclude {
            let mut entry = BTreeMap::new();
            for (k, v) in table {
                entry.insert(key("exclude", k)?, list("exclude", k, v)?);
            }
            exclude.push(entry);
        }
        let repetitions = raw.repetitions.unwrap_or(1);
        if repetitions < 1 {
            return Err(err(format!(
                "key 'repetitions': expected at least 1, got {repetitions}"
            )));
        }
        let base = path.parent().unwrap_or(Path::new(""));
        let output = match raw.output {
            Some(out) => base.join(out),
            None => base.join("results").join(&name),
        };
        let spec = Spec {
            name,
            description: raw.description.unwrap_or_default(),
            repetitions: repetitions as u64,
            output,
            fixed,
            grids,
            exclude,
            timeout: raw.timeout,
        };
        let missing =
            spec.grids.iter().any(|g| !g.contains_key("workload")) || spec.grids.is_empty();
        if !spec.fixed.contains_key("workload") && missing {
            return Err(err(
                "no workload: set workload = \"ysb\" (or wordcount, nexmark) at the top, in \
                 [fixed], or in every grid"
                    .into(),
            ));
        }
        Ok(spec)
    }

    /// Expands the grids into runs: each grid's cartesian product (duplicates across grids
    /// once), without excluded points and baseline points with several workers or processes,
    /// times the repetitions.
    pub fn expand(&self) -> Expansion {
        let mut points: Vec<Point> = Vec::new();
        let empty = [BTreeMap::new()];
        let grids: &[BTreeMap<String, Vec<Param>>] = if self.grids.is_empty() {
            &empty
        } else {
            &self.grids
        };
        for grid in grids {
            let mut product = vec![self.fixed.clone()];
            for (flag, values) in grid {
                product = product
                    .into_iter()
                    .flat_map(|point| {
                        values.iter().map(move |v| {
                            let mut p = point.clone();
                            p.insert(flag.clone(), v.clone());
                            p
                        })
                    })
                    .collect();
            }
            for point in product {
                if !points.contains(&point) {
                    points.push(point);
                }
            }
        }
        let mut expansion = Expansion::default();
        let mut kept = Vec::new();
        for point in points {
            match self.skip_reason(&point) {
                Some(reason) => expansion.skipped.push((point, reason)),
                None => kept.push(point),
            }
        }
        let keys: BTreeSet<&String> = kept.iter().flat_map(|p| p.keys()).collect();
        expansion.varying = keys
            .into_iter()
            .filter(|k| {
                let first = kept[0].get(*k);
                kept.iter().any(|p| p.get(*k) != first)
            })
            .cloned()
            .collect();
        for repetition in 0..self.repetitions {
            for point in &kept {
                expansion.runs.push(Run {
                    point: point.clone(),
                    repetition,
                });
            }
        }
        expansion
    }

    fn skip_reason(&self, point: &Point) -> Option<String> {
        let baseline = point.get("engine") == Some(&Param::Text("baseline".into()));
        let parallel = ["workers", "processes"]
            .iter()
            .any(|k| point.get(*k).and_then(Param::as_int).unwrap_or(1) > 1);
        if baseline && parallel {
            return Some("the baseline is single-threaded".into());
        }
        self.exclude.iter().enumerate().find_map(|(i, entry)| {
            entry
                .iter()
                .all(|(k, values)| point.get(k).is_some_and(|v| values.contains(v)))
                .then(|| format!("exclude entry {}", i + 1))
        })
    }
}

/// The resume keys of the runs recorded in a `runs.jsonl` (none if the file does not exist).
pub fn completed(path: &Path) -> Result<BTreeSet<String>, SpecError> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => {
            return Err(SpecError {
                file,
                message: format!("cannot read: {e}"),
            })
        }
    };
    let mut done = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: String| SpecError {
            file: format!("{file}:{}", i + 1),
            message: what,
        };
        let record: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not a JSON object: {e}")))?;
        let point = record
            .get("point")
            .filter(|p| p.is_object())
            .ok_or_else(|| bad("no \"point\" object".into()))?;
        let repetition = record
            .get("repetition")
            .and_then(|r| r.as_u64())
            .ok_or_else(|| bad("no \"repetition\" number".into()))?;
        done.insert(run_key(point, repetition));
    }
    Ok(done)
}

/// The line `runs.jsonl` gets for a run: the report's fields, then `spec`, `point`,
/// `repetition` and `hlog`.
pub fn record(
    report: serde_json::Value,
    spec: &str,
    run: &Run,
    hlog: &str,
) -> Result<String, String> {
    let serde_json::Value::Object(mut fields) = report else {
        return Err("the report is not a JSON object".into());
    };
    fields.insert("spec".into(), spec.into());
    fields.insert("point".into(), point_json(&run.point));
    fields.insert("repetition".into(), run.repetition.into());
    fields.insert("hlog".into(), hlog.into());
    serde_json::to_string(&fields).map_err(|e| e.to_string())
}

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
            host: super::report::host(),
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

    fn flags() -> Vec<String> {
        [
            "rate",
            "duration",
            "warmup",
            "epoch",
            "engine",
            "workers",
            "processes",
            "query",
            "json",
            "hlog",
            "find-sustainable",
            "partitioner",
        ]
        .map(String::from)
        .to_vec()
    }

    fn parse(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(Path::new("experiments/demo.toml"), text, &flags())
    }

    #[test]
    fn expands_the_product_times_repetitions() {
        let spec = parse(
            r#"
            workload = "ysb"
            repetitions = 2
            [fixed]
            duration = "3s"
            [grid]
            rate = ["1M", "2M", "4M"]
            workers = [1, 2]
            "#,
        )
        .unwrap();
        assert_eq!(spec.name, "demo");
        assert_eq!(spec.output, Path::new("experiments/results/demo"));
        let e = spec.expand();
        assert_eq!(e.runs.len(), 12);
        assert!(e.skipped.is_empty());
        assert_eq!(
            e.varying,
            ["rate", "workers"].map(String::from).into_iter().collect()
        );
        // Repetition by repetition, every run distinct.
        assert!(e.runs[..6].iter().all(|r| r.repetition == 0));
        let keys: BTreeSet<String> = e.runs.iter().map(Run::key).collect();
        assert_eq!(keys.len(), 12);
        let hlogs: BTreeSet<String> = e.runs.iter().map(Run::hlog_name).collect();
        assert_eq!(hlogs.len(), 12);
        let first = &e.runs[0];
        assert_eq!(
            first.bench_args(),
            [
                "bench",
                "ysb",
                "--duration",
                "3s",
                "--rate",
                "1M",
                "--workers",
                "1"
            ]
        );
        assert_eq!(first.label(&e.varying), "ysb rate=1M workers=1 r0");
    }

    #[test]
    fn grids_union_baseline_rule_and_exclude() {
        let spec = parse(
            r#"
            exclude = [{ engine = "timely", workers = 1, query = ["q8", "q11"] }]
            [[grid]]
            workload = "ysb"
            engine = ["timely", "baseline"]
            workers = [1, 2]
            [[grid]]
            workload = "nexmark"
            query = ["q5", "q8", "q11"]
            engine = ["timely", "baseline"]
            workers = [1, 2]
            find_sustainable = [false]
            "#,
        )
        .unwrap();
        let e = spec.expand();
        // ysb: 3 of 4; nexmark: 12, less 3 baseline x 2 and 2 excluded.
        assert_eq!(e.runs.len(), 3 + 7);
        assert_eq!(e.skipped.len(), 1 + 3 + 2);
        assert!(e
            .skipped
            .iter()
            .any(|(_, why)| why == "the baseline is single-threaded"));
        assert!(e.skipped.iter().any(|(_, why)| why == "exclude entry 1"));
        let nexmark = e.runs.iter().find(|r| r.workload() == "nexmark").unwrap();
        assert!(!nexmark
            .bench_args()
            .iter()
            .any(|a| a.contains("sustainable")));
    }

    #[test]
    fn no_grid_is_one_point() {
        let spec = parse("workload = \"wordcount\"\nrepetitions = 3\n").unwrap();
        let e = spec.expand();
        assert_eq!(e.runs.len(), 3);
        assert!(e.varying.is_empty());
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let message = |text: &str| parse(text).unwrap_err().to_string();
        let m = message("workload = \"ysb\"\n[grid]\nrat = [\"1M\"]\n");
        assert!(
            m.starts_with("experiments/demo.toml: grid: key 'rat'"),
            "{m}"
        );
        assert!(m.contains("not a `tidemark bench` flag"), "{m}");
        let m = message("workload = \"ysb\"\n[fixed]\njson = \"x\"\n");
        assert!(m.contains("key 'json'"), "{m}");
        let m = message("workload = \"ysb\"\nrepeats = 2\n");
        assert!(m.contains("repeats"), "{m}");
        let m = message("[grid]\nrate = [\"1M\"]\n");
        assert!(m.contains("no workload"), "{m}");
        let m = message("workload = \"ysb\"\n[fixed]\nrate = \"1M\"\n[grid]\nrate = [\"2M\"]\n");
        assert!(m.contains("also in [fixed]"), "{m}");
        let m = message("workload = \"ysb\"\n[grid]\nrate = []\n");
        assert!(m.contains("empty"), "{m}");
        let m = message("workload = \"ysb\"\nrepetitions = 0\n");
        assert!(m.contains("repetitions"), "{m}");
        let m = message("workload = \"ysb\"\n[grid]\nrate = [[1]]\n");
        assert!(m.contains("key 'rate'"), "{m}");
        let m = message("workload = ");
        assert!(m.starts_with("experiments/demo.toml: "), "{m}");
    }

    #[test]
    fn resume_keys_match_recorded_runs() {
        let spec =
            parse("workload = \"ysb\"\n[grid]\nrate = [\"1M\", 2000000]\nworkers = [1]\n").unwrap();
        let e = spec.expand();
        let dir = std::env::temp_dir().join(format!("tidemark-exp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("runs.jsonl");
        let _ = std::fs::remove_file(&path);
        assert!(completed(&path).unwrap().is_empty());
        let report = serde_json::json!({"workload": "ysb", "achieved_rate": 1.0});
        let line = record(report, "demo", &e.runs[1], "hlog/x.hlog").unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["spec"], "demo");
        assert_eq!(parsed["point"]["rate"], 2_000_000);
        assert_eq!(parsed["repetition"], 0);
        assert_eq!(parsed["hlog"], "hlog/x.hlog");
        assert_eq!(parsed["achieved_rate"], 1.0);
        std::fs::write(&path, format!("{line}\n")).unwrap();
        let done = completed(&path).unwrap();
        assert!(done.contains(&e.runs[1].key()));
        assert!(!done.contains(&e.runs[0].key()));
        std::fs::write(&path, format!("{line}\n{{\"point\": 3}}\n")).unwrap();
        let m = completed(&path).unwrap_err().to_string();
        assert!(m.contains("runs.jsonl:2"), "{m}");
        let _ = std::fs::remove_dir_all(&dir);
    }

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
