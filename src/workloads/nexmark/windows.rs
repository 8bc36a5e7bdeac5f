//! NEXMark q5 (hot items), q7 (highest bid) and q11 (user sessions): keyed windows over bids.
//!
//! The engine builds each from `key_by(..).window(..).aggregate(..)`. Hot auctions and hot
//! bidders receive most bids, so no key's records should all cross to one worker: q5's sliding
//! and q7's tumbling windows (and q8's, in `joins`) are keyed by hash with local aggregation
//! (each worker folds its share per key and pane before the exchange, and the partials meet
//! on the key's worker; q7's maximum is over all bids of a window, a single key), and q11's
//! sessions use random partitioning (two-phase aggregation: partials per worker, merged by
//! key).
//!
//! q5 post-processes its window counts with a second keyed step: per window (the key), the
//! auctions with the most bids, aggregated over a one-nanosecond window at the instant the
//! counted window closed (`end - 1`), so each window's counts meet exactly once.
//!
//! The baselines keep the same windows in sorted deques (in-order input touches the newest),
//! close them in `advance` when `end <= frontier`, and reuse their hash maps.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

use super::{Event, Output};
use crate::keyed::{FilterMap, Key, KeyBy, KeyByWith, Value, WindowedStream};
use crate::partition::Partitioner;
use crate::window::{Aggregator, Count, Panes, WindowAssigner};

/// A bid's auction and time, if the event is a bid.
fn auction_bid(event: Event) -> Option<(u64, u64)> {
    match event {
        Event::Bid(bid) => Some((bid.auction, bid.date_time)),
        _ => None,
    }
}

/// A bid's bidder and time, if the event is a bid.
fn bidder_bid(event: Event) -> Option<(u64, u64)> {
    match event {
        Event::Bid(bid) => Some((bid.bidder, bid.date_time)),
        _ => None,
    }
}

/// An auction's bid count in one window, at the instant the window closed.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct AuctionBids {
    auction: u64,
    bids: u64,
    closed_at: u64,
}

/// The largest bid count and every auction that reached it.
#[derive(Clone)]
struct MostBids;

impl Aggregator<AuctionBids> for MostBids {
    type Acc = (u64, Vec<u64>);
    type Output = (u64, Vec<u64>);
    fn init(&self) -> (u64, Vec<u64>) {
        (0, Vec::new())
    }
    fn add(&self, acc: &mut (u64, Vec<u64>), record: &AuctionBids) {
        if record.bids > acc.0 {
            acc.0 = record.bids;
            acc.1.clear();
        }
        if record.bids == acc.0 {
            acc.1.push(record.auction);
        }
    }
    fn merge(&self, acc: &mut (u64, Vec<u64>), other: &(u64, Vec<u64>)) {
        if other.0 > acc.0 {
            acc.0 = other.0;
            acc.1.clear();
        }
        if other.0 == acc.0 {
            acc.1.extend_from_slice(&other.1);
        }
    }
    fn finish(&self, acc: &(u64, Vec<u64>)) -> (u64, Vec<u64>) {
        acc.clone()
    }
}

/// The pairs `pair` picks from `events` into `assigner`'s windows, named
/// `Window[{what}, {assigner}]` in timely's logs. On one worker `pair` runs inside the window
/// operator's input. Tumbling and sliding windows are keyed by hash with local aggregation
/// ([`WindowedStream::local_aggregation`]): each worker folds the pairs it picks into partials
/// before the exchange (hot keys included), in the operator that picks them. Sessions spread
/// the pairs at random first (two-phase aggregation: hot keys form partials on every worker).
pub(super) fn keyed_windows<'scope, K: Key, V: Value, F>(
    events: StreamVec<'scope, u64, Event>,
    pair: F,
    what: &str,
    assigner: WindowAssigner,
) -> WindowedStream<'scope, K, V, Event, FilterMap<F>>
where
    F: Fn(Event) -> Option<(K, V)> + 'static,
{
    let partitioner = match assigner {
        WindowAssigner::Session(_) => Partitioner::Random,
        WindowAssigner::Tumbling(_) | WindowAssigner::Sliding(..) => Partitioner::Hash,
    };
    events
        .key_by_with(partitioner, pair)
        .named(&format!("{what}, {}", assigner.describe(1)))
        .window(assigner)
        .local_aggregation()
}

