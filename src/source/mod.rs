//! Sources: where records enter a dataflow, stamped with their watermark times.
//!
//! This module owns the source operator: it pulls batches from a [`Feed`], sends each record at
//! a time given by the stamp the feed gave it, holds its capability at the feed's watermark, and
//! drops it when the feed is exhausted, so the frontier empties and every window closes. A feed
//! *error* is not an end of input: the source stops reading but keeps its capability, so no
//! window closes because of it (nothing is emitted as final that is not); the caller sees the
//! error and stops the run. A feed that has nothing to offer (a live source) is polled again
//! shortly, and after the idle timeout its watermark advances with processing time. A feed read
//! by one reader runs on one worker: the watermark is defined by the order of the input. A file
//! can also be read by every worker at once, each stamping its records exactly as the single
//! reader would: see [`blocks`].
//!
//! # Which time a record is sent at
//!
//! A feed stamps each record (see [`crate::time`]): a record *on time* (event time `ts` at or
//! above the watermark `W` of the records before it) is stamped `ts`; a record *behind* the
//! watermark is stamped `W`. Every stamp of a batch is at or above the watermark `W0` before
//! the batch (the watermark never decreases, and an on-time `ts` is at or above it), and the
//! source holds its capability at `W0` while it sends the batch. [`SendAt::Stamp`] sends every
//! record at its stamp. That costs a message, and a progress update on every worker, per
//! distinct event time: with event times rising a millisecond a row, about one per record.
//!
//! [`SendAt::Watermark`] sends every on-time record of a batch at the source's capability, the
//! watermark `W0` before the batch, and only records behind the watermark at their stamp. For
//! the keyed window operators of [`crate::window`] (the `--emit final` path) this is exact, not
//! an approximation:
//!
//! * the frontier they see is the same: the source holds its capability at `W0` either way, and
//!   every record is sent at or above it, so no frontier passes anything earlier or later;
//! * an on-time record goes to windows by its own event time `ts >= W0`, and such a window ends
//!   after `ts`, so at `W0` as at `ts` it cannot have closed: the operator applies the record at
//!   once in both cases, and order among on-time records does not matter (aggregates and session
//!   merges are commutative; only records behind the watermark, which keep their stamp, are
//!   applied in time order, see `window/driver.rs`);
//! * whether a record behind the watermark counts, is a correction or is late depends on its
//!   stamp `W`, which is kept, and so do the times of every output (window closes at `end - 1`,
//!   corrections at `W`).
//!
//! So results, and the changelog's rows and times, are identical to [`SendAt::Stamp`], while
//! each batch is one message per worker. The frontier advances once per batch (the capability
//! is downgraded to the watermark after each), whatever the number of distinct event times in
//! it. Where the data is in order already (no record behind the watermark), a batch needs no
//! sorting; [`SendAt::Stamp`] sorts a batch only when its stamps are out of order.
//!
//! # Stamps in the data: `--emit updates`
//!
//! The differential view of `--emit updates` cannot take a record at a time other than its
//! stamp: its changelog holds each window's value at every epoch, and the epochs are the
//! stamps (merging two stamps' epochs would drop a key's value in between: a retraction and
//! an insertion fewer). It need not: a differential update `(data, time, diff)` may travel
//! under a capability for any time at or before its own, and every differential operator
//! (arrange, reduce, ...) computes at the update's own time, not the message's. So a source of
//! [`Stamped`] records ([`feed_source_paced`], [`blocks::block_source`] with a [`Stamped`]
//! payload) sends each batch as one message at its capability `W0`, every record carrying its
//! stamp, which the caller makes the update's time. This is exact:
//!
//! * every update is legal and has the time it had: its stamp, at or above `W0`;
//! * the frontier is the same as with [`SendAt::Stamp`]: the capability stands at `W0` while
//!   the batch is sent and moves to the watermark after it, and no record goes below it;
//! * a differential collection is its updates as a function of time, whatever messages carry
//!   them; its operators' outputs, and their times, follow from that function and from the
//!   frontier alone (a reduce computes each time once, when the frontier passes it);
//! * order among a batch's records with equal stamps is their order in the input, as in
//!   [`SendAt::Stamp`] (whose sort is stable), for what numbers updates in arrival order (the
//!   session view, where one worker reads; records read by several carry their positions).
//!
//! So the view's changelog has the same rows at the same times, while a batch costs one
//! message and one progress round instead of one per distinct stamp. What leaves the view
//! is re-timed to each update's own time ([`crate::incremental::retime`], keeping their
//! order), so sinks and checkpoint cuts see every row at its time, as before.
//!
//! # Bounded memory
//!
//! Timely's channels do not push back: a source that reads faster than the workers downstream
//! consume fills the exchange queues without limit (with 2 workers, the reading worker ran far
//! ahead of the other). With [`Pacing::ahead`] `= (probe, n)`, the source remembers the latest
//! time each batch was sent at and reads no further while `n` batches whose times its
//! capability has already passed are not yet passed by the probe (placed where records have
//! been consumed). Memory in flight is then about `n` batches, whatever the file size and
//! worker count. A probe can only tell times apart, so batches sent at one time count once, and
//! records that share one time (in [`SendAt::Watermark`], one watermark: a long stretch of
//! input that does not advance it) are not held back among themselves; a batch counts only once
//! the capability has passed its time, so the source never waits for a time it still holds.
//!
//! Pacing is exact whatever the sending times: it decides only *when* the source reads on,
//! never the time a record is sent at, and every record is still sent at a time at or above
//! the capability. A batch of [`Stamped`] records counts at its largest stamp, the time its
//! results come out at, as with [`SendAt::Stamp`]. With [`SendAt::Stamp`] a batch is one
//! message per distinct stamp, each in a buffer of its own, so a batch weighs far more there.

