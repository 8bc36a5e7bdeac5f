//! When things go wrong (issue 11): outputs never destroy a user's data, a run that does not
//! finish leaves nothing that looks finished, and a failure anywhere ends the whole run (every
//! worker, every process) with one line and a non-zero exit. Plus the summary of a
//! two-process run counting what the files hold, and usage errors as clap writes them
//! (issue 16).
//!
//! Everything runs under a private scratch directory: FIFOs, symlinks and (as root) device
//! nodes made with mknod there, never the system's.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::cli::{
    assert_no_leftovers, bin, finish, free_port, hostfile, one_error_line, run_window, s, scratch,
    scratch_input, spawn_piped, stderr, two_processes, wait, write,
};

/// Runs `tidemark window --input INPUT --output OUTPUT --window tumbling:10 --agg AGG` and
/// `extra`.
fn window(input: &str, output: &str, agg: &str, extra: &[&str]) -> Output {
    run_window(input, Path::new(output), "tumbling:10", agg, extra)
}

const EVENTS: &str = "ts,key,value\n1,a,5\n4,b,2\n12,a,3\n3,b,1\n25,b,4\n";

#[test]
fn an_output_that_is_the_input_or_another_output_is_refused() {
    let (dir, input) = scratch_input("same", EVENTS);
    let bad = write(&dir, "bad.csv", "ts,key,value\n1,a,5\nx,a,1\n");
    std::os::unix::fs::symlink(&input, dir.join("link.csv")).unwrap();
    std::fs::hard_link(&input, dir.join("hard.csv")).unwrap();
    let dotted = format!("{}/./events.csv", s(&dir));
    let other = dir.join("out.csv");
    let cases: Vec<(&Path, Vec<String>, &str)> = vec![
        (
            &input,
            vec!["--output".into(), s(&input).into()],
            "--output",
        ),
        (&input, vec!["--output".into(), dotted.clone()], "--output"),
        (
            &input,
            vec!["--output".into(), s(&dir.join("link.csv")).into()],
            "--output",
        ),
        (
            &input,
            vec!["--output".into(), s(&dir.join("hard.csv")).into()],
            "--output",
        ),
        (&bad, vec!["--output".into(), s(&bad).into()], "--output"),
        (
            &input,
            vec![
                "--output".into(),
                s(&other).into(),
                "--late-output".into(),
                dotted,
            ],
            "--late-output",
        ),
        (
            &input,
            vec![
                "--output".into(),
                s(&other).into(),
                "--late-output".into(),
                format!(
                    "{}/../{}/out.csv",
                    s(&dir),
                    dir.file_name().unwrap().to_str().unwrap()
                ),
            ],
            "--late-output",
        ),
    ];
    for (input, outputs, flag) in cases {
        let before = std::fs::read(input).unwrap();
        let mut args = vec![
            "--input",
            s(input),
            "--window",
            "tumbling:10",
            "--agg",
            "sum",
        ];
        args.extend(outputs.iter().map(String::as_str));
        let out = bin().arg("window").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let line = one_error_line(&stderr(&out));
        assert!(
            line.contains("are the same file") && line.contains(flag),
            "{line}"
        );
        assert_eq!(
            std::fs::read(input).unwrap(),
            before,
            "{args:?} changed the input"
        );
        assert!(!other.exists(), "{args:?} created an output");
    }
    assert_no_leftovers(
        &dir,
        &[
            input.as_path(),
            bad.as_path(),
            &dir.join("link.csv"),
            &dir.join("hard.csv"),
        ],
    );
}

/// The input under names a string comparison misses: standard input redirected from it, a
/// chain of symlinks, a `/proc/self/fd` descriptor. Named in the error as the user typed them.
#[test]
fn the_input_behind_stdin_a_symlink_chain_or_a_descriptor_is_refused() {
    let (dir, input) = scratch_input("same-other-names", EVENTS);
    std::os::unix::fs::symlink(&input, dir.join("l1")).unwrap();
    std::os::unix::fs::symlink("l1", dir.join("l2")).unwrap();
    std::os::unix::fs::symlink(dir.join("l2"), dir.join("l3")).unwrap();
    let chain = dir.join("l3");
    let cases: [(&str, &str, &str); 3] = [
        ("-", s(&input), "--input - and --output"),
        (s(&input), s(&chain), "--output"),
        (s(&input), "/proc/self/fd/0", "--output /proc/self/fd/0"),
    ];
    for (from, to, named) in cases {
        let out = bin()
            .args(["window", "--input", from, "--output", to])
            .args(["--window", "tumbling:10", "--agg", "sum"])
            .stdin(std::fs::File::open(&input).unwrap())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{from} {to}");
        let line = one_error_line(&stderr(&out));
        assert!(
            line.contains("are the same file") && line.contains(named),
            "{line}"
        );
        assert_eq!(std::fs::read_to_string(&input).unwrap(), EVENTS);
    }
    assert_no_leftovers(
        &dir,
        &[
            input.as_path(),
            &dir.join("l1"),
            &dir.join("l2"),
            &dir.join("l3"),
        ],
    );
}

