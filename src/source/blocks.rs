//! Parallel reading of a CSV file: every worker of every process reads and parses a share of
//! the file, and stamps each record exactly as the single reader ([`super::csv::CsvFeed`])
//! does, so every result is the same.
//!
//! # Blocks
//!
//! The data after the header is cut, nominally, into pieces of `block_bytes` (256 KiB:
//! [`BLOCK_BYTES`]); block `k` is the records that end after nominal offset `k` and at or before
//! nominal offset `k + 1`. So block `k` truly starts at the first record end after its nominal
//! start (the data's start for block 0), and ends where block `k + 1` starts (or at the end of
//! the data). The number of blocks follows from the file's length ([`BlockPlan::open`] reads
//! only the header and the length), and block `i` is read by worker `i mod W` (global index,
//! `W` workers in all), so the workers read the file front to back together, never more than
//! about a block apiece apart. (Shares of a whole worker's fraction of the file would each run
//! far ahead in event time, and window state would grow with the file.) A record longer than a
//! block leaves blocks empty: that is no special case.
//!
//! A record end is where the single reader's CSV parser stands after a record: after the
//! terminator byte (`\n`, or `\r` of `\r\n`) of a non-empty record, so empty lines and the `\n`
//! of a `\r\n` belong to the next block, as they belong to the next read. Without a quote
//! character, a terminator that follows a byte of the record is always a record end (memory
//! speed to find). With quotes, only the parser knows: its state at a byte depends on every byte
//! before it (a quoted field may hold newlines). So each worker finds its own block's bounds:
//!
//! - **Its end** it knows exactly, given its start: it parses its rows from its start with the
//!   parser the single reader runs (the `csv` crate's), and the block ends at the first record
//!   end after the next nominal start. That one parse both finds the end and reads the rows,
//!   so each byte is parsed once (twice only where a record runs past the bytes read ahead:
//!   see [`READ_AHEAD`]).
//! - **Its start** it guesses (the first terminator after its nominal start that follows a
//!   record byte: right unless that start lies in a quoted field) and parses its block from
//!   there, in parallel with the others. Every block's summary carries its start and end; a
//!   block counts only once its start is its predecessor's end, so by induction from the
//!   data's start every block counted was parsed from its true start. A worker whose guess was
//!   wrong learns the true start from its predecessor's summary and parses its block again
//!   (before sending a row of it), so a file of long multi-line quoted fields is read exactly,
//!   if no longer fully in parallel.
//!
//! The same small exchange carries each block's count of line ends (a record's line, in
//! errors, is the line of its block's start plus the line ends before it in the block: see
//! `super::lines`), so no worker scans the whole file, and a bad row's line is filled in
//! when the blocks before it are known.
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
//! Every worker first broadcasts the shape of its plan (blocks, bytes, a digest of the header's
//! place and of a few bytes at each nominal block start): each process reads its own copy of the
//! file, and processes whose copies differ would otherwise wait forever for blocks that only one
//! of them has, or mix two files. (Copies of one length that differ only between the sampled
//! bytes are not told apart.) A block that, when read, is cut short says the file changed while
//! read.
//!
//! Standard input is not a file: it is read by the single reader, as is any input that is not
//! a regular file (a pipe cannot be read again by block).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::{Scope, StreamVec};
use timely::scheduling::Activator;

use super::csv::{
    csv_error, warn_skipped, BadLines, Columns, CsvItem, FeedStats, Layout, Parsed, ReadError,
    REPORTED_BAD_LINES,
};
use super::lines::{is_terminator, LineCount, LineCursor};
use super::{
    feed_source_paced, side_channel, Feed, Outbox, Pacing, Payload, Poll, Position, SourceOptions,
    SourceState, Stamped,
};
use crate::stash::Cut;
use crate::time::Watermark;

/// The size of a nominal block, in bytes: a block ends at the first record end after the next
/// nominal start. Large enough that the per-block exchange is negligible (a summary per some
/// 15 000 rows of the issue-14 file), small enough that the workers stay close in event time
/// and each holds little: a worker holds its block's bytes and parsed rows, a few MB.
pub const BLOCK_BYTES: u64 = 1 << 18;

/// What a block's reader reads past the next nominal start at first, to find the record end
/// that ends its block: a few lines of most files. Where the record that ends the block runs
/// past it, the reader reads on (doubling) and parses its block again. Every byte read ahead
/// is read again by the next block's reader (not parsed again: it is not in this block).
const READ_AHEAD: u64 = 1 << 12;

/// A plan's digest samples the bytes at no more than this many nominal block starts ...
const SAMPLES: u64 = 4096;
/// ... and this many bytes at each.
const SAMPLE_BYTES: usize = 16;

/// The bytes a block's reader reads before the block: the terminator that ends the record
/// before it (the header's, for the first block).
const PREFIX: usize = 1;

/// A file's data cut into nominal blocks, with what every worker needs to read it.
#[derive(Debug)]
pub struct BlockPlan {
    layout: Layout,
    path: PathBuf,
    bad_lines: BadLines,
    max_delay: u64,
    /// Where the data starts (where the parser stands after the header) and ends (the file's
    /// length), in bytes.
    start: u64,
    end: u64,
    /// The line of the byte at `start` (see [`super::lines`]).
    first_line: u64,
    block_bytes: u64,
    blocks: usize,
    /// A digest of the file's place and samples (see [`BlockPlan::shape`]).
    digest: u64,
    stats: Arc<FeedStats>,
}

