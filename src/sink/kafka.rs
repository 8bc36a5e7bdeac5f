//! Kafka output: changelog rows (and late rows) as messages of a topic, written by worker 0.
//!
//! `--output kafka://HOST:PORT/TOPIC` sends every changelog row as one message, keyed by the
//! window's key, its payload one CSV line (`window_start,window_end,key,value,diff`, no header)
//! or one JSON object with those fields (`--output-format`). Rows go out as the windows close;
//! at the end of the input the producer is flushed and every delivery checked, so a run that
//! succeeds has had every row acknowledged by the broker. A delivery failure (the broker lost,
//! the topic missing) stops the run with one line naming the topic. This is at-least-once, like
//! any non-transactional producer: a run that fails after some rows were delivered leaves them
//! in the topic. With `--checkpoint-dir` the output is exactly once instead: one transaction per
//! checkpoint interval, whose commit is the checkpoint's commit point ([`KafkaCommit`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use crate::checkpoint::{begin_checkpoint, crash, CrashPoint};
use crate::source::kafka::{KafkaTopic, PayloadFormat, BROKER_TIMEOUT};

/// Remembers the first failed delivery, reported by librdkafka's delivery callback.
#[derive(Clone, Default)]
pub struct Deliveries {
    failed: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

/// A producer of one topic, on the worker that writes.
pub struct KafkaWriter {
    topic: KafkaTopic,
    producer: BaseProducer<Deliveries>,
    deliveries: Deliveries,
    /// The payload format of the messages.
    pub format: PayloadFormat,
}

impl KafkaWriter {
    /// Connects a producer to `topic` and checks that the topic exists (errors in one line
    /// naming it: unreachable broker, no such topic).
    pub fn open(topic: &KafkaTopic, format: PayloadFormat) -> Result<KafkaWriter, String> {
        topic.partitions()?;
        let deliveries = Deliveries::default();
        let producer = topic
            .config()
            // Retries must not reorder or duplicate rows within a partition.
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            .create_with_context(deliveries.clone())
            .map_err(|e| format!("{}: cannot create a Kafka producer: {e}", topic.url()))?;
        Ok(KafkaWriter {
            topic: topic.clone(),
            producer,
            deliveries,
            format,
        })
    }

    /// Sends one message (waiting while librdkafka's queue is full).
    pub fn send(&self, key: &str, payload: &[u8]) -> Result<(), String> {
        let mut record = BaseRecord::to(&self.topic.topic).key(key).payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Backpressure from the broker: serve delivery reports, then try again.
                    record = back;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(self.failure(e)),
            }
        }
    }

    /// Serves delivery reports; errors with the first failed delivery.
    pub fn poll(&self) -> Result<(), String> {
        self.producer.poll(Duration::ZERO);
        self.check()
    }

    /// Waits until every message sent was acknowledged; errors if one was not.
    pub fn flush(&self) -> Result<(), String> {
        self.producer
            .flush(BROKER_TIMEOUT * 3)
            .map_err(|e| self.failure(e))?;
        self.check()
    }

    fn check(&self) -> Result<(), String> {
        let failed = self
            .deliveries
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match failed.as_ref() {
            Some(e) => Err(format!("writing {}: {e}", self.topic.url())),
            None => Ok(()),
        }
    }

    fn failure(&self, e: impl std::fmt::Display) -> String {
        format!("writing {}: {e}", self.topic.url())
    }
}

/// A changelog row as a message: its key, and the payload in `format`.
pub fn changelog_message<K: AsRef<str>, O: std::fmt::Display>(
    row: &crate::window::WindowResult<K, O>,
    format: PayloadFormat,
) -> (String, Vec<u8>) {
    let key = row.key.as_ref().to_string();
    let diff = if row.diff > 0 { 1 } else { -1 };
    let payload = match format {
        PayloadFormat::Json => {
            /// The fields in the changelog's column order (a struct keeps it; a map sorts).
            #[derive(serde::Serialize)]
            struct Row<'a> {
                window_start: i64,
                window_end: u64,
                key: &'a str,
                value: String,
                diff: i64,
            }
            let row = Row {
                window_start: row.window.start,
                window_end: row.window.end,
                key: &key,
                value: row.value.to_string(),
                diff,
            };
            // Plain fields into memory: cannot fail.
            serde_json::to_vec(&row).unwrap_or_default()
        }
        PayloadFormat::Csv => {
            let mut line = csv::WriterBuilder::new()
                .terminator(csv::Terminator::Any(b'\n'))
                .from_writer(Vec::new());
            // Into memory: cannot fail.
            let _ = super::write_changelog_row(&mut line, row);
            let mut bytes = line.into_inner().unwrap_or_default();
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
            }
            bytes
        }
    };
    (key, payload)
}