/// q5 in the engine: bids counted per auction in sliding windows, then per window the
/// auctions with the highest count.
pub(super) fn hot_items<'scope>(
    events: StreamVec<'scope, u64, Event>,
    size: u64,
    slide: u64,
) -> StreamVec<'scope, u64, Output> {
    keyed_windows(
        events,
        auction_bid,
        "q5 bids per auction",
        WindowAssigner::Sliding(size, slide),
    )
    .aggregate(|time: &u64| *time, Count)
    .results
    .map(|row| {
        let closed_at = row.window.end - 1;
        let (auction, bids) = (row.key, row.value);
        (
            row.window.end,
            AuctionBids {
                auction,
                bids,
                closed_at,
            },
        )
    })
    .key_by(Partitioner::Hash)
    .named("q5 hottest auctions per window end")
    .window(WindowAssigner::Tumbling(1))
    .aggregate(|count: &AuctionBids| count.closed_at, MostBids)
    .results
    .flat_map(|row| {
        let (window_end, (bids, auctions)) = (row.key, row.value);
        auctions.into_iter().map(move |auction| Output::HotItem {
            window_end,
            auction,
            bids,
        })
    })
}

/// A bid competing for the highest of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Best {
    price: u64,
    auction: u64,
    bidder: u64,
}

impl Best {
    /// Whether `self` wins over `other`: a higher price, or an equal price on a smaller
    /// auction, then bidder.
    #[inline]
    fn beats(&self, other: &Best) -> bool {
        (self.price, Reverse(self.auction), Reverse(self.bidder))
            > (other.price, Reverse(other.auction), Reverse(other.bidder))
    }

    fn keep_better(slot: &mut Option<Best>, candidate: &Best) {
        if slot.is_none_or(|best| candidate.beats(&best)) {
            *slot = Some(*candidate);
        }
    }

    fn row(&self, window_end: u64) -> Output {
        Output::HighestBid {
            window_end,
            auction: self.auction,
            bidder: self.bidder,
            price: self.price,
        }
    }
}

/// A bid with its time, as q7's windows see it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TimedBid {
    bid: Best,
    time: u64,
}

/// The winning bid of a window; see [`Best::beats`].
#[derive(Clone)]
struct HighestBid;

impl Aggregator<TimedBid> for HighestBid {
    type Acc = Option<Best>;
    type Output = Best;
    fn init(&self) -> Option<Best> {
        None
    }
    #[inline]
    fn add(&self, acc: &mut Option<Best>, record: &TimedBid) {
        Best::keep_better(acc, &record.bid);
    }
    fn merge(&self, acc: &mut Option<Best>, other: &Option<Best>) {
        if let Some(other) = other {
            Best::keep_better(acc, other);
        }
    }
    fn finish(&self, acc: &Option<Best>) -> Best {
        acc.expect("a window exists only once a bid arrived")
    }
}

fn timed_bid(event: Event) -> Option<TimedBid> {
    match event {
        Event::Bid(bid) => Some(TimedBid {
            bid: Best {
                price: bid.price,
                auction: bid.auction,
                bidder: bid.bidder,
            },
            time: bid.date_time,
        }),
        _ => None,
    }
}

/// q7 in the engine: the highest bid of every tumbling window (one key for all bids).
pub(super) fn highest_bid<'scope>(
    events: StreamVec<'scope, u64, Event>,
    size: u64,
) -> StreamVec<'scope, u64, Output> {
    keyed_windows(
        events,
        |event| timed_bid(event).map(|bid| ((), bid)),
        "q7 highest bid",
        WindowAssigner::Tumbling(size),
    )
    .aggregate(|bid: &TimedBid| bid.time, HighestBid)
    .results
    .map(|row| row.value.row(row.window.end))
}

/// q11 in the engine: bids counted per bidder in session windows.
pub(super) fn user_sessions<'scope>(
    events: StreamVec<'scope, u64, Event>,
    gap: u64,
) -> StreamVec<'scope, u64, Output> {
    keyed_windows(
        events,
        bidder_bid,
        "q11 bids per session",
        WindowAssigner::Session(gap),
    )
    .aggregate(|time: &u64| *time, Count)
    .results
    .map(|row| Output::Session {
        bidder: row.key,
        start: row.window.start as u64,
        end: row.window.end,
        bids: row.value,
    })
}

