//! Parallel reading of a CSV file: every worker of every process reads and parses a share of
//! the file, and stamps each record exactly as the single reader ([`super::csv::CsvFeed`])
//! does, so every result is the same.
//!
//! # Blocks
//!
//! Each process cuts the file after its header into blocks of about [`BLOCK_BYTES`] (256 KiB), at record
//! boundaries, in one scan before the run ([`BlockPlan::open`]): the same blocks in every
//! process. Block `i` is read by worker `i mod W` (global index, `W` workers in all), so the
//! workers read the file front to back together, never more than about a block apiece apart.
//! (Shares of a whole worker's fraction of the file would each run far ahead in event time,
//! and window state would grow with the file.)
//!
//! A block starts exactly where the single reader's CSV parser stands after the record before
//! it: after the terminator byte (`\n`, or `\r` of `\r\n`) of a non-empty record, so empty
//! lines and the `\n` of a `\r\n` belong to the next block, as they belong to the next read.
//! Without a quote character in the file, a terminator is always a record end, and the scan
//! only looks for quotes and counts newlines (memory speed). A file with quotes is scanned by
//! the CSV parser itself (`csv-core`, the parser the `csv` crate runs), so a quoted field with
//! newlines or a stray quote is split exactly as the single reader reads it; that scan is
//! slower (the parsing itself still runs in parallel). The scan also counts the lines before
//! each block, so a record's line number (in errors) is the block's first line plus the line
//! ends within the block before the record, the single reader's number (see
//! `super::lines`: counted only where a line is reported, not for every row).
//!
//! # Watermarks across blocks
//!
//! The single reader stamps record `r` against the watermark of every record before it (see
//! [`crate::time::Watermark`]): the largest event time before `r`, less the delay. Here a
//! worker parses its block (in parallel with the others), publishes the block's largest event
//! time, and waits for the largest event time of all earlier blocks (a prefix maximum over
//! the blocks' maxima: a small sequential step); it then accounts for that maximum in its own
//! watermark and stamps its block's records in file order. Every record so gets the stamp, and
//! lateness, of the single reader. Maxima travel to every worker of every process on a
//! broadcast timely stream, disconnected from the records' dataflow.
//!
//! Each worker's source holds its capability at its own watermark, which is at most the stamp
//! of any record it sends later (later blocks only raise it), so no frontier passes a record
//! before it is sent. Where records are sent at the watermark ([`super::SendAt::Watermark`])
//! the time is the sending worker's capability, at most the record's event time: the module
//! docs of [`super`] show why any such time gives the window operators the same results.
//!
//! # Errors, skipped lines and counts
//!
//! A block's summary carries its row counts, its first skipped lines' messages, and the error
//! that stopped it. Worker 0 of process 0 goes through the summaries in block order: it counts
//! the rows, reports skipped lines in file order, and reports the first error in the file once
//! every block before it is known to be clean: the error of the single reader, whichever
//! worker met it and whichever met one first. A worker whose earlier block failed stops and
//! keeps its capability (no window closes for input that was not read).
//!
//! Every worker first broadcasts the shape of its plan (blocks, bytes, a digest of the block
//! starts): each process cuts its own copy of the file, and processes whose copies differ
//! would otherwise wait forever for blocks that only one of them has. A block that, when read,
//! is shorter than planned or no longer ends at a record end says the file changed while read.
//!
//! Standard input is not a file: it is read by the single reader, as is any input that is not
//! a regular file (a pipe cannot be scanned and then read again by block).

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Operator;
use timely::dataflow::{Scope, StreamVec};
use timely::scheduling::Activator;

use super::csv::{
    csv_error, warn_skipped, BadLines, Columns, CsvItem, FeedStats, Layout, Parsed, ReadError,
    REPORTED_BAD_LINES,
};
use super::lines::{is_terminator, LineCount, LineCursor};
use super::{feed_source_paced, Feed, Pacing, Poll, Position, SourceOptions, SourceState, Stamped};
use crate::stash::Cut;
use crate::time::Watermark;

