//! Windowed aggregations as differential collections: tumbling, sliding and session windows
//! whose results are updated, with retractions, as records arrive or are retracted.
//!
//! # Semantics
//!
//! The input is a collection of `(key, record)` at logical times that are the stream's
//! watermark, as for the final operators (see [`crate::window`]). An update of a record with
//! event time `ts` at logical time `T` meets each window `w` containing `ts` (for sessions, the
//! session it merges into, given the updates counted before it, joining only sessions still
//! kept at `T`, `end + L > T`: Flink's rule for merging windows, see
//! [`crate::window::session`]) under the same rule as the final operators:
//!
//! * `T < end(w) + L` (`L` the allowed lateness): the update counts in `w`; the view changes at
//!   `T`, whether `w` has ended or not (a late record within the lateness is an ordinary update,
//!   a correction);
//! * otherwise it is *late* for `w` and goes to [`View::late`], once per window missed.
//!
//! So, for the same input, the consolidated [`View::results`] equal the consolidated changelog
//! of the final operators, for every number of workers and every batching. For sessions the
//! order of updates matters: each carries its time and its number, its position in the input
//! where one is given ([`WindowedCollection::window_view_ordered`], for inputs that several
//! workers read), else its number on the worker it entered on (the input order, where one
//! worker reads the input), and the view replays a key's updates in that order.
//!
//! # Bounded state
//!
//! No update counts in a tumbling or sliding window `w` at or after `end(w) + L`. Each counted
//! update is therefore matched by its negation delayed to `end(w) + L` ([`delay_to`]): at that
//! time the window's input is empty again, the arrangements compact it away, and the state of
//! the view holds only windows that can still change. The view's own retraction of the window's
//! value at `end(w) + L` is an artefact of that retirement, not a change of the answer, and is
//! filtered from `results`. Sessions keep their records: the reduce recomputes a key's
//! sessions, forgotten ones included, by replaying all its updates in order. Their state grows with the number of records; the final
//! operator's session state does not (it frees forgotten sessions).
//!
//! # Retractions in the input
//!
//! A record's diff may be negative (the input retracts an earlier record). A window whose
//! records have a negative total multiplicity (more retractions than insertions of some record)
//! has no meaningful aggregate: it appears in [`View::invalid`] instead of `results`.
//!
//! A retraction meets the windows its insertion met: for a tumbling or sliding window the rule
//! above gives that (the retraction's time is at or after its insertion's, so a window the
//! insertion missed, the retraction misses too). A session view replays the record's copies and
//! cancels one where it went (a kept session, a forgotten one, or the window a late insertion
//! missed; see `sessions`), so a retraction of a late insertion is late for the same window
//! even where a session formed since would take the record now, and a retraction that cancels
//! no copy is reported in `invalid`, late or not. A tumbling or sliding window's input is
//! retired at `end + L`, so a retraction that arrives later is late whether or not its record
//! was ever inserted: it is not checked.

use std::collections::BTreeMap;
use std::hash::Hash;

use differential_dataflow::operators::arrange::arrangement::{arrange_core, Arranged};
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::trace::implementations::{ValBatcher, ValBuilder, ValSpine};
use differential_dataflow::{ExchangeData, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::vec::{Broadcast, Filter, Map, Partition};
use timely::dataflow::operators::Exchange as _;

use super::updates::delay_to;
use crate::keyed::{owns, Routing};
use crate::partition::{route_hash, Partitioner};
use crate::window::kind::WithKind;
use crate::window::{Aggregator, Late, Panes, Window, WindowAssigner};
use differential_dataflow::AsCollection;

/// The incremental view of a windowed aggregation; see the module documentation.
pub struct View<'scope, K: 'static, V: 'static, O: 'static> {
    /// `(window, key, value)`: the current aggregate of each window and key.
    pub results: VecCollection<'scope, u64, (Window, K, O)>,
    /// Records late beyond the allowed lateness, once per window missed.
    pub late: VecCollection<'scope, u64, Late<K, V>>,
    /// Windows of keys whose input retracts more copies of a record than it inserted.
    pub invalid: VecCollection<'scope, u64, (Window, K)>,
}

/// An aggregate, or the finding that the input retracted more than it inserted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Outcome<O> {
    Value(O),
    Negative,
}

