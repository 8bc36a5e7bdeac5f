//! The `tidemark` binary as the CLI tests drive it: one way to invoke it, scratch directories,
//! the flags every `window` run needs, what a failure must print, and its output files read
//! back by header name.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test, with no arguments yet.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
}

/// Runs the binary with `args` to its end.
pub fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    bin().args(args).output().expect("binary runs")
}

/// `tidemark window --input INPUT --output OUTPUT --window WINDOW --agg AGG`: the flags every
/// window run needs, in the order the README writes them; the test adds the rest.
pub fn window(
    input: impl AsRef<OsStr>,
    output: impl AsRef<OsStr>,
    window: &str,
    agg: &str,
) -> Command {
    let mut command = bin();
    command
        .arg("window")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(["--window", window, "--agg", agg]);
    command
}

/// Starts `command` with its standard input, output and error piped to the test.
pub fn spawn_piped(command: &mut Command) -> Child {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs")
}

/// Runs `command` to its end, writing `text` to its standard input and closing it.
pub fn with_stdin(command: &mut Command, text: &str) -> Output {
    let mut child = spawn_piped(command);
    let mut input = child.stdin.take().unwrap();
    input.write_all(text.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// A fresh, empty scratch directory per test binary, process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tidemark-{}-{}-{name}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh scratch directory (as [`scratch`]) holding `events.csv` with `text`: the directory
/// and the file.
pub fn scratch_input(name: &str, text: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    let input = write(&dir, "events.csv", text);
    (dir, input)
}

/// Writes `text` to `dir/name` and returns its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A path as an argument (the tests' paths are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Standard error of a finished run, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failed run: non-zero exit, one line on standard error holding `needle`, no panic text.
pub fn expect_error<S: AsRef<OsStr> + std::fmt::Debug>(args: &[S], needle: &str) {
    let result = run(args);
    assert!(!result.status.success(), "expected failure for {args:?}");
    let err = stderr(&result);
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
}

/// A usage error as clap writes it: the message, then how to get help; exit status 2.
pub fn expect_usage_error<S: AsRef<OsStr> + std::fmt::Debug>(args: &[S], needle: &str) {
    let result = run(args);
    assert_eq!(
        result.status.code(),
        Some(2),
        "expected a usage error for {args:?}"
    );
    let err = stderr(&result);
    assert!(
        err.starts_with("error: ") && err.contains(needle),
        "stderr {err:?} lacks {needle:?}"
    );
    assert!(err.contains("For more information, try '--help'"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The error line of a failed run: exactly one `error:` line, no panic text; warnings (more
/// workers than cores) and a non-leader's note may precede it.
pub fn one_error_line(err: &str) -> String {
    for banned in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!err.contains(banned), "panic text reached the user: {err}");
    }
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("warning: ") && !l.starts_with("note: "))
        .collect();
    assert_eq!(lines.len(), 1, "one line: {err:?}");
    assert!(lines[0].starts_with("error: "), "{err:?}");
    lines[0].to_string()
}

/// Files in `dir` other than `keep`: leftovers (temporary files) of a run.
pub fn leftovers(dir: &Path, keep: &[&Path]) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !keep.contains(&p.as_path()))
        .collect()
}

/// Checks that `dir` holds nothing but `keep` (no temporary file of a run is left).
pub fn assert_no_leftovers(dir: &Path, keep: &[&Path]) {
    assert_eq!(leftovers(dir, keep), Vec::<PathBuf>::new());
}

/// Runs `tidemark window` on `input` into `output` with `--window WINDOW --agg AGG` and
/// `extra` flags, to its end.
pub fn run_window(input: &str, output: &Path, window: &str, agg: &str, extra: &[&str]) -> Output {
    self::window(input, output, window, agg)
        .args(extra)
        .output()
        .unwrap()
}

/// Waits for `child`; kills it and fails the test if it hangs (a hang detector, far above the
/// seconds a run takes to end, not a timing assertion).
pub fn wait(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` (as [`wait`]) and returns its status and standard error.
pub fn finish(mut child: Child) -> (ExitStatus, String) {
    let status = wait(&mut child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err)
}

/// A local port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `dir/hosts.txt` naming two local processes on free ports, and the ports.
pub fn hostfile(dir: &Path) -> (PathBuf, [u16; 2]) {
    let ports = [free_port(), free_port()];
    let path = write(
        dir,
        "hosts.txt",
        &format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1]),
    );
    (path, ports)
}

/// The flags of process `process` of a run of two processes of two workers each, on the hosts
/// of `hosts`.
pub fn two_processes(hosts: &Path, process: usize) -> Vec<String> {
    let process = process.to_string();
    ["--workers", "2", "--processes", "2", "--process", &process]
        .into_iter()
        .chain(["--hostfile", s(hosts)])
        .map(str::to_string)
        .collect()
}

/// One CSV row: header name to field.
pub type Row = BTreeMap<String, String>;

/// Every row of a CSV file as a map from header name to field; checks that the header names
/// are distinct and that every row has one field per name.
pub fn rows_by_name(path: &Path) -> Vec<Row> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    let mut names = header.clone();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), header.len(), "repeated names in {header:?}");
    reader
        .records()
        .map(|record| {
            let record = record.unwrap();
            assert_eq!(record.len(), header.len(), "{record:?} against {header:?}");
            header
                .iter()
                .cloned()
                .zip(record.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

/// A row from `(name, field)` pairs.
pub fn row(fields: &[(&str, &str)]) -> Row {
    fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A consolidated changelog as text: `(start, end, key) -> value`.
pub type Answer = BTreeMap<(String, String, String), String>;

/// The changelog file `path` read by header name and consolidated (see
/// [`super::consolidate`]).
pub fn consolidated(path: &Path) -> Answer {
    super::consolidate(rows_by_name(path).into_iter().map(|r| {
        let diff = r["diff"].parse::<i64>().unwrap();
        let window = (
            r["window_start"].clone(),
            r["window_end"].clone(),
            r["key"].clone(),
        );
        (window, r["value"].clone(), diff)
    }))
}

/// An answer from `(start, end, key, value)` rows.
pub fn answer(rows: &[(&str, &str, &str, &str)]) -> Answer {
    rows.iter()
        .map(|(s, e, k, v)| ((s.to_string(), e.to_string(), k.to_string()), v.to_string()))
        .collect()
}

/// A report or results file written as one JSON object per line.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}