/// The size a block aims at, in bytes: a block ends at the first record end at or after it.
/// Large enough that the per-block exchange is negligible (a summary per some 15 000 rows of
/// the issue-14 file), small enough that the workers stay close in event time and each holds
/// little: a worker holds its block's bytes and parsed rows, a few MB.
pub const BLOCK_BYTES: u64 = 1 << 18;

/// What the plan scan reads at a time.
const SCAN_CHUNK: usize = 1 << 20;

/// An empty line that a fresh CSV parser reads before a block: a parser drops a UTF-8 byte
/// order mark only at the start of its input, and a block starts mid-file, where the single
/// reader keeps it as part of the record. (A block's reader reads the terminator before the
/// block instead, which is an empty line too and tells whether a `\n` first ends a line.)
const SKIPPED_LINE: &[u8] = b"\r";

/// The bytes a block's reader reads before the block: the terminator that ends the record
/// before it (the header's, for the first block).
const PREFIX: usize = 1;

/// A file cut into blocks at record boundaries, with what every worker needs to read it.
#[derive(Debug)]
pub struct BlockPlan {
    layout: Layout,
    path: PathBuf,
    bad_lines: BadLines,
    max_delay: u64,
    /// Block `i` is the bytes `starts[i] .. starts[i + 1]` of the file; the last entry is the
    /// end of the data.
    starts: Vec<u64>,
    /// `lines[i]`: the line of the byte at `starts[i]` (1 + the line ends before it; see
    /// [`super::lines`]).
    lines: Vec<u64>,
    quoted: bool,
    /// A digest of the blocks (see [`BlockPlan::shape`]).
    digest: u64,
    stats: Arc<FeedStats>,
}

impl BlockPlan {
    /// Opens the file `path`, reads its header (errors as [`super::csv::CsvFeed::open`]'s),
    /// and cuts the rest into blocks of about `block_bytes` (at least 1) at record boundaries.
    ///
    /// Errors: the file cannot be opened or read, or its header lacks a column.
    pub fn open(
        path: &Path,
        columns: Columns,
        bad_lines: BadLines,
        max_delay: u64,
        block_bytes: u64,
    ) -> Result<(BlockPlan, csv::StringRecord), ReadError> {
        let name = path.display().to_string();
        let io_error = |e: io::Error| ReadError::io(&name, e);
        let file = File::open(path).map_err(&io_error)?;
        let (mut reader, layout, header) = Layout::reader(&name, file, columns)?;
        // Where the parser stands after the header: the first block starts there.
        let start = reader.position().byte();
        let line = reader.get_mut().count_at(start);
        let mut file = reader.into_inner().into_inner();
        let block_bytes = block_bytes.max(1);
        file.seek(SeekFrom::Start(start)).map_err(&io_error)?;
        let (starts, lines, quoted) =
            match split_plain(&mut file, start, line, block_bytes).map_err(&io_error)? {
                Some((starts, lines)) => (starts, lines, false),
                None => {
                    file.seek(SeekFrom::Start(start)).map_err(&io_error)?;
                    let (starts, lines) =
                        split_quoted(&mut file, start, line, block_bytes).map_err(&io_error)?;
                    (starts, lines, true)
                }
            };
        let digest = {
            use std::hash::{Hash, Hasher};
            // SipHash with fixed keys: the same digest in every process of the same build
            // (processes of a cluster run the same version, which the cluster checks).
            #[allow(deprecated)]
            let mut hasher = std::hash::SipHasher::new();
            (&starts, &lines, quoted).hash(&mut hasher);
            hasher.finish()
        };
        let plan = BlockPlan {
            layout,
            path: path.to_path_buf(),
            bad_lines,
            max_delay,
            starts,
            lines,
            quoted,
            digest,
            stats: Arc::default(),
        };
        Ok((plan, header))
    }

    /// The number of blocks (0 for a file with a header only).
    pub fn blocks(&self) -> usize {
        self.starts.len() - 1
    }

    /// Whether the file has a quote character, so that it was cut by the CSV parser.
    pub fn quoted(&self) -> bool {
        self.quoted
    }

    /// The line the header is on (1, unless empty lines come first), for errors about it.
    pub fn header_line(&self) -> u64 {
        self.layout.header_line
    }

    /// The counters of the whole file: kept by worker 0 of process 0 (zero in other processes).
    pub fn stats(&self) -> Arc<FeedStats> {
        Arc::clone(&self.stats)
    }

