//! Experiment specs and their grids: parsing a spec file, checking its keys against the
//! arguments of `tidemark bench`, and expanding the grid into runs.
//!
//! What a key may be is not written here: [`BenchFlags`] reads it from the clap definition of
//! `tidemark bench`, so a flag added to the bench is a spec key at once. Whether a run's values
//! make sense (a known query, a warm-up shorter than the duration) is for the bench's own
//! argument checks; the sweep runs them on every run before the first one starts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use clap::ArgAction;
use serde::Deserialize;

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
}

/// One point of the grid: argument name (flags without dashes) to value.
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

/// The arguments of `tidemark bench` a spec may set, read from its clap definition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BenchFlags {
    /// Positional arguments in order (`workload`), by their clap id.
    pub positionals: Vec<String>,
    /// The positionals that must be given.
    pub required: Vec<String>,
    /// Long flags that take a value (`rate`, `duration`, ...).
    pub options: BTreeSet<String>,
    /// Long flags without a value (`find-sustainable`).
    pub switches: BTreeSet<String>,
    /// Flags a spec may not set: the ones the sweep sets itself.
    pub reserved: BTreeSet<String>,
}

impl BenchFlags {
    /// The arguments of `bench` (a clap command, built or not); `reserved` are the long flags
    /// the sweep sets for every run. clap's own `--help` and `--version` are left out.
    pub fn from_command(bench: &clap::Command, reserved: &[&str]) -> BenchFlags {
        let mut bench = bench.clone();
        bench.build();
        let mut flags = BenchFlags::default();
        for arg in bench.get_arguments() {
            if matches!(
                arg.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            ) {
                continue;
            }
            if arg.is_positional() {
                let id = arg.get_id().to_string();
                if arg.is_required_set() {
                    flags.required.push(id.clone());
                }
                flags.positionals.push(id);
            } else if let Some(long) = arg.get_long() {
                if reserved.contains(&long) {
                    flags.reserved.insert(long.to_string());
                } else if arg.get_action().takes_values() {
                    flags.options.insert(long.to_string());
                } else {
                    flags.switches.insert(long.to_string());
                }
            }
        }
        flags
    }

    fn known(&self) -> String {
        self.positionals
            .iter()
            .chain(&self.options)
            .chain(&self.switches)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One run of a sweep: a point and a repetition.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// The arguments.
    pub point: Point,
    /// Which repetition, from 0.
    pub repetition: u64,
    /// The arguments of `tidemark` for this run (without the sweep's own `--json`, `--hlog`,
    /// `--process` and `--hostfile`): `bench`, the positionals, then `--flag value` in name
    /// order (`--flag` alone for a switch set to `true`).
    pub args: Vec<String>,
    /// The positionals' values joined by `-` (`ysb`): names the run in labels and files.
    pub name: String,
}

impl Run {
    /// The run of `point` and `repetition` under `flags`.
    pub fn new(point: Point, repetition: u64, flags: &BenchFlags) -> Run {
        let mut args = vec!["bench".to_string()];
        let mut name = Vec::new();
        for positional in &flags.positionals {
            if let Some(value) = point.get(positional) {
                args.push(value.to_string());
                name.push(value.to_string());
            }
        }
        for (flag, value) in &point {
            match value {
                _ if flags.positionals.contains(flag) => {}
                Param::Bool(false) if flags.switches.contains(flag) => {}
                Param::Bool(true) if flags.switches.contains(flag) => {
                    args.push(format!("--{flag}"))
                }
                value => {
                    args.push(format!("--{flag}"));
                    args.push(value.to_string());
                }
            }
        }
        let name = if name.is_empty() {
            "run".to_string()
        } else {
            name.join("-")
        };
        Run {
            point,
            repetition,
            args,
            name,
        }
    }

    /// The resume key ([`run_key`]).
    pub fn key(&self) -> String {
        run_key(&point_json(&self.point), self.repetition)
    }

    /// The file name of the run's interval log: name, a hash of the point, repetition.
    pub fn hlog_name(&self) -> String {
        let point = run_key(&point_json(&self.point), 0);
        format!(
            "{}-{:016x}-r{}.hlog",
            self.name,
            route_hash(&point),
            self.repetition
        )
    }

    /// The run's command line (`tidemark bench ysb --rate 1M ...`).
    pub fn command(&self) -> String {
        format!("tidemark {}", self.args.join(" "))
    }

