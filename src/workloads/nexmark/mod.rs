//! NEXMark: an online auction's people, auctions and bids, and the benchmark's queries over
//! them, each as an engine dataflow and as a single-threaded baseline.
//!
//! This module owns the workload's definition: the event stream (the `nexmark` crate's
//! generator, with fixed parameters), the query selector and window sizes, and the output rows
//! shared by engine and baseline. The queries live one family per file:
//!
//! * `stateless`: q0 pass-through, q1 currency conversion, q2 selection;
//! * `joins`: q3 local item suggestion (an incremental join), q8 new users (a window join);
//! * `auctions`: q4 average closing price per category, q6 average selling price per seller,
//!   q9 winning bids;
//! * `windows`: q5 hot items, q7 highest bid, q11 user sessions;
//! * `incremental`: q3, q4, q6 and q9 as differential views (`--engine differential`).
//!
//! # Events and time
//!
//! Events are the `nexmark` crate's [`Event`]s. The crate has no seed: each event's content is
//! drawn from an RNG seeded by its event id, and the first event id is a configuration field.
//! A `seed` therefore selects where in the crate's id space the stream starts
//! (`first_event_id = (seed mod 2^20) * 50 * 2^32`, a multiple of the 50-event cycle of people,
//! auctions and bids). Seed 0 is the crate's canonical stream; other seeds change every event's
//! content and shift its ids, and their first ~50 000 events also refer to people and auctions
//! from "before" the stream's start (as if joining a running auction site). Worker `w` of `n`
//! generates events `w, w + n, w + 2n, ...` of that one logical stream.
//!
//! All times are nanoseconds. The crate stamps events in milliseconds from its own timeline
//! (base time fixed at 0, 10 000 events/s); the generator converts `date_time` and an
//! auction's `expires` to nanoseconds, and [`Workload::set_event_time`] moves an auction's
//! `expires` with its `date_time`, so an auction keeps the crate's lifetime (on average about
//! 170 ms, up to 330 ms) whatever rate the harness replays events at. (The crate sizes
//! lifetimes so that about 100 auctions are open at its 10 000 events/s; at a higher rate
//! proportionally more are open at once, and q4's state grows accordingly.)
//!
//! The harness replays a pool of pre-generated events with new times, which repeats ids. The
//! queries stay bounded under replay: q3 joins distinct records (a copy of a person or auction
//! adds nothing), q4 keeps overlapping copies of an auction apart, and the windowed queries
//! simply see the copies as more events.
//!
//! # Output
//!
//! Every query emits [`Output`] rows. With in-order input (each event sent at a time at or
//! below its event time, times non-decreasing with event times) windows never see late data,
//! so the rows are final (no retractions) and identical for every number of workers.

mod auctions;
mod incremental;
mod joins;
mod stateless;
mod windows;

use std::fmt;
use std::str::FromStr;

use differential_dataflow::VecCollection;
use nexmark::config::NexmarkConfig;
use nexmark::event::Event;
use nexmark::EventGenerator;
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;

use super::{Baseline, FlagError, Registered, SharedFlags, Workload};
use crate::number::Fixed;
use crate::stash::Checkpoints;
use crate::window::{WindowAssigner, WindowSpecError};

/// Nanoseconds per millisecond: the crate's time unit to ours.
const NS_PER_MS: u64 = 1_000_000;
/// Events in one cycle of the crate's generator (1 person, 3 auctions, 46 bids).
const EVENTS_PER_CYCLE: usize = 50;
/// Event ids reserved per seed: seeds start streams `50 * 2^32` events apart.
const EVENTS_PER_SEED: usize = EVENTS_PER_CYCLE << 32;
/// Seeds are taken modulo this, so that event ids stay far below `2^64`.
const SEEDS: u64 = 1 << 20;