/// A transactional producer for exactly-once output (`--checkpoint-dir` with a Kafka output),
/// and where the previous run of the same job got to.
///
/// The commit point of a checkpoint at time `c` is the commit of the Kafka transaction that
/// holds the checkpoint interval's rows *and*, as a transactional offset commit of the job's
/// consumer group, the value `c` (the offset committed for partition 0 of the output topic; the
/// end of the input is `2^62`, above every event time). Both become visible together or not at all, so a crash at
/// any point leaves the rows of exactly the committed intervals, and the group's offset says
/// which. A restart with the same `transactional.id` (derived from the job) fences the crashed
/// instance and aborts its open transaction (what `init_transactions` does); it never needs to
/// re-commit an old one. Nothing is read back from the output topic (a broker that hands out
/// aborted records to `read_committed` readers cannot mislead recovery).
pub struct KafkaCommit {
    writer: KafkaWriter,
    group: BaseConsumer,
    /// Checkpoint every this many milliseconds of event time (positive).
    pub interval: u64,
    /// Wall-clock time from one commit (or the start) to the next.
    pub min_pause: Duration,
    /// The checkpoint the previous run committed: rows at times up to it are in the topic.
    pub resumed: Option<u64>,
}

/// The offset that stands for "the whole input is committed".
const END: i64 = 1 << 62;

impl KafkaCommit {
    /// Opens a transactional producer of `topic` as `job` (the transactional id and the
    /// consumer group), fencing any earlier instance, and reads the committed checkpoint.
    pub fn open(topic: &KafkaTopic, format: PayloadFormat, job: &str) -> Result<Self, String> {
        topic.partitions()?;
        let url = topic.url();
        let fail = |what: &str, e: KafkaError| format!("{url}: {what}: {e}");
        let deliveries = Deliveries::default();
        let producer: BaseProducer<Deliveries> = topic
            .config()
            .set("transactional.id", job)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            .set("transaction.timeout.ms", "60000")
            .create_with_context(deliveries.clone())
            .map_err(|e| fail("cannot create a Kafka producer", e))?;
        producer
            .init_transactions(BROKER_TIMEOUT * 3)
            .map_err(|e| fail("cannot start transactions", e))?;
        let group: BaseConsumer = topic
            .config()
            .set("group.id", job)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| fail("cannot create a Kafka consumer", e))?;
        let mut progress = TopicPartitionList::new();
        progress.add_partition(&topic.topic, 0);
        let committed = group
            .committed_offsets(progress, BROKER_TIMEOUT)
            .map_err(|e| fail("cannot read the committed checkpoint", e))?;
        let resumed = match committed
            .find_partition(&topic.topic, 0)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(END)) => Some(u64::MAX),
            Some(Offset::Offset(c)) if c >= 0 => Some(c as u64),
            _ => None,
        };
        Ok(KafkaCommit {
            writer: KafkaWriter {
                topic: topic.clone(),
                producer,
                deliveries,
                format,
            },
            group,
            interval: 1,
            min_pause: Duration::ZERO,
            resumed,
        })
    }

    /// Whether the previous run committed the whole input.
    pub fn complete(&self) -> bool {
        self.resumed == Some(u64::MAX)
    }

    /// Sends `rows` in one transaction whose commit also commits `cut` as the job's progress.
    fn commit(&self, rows: &[(String, Vec<u8>)], cut: u64) -> Result<(), String> {
        let url = self.writer.topic.url();
        let fail = |what: &str, e: KafkaError| format!("writing {url}: {what}: {e}");
        begin_checkpoint();
        let producer = &self.writer.producer;
        producer
            .begin_transaction()
            .map_err(|e| fail("cannot begin a transaction", e))?;
        let half = rows.len() / 2;
        for (key, payload) in &rows[..half] {
            self.writer.send(key, payload)?;
        }
        // A crash in the middle of an interval's rows: the open transaction is aborted.
        crash(CrashPoint::Output);
        for (key, payload) in &rows[half..] {
            self.writer.send(key, payload)?;
        }
        let mut progress = TopicPartitionList::new();
        let offset = if cut == u64::MAX { END } else { cut as i64 };
        progress
            .add_partition_offset(&self.writer.topic.topic, 0, Offset::Offset(offset))
            .map_err(|e| fail("progress", e))?;
        let metadata = self
            .group
            .group_metadata()
            .ok_or_else(|| format!("writing {url}: no consumer group metadata"))?;
        producer
            .send_offsets_to_transaction(&progress, &metadata, BROKER_TIMEOUT * 3)
            .map_err(|e| fail("cannot add the checkpoint to the transaction", e))?;
        producer
            .commit_transaction(BROKER_TIMEOUT * 3)
            .map_err(|e| fail("cannot commit the transaction", e))?;
        self.writer.check()?;
        // Just past the commit point: a restart must neither lose nor repeat these rows.
        crash(CrashPoint::Manifest);
        Ok(())
    }
}