    /// What every process's plan must agree on: the number of blocks, the bytes they span,
    /// and a digest of their starts and lines. Each process cuts its own copy of the file (on
    /// its own host, perhaps), and a block no process reads would be waited for forever.
    fn shape(&self) -> Shape {
        Shape {
            blocks: self.blocks() as u64,
            bytes: self.starts[self.blocks()],
            digest: self.digest,
        }
    }
}

/// The shape of a worker's plan (see [`BlockPlan::shape`]), sent before its blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Shape {
    blocks: u64,
    /// The end of the data (the last block's end), in bytes from the start of the file.
    bytes: u64,
    digest: u64,
}

/// What workers tell each other: the shape of their plan (first), then their blocks.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Summary {
    Plan { worker: u64, shape: Shape },
    Block(BlockInfo),
}

/// Reads into `buffer` until it is full or the input ends; returns the bytes read.
fn fill(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Block starts and their lines for a file without quotes, from `start` (where the count is
/// `line`); `None` as soon as a quote shows up.
///
/// Without quotes every `\r` and `\n` is a record terminator; a record ends at one that follows
/// a byte of the record (the others are empty lines, or the `\n` of `\r\n`, which the parser
/// skips at the start of the next read).
fn split_plain(
    file: &mut File,
    start: u64,
    line: LineCount,
    block: u64,
) -> io::Result<Option<(Vec<u64>, Vec<u64>)>> {
    let (mut starts, mut lines) = (vec![start], vec![line.line]);
    let mut line = line;
    let mut target = start.saturating_add(block);
    // The header ended with a terminator (or the file did).
    let mut after_terminator = true;
    let mut chunk = vec![0; SCAN_CHUNK];
    let mut at = start;
    loop {
        let n = fill(file, &mut chunk)?;
        if n == 0 {
            break;
        }
        let bytes = &chunk[..n];
        if bytes.contains(&b'"') {
            return Ok(None);
        }
        let mut i = 0;
        while i < n {
            let offset = at + i as u64;
            if offset < target {
                // Up to the target, only line ends matter.
                let upto = (target - at).min(n as u64) as usize;
                line.advance(&bytes[i..upto]);
                after_terminator = is_terminator(bytes[upto - 1]);
                i = upto;
                continue;
            }
            let byte = bytes[i];
            line.advance(&bytes[i..=i]);
            let terminator = is_terminator(byte);
            if terminator && !after_terminator {
                starts.push(offset + 1);
                lines.push(line.line);
                target = (offset + 1).saturating_add(block);
            }
            after_terminator = terminator;
            i += 1;
        }
        at += n as u64;
    }
    if starts.last() < Some(&at) {
        starts.push(at);
        lines.push(line.line);
    }
    Ok(Some((starts, lines)))
}

/// Block starts and their lines for any file, from `start` (where the count is `line`): the
/// CSV parser the single reader runs finds the record ends.
fn split_quoted(
    file: &mut File,
    start: u64,
    line: LineCount,
    block: u64,
) -> io::Result<(Vec<u64>, Vec<u64>)> {
    use csv_core::ReadRecordResult;
    // The `csv` crate's reader with its default dialect, as the single reader builds it.
    let mut parser = csv_core::Reader::new();
    let (mut fields, mut ends) = (vec![0; 1 << 16], vec![0; 1 << 10]);
    // A fresh parser drops a UTF-8 byte order mark at the start of its input, but `start` is
    // mid-file, where the single reader keeps one (and a quote after it is no field start):
    // an empty line first makes the parser read past its start without changing its state.
    parser.read_record(SKIPPED_LINE, &mut fields, &mut ends);
    let (mut starts, mut lines) = (vec![start], vec![line.line]);
    // The count at the start of `chunk`, moved to each block start found in it.
    let mut line = line;
    let mut target = start.saturating_add(block);
    let mut chunk = vec![0; SCAN_CHUNK];
    let mut at = start;
    loop {
        let n = fill(file, &mut chunk)?;
        let mut lines_in = LineCursor::new(line, 0);
        let mut i = 0;
        loop {
            let (result, read, _, _) = parser.read_record(&chunk[i..n], &mut fields, &mut ends);
            i += read;
            match result {
                ReadRecordResult::InputEmpty => break,
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
                ReadRecordResult::Record => {
                    let offset = at + i as u64;
                    if offset >= target {
                        starts.push(offset);
                        lines.push(lines_in.count_to(&chunk[..n], i).line);
                        target = offset.saturating_add(block);
                    }
                }
                ReadRecordResult::End => {
                    let end = at + n as u64;
                    if starts.last() < Some(&end) {
                        starts.push(end);
                        lines.push(lines_in.count_to(&chunk[..n], n).line);
                    }
                    return Ok((starts, lines));
                }
            }
        }
        line = lines_in.count_to(&chunk[..n], n);
        at += n as u64;
    }
}

/// What a worker learnt from parsing one block, for every worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct BlockInfo {
    block: u64,
    /// The largest event time among its rows (before its error, if it has one).
    max: Option<u64>,
    /// Rows read into records.
    records: u64,
    /// Rows skipped as bad.
    bad: u64,
    /// The messages of the first skipped rows (at most [`REPORTED_BAD_LINES`]).
    warnings: Vec<String>,
    /// The error that stopped the block.
    error: Option<ReadError>,
}

/// A worker's view of every block, shared by its feed and the operators that exchange
/// summaries.
struct Shared {
    /// This worker's plan shape and block summaries, to broadcast.
    outbox: Vec<Summary>,
    /// This worker publishes no more summaries.
    published: bool,
    /// Wakes the operator that broadcasts the outbox.
    out_activator: Option<Activator>,
    /// Wakes the feed's source when summaries arrive.
    feed_activator: Option<Activator>,
    /// Summaries received, by block.
    infos: Vec<Option<BlockInfo>>,
    /// Blocks `0 .. known` are all received.
    known: usize,
    /// `maxima[i]`, for `i <= known`: the largest event time in blocks `0 .. i`.
    maxima: Vec<Option<u64>>,
    /// The first block with an error, among blocks `0 .. known`.
    first_error: Option<usize>,
    /// A worker whose plan differs from this one's, and its plan's shape.
    other_plan: Option<(u64, Shape)>,
}

impl Shared {
    fn new(blocks: usize) -> Self {
        Shared {
            outbox: Vec::new(),
            published: false,
            out_activator: None,
            feed_activator: None,
            infos: vec![None; blocks],
            known: 0,
            maxima: vec![None],
            first_error: None,
            other_plan: None,
        }
    }

    fn insert(&mut self, info: BlockInfo) {
        let Some(slot) = usize::try_from(info.block)
            .ok()
            .and_then(|b| self.infos.get_mut(b))
        else {
            return;
        };
        *slot = Some(info);
        while let Some(Some(info)) = self.infos.get(self.known) {
            if info.error.is_some() && self.first_error.is_none() {
                self.first_error = Some(self.known);
            }
            let max = self.maxima[self.known].max(info.max);
            self.maxima.push(max);
            self.known += 1;
        }
    }
}

/// The block a worker is sending.
struct Current {
    block: usize,
    /// Rows of `parsed` sent so far.
    sent: usize,
    /// Whether the watermark has taken the earlier blocks' maximum into account.
    caught_up: bool,
    /// The error that stopped the block after its rows.
    error: Option<ReadError>,
}

/// One worker's share of a [`BlockPlan`] as a [`Feed`]: blocks `index, index + peers, ...`.
pub struct BlockFeed {
    plan: Arc<BlockPlan>,
    file: File,
    /// Worker 0 of process 0: counts rows, reports skipped rows and the first error.
    leader: bool,
    peers: usize,
    /// The next block to parse.
    next: usize,
    buffer: Vec<u8>,
    /// The block's records (reused from block to block) and its good rows: record index, row.
    records: Vec<csv::ByteRecord>,
    parsed: Vec<(usize, Parsed)>,
    current: Option<Current>,
    watermark: Watermark,
    shared: Rc<RefCell<Shared>>,
    /// Stopped for good: an earlier block failed, or this one did.
    stopped: bool,
    /// Leader: blocks counted and reported so far, and bad lines among them.
    reported: usize,
    skipped: u64,
    /// Restored from a checkpoint: the byte of the first record to send in block `next`.
    resume: Option<u64>,
    /// `(block, largest event time)` of every block parsed (for [`SourceState::blocks`]),
    /// starting with the restored state's.
    maxima: Vec<(u64, Option<u64>)>,
}

impl BlockFeed {
    fn new(
        plan: Arc<BlockPlan>,
        index: usize,
        peers: usize,
        shared: Rc<RefCell<Shared>>,
        restored: Option<&SourceState>,
    ) -> Result<Self, ReadError> {
        let file = File::open(&plan.path).map_err(|e| ReadError::io(&plan.layout.name, e))?;
        let (next, watermark, resume, maxima) = match restored {
            // The block the cut fell in is parsed again, and its records from the position on
            // are sent; the watermark there already accounts for the earlier blocks.
            Some(state) => (
                usize::try_from(state.position.block).unwrap_or(usize::MAX),
                state.watermark.clone(),
                Some(state.position.byte),
                state.blocks.clone(),
            ),
            None => (index, Watermark::new(plan.max_delay), None, Vec::new()),
        };
        Ok(BlockFeed {
            file,
            leader: index == 0,
            peers: peers.max(1),
            next,
            buffer: Vec::new(),
            records: Vec::new(),
            parsed: Vec::new(),
            current: None,
            watermark,
            shared,
            stopped: false,
            reported: 0,
            skipped: 0,
            resume,
            maxima,
            plan,
        })
    }

    /// The byte offset in the file of record `record` (an index into `records`) of `block`.
    fn byte_of(&self, block: usize, record: usize) -> u64 {
        let at = self.records[record].position();
        // Positions count the byte before the block (see `parse`); the first record's is the
        // block's start.
        self.plan.starts[block] + at.map_or(0, |p| p.byte().saturating_sub(PREFIX as u64))
    }

    /// Where this reader stands: the next record it sends (see [`Position`]).
    pub fn position(&self) -> Position {
        let Some(current) = &self.current else {
            let block = self.next.min(self.plan.blocks());
            return Position {
                block: block as u64,
                byte: self.plan.starts[block],
                line: self.plan.lines[block],
            };
        };
        let (byte, line) = match self.parsed.get(current.sent) {
            Some((record, _)) => {
                let at = self.records[*record].position().map_or(0, |p| p.byte());
                let at = usize::try_from(at).unwrap_or(usize::MAX);
                let line = self.lines(current.block).record_line(&self.buffer, at);
                (self.byte_of(current.block, *record), line)
            }
            None => (
                self.plan.starts[current.block + 1],
                self.plan.lines[current.block + 1],
            ),
        };
        Position {
            block: current.block as u64,
            byte,
            line,
        }
    }

    /// A line count at the start of block `block`, whose bytes (after the one before them)
    /// are in `buffer`.
    fn lines(&self, block: usize) -> LineCursor {
        let before = self.buffer.first().copied().unwrap_or(b'\n');
        LineCursor::new(LineCount::after(self.plan.lines[block], before), PREFIX)
    }

    /// Reads and parses block `block` into `records` and `parsed`; returns its summary.
    fn parse(&mut self, block: usize) -> BlockInfo {
        let layout = &self.plan.layout;
        let (start, end) = (self.plan.starts[block], self.plan.starts[block + 1]);
        let mut info = BlockInfo {
            block: block as u64,
            max: None,
            records: 0,
            bad: 0,
            warnings: Vec::new(),
            error: None,
        };
        self.parsed.clear();
        let length = usize::try_from(end - start).unwrap_or(usize::MAX);
        // The block's bytes after the terminator before them: an empty line to the parser,
        // which so keeps a byte order mark at the block's start, and the line count's cue
        // whether a `\n` first is the end of a `\r\n`. (A block starts after the header.)
        self.buffer.clear();
        self.buffer.resize(PREFIX.saturating_add(length), 0);
        let read = self
            .file
            .seek(SeekFrom::Start(start.saturating_sub(PREFIX as u64)))
            .and_then(|_| self.file.read_exact(&mut self.buffer));
        let changed = |what: &str| ReadError::Io {
            file: layout.name.clone(),
            message: format!(
                "bytes {start}..{end} (block {block}) {what} since the file was cut into \
                 blocks: it changed while read"
            ),
        };
        if let Err(e) = read {
            info.error = Some(if e.kind() == io::ErrorKind::UnexpectedEof {
                changed("are gone")
            } else {
                ReadError::io(&layout.name, e)
            });
            return info;
        }
        // Every block but the last ends with a record's terminator; one that does not was cut
        // in another file (rows read across it would be split silently).
        if block + 1 < self.plan.blocks() && self.buffer.last().is_some_and(|b| !is_terminator(*b))
        {
            info.error = Some(changed("no longer end at a record end"));
            return info;
        }
        if !is_terminator(self.buffer[0]) {
            info.error = Some(changed("no longer follow a record end"));
            return info;
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&self.buffer[..]);
        // Lines are counted only for the records that report one, in order: one pass at most.
        let mut lines = self.lines(block);
        let mut n = 0;
        loop {
            if self.records.len() == n {
                self.records.push(csv::ByteRecord::new());
            }
            let record = &mut self.records[n];
            match reader.read_byte_record(record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    // Reading bytes from memory fails only on what the single reader fails
                    // on too.
                    let at = e.position().map_or(0, |p| p.byte());
                    let at = usize::try_from(at).unwrap_or(usize::MAX);
                    let line = lines.record_line(&self.buffer, at);
                    info.error = Some(csv_error(&layout.name, e, line));
                    break;
                }
            }
            let located = |bad| {
                let at = record.position().map_or(0, |p| p.byte());
                let at = usize::try_from(at).unwrap_or(usize::MAX);
                layout.error(lines.record_line(&self.buffer, at), bad)
            };
            match layout.parse(record).map_err(located) {
                Ok(parsed) => {
                    info.max = info.max.max(Some(parsed.ts));
                    info.records += 1;
                    self.parsed.push((n, parsed));
                    n += 1;
                }
                Err(e) if self.plan.bad_lines == BadLines::Skip => {
                    info.bad += 1;
                    if info.warnings.len() < REPORTED_BAD_LINES as usize {
                        info.warnings.push(e.to_string());
                    }
                }
                Err(e) => {
                    info.error = Some(e.into());
                    break;
                }
            }
        }
        info
    }

    /// Leader: counts, warns about and fails on the blocks known so far, in block order.
    fn report(&mut self) -> Result<(), ReadError> {
        let mut shared = self.shared.borrow_mut();
        while self.reported < shared.known {
            let Some(info) = shared.infos[self.reported].as_mut() else {
                break;
            };
            let stats = &self.plan.stats;
            stats.records.fetch_add(info.records, Ordering::Relaxed);
            stats.bad_lines.fetch_add(info.bad, Ordering::Relaxed);
            let before = self.skipped;
            // The first bad lines of the file one by one, then once that there are more.
            for (i, message) in info.warnings.drain(..).enumerate() {
                let skipped = before + i as u64 + 1;
                if skipped <= REPORTED_BAD_LINES {
                    warn_skipped(skipped, &message);
                }
            }
            self.skipped += info.bad;
            if before <= REPORTED_BAD_LINES && self.skipped > REPORTED_BAD_LINES {
                warn_skipped(REPORTED_BAD_LINES + 1, "");
            }
            if let Some(error) = info.error.take() {
                return Err(error);
            }
            self.reported += 1;
        }
        Ok(())
    }

    fn publish(&mut self, info: Option<BlockInfo>) {
        let mut shared = self.shared.borrow_mut();
        match info {
            Some(info) => shared.outbox.push(Summary::Block(info)),
            None => shared.published = true,
        }
        if let Some(activator) = &shared.out_activator {
            activator.activate();
        }
    }
}

