//! Word count: a keyed running count of words, one updated count per word per epoch.
//!
//! Words are ids drawn from a vocabulary with a skewed (approximately Zipfian, exponent 1)
//! distribution, from a seeded splitmix64 stream: realistic skew without string handling,
//! which would measure the allocator rather than the engine.

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

use super::ysb::splitmix;
use super::{bounded, worker_seed, Baseline, FlagError, Registered, SharedFlags, Workload};
use crate::keyed::{KeyBy, Reduce};
use crate::partition::Scheme;
use crate::stash::Checkpoints;

/// One word occurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Word {
    /// The word's id.
    pub word: u64,
    /// Event time (ns).
    pub time: u64,
}

/// The largest vocabulary (`--words`): word ranks are drawn through an `f64`, exact to 2^53.
pub const MAX_WORDS: u64 = 1 << 53;

/// `tidemark bench wordcount`'s own flags (with the shared `--partitioner`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct WordCountFlags {
    /// Word count: vocabulary size, 1 to 2^53 [default: 100000].
    #[arg(long)]
    pub words: Option<u64>,
}

impl Registered for WordCount {
    type Flags = WordCountFlags;
    const SHARED: &'static [&'static str] = &["partitioner"];

    fn given(flags: &WordCountFlags) -> Vec<&'static str> {
        flags.words.map(|_| "words").into_iter().collect()
    }

    fn from_flags(flags: &WordCountFlags, shared: &SharedFlags) -> Result<WordCount, FlagError> {
        let words = bounded("words", flags.words, MAX_WORDS)?;
        Ok(WordCount {
            words: words.unwrap_or(WordCount::default().words),
            partitioner: shared.partitioner,
        })
    }
}

/// The word count workload.
#[derive(Clone, Debug)]
pub struct WordCount {
    /// Vocabulary size.
    pub words: u64,
    /// How words are spread over workers. Word ids are popularity ranks, so `Range` puts the
    /// most frequent words on the first worker (skew); `Random` aggregates in two phases.
    pub partitioner: Scheme,
}

impl Default for WordCount {
    fn default() -> Self {
        WordCount {
            words: 100_000,
            partitioner: Scheme::Hash,
        }
    }
}

/// A worker's words.
pub struct Words {
    state: u64,
    words: u64,
}

impl Iterator for Words {
    type Item = Word;
    fn next(&mut self) -> Option<Word> {
        // Inverse transform of a 1/x density over [1, words]: rank = words^u.
        let u = (splitmix(&mut self.state) >> 11) as f64 / (1u64 << 53) as f64;
        let rank = (self.words as f64).powf(u) as u64;
        Some(Word {
            word: rank.clamp(1, self.words) - 1,
            time: 0,
        })
    }
}

/// One output row: (word, running count).
pub type Counted = (u64, u64);

impl Workload for WordCount {
    type Event = Word;
    type Output = Counted;
    const NAME: &'static str = "wordcount";

    fn parameters(&self) -> String {
        format!(
            "words={} partitioner={}",
            self.words,
            self.partitioner.name()
        )
    }
    fn generator(
        &self,
        seed: u64,
        worker: usize,
        workers: usize,
    ) -> impl Iterator<Item = Word> + use<> {
        Words {
            state: worker_seed(seed, worker, workers),
            words: self.words.max(1),
        }
    }
    fn event_time(event: &Word) -> u64 {
        event.time
    }
    fn set_event_time(event: &mut Word, time_ns: u64) {
        event.time = time_ns;
    }

    fn has_checkpoints(&self) -> bool {
        true
    }

    /// `map(word, 1) . key_by(word) . reduce(+)`, the rolling count snapshotting its counts at
    /// each cut.
    fn checkpointed<'scope>(
        &self,
        events: StreamVec<'scope, u64, Word>,
        checkpoints: &Checkpoints,
    ) -> StreamVec<'scope, u64, Counted> {
        let partitioner = self
            .partitioner
            .for_domain(self.words.max(1), events.scope().peers());
        events
            .map(|w: Word| (w.word, 1u64))
            .key_by(partitioner)
            .checkpoints(checkpoints)
            .named("wordcount count per word")
            .reduce(|count, n| *count += n)
    }

    fn baseline(&self) -> Box<dyn Baseline<Word, Counted>> {
        Box::<WordCountBaseline>::default()
    }
}

/// The hand-written word count: running counts, and the words touched in the open epoch.
#[derive(Default)]
pub struct WordCountBaseline {
    counts: HashMap<u64, u64>,
    touched: HashMap<u64, ()>,
}

impl Baseline<Word, Counted> for WordCountBaseline {
    fn process(&mut self, events: &mut Vec<Word>, _out: &mut Vec<Counted>) {
        for w in events.drain(..) {
            *self.counts.entry(w.word).or_insert(0) += 1;
            self.touched.insert(w.word, ());
        }
    }

    fn advance(&mut self, _frontier: u64, out: &mut Vec<Counted>) {
        // The harness advances at epoch boundaries: the open epoch is complete.
        out.extend(
            self.touched
                .drain()
                .map(|(word, ())| (word, self.counts[&word])),
        );
    }
}
