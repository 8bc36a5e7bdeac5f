//! NEXMark q3 (local item suggestion) and q8 (new users): joins of people with auctions.
//!
//! q3 is an incremental equi-join (seller = person id) of the people of Oregon, Idaho and
//! California with the auctions of category 10, built on the keyed symmetric hash join
//! ([`crate::keyed::Join::join`]): every match is emitted once, as soon as both sides
//! have arrived. Nothing in the query ever expires, so its state grows with the stream.
//!
//! q8 joins people and auctions within a tumbling window (Flink's formulation: the people who
//! opened an auction in the window in which they registered). It is a keyed window aggregation
//! by person id whose accumulator remembers the name and whether an auction was seen; the
//! window operator gives it exact closing and freed state for free.
//!
//! People's and auctions' ids are unique in the generated stream. The harness replays a pool of
//! events, which repeats them; q3 joins distinct records (see [`crate::keyed::join`]), so the
//! copies neither add rows nor grow state, and q8's windows see a person's copies as one.

use std::sync::LazyLock;

use hashbrown::{HashMap, HashSet};
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

use super::windows::{keyed_windows, Slot, TumblingSlots};
use super::{filter_map, Event, Output, Word};
use crate::keyed::{Join, KeyBy};
use crate::partition::Partitioner;
use crate::window::{Aggregator, WindowAssigner};

/// The category q3 selects.
const CATEGORY: u64 = 10;

/// q3's states (the generator writes them in lower case), as words: comparing a person's state
/// is comparing two small integers.
static LOCAL_STATES: LazyLock<[Option<Word>; 3]> =
    LazyLock::new(|| ["or", "id", "ca"].map(Word::of));

/// Whether a person lives in one of q3's states.
fn is_local(state: Word) -> bool {
    LOCAL_STATES.contains(&Some(state))
}

/// A seller's details, as q3 reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(super) struct Seller {
    name: Word,
    city: Word,
    state: Word,
}

impl Seller {
    /// The row of the seller's `auction`: the words' text is spelled out only here.
    pub(super) fn row(&self, auction: u64) -> Output {
        Output::LocalItem {
            name: self.name.as_str().to_string(),
            city: self.city.as_str().to_string(),
            state: self.state.as_str().to_string(),
            auction,
        }
    }
}

/// q3's inputs, projected from the events.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(super) enum Local {
    /// A local person: id and details.
    Seller(u64, Seller),
    /// An auction of the category: seller and auction id.
    Item(u64, u64),
}

pub(super) fn local(event: Event) -> Option<Local> {
    match event {
        Event::Person(person) if is_local(person.state) => Some(Local::Seller(
            person.id,
            Seller {
                name: person.name,
                city: person.city,
                state: person.state,
            },
        )),
        Event::Auction(auction) if auction.category == CATEGORY => {
            Some(Local::Item(auction.seller, auction.id))
        }
        _ => None,
    }
}

/// q3 in the engine: local sellers joined with their category-10 auctions.
pub(super) fn local_items<'scope>(
    events: StreamVec<'scope, u64, Event>,
) -> StreamVec<'scope, u64, Output> {
    let locals = filter_map(events, "q3 local sellers and items", local);
    let sellers = locals.clone().flat_map(|local| match local {
        Local::Seller(id, seller) => Some((id, seller)),
        Local::Item(..) => None,
    });
    let items = locals.flat_map(|local| match local {
        Local::Item(seller, auction) => Some((seller, auction)),
        Local::Seller(..) => None,
    });
    sellers
        .key_by(Partitioner::Hash)
        .named("q3 sellers-auctions")
        .join(
            items.key_by(Partitioner::Hash),
            |_id, seller: &Seller, auction: &u64| seller.row(*auction),
        )
}

/// q3's baseline: known local sellers, and per seller the category-10 auctions seen (matched
/// or waiting for their seller). Like the engine's join it ignores copies of a person or an
/// auction it has already seen (a replayed pool of events repeats them); ids are unique, so a
/// person's copies are identical.
#[derive(Default)]
pub(super) struct LocalItems {
    sellers: HashMap<u64, Seller>,
    auctions: HashMap<u64, HashSet<u64>>,
}

impl LocalItems {
    pub(super) fn process(&mut self, events: &mut Vec<Event>, out: &mut Vec<Output>) {
        for local in events.drain(..).filter_map(local) {
            match local {
                Local::Seller(id, seller) => {
                    if self.sellers.contains_key(&id) {
                        continue;
                    }
                    if let Some(auctions) = self.auctions.get(&id) {
                        out.extend(auctions.iter().map(|auction| seller.row(*auction)));
                    }
                    self.sellers.insert(id, seller);
                }
                Local::Item(seller, auction) => {
                    if !self.auctions.entry(seller).or_default().insert(auction) {
                        continue;
                    }
                    if let Some(known) = self.sellers.get(&seller) {
                        out.push(known.row(auction));
                    }
                }
            }
        }
    }
}

