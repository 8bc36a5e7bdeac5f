//! NEXMark's closed-auction queries: q4 average closing price per category, q6 average
//! selling price per seller over their last 10 auctions, q9 winning bids.
//!
//! An auction's winning bid is its highest bid with a time in `[date_time, expires)` and a
//! price at or above the reserve. q9 reports every auction that closes with a winner; q4
//! reports, for each, its category's running average winning price including it; q6 its
//! seller's average over the seller's last 10 such auctions. Rows come in order of expiry (then
//! auction id), so they are the same however the work is spread.
//!
//! The engine runs two operators. `CloseAuctions` takes auctions and bids, both routed by
//! auction id: an auction is open from its arrival and closes when the input frontier passes
//! `expires - 1`, its last instant, when every bid that can win it has arrived. `FoldWinners`
//! takes the winners, routed by the query's group (category, seller or auction), and folds them
//! into each group's state in order of (expiry, auction) once the frontier says no earlier
//! winner can still come. Winners
//! carry their expiry as data and travel at one timestamp per activation, and each operator
//! holds a single capability at its earliest pending output: a timestamp (or capability) per
//! closing instant would cost more in progress tracking than the query itself.
//!
//! Input is in order: a record's time is at or below its event time, and times do not
//! decrease with event times. So a bid that may win an auction never travels at an earlier time
//! than the auction, but it may arrive before it (same time, another worker). Bids are
//! therefore applied when the frontier passes their time, when every auction they can win has
//! arrived. State is the open auctions, the bids of the times not yet complete, and the
//! winners not yet folded.
//!
//! The baseline keeps the same open auctions and closes them in `advance`, in order of
//! (expiry, auction id).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

use super::{filter_map, Event, Output, Query};
use crate::number::Fixed;
use crate::partition::route_hash;
use crate::stash::{limit, Checkpoints, Cut, Stash};

/// What q4 sees of auctions and bids.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Trade {
    /// An auction opened.
    Opened { id: u64, terms: Open },
    /// A bid on an auction.
    Bid { auction: u64, price: u64, time: u64 },
}

impl Trade {
    fn auction(&self) -> u64 {
        match self {
            Trade::Opened { id, .. } => *id,
            Trade::Bid { auction, .. } => *auction,
        }
    }
}

/// An open auction and its best qualifying bid so far.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Open {
    category: u64,
    seller: u64,
    reserve: u64,
    start: u64,
    expires: u64,
    best: Option<u64>,
}

impl Open {
    /// Counts a bid if it falls within the auction and meets the reserve.
    #[inline]
    fn offer(&mut self, price: u64, time: u64) {
        if self.start <= time && time < self.expires && price >= self.reserve {
            self.best = Some(self.best.map_or(price, |best| best.max(price)));
        }
    }
}

/// The open auctions, by id. Ids are unique in the generated stream, but the harness replays a
/// pool of events, so an auction's copy may open while the original is still open (when the
/// pool spans less event time than an auction lasts): copies are kept apart, off the hot path.
#[derive(Default)]
struct OpenAuctions {
    first: HashMap<u64, Open>,
    /// Further open auctions with an id in `first`, in no particular order.
    more: HashMap<u64, Vec<Open>>,
}

impl OpenAuctions {
    fn open(&mut self, id: u64, terms: Open) {
        match self.first.entry(id) {
            Entry::Vacant(slot) => {
                slot.insert(terms);
            }
            Entry::Occupied(_) => self.more.entry(id).or_default().push(terms),
        }
    }

    /// Offers a bid to every open auction `id`.
    #[inline]
    fn offer(&mut self, id: u64, price: u64, time: u64) {
        let Some(terms) = self.first.get_mut(&id) else {
            return;
        };
        terms.offer(price, time);
        if !self.more.is_empty() {
            for terms in self.more.get_mut(&id).into_iter().flatten() {
                terms.offer(price, time);
            }
        }
    }

    /// Every open auction by id, copies after their original: opening them in this order
    /// rebuilds the same state.
    fn entries(&self) -> Vec<(u64, Open)> {
        let copies = self
            .more
            .iter()
            .flat_map(|(id, copies)| copies.iter().map(move |c| (id, c)));
        let first = self.first.iter();
        first
            .chain(copies)
            .map(|(id, terms)| (*id, terms.clone()))
            .collect()
    }