pub mod blocks;
pub mod csv;
pub mod kafka;
mod key;
mod lines;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Operator;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};
use timely::scheduling::Activator;
use timely::ExchangeData;

use crate::stash::Cut;
use crate::time::Watermark;

/// What a poll of a [`Feed`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// Records were appended (possibly none, if all were skipped).
    Ready,
    /// Nothing available right now; poll again later.
    Pending,
    /// The input is exhausted.
    Done,
}

/// Where a reader stands in its input: the one value a checkpoint stores to resume it.
///
/// A file read in parallel is cut into blocks (see [`blocks`]); a reader resumes at record
/// `byte` of block `block`, which is on line `line` of the file. A single reader reads one
/// block, `0`, the whole input after the header. `byte` is an offset from the start of the
/// file; `line` is the 1-based physical line that record starts on (what errors name: see
/// the `lines` module; `\n`, `\r\n` and a bare `\r` each end a line). Between blocks, `byte`
/// is the next block's start and `line` the line of that byte (its first record's line, unless
/// empty lines come first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The index of the block being read (the reader's next block when between blocks).
    pub block: u64,
    /// The byte offset, in the file, of the next record to read.
    pub byte: u64,
    /// The line that record starts on (as errors name it).
    pub line: u64,
}

/// A reader's state at a checkpoint cut: what a restored reader needs to send exactly the
/// records an uninterrupted one would send after the cut, at the same stamps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// The next record to read (the first one not sent at or before the cut).
    pub position: Position,
    /// The watermark before that record: the largest event time read so far less the delay,
    /// with any idle advances (see [`Watermark`]).
    pub watermark: Watermark,
    /// Whether the input was exhausted.
    pub done: bool,
    /// Parallel readers ([`blocks`]): `(block, largest event time)` of every block this reader
    /// parsed, so that restored readers know the maxima of blocks no one reads again.
    pub blocks: Vec<(u64, Option<u64>)>,
    /// A Kafka reader ([`kafka`]): where each of its partitions stands (empty for files, whose
    /// place is `position`).
    pub partitions: Vec<kafka::PartitionState>,
}

/// A record with the time its feed's [`Watermark`] stamped it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamped<D> {
    /// The stamp: the record's event time when it is on time, the watermark when it is behind.
    pub time: u64,
    /// Whether the record arrived behind the watermark (its stamp is above its event time).
    pub behind: bool,
    /// The record.
    pub record: D,
}