/// The query registry: for each query, its doc line, its name and its [`Definition`] (engine
/// dataflow, baseline, incremental view and windows), built from the query's own file. Adding a
/// query is its file (or a function in its family's file) and one entry here.
macro_rules! queries {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal => $definition:expr, )*) => {
        /// A NEXMark query.
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        pub enum Query {
            $( $(#[$doc])* $variant, )*
        }

        impl Query {
            /// Every supported query, in order.
            pub const ALL: [Query; [$($name),*].len()] = [$(Query::$variant),*];

            /// The query's name, such as `q5`.
            pub fn name(self) -> &'static str {
                match self {
                    $( Query::$variant => $name, )*
                }
            }

            /// How the query is computed.
            fn definition(self) -> Definition {
                match self {
                    $( Query::$variant => $definition, )*
                }
            }
        }
    };
}

queries! {
    /// Pass-through: every event.
    Q0 = "q0" => stateless::definition::<0>(),
    /// Currency conversion: every bid, its price converted (`price * 908 / 1000`).
    Q1 = "q1" => stateless::definition::<1>(),
    /// Selection: bids on auctions whose id is a multiple of 123.
    Q2 = "q2" => stateless::definition::<2>(),
    /// Local item suggestion: auctions of category 10 by sellers in Oregon, Idaho or
    /// California, joined with their seller as both arrive.
    Q3 = "q3" => Definition {
        dataflow: |_, events| joins::local_items(events),
        baseline: |_| Box::new(joins::LocalItems::default()),
        incremental: Some(|_, events| incremental::local_items(events)),
        windows: |_| Ok(()),
    },
    /// Average closing price per category: the running average of winning bids.
    Q4 = "q4" => closed_auctions(),
    /// Hot items: the auctions with the most bids in each sliding window.
    Q5 = "q5" => Definition {
        dataflow: |n, events| windows::hot_items(events, n.window_ns, n.slide_ns),
        baseline: |n| Box::new(windows::HotItems::new(n.window_ns, n.slide_ns)),
        incremental: None,
        windows: |n| WindowAssigner::Sliding(n.window_ns, n.slide_ns).validate(),
    },
    /// Average selling price per seller: the running average of the winning bids of each
    /// seller's last 10 auctions.
    Q6 = "q6" => closed_auctions(),
    /// Highest bid in each tumbling window.
    Q7 = "q7" => Definition {
        dataflow: |n, events| windows::highest_bid(events, n.window_ns),
        baseline: |n| Box::new(windows::HighestBids::new(n.window_ns)),
        incremental: None,
        windows: tumbling,
    },
    /// New users: people who opened an auction in the tumbling window they registered in.
    Q8 = "q8" => Definition {
        dataflow: |n, events| joins::new_users(events, n.window_ns),
        baseline: |n| Box::new(joins::NewUsers::new(n.window_ns)),
        incremental: None,
        windows: tumbling,
    },
    /// Winning bids: every auction that closes with a winner, and its winning price.
    Q9 = "q9" => closed_auctions(),
    /// User sessions: bids per bidder in session windows.
    Q11 = "q11" => Definition {
        dataflow: |n, events| windows::user_sessions(events, n.gap_ns),
        baseline: |n| Box::new(windows::UserSessions::new(n.gap_ns)),
        incremental: None,
        windows: |n| WindowAssigner::Session(n.gap_ns).validate(),
    },
}

/// An engine dataflow of a query, given the workload's parameters.
type Dataflow = for<'s> fn(&Nexmark, StreamVec<'s, u64, Event>) -> StreamVec<'s, u64, Output>;
/// An incremental view of a query, given the workload's parameters.
type View = for<'s> fn(&Nexmark, StreamVec<'s, u64, Event>) -> VecCollection<'s, u64, Output>;

/// How a query is computed: everything [`Nexmark`] needs to run it, so that no other code
/// matches on the query.
struct Definition {
    /// The engine dataflow.
    dataflow: Dataflow,
    /// A fresh single-threaded baseline.
    baseline: fn(&Nexmark) -> Box<dyn Baseline<Event, Output>>,
    /// The incremental view (`--engine differential`), where the query has one.
    incremental: Option<View>,
    /// Checks the windows the query uses.
    windows: fn(&Nexmark) -> Result<(), WindowSpecError>,
}