#[test]
fn a_failed_run_leaves_the_old_output_and_no_partial_file() {
    let dir = scratch("partial");
    // Enough rows for many flushes before the bad line at the end.
    let mut text = String::from("ts,key,value\n");
    for i in 0..20_000 {
        text.push_str(&format!("{i},k{},1\n", i % 50));
    }
    text.push_str("oops,a,1\n");
    let input = write(&dir, "events.csv", &text);
    let out = write(&dir, "out.csv", "precious\n");
    let late = write(&dir, "late.csv", "also precious\n");
    let result = window(
        s(&input),
        s(&out),
        "sum",
        &["--late-output", s(&late), "--workers", "2"],
    );
    assert_eq!(result.status.code(), Some(1));
    let line = one_error_line(&stderr(&result));
    assert!(line.contains("events.csv:20002: field 'ts'"), "{line}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious\n");
    assert_eq!(std::fs::read_to_string(&late).unwrap(), "also precious\n");
    assert_no_leftovers(&dir, &[&input, &out, &late]);
}

#[test]
fn a_symlinked_output_keeps_the_link_and_replaces_its_target() {
    let (dir, input) = scratch_input("symlink", EVENTS);
    let target = write(&dir, "target.csv", "old\n");
    let link = dir.join("link.csv");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // A failed run touches neither.
    let bad = write(&dir, "bad.csv", "ts,key,value\n1,a,1\n-4,a,1\n");
    let out = window(s(&bad), s(&link), "count", &[]);
    assert_eq!(out.status.code(), Some(1));
    one_error_line(&stderr(&out));
    assert!(file_type(&link).is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
    // A successful one replaces the target and keeps the link.
    let out = window(s(&input), s(&link), "count", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(file_type(&link).is_symlink());
    assert!(std::fs::read_to_string(&target)
        .unwrap()
        .starts_with("window_start,"));
    assert_no_leftovers(&dir, &[&input, &target, &link, &bad]);
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

/// Reads a FIFO to its end in a thread.
fn drain(path: &Path) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(path) {
            let _ = file.read_to_string(&mut text);
        }
        let _ = send.send(text);
    });
    receive
}

