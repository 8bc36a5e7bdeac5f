//! The window kinds as types, and the one place that tells them apart.
//!
//! [`WindowAssigner::with_kind`] is the only match on an assigner's variant that decides what an
//! operator builds for it. Everything that differs between kinds is a method of [`WindowKind`]:
//! the keyed state machine of the final path ([`WindowKind::state`]), phase one of the random
//! partitioner ([`WindowKind::phase_one`]) and the differential view
//! ([`WindowKind::view`]). A new kind is a new type implementing [`WindowKind`] and one arm in
//! `with_kind`; the compiler then asks for each of its parts. (The assigner's own geometry,
//! parsing and description, stay on [`WindowAssigner`].)

use std::hash::Hash;

use differential_dataflow::{ExchangeData, VecCollection};
use timely::dataflow::StreamVec;

use super::fixed::{FixedWindows, Part, StateGauge};
use super::partial::{partial_fixed, partial_sessions};
use super::session::Sessions;
use super::state::WindowState;
use super::{Aggregator, Emit, Panes, WindowAssigner};
use crate::incremental::windows::{fixed_view, session_view};
use crate::incremental::View;
use crate::partition::Partitioner;

/// What differs between window kinds, for every operator that runs windows.
pub(crate) trait WindowKind: Copy + 'static {
    /// The keyed state machine the window driver runs for this kind, with the allowed lateness
    /// `lateness`, aggregating with `agg` and reporting its size to `gauge`.
    fn state<K, V, A>(
        self,
        lateness: u64,
        agg: A,
        gauge: StateGauge,
    ) -> impl WindowState<Part = Part<K, V, A::Acc>, Out = Emit<K, A::Output, V>>
    where
        K: Hash + Eq + Ord + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
        V: Clone + 'static,
        A: Aggregator<V>;

    /// Phase one of two-phase aggregation (random partitioning): `(key, record, number)`
    /// folded per worker into partial aggregates, late records and sequenced records; see
    /// [`super::partial`].
    fn phase_one<'scope, K, V, A, T>(
        self,
        stream: StreamVec<'scope, u64, (K, V, u64)>,
        assigner: WindowAssigner,
        lateness: u64,
        event_time: T,
        agg: A,
    ) -> StreamVec<'scope, u64, Part<K, V, A::Acc>>
    where
        K: Hash + Eq + Clone + 'static,
        V: Clone + 'static,
        A: Aggregator<V>,
        T: Fn(&V) -> u64 + 'static;

    /// The differential view of `agg` over `input`; see
    /// [`crate::incremental::WindowedCollection::window_view_partitioned`].
    #[allow(clippy::too_many_arguments)]
    fn view<'scope, K, V, A, F>(
        self,
        input: VecCollection<'scope, u64, (K, V)>,
        partitioner: Partitioner<K>,
        assigner: WindowAssigner,
        lateness: u64,
        time: F,
        agg: A,
    ) -> View<'scope, K, V, A::Output>
    where
        K: ExchangeData + Hash,
        V: ExchangeData + Hash,
        A: Aggregator<V>,
        A::Output: ExchangeData + Ord,
        F: Fn(&V) -> u64 + Clone + 'static;
}

/// A computation generic over the window kind, run by [`WindowAssigner::with_kind`] with the
/// assigner's kind (a closure cannot be generic over a type, so callers implement this).
pub(crate) trait WithKind {
    /// What the computation returns.
    type Out;
    /// Runs the computation for `kind`.
    fn with<W: WindowKind>(self, kind: W) -> Self::Out;
}

impl WindowAssigner {
    /// Runs `f` with this assigner's kind: the one place the variant picks the kind.
    pub(crate) fn with_kind<F: WithKind>(self, f: F) -> F::Out {
        match self {
            WindowAssigner::Tumbling(size) => f.with(Fixed(Panes::new(size, size))),
            WindowAssigner::Sliding(size, slide) => f.with(Fixed(Panes::new(size, slide))),
            WindowAssigner::Session(gap) => f.with(Merging { gap }),
        }
    }
}

/// Tumbling and sliding windows: fixed windows of a pane geometry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fixed(pub(crate) Panes);

/// Session windows: records closer than `gap` merge into one window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Merging {
    pub(crate) gap: u64,
}

impl WindowKind for Fixed {
    fn state<K, V, A>(
        self,
        lateness: u64,
        agg: A,
        gauge: StateGauge,
    ) -> impl WindowState<Part = Part<K, V, A::Acc>, Out = Emit<K, A::Output, V>>
    where
        K: Hash + Eq + Ord + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
        V: Clone + 'static,
        A: Aggregator<V>,
    {
        FixedWindows::new(self.0.size, self.0.slide, lateness, agg, gauge)
    }

    fn phase_one<'scope, K, V, A, T>(
        self,
        stream: StreamVec<'scope, u64, (K, V, u64)>,
        assigner: WindowAssigner,
        lateness: u64,
        event_time: T,
        agg: A,
    ) -> StreamVec<'scope, u64, Part<K, V, A::Acc>>
    where
        K: Hash + Eq + Clone + 'static,
        V: Clone + 'static,
        A: Aggregator<V>,
        T: Fn(&V) -> u64 + 'static,
    {
        partial_fixed(stream, self.0, assigner, lateness, event_time, agg)
    }

    fn view<'scope, K, V, A, F>(
        self,
        input: VecCollection<'scope, u64, (K, V)>,
        partitioner: Partitioner<K>,
        assigner: WindowAssigner,
        lateness: u64,
        time: F,
        agg: A,
    ) -> View<'scope, K, V, A::Output>
    where
        K: ExchangeData + Hash,
        V: ExchangeData + Hash,
        A: Aggregator<V>,
        A::Output: ExchangeData + Ord,
        F: Fn(&V) -> u64 + Clone + 'static,
    {
        fixed_view(input, partitioner, assigner, lateness, time, agg)
    }
}

impl WindowKind for Merging {
    fn state<K, V, A>(
        self,
        lateness: u64,
        agg: A,
        gauge: StateGauge,
    ) -> impl WindowState<Part = Part<K, V, A::Acc>, Out = Emit<K, A::Output, V>>
    where
        K: Hash + Eq + Ord + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
        V: Clone + 'static,
        A: Aggregator<V>,
    {
        Sessions::new(self.gap, lateness, agg, gauge)
    }

    fn phase_one<'scope, K, V, A, T>(
        self,
        stream: StreamVec<'scope, u64, (K, V, u64)>,
        _assigner: WindowAssigner,
        _lateness: u64,
        event_time: T,
        agg: A,
    ) -> StreamVec<'scope, u64, Part<K, V, A::Acc>>
    where
        K: Hash + Eq + Clone + 'static,
        V: Clone + 'static,
        A: Aggregator<V>,
        T: Fn(&V) -> u64 + 'static,
    {
        partial_sessions(stream, self.gap, event_time, agg)
    }

    fn view<'scope, K, V, A, F>(
        self,
        input: VecCollection<'scope, u64, (K, V)>,
        partitioner: Partitioner<K>,
        _assigner: WindowAssigner,
        lateness: u64,
        time: F,
        agg: A,
    ) -> View<'scope, K, V, A::Output>
    where
        K: ExchangeData + Hash,
        V: ExchangeData + Hash,
        A: Aggregator<V>,
        A::Output: ExchangeData + Ord,
        F: Fn(&V) -> u64 + Clone + 'static,
    {
        session_view(input, partitioner, self.gap, lateness, time, agg)
    }
}