impl<D> Stamped<D> {
    /// Stamps `record`, with event time `ts`, by `watermark`.
    #[inline]
    pub fn new(watermark: &mut Watermark, ts: u64, record: D) -> Self {
        let time = watermark.stamp(ts);
        Stamped {
            time,
            behind: time > ts,
            record,
        }
    }
}

/// A stream of records for [`feed_source`], stamped by a [`Watermark`] it owns.
pub trait Feed: 'static {
    /// The records produced.
    type Item;
    /// The error that stops the feed.
    type Error;
    /// Appends up to `max` records, each with its stamp (see [`Stamped`]).
    fn poll(&mut self, max: usize, out: &mut Vec<Stamped<Self::Item>>)
        -> Result<Poll, Self::Error>;
    /// The watermark after the records polled so far.
    fn watermark(&mut self) -> &mut Watermark;
    /// Receives, once, the activator of the source reading the feed: a feed whose records
    /// become ready through something other than its own polls (another worker's progress)
    /// uses it to have the source poll again at once. The default ignores it.
    fn set_activator(&mut self, activator: Activator) {
        let _ = activator;
    }
    /// [`Feed::poll`], stopping before the first record whose watermark before it (the
    /// watermark after every earlier record) is above `bound`: the source's checkpoint cut at
    /// `bound` then falls between two records. Feeds that take part in checkpoints override
    /// it (with [`Feed::state`]); the default polls without a bound.
    fn poll_bounded(
        &mut self,
        max: usize,
        out: &mut Vec<Stamped<Self::Item>>,
        bound: u64,
    ) -> Result<Poll, Self::Error> {
        let _ = bound;
        self.poll(max, out)
    }
    /// The feed's state for a checkpoint, taken between polls (`done`: the last poll said
    /// [`Poll::Done`]); `None` when it cannot say where it stands now (the source then takes
    /// its cut after a later poll). The default: `None`, no checkpoints.
    fn state(&self, done: bool) -> Option<SourceState> {
        let _ = done;
        None
    }
    /// Whether other workers' feeds wait for this one's next records: then a source paced by
    /// [`Pacing::ahead`] reads on (a parallel file reader whose next block is the first one
    /// the readers do not know, see [`blocks`]). The default: no.
    fn awaited(&self) -> bool {
        false
    }
    /// Whether the watermark may follow processing time once the feed produced nothing for
    /// the idle timeout (`--idle-timeout`). The default: yes. A feed of several parts says no
    /// while a part is not idle by its own account (a Kafka partition not yet fetched from).
    fn may_idle(&self) -> bool {
        true
    }
}

/// One worker's end of a [`side_channel`]: the messages it has yet to send, and whether it
/// sends any more.
pub(crate) struct Outbox<T> {
    items: Vec<T>,
    closed: bool,
    /// Wakes the operator that sends them.
    activator: Option<Activator>,
}

impl<T> Default for Outbox<T> {
    fn default() -> Self {
        Outbox {
            items: Vec::new(),
            closed: false,
            activator: None,
        }
    }
}

impl<T> Outbox<T> {
    /// Queues `item` for every worker.
    pub(crate) fn push(&mut self, item: T) {
        self.items.push(item);
        self.wake();
    }

    /// Sends nothing after what is queued: this worker's part of the channel ends.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.wake();
    }

    /// Whether [`Outbox::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    fn wake(&self) {
        if let Some(activator) = &self.activator {
            activator.activate();
        }
    }
}

/// A broadcast timely stream from every worker's `outbox` to every worker's `receive` (called
/// with each batch of messages that arrives, this worker's own included), by which the readers
/// of one input tell each other what they know: the maxima of file blocks ([`blocks`]), Kafka
/// readers' watermarks under `--idle-timeout` ([`kafka`]). It is disconnected from the records'
/// dataflow, so its capability (at time 0) holds no window open; the capability goes once the
/// outbox is closed, and the dataflow ends only after every worker closed its own. Every
/// worker must build it, in the same place of the dataflow, as for any operator.
pub(crate) fn side_channel<T: ExchangeData + Clone>(
    scope: Scope<'_, u64>,
    name: &str,
    outbox: Rc<RefCell<Outbox<T>>>,
    mut receive: impl FnMut(&mut Vec<T>) + 'static,
) {
    source(scope, name, move |cap, info| {
        outbox.borrow_mut().activator = Some(scope.activator_for(info.address));
        let mut cap = Some(cap);
        move |output| {
            let mut outbox = outbox.borrow_mut();
            if let Some(held) = &cap {
                if !outbox.items.is_empty() {
                    output.session(held).give_iterator(outbox.items.drain(..));
                }
                if outbox.closed {
                    cap = None;
                }
            }
        }
    })
    .container::<Vec<T>>()
    .broadcast()
    .sink(Pipeline, &format!("{name}In"), move |(input, _frontier)| {
        input.for_each(|_cap, data| receive(data));
    });
}

