//! The on-disk format of one checkpoint file, and atomic writes.
//!
//! A file is a fixed prefix followed by a bincode body:
//!
//! ```text
//! offset  size  field
//! 0       8     magic "TDMKCKPT" (a file that does not start so is foreign)
//! 8       4     format version, little endian (FORMAT_VERSION; another is incompatible)
//! 12      8     body length in bytes, little endian
//! 20      4     CRC-32 (IEEE, crc32fast) of the body, little endian
//! 24      ...   body: bincode 1.3 of (Header, payload)
//! ```
//!
//! The version sits before the body so a reader can tell "written by another format" from
//! "damaged" without decoding anything in an unknown layout. A file shorter than its prefix or
//! its stated body length is *truncated*; a body whose checksum differs is *corrupt*; a body
//! that does not decode after a good checksum was written by a build with the same format
//! number but another layout, which counts as *incompatible*.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{crash, CheckpointError, CrashPoint};

/// The first bytes of every checkpoint file.
pub const MAGIC: [u8; 8] = *b"TDMKCKPT";
/// The format this build writes and reads; bump it whenever the body's layout changes.
pub const FORMAT_VERSION: u32 = 3;
/// Bytes before the body: magic, version, body length, checksum.
const PREFIX: usize = 8 + 4 + 8 + 4;
/// Refuse bodies larger than this (a damaged length field must not allocate terabytes).
const MAX_BODY: u64 = 1 << 32;

/// What every checkpoint file says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The tidemark revision that wrote it (`git_rev`), for messages: a checkpoint is read
    /// back by any build of the same format and job.
    pub revision: String,
    /// A hash of the job's configuration (see [`super::config_hash`]); another job's file is
    /// foreign.
    pub config_hash: u64,
    /// Workers of the run that wrote it (all processes together).
    pub workers: u32,
    /// The checkpoint time: the cut's timely time (event-time milliseconds).
    pub time: u64,
}

/// Encodes `header` and `payload` into the bytes of a checkpoint file.
pub fn encode<P: Serialize>(header: &Header, payload: &P) -> Vec<u8> {
    // Serializing plain structs of integers, strings and vectors into a Vec cannot fail.
    let body = bincode::serialize(&(header, payload)).expect("bincode into memory");
    let mut bytes = Vec::with_capacity(PREFIX + body.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

/// Decodes the bytes of a checkpoint file read from `path` (named in errors).
///
/// Errors: [`CheckpointError::Foreign`] (no magic), [`CheckpointError::Incompatible`] (another
/// format version or layout), [`CheckpointError::Truncated`], [`CheckpointError::Corrupt`].
pub fn decode<P: DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
) -> Result<(Header, P), CheckpointError> {
    let name = || path.display().to_string();
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        if MAGIC.starts_with(bytes) {
            return Err(CheckpointError::Truncated {
                path: name(),
                have: bytes.len() as u64,
                need: PREFIX as u64,
            });
        }
        return Err(CheckpointError::Foreign {
            path: name(),
            why: "not a tidemark checkpoint file".into(),
        });
    }
    if bytes.len() < PREFIX {
        return Err(CheckpointError::Truncated {
            path: name(),
            have: bytes.len() as u64,
            need: PREFIX as u64,
        });
    }
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let version = word(8);
    if version != FORMAT_VERSION {
        return Err(CheckpointError::Incompatible {
            path: name(),
            why: format!("format version {version}, this build reads version {FORMAT_VERSION}"),
        });
    }
    let length = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let checksum = word(20);
    let need = (PREFIX as u64).saturating_add(length);
    if length > MAX_BODY || (bytes.len() as u64) < need {
        return Err(CheckpointError::Truncated {
            path: name(),
            have: bytes.len() as u64,
            need,
        });
    }
    if (bytes.len() as u64) > need {
        return Err(CheckpointError::Corrupt {
            path: name(),
            why: format!(
                "{} bytes after the end of its body",
                bytes.len() as u64 - need
            ),
        });
    }
    let body = &bytes[PREFIX..];
    let actual = crc32fast::hash(body);
    if actual != checksum {
        return Err(CheckpointError::Corrupt {
            path: name(),
            why: format!("checksum {actual:08x}, the header says {checksum:08x}"),
        });
    }
    bincode::deserialize(body).map_err(|e| CheckpointError::Incompatible {
        path: name(),
        why: format!("its body does not decode as this build's layout ({e})"),
    })
}

