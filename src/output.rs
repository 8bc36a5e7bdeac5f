//! Output files that never destroy a user's data and never look complete before they are.
//!
//! This module owns how the CLI opens every file it writes (`window --output`/`--late-output`,
//! `bench --json`/`--hlog`):
//! - [`check_distinct`] refuses an output that is the input or another output, comparing
//!   resolved paths *and* file identity (device and inode), so `./a.csv`, `a.csv` and a symlink
//!   to it are one file.
//! - A regular file (or a name that does not exist yet) is written to a temporary file beside
//!   its target (symlinks resolved: the link stays, its target is replaced) and renamed onto it
//!   by [`Output::commit`] once the run succeeded. Until then the target is untouched; a run
//!   that fails, panics or is interrupted removes only that temporary file
//!   ([`remove_unfinished`]), never something it did not create.
//! - A FIFO, a device or standard output (`-`, `/dev/stdout`) is written directly and never
//!   unlinked: it is a channel, not a result file.
//!
//! Writers returned here pass bytes on only at [`Write::flush`], so a consumer tailing a FIFO
//! or standard output sees whole rows when the caller flushes after whole rows (the CSV sinks
//! flush after each activation, which writes whole records only).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Why an output cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Two names denote the same file (or an output is the input).
    #[error("{first_flag} {first} and {second_flag} {second} are the same file; refusing to overwrite it")]
    Same {
        /// The flag of the first name (`--input`, `--output`, ...).
        first_flag: String,
        /// The first name, as given.
        first: String,
        /// The flag of the second name.
        second_flag: String,
        /// The second name, as given.
        second: String,
    },
    /// The output cannot be created, opened, written or renamed.
    #[error("cannot create {path}: {message}")]
    Create {
        /// The name as given.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Temporary files this process created and has not yet renamed or removed: what an aborted
/// run removes (see [`remove_unfinished`]).
static UNFINISHED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn unfinished() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    // A panic while holding the lock cannot leave the list inconsistent (push/retain only).
    UNFINISHED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes every temporary output this process created and did not commit; called on every
/// failure path (errors, panics, signals), so no partial result survives under any name.
pub fn remove_unfinished() {
    for path in unfinished().drain(..) {
        let _ = std::fs::remove_file(path);
    }
}

/// Whether `path` names standard output (`-`, `/dev/stdout`, `/dev/fd/1`, `/proc/self/fd/1`).
fn is_stdout(path: &Path) -> bool {
    ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"]
        .iter()
        .any(|s| path == Path::new(s))
}

/// Follows symlinks (at most 40, like the kernel) to the name a write would reach; the last
/// component may not exist yet.
pub(crate) fn resolve(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&current)?;
                current = match current.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            Ok(_) => return std::fs::canonicalize(&current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A new file: its directory must exist; the name is taken as is.
                let name = current.file_name().ok_or(e)?.to_owned();
                let dir = match current.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                return Ok(std::fs::canonicalize(dir)?.join(name));
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("too many levels of symbolic links"))
}

/// What a name denotes, for comparing names.
#[derive(Debug, PartialEq, Eq)]
struct Identity {
    path: Option<PathBuf>,
    /// Device and inode, if the file exists.
    inode: Option<(u64, u64)>,
    /// A character device (a terminal, `/dev/null`): reading and writing it, or writing it
    /// twice, destroys nothing.
    chardev: bool,
}

impl Identity {
    fn of(path: &Path) -> Identity {
        let (path, meta) = if is_stdout(path) || path == Path::new("/dev/stdin") {
            // What the descriptor is connected to: a pipe, a terminal or a redirected file.
            let fd = if is_stdout(path) { "1" } else { "0" };
            (
                None,
                std::fs::metadata(Path::new("/proc/self/fd").join(fd)).ok(),
            )
        } else {
            (resolve(path).ok(), std::fs::metadata(path).ok())
        };
        let chardev = meta
            .as_ref()
            .is_some_and(|m| m.file_type().is_char_device());
        Identity {
            path,
            inode: meta.map(|m| (m.dev(), m.ino())),
            chardev,
        }
    }

    fn same(&self, other: &Identity) -> bool {
        if self.chardev || other.chardev {
            return false;
        }
        let same_path = self.path.is_some() && self.path == other.path;
        let same_inode = self.inode.is_some() && self.inode == other.inode;
        same_path || same_inode
    }
}