/// The families' baselines as [`Baseline`]s: their `process` and `advance` are their own
/// (inherent) methods, which these forward to.
macro_rules! baselines {
    ($($family:ident::$state:ident),* $(,)?) => {
        $(
            impl Baseline<Event, Output> for $family::$state {
                fn process(&mut self, events: &mut Vec<Event>, out: &mut Vec<Output>) {
                    $family::$state::process(self, events, out);
                }

                fn advance(&mut self, frontier: u64, out: &mut Vec<Output>) {
                    $family::$state::advance(self, frontier, out);
                }
            }
        )*
    };
}

baselines!(
    joins::NewUsers,
    auctions::ClosingPrices,
    windows::HotItems,
    windows::HighestBids,
    windows::UserSessions,
);

/// q3's baseline joins as events arrive: a frontier completes nothing.
impl Baseline<Event, Output> for joins::LocalItems {
    fn process(&mut self, events: &mut Vec<Event>, out: &mut Vec<Output>) {
        joins::LocalItems::process(self, events, out);
    }

    fn advance(&mut self, _frontier: u64, _out: &mut Vec<Output>) {}
}

/// q4, q6 and q9: one family over closed auctions (see `auctions`).
fn closed_auctions() -> Definition {
    Definition {
        dataflow: |n, events| auctions::closed_auctions(events, n.query, &Checkpoints::default()),
        baseline: |n| Box::new(auctions::ClosingPrices::new(n.query)),
        incremental: Some(|n, events| incremental::closed_auctions(events, n.query)),
        windows: |_| Ok(()),
    }
}

/// q7 and q8: tumbling windows of `window_ns`.
fn tumbling(n: &Nexmark) -> Result<(), WindowSpecError> {
    WindowAssigner::Tumbling(n.window_ns).validate()
}

impl Query {
    /// Whether the query has an incremental view (`--engine differential`).
    pub fn has_incremental(self) -> bool {
        self.definition().incremental.is_some()
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A query name that is not one of the supported NEXMark queries.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown NEXMark query {0:?}: expected one of q0-q9 or q11 (there is no q10)")]
pub struct UnknownQuery(pub String);

impl FromStr for Query {
    type Err = UnknownQuery;

    /// Reads `q5`, `Q5` or `5`.
    ///
    /// ```
    /// use tidemark::workloads::nexmark::Query;
    /// assert_eq!("q11".parse(), Ok(Query::Q11));
    /// assert_eq!("7".parse(), Ok(Query::Q7));
    /// assert!("q10".parse::<Query>().is_err());
    /// ```
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let number = text
            .strip_prefix(['q', 'Q'])
            .unwrap_or(text)
            .to_ascii_lowercase();
        Query::ALL
            .into_iter()
            .find(|query| query.name()[1..] == number)
            .ok_or_else(|| UnknownQuery(text.to_string()))
    }
}

/// One output row of a NEXMark query. Times and window bounds are nanoseconds; ids, prices
/// (cents) and counts are as generated.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Output {
    /// q0: a person registered.
    Person {
        /// The person's id.
        id: u64,
        /// Event time.
        time: u64,
    },
    /// q0: an auction opened.
    Auction {
        /// The auction's id.
        id: u64,
        /// Event time.
        time: u64,
    },
    /// q0: a bid; q1: a bid with its price converted.
    Bid {
        /// The auction bid on.
        auction: u64,
        /// The bidder.
        bidder: u64,
        /// The price (q1: `price * 908 / 1000`, rounded down).
        price: u64,
        /// Event time.
        time: u64,
    },
    /// q2: a bid on a selected auction.
    AuctionPrice {
        /// The auction.
        auction: u64,
        /// The bid's price.
        price: u64,
    },
    /// q3: an auction of category 10 and its seller from Oregon, Idaho or California.
    LocalItem {
        /// The seller's name.
        name: String,
        /// The seller's city.
        city: String,
        /// The seller's state.
        state: String,
        /// The auction.
        auction: u64,
    },
    /// q4: a category's average winning price, after one more of its auctions closed with a
    /// winner (one row per such auction, in order of expiry).
    CategoryAverage {
        /// The category.
        category: u64,
        /// Closed auctions of the category that had a winning bid, so far.
        winners: u64,
        /// Their average winning price (exact to nine decimals).
        average: Fixed,
    },
    /// q6: a seller's average winning price over their last 10 auctions won, after one more
    /// of their auctions closed with a winner (one row per such auction, in order of expiry).
    SellerAverage {
        /// The seller.
        seller: u64,
        /// Auctions in the average (the last 10, fewer at first).
        auctions: u64,
        /// Their average winning price (exact to nine decimals).
        average: Fixed,
    },
    /// q9: an auction that closed with a winning bid.
    WinningBid {
        /// The auction.
        auction: u64,
        /// When it closed (its `expires`).
        expires: u64,
        /// The winning price.
        price: u64,
    },
    /// q5: an auction with the most bids in a sliding window (one row per tied auction).
    HotItem {
        /// The window's end.
        window_end: u64,
        /// The auction.
        auction: u64,
        /// Its bids in the window.
        bids: u64,
    },
    /// q7: the highest bid of a tumbling window (ties: the smallest auction, then bidder).
    HighestBid {
        /// The window's end.
        window_end: u64,
        /// The auction.
        auction: u64,
        /// The bidder.
        bidder: u64,
        /// The price.
        price: u64,
    },
    /// q8: a person who opened an auction in the tumbling window in which they registered.
    NewUser {
        /// The window's start.
        window_start: u64,
        /// The person's id.
        person: u64,
        /// The person's name.
        name: String,
    },
    /// q11: a bidder's session: bids no more than the gap apart.
    Session {
        /// The bidder.
        bidder: u64,
        /// The first bid's time.
        start: u64,
        /// The last bid's time plus the gap.
        end: u64,
        /// Bids in the session.
        bids: u64,
    },
}