#[test]
fn a_fatal_bad_line_on_a_stream_emits_no_window_as_final() {
    // The true value of [0, 10) for `a` is 13 (5 + 7 + 1); the bad line comes before the 1.
    let (dir, input) = scratch_input("stream", "ts,key,value\n1,a,5\n2,a,7\n3,a,zz\n4,a,1\n");
    let fifo = dir.join("out.fifo");
    mkfifo(&fifo);
    let rows = drain(&fifo);
    let out = window(s(&input), s(&fifo), "sum", &[]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_error_line(&stderr(&out));
    assert!(line.contains("events.csv:4: field 'value'"), "{line}");
    let text = rows.recv().unwrap();
    assert!(
        text.lines().all(|l| l.starts_with("window_start")),
        "emitted as final: {text:?}"
    );
    // The FIFO is still there: never unlinked.
    assert!(file_type(&fifo).is_fifo());
}

use std::os::unix::fs::FileTypeExt;

#[test]
fn fifos_devices_and_standard_output_are_written_directly_and_never_removed() {
    let (dir, input) = scratch_input("direct", EVENTS);
    let bad = write(&dir, "bad.csv", "ts,key,value\n1,a,5\nx,a,1\n");
    // A FIFO as output of a successful run gets the rows; the FIFO stays.
    let fifo = dir.join("out.fifo");
    mkfifo(&fifo);
    let rows = drain(&fifo);
    let out = window(s(&input), s(&fifo), "sum", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rows.recv().unwrap().contains("0,10,a,5,1"));
    assert!(file_type(&fifo).is_fifo());
    // A symlink to the FIFO, in a failed run: neither is removed.
    let link = dir.join("fifo-link");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let rows = drain(&fifo);
    let out = window(s(&bad), s(&link), "sum", &[]);
    assert_eq!(out.status.code(), Some(1));
    one_error_line(&stderr(&out));
    let _ = rows.recv();
    assert!(file_type(&link).is_symlink());
    assert!(file_type(&fifo).is_fifo());
    // `-` and /dev/stdout are standard output, in failed runs too; no file named `-` appears.
    for name in ["-", "/dev/stdout"] {
        let out = common::cli::window(&input, name, "tumbling:10", "sum")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.starts_with("window_start,window_end,key,value,diff\n"),
            "{text}"
        );
        assert!(text.contains("0,10,a,5,1"), "{text}");
        let out = common::cli::window(&bad, name, "tumbling:10", "sum")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        one_error_line(&stderr(&out));
    }
    assert!(!dir.join("-").exists());
    // Private device nodes (as root): a full device fails the write with one line and stays;
    // a null device takes both outputs.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let full = dir.join("full");
        let null = dir.join("null");
        for (path, minor) in [(&full, 7), (&null, 3)] {
            let name = std::ffi::CString::new(s(path)).unwrap();
            // SAFETY: a valid NUL-terminated path; makedev(1, 7) and (1, 3) are full and null.
            let made = unsafe {
                libc::mknod(
                    name.as_ptr(),
                    libc::S_IFCHR | 0o666,
                    libc::makedev(1, minor),
                )
            };
            assert_eq!(made, 0, "mknod {path:?}");
        }
        let out = window(s(&input), s(&full), "sum", &[]);
        assert_eq!(out.status.code(), Some(1));
        let line = one_error_line(&stderr(&out));
        assert!(line.contains("No space left on device"), "{line}");
        assert!(std::fs::metadata(&full)
            .unwrap()
            .file_type()
            .is_char_device());
        let out = window(s(&input), s(&null), "sum", &["--late-output", s(&null)]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(std::fs::metadata(&null)
            .unwrap()
            .file_type()
            .is_char_device());
    }
}

/// Starts `tidemark window` reading a live standard input (header and one row written, the
/// pipe kept open), so the run cannot end by itself.
fn live(args: &[&str], env: &[(&str, &str)]) -> (Child, std::process::ChildStdin) {
    let mut command = bin();
    command
        .arg("window")
        .args(["--input", "-", "--window", "tumbling:10", "--agg", "sum"])
        .args(args)
        .envs(env.iter().copied());
    let mut child = spawn_piped(&mut command);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"ts,key,value\n1,a,1\n2,b,2\n").unwrap();
    stdin.flush().unwrap();
    (child, stdin)
}