/// Windowed aggregation of a collection of `(key, record)` pairs.
pub trait WindowedCollection<'scope, K: ExchangeData + Hash, V: ExchangeData + Hash>:
    Into<VecCollection<'scope, u64, (K, V)>>
{
    /// The incremental view of `agg` over the windows of `assigner`, with records placed in
    /// time by `time` (event time, in the unit of the logical timestamps) and an allowed
    /// lateness of `lateness`.
    ///
    /// The keyed state is spread over workers by `partitioner`; results are identical for
    /// every partitioner (`Partitioner::Hash` is the usual choice):
    ///
    /// * `Hash`, `Range`: each key's state lives on the worker the partitioner routes it to;
    /// * `Random`: two phases, as in the final path: updates are first spread evenly over the
    ///   workers (by a hash of the whole update, so that a retraction meets the insertion it
    ///   cancels), then exchanged by the key's hash into the keyed state;
    /// * `Broadcast`: every worker receives every update and keeps the keys it owns (those that
    ///   hash to it), so each key's state and results appear once.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use tidemark::incremental::WindowedCollection;
    /// use tidemark::partition::Partitioner;
    /// use tidemark::window::{Count, Window, WindowAssigner};
    ///
    /// let captured = timely::example(|scope| {
    ///     // (key, event time) at logical time 0.
    ///     let (_input, events) = scope.new_collection_from(vec![('a', 1u64), ('a', 4), ('b', 12)]);
    ///     let view = events.window_view(
    ///         Partitioner::Hash, WindowAssigner::Tumbling(10), 0, |ts: &u64| *ts, Count,
    ///     );
    ///     view.results.inner.capture()
    /// });
    /// let mut rows: Vec<_> = captured.extract().into_iter().flat_map(|(_, u)| u).collect();
    /// rows.sort();
    /// assert_eq!(rows, vec![
    ///     ((Window { start: 0, end: 10 }, 'a', 2), 0, 1),
    ///     ((Window { start: 10, end: 20 }, 'b', 1), 0, 1),
    /// ]);
    /// ```
    fn window_view<A, F>(
        self,
        partitioner: Partitioner<K>,
        assigner: WindowAssigner,
        lateness: u64,
        time: F,
        agg: A,
    ) -> View<'scope, K, V, A::Output>
    where
        A: Aggregator<V>,
        A::Output: ExchangeData + Ord,
        F: Fn(&V) -> u64 + Clone + 'static,
    {
        assigner.with_kind(ViewOf {
            input: self.into(),
            partitioner,
            lateness,
            time,
            order: None,
            agg,
        })
    }

    /// As [`WindowedCollection::window_view`], with updates that share a time replayed in the
    /// order of `order`, a record's position in the input, instead of the order they entered
    /// the dataflow in on each worker: where several workers read one input, that order
    /// depends on which worker read which record (see
    /// [`crate::keyed::window::WindowedStream::ordered_by`]). Only sessions depend on it.
    fn window_view_ordered<A, F>(
        self,
        partitioner: Partitioner<K>,
        assigner: WindowAssigner,
        lateness: u64,
        (time, order): (F, fn(&V) -> u64),
        agg: A,
    ) -> View<'scope, K, V, A::Output>
    where
        A: Aggregator<V>,
        A::Output: ExchangeData + Ord,
        F: Fn(&V) -> u64 + Clone + 'static,
    {
        assigner.with_kind(ViewOf {
            input: self.into(),
            partitioner,
            lateness,
            time,
            order: Some(order),
            agg,
        })
    }
}

impl<'scope, K: ExchangeData + Hash, V: ExchangeData + Hash> WindowedCollection<'scope, K, V>
    for VecCollection<'scope, u64, (K, V)>
{
}

/// A view waiting for its window kind ([`crate::window::kind`]).
struct ViewOf<'scope, K: 'static, V: 'static, A, F> {
    input: VecCollection<'scope, u64, (K, V)>,
    partitioner: Partitioner<K>,
    lateness: u64,
    time: F,
    /// The input order of records, where it is not the order they entered in on each worker.
    order: Option<fn(&V) -> u64>,
    agg: A,
}

/// One update of a view's outputs, before they are split into [`View`]'s three collections.
#[derive(Clone)]
enum Row<K, V, O> {
    Result(Window, K, O),
    Invalid(Window, K),
    Late(Late<K, V>),
}