/// The NEXMark workload: one query and its window parameters.
///
/// ```
/// use tidemark::workloads::nexmark::{Nexmark, Query};
/// let q5 = Nexmark::new(Query::Q5);
/// assert_eq!((q5.window_ns, q5.slide_ns), (10_000_000_000, 2_000_000_000));
/// assert!(q5.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nexmark {
    /// The query to run.
    pub query: Query,
    /// Window size (ns): q5's sliding windows, q7's and q8's tumbling windows.
    pub window_ns: u64,
    /// Slide of q5's sliding windows (ns).
    pub slide_ns: u64,
    /// Session gap of q11 (ns).
    pub gap_ns: u64,
}

impl Nexmark {
    /// Default window size: 10 s.
    pub const DEFAULT_WINDOW_NS: u64 = 10_000_000_000;
    /// Default slide of q5's windows: 2 s.
    pub const DEFAULT_SLIDE_NS: u64 = 2_000_000_000;
    /// Default session gap of q11: 10 s.
    pub const DEFAULT_GAP_NS: u64 = 10_000_000_000;

    /// `query` with the default window size, slide and gap.
    pub fn new(query: Query) -> Nexmark {
        Nexmark {
            query,
            window_ns: Self::DEFAULT_WINDOW_NS,
            slide_ns: Self::DEFAULT_SLIDE_NS,
            gap_ns: Self::DEFAULT_GAP_NS,
        }
    }

    /// Checks the windows the query uses: positive sizes, and a slide no longer than q5's
    /// window.
    pub fn validate(&self) -> Result<(), WindowSpecError> {
        (self.query.definition().windows)(self)
    }
}

/// `tidemark bench nexmark`'s own flags (with the shared `--window`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct NexmarkFlags {
    /// NEXMark: the query (q0-q9, q11; --engine differential: q3, q4, q6, q9) [default: q7].
    #[arg(long)]
    pub query: Option<String>,
    /// NEXMark: sliding-window slide (q5) [default: 2s].
    #[arg(long, value_parser = crate::units::parse_nanos)]
    pub slide: Option<u64>,
    /// NEXMark: session gap (q11) [default: 10s].
    #[arg(long, value_parser = crate::units::parse_nanos)]
    pub gap: Option<u64>,
}