/// Waits until `dir` holds a temporary output of a running process.
fn wait_for_temporary(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_dir(dir).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tidemark-")
    }) {
        assert!(Instant::now() < deadline, "no temporary output appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigint_sigterm_and_sighup_stop_the_run_and_remove_only_what_it_created() {
    for (signal, name, code) in [
        (libc::SIGINT, "SIGINT", 130),
        (libc::SIGTERM, "SIGTERM", 143),
        (libc::SIGHUP, "SIGHUP", 129),
    ] {
        let dir = scratch(&format!("signal-{name}"));
        let out = write(&dir, "out.csv", "precious\n");
        let late = dir.join("late.csv");
        let (child, stdin) = live(
            &[
                "--output",
                s(&out),
                "--late-output",
                s(&late),
                "--idle-timeout",
                "10ms",
            ],
            &[],
        );
        wait_for_temporary(&dir);
        // SAFETY: kill on our own child's pid.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let (status, err) = finish(child);
        drop(stdin);
        assert_eq!(status.code(), Some(code), "{err}");
        let line = one_error_line(&err);
        assert!(line.contains(&format!("interrupted by {name}")), "{line}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious\n");
        assert!(!late.exists());
        assert_no_leftovers(&dir, &[&out]);
    }
}

/// Standard error closed (`2>&1 | head -1` after the reader left): reports cannot be written,
/// yet every run ends with its own exit status, neither hanging (a panic while failing used to
/// wait for itself) nor aborting, and leaves nothing half-written.
#[test]
fn a_closed_standard_error_changes_no_outcome() {
    let closed = |mut command: Command| {
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stderr.take());
        child
    };
    // A fatal bad line while the workers run, and a signal.
    for (signal, code) in [(None, 1), (Some(libc::SIGTERM), 143)] {
        let dir = scratch(&format!("closed-stderr-{code}"));
        let out = write(&dir, "out.csv", "precious\n");
        let mut command = bin();
        command
            .args([
                "window",
                "--input",
                "-",
                "--window",
                "tumbling:10",
                "--agg",
                "sum",
            ])
            .args([
                "--output",
                s(&out),
                "--workers",
                "2",
                "--idle-timeout",
                "10ms",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        let mut child = closed(command);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"ts,key,value\n1,a,1\n").unwrap();
        stdin.flush().unwrap();
        wait_for_temporary(&dir);
        match signal {
            // SAFETY: kill on our own child's pid.
            Some(signal) => assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0),
            None => stdin.write_all(b"x,a,1\n").unwrap(),
        }
        assert_eq!(wait(&mut child).code(), Some(code));
        drop(stdin);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious\n");
        assert_no_leftovers(&dir, &[&out]);
    }
    // A run that succeeds (its summary lost) and one that fails before starting.
    let (dir, input) = scratch_input("closed-stderr-summary", EVENTS);
    let out = dir.join("out.csv");
    for (input, code) in [(input.clone(), 0), (dir.join("missing.csv"), 1)] {
        let mut command = bin();
        command
            .args(["window", "--input", s(&input), "--output", s(&out)])
            .args(["--window", "tumbling:10", "--agg", "sum"])
            .stdout(Stdio::null());
        let mut child = closed(command);
        assert_eq!(wait(&mut child).code(), Some(code), "{input:?}");
        assert!(out.exists());
    }
}

