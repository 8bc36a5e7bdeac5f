//! Sources: where records enter a dataflow, stamped with their watermark times.
//!
//! This module owns the source operator: it pulls batches from a [`Feed`], sends each record at
//! the time the feed stamped it with, holds its capability at the feed's watermark, and drops it
//! when the feed is exhausted, so the frontier empties and every window closes. A feed *error*
//! is not an end of input: the source stops reading but keeps its capability, so no window
//! closes because of it (nothing is emitted as final that is not); the caller sees the error
//! and stops the run. A feed that has
//! nothing to offer (a live source) is polled again shortly, and after the idle timeout its
//! watermark advances with processing time. Sources run on one worker: the watermark is defined
//! by the order of the input, which only a single reader sees.

pub mod csv;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, StreamVec};

use crate::time::Watermark;

/// What a poll of a [`Feed`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// Records were appended (possibly none, if all were skipped).
    Ready,
    /// Nothing available right now; poll again later.
    Pending,
    /// The input is exhausted.
    Done,
}

/// A stream of records for [`feed_source`], stamped by a [`Watermark`] it owns.
pub trait Feed: 'static {
    /// The records produced.
    type Item;
    /// The error that stops the feed.
    type Error;
    /// Appends up to `max` records with the times to send them at.
    fn poll(&mut self, max: usize, out: &mut Vec<(u64, Self::Item)>) -> Result<Poll, Self::Error>;
    /// The watermark after the records polled so far.
    fn watermark(&mut self) -> &mut Watermark;
}

/// A feed over records in memory, in order: `(event time, record)`.
pub struct VecFeed<D> {
    records: std::vec::IntoIter<(u64, D)>,
    watermark: Watermark,
}

impl<D> VecFeed<D> {
    /// Replays `records` with a watermark trailing by `max_delay`.
    pub fn new(records: Vec<(u64, D)>, max_delay: u64) -> Self {
        VecFeed {
            records: records.into_iter(),
            watermark: Watermark::new(max_delay),
        }
    }
}

impl<D: 'static> Feed for VecFeed<D> {
    type Item = D;
    type Error = std::convert::Infallible;
    fn poll(&mut self, max: usize, out: &mut Vec<(u64, D)>) -> Result<Poll, Self::Error> {
        let before = out.len();
        for (ts, record) in self.records.by_ref().take(max) {
            out.push((self.watermark.stamp(ts), record));
        }
        Ok(if out.len() == before {
            Poll::Done
        } else {
            Poll::Ready
        })
    }
    fn watermark(&mut self) -> &mut Watermark {
        &mut self.watermark
    }
}

/// How a source reads its feed.
#[derive(Clone, Copy, Debug)]
pub struct SourceOptions {
    /// Records sent per activation: larger batches amortise scheduling.
    pub batch: usize,
    /// Advance the watermark with processing time once the feed was idle this long.
    pub idle_timeout: Option<Duration>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            batch: 4096,
            idle_timeout: None,
        }
    }
}

/// A source operator reading `feed` on this worker (pass `None` on the workers that read nothing).
///
/// A feed error stops reading and is stored in `error`; the source keeps its capability at the
/// last watermark, so downstream windows stay open and the dataflow never completes: the
/// caller must check `error` while stepping the worker and end the run (the CLI does so with
/// [`crate::abort::fail`]).
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use timely::dataflow::operators::capture::{Capture, Extract};
/// use tidemark::source::{feed_source, SourceOptions, VecFeed};
///
/// let captured = timely::example(|scope| {
///     let feed = VecFeed::new(vec![(5, 'a'), (2, 'b'), (9, 'c')], 1);
///     let error = Rc::new(RefCell::new(None));
///     feed_source(scope, Some(feed), SourceOptions::default(), error).capture()
/// });
/// // 'b' arrives behind the watermark 5 - 1 = 4 and is sent at time 4.
/// assert_eq!(captured.extract(), vec![(4, vec!['b']), (5, vec!['a']), (9, vec!['c'])]);
/// ```
pub fn feed_source<'scope, F: Feed>(
    scope: Scope<'scope, u64>,
    feed: Option<F>,
    options: SourceOptions,
    error: Rc<RefCell<Option<F::Error>>>,
) -> StreamVec<'scope, u64, F::Item> {
    source(scope, "FeedSource", move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(cap);
        let mut feed = feed;
        let mut buffer = Vec::with_capacity(options.batch);
        let mut last_record = Instant::now();
        move |output| {
            let Some(held) = cap.as_mut() else { return };
            let Some(reader) = feed.as_mut() else {
                // No feed on this worker, or it failed: with an error the capability stays,
                // otherwise it goes and the frontier empties.
                if error.borrow().is_none() {
                    cap = None;
                }
                return;
            };
            let poll = reader.poll(options.batch, &mut buffer);
            buffer.sort_by_key(|(time, _)| *time);
            let mut records = buffer.drain(..).peekable();
            while let Some((time, first)) = records.next() {
                let at = held.delayed(&time);
                let mut session = output.session(&at);
                session.give(first);
                while let Some((_, record)) = records.next_if(|(t, _)| *t == time) {
                    session.give(record);
                }
            }
            drop(records);
            match poll {
                Ok(Poll::Ready) => {
                    last_record = Instant::now();
                    held.downgrade(&reader.watermark().current());
                    activator.activate();
                }
                Ok(Poll::Pending) => {
                    if let Some(timeout) = options.idle_timeout {
                        let idle = last_record.elapsed();
                        if idle >= timeout {
                            reader.watermark().idle(idle);
                            held.downgrade(&reader.watermark().current());
                        }
                    }
                    activator.activate_after(Duration::from_millis(1));
                }
                Ok(Poll::Done) => {
                    cap = None;
                    feed = None;
                }
                Err(e) => {
                    // Keep `cap`: the input did not end, it broke.
                    *error.borrow_mut() = Some(e);
                    feed = None;
                }
            }
        }
    })
    .container::<Vec<F::Item>>()
}