    /// Removes the open auction `id` that expires at `expires`.
    fn close(&mut self, id: u64, expires: u64) -> Open {
        let Some(copies) = self.more.get_mut(&id) else {
            return self.first.remove(&id).expect("a closing auction is open");
        };
        let first = self.first.get_mut(&id).expect("copies have an original");
        let terms = match copies.iter().position(|terms| terms.expires == expires) {
            Some(index) => copies.swap_remove(index),
            None => std::mem::replace(first, copies.pop().expect("copies are never empty")),
        };
        if copies.is_empty() {
            self.more.remove(&id);
        }
        terms
    }
}

fn trade(event: Event) -> Option<Trade> {
    match event {
        Event::Auction(auction) => Some(Trade::Opened {
            id: auction.id,
            terms: Open {
                category: auction.category,
                seller: auction.seller,
                reserve: auction.reserve,
                start: auction.date_time,
                expires: auction.expires,
                best: None,
            },
        }),
        Event::Bid(bid) => Some(Trade::Bid {
            auction: bid.auction,
            price: bid.price,
            time: bid.date_time,
        }),
        Event::Person(_) => None,
    }
}

/// The exact average of `count` prices summing to `sum`.
pub(super) fn average(sum: u64, count: u64) -> Fixed {
    let sum = i64::try_from(sum).expect("price sums fit in i64");
    Fixed::from_int(sum)
        .div_round(count)
        .expect("a category has a winner")
}

/// An auction that closed with a winning bid.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Winner {
    expires: u64,
    auction: u64,
    category: u64,
    seller: u64,
    price: u64,
}

/// Sellers' averages cover their last this many auctions won (q6).
pub(super) const SELLER_AUCTIONS: usize = 10;

/// What a closed-auction query keeps per group, and the row it emits per winner.
pub(super) enum WinnerFold {
    /// q4: per category, the sum and number of winning prices.
    Categories(HashMap<u64, (u64, u64)>),
    /// q6: per seller, the winning prices of their last [`SELLER_AUCTIONS`] auctions.
    Sellers(HashMap<u64, VecDeque<u64>>),
    /// q9: no state; every winner is a row.
    Winners,
}

/// [`WinnerFold`]'s state as one value, groups sorted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) enum FoldGroups {
    /// q4: per category, the sum and number of winning prices.
    Categories(Vec<(u64, (u64, u64))>),
    /// q6: per seller, the winning prices of their last [`SELLER_AUCTIONS`] auctions.
    Sellers(Vec<(u64, VecDeque<u64>)>),
    /// q9: no state.
    Winners,
}

impl WinnerFold {
    /// The fold's state as one value.
    fn groups(&self) -> FoldGroups {
        fn sorted<T: Clone>(map: &HashMap<u64, T>) -> Vec<(u64, T)> {
            let mut groups: Vec<_> = map.iter().map(|(k, v)| (*k, v.clone())).collect();
            groups.sort_unstable_by_key(|(k, _)| *k);
            groups
        }
        match self {
            WinnerFold::Categories(totals) => FoldGroups::Categories(sorted(totals)),
            WinnerFold::Sellers(last) => FoldGroups::Sellers(sorted(last)),
            WinnerFold::Winners => FoldGroups::Winners,
        }
    }

    /// The fold of `query` (q4, q6 or q9).
    pub(super) fn new(query: Query) -> WinnerFold {
        match query {
            Query::Q4 => WinnerFold::Categories(HashMap::new()),
            Query::Q6 => WinnerFold::Sellers(HashMap::new()),
            Query::Q9 => WinnerFold::Winners,
            other => unreachable!("{other} is not a closed-auction query"),
        }
    }

    /// The group a winner folds into: where it must be routed.
    fn group(&self, winner: &Winner) -> u64 {
        match self {
            WinnerFold::Categories(_) => winner.category,
            WinnerFold::Sellers(_) => winner.seller,
            WinnerFold::Winners => winner.auction,
        }
    }