/// Rows waiting for their checkpoint, per time: `(key, payload)`.
type Pending = BTreeMap<u64, Vec<(String, Vec<u8>)>>;

/// What worker 0 of process 0 writes a Kafka output with.
pub enum KafkaOut {
    /// Every row as soon as it arrives; every delivery checked at the end (at least once).
    Plain(KafkaWriter),
    /// Every checkpoint interval's rows in one transaction (exactly once, `--checkpoint-dir`).
    Exactly(KafkaCommit),
}

/// Sends each record of `stream` through worker 0's `out` (every other worker passes `None`);
/// `encode` gives a record's key and payload (and is called on every worker, which may count).
///
/// [`KafkaOut::Plain`] sends rows as they arrive and, once the input is complete, flushes and
/// checks every delivery. [`KafkaOut::Exactly`] holds each row by its timely time until the
/// frontier passes the next checkpoint time `c = k * interval` (and `min_pause` passed since the
/// last commit), then sends the rows at times `<= c`, ordered by (time, payload, key), in one
/// transaction (see [`KafkaCommit`]); rows at times up to the checkpoint resumed from are
/// dropped (the topic holds them), intervals without rows commit nothing, and the end of the
/// input commits at once. The first error is stored in `error` and stops the sink.
pub fn kafka_sink<'scope, D, E>(
    stream: StreamVec<'scope, u64, D>,
    out: Option<KafkaOut>,
    mut encode: E,
    error: Rc<RefCell<Option<String>>>,
) where
    D: ExchangeData,
    E: FnMut(&D, PayloadFormat) -> (String, Vec<u8>) + 'static,
{
    let mut out = out;
    let mut pending: Pending = BTreeMap::new();
    let mut last_cut = match &out {
        Some(KafkaOut::Exactly(commit)) => commit.resumed,
        _ => None,
    };
    let resumed = last_cut;
    let mut last_commit = Instant::now();
    let scope = stream.scope();
    stream.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        Exchange::new(|_: &D| 0),
        "KafkaSink",
        |_cap, info| {
            let activator = scope.activator_for(info.address);
            move |(input, frontier), _output| {
                let format = match &out {
                    Some(KafkaOut::Plain(writer)) => writer.format,
                    Some(KafkaOut::Exactly(commit)) => commit.writer.format,
                    None => PayloadFormat::Json,
                };
                let mut result = Ok(());
                input.for_each(|cap, data| {
                    let time = *cap.least().expect("u64 stamps are never empty");
                    for row in data.iter() {
                        let (key, payload) = encode(row, format);
                        match &out {
                            Some(KafkaOut::Plain(writer)) if result.is_ok() => {
                                result = writer.send(&key, &payload);
                            }
                            Some(KafkaOut::Exactly(_)) if resumed.is_none_or(|c| time > c) => {
                                pending.entry(time).or_default().push((key, payload));
                            }
                            _ => {}
                        }
                    }
                });
                let done = frontier.frontier().is_empty();
                let result = result.and_then(|()| match &out {
                    Some(KafkaOut::Plain(writer)) if done => writer.flush(),
                    Some(KafkaOut::Plain(writer)) => writer.poll(),
                    Some(KafkaOut::Exactly(commit)) => {
                        let cut = match frontier.frontier().first().copied() {
                            None => u64::MAX,
                            Some(f) => f.saturating_sub(1) / commit.interval * commit.interval,
                        };
                        let passed = frontier.frontier().first().is_none_or(|f| *f > 0);
                        if !passed || last_cut.is_some_and(|c| c >= cut) {
                            return Ok(());
                        }
                        if !done {
                            let due = last_commit + commit.min_pause;
                            let now = Instant::now();
                            if now < due {
                                // Coalesce the cuts passed until the pause is over.
                                activator.activate_after(due - now);
                                return Ok(());
                            }
                            if pending.range(..=cut).next().is_none() {
                                // Nothing to send: the committed checkpoint may stay behind.
                                return Ok(());
                            }
                        }
                        let later = match cut.checked_add(1) {
                            Some(next) => pending.split_off(&next),
                            None => BTreeMap::new(),
                        };
                        let mut rows = Vec::new();
                        for (_, mut at) in std::mem::replace(&mut pending, later) {
                            at.sort_unstable_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
                            rows.extend(at);
                        }
                        commit.commit(&rows, cut)?;
                        last_cut = Some(cut);
                        last_commit = Instant::now();
                        Ok(())
                    }
                    None => Ok(()),
                });
                if let Err(e) = result {
                    *error.borrow_mut() = Some(e);
                    out = None;
                } else if done {
                    out = None;
                }
            }
        },
    );
}