/// Refuses names that denote the same file: `input` (with its flag; `-` is standard input)
/// against every output, and the outputs against each other. Outputs are `(flag, name)`.
///
/// Errors: [`OutputError::Same`] naming both, the first pair found.
pub fn check_distinct(
    input: Option<(&str, &Path)>,
    outputs: &[(&str, &Path)],
) -> Result<(), OutputError> {
    let input = input.map(|(flag, path)| {
        // Named as given (`-`), compared as what standard input is connected to.
        let denoted = if path == Path::new("-") {
            Path::new("/dev/stdin")
        } else {
            path
        };
        (flag, path, Identity::of(denoted))
    });
    let outputs: Vec<_> = outputs
        .iter()
        .map(|(flag, path)| (*flag, *path, Identity::of(path)))
        .collect();
    let same = |(f1, p1, _): &(&str, &Path, Identity), (f2, p2, _): &(&str, &Path, Identity)| {
        OutputError::Same {
            first_flag: f1.to_string(),
            first: p1.display().to_string(),
            second_flag: f2.to_string(),
            second: p2.display().to_string(),
        }
    };
    for (i, output) in outputs.iter().enumerate() {
        if let Some(input) = &input {
            if input.2.same(&output.2) {
                return Err(same(input, output));
            }
        }
        // Two names for standard output are one stream, whatever it is connected to.
        for earlier in &outputs[..i] {
            let both_stdout = is_stdout(earlier.1) && is_stdout(output.1);
            if both_stdout || earlier.2.same(&output.2) {
                return Err(same(earlier, output));
            }
        }
    }
    Ok(())
}

/// Where an [`Output`]'s bytes go until it is committed.
#[derive(Debug)]
enum Target {
    /// Standard output, written directly.
    Stdout,
    /// A FIFO, device or other non-regular file, written directly, never unlinked.
    Direct,
    /// A temporary file beside `target`, renamed onto it by [`Output::commit`].
    Temporary {
        temporary: PathBuf,
        target: PathBuf,
        file: File,
        /// Kept when dropped uncommitted: a checkpointed run resumes it (see
        /// [`Output::create_resumable`]).
        keep: bool,
    },
}

/// An output being written: commit it when the run succeeded; dropping it uncommitted removes
/// the temporary file (nothing else).
#[derive(Debug)]
pub struct Output {
    name: String,
    target: Target,
    /// Set when the output is dropped uncommitted: its writer then passes nothing on, so a
    /// run that failed before its workers wrote anything leaves even a FIFO without a header.
    abandoned: Arc<AtomicBool>,
}

/// A writer for an [`Output`]: buffers everything and passes it on at `flush` only, so what
/// reaches a FIFO or a terminal ends where the caller flushed (after whole rows).
pub struct OutputWriter {
    sink: Box<dyn Write + Send>,
    buffer: Vec<u8>,
    abandoned: Arc<AtomicBool>,
}

impl Write for OutputWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.abandoned.load(Ordering::SeqCst) {
            self.buffer.clear();
            return Ok(());
        }
        if !self.buffer.is_empty() {
            self.sink.write_all(&self.buffer)?;
            self.buffer.clear();
        }
        self.sink.flush()
    }
}

impl Output {
    /// Opens `path` for writing (`-` is standard output), as described in the module docs.
    ///
    /// Errors: [`OutputError::Create`] naming `path` (a missing directory, a directory given
    /// as output, no permission).
    pub fn create(path: &Path) -> Result<(Output, OutputWriter), OutputError> {
        let name = path.display().to_string();
        let error = |e: io::Error| OutputError::Create {
            path: name.clone(),
            message: e.to_string(),
        };
        if is_stdout(path) {
            return Ok(Output::open(name, Target::Stdout, Box::new(io::stdout())));
        }
        let meta = match std::fs::metadata(path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(error(e)),
        };
        if let Some(meta) = meta.as_ref().filter(|m| !m.is_file()) {
            if meta.is_dir() {
                return Err(error(io::Error::other("is a directory")));
            }
            // A FIFO or device: open it as it is, without creating or truncating anything.
            let file = OpenOptions::new().write(true).open(path).map_err(error)?;
            return Ok(Output::open(name, Target::Direct, Box::new(file)));
        }
        let target = resolve(path).map_err(error)?;
        if meta.is_some() && !writable(&target) {
            // Renaming over it would succeed (only the directory's permission counts), but
            // the user protected this file: refuse as writing it in place would.
            return Err(error(io::Error::from(io::ErrorKind::PermissionDenied)));
        }
        let dir = target.parent().unwrap_or(Path::new("/")).to_path_buf();
        let base = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (temporary, file) = create_temporary(&dir, &base).map_err(error)?;
        if let Some(meta) = meta {
            // The result replaces the file: keep its permissions.
            let _ = file.set_permissions(meta.permissions());
        }
        let sink = Box::new(file.try_clone().map_err(error)?);
        let target = Target::Temporary {
            temporary,
            target,
            file,
            keep: false,
        };
        Ok(Output::open(name, target, sink))
    }