/// A feed over records in memory, in order: `(event time, record)`.
pub struct VecFeed<D> {
    records: std::vec::IntoIter<(u64, D)>,
    watermark: Watermark,
}

impl<D> VecFeed<D> {
    /// Replays `records` with a watermark trailing by `max_delay`.
    pub fn new(records: Vec<(u64, D)>, max_delay: u64) -> Self {
        VecFeed {
            records: records.into_iter(),
            watermark: Watermark::new(max_delay),
        }
    }
}

impl<D: 'static> Feed for VecFeed<D> {
    type Item = D;
    type Error = std::convert::Infallible;
    fn poll(&mut self, max: usize, out: &mut Vec<Stamped<D>>) -> Result<Poll, Self::Error> {
        let before = out.len();
        for (ts, record) in self.records.by_ref().take(max) {
            out.push(Stamped::new(&mut self.watermark, ts, record));
        }
        Ok(if out.len() == before {
            Poll::Done
        } else {
            Poll::Ready
        })
    }
    fn watermark(&mut self) -> &mut Watermark {
        &mut self.watermark
    }
}

/// The most records a source takes from its feed at a time (see [`feed_source_paced`]).
const POLL_CHUNK: usize = 512;

/// How a source reads its feed.
#[derive(Clone, Copy, Debug)]
pub struct SourceOptions {
    /// Records sent per activation: larger batches amortise scheduling.
    pub batch: usize,
    /// Advance the watermark with processing time once the feed was idle this long.
    pub idle_timeout: Option<Duration>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            batch: 4096,
            idle_timeout: None,
        }
    }
}

/// Which time a source sends a record at; see the module docs for when each is exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SendAt {
    /// Every record at its stamp: one timely time per distinct stamp.
    #[default]
    Stamp,
    /// On-time records at the watermark before their batch, records behind the watermark at
    /// their stamp: exact for the keyed window operators, one time per batch.
    Watermark,
}

/// What a source sends for each record: the record alone, at a time [`SendAt`] chooses, or the
/// record with its stamp ([`Stamped`]), every record of a batch at the source's capability
/// (the watermark before the batch, at or below every stamp in it: see the module docs).
pub trait Payload<D>: 'static {
    /// Whether the stamp travels with the record: then every record goes at the capability,
    /// whatever [`Pacing::send_at`] says.
    const STAMPED: bool;
    /// What is sent for `stamped`.
    fn of(stamped: Stamped<D>) -> Self;
}

impl<D: 'static> Payload<D> for D {
    const STAMPED: bool = false;
    #[inline]
    fn of(stamped: Stamped<D>) -> Self {
        stamped.record
    }
}

impl<D: 'static> Payload<D> for Stamped<D> {
    const STAMPED: bool = true;
    #[inline]
    fn of(stamped: Stamped<D>) -> Self {
        stamped
    }
}

/// How a source paces itself: the times it sends at, and how far it may run ahead.
#[derive(Clone, Default)]
pub struct Pacing {
    /// Which time records are sent at (records that carry no stamp; see [`Payload`]).
    pub send_at: SendAt,
    /// `(probe, n)`: read no further while `n` batches that the capability has moved past are
    /// not yet passed by `probe` (which sits where records are consumed, after the exchange:
    /// `tidemark window` places it after the writers); see the module docs. `None`: read as
    /// fast as the feed allows.
    pub ahead: Option<(ProbeHandle<u64>, usize)>,
}