#[test]
fn an_injected_failure_ends_every_worker_with_one_line() {
    for workers in [1usize, 2, 4] {
        for (mode, code) in [("", 1), (":panic", 101)] {
            let dir = scratch(&format!("inject-{workers}{mode}"));
            let out = dir.join("out.csv");
            let failing = format!("{}{mode}", workers - 1);
            let (child, stdin) = live(
                &["--output", s(&out), "--workers", &workers.to_string()],
                &[("TIDEMARK_FAIL_WORKER", &failing)],
            );
            let (status, err) = finish(child);
            drop(stdin);
            assert_eq!(status.code(), Some(code), "{workers} workers{mode}: {err}");
            let line = one_error_line(&err);
            assert!(line.contains(&format!("worker {}", workers - 1)), "{line}");
            if mode == ":panic" {
                assert!(
                    line.contains("internal error") && line.contains("src/job/window.rs"),
                    "{line}"
                );
            }
            assert_no_leftovers(&dir, &[]);
        }
    }
    // A hook naming no worker is refused, not silently ignored.
    let (dir, input) = scratch_input("inject-none", EVENTS);
    let out = bin()
        .args([
            "window",
            "--input",
            s(&input),
            "--output",
            s(&dir.join("o.csv")),
        ])
        .args(["--window", "tumbling:10", "--agg", "sum", "--workers", "2"])
        .env("TIDEMARK_FAIL_WORKER", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line = one_error_line(&stderr(&out));
    assert!(line.contains("no worker 2 (2 workers in all)"), "{line}");
    assert_no_leftovers(&dir, &[&input]);
}

/// Two processes of two workers; the peer timeout is long enough for a loaded machine except
/// where a test stops a peer on purpose (`PEER_TIMEOUT_STOPPED`).
fn cluster_args(hosts: &Path, process: usize) -> Vec<String> {
    cluster_args_with(hosts, process, "20s")
}

const PEER_TIMEOUT_STOPPED: &str = "1s";

fn cluster_args_with(hosts: &Path, process: usize, peer_timeout: &str) -> Vec<String> {
    let mut args = two_processes(hosts, process);
    args.extend(["--peer-timeout".to_string(), peer_timeout.to_string()]);
    args
}

/// The type of `path` itself (a link is not followed).
fn file_type(path: &Path) -> std::fs::FileType {
    std::fs::symlink_metadata(path).unwrap().file_type()
}

/// A run that ended with exit status 1 and one error line, holding `needle`.
fn fails_with(status: ExitStatus, err: &str, needle: impl AsRef<str>) {
    assert_eq!(status.code(), Some(1), "{err}");
    let line = one_error_line(err);
    assert!(line.contains(needle.as_ref()), "{line}");
}

/// Process 1 of a live two-process run (no input of its own).
fn peer(extra: &[String], env: &[(&str, &str)]) -> Child {
    bin()
        .args([
            "window",
            "--input",
            "-",
            "--output",
            "ignored.csv",
            "--window",
            "tumbling:10",
            "--agg",
            "sum",
        ])
        .args(extra)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_failure_in_one_process_ends_both_with_one_line_each() {
    let dir = scratch("two-inject");
    let (hosts, ports) = hostfile(&dir);
    let out = dir.join("out.csv");
    // Worker 2 is process 1's first worker.
    let env = [("TIDEMARK_FAIL_WORKER", "2")];
    let args0 = cluster_args(&hosts, 0);
    let mut args: Vec<&str> = vec!["--output", s(&out)];
    args.extend(args0.iter().map(String::as_str));
    let (p0, stdin) = live(&args, &env);
    let p1 = peer(&cluster_args(&hosts, 1), &env);
    let (s1, e1) = finish(p1);
    let (s0, e0) = finish(p0);
    drop(stdin);
    assert_eq!(s1.code(), Some(1), "{e1}");
    assert!(
        one_error_line(&e1).contains("worker 2: injected failure"),
        "{e1}"
    );
    fails_with(
        s0,
        &e0,
        format!("process 1 (127.0.0.1:{}) failed: worker 2", ports[1]),
    );
    assert_no_leftovers(&dir, &[&hosts]);
}

/// A live two-process run whose process 0 writes to standard output: returns once a window
/// was written, so both processes are running.
fn running_pair(
    dir: &Path,
    peer_timeout: &str,
) -> (Child, std::process::ChildStdin, Child, [u16; 2]) {
    let (hosts, ports) = hostfile(dir);
    let args0 = cluster_args_with(&hosts, 0, peer_timeout);
    let mut args: Vec<&str> = vec!["--output", "-", "--idle-timeout", "50ms"];
    args.extend(args0.iter().map(String::as_str));
    let (mut p0, stdin) = live(&args, &[]);
    // Every option but paths and the process index must match (the job is compared).
    let mut args1 = vec!["--idle-timeout".to_string(), "50ms".to_string()];
    args1.extend(cluster_args_with(&hosts, 1, peer_timeout));
    let p1 = peer(&args1, &[]);
    let stdout = p0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // The header, then the window [0, 10) once the idle timeout advanced the watermark.
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("window_start"), "{first}");
    let row = lines.next().unwrap().unwrap();
    assert!(row.starts_with("0,10,"), "{row}");
    std::thread::spawn(move || for _ in lines {});
    (p0, stdin, p1, ports)
}

#[test]
fn a_dead_peer_is_one_line_not_a_cascade_of_panics() {
    let dir = scratch("dead-peer");
    let (p0, stdin, mut p1, ports) = running_pair(&dir, "20s");
    p1.kill().unwrap();
    let _ = p1.wait();
    let (status, err) = finish(p0);
    drop(stdin);
    fails_with(status, &err, format!("process 1 (127.0.0.1:{})", ports[1]));
}

#[test]
fn a_stopped_peer_fails_the_run_after_the_peer_timeout() {
    let dir = scratch("stopped-peer");
    let (p0, stdin, mut p1, ports) = running_pair(&dir, PEER_TIMEOUT_STOPPED);
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(p1.id() as i32, libc::SIGSTOP) };
    let (status, err) = finish(p0);
    drop(stdin);
    // SAFETY: as above.
    unsafe { libc::kill(p1.id() as i32, libc::SIGCONT) };
    let _ = p1.kill();
    let _ = p1.wait();
    fails_with(
        status,
        &err,
        format!("process 1 (127.0.0.1:{}) sent nothing for 1s", ports[1]),
    );
}