    /// The output `name` writing to `target`, and its writer through `sink`: the two share the
    /// flag that a dropped, uncommitted output sets so that its writer writes nothing more.
    fn open(name: String, target: Target, sink: Box<dyn Write + Send>) -> (Output, OutputWriter) {
        let abandoned = Arc::new(AtomicBool::new(false));
        let writer = OutputWriter {
            sink,
            buffer: Vec::new(),
            abandoned: Arc::clone(&abandoned),
        };
        let output = Output {
            name,
            target,
            abandoned,
        };
        (output, writer)
    }

    /// Opens `path` for a checkpointed run ([`crate::checkpoint`]): like [`Output::create`],
    /// but the temporary file has a fixed name, `.NAME.tidemark-checkpoint.tmp` beside the
    /// target, and survives a failed run, so that the same command run again finds it. With
    /// `committed = Some(n)` it is the file of an interrupted run: it is truncated to its
    /// committed `n` bytes and written on from there; with `None` it is created empty. Returns
    /// also a handle to fsync the file with.
    ///
    /// Errors: [`OutputError::Create`] naming `path`: standard output, a FIFO or a device
    /// (their bytes cannot be taken back), a missing directory, a temporary file shorter than
    /// its committed length or missing.
    pub fn create_resumable(
        path: &Path,
        committed: Option<u64>,
    ) -> Result<(Output, OutputWriter, File), OutputError> {
        let name = path.display().to_string();
        let error = |message: String| OutputError::Create {
            path: name.clone(),
            message,
        };
        let (target, temporary) = resumable_names(path).map_err(|e| error(e.to_string()))?;
        let file = match committed {
            None => OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temporary)
                .map_err(|e| error(format!("{}: {e}", temporary.display())))?,
            Some(length) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&temporary)
                    .map_err(|e| {
                        error(format!(
                            "the checkpoint's partial output {}: {e}",
                            temporary.display()
                        ))
                    })?;
                let have = file.metadata().map(|m| m.len()).unwrap_or(0);
                if have < length {
                    return Err(error(format!(
                        "the partial output {} has {have} bytes, the checkpoint committed {length}",
                        temporary.display()
                    )));
                }
                // Bytes after the committed prefix were written after the last checkpoint and
                // are written again by the resumed run.
                file.set_len(length)
                    .map_err(|e| error(format!("{}: {e}", temporary.display())))?;
                file
            }
        };
        let mut append = file.try_clone().map_err(|e| error(e.to_string()))?;
        use std::io::Seek;
        append
            .seek(io::SeekFrom::End(0))
            .map_err(|e| error(e.to_string()))?;
        let sync = file.try_clone().map_err(|e| error(e.to_string()))?;
        let abandoned = Arc::new(AtomicBool::new(false));
        let writer = OutputWriter {
            sink: Box::new(append),
            buffer: Vec::new(),
            abandoned: Arc::clone(&abandoned),
        };
        let output = Output {
            name,
            target: Target::Temporary {
                temporary,
                target,
                file,
                keep: true,
            },
            abandoned,
        };
        Ok((output, writer, sync))
    }

    /// Renames the temporary file a checkpointed run left for `path` onto it, if there is
    /// one (a run that committed its final checkpoint and was killed before renaming).
    ///
    /// Errors: [`OutputError::Create`] if the rename fails.
    pub fn finish_resumed(path: &Path) -> Result<(), OutputError> {
        let error = |e: io::Error| OutputError::Create {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let (target, temporary) = resumable_names(path).map_err(error)?;
        if temporary.exists() {
            std::fs::rename(&temporary, &target).map_err(error)?;
        }
        Ok(())
    }

    /// The name as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes the result visible under its name: syncs the temporary file and renames it onto
    /// the target (a no-op for direct outputs). Call after every writer was flushed.
    ///
    /// Errors: [`OutputError::Create`] if syncing or renaming fails (the temporary file is
    /// removed).
    pub fn commit(mut self) -> Result<(), OutputError> {
        // Committed: dropping `self` below must not mark the writer abandoned.
        self.abandoned = Arc::new(AtomicBool::new(false));
        let target = std::mem::replace(&mut self.target, Target::Direct);
        let Target::Temporary {
            temporary,
            target,
            file,
            ..
        } = target
        else {
            return Ok(());
        };
        let result = file
            .sync_all()
            .and_then(|()| std::fs::rename(&temporary, &target));
        forget(&temporary);
        result.map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            OutputError::Create {
                path: self.name.clone(),
                message: e.to_string(),
            }
        })
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.abandoned.store(true, Ordering::SeqCst);
        if let Target::Temporary {
            temporary,
            keep: false,
            ..
        } = &self.target
        {
            let _ = std::fs::remove_file(temporary);
            forget(temporary);
        }
    }
}