/// A source operator reading `feed` on this worker (pass `None` on the workers that read nothing).
///
/// Sends every record at its stamp ([`SendAt::Stamp`]) and reads as fast as it can; see
/// [`feed_source_paced`] for the other choices. A feed error stops reading and is stored in
/// `error`; the source keeps its capability at the last watermark, so downstream windows stay
/// open and the dataflow never completes: the caller must check `error` while stepping the
/// worker and end the run (the CLI does so with [`crate::abort::fail`]).
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use timely::dataflow::operators::capture::{Capture, Extract};
/// use tidemark::source::{feed_source, SourceOptions, VecFeed};
///
/// let captured = timely::example(|scope| {
///     let feed = VecFeed::new(vec![(5, 'a'), (2, 'b'), (9, 'c')], 1);
///     let error = Rc::new(RefCell::new(None));
///     feed_source(scope, Some(feed), SourceOptions::default(), error).capture()
/// });
/// // 'b' arrives behind the watermark 5 - 1 = 4 and is sent at time 4.
/// assert_eq!(captured.extract(), vec![(4, vec!['b']), (5, vec!['a']), (9, vec!['c'])]);
/// ```
pub fn feed_source<'scope, F: Feed>(
    scope: Scope<'scope, u64>,
    feed: Option<F>,
    options: SourceOptions,
    error: Rc<RefCell<Option<F::Error>>>,
) -> StreamVec<'scope, u64, F::Item> {
    feed_source_paced(scope, feed, options, Pacing::default(), error, Cut::none())
}

