//! NEXMark q0, q1 and q2: per-event maps and filters, with no state and no exchange.
//!
//! Each query is one function from an event to its output rows, shared by the engine (a timely
//! filtering map, `super::filter_map`) and the baseline (a loop), so both compute exactly the
//! same rows.

use timely::dataflow::StreamVec;

use super::{filter_map, Definition, Event, Output};
use crate::workloads::Baseline;

/// q0: every event, as its identifying fields and time.
fn pass_through_row(event: Event) -> Output {
    match event {
        Event::Person(person) => Output::Person {
            id: person.id,
            time: person.date_time,
        },
        Event::Auction(auction) => Output::Auction {
            id: auction.id,
            time: auction.date_time,
        },
        Event::Bid(bid) => Output::Bid {
            auction: bid.auction,
            bidder: bid.bidder,
            price: bid.price,
            time: bid.date_time,
        },
    }
}

/// q1: bids, with the price converted from dollars to euros at the benchmark's fixed rate.
fn currency_row(event: Event) -> Option<Output> {
    match event {
        Event::Bid(bid) => Some(Output::Bid {
            auction: bid.auction,
            bidder: bid.bidder,
            price: bid.price * 908 / 1000,
            time: bid.date_time,
        }),
        _ => None,
    }
}

/// q2: bids on every 123rd auction.
fn selection_row(event: Event) -> Option<Output> {
    match event {
        Event::Bid(bid) if bid.auction % 123 == 0 => Some(Output::AuctionPrice {
            auction: bid.auction,
            price: bid.price,
        }),
        _ => None,
    }
}

/// q0 in the engine: a map.
pub(super) fn pass_through<'scope>(
    events: StreamVec<'scope, u64, Event>,
) -> StreamVec<'scope, u64, Output> {
    filter_map(events, "q0 rows", |event| Some(pass_through_row(event)))
}

/// q1 in the engine: a filtering map (bids only).
pub(super) fn currency_conversion<'scope>(
    events: StreamVec<'scope, u64, Event>,
) -> StreamVec<'scope, u64, Output> {
    filter_map(events, "q1 rows", currency_row)
}

/// q2 in the engine: a filtering map (selected bids only).
pub(super) fn selection<'scope>(
    events: StreamVec<'scope, u64, Event>,
) -> StreamVec<'scope, u64, Output> {
    filter_map(events, "q2 rows", selection_row)
}

/// The row functions of q0, q1 and q2, by query number.
const ROWS: [fn(Event) -> Option<Output>; 3] = [
    |event| Some(pass_through_row(event)),
    currency_row,
    selection_row,
];

/// Query `Q` (0, 1 or 2) as registered in the query registry: its engine dataflow, and its
/// baseline, the same row function in a loop.
pub(super) fn definition<const Q: usize>() -> Definition {
    Definition {
        dataflow: |_, events| match Q {
            0 => pass_through(events),
            1 => currency_conversion(events),
            _ => selection(events),
        },
        baseline: |_| Box::new(Stateless(ROWS[Q])),
        incremental: None,
        windows: |_| Ok(()),
    }
}

/// The baseline of q0, q1 and q2: the query's row function in a loop.
struct Stateless(fn(Event) -> Option<Output>);

impl Baseline<Event, Output> for Stateless {
    fn process(&mut self, events: &mut Vec<Event>, out: &mut Vec<Output>) {
        out.extend(events.drain(..).filter_map(self.0));
    }

    /// No state: nothing completes.
    fn advance(&mut self, _frontier: u64, _out: &mut Vec<Output>) {}
}
