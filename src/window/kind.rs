//! The window kinds, and the one place that tells them apart.
//!
//! [`WindowAssigner::with_kind`] is the only match on an assigner's variant that decides what an
//! operator builds for it. Every operator that runs windows implements [`WithKind`], one method
//! per kind: the keyed window operator (`crate::keyed::window`) builds the kind's state machine
//! and phase one of the random partitioner there, the differential view
//! (`crate::incremental::windows`) the kind's view. A new kind is one more method of `WithKind`
//! and one arm in `with_kind`; the compiler then asks every operator for its part. (The
//! assigner's own geometry, parsing and description stay on [`WindowAssigner`].)

use super::{Panes, WindowAssigner};

/// A computation that differs between window kinds, run by [`WindowAssigner::with_kind`] with
/// the assigner's kind.
pub(crate) trait WithKind {
    /// What the computation returns.
    type Out;
    /// Runs the computation for tumbling and sliding windows of the geometry `panes`.
    fn fixed(self, panes: Panes) -> Self::Out;
    /// Runs the computation for session windows: records closer than `gap` merge into one
    /// window.
    fn sessions(self, gap: u64) -> Self::Out;
}

impl WindowAssigner {
    /// Runs `f` for this assigner's kind: the one place the variant picks the kind.
    pub(crate) fn with_kind<F: WithKind>(self, f: F) -> F::Out {
        match self {
            WindowAssigner::Tumbling(size) => f.fixed(Panes::new(size, size)),
            WindowAssigner::Sliding(size, slide) => f.fixed(Panes::new(size, slide)),
            WindowAssigner::Session(gap) => f.sessions(gap),
        }
    }
}