/// [`feed_source`] with a choice of send times and a bound on how far it reads ahead.
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use timely::dataflow::operators::capture::{Capture, Extract};
/// use tidemark::source::{feed_source_paced, Pacing, SendAt, SourceOptions, VecFeed};
/// use tidemark::stash::Cut;
///
/// let captured = timely::example(|scope| {
///     let feed = VecFeed::new(vec![(5, 'a'), (2, 'b'), (9, 'c')], 1);
///     let error = Rc::new(RefCell::new(None));
///     let pacing = Pacing { send_at: SendAt::Watermark, ahead: None };
///     feed_source_paced(scope, Some(feed), SourceOptions::default(), pacing, error, Cut::none())
///         .capture()
/// });
/// // 'a' and 'c' are on time and go at the watermark before the batch (0); 'b' keeps its stamp.
/// assert_eq!(captured.extract(), vec![(0, vec!['a', 'c']), (4, vec!['b'])]);
/// ```
///
/// Checkpoint cuts: at each of `cut`'s times `c` (none with [`Cut::none`]) the source hands
/// over its feed's [`SourceState`] (`None` on a worker without a feed) once it has sent every
/// record it will send at a time `<= c` and none later. With [`SendAt::Watermark`] a record is
/// sent at the watermark before its batch, so the source ends the batch before the first
/// record whose watermark before it is above `c` ([`Feed::poll_bounded`]): the records at
/// times `<= c` are then exactly those before the position, and the watermark there says at
/// which times the rest go.
///
/// Sends a `P` per record (see [`Payload`]): the record (`P = F::Item`, as above), or, for
/// differential input, the record with its stamp (`P = Stamped<F::Item>`), a batch at a time
/// at the source's capability (at or below every stamp in it; `pacing.send_at` is not read). The stamp is the time of the record's
/// update: see the module docs for why that gives a differential computation exactly the
/// updates and frontier of [`SendAt::Stamp`].
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use timely::dataflow::operators::capture::{Capture, Extract};
/// use timely::dataflow::operators::vec::Map;
/// use tidemark::source::{feed_source_paced, Pacing, SourceOptions, Stamped, VecFeed};
/// use tidemark::stash::Cut;
///
/// let captured = timely::example(|scope| {
///     let feed = VecFeed::new(vec![(5, 'a'), (2, 'b'), (9, 'c')], 1);
///     let error = Rc::new(RefCell::new(None));
///     let pacing = Pacing::default();
///     feed_source_paced(scope, Some(feed), SourceOptions::default(), pacing, error, Cut::none())
///         .map(|s: Stamped<char>| (s.record, s.time))
///         .capture()
/// });
/// // One batch, at the watermark before it (0); 'b' keeps its stamp 4 (behind 5 - 1).
/// assert_eq!(captured.extract(), vec![(0, vec![('a', 5), ('b', 4), ('c', 9)])]);
/// ```
pub fn feed_source_paced<'scope, F, P>(
    scope: Scope<'scope, u64>,
    feed: Option<F>,
    options: SourceOptions,
    pacing: Pacing,
    error: Rc<RefCell<Option<F::Error>>>,
    cut: Cut<Option<SourceState>>,
) -> StreamVec<'scope, u64, P>
where
    F: Feed,
    P: Payload<F::Item>,
{
    let mut cut = cut;
    source(scope, "FeedSource", move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(cap);
        let mut feed = feed;
        if let Some(feed) = feed.as_mut() {
            feed.set_activator(activator.clone());
        }
        let mut buffer: Vec<Stamped<F::Item>> = Vec::with_capacity(POLL_CHUNK.min(options.batch));
        // Records behind the watermark, in input order (so in stamp order: the watermark never
        // decreases), for `SendAt::Watermark`.
        let mut behind: Vec<Stamped<F::Item>> = Vec::new();
        // Per batch sent while a bound applies, the oldest first: the latest time it was sent
        // at. A batch counts against the bound once the capability has moved past that time
        // (before, no probe can pass it), until the probe passes it.
        let mut sent: VecDeque<u64> = VecDeque::new();
        let mut last_record = Instant::now();
        move |output| {
            let Some(held) = cap.as_mut() else { return };
            let Some(reader) = feed.as_mut() else {
                // No feed on this worker, or it failed: with an error the capability stays,
                // otherwise it goes and the frontier empties.
                if error.borrow().is_none() {
                    cut.take_passed(None, None, |_| None);
                    cap = None;
                }
                return;
            };
            if let Some((probe, batches)) = &pacing.ahead {
                sent.retain(|t| probe.less_than(t));
                let now = *held.time();
                // A feed that other readers wait for reads on: held back, it could hold back the
                // very frontier its pacing waits for (2 workers, 7-byte blocks of a file with
                // quoted newlines, a 20 ms checkpoint interval: one reader was paced, the other
                // waited for its next block and so could not take its cut, the snapshot stream
                // waited for that cut, and the pacing probe for the snapshot stream; the run
                // never ended). It reads past its allowance until the others have its block.
                if sent.iter().filter(|t| **t < now).count() >= *batches && !reader.awaited() {
                    // The workers are behind: look again shortly (a source has no input whose
                    // progress would wake it).
                    activator.activate_after(Duration::from_micros(200));
                    return;
                }
            }
            // Records go out at the watermark before their batch: the capability must stand
            // there before anything is sent. It is downgraded after every batch, but not after
            // a poll that found nothing (a parallel reader waiting for an earlier block), and a
            // restored feed starts at its checkpoint's watermark while the capability starts
            // at 0. A cut may have been taken meanwhile (with the watermark as its limit): a
            // record sent below the watermark would land at or before that cut, in the
            // operators' states at it, and be sent again by a run restored from it.
            let before = reader.watermark().current();
            if *held.time() < before {
                held.downgrade(&before);
            }
            // A batch is polled in chunks of at most `POLL_CHUNK` records, each sent before the
            // next is polled, so the buffer holds a chunk, not a batch: 16 workers each held
            // 4096 records of some 112 bytes (7.3 MB, a sixth of their peak memory). The batch
            // is still the unit of time: every chunk goes at the capability the batch started
            // at, and it moves on once, after the batch, as before.
            let mut polled = 0;
            let mut upto: Option<u64> = None;
            let poll = loop {
                let chunk = (options.batch - polled).clamp(1, POLL_CHUNK);
                let poll = match cut.pending() {
                    Some(bound) => reader.poll_bounded(chunk, &mut buffer, bound),
                    None => reader.poll(chunk, &mut buffer),
                };
                let got = buffer.len();
                polled += got;
                // Only a paced source needs the batch's latest time.
                let latest = pacing
                    .ahead
                    .as_ref()
                    .and_then(|_| buffer.iter().map(|s| s.time).max());
                if let Some(latest) = latest {
                    // Stamped records come out of a differential computation at their stamps.
                    let latest = match pacing.send_at {
                        _ if P::STAMPED => latest,
                        SendAt::Stamp => latest,
                        SendAt::Watermark => latest.max(*held.time()),
                    };
                    upto = upto.max(Some(latest));
                }
                // What is left to send at its own stamp, sorted by stamp.
                let runs = match pacing.send_at {
                    _ if P::STAMPED => {
                        // Every stamp is at or above the capability (the watermark before the
                        // batch), so each record's update is legal at its stamp.
                        debug_assert!(buffer.iter().all(|s| s.time >= *held.time()));
                        output
                            .session(&*held)
                            .give_iterator(buffer.drain(..).map(P::of));
                        &mut buffer
                    }
                    SendAt::Watermark => {
                        let mut session = output.session(&*held);
                        for stamped in buffer.drain(..) {
                            if stamped.behind {
                                behind.push(stamped);
                            } else {
                                session.give(P::of(stamped));
                            }
                        }
                        &mut behind
                    }
                    SendAt::Stamp => {
                        // In-order input (the common case) needs no sort.
                        if !buffer.is_sorted_by_key(|s| s.time) {
                            buffer.sort_by_key(|s| s.time);
                        }
                        &mut buffer
                    }
                };
                let mut records = runs.drain(..).peekable();
                while let Some(first) = records.next() {
                    let at = held.delayed(&first.time);
                    let time = first.time;
                    let mut session = output.session(&at);
                    session.give(P::of(first));
                    while let Some(next) = records.next_if(|s| s.time == time) {
                        session.give(P::of(next));
                    }
                }
                drop(records);
                // Every record at a time up to a pending cut below the watermark is sent, and
                // none later (the poll stopped at the bound): the cut falls here, and the batch
                // ends, so that no later record goes at the capability at or below the cut.
                if let Some(pending) = cut.pending() {
                    let done = matches!(poll, Ok(Poll::Done));
                    let watermark = reader.watermark().current();
                    if done || (poll.is_ok() && watermark > pending) {
                        if let Some(state) = reader.state(done) {
                            let limit = (!done).then_some(watermark);
                            cut.take_passed(limit, None, |_| Some(state.clone()));
                            break poll;
                        }
                    }
                }
                // A short chunk ends the batch: the feed has no more for now (a parallel
                // reader's block ended, or it stopped at a pending cut).
                if !matches!(poll, Ok(Poll::Ready)) || got < chunk || polled >= options.batch {
                    break poll;
                }
            };
            // A batch that read records is a ready one even if its last chunk found nothing
            // (the feed ran dry at a chunk's end): one poll of the batch would have said so,
            // and a pending one would leave the idle clock standing at the batch before, so
            // that `--idle-timeout` advanced the watermark past records just read.
            let poll = match poll {
                Ok(Poll::Pending) if polled > 0 => Ok(Poll::Ready),
                poll => poll,
            };
            if let Some(upto) = upto {
                // Several batches at one time are one entry: a probe tells only times apart.
                if sent.back() != Some(&upto) {
                    sent.push_back(upto);
                }
            }
            match poll {
                Ok(Poll::Ready) => {
                    last_record = Instant::now();
                    held.downgrade(&reader.watermark().current());
                    activator.activate();
                }
                Ok(Poll::Pending) => {
                    if let Some(timeout) = options.idle_timeout {
                        let idle = last_record.elapsed();
                        if idle >= timeout && reader.may_idle() {
                            reader.watermark().idle(idle);
                            // An idle advance past a pending cut: the cut falls before the
                            // next record, and the advance is part of the state.
                            if let Some(pending) = cut.pending() {
                                let watermark = reader.watermark().current();
                                if watermark > pending {
                                    if let Some(state) = reader.state(false) {
                                        cut.take_passed(Some(watermark), None, |_| {
                                            Some(state.clone())
                                        });
                                    }
                                }
                            }
                            held.downgrade(&reader.watermark().current());
                        }
                    }
                    activator.activate_after(Duration::from_millis(1));
                }
                Ok(Poll::Done) => {
                    cap = None;
                    feed = None;
                }
                Err(e) => {
                    // Keep `cap`: the input did not end, it broke.
                    *error.borrow_mut() = Some(e);
                    feed = None;
                }
            }
        }
    })
    .container::<Vec<P>>()
}