/// Reads and decodes the checkpoint file at `path`; see [`decode`].
pub fn read<P: DeserializeOwned>(path: &Path) -> Result<(Header, P), CheckpointError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| CheckpointError::io(path, e))?;
    decode(path, &bytes)
}

/// Writes `bytes` to `path` atomically and durably: [`write_replace`], then an fsync of the
/// directory so that the rename itself survives a power loss.
pub fn write_atomic(path: &Path, bytes: &[u8], point: CrashPoint) -> Result<(), CheckpointError> {
    write_replace(path, bytes, point)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    sync_dir(dir).map_err(|e| CheckpointError::io(dir, e))
}

/// Writes `bytes` to `path` atomically: a temporary file beside it (`.NAME.tmp`), fsync, rename
/// onto `path`. A crash at any moment leaves either the old file or the new one under `path`,
/// never a mix; the file's bytes are durable, the rename only once the caller fsyncs the
/// directory (one fsync then covers every file of a commit). `point` names the write for
/// [`crash`] injection: a crash there leaves half the bytes in the temporary file.
pub fn write_replace(path: &Path, bytes: &[u8], point: CrashPoint) -> Result<(), CheckpointError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.tmp"));
    let result = (|| -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)?;
        let half = bytes.len() / 2;
        file.write_all(&bytes[..half])?;
        if point == CrashPoint::Snapshot {
            // No fsync before it: a SIGKILL leaves the page cache, and so the half, in place.
            crash(point);
        }
        file.write_all(&bytes[half..])?;
        // The data and the length; no other metadata matters to a reader.
        file.sync_data()?;
        if point == CrashPoint::Manifest {
            crash(point);
        }
        std::fs::rename(&temporary, path)
    })();
    result.map_err(|e| CheckpointError::io(path, e))
}

/// Makes a directory's entries (a rename, a new file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            revision: "abc".into(),
            config_hash: 7,
            workers: 2,
            time: 10_000,
        }
    }

    #[test]
    fn a_file_decodes_to_what_was_encoded() {
        let bytes = encode(&header(), &vec![1u64, 2, 3]);
        let (h, p): (Header, Vec<u64>) = decode(Path::new("f"), &bytes).unwrap();
        assert_eq!((h, p), (header(), vec![1, 2, 3]));
    }

    #[test]
    fn every_damage_is_named() {
        let bytes = encode(&header(), &vec![1u64, 2, 3]);
        let kind = |bytes: &[u8]| match decode::<Vec<u64>>(Path::new("f"), bytes) {
            Err(CheckpointError::Truncated { .. }) => "truncated",
            Err(CheckpointError::Corrupt { .. }) => "corrupt",
            Err(CheckpointError::Foreign { .. }) => "foreign",
            Err(CheckpointError::Incompatible { .. }) => "incompatible",
            Err(e) => panic!("{e}"),
            Ok(_) => "ok",
        };
        // Every proper prefix is truncated, never decoded or a panic.
        for cut in 0..bytes.len() {
            assert_eq!(kind(&bytes[..cut]), "truncated", "cut at {cut}");
        }
        // Every flipped body byte is corrupt.
        for at in PREFIX..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert_eq!(kind(&damaged), "corrupt", "byte {at}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(kind(&longer), "corrupt");
        assert_eq!(kind(b"window_start,window_end\n"), "foreign");
        let mut other = bytes.clone();
        other[8] = 9;
        assert_eq!(kind(&other), "incompatible");
        // A good checksum over a body of another layout.
        let wrong = encode(&header(), &"text");
        assert_eq!(kind(&wrong), "incompatible");
    }
}