    /// Folds in the next winner of its group (in order of expiry, then auction).
    fn apply(&mut self, winner: &Winner) -> Output {
        match self {
            WinnerFold::Categories(totals) => {
                let total = totals.entry(winner.category).or_insert((0, 0));
                total.0 += winner.price;
                total.1 += 1;
                Output::CategoryAverage {
                    category: winner.category,
                    winners: total.1,
                    average: average(total.0, total.1),
                }
            }
            WinnerFold::Sellers(last) => {
                let prices = last.entry(winner.seller).or_default();
                if prices.len() == SELLER_AUCTIONS {
                    prices.pop_front();
                }
                prices.push_back(winner.price);
                let n = prices.len() as u64;
                Output::SellerAverage {
                    seller: winner.seller,
                    auctions: n,
                    average: average(prices.iter().sum(), n),
                }
            }
            WinnerFold::Winners => Output::WinningBid {
                auction: winner.auction,
                expires: winner.expires,
                price: winner.price,
            },
        }
    }
}

/// q4, q6 and q9 in the engine: the winning bid of every closed auction, then `query`'s fold.
/// Both operators hand their state to `checkpoints` at its cuts.
pub(super) fn closed_auctions<'scope>(
    events: StreamVec<'scope, u64, Event>,
    query: Query,
    checkpoints: &Checkpoints,
) -> StreamVec<'scope, u64, Output> {
    let trades = filter_map(events, "q4 q6 q9 auctions and bids", trade);
    let fold = WinnerFold::new(query);
    let (close_cut, fold_cut) = (
        checkpoints.cut(&format!("CloseAuctions[{query}]")),
        checkpoints.cut(&format!("FoldWinners[{query}]")),
    );
    if trades.scope().peers() == 1 {
        let winners = close_auctions(trades, Pipeline, close_cut);
        fold_winners(winners, Pipeline, fold, fold_cut)
    } else {
        let by_auction = Exchange::new(|trade: &Trade| route_hash(&trade.auction()));
        let route = WinnerFold::new(query);
        let by_group = Exchange::new(move |winner: &Winner| route_hash(&route.group(winner)));
        let winners = close_auctions(trades, by_auction, close_cut);
        fold_winners(winners, by_group, fold, fold_cut)
    }
}

/// `CloseAuctions`' state on one worker as one value: the open auctions (copies after their
/// original) and the pending closes by time. Bids wait in the stash only for times beyond a
/// cut, which the replay delivers again (see [`crate::stash`]), so they are not part of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct CloseState {
    open: Vec<(u64, Open)>,
    closes: Vec<(u64, Vec<u64>)>,
}

/// Holds in `held` a capability at `time` (made by `delay`, only when needed) if `time` is
/// earlier than the one held: an operator's one capability stays at its earliest pending output.
fn hold(held: &mut Option<Capability<u64>>, time: u64, delay: impl FnOnce(u64) -> Capability<u64>) {
    if held.as_ref().is_none_or(|held| time < *held.time()) {
        *held = Some(delay(time));
    }
}

/// Opens auction `id` at `cap`'s time: files its close and holds a capability at the earliest
/// pending close.
fn open_auction(
    open: &mut OpenAuctions,
    closes: &mut BTreeMap<u64, Vec<u64>>,
    held: &mut Option<Capability<u64>>,
    delay: impl FnOnce(u64) -> Capability<u64>,
    id: u64,
    terms: Open,
) {
    let close = terms.expires - 1;
    closes.entry(close).or_default().push(id);
    hold(held, close, delay);
    open.open(id, terms);
}

