//! NEXMark q4: the average closing price per category.
//!
//! An auction's winning bid is its highest bid with a time in `[date_time, expires)` and a
//! price at or above the reserve. The engine decides it in one operator over auctions and
//! bids, both routed by auction id: an auction is open from its arrival and is closed when the
//! input frontier passes `expires - 1`, its last instant, at which point every bid that can
//! win it has arrived. The winner, if any, is emitted at time `expires - 1`; a rolling reduce
//! by category then keeps each category's running (sum, count), and emits the running average
//! once per category and time at which auctions closed.
//!
//! Input is in order: a record's time is at or below its event time, and times do not
//! decrease with event times. So a bid that may win an auction never travels at an earlier time
//! than the auction, but it may arrive before it (same time, another worker). Bids are
//! therefore applied when the frontier passes their time, when every auction they can win has
//! arrived. State is the open auctions plus the bids of the times not yet complete.
//!
//! The baseline keeps the same open auctions and closes them in `advance`, in order of expiry,
//! one row per category changed by the auctions expiring at one instant (as the rolling reduce
//! emits once per category and time).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use nexmark::event::Event;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

use super::Output;
use crate::keyed::KeyBy;
use crate::number::Fixed;
use crate::partition::{route_hash, Partitioner};

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
            id: auction.id as u64,
            terms: Open {
                category: auction.category as u64,
                reserve: auction.reserve as u64,
                start: auction.date_time,
                expires: auction.expires,
                best: None,
            },
        }),
        Event::Bid(bid) => Some(Trade::Bid {
            auction: bid.auction as u64,
            price: bid.price as u64,
            time: bid.date_time,
        }),
        Event::Person(_) => None,
    }
}

/// The exact average of `count` prices summing to `sum`.
fn average(sum: u64, count: u64) -> Fixed {
    let sum = i64::try_from(sum).expect("price sums fit in i64");
    Fixed::from_int(sum)
        .div_round(count)
        .expect("a category has a winner")
}

/// q4 in the engine: winning bids per closed auction, then a running average per category.
pub(super) fn average_closing_price<'scope>(
    events: StreamVec<'scope, u64, Event>,
) -> StreamVec<'scope, u64, Output> {
    winning_bids(events.flat_map(trade))
        .map(|(category, price)| (category, (price, 1)))
        .key_by(Partitioner::Hash)
        .reduce(|total: &mut (u64, u64), (price, count)| {
            total.0 += price;
            total.1 += count;
        })
        .map(|(category, (sum, winners))| Output::CategoryAverage {
            category,
            winners,
            average: average(sum, winners),
        })
}

/// `(category, winning price)` of every auction that closes with a winner, at `expires - 1`.
fn winning_bids<'scope>(
    trades: StreamVec<'scope, u64, Trade>,
) -> StreamVec<'scope, u64, (u64, u64)> {
    if trades.scope().peers() == 1 {
        close_auctions(trades, Pipeline)
    } else {
        close_auctions(
            trades,
            Exchange::new(|trade: &Trade| route_hash(&trade.auction())),
        )
    }
}

fn close_auctions<'scope, P>(
    trades: StreamVec<'scope, u64, Trade>,
    pact: P,
) -> StreamVec<'scope, u64, (u64, u64)>
where
    P: ParallelizationContract<u64, Vec<Trade>>,
{
    trades
        .unary_frontier(pact, "CloseAuctions", |_cap, _info| {
            let mut open = OpenAuctions::default();
            // Close time (`expires - 1`) -> the auctions closing then, and one capability at
            // the earliest close (a capability per close time would burden progress tracking).
            let mut closes: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            let mut held: Option<Capability<u64>> = None;
            // Bids by the time they travel at: (auction, price, event time).
            let mut bids: BTreeMap<u64, Vec<(u64, u64, u64)>> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, batches| {
                    let now = *cap.least().expect("u64 stamps are never empty");
                    let pending = bids.entry(now).or_default();
                    for trade in batches.flat_map(|batch| batch.drain(..)) {
                        match trade {
                            Trade::Opened { id, terms } => {
                                let close = terms.expires - 1;
                                closes.entry(close).or_default().push(id);
                                if held.as_ref().is_none_or(|held| close < *held.time()) {
                                    held = Some(cap.delayed(&close, 0));
                                }
                                open.open(id, terms);
                            }
                            Trade::Bid {
                                auction,
                                price,
                                time,
                            } => pending.push((auction, price, time)),
                        }
                    }
                });
                // Every auction a bid can win has arrived once the frontier passes the bid's
                // time; an auction that closed or never opened cannot be won by it.
                while let Some(entry) = bids.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    for (auction, price, time) in entry.remove() {
                        open.offer(auction, price, time);
                    }
                }
                while let Some(entry) = closes.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (close, ids) = entry.remove_entry();
                    let held = held.as_ref().expect("a pending close holds a capability");
                    let at = held.delayed(&close);
                    let mut session = output.session(&at);
                    for id in ids {
                        let terms = open.close(id, close + 1);
                        if let Some(price) = terms.best {
                            session.give((terms.category, price));
                        }
                    }
                }
                match closes.first_key_value() {
                    Some((next, _)) => held
                        .as_mut()
                        .expect("a pending close holds a capability")
                        .downgrade(next),
                    None => held = None,
                }
            }
        })
        .container::<Vec<_>>()
}

/// q4's baseline: open auctions, a queue of their expiries, and running totals per category.
#[derive(Default)]
pub(super) struct ClosingPrices {
    open: OpenAuctions,
    expiries: BinaryHeap<Reverse<(u64, u64)>>,
    totals: HashMap<u64, (u64, u64)>,
    /// Categories changed by the auctions closing at one instant.
    touched: Vec<u64>,
}

impl ClosingPrices {
    pub(super) fn process(&mut self, events: &mut Vec<Event>, _out: &mut Vec<Output>) {
        // Auctions first: a bid may precede its auction within a batch of equal times.
        for event in events.iter() {
            if let Event::Auction(auction) = event {
                let id = auction.id as u64;
                self.expiries.push(Reverse((auction.expires, id)));
                let terms = Open {
                    category: auction.category as u64,
                    reserve: auction.reserve as u64,
                    start: auction.date_time,
                    expires: auction.expires,
                    best: None,
                };
                self.open.open(id, terms);
            }
        }
        for event in events.drain(..) {
            if let Event::Bid(bid) = event {
                self.open
                    .offer(bid.auction as u64, bid.price as u64, bid.date_time);
            }
        }
    }

    pub(super) fn advance(&mut self, frontier: u64, out: &mut Vec<Output>) {
        while let Some(&Reverse((expires, _))) = self.expiries.peek() {
            if expires > frontier {
                break;
            }
            // Every auction closing at this instant, then one row per category changed.
            while let Some(&Reverse((at, id))) = self.expiries.peek() {
                if at != expires {
                    break;
                }
                self.expiries.pop();
                let terms = self.open.close(id, expires);
                if let Some(price) = terms.best {
                    let total = self.totals.entry(terms.category).or_insert((0, 0));
                    total.0 += price;
                    total.1 += 1;
                    if !self.touched.contains(&terms.category) {
                        self.touched.push(terms.category);
                    }
                }
            }
            for category in self.touched.drain(..) {
                let (sum, winners) = self.totals[&category];
                out.push(Output::CategoryAverage {
                    category,
                    winners,
                    average: average(sum, winners),
                });
            }
        }
    }
}
