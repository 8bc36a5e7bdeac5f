//! NEXMark q3, q4, q6 and q9 as incremental differential-dataflow views.
//!
//! Each query is written as what it means, over collections: q3 joins the distinct local
//! sellers with the distinct category-10 auctions; the closed-auction queries join auctions
//! with bids, keep the bids that qualify (within the auction's lifetime, at or above its
//! reserve), take each auction's maximum, and fold the maxima once the auction has closed. The
//! view is correct for all events seen so far at every epoch; consolidated at the end of the
//! input it holds q3's rows, q9's rows, and the *latest* row of each group for q4 (category)
//! and q6 (seller), whose timely versions emit every intermediate running answer.
//!
//! An auction closes at `expires`: every qualifying bid travels at a time below it, so the
//! maximum changes only before `expires - 1`. Delaying the maximum's updates to `expires - 1`
//! makes a closed auction's winner enter the folds exactly once, as in the timely operators.
//!
//! The views keep their inputs (auctions, bids, people) for the whole run: unlike windows, a
//! closed auction's winner must stay in the category and seller folds forever, so its input
//! cannot simply be retired. Memory grows with the run's events.

use differential_dataflow::operators::CountTotal;
use differential_dataflow::{Data, VecCollection};
use timely::dataflow::StreamVec;

use super::auctions::{average, SELLER_AUCTIONS};
use super::joins::{local, Local};
use super::{filter_map, Event, Output, Query};
use crate::incremental::{delay_to, to_updates};

/// An auction's terms: `(start, expires, reserve, category, seller)`.
type Terms = (u64, u64, u64, u64, u64);
/// A closed auction: `(auction, expires, category, seller)`.
type Closed = (u64, u64, u64, u64);

/// The events `pick` keeps, each inserted once at its time.
fn collection<'scope, D, F>(
    events: StreamVec<'scope, u64, Event>,
    pick: F,
) -> VecCollection<'scope, u64, D>
where
    D: Data,
    F: Fn(Event) -> Option<D> + 'static,
{
    to_updates(filter_map(events, "picked events", move |event| {
        pick(event).map(|d| (d, 1))
    }))
}

/// q3: local sellers joined with their category-10 auctions, each pair once.
pub(super) fn local_items<'scope>(
    events: StreamVec<'scope, u64, Event>,
) -> VecCollection<'scope, u64, Output> {
    let locals = collection(events, local);
    let sellers = locals
        .clone()
        .flat_map(|local| match local {
            Local::Seller(id, seller) => Some((id, seller)),
            Local::Item(..) => None,
        })
        .distinct();
    let items = locals
        .flat_map(|local| match local {
            Local::Item(seller, auction) => Some((seller, auction)),
            Local::Seller(..) => None,
        })
        .distinct();
    sellers.join_map(items, |_id, seller, auction| seller.row(*auction))
}

/// q4, q6 and q9: the winning price of every closed auction, folded per `query`.
pub(super) fn closed_auctions<'scope>(
    events: StreamVec<'scope, u64, Event>,
    query: Query,
) -> VecCollection<'scope, u64, Output> {
    let auctions = collection(events.clone(), |event| match event {
        Event::Auction(a) => {
            let terms = (a.date_time, a.expires, a.reserve, a.category, a.seller);
            Some((a.id, terms))
        }
        _ => None,
    });
    let bids = collection(events, |event| match event {
        Event::Bid(bid) => Some((bid.auction, (bid.price, bid.date_time))),
        _ => None,
    });
    // Replayed copies of an auction share its id but not its lifetime: the lifetime tells
    // which copy a bid can win.
    let qualifying =
        auctions
            .join(bids)
            .flat_map(|(id, (terms, (price, time))): (u64, (Terms, (u64, u64)))| {
                let (start, expires, reserve, category, seller) = terms;
                let qualifies = start <= time && time < expires && price >= reserve;
                qualifies.then_some(((id, expires, category, seller), price))
            });
    let winners = qualifying.reduce_named("WinningBid", |_auction: &Closed, prices, out| {
        let (highest, _) = prices.last().expect("reduce sees non-empty groups");
        out.push((**highest, 1))
    });
    let closed = delay_to(winners, |((_, expires, _, _), _)| expires - 1);
    match query {
        Query::Q9 => closed.map(|((auction, expires, _, _), price)| Output::WinningBid {
            auction,
            expires,
            price,
        }),
        Query::Q4 => {
            // Count and sum are abelian: differential maintains them in O(1) per change (the
            // sum as the multiplicity of the category, weighted by price), where a reduce would
            // rescan every winner of the category.
            let prices = closed.map(|((_, _, category, _), price)| (category, price));
            let winners = prices.clone().map(|(category, _)| category).count_total();
            let sums = prices
                .explode(|(category, price)| Some((category, price as isize)))
                .count_total();
            winners.join_map(sums, |category, winners, sum| Output::CategoryAverage {
                category: *category,
                winners: *winners as u64,
                average: average(*sum as u64, *winners as u64),
            })
        }
        Query::Q6 => closed
            .map(|((auction, expires, _, seller), price)| (seller, (expires, auction, price)))
            .reduce_named("SellerAverage", |_seller, sales, out| {
                // Sorted by (expires, auction): the last ones are the most recent.
                let mut recent: Vec<u64> = Vec::with_capacity(SELLER_AUCTIONS);
                for (sale, copies) in sales.iter().rev() {
                    for _ in 0..*copies {
                        if recent.len() < SELLER_AUCTIONS {
                            recent.push(sale.2);
                        }
                    }
                }
                let n = recent.len() as u64;
                out.push(((n, average(recent.iter().sum(), n)), 1))
            })
            .map(|(seller, (auctions, average))| Output::SellerAverage {
                seller,
                auctions,
                average,
            }),
        other => unreachable!("{other} is not a closed-auction query"),
    }
}
