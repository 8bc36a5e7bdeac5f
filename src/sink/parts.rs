//! Part files: `--output DIR/` (a name ending in `/`, or an existing directory) writes one
//! `DIR/part-N.csv` per process `N`, each with the header, written by that process's workers
//! (see the [`super`] module docs); `--late-output DIR/` likewise.
//!
//! One file written by worker 0 stays the default: it is the one order-preserving result, and
//! parts help only where a single writer cannot keep up. Each part is an [`Output`]: written
//! to a temporary file and renamed when the run succeeds, like a single output.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::output::{Output, OutputError, OutputWriter};

use super::SharedWriter;

/// Whether `path` names a directory of part files: it ends in `/` or is an existing directory.
pub fn is_part_dir(path: &Path) -> bool {
    path.as_os_str().to_string_lossy().ends_with('/') || path.is_dir()
}

/// The part file of process `process` in `dir`: `dir/part-{process}.csv`.
pub fn part_path(dir: &Path, process: usize) -> PathBuf {
    dir.join(format!("part-{process}.csv"))
}

/// Creates `dir` if it is missing and opens process `process`'s part in it with `header`
/// written: the output to commit when the run succeeds, and the writer its workers share.
///
/// Errors: [`OutputError::Create`] naming the directory or the part (no permission, a file
/// where the directory should be).
pub fn open_part(
    dir: &Path,
    process: usize,
    header: &[String],
) -> Result<(Output, SharedWriter<OutputWriter>), OutputError> {
    let create = |path: &Path, e: &dyn std::fmt::Display| OutputError::Create {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| create(dir, &e))?;
    let path = part_path(dir, process);
    let (output, writer) = Output::create(&path)?;
    let mut writer = csv::Writer::from_writer(writer);
    // Written at once: a process whose workers produce no row still leaves a part with it.
    writer
        .write_record(header)
        .and_then(|()| Ok(writer.flush()?))
        .map_err(|e| create(&path, &e))?;
    Ok((output, Arc::new(Mutex::new(writer))))
}