#[test]
fn processes_started_with_different_jobs_refuse_to_run() {
    for (option, zero, one) in [
        ("--window", "tumbling:10", "tumbling:5"),
        ("--agg", "sum", "count"),
    ] {
        let dir = scratch(&format!("mismatch{option}"));
        let (hosts, _) = hostfile(&dir);
        let input = write(&dir, "events.csv", EVENTS);
        let out = dir.join("out.csv");
        let spawn = |process: usize, value: &str| {
            let mut args = vec![
                "window".to_string(),
                "--input".into(),
                s(&input).into(),
                "--output".into(),
                s(&out).into(),
                "--window".into(),
                "tumbling:10".into(),
                "--agg".into(),
                "sum".into(),
            ];
            let at = args.iter().position(|a| a == option).unwrap();
            args[at + 1] = value.to_string();
            args.extend(cluster_args(&hosts, process));
            bin()
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (p0, p1) = (spawn(0, zero), spawn(1, one));
        let (s0, e0) = finish(p0);
        let (s1, e1) = finish(p1);
        assert_eq!((s0.code(), s1.code()), (Some(1), Some(1)), "{e0}{e1}");
        let line = one_error_line(&e0);
        assert!(
            line.contains(&format!(
                "was started with {option} {one}, this process with {option} {zero}"
            )),
            "{line}"
        );
        let line = one_error_line(&e1);
        assert!(line.contains(&format!("{option} {zero}")), "{line}");
        assert!(!out.exists());
        assert_no_leftovers(&dir, &[&hosts, &input]);
    }
}

#[test]
fn a_foreign_listener_or_a_taken_port_is_one_line_naming_host_and_port() {
    let (dir, input) = scratch_input("foreign", EVENTS);
    // Something else listens on process 0's port: it accepts (the kernel does) but never
    // answers as tidemark.
    let foreign = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = foreign.local_addr().unwrap().port();
    let hosts = write(
        &dir,
        "hosts.txt",
        &format!("127.0.0.1:{port}\n127.0.0.1:{}\n", free_port()),
    );
    let run = |process: &str| {
        common::cli::window(&input, dir.join("out.csv"), "tumbling:10", "count")
            .args(["--processes", "2", "--process", process])
            .args(["--hostfile", s(&hosts), "--connect-timeout", "1s"])
            .output()
            .unwrap()
    };
    let out = run("1");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "chatter on stdout: {:?}", out.stdout);
    let line = one_error_line(&stderr(&out));
    assert!(
        line.contains(&format!("127.0.0.1:{port} (process 0)")) && line.contains("did not answer"),
        "{line}"
    );
    // Process 0 itself cannot listen there.
    let out = run("0");
    assert_eq!(out.status.code(), Some(1));
    let line = one_error_line(&stderr(&out));
    assert!(
        line.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{line}"
    );
    drop(foreign);
}

/// `(windows emitted, late records)` from a summary line.
fn summary_counts(err: &str) -> (usize, usize) {
    let line = err
        .lines()
        .find(|l| l.starts_with("tidemark window:"))
        .expect("a summary");
    let number_before = |what: &str| -> usize {
        let end = line.find(what).unwrap_or_else(|| panic!("{line}"));
        line[..end]
            .trim_end()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        number_before(" windows emitted"),
        number_before(" late records"),
    )
}

fn data_rows(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count() - 1
}

