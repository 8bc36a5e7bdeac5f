//! NEXMark's events as compact, copyable structs: the fields the queries read, with the
//! person's name, city and state as [`Word`]s of the generator's fixed vocabulary.
//!
//! The `nexmark` crate's events carry up to eight heap strings each (names, addresses, item
//! descriptions, channels, URLs, padding). The harness replays a pool of events, so every event
//! sent would clone them, on the engine's side and on the baseline's alike. Here the pool is
//! converted once, when it is generated: the strings no query reads (e-mail, credit card, item
//! name, description, channel, URL and the `extra` padding) are dropped, and the ones q3 and q8
//! report are looked up in the vocabulary the crate draws them from (its configuration's first
//! names x last names, US cities and US states), so that an event is plain data (`Copy`) and a
//! word is a small index that means the same in every process.

use std::sync::LazyLock;

use hashbrown::HashMap;
use nexmark::config::NexmarkConfig;
use serde::{Deserialize, Serialize};

/// A word of the generator's vocabulary: a person's full name (`"first last"`), a city or a
/// state, as an index into [`Word::as_str`]'s table. The table is built from the crate's
/// default configuration, which the workload always uses, so an index means the same word in
/// every worker and process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Word(u16);

/// Every word the generator can emit, and the index of each.
struct Vocabulary {
    words: Vec<String>,
    index: HashMap<String, u16>,
}

/// Built on first use from the crate's default lists (a few hundred words).
static VOCABULARY: LazyLock<Vocabulary> = LazyLock::new(|| {
    let config = NexmarkConfig::default();
    let names = config.first_names.iter().flat_map(|first| {
        config
            .last_names
            .iter()
            .map(move |last| format!("{first} {last}"))
    });
    let words: Vec<String> = names
        .chain(config.us_cities.iter().cloned())
        .chain(config.us_states.iter().cloned())
        .collect();
    let index = words
        .iter()
        .enumerate()
        .map(|(i, word)| {
            let i = u16::try_from(i).expect("the vocabulary has a few hundred words");
            (word.clone(), i)
        })
        .collect();
    Vocabulary { words, index }
});

impl Word {
    /// The word for `text`, if the generator's vocabulary has it.
    ///
    /// ```
    /// use tidemark::workloads::nexmark::Word;
    /// assert_eq!(Word::of("boise").map(Word::as_str), Some("boise"));
    /// assert_eq!(Word::of("peter noris").map(Word::as_str), Some("peter noris"));
    /// assert_eq!(Word::of("atlantis"), None);
    /// ```
    pub fn of(text: &str) -> Option<Word> {
        VOCABULARY.index.get(text).copied().map(Word)
    }

    /// The word's text.
    pub fn as_str(self) -> &'static str {
        &VOCABULARY.words[usize::from(self.0)]
    }

    /// The word for a string the generator produced: its lists are the vocabulary.
    fn generated(text: &str) -> Word {
        Word::of(text).unwrap_or_else(|| {
            panic!("the generator draws {text:?} from its configuration's lists, the vocabulary")
        })
    }
}

/// A NEXMark event. Times are nanoseconds; ids and prices (cents) are as generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A person registered.
    Person(Person),
    /// An auction opened.
    Auction(Auction),
    /// A bid.
    Bid(Bid),
}

/// A person who registered: the fields q0, q3 and q8 read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// The person's id.
    pub id: u64,
    /// Full name (`"first last"`).
    pub name: Word,
    /// City.
    pub city: Word,
    /// State, two lower-case letters.
    pub state: Word,
    /// Event time (ns).
    pub date_time: u64,
}

/// An auction that opened: the fields q0, q3, q4, q6, q8 and q9 read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auction {
    /// The auction's id.
    pub id: u64,
    /// The id of the person selling.
    pub seller: u64,
    /// The category's id.
    pub category: u64,
    /// The lowest price (cents) at which the auction has a winner.
    pub reserve: u64,
    /// Event time (ns): when the auction opens.
    pub date_time: u64,
    /// When it closes (ns): bids at or after this time do not count.
    pub expires: u64,
}

/// A bid on an auction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The auction bid on.
    pub auction: u64,
    /// The id of the person bidding.
    pub bidder: u64,
    /// The price (cents).
    pub price: u64,
    /// Event time (ns).
    pub date_time: u64,
}

impl Event {
    /// The event's time (ns).
    pub fn timestamp(&self) -> u64 {
        match self {
            Event::Person(person) => person.date_time,
            Event::Auction(auction) => auction.date_time,
            Event::Bid(bid) => bid.date_time,
        }
    }

    /// The crate's event in compact form, with times multiplied by `scale` (the crate's
    /// milliseconds to the workload's nanoseconds). Ids and prices are `usize` in the crate and
    /// fit `u64` on every platform Rust supports.
    pub(super) fn compact(event: nexmark::event::Event, scale: u64) -> Event {
        match event {
            nexmark::event::Event::Person(p) => Event::Person(Person {
                id: p.id as u64,
                name: Word::generated(&p.name),
                city: Word::generated(&p.city),
                state: Word::generated(&p.state),
                date_time: p.date_time * scale,
            }),
            nexmark::event::Event::Auction(a) => Event::Auction(Auction {
                id: a.id as u64,
                seller: a.seller as u64,
                category: a.category as u64,
                reserve: a.reserve as u64,
                date_time: a.date_time * scale,
                expires: a.expires * scale,
            }),
            nexmark::event::Event::Bid(b) => Event::Bid(Bid {
                auction: b.auction as u64,
                bidder: b.bidder as u64,
                price: b.price as u64,
                date_time: b.date_time * scale,
            }),
        }
    }
}