impl<K, V, O> Row<K, V, O> {
    /// The row of a window's aggregate (or of its finding that the input retracted too much).
    fn aggregate(window: Window, key: K, outcome: Outcome<O>) -> Self {
        match outcome {
            Outcome::Value(value) => Row::Result(window, key, value),
            Outcome::Negative => Row::Invalid(window, key),
        }
    }
}

/// Splits `rows` into the view's three collections, in one pass.
fn split_view<'scope, K, V, O>(
    rows: VecCollection<'scope, u64, Row<K, V, O>>,
) -> View<'scope, K, V, O>
where
    K: ExchangeData,
    V: ExchangeData,
    O: ExchangeData,
{
    let part = |row: &Row<K, V, O>| match row {
        Row::Result(..) => 0,
        Row::Invalid(..) => 1,
        Row::Late(_) => 2,
    };
    let mut parts = rows
        .inner
        .partition(3, move |update| (part(&update.0), update))
        .into_iter()
        .map(|part| part.as_collection());
    let mut next = || parts.next().expect("partition gives three parts");
    View {
        results: next().flat_map(|row| match row {
            Row::Result(window, key, value) => Some((window, key, value)),
            _ => None,
        }),
        invalid: next().flat_map(|row| match row {
            Row::Invalid(window, key) => Some((window, key)),
            _ => None,
        }),
        late: next().flat_map(|row| match row {
            Row::Late(late) => Some(late),
            _ => None,
        }),
    }
}

impl<'scope, K, V, A, F> WithKind for ViewOf<'scope, K, V, A, F>
where
    K: ExchangeData + Hash,
    V: ExchangeData + Hash,
    A: Aggregator<V>,
    A::Output: ExchangeData + Ord,
    F: Fn(&V) -> u64 + Clone + 'static,
{
    type Out = View<'scope, K, V, A::Output>;

    /// Tumbling and sliding windows: each counted update is matched by its negation at the end
    /// of the window's lateness; see the module documentation.
    fn fixed(self, panes: Panes) -> Self::Out {
        let (lateness, time, agg) = (self.lateness, self.time, self.agg);
        let counts = move |w: &Window, t: u64| t < w.end.saturating_add(lateness);
        // Each update's windows, found once: counted ones enter the aggregation, the others
        // are late.
        let mut assigned = self
            .input
            .inner
            .flat_map(move |((key, record), t, r)| {
                panes
                    .windows_of(time(&record))
                    .map(|window| {
                        let (key, record) = (key.clone(), record.clone());
                        let row = if counts(&window, t) {
                            Ok(((window, key), record))
                        } else {
                            Err(Late {
                                window,
                                key,
                                record,
                            })
                        };
                        (row, t, r)
                    })
                    .collect::<Vec<_>>()
            })
            .partition(2, |(row, t, r)| (u64::from(row.is_err()), (row, t, r)))
            .into_iter();
        let counted = assigned.next().expect("partition gives two parts");
        let late = assigned.next().expect("partition gives two parts");
        let counted = counted
            .flat_map(|(row, t, r)| row.ok().map(|row| (row, t, r)))
            .as_collection();
        let late = late
            .flat_map(|(row, t, r)| row.err().map(|late| (Row::Late(late), t, r)))
            .as_collection();
        let retired = delay_to(counted.clone().negate(), move |((w, _), _)| {
            w.end.saturating_add(lateness)
        });
        let aggregates = reduce_placed(
            counted.concat(retired),
            &self.partitioner,
            |(_, key): &(Window, K)| key,
            "WindowAggregate",
            move |_key, records: &[(&V, isize)], output| output.push((aggregate(&agg, records), 1)),
        );
        // The retirement's retraction of each window's value is not a change of the
        // answer: keep only updates from before the window expired.
        let live = aggregates
            .inner
            .flat_map(move |(((w, key), outcome), t, r)| {
                counts(&w, t).then(|| (Row::aggregate(w, key, outcome), t, r))
            })
            .as_collection();
        split_view(live.concat(late))
    }

    /// Sessions: each key's updates replayed in order; see the module documentation.
    fn sessions(self, gap: u64) -> Self::Out {
        let ViewOf {
            input,
            time,
            order,
            agg,
            ..
        } = self;
        let lateness = self.lateness;
        // Lateness depends on the order of records (Flink's rule for merging windows):
        // each update carries its time and its number, and the reduce replays them in order.
        // The number is the record's position in the input where one is given (several
        // workers read the input), else its number on the worker it entered on (the reading
        // worker sees the input order).
        let mut counter = (input.inner.scope().index() as u64) << 40;
        let keyed = input
            .inner
            .map(move |((key, record), t, r)| {
                counter += 1;
                let seq = order.map_or(counter, |order| order(&record));
                let ts = time(&record);
                ((key, (t, seq, ts, record)), t, r)
            })
            .as_collection();
        let sessions = reduce_placed(
            keyed,
            &self.partitioner,
            |key: &K| key,
            "Sessions",
            move |_key, updates: &[(&Arrival<V>, isize)], output| {
                sessions(gap, lateness, &agg, updates, output)
            },
        );
        let rows = sessions.map(|(key, out)| match out {
            SessionOut::Session(window, outcome) => Row::aggregate(window, key, outcome),
            SessionOut::Late(window, _, record) => Row::Late(Late {
                window,
                key,
                record,
            }),
        });
        split_view(rows)
    }
}