impl Registered for Nexmark {
    type Flags = NexmarkFlags;
    const SHARED: &'static [&'static str] = &["window"];

    fn given(flags: &NexmarkFlags) -> Vec<&'static str> {
        [
            ("query", flags.query.is_some()),
            ("slide", flags.slide.is_some()),
            ("gap", flags.gap.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }

    /// q7 with 10 s windows, 2 s slides and 10 s gaps unless given; the windows the query uses
    /// are checked ([`Nexmark::validate`]).
    fn from_flags(flags: &NexmarkFlags, shared: &SharedFlags) -> Result<Nexmark, FlagError> {
        let query: Query = flags
            .query
            .as_deref()
            .unwrap_or("q7")
            .parse()
            .map_err(|e| FlagError(format!("--query: {e}")))?;
        let nexmark = Nexmark {
            query,
            window_ns: shared.window.unwrap_or(Nexmark::DEFAULT_WINDOW_NS),
            slide_ns: flags.slide.unwrap_or(Nexmark::DEFAULT_SLIDE_NS),
            gap_ns: flags.gap.unwrap_or(Nexmark::DEFAULT_GAP_NS),
        };
        nexmark.validate().map_err(|e| FlagError(e.to_string()))?;
        Ok(nexmark)
    }
}

/// One worker's share of the NEXMark event stream, with times in nanoseconds.
pub struct Events {
    inner: EventGenerator,
}

impl Iterator for Events {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        let mut event = self.inner.next()?;
        match &mut event {
            Event::Person(person) => person.date_time *= NS_PER_MS,
            Event::Auction(auction) => {
                auction.date_time *= NS_PER_MS;
                auction.expires *= NS_PER_MS;
            }
            Event::Bid(bid) => bid.date_time *= NS_PER_MS,
        }
        Some(event)
    }
}

/// The generator's configuration for `seed`: the crate's defaults, with a fixed base time.
fn config(seed: u64) -> NexmarkConfig {
    NexmarkConfig {
        base_time: 0,
        first_event_id: (seed % SEEDS) as usize * EVENTS_PER_SEED,
        ..NexmarkConfig::default()
    }
}

/// The single-threaded NEXMark baseline: the query's hand-written state machine.
pub struct NexmarkBaseline(Box<dyn Baseline<Event, Output>>);

impl Baseline<Event, Output> for NexmarkBaseline {
    fn process(&mut self, events: &mut Vec<Event>, out: &mut Vec<Output>) {
        self.0.process(events, out);
    }

    fn advance(&mut self, frontier: u64, out: &mut Vec<Output>) {
        self.0.advance(frontier, out);
    }
}

impl Workload for Nexmark {
    type Event = Event;
    type Output = Output;
    type Generator = Events;
    type Baseline = NexmarkBaseline;

    fn name(&self) -> &'static str {
        "nexmark"
    }

    fn query(&self) -> String {
        self.query.name().to_string()
    }

    fn parameters(&self) -> String {
        format!(
            "query={} window_ns={} slide_ns={} gap_ns={}",
            self.query, self.window_ns, self.slide_ns, self.gap_ns
        )
    }

    fn generator(&self, seed: u64, worker: usize, workers: usize) -> Events {
        let inner = EventGenerator::new(config(seed))
            .with_offset(worker as u64)
            .with_step(workers as u64);
        Events { inner }
    }

    fn event_time(event: &Event) -> u64 {
        event.timestamp()
    }

    fn set_event_time(event: &mut Event, time_ns: u64) {
        match event {
            Event::Person(person) => person.date_time = time_ns,
            Event::Auction(auction) => {
                auction.expires = time_ns + (auction.expires - auction.date_time);
                auction.date_time = time_ns;
            }
            Event::Bid(bid) => bid.date_time = time_ns,
        }
    }

    fn dataflow<'scope>(
        &self,
        events: StreamVec<'scope, u64, Event>,
    ) -> StreamVec<'scope, u64, Output> {
        (self.query.definition().dataflow)(self, events)
    }

    fn has_incremental(&self) -> bool {
        self.query.has_incremental()
    }

    fn incremental<'scope>(
        &self,
        events: StreamVec<'scope, u64, Event>,
    ) -> Option<VecCollection<'scope, u64, Output>> {
        let view = self.query.definition().incremental?;
        Some(view(self, events))
    }

    fn baseline(&self) -> NexmarkBaseline {
        NexmarkBaseline((self.query.definition().baseline)(self))
    }
}