impl Feed for BlockFeed {
    type Item = CsvItem;
    type Error = ReadError;

    fn poll(&mut self, max: usize, out: &mut Vec<Stamped<CsvItem>>) -> Result<Poll, ReadError> {
        self.poll_until(max, out, None)
    }

    fn poll_bounded(
        &mut self,
        max: usize,
        out: &mut Vec<Stamped<CsvItem>>,
        bound: u64,
    ) -> Result<Poll, ReadError> {
        self.poll_until(max, out, Some(bound))
    }

    fn state(&self, done: bool) -> Option<SourceState> {
        // Only where the watermark is the single reader's: within a block caught up with the
        // earlier blocks, or past the last block. Between blocks the next one's catch-up is
        // still to come.
        let settled = match &self.current {
            Some(current) => current.caught_up,
            None => self.next >= self.plan.blocks(),
        };
        (settled && !self.stopped).then(|| SourceState {
            position: self.position(),
            watermark: self.watermark.clone(),
            done,
            blocks: self.maxima.clone(),
        })
    }

    fn watermark(&mut self) -> &mut Watermark {
        &mut self.watermark
    }

    fn set_activator(&mut self, activator: Activator) {
        self.shared.borrow_mut().feed_activator = Some(activator);
    }
}

impl BlockFeed {
    /// [`Feed::poll`] and, with a `bound`, [`Feed::poll_bounded`].
    fn poll_until(
        &mut self,
        max: usize,
        out: &mut Vec<Stamped<CsvItem>>,
        bound: Option<u64>,
    ) -> Result<Poll, ReadError> {
        if let Some((worker, shape)) = self.shared.borrow().other_plan {
            let here = self.plan.shape();
            return Err(ReadError::Io {
                file: self.plan.layout.name.clone(),
                message: format!(
                    "worker {worker} cut its copy into {} blocks over {} bytes, this process \
                     into {} blocks over {} bytes{}: every process must read the same file, \
                     unchanged while it is read",
                    shape.blocks,
                    shape.bytes,
                    here.blocks,
                    here.bytes,
                    if (shape.blocks, shape.bytes) == (here.blocks, here.bytes) {
                        " (at other record ends)"
                    } else {
                        ""
                    }
                ),
            });
        }
        if self.leader {
            self.report()?;
        }
        if self.stopped {
            // Held for good: the leader reports the error that stopped the input.
            return Ok(Poll::Pending);
        }
        if self.current.is_none() {
            if self.next >= self.plan.blocks() {
                if !self.shared.borrow().published {
                    self.publish(None);
                }
                // The leader ends when it has counted every block (and met no error).
                let counted = !self.leader || self.reported == self.plan.blocks();
                return Ok(if counted { Poll::Done } else { Poll::Pending });
            }
            let block = self.next;
            let info = self.parse(block);
            let error = info.error.clone();
            self.maxima.retain(|(b, _)| *b != block as u64);
            self.maxima.push((block as u64, info.max));
            self.publish(Some(info));
            // Restored within this block: its records before the position were sent, and the
            // restored watermark has caught up with the earlier blocks.
            let (sent, caught_up) = match self.resume.take() {
                Some(byte) => {
                    let sent = (0..self.parsed.len())
                        .find(|&i| self.byte_of(block, self.parsed[i].0) >= byte)
                        .unwrap_or(self.parsed.len());
                    (sent, true)
                }
                None => (0, false),
            };
            self.current = Some(Current {
                block,
                sent,
                caught_up,
                error,
            });
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(Poll::Pending);
        };
        {
            let shared = self.shared.borrow();
            if shared.known < current.block {
                // Waiting for an earlier block's maximum.
                return Ok(Poll::Pending);
            }
            if shared.first_error.is_some_and(|e| e < current.block) {
                self.stopped = true;
                return Ok(Poll::Pending);
            }
            if !current.caught_up {
                // The watermark of the single reader at this block's first record.
                if let Some(max) = shared.maxima[current.block] {
                    self.watermark.stamp(max);
                }
                current.caught_up = true;
            }
        }
        let upto = (current.sent + max.max(1)).min(self.parsed.len());
        for (record, parsed) in &self.parsed[current.sent..upto] {
            if bound.is_some_and(|b| self.watermark.current() > b) {
                // The checkpoint cut falls before this record.
                return Ok(Poll::Ready);
            }
            let time = self.watermark.stamp(parsed.ts);
            out.push(self.plan.layout.item(&self.records[*record], parsed, time));
            current.sent += 1;
        }
        if current.sent == self.parsed.len() {
            if current.error.is_some() {
                self.stopped = true;
            } else {
                self.current = None;
                self.next += self.peers;
            }
        }
        Ok(Poll::Ready)
    }
}