/// The winner of every auction that closes with one, once the frontier passes its last
/// instant. A winner travels at a time at or below its `expires - 1`.
///
/// Bids wait in a [`Stash`] until the frontier passes their time; bids and closes are then
/// applied in time order (a bid at a time after a close cannot win it: its event time is at or
/// after the expiry). Auctions open on arrival, except beyond a pending cut, where they wait
/// until the cut has been taken.
fn close_auctions<'scope, P>(
    trades: StreamVec<'scope, u64, Trade>,
    pact: P,
    mut cut: Cut<CloseState>,
) -> StreamVec<'scope, u64, Winner>
where
    P: ParallelizationContract<u64, Vec<Trade>>,
{
    trades
        .unary_frontier(pact, "CloseAuctions", |_cap, _info| {
            let mut open = OpenAuctions::default();
            // Close time (`expires - 1`) -> the auctions closing then; one capability, at the
            // earliest close.
            let mut closes: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            let mut held: Option<Capability<u64>> = None;
            // Bids by the time they travel at: (auction, price, event time).
            // They produce no output of their own, so they hold no capability.
            let mut bids: Stash<Vec<(u64, u64, u64)>, 0> = Stash::new();
            // Auctions arriving beyond a pending cut.
            let mut opening: Stash<Vec<(u64, Open)>> = Stash::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, batches| {
                    let now = *cap.least().expect("u64 stamps are never empty");
                    let beyond = cut.beyond(now);
                    let pending = bids.at(&cap);
                    for trade in batches.flat_map(|batch| batch.drain(..)) {
                        match trade {
                            Trade::Opened { id, terms } if beyond => {
                                opening.at(&cap).push((id, terms));
                            }
                            Trade::Opened { id, terms } => {
                                let delay = |close| cap.delayed(&close, 0);
                                open_auction(&mut open, &mut closes, &mut held, delay, id, terms);
                            }
                            Trade::Bid {
                                auction,
                                price,
                                time,
                            } => pending.push((auction, price, time)),
                        }
                    }
                });
                let limit = limit(frontier.frontier());
                let passed = |t: &u64| limit.is_none_or(|least| *t < least);
                let mut winners = Vec::new();
                loop {
                    let next_bid = bids.first_time().filter(passed);
                    let next_close = closes.first_key_value().map(|(t, _)| *t).filter(passed);
                    // Auctions held back beyond a cut open before the next cut is taken.
                    let next = [next_bid, next_close, opening.first_time()]
                        .into_iter()
                        .flatten()
                        .min();
                    let state = |_| CloseState {
                        open: open.entries(),
                        closes: closes.iter().map(|(t, ids)| (*t, ids.clone())).collect(),
                    };
                    if cut.take_passed(limit, next, state) {
                        while let Some((_, [cap], auctions)) = opening.pop_through(cut.pending()) {
                            for (id, terms) in auctions {
                                let delay = |close| cap.delayed(&close);
                                open_auction(&mut open, &mut closes, &mut held, delay, id, terms);
                            }
                        }
                        continue;
                    }
                    match (next_bid, next_close) {
                        // Every auction a bid can win has arrived once the frontier passes the
                        // bid's time; an auction that closed or never opened cannot be won by it.
                        (Some(b), c) if c.is_none_or(|c| b <= c) => {
                            let (_, _, pending) =
                                bids.pop_passed(limit).expect("time was just read");
                            for (auction, price, time) in pending {
                                open.offer(auction, price, time);
                            }
                        }
                        (_, Some(close)) => {
                            let ids = closes.remove(&close).expect("time was just read");
                            for auction in ids {
                                let terms = open.close(auction, close + 1);
                                if let Some(price) = terms.best {
                                    winners.push(Winner {
                                        expires: terms.expires,
                                        auction,
                                        category: terms.category,
                                        seller: terms.seller,
                                        price,
                                    });
                                }
                            }
                        }
                        _ => break,
                    }
                }
                let Some(cap) = held.as_mut() else {
                    return;
                };
                output.session(&*cap).give_iterator(winners.drain(..));
                match closes.first_key_value() {
                    Some((next, _)) => cap.downgrade(next),
                    None => held = None,
                }
            }
        })
        .container::<Vec<_>>()
}

/// `FoldWinners`' state on one worker as one value: the query's fold state and the winners
/// that arrived at or before the cut but are not yet folded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct FoldState {
    fold: FoldGroups,
    pending: Vec<Winner>,
}