impl BlockPlan {
    /// Opens the file `path`, reads its header (errors as [`super::csv::CsvFeed::open`]'s),
    /// and cuts the rest into nominal blocks of `block_bytes` (at least 1): see the module docs.
    /// Reads the header and a few bytes per block, not the data.
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
        let first_line = reader.get_mut().count_at(start).line;
        let mut file = reader.into_inner().into_inner();
        let end = file.metadata().map_err(&io_error)?.len().max(start);
        let block_bytes = block_bytes.max(1);
        let blocks = usize::try_from((end - start).div_ceil(block_bytes)).map_err(|_| {
            ReadError::io(&name, "too many blocks to address: raise the block size")
        })?;
        let mut plan = BlockPlan {
            layout,
            path: path.to_path_buf(),
            bad_lines,
            max_delay,
            start,
            end,
            first_line,
            block_bytes,
            blocks,
            digest: 0,
            stats: Arc::default(),
        };
        plan.digest = plan.sample(&mut file).map_err(&io_error)?;
        Ok((plan, header))
    }

    /// The number of blocks (0 for a file with a header only).
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// The line the header is on (1, unless empty lines come first), for errors about it.
    pub fn header_line(&self) -> u64 {
        self.layout.header_line
    }

    /// The counters of the whole file: kept by worker 0 of process 0 (zero in other processes).
    pub fn stats(&self) -> Arc<FeedStats> {
        Arc::clone(&self.stats)
    }

    /// The nominal start of block `block` (the data's end for `blocks()` and beyond).
    fn nominal(&self, block: usize) -> u64 {
        (block as u64)
            .saturating_mul(self.block_bytes)
            .saturating_add(self.start)
            .min(self.end)
    }

    /// A digest of where the data starts and ends, the block size, and the first bytes at
    /// (up to [`SAMPLES`]) nominal block starts: copies of a file that differ in length or at
    /// a sampled byte differ in it.
    fn sample(&self, file: &mut File) -> io::Result<u64> {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: the same digest in every process of the same build
        // (processes of a cluster run the same version, which the cluster checks).
        #[allow(deprecated)]
        let mut hasher = std::hash::SipHasher::new();
        (self.start, self.end, self.first_line, self.block_bytes).hash(&mut hasher);
        let step = (self.blocks as u64).div_ceil(SAMPLES).max(1);
        let mut bytes = [0; SAMPLE_BYTES];
        let mut block = 0;
        while block < self.blocks {
            file.seek(SeekFrom::Start(self.nominal(block)))?;
            let n = fill(file, &mut bytes)?;
            bytes[..n].hash(&mut hasher);
            block = block.saturating_add(usize::try_from(step).unwrap_or(usize::MAX));
        }
        Ok(hasher.finish())
    }

    /// What every process's plan must agree on: the number of blocks, the bytes they span,
    /// and a digest of the file (see [`BlockPlan::sample`]). Each process reads its own copy of
    /// the file (on its own host, perhaps), and a block no process reads would be waited for
    /// forever.
    fn shape(&self) -> Shape {
        Shape {
            blocks: self.blocks as u64,
            bytes: self.end,
            digest: self.digest,
        }
    }
}

/// The shape of a worker's plan (see [`BlockPlan::shape`]), sent before its blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Shape {
    blocks: u64,
    /// The end of the data, in bytes from the start of the file.
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

/// The first record end in `bytes` after index `after` (at least 1), were there no quotes: the
/// index after the first terminator at or after `after` that follows a byte of a record.
/// Without quotes every `\r` and `\n` is a terminator; one after another terminator is an empty
/// line, or the `\n` of `\r\n`, which the parser skips at the start of the next read.
fn plain_end(bytes: &[u8], after: usize) -> Option<usize> {
    (after.max(1)..bytes.len())
        .find(|&i| is_terminator(bytes[i]) && !is_terminator(bytes[i - 1]))
        .map(|i| i + 1)
}

/// Where a block's bytes lie in the file, as one parse of it found them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Span {
    /// The first byte the parse read (after the terminator before it) and the end of its last
    /// record, in bytes from the start of the file.
    start: u64,
    end: u64,
    /// The line ends in `start .. end` (see [`super::lines`]).
    lines: u64,
    /// The line of `start` where the reader knew it without the blocks before: one restored at
    /// a checkpoint's position, which is its start (else it follows from the blocks before).
    line: Option<u64>,
}

/// What a worker learnt from parsing one block, for every worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct BlockInfo {
    block: u64,
    /// Which parse of the block this is (0, then 1 after a wrong guess of its start): a later
    /// parse replaces an earlier one, whichever arrives first.
    attempt: u32,
    /// The bytes parsed; `None` for a block known only from a checkpoint's state, or one that
    /// could not be read.
    span: Option<Span>,
    /// The largest event time among its rows (before its error, if it has one).
    max: Option<u64>,
    /// Rows read into records.
    records: u64,
    /// Rows skipped as bad.
    bad: u64,
    /// The first skipped rows (at most [`REPORTED_BAD_LINES`]), their lines counted from the
    /// block's start (the line before its first: see [`relocate`]).
    warnings: Vec<ReadError>,
    /// The error that stopped the block, its line counted as the warnings'.
    error: Option<ReadError>,
}

/// Moves an error on a line counted from a block's start (0 for its first line) to the line of
/// the file, the block starting on line `first`.
fn relocate(error: &mut ReadError, first: u64) {
    if let ReadError::Input(error) = error {
        error.line = error.line.saturating_add(first);
    }
}

/// A worker's view of every block, shared by its feed and the operators that exchange
/// summaries.
struct Shared {
    /// This worker's plan shape and block summaries, to broadcast (closed once it publishes
    /// no more).
    outbox: Rc<RefCell<Outbox<Summary>>>,
    /// Wakes the feed's source when summaries arrive.
    feed_activator: Option<Activator>,
    /// Summaries received, by block: those not yet known, and the leader's not yet reported
    /// (the others are dropped once known, so that what a worker holds hardly grows with the
    /// file: a few blocks' summaries, and the two numbers below per block).
    infos: BTreeMap<usize, BlockInfo>,
    /// The number of blocks.
    blocks: usize,
    /// Whether known summaries are kept for the leader's report.
    keep: bool,
    /// Blocks `0 .. known` are all received, each parsed from its true start.
    known: usize,
    /// `maxima[i - base]`, for `base <= i <= known`: the largest event time in blocks `0 .. i`.
    /// Those before `base` no reader of this worker asks for any more (see
    /// [`Shared::forget_before`]): kept, two numbers per block of the file on every worker grew
    /// with the file (16 workers, the issue-14 file of 10 M rows: 2.8 MB).
    maxima: VecDeque<Option<u64>>,
    /// `lines[i - base]`, for `base <= i <= known`: the line of block `i`'s start (`None` after
    /// a block known only from a checkpoint's state).
    lines: VecDeque<Option<u64>>,
    base: usize,
    /// Where block `known` truly starts: the end of block `known - 1`, or the data's start
    /// (`None` after a block known only from a checkpoint's state).
    next_start: Option<u64>,
    /// The first block with an error, among blocks `0 .. known`.
    first_error: Option<usize>,
    /// A worker whose plan differs from this one's, and its plan's shape.
    other_plan: Option<(u64, Shape)>,
}