/// Per-window state of a baseline that can be emptied for reuse.
pub(super) trait Slot: Default {
    /// Empties the slot, keeping its allocations.
    fn clear(&mut self);
}

impl Slot for Option<Best> {
    fn clear(&mut self) {
        *self = None;
    }
}

/// A baseline's tumbling windows, sorted by start; in-order input touches the newest.
pub(super) struct TumblingSlots<S> {
    size: u64,
    slots: VecDeque<(u64, S)>,
    spare: Vec<S>,
}

impl<S: Slot> TumblingSlots<S> {
    pub(super) fn new(size: u64) -> Self {
        TumblingSlots {
            size,
            slots: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    /// The state of the window containing `time`, created if absent.
    #[inline]
    pub(super) fn slot(&mut self, time: u64) -> &mut S {
        let size = self.size;
        if self
            .slots
            .back()
            .is_some_and(|(start, _)| *start <= time && time - start < size)
        {
            return &mut self.slots.back_mut().expect("just checked").1;
        }
        let start = time - time % size;
        let index = self.slots.partition_point(|(s, _)| *s < start);
        if self.slots.get(index).is_none_or(|(s, _)| *s != start) {
            let slot = self.spare.pop().unwrap_or_default();
            self.slots.insert(index, (start, slot));
        }
        &mut self.slots[index].1
    }

    /// Hands every window ending at or before `frontier` to `emit` (with its start), oldest
    /// first, and keeps its emptied state for reuse.
    pub(super) fn close(&mut self, frontier: u64, emit: impl FnMut(u64, &mut S)) {
        let size = self.size;
        self.pop_while(|start| start + size <= frontier, emit);
    }

    /// The start of the oldest window held.
    fn oldest(&self) -> Option<u64> {
        self.slots.front().map(|(start, _)| *start)
    }

    /// Every window held, with its start, oldest first.
    fn iter(&self) -> impl Iterator<Item = &(u64, S)> {
        self.slots.iter()
    }

    /// Frees every window starting before `start` unread, keeping its emptied state for reuse.
    fn discard_before(&mut self, start: u64) {
        self.pop_while(|s| s < start, |_, _| {});
    }

    /// Hands the oldest windows to `emit` while `take` holds for their start, then empties them
    /// for reuse.
    fn pop_while(&mut self, take: impl Fn(u64) -> bool, mut emit: impl FnMut(u64, &mut S)) {
        while self.oldest().is_some_and(&take) {
            let (start, mut slot) = self.slots.pop_front().expect("just checked");
            emit(start, &mut slot);
            slot.clear();
            self.spare.push(slot);
        }
    }
}

impl Slot for HashMap<u64, u64> {
    fn clear(&mut self) {
        HashMap::clear(self);
    }
}

/// q5's baseline: bid counts per auction in panes of width `gcd(size, slide)`; a window's
/// counts are the sum of its panes', merged when it closes.
pub(super) struct HotItems {
    size: u64,
    slide: u64,
    /// Bid counts per auction, in tumbling panes of width `gcd(size, slide)`.
    panes: TumblingSlots<HashMap<u64, u64>>,
    /// The end of the next window to close; windows before it have been emitted.
    next_end: u64,
    merged: HashMap<u64, u64>,
}

impl HotItems {
    pub(super) fn new(size: u64, slide: u64) -> Self {
        // Panes of width gcd(size, slide), as the engine's sliding windows cut them.
        let width = Panes::new(size, slide).width;
        HotItems {
            size,
            slide,
            panes: TumblingSlots::new(width),
            next_end: 0,
            merged: HashMap::new(),
        }
    }

    /// The end of the first window containing `time`: the smallest `k * slide + size > time`.
    fn first_end(&self, time: u64) -> u64 {
        let after = time + 1;
        after + (self.size % self.slide + self.slide - after % self.slide) % self.slide
    }

    pub(super) fn process(&mut self, events: &mut Vec<Event>, _out: &mut Vec<Output>) {
        for (auction, time) in events.drain(..).filter_map(auction_bid) {
            *self.panes.slot(time).entry(auction).or_insert(0) += 1;
        }
    }

    pub(super) fn advance(&mut self, frontier: u64, out: &mut Vec<Output>) {
        while let Some(oldest) = self.panes.oldest() {
            // Windows before the oldest pane's first are empty: skip them.
            let end = self.next_end.max(self.first_end(oldest));
            if end > frontier {
                break;
            }
            self.merged.clear();
            for (start, pane) in self.panes.iter() {
                if *start >= end {
                    break;
                }
                for (auction, bids) in pane {
                    *self.merged.entry(*auction).or_insert(0) += bids;
                }
            }
            let most = self.merged.values().copied().max().unwrap_or(0);
            out.extend(self.merged.iter().filter(|(_, bids)| **bids == most).map(
                |(auction, bids)| Output::HotItem {
                    window_end: end,
                    auction: *auction,
                    bids: *bids,
                },
            ));
            self.next_end = end + self.slide;
            // Panes before the next window's start belong to no window still to close.
            self.panes
                .discard_before(self.next_end.saturating_sub(self.size));
        }
    }
}

/// q7's baseline: the best bid of each tumbling window.
pub(super) struct HighestBids {
    windows: TumblingSlots<Option<Best>>,
}

impl HighestBids {
    pub(super) fn new(size: u64) -> Self {
        HighestBids {
            windows: TumblingSlots::new(size),
        }
    }

    pub(super) fn process(&mut self, events: &mut Vec<Event>, _out: &mut Vec<Output>) {
        for bid in events.drain(..).filter_map(timed_bid) {
            Best::keep_better(self.windows.slot(bid.time), &bid.bid);
        }
    }

    pub(super) fn advance(&mut self, frontier: u64, out: &mut Vec<Output>) {
        let size = self.windows.size;
        self.windows.close(frontier, |start, best| {
            if let Some(best) = best {
                out.push(best.row(start + size));
            }
        });
    }
}

/// One bidder's open session.
struct Session {
    start: u64,
    last: u64,
    bids: u64,
    /// The close time under which the session is queued.
    queued: u64,
}

/// q11's baseline: each bidder's open session, and a queue of close times. A session that
/// grew since it was queued is queued again at its new close time when the old one comes up.
/// Bids arrive in time order (as generated), so a bidder has at most one open session.
pub(super) struct UserSessions {
    gap: u64,
    open: HashMap<u64, Session>,
    closes: BinaryHeap<Reverse<(u64, u64)>>,
}

impl UserSessions {
    pub(super) fn new(gap: u64) -> Self {
        UserSessions {
            gap,
            open: HashMap::new(),
            closes: BinaryHeap::new(),
        }
    }

    fn row(&self, bidder: u64, session: &Session) -> Output {
        Output::Session {
            bidder,
            start: session.start,
            end: session.last + self.gap,
            bids: session.bids,
        }
    }

    pub(super) fn process(&mut self, events: &mut Vec<Event>, out: &mut Vec<Output>) {
        let gap = self.gap;
        for (bidder, time) in events.drain(..).filter_map(bidder_bid) {
            match self.open.get_mut(&bidder) {
                Some(session) if time < session.last + gap => {
                    debug_assert!(time + gap > session.start, "bids arrive in time order");
                    session.start = session.start.min(time);
                    session.last = session.last.max(time);
                    session.bids += 1;
                }
                Some(session) => {
                    // The gap passed before `advance` said so: the old session is complete.
                    let done = std::mem::replace(
                        session,
                        Session {
                            start: time,
                            last: time,
                            bids: 1,
                            queued: time + gap,
                        },
                    );
                    out.push(self.row(bidder, &done));
                    self.closes.push(Reverse((time + gap, bidder)));
                }
                None => {
                    self.open.insert(
                        bidder,
                        Session {
                            start: time,
                            last: time,
                            bids: 1,
                            queued: time + gap,
                        },
                    );
                    self.closes.push(Reverse((time + gap, bidder)));
                }
            }
        }
    }

    pub(super) fn advance(&mut self, frontier: u64, out: &mut Vec<Output>) {
        while let Some(&Reverse((close, bidder))) = self.closes.peek() {
            if close > frontier {
                break;
            }
            self.closes.pop();
            let Some(session) = self.open.get_mut(&bidder) else {
                continue;
            };
            if session.queued != close {
                continue; // Stale: the session was replaced after this entry was queued.
            }
            let end = session.last + self.gap;
            if end <= frontier {
                let session = self.open.remove(&bidder).expect("just read");
                out.push(self.row(bidder, &session));
            } else {
                session.queued = end;
                self.closes.push(Reverse((end, bidder)));
            }
        }
    }
}