    /// The run in one line: its name, the arguments that vary in its sweep, the repetition.
    pub fn label(&self, varying: &BTreeSet<String>) -> String {
        let mut parts: Vec<String> = vec![self.name.clone()];
        parts.extend(
            self.point
                .iter()
                .filter(|(k, _)| varying.contains(*k))
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
    /// The spec file (with `:LINE` where a line is known).
    pub file: String,
    /// What is wrong.
    pub message: String,
}

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
    /// What the keys may be.
    pub flags: BenchFlags,
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
    /// Points left out (as their repetition-0 run), with the reason.
    pub skipped: Vec<(Run, String)>,
    /// The arguments whose value differs between points.
    pub varying: BTreeSet<String>,
}

impl Spec {
    /// Reads and parses a spec file; `flags` are what `tidemark bench` accepts.
    pub fn load(path: &Path, flags: BenchFlags) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        Spec::parse(path, &text, flags)
    }

    /// Parses spec text; `path` gives the name, the default output directory and error
    /// messages, `flags` what `tidemark bench` accepts.
    pub fn parse(path: &Path, text: &str, flags: BenchFlags) -> Result<Spec, SpecError> {
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
            if flags.positionals.contains(&key.to_string()) {
                return Ok(key.to_string());
            }
            if flags.reserved.contains(&flag) {
                return Err(err(format!(
                    "{section}: key '{key}': --{flag} cannot be set in a spec (the sweep sets it \
                     for every run)"
                )));
            }
            if !flags.options.contains(&flag) && !flags.switches.contains(&flag) {
                return Err(err(format!(
                    "{section}: key '{key}' is not a `tidemark bench` argument (known: {})",
                    flags.known()
                )));
            }
            Ok(flag)
        };
        let scalar = |section: &str, k: &str, v: &toml::Value| -> Result<Param, SpecError> {
            let value = Param::from_toml(v).ok_or_else(|| {
                err(format!(
                    "{section}: key '{k}': expected a string, number or boolean, got {v}"
                ))
            })?;
            let switch = flags.switches.contains(&k.replace('_', "-"));
            if switch && !matches!(value, Param::Bool(_)) {
                return Err(err(format!(
                    "{section}: key '{k}': a switch, so true or false, got {v}"
                )));
            }
            Ok(value)
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
            let k = key("top level", "workload")?;
            if fixed.contains_key(&k) {
                return Err(err("workload is set twice (top level and [fixed])".into()));
            }
            fixed.insert(k, scalar("top level", "workload", workload)?);
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
        for required in &flags.required {
            let everywhere = !grids.is_empty() && grids.iter().all(|g| g.contains_key(required));
            if !fixed.contains_key(required) && !everywhere {
                return Err(err(format!(
                    "no {required}: set {required} = \"...\" at the top, in [fixed], or in every \
                     grid"
                )));
            }
        }
        let base = path.parent().unwrap_or(Path::new(""));
        let output = match raw.output {
            Some(out) => base.join(out),
            None => base.join("results").join(&name),
        };
        Ok(Spec {
            name,
            description: raw.description.unwrap_or_default(),
            repetitions: repetitions as u64,
            output,
            fixed,
            grids,
            exclude,
            timeout: raw.timeout,
            flags,
        })
    }

    /// Expands the grids into runs: each grid's cartesian product (duplicates across grids
    /// once), without excluded points and points `skip` gives a reason to leave out (the
    /// sweep: the baseline on several processes), times the repetitions.
    pub fn expand(&self, skip: impl Fn(&Run) -> Option<String>) -> Expansion {
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
            let run = Run::new(point, 0, &self.flags);
            match skip(&run).or_else(|| self.excluded(&run.point)) {
                Some(reason) => expansion.skipped.push((run, reason)),
                None => kept.push(run.point),
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
                expansion
                    .runs
                    .push(Run::new(point.clone(), repetition, &self.flags));
            }
        }
        expansion
    }