/// `reduce_named`, with the keyed state placed by `partitioner` on the key `key_of` reads from
/// the reduce's key; see [`WindowedCollection::window_view`].
fn reduce_placed<'scope, KK, K, V, V2, L>(
    input: VecCollection<'scope, u64, (KK, V)>,
    partitioner: &Partitioner<K>,
    key_of: fn(&KK) -> &K,
    name: &str,
    logic: L,
) -> VecCollection<'scope, u64, (KK, V2)>
where
    KK: ExchangeData + Hash,
    K: ExchangeData + Hash,
    V: ExchangeData + Hash,
    V2: differential_dataflow::Data,
    L: FnMut(&KK, &[(&V, isize)], &mut Vec<(V2, isize)>) + 'static,
{
    let scope = input.inner.scope();
    let routing = Routing::plan(partitioner.clone(), scope.peers(), scope.index());
    let arrange_name = format!("Arrange: {name}");
    let name = name.to_owned();
    let reduce = move |arranged: Arranged<'scope, TraceAgent<ValSpine<KK, V, u64, isize>>>| {
        let mut logic = logic;
        arranged
            .reduce_abelian::<_, ValBuilder<KK, V2, u64, isize>, ValSpine<KK, V2, u64, isize>, _, _>(
                &name,
                move |key, input, output| logic(key, input, output),
                |vec, key, updates| {
                    vec.clear();
                    vec.extend(updates.drain(..).map(|(v, t, r)| ((key.clone(), v), t, r)));
                },
            )
            .as_collection(|k, v| (k.clone(), v.clone()))
    };
    // The stream the arrangement reads, and the partitioner its exchange routes keys by
    // (`None`: no exchange).
    let (stream, by_key) = match routing {
        Routing::Local => (input.inner, None),
        Routing::ByKey(partitioner) => (input.inner, Some(partitioner)),
        // Phase one: spread by the whole update, so a retraction meets its insertion; phase
        // two is the arrangement's exchange by the key's hash.
        Routing::TwoPhase => (
            input
                .inner
                .exchange(|((kk, v), _, _): &((KK, V), u64, isize)| route_hash(&(kk, v))),
            Some(Partitioner::Random),
        ),
        Routing::Everywhere { peers, index } => {
            let mine = input
                .inner
                .broadcast()
                .filter(move |((kk, _), _, _)| owns(key_of(kk), peers, index));
            (mine, None)
        }
    };
    match by_key {
        None => reduce(arrange_core::<_, _, ValBatcher<KK, V, u64, isize>, _>(
            stream,
            Pipeline,
            &arrange_name,
            ValBatcher::new,
        )),
        Some(partitioner) => {
            let pact = Exchange::new(move |((kk, _), _, _): &((KK, V), u64, isize)| {
                partitioner.route(key_of(kk))
            });
            reduce(arrange_core::<_, _, ValBatcher<KK, V, u64, isize>, _>(
                stream,
                pact,
                &arrange_name,
                ValBatcher::new,
            ))
        }
    }
}

