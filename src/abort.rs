//! Ending a run that cannot finish: one line, no result that looks complete, every process told.
//!
//! This module owns the CLI's last word on a failed run. [`fail`] is the single exit for every
//! fault found while workers run (a worker's error, a panic, SIGINT/SIGTERM/SIGHUP, a peer process
//! that died, failed or went silent): the first caller removes the temporary outputs of this
//! run ([`crate::output::remove_unfinished`]), tells the peer processes (hooks registered with
//! [`on_abort`] by [`crate::cluster`]), prints `error: ...` as one line and exits; every later
//! caller waits for that exit. Exiting at once is what ends every worker: timely has no way to
//! cancel a dataflow, and a worker that stopped would leave the others waiting forever.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

static ABORTING: AtomicBool = AtomicBool::new(false);
/// The exit status of the failure under way.
static CODE: AtomicI32 = AtomicI32::new(1);

thread_local! {
    /// Whether this thread is the one running [`fail`].
    static FAILING_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Writes `line` and a line break to standard error, ignoring errors. Every report of the CLI
/// goes through here: `eprintln!` panics when standard error is a closed pipe (`2>&1 | head`),
/// and a panic while reporting a failure would turn a clean exit into an abort or a hang.
pub fn say(line: impl std::fmt::Display) {
    let _ = std::io::Write::write_all(
        &mut std::io::stderr().lock(),
        format!("{line}\n").as_bytes(),
    );
}

type Hook = Box<dyn Fn(&str) + Send>;

/// Called with the message before the process exits (telling the peers).
static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

/// This process's index and the cluster's addresses, for naming processes in messages.
static PROCESS: OnceLock<(usize, Vec<String>)> = OnceLock::new();

/// Records which process this is, so messages name it (`process 1 (host:port)`).
pub fn set_process(index: usize, addresses: Vec<String>) {
    let _ = PROCESS.set((index, addresses));
}

/// `process I (host:port)` for a cluster run's process `index`.
pub fn describe_process(index: usize) -> String {
    match PROCESS.get().and_then(|(_, a)| a.get(index)) {
        Some(address) => format!("process {index} ({address})"),
        None => format!("process {index}"),
    }
}

/// `" in process I (host:port)"` in a cluster run, empty otherwise.
fn here() -> String {
    match PROCESS.get() {
        Some((me, _)) => format!(" in {}", describe_process(*me)),
        None => String::new(),
    }
}

/// Registers `hook` to run with the failure message before the process exits.
pub fn on_abort(hook: impl Fn(&str) + Send + 'static) {
    HOOKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Box::new(hook));
}

/// Ends the process: removes this run's temporary outputs, tells the peers, prints
/// `error: {message}` (one line, long values shortened, see [`one_line`]) and exits with `code`.
/// Only the first call does this; later ones (another worker failing too) wait for the exit.
pub fn fail(message: &str, code: i32) -> ! {
    if ABORTING.swap(true, Ordering::SeqCst) {
        if FAILING_HERE.with(Cell::get) {
            // This thread panicked while failing: waiting would wait for itself forever.
            std::process::exit(CODE.load(Ordering::SeqCst));
        }
        loop {
            std::thread::park();
        }
    }
    FAILING_HERE.with(|f| f.set(true));
    CODE.store(code, Ordering::SeqCst);
    crate::output::remove_unfinished();
    let message = one_line(message);
    // Never blocks for long: each hook's writes have a timeout.
    if let Ok(hooks) = HOOKS.try_lock() {
        for hook in hooks.iter() {
            hook(&message);
        }
    }
    say(format_args!("error: {message}"));
    std::process::exit(code)
}

/// Whether [`fail`] was called: an exit is under way.
pub fn aborting() -> bool {
    ABORTING.load(Ordering::SeqCst)
}