/// A source reading this worker's share of `plan`: every worker of every process calls it
/// (with the same plan), and together they send the records of the single reader over `plan`'s
/// file, each at the same stamp (see the module docs). Options, pacing and `error` as for
/// [`super::feed_source_paced`]; an error is set only on worker 0 of process 0 (the first in the
/// file), on a worker that cannot open the file, or on a worker that learns that another
/// worker's plan differs from its own (another copy of the file, or one that changed).
///
/// Checkpoint cuts as for [`super::feed_source_paced`] (none with [`Cut::none`]); with
/// `restored` (every worker's [`SourceState`] at the checkpoint resumed from, by global worker
/// index, from a run with as many workers), resuming there: each worker parses again the block
/// its position is in and sends its records from the position on, with the restored
/// watermark; the maxima of the blocks no worker reads again come from the states.
pub fn block_source<'scope>(
    scope: Scope<'scope, u64>,
    plan: &Arc<BlockPlan>,
    options: SourceOptions,
    pacing: Pacing,
    error: Rc<RefCell<Option<ReadError>>>,
    cut: Cut<Option<SourceState>>,
    restored: Option<&[Option<SourceState>]>,
) -> StreamVec<'scope, u64, CsvItem> {
    let shared = Rc::new(RefCell::new(Shared::new(plan.blocks())));
    if let Some(states) = restored {
        // Blocks that some worker parses again publish their summaries again; the others are
        // known from the states (rows counted once, in the run that read them).
        let again: Vec<u64> = states.iter().flatten().map(|s| s.position.block).collect();
        let mut shared = shared.borrow_mut();
        for (block, max) in states.iter().flatten().flat_map(|s| s.blocks.iter()) {
            if !again.contains(block) {
                shared.insert(BlockInfo {
                    block: *block,
                    max: *max,
                    records: 0,
                    bad: 0,
                    warnings: Vec::new(),
                    error: None,
                });
            }
        }
    }
    let own_state = restored.and_then(|states| states.get(scope.index()).cloned().flatten());
    let leader = scope.index() == 0;
    // Every worker first tells the others the shape of its plan: processes that cut different
    // files fail at once, instead of waiting for blocks that no worker reads.
    let own_shape = plan.shape();
    shared.borrow_mut().outbox.push(Summary::Plan {
        worker: scope.index() as u64,
        shape: own_shape,
    });
    let outgoing = Rc::clone(&shared);
    source(scope, "BlockSummaries", move |cap, info| {
        outgoing.borrow_mut().out_activator = Some(scope.activator_for(info.address));
        let mut cap = Some(cap);
        move |output| {
            let mut shared = outgoing.borrow_mut();
            if let Some(held) = &cap {
                if !shared.outbox.is_empty() {
                    output.session(held).give_iterator(shared.outbox.drain(..));
                }
                if shared.published {
                    cap = None;
                }
            }
        }
    })
    .container::<Vec<Summary>>()
    .broadcast()
    .sink(Pipeline, "BlockSummariesIn", {
        let shared = Rc::clone(&shared);
        move |(input, _frontier)| {
            let mut shared = shared.borrow_mut();
            input.for_each(|_cap, data| {
                for summary in data.drain(..) {
                    match summary {
                        Summary::Plan { worker, shape } => {
                            if shape != own_shape && shared.other_plan.is_none() {
                                shared.other_plan = Some((worker, shape));
                            }
                        }
                        Summary::Block(mut info) => {
                            if !leader {
                                // Only the leader reports them.
                                info.warnings = Vec::new();
                            }
                            shared.insert(info);
                        }
                    }
                }
            });
            if let Some(activator) = &shared.feed_activator {
                activator.activate();
            }
        }
    });
    let feed = BlockFeed::new(
        Arc::clone(plan),
        scope.index(),
        scope.peers(),
        shared,
        own_state.as_ref(),
    );
    let feed = match feed {
        Ok(feed) => Some(feed),
        Err(e) => {
            *error.borrow_mut() = Some(e);
            None
        }
    };
    feed_source_paced(scope, feed, options, pacing, error, cut)
}