#[test]
fn a_two_process_summary_counts_what_the_files_hold() {
    let dir = scratch("summary");
    let (hosts, _) = hostfile(&dir);
    let mut text = String::from("ts,key,value\n");
    for i in 0..3000u64 {
        text.push_str(&format!("{},k{},{}\n", (i * 37) % 500 + i, i % 13, i % 7));
    }
    let input = write(&dir, "events.csv", &text);
    let run = |out: &Path, late: &Path, extra: &[String]| {
        common::cli::window(&input, out, "tumbling:100", "sum")
            .args(["--late-output", s(late), "--max-delay", "10"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (out, late) = (dir.join("out.csv"), dir.join("late.csv"));
    let p0 = run(&out, &late, &cluster_args(&hosts, 0));
    let p1 = run(
        &dir.join("o1.csv"),
        &dir.join("l1.csv"),
        &cluster_args(&hosts, 1),
    );
    let (s0, e0) = finish(p0);
    let (s1, e1) = finish(p1);
    assert!(s0.success() && s1.success(), "{e0}{e1}");
    assert!(
        e1.contains(
            "note: process 1 reads its share of --input and leaves --output and --late-output to process 0"
        ),
        "{e1}"
    );
    let (windows, late_records) = summary_counts(&e0);
    assert!(late_records > 0);
    assert_eq!(windows, data_rows(&out));
    assert_eq!(late_records, data_rows(&late));
    // The same as one process.
    let (single, single_late) = (dir.join("single.csv"), dir.join("single-late.csv"));
    let (status, err) = finish(run(&single, &single_late, &[]));
    assert!(status.success(), "{err}");
    assert_eq!(summary_counts(&err), (windows, late_records));
    assert!(!dir.join("o1.csv").exists() && !dir.join("l1.csv").exists());
}

#[test]
fn resource_bounds_and_long_values_give_short_lines() {
    let (dir, input) = scratch_input("bounds", EVENTS);
    for workers in ["99999999999", "3000"] {
        let out = window(
            s(&input),
            s(&dir.join("o.csv")),
            "sum",
            &["--workers", workers],
        );
        assert_eq!(out.status.code(), Some(1));
        let line = one_error_line(&stderr(&out));
        assert!(line.contains("above the limit of 512"), "{line}");
    }
    // A 10 MB field is echoed shortened.
    let huge = "9".repeat(10_000_000);
    let bad = write(
        &dir,
        "huge.csv",
        &format!("ts,key,value\n1,a,1\n{huge}x,a,1\n"),
    );
    let out = window(s(&bad), s(&dir.join("o.csv")), "sum", &[]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_error_line(&stderr(&out));
    assert!(line.len() < 1100, "{} bytes", line.len());
    assert!(
        line.contains("huge.csv:3: field 'ts'") && line.contains("(10000001 bytes)"),
        "{line}"
    );
    assert!(!dir.join("o.csv").exists());
}

#[test]
fn usage_errors_keep_clap_help_and_suggestions() {
    let usage = |args: &[&str], needles: &[&str]| {
        let out = bin().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        for needle in needles {
            assert!(err.contains(needle), "{args:?}: {err} lacks {needle:?}");
        }
    };
    // (arguments, what the message holds)
    let window = "window --input a --output b --window tumbling:1";
    for (args, needles) in [
        (
            String::new(),
            &["Usage: tidemark <COMMAND>", "window", "bench", "sweep"][..],
        ),
        (
            "window".into(),
            &[
                "required arguments were not provided",
                "--input <INPUT>",
                "--agg <AGG>",
                "--help",
            ],
        ),
        (
            format!("{window} --agg sum --wokers 2"),
            &["a similar argument exists: '--workers'"],
        ),
        (
            format!("{window} --agg summ"),
            &[
                "possible values: count, sum, min, max, mean",
                "For more information, try '--help'",
            ],
        ),
    ] {
        usage(&args.split_whitespace().collect::<Vec<_>>(), needles);
    }
}

#[test]
fn bench_reports_are_refused_when_they_are_one_file() {
    let dir = scratch("bench");
    let json = dir.join("r.json");
    let out = bin()
        .args([
            "bench",
            "ysb",
            "--json",
            s(&json),
            "--hlog",
            &format!("{}/./r.json", s(&dir)),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line = one_error_line(&stderr(&out));
    assert!(
        line.contains("--json") && line.contains("--hlog") && line.contains("same file"),
        "{line}"
    );
    assert_no_leftovers(&dir, &[]);
}

#[test]
fn two_names_for_standard_output_are_one_output() {
    let (_dir, input) = scratch_input("two-stdout", EVENTS);
    for (output, late) in [("-", "-"), ("-", "/dev/stdout")] {
        let out = window(s(&input), output, "sum", &["--late-output", late]);
        assert_eq!(out.status.code(), Some(1));
        let line = one_error_line(&stderr(&out));
        assert!(line.contains("are the same file"), "{line}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn an_interrupted_bench_leaves_its_old_report_and_no_temporary_file() {
    let dir = scratch("bench-signal");
    let json = write(&dir, "r.json", "old report\n");
    let child = bin()
        .args([
            "bench",
            "ysb",
            "--rate",
            "10k",
            "--duration",
            "60s",
            "--warmup",
            "1s",
        ])
        .args(["--json", s(&json)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it start running (a delay, not an assertion on time).
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let (status, err) = finish(child);
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(one_error_line(&err).contains("interrupted by SIGTERM"));
    assert_eq!(std::fs::read_to_string(&json).unwrap(), "old report\n");
    assert_no_leftovers(&dir, &[&json]);
}