/// The target (symlinks resolved) and the fixed temporary name of a checkpointed output;
/// refuses anything but a regular file or a new name.
fn resumable_names(path: &Path) -> io::Result<(PathBuf, PathBuf)> {
    if is_stdout(path) {
        return Err(io::Error::other(
            "a checkpointed run needs a regular file: standard output cannot take back what a crashed run wrote after its last checkpoint",
        ));
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Err(io::Error::other("is a directory")),
        Ok(meta) if !meta.is_file() => {
            return Err(io::Error::other(
                "a checkpointed run needs a regular file: a FIFO or device cannot take back what a crashed run wrote after its last checkpoint",
            ))
        }
        Ok(_) => {
            let target = resolve(path)?;
            if !writable(&target) {
                return Err(io::Error::from(io::ErrorKind::PermissionDenied));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let target = resolve(path)?;
    let dir = target.parent().unwrap_or(Path::new("/")).to_path_buf();
    let base = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{base}{PARTIAL_SUFFIX}"));
    Ok((target, temporary))
}

/// How the temporary file of a checkpointed run's output ends: `.NAME` + this, beside the
/// target ([`Output::create_resumable`]). The checkpoint directory recognizes it as its run's
/// own when an output is placed in it ([`crate::checkpoint::CheckpointDir::open`]).
pub const PARTIAL_SUFFIX: &str = ".tidemark-checkpoint.tmp";

/// Whether this process may write the existing file `path` (access(2), so root may).
fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(name) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(name.as_ptr(), libc::W_OK) == 0 }
}

/// No longer removes `path` on failure.
fn forget(path: &Path) {
    unfinished().retain(|p| p != path);
}

/// Creates `.BASE.tidemark-PID-N.tmp` in `dir` (never an existing file) and registers it for
/// removal on failure.
fn create_temporary(dir: &Path, base: &str) -> io::Result<(PathBuf, File)> {
    let mut list = unfinished();
    for n in 0..1000 {
        let path = dir.join(format!(".{base}.tidemark-{}-{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => {
                list.push(path.clone());
                return Ok((path, file));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free temporary name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tidemark-output-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn same_file_under_other_names_is_refused() {
        let dir = scratch("same");
        let input = dir.join("in.csv");
        std::fs::write(&input, "x\n").unwrap();
        std::os::unix::fs::symlink(&input, dir.join("link.csv")).unwrap();
        std::fs::hard_link(&input, dir.join("hard.csv")).unwrap();
        let dotted = dir.join(".").join("in.csv");
        for alias in [dotted, dir.join("link.csv"), dir.join("hard.csv")] {
            let err = check_distinct(Some(("--input", &input)), &[("--output", &alias)]);
            assert!(matches!(err, Err(OutputError::Same { .. })), "{alias:?}");
        }
        let (a, b) = (dir.join("a.csv"), dir.join("sub/../a.csv"));
        std::fs::create_dir(dir.join("sub")).unwrap();
        let err = check_distinct(None, &[("--output", &a), ("--late-output", &b)]);
        assert!(err.unwrap_err().to_string().contains("--late-output"));
        assert!(check_distinct(Some(("--input", &input)), &[("--output", &a)]).is_ok());
        let null = Path::new("/dev/null");
        assert!(check_distinct(None, &[("--output", null), ("--late-output", null)]).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_result_appears_only_when_committed() {
        let dir = scratch("commit");
        let target = dir.join("out.csv");
        std::fs::write(&target, "old\n").unwrap();
        let (output, mut writer) = Output::create(&target).unwrap();
        writer.write_all(b"new\n").unwrap();
        writer.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
        output.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new\n");

        // Bytes pass on only at flush: whole rows, when the caller flushes after whole rows.
        let (output, mut writer) = Output::create(&target).unwrap();
        let temporary = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p != &target)
            .unwrap();
        writer.write_all(b"1,2,").unwrap();
        assert_eq!(std::fs::metadata(&temporary).unwrap().len(), 0);
        writer.write_all(b"3\n").unwrap();
        writer.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&temporary).unwrap(), "1,2,3\n");
        writer.write_all(b"partial\n").unwrap();
        writer.flush().unwrap();
        drop(output);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new\n");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "the temporary file is gone");
        let _ = std::fs::remove_dir_all(dir);
    }
}