impl Shared {
    fn new(plan: &BlockPlan, keep: bool) -> Self {
        Shared {
            outbox: Rc::default(),
            feed_activator: None,
            infos: BTreeMap::new(),
            blocks: plan.blocks,
            keep,
            known: 0,
            maxima: VecDeque::from([None]),
            lines: VecDeque::from([Some(plan.first_line)]),
            base: 0,
            next_start: Some(plan.start),
            first_error: None,
            other_plan: None,
        }
    }

    fn insert(&mut self, info: BlockInfo) {
        let Some(block) = usize::try_from(info.block)
            .ok()
            .filter(|b| *b >= self.known && *b < self.blocks)
        else {
            return;
        };
        if self
            .infos
            .get(&block)
            .is_some_and(|old| old.attempt > info.attempt)
        {
            return;
        }
        self.infos.insert(block, info);
        while let Some(info) = self.infos.get(&self.known) {
            match info.span {
                Some(span) => {
                    let line = match span.line {
                        Some(line) => Some(line),
                        // Parsed from a wrong start: its reader parses it again.
                        None if self.next_start.is_some_and(|s| s != span.start) => break,
                        None => self.lines[self.known - self.base],
                    };
                    self.lines[self.known - self.base] = line;
                    self.lines.push_back(line.map(|l| l + span.lines));
                    self.next_start = Some(span.end);
                }
                None => {
                    self.lines.push_back(None);
                    self.next_start = None;
                }
            }
            if info.error.is_some() && self.first_error.is_none() {
                self.first_error = Some(self.known);
            }
            let max = self.maxima[self.known - self.base].max(info.max);
            self.maxima.push_back(max);
            if !self.keep {
                self.infos.remove(&self.known);
            }
            self.known += 1;
        }
    }

    /// The largest event time in the blocks before `block` (`None` where they hold none), for
    /// `block` from [`Shared::forget_before`]'s `block` to `known`.
    fn max_before(&self, block: usize) -> Option<u64> {
        self.maxima[block - self.base]
    }

    /// The line of block `block`'s start, where known (see [`Shared::max_before`]).
    fn line(&self, block: usize) -> Option<u64> {
        self.lines.get(block - self.base).copied().flatten()
    }

    /// Drops what is known of the blocks before `block` (all but the last known block's): the
    /// worker asks only about `block` and later blocks from now on.
    fn forget_before(&mut self, block: usize) {
        while self.base < block.min(self.known) {
            self.maxima.pop_front();
            self.lines.pop_front();
            self.base += 1;
        }
    }
}

/// Where a worker parses a block from.
#[derive(Clone, Copy, Debug)]
enum From {
    /// Its guess of the block's start (see the module docs).
    Guess,
    /// This byte, the block's true start.
    At(u64),
    /// A checkpoint's position: a record end in the block, the record after it on `line`; the
    /// block's largest event time before it was `max`.
    Restored {
        byte: u64,
        line: u64,
        max: Option<u64>,
    },
}

/// The good rows of a block: per row its key's bytes (end to end, each row's
/// [`Parsed::key`] being its range here) and where it stood in the block's buffer. A row's
/// other fields are parsed again from the buffer only where its record carries its row (see
/// [`Layout::keeps_row`]: a record behind the watermark, or any with retractions), by
/// [`RowParser`].
///
/// A `csv::ByteRecord` per row (three allocations, some 240 bytes for a 17-byte row of the
/// issue-14 file) made a parsed block weigh about 16 times its bytes, and every reader holds
/// one: 16 workers held 100 MB more than one worker on that file. Every field's bytes and end
/// (some 63 bytes a row of that file) still made the rows half the readers' heap at 16
/// workers; the keys and positions are some 13.
#[derive(Default)]
struct Rows {
    keys: Vec<u8>,
    /// Per row: its byte offset in the buffer (the parser's position at its start).
    at: Vec<u64>,
}

impl Rows {
    fn clear(&mut self) {
        self.keys.clear();
        self.at.clear();
    }

    /// Appends `record`'s key and position; `parsed`, parsed from `record`, then names its
    /// key's range in [`Rows::key`].
    fn push(&mut self, record: &csv::ByteRecord, parsed: &mut Parsed) {
        let from = self.keys.len();
        self.keys
            .extend_from_slice(&record.as_slice()[parsed.key.clone()]);
        parsed.key = from..self.keys.len();
        self.at.push(record.position().map_or(0, |p| p.byte()));
    }

    /// Gives back what a larger block before left (see [`shrink`]).
    fn shrink(&mut self) {
        shrink(&mut self.keys);
        shrink(&mut self.at);
    }

    /// The key's bytes of the row `parsed` was pushed with.
    fn key(&self, parsed: &Parsed) -> &[u8] {
        &self.keys[parsed.key.clone()]
    }

    /// The byte offset in the buffer of row `row`.
    fn at(&self, row: usize) -> u64 {
        self.at[row]
    }

    /// The byte offset in the file of row `row`, these being the rows of the block that starts
    /// at `start`.
    fn byte_of(&self, start: u64, row: usize) -> u64 {
        // Positions count the byte before the block (see `parse`); the first record's is the
        // block's start.
        start + self.at(row).saturating_sub(PREFIX as u64)
    }
}

/// Gives back the capacity of `rows` beyond a quarter more than its length where it holds
/// more than twice its length: a block's buffers are reused for the next, and one block of
/// many short rows (the start of a file whose event times grow longer) left every reader of the
/// issue-14 file twice the capacity it needed for good (16 workers: 1.5 MB of a 21 MB heap
/// peak). Growing by doubling never leaves more than twice the length, so only a smaller block
/// than an earlier one gives back.
fn shrink<T>(rows: &mut Vec<T>) {
    if rows.capacity() > 2 * rows.len() {
        rows.shrink_to(rows.len() + rows.len() / 4);
    }
}