    fn excluded(&self, point: &Point) -> Option<String> {
        self.exclude.iter().enumerate().find_map(|(i, entry)| {
            entry
                .iter()
                .all(|(k, values)| point.get(k).is_some_and(|v| values.contains(v)))
                .then(|| format!("exclude entry {}", i + 1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The real `tidemark bench` arguments, as the sweep reads them.
    fn flags() -> BenchFlags {
        let cli = crate::cli::Cli::command();
        let bench = cli.find_subcommand("bench").unwrap();
        BenchFlags::from_command(bench, &["json", "hlog", "process", "hostfile"])
    }

    fn parse(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(Path::new("experiments/demo.toml"), text, flags())
    }

    fn baseline_rule(run: &Run) -> Option<String> {
        let baseline = run.point.get("engine") == Some(&Param::Text("baseline".into()));
        let parallel = run
            .point
            .get("workers")
            .is_some_and(|w| w.to_string() != "1");
        (baseline && parallel).then(|| "the baseline is single-threaded".to_string())
    }

    #[test]
    fn flags_come_from_the_bench_arguments() {
        let f = flags();
        assert_eq!(f.positionals, ["workload"]);
        assert_eq!(f.required, ["workload"]);
        for option in [
            "rate",
            "duration",
            "warmup",
            "query",
            "workers",
            "processes",
        ] {
            assert!(f.options.contains(option), "{option}");
        }
        assert!(f.switches.contains("find-sustainable"));
        assert!(!f.options.contains("help") && !f.switches.contains("help"));
        assert_eq!(
            f.reserved,
            ["hlog", "hostfile", "json", "process"]
                .map(String::from)
                .into_iter()
                .collect()
        );
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
        let e = spec.expand(|_| None);
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
            first.args,
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
    fn grids_union_skip_rule_and_exclude() {
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
            find_sustainable = [false, true]
            "#,
        )
        .unwrap();
        let e = spec.expand(baseline_rule);
        // ysb: 3 of 4; nexmark: 24, less 3 x 2 baseline x 2 and 2 x 2 excluded.
        assert_eq!(e.runs.len(), 3 + 14);
        assert_eq!(e.skipped.len(), 1 + 6 + 4);
        assert!(e
            .skipped
            .iter()
            .any(|(_, why)| why == "the baseline is single-threaded"));
        assert!(e.skipped.iter().any(|(_, why)| why == "exclude entry 1"));
        let nexmark: Vec<&Run> = e.runs.iter().filter(|r| r.name == "nexmark").collect();
        let switched = |r: &&&Run| r.args.iter().any(|a| a == "--find-sustainable");
        assert_eq!(nexmark.iter().filter(switched).count(), 7);
        assert!(nexmark
            .iter()
            .all(|r| !r.args.iter().any(|a| a == "false" || a == "true")));
    }

    #[test]
    fn no_grid_is_one_point() {
        let spec = parse("workload = \"wordcount\"\nrepetitions = 3\n").unwrap();
        let e = spec.expand(|_| None);
        assert_eq!(e.runs.len(), 3);
        assert!(e.varying.is_empty());
        assert_eq!(e.runs[0].command(), "tidemark bench wordcount");
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let message = |text: &str| parse(text).unwrap_err().to_string();
        let m = message("workload = \"ysb\"\n[grid]\nrat = [\"1M\"]\n");
        assert!(
            m.starts_with("experiments/demo.toml: grid: key 'rat'"),
            "{m}"
        );
        assert!(m.contains("not a `tidemark bench` argument"), "{m}");
        assert!(m.contains("rate"), "the known flags are listed: {m}");
        // Each spec, and what its message must contain.
        let cases: [(&str, &[&str]); 9] = [
            (
                "workload = \"ysb\"\n[fixed]\njson = \"x\"\n",
                &["key 'json'"],
            ),
            (
                "workload = \"ysb\"\n[fixed]\nhelp = true\n",
                &["key 'help'"],
            ),
            ("workload = \"ysb\"\nrepeats = 2\n", &["repeats"]),
            ("[grid]\nrate = [\"1M\"]\n", &["no workload"]),
            (
                "workload = \"ysb\"\n[fixed]\nrate = \"1M\"\n[grid]\nrate = [\"2M\"]\n",
                &["also in [fixed]"],
            ),
            ("workload = \"ysb\"\n[grid]\nrate = []\n", &["empty"]),
            ("workload = \"ysb\"\nrepetitions = 0\n", &["repetitions"]),
            (
                "workload = \"ysb\"\n[grid]\nrate = [[1]]\n",
                &["key 'rate'"],
            ),
            (
                "workload = \"ysb\"\n[grid]\nfind_sustainable = [\"yes\"]\n",
                &["key 'find_sustainable'", "switch"],
            ),
        ];
        for (spec, needles) in cases {
            let m = message(spec);
            for needle in needles {
                assert!(m.contains(needle), "{spec:?}: {m}");
            }
        }
        let m = message("workload = ");
        assert!(m.starts_with("experiments/demo.toml: "), "{m}");
    }
}