/// The aggregate of a multiset of records, given as records with positive multiplicities.
fn aggregate<V, A: Aggregator<V>>(agg: &A, records: &[(&V, isize)]) -> Outcome<A::Output> {
    let mut acc = agg.init();
    for (record, copies) in records {
        if *copies < 0 {
            return Outcome::Negative;
        }
        agg.add_copies(&mut acc, record, *copies as u64);
    }
    Outcome::Value(agg.finish(&acc))
}

/// An update of a session view's input: `(time, number, event time, record)`, ordered as the
/// updates are applied (by time, then by the number the entering worker gave it).
type Arrival<V> = (u64, u64, u64, V);

/// What the session reduce emits per key: a session and its aggregate, or a late update (the
/// session it missed, its number, the record), whose multiplicity is the update's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum SessionOut<O, V> {
    Session(Window, Outcome<O>),
    Late(Window, u64, V),
}

/// Replays one key's updates in order under Flink's rule for merging windows (see
/// [`crate::window::session`]): an update at time `T` meets the sessions kept at `T`
/// (`end + lateness > T`; the others are forgotten, never merged again), and is late iff the
/// session it merges into ends at or before `T` minus the lateness. Every session formed,
/// forgotten or kept, is aggregated.
///
/// A session is the run of its counted records' times, each less than `gap` after the
/// previous: a merge joins one run, and a retraction that removes a record's last copy may cut
/// its session in two. A retraction cancels copies of its record where they went, each copy
/// once, in this order: in the kept session that counts it; late for a forgotten session that
/// counts it; late for the window that a late insertion of the record missed (the earliest
/// such insertion first), even where a session formed since would take the record now.
/// A retraction with no copy left to cancel is an over-retraction: counted, it makes its
/// session [`Outcome::Negative`]; late, it is reported as a negative session of the window it
/// missed, since it would otherwise pass as a late row. Each update costs a walk over the kept
/// sessions and its session.
fn sessions<V: Clone + Ord, A: Aggregator<V>>(
    gap: u64,
    lateness: u64,
    agg: &A,
    updates: &[(&Arrival<V>, isize)],
    output: &mut Vec<(SessionOut<A::Output, V>, isize)>,
) {
    // A session's records by (event time, record), with their multiplicities (never zero).
    type Members<'a, V> = BTreeMap<(u64, &'a V), isize>;
    let end_of = |members: &Members<V>| {
        let last = members.keys().next_back().map_or(0, |(ts, _)| *ts);
        last.saturating_add(gap)
    };
    let start_of = |members: &Members<V>| members.keys().next().map_or(0, |(ts, _)| *ts);
    // Kept sessions, pairwise disjoint, and forgotten ones, each with the copies of its
    // records that retractions have cancelled since.
    let mut kept: Vec<Members<V>> = Vec::new();
    let mut forgotten: Vec<(Members<V>, Members<V>)> = Vec::new();
    // Late insertions not yet cancelled, per record: the window each missed and its copies,
    // in input order.
    let mut late_copies: BTreeMap<(u64, &V), Vec<(Window, isize)>> = BTreeMap::new();
    for ((time, seq, ts, record), copies) in updates {
        let mut copies = *copies;
        // Updates come in time order, so a session forgotten at `time` stays forgotten.
        let (gone, still): (Vec<_>, Vec<_>) = std::mem::take(&mut kept)
            .into_iter()
            .partition(|members| end_of(members).saturating_add(lateness) <= *time);
        forgotten.extend(gone.into_iter().map(|members| (members, Members::new())));
        kept = still;
        let member = (*ts, record);
        if copies < 0 {
            // The copies the kept session that counts the record cancels (kept sessions are
            // disjoint: one at most counts it); the rest of the retraction goes on below.
            let in_kept: isize = kept
                .iter()
                .filter_map(|members| members.get(&member))
                .filter(|n| **n > 0)
                .sum();
            let for_kept = (-copies).min(in_kept);
            copies += for_kept;
            // The rest, for copies counted only in forgotten sessions: late for them, which
            // can no longer change (their state is gone, as in Flink), each copy once.
            for (members, cancelled) in &mut forgotten {
                if copies == 0 {
                    break;
                }
                let Some(&counted) = members.get(&member).filter(|n| **n > 0) else {
                    continue;
                };
                let spent = cancelled.entry(member).or_insert(0);
                if counted <= *spent {
                    continue;
                }
                let window = Window {
                    start: start_of(members) as i64,
                    end: end_of(members),
                };
                let now = (-copies).min(counted - *spent);
                output.push((SessionOut::Late(window, *seq, record.clone()), -now));
                *spent += now;
                copies += now;
            }
            // Then for late insertions of the record: late where they were, earliest first.
            if let Some(missed) = late_copies.get_mut(&member) {
                while copies < 0 && !missed.is_empty() {
                    let (window, left) = &mut missed[0];
                    let cancelled = (-copies).min(*left);
                    output.push((SessionOut::Late(*window, *seq, record.clone()), -cancelled));
                    *left -= cancelled;
                    copies += cancelled;
                    if *left == 0 {
                        missed.remove(0);
                    }
                }
                if missed.is_empty() {
                    late_copies.remove(&member);
                }
            }
            // What no copy cancelled is an over-retraction, counted with the kept share.
            copies -= for_kept;
            if copies == 0 {
                continue;
            }
        }
        let own_end = ts.saturating_add(gap);
        let joins = |members: &Members<V>| start_of(members) < own_end && *ts < end_of(members);
        let (joined, others): (Vec<_>, Vec<_>) =
            std::mem::take(&mut kept).into_iter().partition(joins);
        kept = others;
        let start = joined.iter().map(start_of).fold(*ts, u64::min);
        let end = joined.iter().map(end_of).fold(own_end, u64::max);
        if end.saturating_add(lateness) <= *time {
            let window = Window {
                start: start as i64,
                end,
            };
            if copies > 0 {
                output.push((SessionOut::Late(window, *seq, record.clone()), copies));
                late_copies
                    .entry(member)
                    .or_default()
                    .push((window, copies));
            } else {
                // No copy anywhere to cancel (see above).
                output.push((SessionOut::Session(window, Outcome::Negative), 1));
            }
            kept.extend(joined);
            continue;
        }
        let mut merged: Members<V> = joined.into_iter().flatten().collect();
        let entry = merged.entry(member).or_insert(0);
        *entry += copies;
        if *entry == 0 {
            merged.remove(&member);
        }
        // Cut into runs: one, unless a retraction removed a record that held it together.
        let mut run: Members<V> = BTreeMap::new();
        for (member, copies) in merged {
            if run
                .keys()
                .next_back()
                .is_some_and(|(last, _)| member.0 >= last.saturating_add(gap))
            {
                kept.push(std::mem::take(&mut run));
            }
            run.insert(member, copies);
        }
        if !run.is_empty() {
            kept.push(run);
        }
    }
    for members in forgotten.iter().map(|(members, _)| members).chain(&kept) {
        let window = Window {
            start: start_of(members) as i64,
            end: end_of(members),
        };
        let members: Vec<(&V, isize)> = members.iter().map(|((_, v), c)| (*v, *c)).collect();
        output.push((SessionOut::Session(window, aggregate(agg, &members)), 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Count;

    /// A retraction of two copies where the kept session counts one and a forgotten session
    /// the other cancels both, one in each: no over-retraction.
    #[test]
    fn a_retraction_spills_from_the_kept_session_to_a_forgotten_one() {
        // Gap 10, lateness 0. Record 1 at ts 5 forms [5, 15), forgotten at time 20; then at
        // time 20, ts 20 and ts 14 form [14, 30), which record 1 at ts 5 inserted again joins.
        let updates: Vec<Arrival<u64>> = vec![
            (0, 0, 5, 1),
            (20, 1, 20, 2),
            (20, 2, 14, 3),
            (20, 3, 5, 1),
            (20, 4, 5, 1),
        ];
        let diffs = [1, 1, 1, 1, -2];
        let updates: Vec<(&Arrival<u64>, isize)> = updates.iter().zip(diffs).collect();
        let mut output = Vec::new();
        sessions(10, 0, &Count, &updates, &mut output);
        output.sort();
        let window = |start: i64, end: u64| Window { start, end };
        assert_eq!(
            output,
            vec![
                (SessionOut::Session(window(5, 15), Outcome::Value(1)), 1),
                (SessionOut::Session(window(14, 30), Outcome::Value(2)), 1),
                (SessionOut::Late(window(5, 15), 4, 1), -1),
            ]
        );
    }
}