/// Parses one record again, from where it starts in a block's buffer, into its fields: the
/// CSV parser that [`BlockFeed::parse_rows`] runs (the `csv` crate's reader is this parser,
/// configured alike: `,`, `"` doubled inside quotes, `\r`, `\n` or `\r\n` ending a record),
/// from its state at a record's start, so it finds the same fields. Kept across rows: its
/// buffers are reused and nothing is allocated per row.
struct RowParser {
    parser: csv_core::Reader,
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Default for RowParser {
    fn default() -> Self {
        RowParser {
            parser: csv_core::Reader::new(),
            bytes: vec![0; 256],
            ends: vec![0; 16],
        }
    }
}

impl RowParser {
    /// The fields of the record that starts at `input`'s start (the record ends within
    /// `input`, or at its end: the data's end).
    fn fields<'a>(&'a mut self, mut input: &[u8]) -> impl Iterator<Item = &'a [u8]> {
        use csv_core::ReadRecordResult as Read;
        self.parser.reset();
        // A reset parser drops a byte order mark at the start of the input it reads first; the
        // block's reader, which starts at the terminator before the block, never does, and
        // keeps it in a row's first field (where it also makes a `"` after it no quote). An
        // empty line first, which the parser skips, so it drops none.
        let (primed, ..) = self
            .parser
            .read_record(b"\n", &mut self.bytes, &mut self.ends);
        debug_assert_eq!(primed, Read::InputEmpty);
        let (mut bytes, mut ends) = (0, 0);
        loop {
            let (result, read, wrote, ended) =
                self.parser
                    .read_record(input, &mut self.bytes[bytes..], &mut self.ends[ends..]);
            input = &input[read..];
            bytes += wrote;
            ends += ended;
            match result {
                // An empty input is the end of the data, which ends the record.
                Read::InputEmpty => {}
                Read::OutputFull => self.bytes.resize(2 * self.bytes.len(), 0),
                Read::OutputEndsFull => self.ends.resize(2 * self.ends.len(), 0),
                Read::Record | Read::End => break,
            }
        }
        let (bytes, ends) = (&self.bytes[..bytes], &self.ends[..ends]);
        let starts = std::iter::once(0).chain(ends.iter().copied());
        starts.zip(ends).map(move |(from, &to)| &bytes[from..to])
    }
}

/// The block a worker is sending.
struct Current {
    block: usize,
    attempt: u32,
    /// The bytes parsed (`None` when they could not be read).
    span: Option<Span>,
    /// The line of the block's start, once known.
    line: Option<u64>,
    /// Rows of `parsed` sent so far.
    sent: usize,
    /// Whether the watermark has taken the earlier blocks' maximum into account.
    caught_up: bool,
    /// The error that stopped the block after its rows.
    error: Option<ReadError>,
    /// Parsed again after a restore for its summary only (see [`BlockFeed::quiet`]): its rows
    /// went out before the checkpoint's cut.
    quiet: bool,
}