/// What q8 sees of an event, keyed by the person's id.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Activity {
    /// The person registered, under this name.
    Registered { name: Word, time: u64 },
    /// The person opened an auction.
    Opened { time: u64 },
}

impl Activity {
    fn time(&self) -> u64 {
        match self {
            Activity::Registered { time, .. } | Activity::Opened { time } => *time,
        }
    }
}

fn activity(event: Event) -> Option<(u64, Activity)> {
    match event {
        Event::Person(person) => Some((
            person.id,
            Activity::Registered {
                name: person.name,
                time: person.date_time,
            },
        )),
        Event::Auction(auction) => Some((
            auction.seller,
            Activity::Opened {
                time: auction.date_time,
            },
        )),
        Event::Bid(_) => None,
    }
}

/// A person's window: the name if they registered, and whether they opened an auction.
/// Yields the name when both happened.
#[derive(Clone)]
struct NewUser;

impl Aggregator<Activity> for NewUser {
    type Acc = (Option<Word>, bool);
    type Output = Option<Word>;
    fn init(&self) -> (Option<Word>, bool) {
        (None, false)
    }
    fn add(&self, acc: &mut (Option<Word>, bool), record: &Activity) {
        match record {
            Activity::Registered { name, .. } => acc.0 = Some(*name),
            Activity::Opened { .. } => acc.1 = true,
        }
    }
    fn merge(&self, acc: &mut (Option<Word>, bool), other: &(Option<Word>, bool)) {
        acc.0 = acc.0.or(other.0);
        acc.1 |= other.1;
    }
    fn finish(&self, acc: &(Option<Word>, bool)) -> Option<Word> {
        acc.0.filter(|_| acc.1)
    }
}

/// q8 in the engine: per person and tumbling window, registration and auctions, kept where
/// both occurred. Hot sellers open most auctions, so partials are formed before the exchange.
pub(super) fn new_users<'scope>(
    events: StreamVec<'scope, u64, Event>,
    size: u64,
) -> StreamVec<'scope, u64, Output> {
    keyed_windows(
        events,
        activity,
        "q8 persons-auctions",
        WindowAssigner::Tumbling(size),
    )
    .aggregate(Activity::time, NewUser)
    .results
    .flat_map(|row| {
        let (window_start, person) = (row.window.start as u64, row.key);
        row.value.map(|name| Output::NewUser {
            window_start,
            person,
            name: name.as_str().to_string(),
        })
    })
}

/// One window of q8's baseline: who registered, and who opened auctions.
#[derive(Default)]
pub(super) struct Registrations {
    people: HashMap<u64, Word>,
    sellers: HashSet<u64>,
}

impl Slot for Registrations {
    fn clear(&mut self) {
        self.people.clear();
        self.sellers.clear();
    }
}

/// q8's baseline: registrations and sellers per tumbling window, intersected at its close.
pub(super) struct NewUsers {
    windows: TumblingSlots<Registrations>,
}

impl NewUsers {
    pub(super) fn new(size: u64) -> Self {
        NewUsers {
            windows: TumblingSlots::new(size),
        }
    }

    pub(super) fn process(&mut self, events: &mut Vec<Event>, _out: &mut Vec<Output>) {
        for (id, activity) in events.drain(..).filter_map(activity) {
            match activity {
                Activity::Registered { name, time } => {
                    self.windows.slot(time).people.insert(id, name);
                }
                Activity::Opened { time } => {
                    self.windows.slot(time).sellers.insert(id);
                }
            }
        }
    }

    pub(super) fn advance(&mut self, frontier: u64, out: &mut Vec<Output>) {
        self.windows.close(frontier, |window_start, window| {
            let sellers = &window.sellers;
            out.extend(
                window
                    .people
                    .drain()
                    .filter(|(person, _)| sellers.contains(person))
                    .map(|(person, name)| Output::NewUser {
                        window_start,
                        person,
                        name: name.as_str().to_string(),
                    }),
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q3s_states_are_in_the_vocabulary() {
        // A state missing from the vocabulary would silently select no one.
        assert!(LOCAL_STATES.iter().all(Option::is_some));
        assert!(is_local(Word::of("ca").expect("a state")));
        assert!(!is_local(Word::of("wa").expect("a state")));
    }
}