/// Each winner folded by `fold`, in order of (expiry, auction) once the frontier has passed the
/// expiry's last instant (no earlier winner can still arrive then). Winners arriving beyond a
/// pending cut wait until the cut has been taken.
fn fold_winners<'scope, P>(
    winners: StreamVec<'scope, u64, Winner>,
    pact: P,
    mut fold: WinnerFold,
    mut cut: Cut<FoldState>,
) -> StreamVec<'scope, u64, Output>
where
    P: ParallelizationContract<u64, Vec<Winner>>,
{
    winners
        .unary_frontier(pact, "FoldWinners", |_cap, _info| {
            let mut pending: Vec<Winner> = Vec::new();
            let mut arriving: Stash<Vec<Winner>> = Stash::new();
            // At or below the time of every pending winner.
            let mut held: Option<Capability<u64>> = None;
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, batches| {
                    let now = *cap.least().expect("u64 stamps are never empty");
                    if cut.beyond(now) {
                        let waiting = arriving.at(&cap);
                        for batch in batches {
                            waiting.append(batch);
                        }
                        return;
                    }
                    hold(&mut held, now, |now| cap.delayed(&now, 0));
                    for batch in batches {
                        pending.append(batch);
                    }
                });
                let limit = limit(frontier.frontier());
                let mut rows = Vec::new();
                loop {
                    pending.sort_unstable_by_key(|winner| (winner.expires, winner.auction));
                    // Winners up to the cut first, then the cut, then the rest.
                    let bound = match cut.pending() {
                        Some(c) => limit.map_or(c + 1, |least| least.min(c + 1)),
                        None => limit.unwrap_or(u64::MAX),
                    };
                    let ready = pending.partition_point(|winner| winner.expires - 1 < bound);
                    rows.extend(pending.drain(..ready).map(|winner| fold.apply(&winner)));
                    let state = |_| FoldState {
                        fold: fold.groups(),
                        pending: pending.clone(),
                    };
                    let next = [
                        arriving.first_time(),
                        pending.first().map(|winner| winner.expires - 1),
                    ];
                    if !cut.take_passed(limit, next.into_iter().flatten().min(), state) {
                        break;
                    }
                    while let Some((_, [cap], mut winners)) = arriving.pop_through(cut.pending()) {
                        hold(&mut held, *cap.time(), |_| cap);
                        pending.append(&mut winners);
                    }
                }
                let Some(cap) = held.as_mut() else {
                    return;
                };
                output.session(&*cap).give_iterator(rows.drain(..));
                if pending.is_empty() && arriving.is_empty() {
                    held = None;
                } else if let Some(least) = frontier.frontier().first() {
                    // Later winners arrive at or after the frontier: hold no earlier than it.
                    if least > cap.time() {
                        cap.downgrade(least);
                    }
                }
            }
        })
        .container::<Vec<_>>()
}

/// The baseline of q4, q6 and q9: open auctions, a queue of their expiries, and the query's
/// fold.
pub(super) struct ClosingPrices {
    open: OpenAuctions,
    expiries: BinaryHeap<Reverse<(u64, u64)>>,
    fold: WinnerFold,
}

impl ClosingPrices {
    pub(super) fn new(query: Query) -> Self {
        ClosingPrices {
            open: OpenAuctions::default(),
            expiries: BinaryHeap::new(),
            fold: WinnerFold::new(query),
        }
    }

    pub(super) fn process(&mut self, events: &mut Vec<Event>, _out: &mut Vec<Output>) {
        // Auctions first: a bid may precede its auction within a batch of equal times.
        for event in events.iter() {
            if let Event::Auction(auction) = event {
                let id = auction.id;
                self.expiries.push(Reverse((auction.expires, id)));
                let terms = Open {
                    category: auction.category,
                    seller: auction.seller,
                    reserve: auction.reserve,
                    start: auction.date_time,
                    expires: auction.expires,
                    best: None,
                };
                self.open.open(id, terms);
            }
        }
        for event in events.drain(..) {
            if let Event::Bid(bid) = event {
                self.open.offer(bid.auction, bid.price, bid.date_time);
            }
        }
    }

    pub(super) fn advance(&mut self, frontier: u64, out: &mut Vec<Output>) {
        while let Some(&Reverse((expires, id))) = self.expiries.peek() {
            if expires > frontier {
                break;
            }
            self.expiries.pop();
            let terms = self.open.close(id, expires);
            if let Some(price) = terms.best {
                out.push(self.fold.apply(&Winner {
                    expires,
                    auction: id,
                    category: terms.category,
                    seller: terms.seller,
                    price,
                }));
            }
        }
    }
}