/// One worker's share of a [`BlockPlan`] as a [`Feed`]: blocks `index, index + peers, ...`.
pub struct BlockFeed {
    plan: Arc<BlockPlan>,
    file: File,
    /// Worker 0 of process 0: counts rows, reports skipped rows and the first error.
    leader: bool,
    /// This worker's global index: it reads blocks `index, index + peers, ...`.
    index: usize,
    peers: usize,
    /// The next block to parse.
    next: usize,
    /// The block's bytes, after the byte before them (see `parse`), and the offset in the
    /// file of `buffer[0]`.
    buffer: Vec<u8>,
    buffer_at: u64,
    /// The record being parsed, the block's good rows (see [`Rows`]) with what was parsed of
    /// each (`parsed[i]` is row `i` of `rows`: the two grow together), and the parser of the
    /// rows that records carry.
    record: csv::ByteRecord,
    rows: Rows,
    parsed: Vec<Parsed>,
    again: RowParser,
    current: Option<Current>,
    watermark: Watermark,
    shared: Rc<RefCell<Shared>>,
    /// Stopped for good: an earlier block failed, or this one did.
    stopped: bool,
    /// Leader: blocks counted and reported so far, and bad lines among them.
    reported: usize,
    skipped: u64,
    /// Restored from a checkpoint: where to parse block `next` from.
    resume: Option<From>,
    /// Restored from a checkpoint: blocks this worker parsed before the cut that lie after the
    /// earliest block any worker resumes in, oldest first. Their rows were all sent, but the
    /// blocks after them need their ends and line counts (the start of the next block, and its
    /// first line), which the states do not hold: without them a later block's guessed start
    /// went unchecked (read inside a quoted field, it gave rows that are no rows) and its
    /// lines unknown. This worker parses them again first, checked against the blocks before
    /// as any block is, and publishes their summaries without sending or counting a row.
    quiet: VecDeque<usize>,
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
        first_resumed: u64,
    ) -> Result<Self, ReadError> {
        let file = File::open(&plan.path).map_err(|e| ReadError::io(&plan.layout.name, e))?;
        let quiet = restored
            .map(|state| {
                let mut quiet: Vec<usize> = state
                    .blocks
                    .iter()
                    .map(|(b, _)| *b)
                    .filter(|b| *b > first_resumed && *b != state.position.block)
                    .filter_map(|b| usize::try_from(b).ok())
                    .collect();
                quiet.sort_unstable();
                quiet.into()
            })
            .unwrap_or_default();
        let (next, watermark, resume, maxima) = match restored {
            // The block the cut fell in is parsed again from the position on; the watermark
            // there already accounts for the earlier blocks.
            Some(state) => {
                let block = state.position.block;
                let max = state.blocks.iter().find(|(b, _)| *b == block);
                let resume = From::Restored {
                    byte: state.position.byte,
                    line: state.position.line,
                    max: max.and_then(|(_, max)| *max),
                };
                (
                    usize::try_from(block).unwrap_or(usize::MAX),
                    state.watermark.clone(),
                    Some(resume),
                    state.blocks.clone(),
                )
            }
            None => (index, Watermark::new(plan.max_delay), None, Vec::new()),
        };
        Ok(BlockFeed {
            file,
            leader: index == 0,
            index,
            peers: peers.max(1),
            next,
            buffer: Vec::new(),
            buffer_at: 0,
            record: csv::ByteRecord::new(),
            rows: Rows::default(),
            parsed: Vec::new(),
            again: RowParser::default(),
            current: None,
            watermark,
            shared,
            stopped: false,
            reported: 0,
            skipped: 0,
            resume,
            quiet,
            maxima,
            plan,
        })
    }

    /// Where this reader stands: the next record it sends (see [`Position`]). Known where the
    /// blocks before are: within a block caught up with them, or past the last block once all
    /// are known.
    pub fn position(&self) -> Position {
        let Some(current) = &self.current else {
            let block = self.next.min(self.plan.blocks);
            let line = self.shared.borrow().line(block);
            return Position {
                block: block as u64,
                byte: self.plan.end,
                line: line.unwrap_or(0),
            };
        };
        let first = current.line.unwrap_or(0);
        let Some(span) = current.span else {
            return Position {
                block: current.block as u64,
                byte: 0,
                line: first,
            };
        };
        let record = current.sent;
        let (byte, line) = if record < self.parsed.len() {
            let at = usize::try_from(self.rows.at(record)).unwrap_or(usize::MAX);
            let line = first + self.lines().record_line(&self.buffer, at);
            (self.rows.byte_of(span.start, record), line)
        } else {
            (span.end, first + span.lines)
        };
        Position {
            block: current.block as u64,
            byte,
            line,
        }
    }

    /// A line count at the start of the block in `buffer` (after the byte before it), from 0.
    fn lines(&self) -> LineCursor {
        let before = self.buffer.first().copied().unwrap_or(b'\n');
        LineCursor::new(LineCount::after(0, before), PREFIX)
    }

    /// The error of a block whose bytes changed while the file was read: they `what`.
    fn changed(&self, block: usize, what: &str) -> ReadError {
        ReadError::Io {
            file: self.plan.layout.name.clone(),
            message: format!(
                "the bytes of block {block} (from byte {}) {what} since the file was opened: \
                 it changed while read",
                self.plan.nominal(block)
            ),
        }
    }

    /// Reads on until `buffer` holds the file's bytes `buffer_at .. upto` (or up to the data's
    /// end); returns whether it holds them up to the data's end.
    fn more(&mut self, block: usize, upto: u64) -> Result<bool, ReadError> {
        let want = usize::try_from(upto.min(self.plan.end).saturating_sub(self.buffer_at))
            .unwrap_or(usize::MAX);
        let have = self.buffer.len();
        if want > have {
            self.buffer.resize(want, 0);
            if let Err(e) = self.file.read_exact(&mut self.buffer[have..]) {
                return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                    self.changed(block, "are gone")
                } else {
                    ReadError::io(&self.plan.layout.name, e)
                });
            }
        }
        Ok(self.buffer_at + self.buffer.len() as u64 >= self.plan.end)
    }

    /// Reads block `block` from `from` into `buffer`, the byte before it first, and finds its
    /// start (guessed, unless given). The buffer then holds the bytes up to [`READ_AHEAD`]
    /// past the next block's nominal start, where the parse that finds the block's end most
    /// often finds it (see `parse`). Returns the block's start in the file, and whether the
    /// buffer holds the data up to its end.
    fn read(&mut self, block: usize, from: From) -> Result<(u64, bool), ReadError> {
        let first = match from {
            From::Guess => self.plan.nominal(block),
            From::At(byte) | From::Restored { byte, .. } => byte,
        }
        .saturating_sub(PREFIX as u64);
        self.buffer.clear();
        self.buffer_at = first;
        self.file
            .seek(SeekFrom::Start(first))
            .map_err(|e| ReadError::io(&self.plan.layout.name, e))?;
        let mut upto = self.plan.nominal(block + 1).saturating_add(READ_AHEAD);
        let mut whole = self.more(block, upto)?;
        let start = match from {
            From::Guess => loop {
                if let Some(end) = plain_end(&self.buffer, PREFIX) {
                    break first + end as u64;
                }
                if whole {
                    break self.plan.end;
                }
                upto = upto.saturating_add(self.buffer.len() as u64);
                whole = self.more(block, upto)?;
            },
            From::At(byte) | From::Restored { byte, .. } => byte,
        };
        // The buffer: the byte before the block, then the block and what follows.
        let before = usize::try_from(start - PREFIX as u64 - first).unwrap_or(0);
        self.buffer.drain(..before.min(self.buffer.len()));
        self.buffer_at += before as u64;
        Ok((start, whole))
    }

    /// Reads and parses block `block` from `from` into `rows` and `parsed`; returns its
    /// summary. Lines in its errors count from the block's start (see [`relocate`]).
    ///
    /// One parse finds the block's end and reads its rows: the CSV parser the single reader
    /// runs reads records from the block's start until one ends after the next block's nominal
    /// start. Only where the buffer ends before that record's end (a record longer than
    /// [`READ_AHEAD`] there) does it read on and parse the block again.
    fn parse(&mut self, block: usize, from: From, attempt: u32) -> BlockInfo {
        let fresh = || BlockInfo {
            block: block as u64,
            attempt,
            span: None,
            max: None,
            records: 0,
            bad: 0,
            warnings: Vec::new(),
            error: None,
        };
        let mut info = fresh();
        self.parsed.clear();
        let (start, mut whole) = match self.read(block, from) {
            Ok(read) => read,
            Err(e) => {
                info.error = Some(e);
                return info;
            }
        };
        let limit = self.plan.nominal(block + 1);
        let end = if start > limit || start >= self.plan.end {
            // A record longer than a block: this block is empty.
            start
        } else if !self.buffer.first().copied().is_some_and(is_terminator) {
            info.error = Some(self.changed(block, "no longer follow a record end"));
            return info;
        } else {
            loop {
                if let Some(end) = self.parse_rows(limit, whole, &mut info) {
                    break self.buffer_at + end as u64;
                }
                // The buffer ends inside the last record: read on, parse again.
                info = fresh();
                self.parsed.clear();
                let upto = self.buffer_at + 2 * self.buffer.len() as u64;
                match self.more(block, upto) {
                    Ok(all) => whole = all,
                    Err(e) => {
                        info.error = Some(e);
                        return info;
                    }
                }
            }
        };
        self.buffer
            .truncate(usize::try_from(end - self.buffer_at).unwrap_or(usize::MAX));
        let mut count = LineCount::after(0, self.buffer.first().copied().unwrap_or(b'\n'));
        count.advance(self.buffer.get(PREFIX..).unwrap_or_default());
        let line = match from {
            // The restored record's line less the line ends before it (empty lines, the `\n`
            // of a `\r\n`): the line of the position.
            From::Restored { line, max, .. } => {
                info.max = info.max.max(max);
                Some(line.saturating_sub(self.lines().record_line(&self.buffer, PREFIX)))
            }
            From::Guess | From::At(_) => None,
        };
        info.span = Some(Span {
            start,
            end,
            lines: count.line,
            line,
        });
        shrink(&mut self.parsed);
        self.rows.shrink();
        info
    }

    /// Parses the records in `buffer` (after the byte before the block) into `rows` and
    /// `parsed`, up to and with the first that ends after `limit` (a byte of the file), or up
    /// to the data's end where the buffer holds it (`whole`); returns where that record ends in
    /// the buffer. `None` when the buffer ends before such a record is known to end (a record
    /// that reaches the buffer's end may go on). Rows after an error are not parsed, but
    /// records are read on to the block's end.
    fn parse_rows(&mut self, limit: u64, whole: bool, info: &mut BlockInfo) -> Option<usize> {
        let layout = &self.plan.layout;
        // The block's bytes after the terminator before them: an empty line to the parser,
        // which so keeps a byte order mark at the block's start, and the line count's cue
        // whether a `\n` first is the end of a `\r\n`.
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&self.buffer[..]);
        // Lines are counted only for the records that report one, in order: one pass at most.
        let mut lines = self.lines();
        self.rows.clear();
        let record = &mut self.record;
        loop {
            match reader.read_byte_record(record) {
                Ok(true) => {}
                Ok(false) => return whole.then_some(self.buffer.len()),
                Err(e) => {
                    // Reading bytes from memory fails only on what the single reader fails
                    // on too.
                    let at = e.position().map_or(0, |p| p.byte());
                    let at = usize::try_from(at).unwrap_or(usize::MAX);
                    if info.error.is_none() {
                        let line = lines.record_line(&self.buffer, at);
                        info.error = Some(csv_error(&layout.name, e, line));
                    }
                    continue;
                }
            }
            // Where the parser stands after the record: after its terminator, or at the end of
            // the buffer, where the record may go on in the file.
            let after = usize::try_from(reader.position().byte()).unwrap_or(usize::MAX);
            if after >= self.buffer.len() && !whole {
                return None;
            }
            if info.error.is_none() {
                let located = |bad| {
                    let at = record.position().map_or(0, |p| p.byte());
                    let at = usize::try_from(at).unwrap_or(usize::MAX);
                    layout.error(lines.record_line(&self.buffer, at), bad)
                };
                match layout.parse(record).map_err(located) {
                    Ok(mut parsed) => {
                        info.max = info.max.max(Some(parsed.ts));
                        info.records += 1;
                        self.rows.push(record, &mut parsed);
                        self.parsed.push(parsed);
                    }
                    Err(e) if self.plan.bad_lines == BadLines::Skip => {
                        info.bad += 1;
                        if info.warnings.len() < REPORTED_BAD_LINES as usize {
                            info.warnings.push(e.into());
                        }
                    }
                    Err(e) => info.error = Some(e.into()),
                }
            }
            if self.buffer_at + after as u64 > limit {
                return Some(after);
            }
        }
    }

    /// Parses block `block` from `from` (the `attempt`-th time), makes it the current block and
    /// publishes its summary.
    fn start(&mut self, block: usize, from: From, attempt: u32) {
        let mut info = self.parse(block, from, attempt);
        self.maxima.retain(|(b, _)| *b != block as u64);
        self.maxima.push((block as u64, info.max));
        let span = info.span;
        let restored = matches!(from, From::Restored { .. });
        // A block before this worker's resumed one is parsed again for its summary only: its
        // rows were counted and reported in the run that sent them.
        let quiet = !restored && block < self.next;
        if quiet {
            info.records = 0;
            info.bad = 0;
            info.warnings = Vec::new();
        }
        self.current = Some(Current {
            block,
            attempt,
            span,
            // Restored: the watermark there has caught up with the earlier blocks, and the
            // position says the line.
            line: span.and_then(|s| s.line),
            sent: 0,
            caught_up: restored,
            error: info.error.clone(),
            quiet,
        });
        self.publish(Some(info));
    }

    /// Leader: counts, warns about and fails on the blocks known so far, in block order.
    fn report(&mut self) -> Result<(), ReadError> {
        let mut shared = self.shared.borrow_mut();
        let shared = &mut *shared;
        while self.reported < shared.known {
            let Some(mut info) = shared.infos.remove(&self.reported) else {
                break;
            };
            let first = shared.line(self.reported).unwrap_or(0);
            let stats = &self.plan.stats;
            stats.records.fetch_add(info.records, Ordering::Relaxed);
            stats.bad_lines.fetch_add(info.bad, Ordering::Relaxed);
            let before = self.skipped;
            // The first bad lines of the file one by one, then once that there are more.
            for (i, mut warning) in info.warnings.drain(..).enumerate() {
                let skipped = before + i as u64 + 1;
                if skipped <= REPORTED_BAD_LINES {
                    relocate(&mut warning, first);
                    warn_skipped(skipped, &warning.to_string());
                }
            }
            self.skipped += info.bad;
            if before <= REPORTED_BAD_LINES && self.skipped > REPORTED_BAD_LINES {
                warn_skipped(REPORTED_BAD_LINES + 1, "");
            }
            if let Some(mut error) = info.error.take() {
                relocate(&mut error, first);
                return Err(error);
            }
            self.reported += 1;
        }
        Ok(())
    }

    fn publish(&mut self, info: Option<BlockInfo>) {
        let shared = self.shared.borrow();
        let mut outbox = shared.outbox.borrow_mut();
        match info {
            Some(info) => outbox.push(Summary::Block(info)),
            None => outbox.close(),
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
            None => self.next >= self.plan.blocks && self.shared.borrow().known == self.plan.blocks,
        };
        (settled && !self.stopped).then(|| SourceState {
            position: self.position(),
            watermark: self.watermark.clone(),
            done,
            blocks: self.maxima.clone(),
            partitions: Vec::new(),
        })
    }

    fn watermark(&mut self) -> &mut Watermark {
        &mut self.watermark
    }

    /// Whether the first block the readers do not know is this worker's: every reader of a
    /// later block waits for its summary, which this worker publishes once it has sent the
    /// rows of the block before (or parsed this one again from its true start).
    fn awaited(&self) -> bool {
        let known = self.shared.borrow().known;
        !self.stopped && known < self.plan.blocks && known % self.peers == self.index
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
                    "worker {worker} found {} blocks over {} bytes in its copy, this process \
                     {} blocks over {} bytes{}: every process must read the same file, \
                     unchanged while it is read",
                    shape.blocks,
                    shape.bytes,
                    here.blocks,
                    here.bytes,
                    if (shape.blocks, shape.bytes) == (here.blocks, here.bytes) {
                        " (with other bytes)"
                    } else {
                        ""
                    }
                ),
            });
        }
        if self.leader {
            self.report()?;
        }
        // The earliest block this worker asks about from now on: its current one, the blocks it
        // parses again (oldest first, all before `next`) or reads, and the leader's next to
        // report.
        let floor = [
            self.current.as_ref().map(|c| c.block),
            self.quiet.front().copied(),
            Some(self.next),
            self.leader.then_some(self.reported),
        ];
        if let Some(floor) = floor.into_iter().flatten().min() {
            self.shared.borrow_mut().forget_before(floor);
        }
        if self.stopped {
            // Held for good: the leader reports the error that stopped the input.
            return Ok(Poll::Pending);
        }
        if self.current.is_none() {
            if let Some(block) = self.quiet.pop_front() {
                self.start(block, From::Guess, 0);
            }
        }
        if self.current.is_none() {
            if self.next >= self.plan.blocks {
                if !self.shared.borrow().outbox.borrow().is_closed() {
                    self.publish(None);
                }
                // Done once every block is known (so that the position past the last block
                // has its line), and the leader has counted every block (and met no error).
                let counted = if self.leader {
                    self.reported == self.plan.blocks
                } else {
                    self.shared.borrow().known == self.plan.blocks
                };
                return Ok(if counted { Poll::Done } else { Poll::Pending });
            }
            let block = self.next;
            let from = match self.resume.take() {
                Some(from) => from,
                None if block == 0 => From::At(self.plan.start),
                None => From::Guess,
            };
            self.start(block, from, 0);
        }
        let Some(current) = self.current.as_ref() else {
            return Ok(Poll::Pending);
        };
        // The true start of this block, where its guess was wrong.
        let again = {
            let shared = self.shared.borrow();
            if shared.known < current.block {
                // Waiting for an earlier block's maximum (and end).
                return Ok(Poll::Pending);
            }
            if shared.first_error.is_some_and(|e| e < current.block) {
                self.stopped = true;
                return Ok(Poll::Pending);
            }
            let guessed = current.span.filter(|s| s.line.is_none()).map(|s| s.start);
            match (shared.next_start, guessed) {
                (Some(start), Some(guessed)) if shared.known == current.block => {
                    (start != guessed).then_some((start, current.attempt + 1))
                }
                _ => None,
            }
        };
        if let Some((start, attempt)) = again {
            // Parsed again before a row of it is sent: its predecessor's end is its start.
            let block = current.block;
            self.start(block, From::At(start), attempt);
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(Poll::Pending);
        };
        if current.quiet {
            // Its start is checked (a wrong guess was parsed again above): nothing to send,
            // and the watermark stays the restored one. Never caught up, so no cut's state is
            // taken at it.
            if current.error.is_some() {
                self.stopped = true;
            } else {
                self.current = None;
            }
            return Ok(Poll::Ready);
        }
        if !current.caught_up {
            let shared = self.shared.borrow();
            // The watermark of the single reader at this block's first record.
            if let Some(max) = shared.max_before(current.block) {
                self.watermark.stamp(max);
            }
            current.line = shared.line(current.block);
            current.caught_up = true;
        }
        let upto = (current.sent + max.max(1)).min(self.parsed.len());
        let start = current.span.map_or(0, |span| span.start);
        for (record, parsed) in self.parsed[..upto].iter().enumerate().skip(current.sent) {
            if bound.is_some_and(|b| self.watermark.current() > b) {
                // The checkpoint cut falls before this record.
                return Ok(Poll::Ready);
            }
            let time = self.watermark.stamp(parsed.ts);
            let layout = &self.plan.layout;
            let row = layout.keeps_row(parsed, time).then(|| {
                let at = usize::try_from(self.rows.at(record)).unwrap_or(usize::MAX);
                layout.row(self.again.fields(&self.buffer[at..]))
            });
            let pos = self.rows.byte_of(start, record);
            out.push(layout.stamped(self.rows.key(parsed), row, parsed, time, pos));
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
/// Each record is sent as a `P` (see [`Payload`]): a [`CsvItem`] at the time [`Pacing::send_at`]
/// chooses, as [`super::feed_source_paced`] sends it, or a [`Stamped`] one at the capability,
/// as [`super::feed_source_paced`] also can (for differential input).
///
/// Checkpoint cuts as for [`super::feed_source_paced`] (none with [`Cut::none`]); with
/// `restored` (every worker's [`SourceState`] at the checkpoint resumed from, by global worker
/// index, from a run with as many workers), resuming there: each worker parses again the block
/// its position is in and sends its records from the position on, with the restored
/// watermark; the maxima of the blocks no worker reads again come from the states.
pub fn block_source<'scope, P: Payload<CsvItem>>(
    scope: Scope<'scope, u64>,
    plan: &Arc<BlockPlan>,
    options: SourceOptions,
    pacing: Pacing,
    error: Rc<RefCell<Option<ReadError>>>,
    cut: Cut<Option<SourceState>>,
    restored: Option<&[Option<SourceState>]>,
) -> StreamVec<'scope, u64, P> {
    let leader = scope.index() == 0;
    let shared = Rc::new(RefCell::new(Shared::new(plan, leader)));
    // The earliest block a worker resumes in: the blocks after it that workers parsed before
    // the cut are parsed again by them for their summaries (see `BlockFeed::quiet`).
    let first_resumed = restored
        .and_then(|states| states.iter().flatten().map(|s| s.position.block).min())
        .unwrap_or(0);
    if let Some(states) = restored {
        // Blocks that some worker parses again publish their summaries again; the others,
        // those before the earliest block resumed in, are known from the states (rows counted
        // once, in the run that read them): the block resumed in starts at a known byte and
        // line, which the blocks after it follow from.
        let again: Vec<u64> = states.iter().flatten().map(|s| s.position.block).collect();
        let mut shared = shared.borrow_mut();
        for (block, max) in states.iter().flatten().flat_map(|s| s.blocks.iter()) {
            if !again.contains(block) && *block < first_resumed {
                shared.insert(BlockInfo {
                    block: *block,
                    attempt: 0,
                    span: None,
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
    // Every worker first tells the others the shape of its plan: processes that cut different
    // files fail at once, instead of waiting for blocks that no worker reads.
    let own_shape = plan.shape();
    let outbox = Rc::clone(&shared.borrow().outbox);
    outbox.borrow_mut().push(Summary::Plan {
        worker: scope.index() as u64,
        shape: own_shape,
    });
    side_channel(scope, "BlockSummaries", outbox, {
        let shared = Rc::clone(&shared);
        move |data| {
            let mut shared = shared.borrow_mut();
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
        first_resumed,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random sequence (xorshift) from `state`, not 0.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// A plan over a file whose data is `blocks` bytes, in blocks of one byte (only the plan's
    /// shape is used: no row is read).
    fn plan(blocks: usize) -> BlockPlan {
        let path = std::env::temp_dir().join(format!(
            "tidemark-blocks-{}-{blocks}.csv",
            std::process::id()
        ));
        std::fs::write(&path, format!("ts,key\n{}", "x".repeat(blocks))).unwrap();
        let columns = Columns {
            time: "ts".into(),
            key: "key".into(),
            value: None,
            diff: "diff".into(),
            retractions: false,
        };
        let (plan, _) = BlockPlan::open(&path, columns, BadLines::Fail, 0, 1).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(plan.blocks, blocks);
        plan
    }

    /// Summaries arriving in any order give every block's prefix maximum and first line as a
    /// brute-force prefix over the blocks does, for every block from the forgetting floor on;
    /// and what a worker keeps is the blocks from that floor to the last known, however many
    /// blocks the file has (it grew by two numbers a block, on every worker).
    #[test]
    fn prefix_maxima_and_lines_match_a_prefix_and_only_unforgotten_blocks_are_kept() {
        let blocks = 300;
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..20 {
            let plan = plan(blocks);
            // Per block: its largest event time (none in some) and its line ends.
            let maxima: Vec<Option<u64>> = (0..blocks)
                .map(|_| (!next().is_multiple_of(4)).then(|| next() % 1000))
                .collect();
            let lines: Vec<u64> = (0..blocks).map(|_| next() % 5).collect();
            let mut order: Vec<usize> = (0..blocks).collect();
            // Each summary arrives up to 8 places away from its block's place.
            for i in 0..blocks {
                let j = (i + (next() % 8) as usize).min(blocks - 1);
                order.swap(i, j);
            }
            let mut shared = Shared::new(&plan, false);
            let mut floor = 0;
            for block in order {
                let start = plan.start + block as u64;
                shared.insert(BlockInfo {
                    block: block as u64,
                    attempt: 0,
                    span: Some(Span {
                        start,
                        end: start + 1,
                        lines: lines[block],
                        line: None,
                    }),
                    max: maxima[block],
                    records: 0,
                    bad: 0,
                    warnings: Vec::new(),
                    error: None,
                });
                if next().is_multiple_of(3) {
                    floor = (floor + (next() % 4) as usize).min(shared.known);
                    shared.forget_before(floor);
                }
                for b in floor..=shared.known {
                    let max = maxima[..b].iter().copied().max().flatten();
                    assert_eq!(shared.max_before(b), max, "block {b}");
                    let line = plan.first_line + lines[..b].iter().sum::<u64>();
                    assert_eq!(shared.line(b), Some(line), "block {b}");
                }
                assert_eq!(shared.maxima.len(), shared.known + 1 - shared.base);
                assert_eq!(shared.lines.len(), shared.maxima.len());
                assert!(shared.base <= floor.min(shared.known));
                assert!(shared.maxima.len() <= shared.known + 1 - floor);
            }
            assert_eq!(shared.known, blocks);
        }
    }

    /// [`RowParser`], one kept across rows as a reader keeps it, gives every record the fields
    /// that the `csv` crate's reader (configured as [`BlockFeed::parse_rows`] configures it)
    /// gave, parsing from the record's position to the buffer's end: on random bytes of
    /// quotes, doubled quotes, commas, `\r`, `\n`, empty lines, byte order marks (kept by the
    /// reader but at its input's start, which is a terminator), long fields and many fields
    /// (past its first buffers), with or without a last terminator.
    #[test]
    fn rows_parsed_again_have_the_fields_the_reader_gave() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let pieces: [&[u8]; 11] = [
            b"a",
            b"bc",
            b",",
            b"\"",
            b"\"\"",
            b"\r",
            b"\n",
            b"\r\n",
            b"\xef\xbb\xbf",
            b" ",
            b"x",
        ];
        let mut again = RowParser::default();
        let mut records = 0;
        for round in 0..2000 {
            // As a block's buffer, the terminator before the rows first.
            let mut buffer = vec![[b'\n', b'\r'][(next() % 2) as usize]];
            let len = next() % 60;
            for _ in 0..len {
                let piece = pieces[(next() % pieces.len() as u64) as usize];
                // Now and then a long run of it: fields past 256 bytes, rows past 16 fields.
                let times = if next().is_multiple_of(16) { 40 } else { 1 };
                for _ in 0..times {
                    buffer.extend_from_slice(piece);
                }
            }
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(&buffer[..]);
            let mut record = csv::ByteRecord::new();
            while reader.read_byte_record(&mut record).unwrap() {
                let at = record.position().unwrap().byte() as usize;
                let fields: Vec<&[u8]> = again.fields(&buffer[at..]).collect();
                let want: Vec<&[u8]> = record.iter().collect();
                assert_eq!(fields, want, "round {round}, record at {at} of {buffer:?}");
                records += 1;
            }
        }
        // Most rounds have records, so the comparison cannot pass on nothing.
        assert!(records > 2000, "{records} records");
    }
}