/// Turns every panic into one line saying where it happened, and ends the run with exit status
/// 101. A panic in timely's network threads means a peer process closed its connection: that
/// is reported as the lost peer, after a short grace period in which the peer's own report
/// (its failure message, which names the cause) may arrive first.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let peer = name
            .strip_prefix("timely:recv-")
            .or_else(|| name.strip_prefix("timely:send-"))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(peer) = peer {
            std::thread::sleep(Duration::from_millis(300));
            fail(
                &format!(
                    "lost the connection to {}{}: {payload}",
                    describe_process(peer),
                    here()
                ),
                1,
            );
        }
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        fail(
            &format!(
                "internal error (a bug){}, thread '{name}'{location}: {payload}",
                here()
            ),
            101,
        );
    }));
}

/// Handles SIGINT, SIGTERM and SIGHUP: the run stops, removes what it created, prints one line
/// and exits with 130, 143 or 129 (128 + the signal, as a shell reports it).
///
/// Call before any other thread is started: the signals are blocked in the calling thread, and
/// threads inherit that mask, so only the waiting thread started here ever receives them.
pub fn install_signal_handlers() {
    // SAFETY: plain libc calls on a locally owned, initialised sigset_t; sigwait runs in a
    // thread of its own, so no async-signal-safety rule applies to the code after it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        // The terminal closing (or `kill -HUP`) ends a run as SIGTERM does.
        libc::sigaddset(&mut set, libc::SIGHUP);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("tidemark-signals".into())
            .spawn(move || loop {
                let mut signal = 0;
                if libc::sigwait(&set, &mut signal) == 0 {
                    let name = match signal {
                        libc::SIGINT => "SIGINT",
                        libc::SIGHUP => "SIGHUP",
                        _ => "SIGTERM",
                    };
                    fail(
                        &format!(
                            "interrupted by {name}{}; unfinished outputs removed",
                            here()
                        ),
                        128 + signal,
                    );
                }
            });
        if spawned.is_err() {
            // Without the waiting thread, let the signals act as before.
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
    }
}

/// The longest quoted value an error message echoes whole, in bytes.
const QUOTED_MAX: usize = 80;
/// The longest error message printed, in bytes.
const LINE_MAX: usize = 1000;

/// `message` as one line: line breaks become spaces, a quoted value (`"..."`) longer than 80
/// bytes keeps its start and says how long it was, and the whole is cut at 1000 bytes. A 10 MB
/// field in a bad line must not make a 10 MB "one line".
pub fn one_line(message: &str) -> String {
    let flat: String = message
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    let mut out = String::with_capacity(flat.len().min(LINE_MAX + 64));
    let mut rest = flat.as_str();
    while let Some(open) = rest.find('"') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        // The closing quote: the next `"` not escaped by a backslash (Debug formatting).
        let mut close = None;
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    close = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(close) = close else { break };
        let value = &rest[..close];
        if value.len() > QUOTED_MAX {
            let cut = floor_char_boundary(value, QUOTED_MAX);
            let _ = write!(out, "{}...\" ({} bytes)", &value[..cut], value.len());
        } else {
            out.push_str(value);
            out.push('"');
        }
        rest = &rest[close + 1..];
        if out.len() > LINE_MAX {
            break;
        }
    }
    out.push_str(rest);
    if out.len() > LINE_MAX {
        let cut = floor_char_boundary(&out, LINE_MAX);
        out.truncate(cut);
        out.push_str("... (message shortened)");
    }
    out
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn long_values_are_shortened_and_lines_joined() {
        let field = "x".repeat(10_000_000);
        let message = format!("in.csv:2: field 'ts': expected an integer, got \"{field}\"");
        let line = one_line(&message);
        assert!(line.len() < 300, "{}", line.len());
        assert!(line.starts_with("in.csv:2: field 'ts': expected an integer, got \"xxx"));
        assert!(line.ends_with("...\" (10000000 bytes)"), "{line}");
        assert_eq!(one_line("a\nb \"q\\\"x\" c"), "a b \"q\\\"x\" c");
        let unquoted = "y".repeat(5000);
        assert!(one_line(&unquoted).len() < 1100);
    }
}
