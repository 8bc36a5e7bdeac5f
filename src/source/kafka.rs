//! Kafka input: a topic's partitions read by the workers, each partition with its own watermark.
//!
//! `--input kafka://HOST:PORT/TOPIC` names a broker and a topic. Every partition is read by
//! exactly one worker of all the workers of all processes (partition `p` by the worker whose
//! global index is `p % workers`), assigned by hand (no consumer group, no committed offsets), so
//! reading is parallel and every process finds its partitions without talking to the others.
//!
//! # Watermarks, per partition (as Flink's Kafka source)
//!
//! Each partition stamps its records by its own [`Watermark`], the file rule applied to the
//! partition's order (see [`crate::time`]): a record is behind when its event time is below
//! the largest event time seen *in that partition* minus `--max-delay`. So whether a record
//! counts, is a correction or is late depends only on its partition's contents, never on how
//! partitions interleave. The source's watermark (the capability a worker's source holds) is the
//! minimum over its partitions, and timely's frontier the minimum over all workers: a window
//! closes once every partition has passed it. A record is never sent below that capability: when
//! a partition is behind the others (it was idle, see below) its records are stamped at least at
//! the source's watermark.
//!
//! # Idle partitions
//!
//! `--idle-timeout`: a partition without a record for that long is left out of the minimum until
//! it has a record again, so an idle partition does not hold every window open. Its clock starts
//! at its first fetch answer (a record, or librdkafka's partition EOF), never before: while the
//! consumer starts, a partition's first records may be on their way, and judging it idle then
//! let the watermark run ahead of them (they were late). A reader none of whose partitions is
//! active (all idle, empty or done) holds no window open either, as Flink's Kafka source marks
//! such a reader idle:
//!
//! * its watermark moves up to the highest of its partitions' watermarks (not the minimum at
//!   the moment they went idle, which held the windows of its other partitions back);
//! * with more than one worker, the readers tell each other their watermarks and whether they
//!   have an active partition ([`kafka_source`]); the reader follows the minimum over the
//!   readers that have one, or, when none has, the highest of the others' watermarks. So a
//!   worker (or a process) whose partitions are all empty does not hold the windows at its own
//!   watermark, which never saw a record (with epoch-millisecond event times, it held them
//!   open forever);
//! * once no reader has an active partition, every watermark follows processing time from
//!   there ([`Feed::may_idle`]), as for a file.
//!
//! A record of a partition back from idle is stamped at least at its reader's watermark, so
//! it may be late by what the other partitions passed meanwhile (as in Flink). A run that reads
//! every record before any partition's timeout runs out stamps exactly as without the option:
//! each record by its own partition's rule.
//!
//! # Order among partitions
//!
//! Kafka orders a partition's records, never two partitions'. Where order matters (session
//! windows apply records that share a time in input order), a record's position
//! ([`super::csv::CsvRecord::pos`]) orders partitions by id and each by offset ([`position`]),
//! so results do not depend on how the partitions' fetches interleave, and a replay from a
//! checkpoint repeats them (without `--idle-timeout`, whose advances follow processing time).
//!
//! # Reading to the end
//!
//! `--exit-at-end`: each partition ends where its first fetch answer says, as of the start: the
//! larger of the end offset the broker lists (ListOffsets) when the feed starts and the high
//! watermark of the first fetch answer (`Partition::settle`). tansu 0.6 lists a partition's
//! end as its last batch's first offset plus one, which alone would drop the rest of that
//! batch. A partition is also at its end when librdkafka reports the partition's EOF (a fetch
//! found nothing more, for a `read_committed` reader at the last stable offset) with a high
//! watermark at or past the end: the offsets before it not received are control records. An
//! EOF below the listed end means the broker's answers contradict each other: an error, never
//! a silent stop. Once every partition reached its end the feed is done and the windows close.
//! Without it the feed reads until the run is stopped.
//!
//! # Checkpoints
//!
//! With `--checkpoint-dir` (and `--emit final`, a file output) a reader's state at a cut `c` is
//! each partition's next offset, end and watermark, and its own watermark
//! ([`PartitionState`] in [`SourceState`]); a restart assigns every partition at its offset
//! with that watermark instead of re-reading the topic. The cut is exact by the rule of
//! [`crate::checkpoint`], applied per partition: while `c` is pending, a partition whose
//! watermark (the watermark before its next record) is above `c` is *held*: its messages are
//! kept in memory, unread, until the reader's watermark (the minimum over partitions) passes
//! `c` and the source takes its state. So every record read before the cut goes at a time
//! `<= c` (an on-time one at the reader's watermark before its batch, `<= c`; one behind its
//! partition's watermark at that watermark, `<= c`), and every later one at a time `> c`
//! (the reader's watermark, or its partition's, both above `c` by then). A held partition is
//! paused in librdkafka only once it holds [`HOLD_BEFORE_PAUSE`] messages (a resume costs a
//! fetch round trip). `--idle-timeout` is not allowed with a checkpointed Kafka input (an idle
//! advance depends on wall-clock time, so a replay would not see it). A Kafka *output* keeps
//! no snapshots (its commit is the Kafka transaction, or its saved tails, see
//! [`crate::sink::kafka`]): a run writing to Kafka re-reads every input partition from its
//! beginning on restart.
//!
//! A restart never trusts a seek to land exactly: tansu 0.6 answers a fetch with the batches
//! that *start* at or after its offset, so a seek into the middle of a producer's batch would
//! skip the batch's remaining records. So a restored partition is read from earlier
//! ([`Reseek`]: a lookback that doubles until the first record received is at or before the
//! checkpointed offset, or comes from the partition's first offset), and the records before
//! the offset are dropped. A checkpointed offset below the partition's first offset (records
//! deleted since, or the topic recreated) is an error naming topic, partition and offset.
//!
//! # Backpressure
//!
//! The source is paced like a file reader ([`super::Pacing`]): with `--emit final` it polls no
//! further while the window operators, or a Kafka sink, are more than a bounded number of
//! batches behind (the sink's progress joins the pacing probe), and librdkafka's prefetch is
//! capped ([`PREFETCH_MESSAGES`] per partition, 8 MB per worker, 1 MB per fetch), so a slow
//! operator or sink bounds memory. The test `kafka_source_memory_stays_bounded_behind_a_slow_sink`
//! measures the peak for 10 times the records. (Rows held by a committing sink until their
//! checkpoint are not part of this bound: an interval's rows.)
//!
//! # Messages
//!
//! A message's payload is one record: a JSON object (`--format json`) whose fields are looked up
//! by the column names, or one CSV line (`--format csv`) whose fields are named by `--columns`.
//! Either way the fields are laid out as one CSV row in the order of [`MessageFormat::header`]
//! and read by the CSV source's parser, so both formats, and files, read every field alike. The
//! event-time column `@timestamp` is the message's timestamp (milliseconds since the epoch).
//! A bad message is an error naming topic, partition and offset (or, with
//! `--on-bad-line skip`, a warning); a broker that cannot be reached or a missing topic fail
//! before the run starts.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};

use serde::{Deserialize, Serialize};
use timely::dataflow::{Scope, StreamVec};

use super::csv::{warn_skipped, BadLines, Columns, CsvItem, FeedStats, Layout, ReadError};
use super::{
    feed_source_paced, side_channel, Feed, Outbox, Pacing, Payload, Poll, Position, SourceOptions,
    SourceState, Stamped,
};
use crate::stash::Cut;
use crate::time::Watermark;

/// The scheme of a Kafka address.
pub const SCHEME: &str = "kafka://";

/// How many messages librdkafka keeps prefetched per partition (`queued.min.messages`): a few
/// of the source's batches (4096 records).
pub const PREFETCH_MESSAGES: usize = 10_000;

/// The most bytes of one fetch response (`fetch.max.bytes`; librdkafka's smallest allowed is
/// its largest message, 1 MB by default).
const FETCH_BYTES: usize = 1 << 20;

/// How long librdkafka waits before fetching again for a partition whose queue was full
/// (`fetch.queue.backoff.ms`, ms; librdkafka's default is 1000).
const FETCH_QUEUE_BACKOFF_MS: u32 = 10;

/// The longest a broker may hold a fetch before it answers (`fetch.wait.max.ms`, ms;
/// librdkafka's default is 500). A Kafka broker answers as soon as it has a byte for the fetch
/// and holds it only at a partition's end, so a short wait costs only more fetches while idle.
/// tansu 0.6 holds every fetch for about its wait, with data or without: at 500 ms a reader got
/// one 1 MB fetch (some 20 k records) every quarter to half a second, and a run of 200 k
/// records took 1.5 s for 0.45 s of CPU (`kcat -C` on the same topic with 1 MB fetches: 1.86 s
/// at 500 ms, 0.15 s at 10 ms). The sink's read-back of its output fetches with it too.
pub(crate) const FETCH_WAIT_MS: u32 = 10;

/// How long to wait for the broker's answer before calling it unreachable.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// The column name that stands for the message's own timestamp.
pub const MESSAGE_TIMESTAMP: &str = "@timestamp";

/// Whether a consumer's error `e` leaves the broker list reachable, so that the read goes
/// on: one broker connection failing (refused, reset, a name that does not resolve), which
/// librdkafka reports for each broker of a list as it tries it, even while another answers,
/// and retries on its own; or librdkafka's `AllBrokersDown` while a broker of the list still
/// answers a metadata request for `topic` within [`BROKER_TIMEOUT`] (librdkafka also reports
/// it in passing, a refused first broker counted down before the next is up). Lost, the
/// README's rule, is `AllBrokersDown` with no broker answering; that, like every other
/// consumer error, ends the run.
pub fn passing(consumer: &BaseConsumer, topic: &str, e: &KafkaError) -> bool {
    match e {
        KafkaError::MessageConsumption(
            RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::Resolve,
        ) => true,
        KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown) => {
            consumer.fetch_metadata(Some(topic), BROKER_TIMEOUT).is_ok()
        }
        _ => false,
    }
}

/// A topic on a broker: `kafka://HOST:PORT/TOPIC`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaTopic {
    /// The bootstrap broker, `HOST:PORT`.
    pub broker: String,
    /// The topic.
    pub topic: String,
}

impl KafkaTopic {
    /// `Some` when `text` starts with `kafka://`: the topic, or why the address is malformed
    /// (it needs a broker and a non-empty topic after one `/`).
    ///
    /// ```
    /// use tidemark::source::kafka::KafkaTopic;
    /// let t = KafkaTopic::parse("kafka://127.0.0.1:9092/events").unwrap().unwrap();
    /// assert_eq!((t.broker.as_str(), t.topic.as_str()), ("127.0.0.1:9092", "events"));
    /// assert!(KafkaTopic::parse("events.csv").is_none());
    /// assert!(KafkaTopic::parse("kafka://127.0.0.1:9092").unwrap().is_err());
    /// ```
    pub fn parse(text: &str) -> Option<Result<KafkaTopic, String>> {
        let rest = text.strip_prefix(SCHEME)?;
        Some(match rest.split_once('/') {
            Some((broker, topic)) if !broker.is_empty() && !topic.is_empty() => Ok(KafkaTopic {
                broker: broker.to_string(),
                topic: topic.to_string(),
            }),
            _ => Err(format!(
                "{text}: expected kafka://HOST:PORT/TOPIC (a broker and a topic)"
            )),
        })
    }

    /// The client configuration every connection to this broker starts from.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.broker)
            // librdkafka otherwise retries a refused connection silently forever.
            .set("socket.timeout.ms", "10000")
            // A missing topic is an error, not one to create.
            .set("allow.auto.create.topics", "false")
            .set("log_level", "3");
        config
    }

    /// The number of partitions of the topic. Errors, in one line naming broker and topic:
    /// the broker cannot be reached (within [`BROKER_TIMEOUT`], once per broker list and
    /// process: see [`KafkaTopic::reach`]), or the topic does not exist.
    pub fn partitions(&self) -> Result<u32, String> {
        self.reach()?;
        let consumer: BaseConsumer = self
            .config()
            .create()
            .map_err(|e| format!("{}: cannot create a Kafka client: {e}", self.url()))?;
        let metadata = consumer
            .fetch_metadata(Some(&self.topic), BROKER_TIMEOUT)
            .map_err(|e| format!("{}: cannot reach the broker: {e}", self.url()))?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .ok_or_else(|| format!("{}: no such topic on the broker", self.url()))?;
        if let Some(e) = topic.error() {
            return Err(format!(
                "{}: no such topic on the broker ({e:?})",
                self.url()
            ));
        }
        match topic.partitions().len() {
            0 => Err(format!("{}: no such topic on the broker", self.url())),
            n => Ok(n as u32),
        }
    }

    /// The address as the user writes it.
    pub fn url(&self) -> String {
        format!("{SCHEME}{}/{}", self.broker, self.topic)
    }

    /// `Some` (how the clusters were found to be one) when `self` and `other` name one topic:
    /// the same topic name on the same cluster
    /// ([`KafkaTopic::same_cluster`]), however the brokers are spelt (`localhost` for
    /// `127.0.0.1`, another broker of the cluster). Asks the brokers only when the topic names
    /// are equal and the broker lists differ as text. Errors: a broker that cannot be reached
    /// ([`KafkaTopic::reach`]), which the run would report anyway.
    pub fn same_topic(&self, other: &KafkaTopic) -> Result<Option<Cluster>, String> {
        if self.topic != other.topic {
            return Ok(None);
        }
        self.same_cluster(other)
    }

    /// `Some` (how they were found to be one) when the brokers of `self` and `other` belong to
    /// one cluster: their cluster ids (Kafka's identity of a cluster, asked of each broker
    /// within [`BROKER_TIMEOUT`]) are equal, or, where a broker tells none (one that predates
    /// cluster ids), their broker lists resolve to a common socket address. A broker list
    /// equal as text is one cluster without asking. Errors: a broker that cannot be reached
    /// ([`KafkaTopic::reach`]; `self`'s is asked first), so that a dead broker is reported
    /// as such, whatever its spellings.
    pub fn same_cluster(&self, other: &KafkaTopic) -> Result<Option<Cluster>, String> {
        if self.broker == other.broker {
            return Ok(Some(Cluster::Address(self.broker.clone())));
        }
        if let (Some(a), Some(b)) = (self.reach()?, other.reach()?) {
            return Ok((a == b).then_some(Cluster::Id(a)));
        }
        let theirs = other.addresses();
        Ok(self
            .addresses()
            .into_iter()
            .find(|a| theirs.contains(a))
            .map(|a| Cluster::Address(a.to_string())))
    }

    /// The topic as a job's identity: its name on the cluster of the id its broker reports,
    /// whatever address names the broker; the address as written where the broker reports no
    /// id (or cannot be reached, which the run then reports).
    pub fn identity(&self) -> String {
        match self.reach().ok().flatten() {
            Some(id) => format!("kafka cluster {id} topic {}", self.topic),
            None => self.url(),
        }
    }

    /// Whether the broker list answers, and the cluster id it reports (`None`: it reports
    /// none); asked once per broker list and process (a run asks for the same addresses
    /// several times, and an unreachable broker would cost [`BROKER_TIMEOUT`] each time: the
    /// README's 10 s for an unreachable broker). Errors: the usual one line, "cannot reach the
    /// broker", naming the topic.
    pub fn reach(&self) -> Result<Option<String>, String> {
        type Known = Vec<(String, Result<Option<String>, String>)>;
        static KNOWN: std::sync::Mutex<Known> = std::sync::Mutex::new(Vec::new());
        let mut known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
        let answer = match known.iter().find(|(broker, _)| *broker == self.broker) {
            Some((_, answer)) => answer.clone(),
            None => {
                let answer = self.ask_cluster_id();
                known.push((self.broker.clone(), answer.clone()));
                answer
            }
        };
        answer.map_err(|e| format!("{}: cannot reach the broker: {e}", self.url()))
    }

    /// [`KafkaTopic::reach`]'s question: a metadata request (which fails when no broker of
    /// the list answers within [`BROKER_TIMEOUT`]; librdkafka's cluster id question does not
    /// tell that from a broker without an id), then the cluster id of its answer. Errors:
    /// why no broker answered.
    fn ask_cluster_id(&self) -> Result<Option<String>, String> {
        let consumer: BaseConsumer = self.config().create().map_err(|e| e.to_string())?;
        consumer
            .fetch_metadata(Some(&self.topic), BROKER_TIMEOUT)
            .map_err(|e| e.to_string())?;
        Ok(consumer.client().fetch_cluster_id(BROKER_TIMEOUT))
    }

    /// The socket addresses of the broker list (`[PROTOCOL://]HOST[:PORT]`, comma-separated, as
    /// librdkafka reads `bootstrap.servers`; port 9092 by default); names that do not resolve
    /// add none.
    pub fn addresses(&self) -> Vec<std::net::SocketAddr> {
        use std::net::ToSocketAddrs;
        let mut addresses = Vec::new();
        for broker in self.broker.split(',').map(str::trim) {
            let broker = broker.split_once("://").map_or(broker, |(_, rest)| rest);
            // A port follows the last colon outside an IPv6 literal's brackets.
            let has_port = broker
                .rsplit_once(':')
                .is_some_and(|(host, _)| !host.contains(':') || host.ends_with(']'));
            let broker = match has_port {
                true => broker.to_string(),
                false => format!("{broker}:9092"),
            };
            addresses.extend(broker.to_socket_addrs().into_iter().flatten());
        }
        addresses
    }
}

/// How two Kafka addresses were found to reach one cluster, for the message that says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cluster {
    /// Both brokers report this cluster id.
    Id(String),
    /// Both broker lists reach this address (or are this text).
    Address(String),
}

impl std::fmt::Display for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cluster::Id(id) => write!(f, "both brokers report cluster id {id}"),
            Cluster::Address(address) => write!(f, "both reach the broker at {address}"),
        }
    }
}

/// How a message's payload is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PayloadFormat {
    /// A JSON object; fields by name (numbers or strings).
    Json,
    /// One CSV line, with the fields named by `--columns`.
    Csv,
}

/// The layout of messages: their format and the columns of the CSV row they are read as.
#[derive(Clone, Debug)]
pub struct MessageFormat {
    /// JSON or CSV.
    pub format: PayloadFormat,
    /// The CSV payload's fields, by name (ignored for JSON).
    pub columns: Vec<String>,
    /// The columns read.
    pub read: Columns,
}

impl MessageFormat {
    /// The columns of the row a message is read as (also the late output's input columns):
    /// for CSV the payload's columns, for JSON the columns read (time, key, value, diff); then
    /// `@timestamp` when the event time is the message's timestamp and the payload has no such
    /// field.
    pub fn header(&self) -> Vec<String> {
        let mut header: Vec<String> = match self.format {
            PayloadFormat::Csv => self.columns.clone(),
            PayloadFormat::Json => {
                let read = &self.read;
                let mut names = vec![read.time.clone(), read.key.clone()];
                names.extend(read.value.clone());
                names.push(read.diff.clone());
                names.retain(|n| n != MESSAGE_TIMESTAMP);
                names
            }
        };
        if self.read.time == MESSAGE_TIMESTAMP && !header.iter().any(|c| c == MESSAGE_TIMESTAMP) {
            header.push(MESSAGE_TIMESTAMP.to_string());
        }
        header
    }

    /// The parser of rows laid out by [`Self::header`]; errors if a column read is not in it.
    fn layout(&self, name: &str) -> Result<Layout, ReadError> {
        let mut line = csv::Writer::from_writer(Vec::new());
        line.write_record(self.header())
            .and_then(|()| line.flush().map_err(csv::Error::from))
            .map_err(|e| ReadError::io(name, e))?;
        let text = line.into_inner().map_err(|e| ReadError::io(name, e))?;
        let (_, layout, _) = Layout::reader(name, text.as_slice(), self.read.clone())?;
        Ok(layout)
    }
}

/// The partitions global worker `worker` of `workers` reads, of `partitions`.
///
/// ```
/// use tidemark::source::kafka::partitions_of;
/// assert_eq!(partitions_of(1, 2, 5), vec![1, 3]);
/// assert_eq!(partitions_of(3, 4, 2), Vec::<i32>::new());
/// ```
pub fn partitions_of(worker: usize, workers: usize, partitions: u32) -> Vec<i32> {
    (0..partitions as usize)
        .filter(|p| p % workers == worker)
        .map(|p| p as i32)
        .collect()
}

/// Where a Kafka partition stands at a checkpoint cut (a reader's part of [`SourceState`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The partition.
    pub id: i32,
    /// The offset of its first record not sent at or before the cut.
    pub next: i64,
    /// The offset it ends before (`--exit-at-end`, as the first run found it), `None` to read on
    /// (or, with `--exit-at-end`, not found yet: nothing of the partition was read, and a
    /// restore finds its end afresh).
    pub end: Option<i64>,
    /// Its watermark before that record.
    pub watermark: Watermark,
}

/// How many messages a partition held at a checkpoint cut may collect before librdkafka stops
/// fetching it (pausing costs a fetch round trip when it resumes, so only a partition far ahead
/// of the others is paused).
pub const HOLD_BEFORE_PAUSE: usize = 4096;

/// How long a [`Reseek`] waits for its first message before it reads from further back
/// ([`Reseek::further`]), when the partition's last fetch answer says it holds records at or
/// after the target: a fetch from inside the last batch is answered with nothing, not with an
/// offset past the target (more than librdkafka's fetch wait, 500 ms).
pub const RESEEK_PATIENCE: Duration = Duration::from_secs(1);

/// How far before a checkpointed offset a restore first starts reading (doubled while that is
/// not far enough, see [`Reseek`]): a few producer batches of small messages.
pub const FIRST_LOOKBACK: i64 = 256;

/// Reading a partition from offset `target` on without skipping a record, on a broker whose
/// fetch may start at the next batch boundary after the offset asked for (tansu 0.6 answers
/// with the batches that *start* at or after it; Kafka with the batch holding it).
///
/// Start at [`Reseek::from`] (at most `lookback` offsets before `target`, never below the
/// partition's first offset `low`), give the first message received there to
/// [`Reseek::first`], seek again where it says, and drop the messages below `target`. The first
/// message proves nothing at or after `target` was skipped when its offset is at most `target`
/// (the broker's answer is contiguous from there), or when reading started at `low` (nothing
/// lies before it: the first message is the first that exists, so any gap up to it is one of
/// the log's own, as compaction or transaction markers leave). Otherwise a batch holding
/// `target` started before the seek: the lookback doubles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reseek {
    target: i64,
    low: i64,
    lookback: i64,
}

impl Reseek {
    /// Reading for `target` in a partition whose first offset is `low`, first from `lookback`
    /// (at least 1) offsets before it.
    pub fn new(target: i64, low: i64, lookback: i64) -> Reseek {
        Reseek {
            target,
            low,
            lookback: lookback.max(1),
        }
    }

    /// The offset to seek to now.
    pub fn from(&self) -> i64 {
        self.target.saturating_sub(self.lookback).max(self.low)
    }

    /// Given the offset of the first message received since seeking to [`Reseek::from`]:
    /// `None` when it proves nothing was skipped, else the offset to seek to instead (twice the
    /// lookback, or `low`).
    pub fn first(&mut self, offset: i64) -> Option<i64> {
        if offset <= self.target {
            return None;
        }
        self.further()
    }

    /// When nothing came since seeking to [`Reseek::from`] though the partition holds records
    /// at or after the target: the seek landed inside the partition's last batch, after its
    /// start, and tansu 0.6 answers such a fetch with nothing. The offset to seek to instead
    /// (twice the lookback, or `low`), `None` when reading started at `low` already.
    pub fn further(&mut self) -> Option<i64> {
        if self.from() <= self.low {
            return None;
        }
        self.lookback = self.lookback.saturating_mul(2);
        Some(self.from())
    }
}

/// A message received but not read yet: its partition is held at a pending checkpoint cut.
struct Held {
    offset: i64,
    payload: Vec<u8>,
    timestamp: Option<i64>,
}

/// One partition a feed reads.
struct Partition {
    id: i32,
    watermark: Watermark,
    /// The offset to stop before (`--exit-at-end`), `None` to read on (or not known yet, see
    /// `listed`).
    end: Option<i64>,
    /// `--exit-at-end` before the partition's first fetch answer: the end offset the broker
    /// listed at the start (ListOffsets), a lower bound of the end (see `Partition::settle`).
    listed: Option<i64>,
    /// librdkafka reported the partition's end (a fetch found nothing more) at or after `end`:
    /// every record before `end` was received (what is missing are control records).
    at_eof: bool,
    /// The offset after the last message read.
    next: i64,
    /// When the partition last had a record, or first answered a fetch; `None` before (a
    /// partition is never idle before its first fetch, see `KafkaFeed::idle`).
    last_record: Option<Instant>,
    /// Messages received and held back, in offset order (see the module docs, "Checkpoints").
    held: VecDeque<Held>,
    /// Whether librdkafka fetches nothing more of it for now (held, or at its end).
    paused: bool,
    /// Restored at a checkpointed offset: the seek not yet proven exact by a first message.
    seek: Option<Reseek>,
    /// When the partition was last assigned or sought (see [`RESEEK_PATIENCE`]).
    sought: Instant,
}

impl Partition {
    fn done(&self) -> bool {
        self.end
            .is_some_and(|end| self.next >= end || (self.at_eof && self.held.is_empty()))
    }

    /// Settles the partition's end (`--exit-at-end`) at its first fetch answer, as `consumer`
    /// of `topic` received it: the larger of the end the broker listed at the start and the
    /// high watermark of that fetch (the last one librdkafka received). tansu 0.6 lists a
    /// partition's end as its last batch's first offset plus one, short of the batch's other
    /// records, while its fetch answers give the true high watermark (Kafka gives the same in
    /// both). The fetch was answered after the start, so every record in the partition at the
    /// start lies before that end. Call it with each answer: it does nothing once the end is
    /// settled (at the first answer that carries a high watermark; the first does).
    fn settle(&mut self, consumer: &BaseConsumer, topic: &str) {
        let Some(listed) = self.listed else {
            return;
        };
        if let Some(high) = fetched_high(consumer, topic, self.id) {
            self.end = Some(listed.max(high));
            self.listed = None;
        }
    }

    /// The offset of the next message this partition expects from librdkafka.
    fn expected(&self) -> i64 {
        self.held.back().map_or(self.next, |h| h.offset + 1)
    }
}

/// A worker's share of a topic as a [`Feed`] of `(key, record, diff)` triples, stamped per
/// partition (see the module docs).
pub struct KafkaFeed {
    consumer: BaseConsumer,
    topic: KafkaTopic,
    layout: Layout,
    format: MessageFormat,
    bad_lines: BadLines,
    partitions: Vec<Partition>,
    idle_timeout: Option<Duration>,
    /// The source's watermark: the minimum over the partitions not idle; never decreases.
    watermark: Watermark,
    /// What the other workers' readers said, and what this one tells them (`--idle-timeout`
    /// with more than one worker, see [`kafka_source`]).
    peers: Option<Rc<RefCell<Peers>>>,
    stats: Arc<FeedStats>,
    /// One message's fields as a CSV row, reused.
    row: csv::ByteRecord,
}

/// What a [`KafkaFeed`] reads, besides its topic.
#[derive(Clone, Debug)]
pub struct KafkaOptions {
    /// The payload format and columns.
    pub format: MessageFormat,
    /// What to do with a bad message.
    pub bad_lines: BadLines,
    /// The watermark delay of every partition, in milliseconds.
    pub max_delay: u64,
    /// Leave a partition without records for this long out of the source's watermark.
    pub idle_timeout: Option<Duration>,
    /// Stop at the end offsets found at the start.
    pub exit_at_end: bool,
}

impl KafkaFeed {
    /// Opens a consumer of `partitions` of `topic`, each from its beginning, or, restoring
    /// from a checkpoint, from where `restore` says (its offset, end and watermark, and the
    /// reader's watermark). Errors name the topic and say what failed (connecting, the end
    /// offsets, the assignment, a partition the checkpoint does not hold).
    pub fn open(
        topic: &KafkaTopic,
        partitions: &[i32],
        options: &KafkaOptions,
        stats: Arc<FeedStats>,
        restore: Option<&SourceState>,
    ) -> Result<KafkaFeed, ReadError> {
        let url = topic.url();
        let layout = options.format.layout(&url)?;
        let consumer: BaseConsumer = topic
            .config()
            // Manual assignment: the group only names the client; nothing is committed.
            .set("group.id", "tidemark")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            // librdkafka prefetches up to this much per consumer (default 64 MB): with the
            // source's own bound on batches ahead of the windows, what a slow operator leaves
            // queued stays bounded.
            .set("queued.max.messages.kbytes", "8192")
            // ... and until it holds this many messages per partition (default 100000). The
            // kilobytes count payloads only, while each queued message costs some hundred bytes
            // more: with small messages the count decides, and 100000 per partition read most
            // of a test topic ahead (its peak memory grew with the input).
            .set("queued.min.messages", PREFETCH_MESSAGES.to_string())
            // One fetch response at most this large (default 50 MB): librdkafka checks its
            // queue's bounds before it fetches, not within a response, and tansu 0.6 applies
            // only this request-wide limit, not the per-partition one.
            .set("fetch.max.bytes", FETCH_BYTES.to_string())
            // When the queue is at those bounds, librdkafka (2.1 and later) postpones the
            // partition's next fetch by `fetch.queue.backoff.ms`, 1 s by default: the source
            // drains its queue in milliseconds, so a second-long pause capped a reader at about
            // one queue a second (25 k records/s). Look again soon instead.
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS.to_string())
            .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string())
            // A partition's end as a fetch finds it (`--exit-at-end`, and the first fetch
            // answer of an empty partition, see `last_record`).
            .set("enable.partition.eof", "true")
            .create()
            .map_err(|e| ReadError::io(&url, format!("cannot create a Kafka consumer: {e}")))?;
        let mut assignment = TopicPartitionList::new();
        let mut mine = Vec::new();
        for &id in partitions {
            let restored = match restore {
                None => None,
                Some(state) => Some(state.partitions.iter().find(|p| p.id == id).ok_or_else(
                    || {
                        ReadError::io(
                            &url,
                            format!(
                                "partition {id}: not in the checkpoint (another partition count?)"
                            ),
                        )
                    },
                )?),
            };
            // A restored end is the first run's; a checkpoint taken before the partition's end
            // was settled has none, and it is settled again (nothing of it was read).
            let end = restored.and_then(|state| state.end);
            let listed = match end {
                None if options.exit_at_end => {
                    let (_, high) = consumer
                        .fetch_watermarks(&topic.topic, id, BROKER_TIMEOUT)
                        .map_err(|e| {
                            ReadError::io(&url, format!("partition {id}: no end offset: {e}"))
                        })?;
                    Some(high)
                }
                _ => None,
            };
            let (next, watermark) = match restored {
                Some(state) => (state.next, state.watermark.clone()),
                None => (0, Watermark::new(options.max_delay)),
            };
            let done = end.is_some_and(|end| next >= end);
            let seek = if next > 0 && !done {
                Some(reseek(&consumer, topic, id, next)?)
            } else {
                None
            };
            let from = match seek {
                Some(seek) => Offset::Offset(seek.from()),
                None if next == 0 => Offset::Beginning,
                None => Offset::Offset(next),
            };
            assignment
                .add_partition_offset(&topic.topic, id, from)
                .map_err(|e| ReadError::io(&url, e))?;
            mine.push(Partition {
                id,
                watermark,
                end,
                listed,
                at_eof: false,
                next,
                last_record: None,
                held: VecDeque::new(),
                paused: false,
                seek,
                sought: Instant::now(),
            });
        }
        consumer
            .assign(&assignment)
            .map_err(|e| ReadError::io(&url, format!("cannot assign partitions: {e}")))?;
        Ok(KafkaFeed {
            consumer,
            topic: topic.clone(),
            layout,
            format: options.format.clone(),
            bad_lines: options.bad_lines,
            partitions: mine,
            idle_timeout: options.idle_timeout,
            watermark: restore.map_or(Watermark::new(0), |s| s.watermark.clone()),
            peers: None,
            stats,
            row: csv::ByteRecord::new(),
        })
    }

    /// The smallest event time among the first readable message of each of `partitions` of
    /// `topic` (looking at no more than 1,000 messages of each, for at most
    /// [`BROKER_TIMEOUT`]), or `None` (no such message, or the broker does not answer). A
    /// hint only, like [`crate::source::csv::first_event_time`]: a checkpointed run starts
    /// its cuts just below it; errors are the feed's to report.
    pub fn first_event_time(
        topic: &KafkaTopic,
        partitions: &[i32],
        options: &KafkaOptions,
    ) -> Option<u64> {
        let options = KafkaOptions {
            exit_at_end: true,
            ..options.clone()
        };
        let mut feed = KafkaFeed::open(topic, partitions, &options, Arc::default(), None).ok()?;
        // Per partition: its first event time, or how many messages did not read, or whether
        // it ended before one read.
        let mut first: Vec<Option<u64>> = vec![None; feed.partitions.len()];
        let mut unread = vec![0u32; feed.partitions.len()];
        let mut ended = vec![false; feed.partitions.len()];
        let settled = |first: &[Option<u64>], unread: &[u32], ended: &[bool]| {
            (0..first.len()).all(|i| first[i].is_some() || unread[i] >= 1000 || ended[i])
        };
        let deadline = Instant::now() + BROKER_TIMEOUT;
        while !settled(&first, &unread, &ended) && Instant::now() < deadline {
            let message = match feed.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(message)) => message,
                Some(Err(KafkaError::PartitionEOF(id))) => {
                    if let Some(index) = feed.index_of(id) {
                        ended[index] = true;
                    }
                    continue;
                }
                _ => continue,
            };
            let Some(index) = feed.index_of(message.partition()) else {
                continue;
            };
            feed.partitions[index].settle(&feed.consumer, &feed.topic.topic);
            let end = feed.partitions[index].end;
            if first[index].is_some() || end.is_some_and(|end| message.offset() >= end) {
                continue;
            }
            let timestamp = match message.timestamp() {
                Timestamp::NotAvailable => None,
                Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
            };
            let payload = message.payload().unwrap_or_default().to_vec();
            drop(message);
            let parsed = feed
                .fill_row(&payload, timestamp)
                .ok()
                .and_then(|()| feed.layout.parse(&feed.row).ok());
            match parsed {
                Some(parsed) => first[index] = Some(parsed.ts),
                None => unread[index] += 1,
            }
        }
        first.into_iter().flatten().min()
    }

    /// Lays the payload (and timestamp) of a message out as one CSV row in `self.row`.
    fn fill_row(&mut self, payload: &[u8], timestamp: Option<i64>) -> Result<(), String> {
        self.row.clear();
        match self.format.format {
            PayloadFormat::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(payload);
                if !reader
                    .read_byte_record(&mut self.row)
                    .map_err(|e| e.to_string())?
                {
                    return Err("empty message".to_string());
                }
            }
            PayloadFormat::Json => {
                let value: serde_json::Value = serde_json::from_slice(payload)
                    .map_err(|e| format!("not a JSON object: {e}"))?;
                let object = value
                    .as_object()
                    .ok_or_else(|| "not a JSON object".to_string())?;
                for column in self.format.header() {
                    if column == MESSAGE_TIMESTAMP && self.format.read.time == MESSAGE_TIMESTAMP {
                        continue;
                    }
                    let text = match object.get(&column) {
                        // The diff column is optional, as in a file without one.
                        None if column == self.format.read.diff => "1".to_string(),
                        None => return Err(format!("field '{column}': missing")),
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(serde_json::Value::Number(n)) => n.to_string(),
                        Some(other) => {
                            return Err(format!(
                                "field '{column}': expected a string or a number, got {other}"
                            ))
                        }
                    };
                    self.row.push_field(text.as_bytes());
                }
            }
        }
        if self.format.read.time == MESSAGE_TIMESTAMP && self.row.len() < self.layout_width_hint() {
            let ts = timestamp.ok_or_else(|| "the message has no timestamp".to_string())?;
            self.row.push_field(ts.to_string().as_bytes());
        }
        Ok(())
    }

    /// The number of columns of a row ([`MessageFormat::header`]).
    fn layout_width_hint(&self) -> usize {
        self.format.header().len()
    }

    /// The index in `partitions` of partition `id`, `None` if this feed does not read it.
    fn index_of(&self, id: i32) -> Option<usize> {
        self.partitions.iter().position(|p| p.id == id)
    }

    /// Advances the source's watermark to the minimum over partitions not done and not idle;
    /// when there is none, to the highest partition watermark, or to what the other readers
    /// hold ([`Peers::follow`]) if that is higher: a reader without an active partition holds
    /// no window open (see the module docs, "Idle partitions"). Tells the other readers where
    /// it stands; returns whether the watermark moved.
    fn advance(&mut self) -> bool {
        let before = self.watermark.current();
        let now = Instant::now();
        let active = self
            .partitions
            .iter()
            .filter(|p| !p.done() && !self.idle(p, now))
            .map(|p| p.watermark.current())
            .min();
        let target = match active {
            Some(min) => Some(min),
            None => {
                let highest = self.partitions.iter().map(|p| p.watermark.current()).max();
                let others = self
                    .peers
                    .as_ref()
                    .and_then(|peers| peers.borrow().follow());
                highest.max(others)
            }
        };
        if let Some(target) = target {
            // A watermark of a fresh `Watermark::new(0)` moves to `target` when stamped with it.
            self.watermark.stamp(target);
        }
        if let Some(peers) = &self.peers {
            let reading = match active {
                Some(_) => Reading::Active,
                None => Reading::Idle,
            };
            peers.borrow_mut().tell(self.watermark.current(), reading);
        }
        self.watermark.current() > before
    }

    /// Whether partition `p` is idle at `now` (`--idle-timeout`): it answered a fetch, and
    /// had no record for the timeout since. Before its first fetch answer a partition is never
    /// idle: its first records may just be on their way (a consumer takes a while to start).
    fn idle(&self, p: &Partition, now: Instant) -> bool {
        self.idle_timeout
            .is_some_and(|t| p.last_record.is_some_and(|at| now.duration_since(at) >= t))
    }

    /// librdkafka's report that a fetch of partition `id` found nothing past the messages it
    /// delivered: the partition's idle clock starts if it had not, and with `--exit-at-end`
    /// the partition ends once its held messages are read, when that fetch's high watermark
    /// is at or past its end (the offsets before the end not received are control records).
    /// Errors: the high watermark is below the end the broker listed at the start, so the
    /// broker's two answers disagree on what the partition holds and stopping at either might
    /// drop records.
    fn reached_end(&mut self, id: i32) -> Result<(), ReadError> {
        let Some(index) = self.index_of(id) else {
            return Ok(());
        };
        self.partitions[index].settle(&self.consumer, &self.topic.topic);
        let high = fetched_high(&self.consumer, &self.topic.topic, id);
        let partition = &mut self.partitions[index];
        partition.last_record.get_or_insert_with(Instant::now);
        let Some(end) = partition.end.filter(|_| !partition.done()) else {
            return Ok(());
        };
        match high {
            Some(high) if high >= end => {
                partition.at_eof = true;
                Ok(())
            }
            _ => Err(ReadError::io(
                &self.topic.url(),
                format!(
                    "partition {id}: a fetch found the partition's end at offset {}, before \
                     the end offset {end} the broker listed at the start: the broker \
                     contradicts itself on where the partition ends; not stopping at either",
                    high.map_or("(none)".to_string(), |h| h.to_string())
                ),
            )),
        }
    }
}

/// The high watermark of partition `id` of `topic` in the last fetch answer `consumer`
/// received (librdkafka keeps it), `None` before any.
fn fetched_high(consumer: &BaseConsumer, topic: &str, id: i32) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // rdkafka 0.38 wraps only the broker query (`fetch_watermarks`, ListOffsets), not this
    // read of librdkafka's copy of the fetch answer. SAFETY: the client handle lives as long
    // as `consumer`, the topic is a NUL-terminated string living past the call, and the
    // offsets are written to the two locals.
    let error = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            id,
            &mut low,
            &mut high,
        )
    };
    (error == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

/// A [`Reseek`] for reading partition `id` of `topic` from offset `next` on (restored from a
/// checkpoint, or resumed after a pause). Errors name topic, partition and offset: the broker
/// does not say where the partition starts, or it starts after `next` (records deleted since,
/// or the topic recreated: they would be lost).
fn reseek(
    consumer: &BaseConsumer,
    topic: &KafkaTopic,
    id: i32,
    next: i64,
) -> Result<Reseek, ReadError> {
    let url = topic.url();
    let (low, _) = consumer
        .fetch_watermarks(&topic.topic, id, BROKER_TIMEOUT)
        .map_err(|e| ReadError::io(&url, format!("partition {id}: no first offset: {e}")))?;
    if next < low {
        return Err(ReadError::io(
            &url,
            format!(
                "partition {id}: reading resumes at offset {next}, but the partition starts at \
                 offset {low} now (records deleted, or the topic recreated): offsets \
                 {next}..{low} would be lost"
            ),
        ));
    }
    Ok(Reseek::new(next, low, FIRST_LOOKBACK))
}

impl KafkaFeed {
    /// Whether partition `index` may be read on under `bound` (a pending cut, `u64::MAX` for
    /// none): its watermark before its next record is not above it.
    fn may_read(&self, index: usize, bound: u64) -> bool {
        self.partitions[index].watermark.current() <= bound
    }

    /// Pauses (`true`) or resumes fetching partition `index`. librdkafka resumes fetching at
    /// the offset after the last message it delivered, which on tansu 0.6 skips the rest of
    /// that message's batch: a resume reads from earlier ([`Reseek`]). Errors: the resume's
    /// seek (see [`reseek`]).
    fn set_paused(&mut self, index: usize, paused: bool) -> Result<(), ReadError> {
        let partition = &mut self.partitions[index];
        if partition.paused == paused {
            return Ok(());
        }
        partition.paused = paused;
        let (id, next) = (partition.id, partition.expected());
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.topic.topic, id);
        // A pause drops what librdkafka fetched and did not deliver: an end reported before
        // does not cover it.
        partition.at_eof = false;
        if paused {
            // Best effort: a failed pause only fetches more.
            let _ = self.consumer.pause(&list);
            return Ok(());
        }
        let seek = reseek(&self.consumer, &self.topic, id, next)?;
        self.partitions[index].seek = Some(seek);
        let _ = self.consumer.resume(&list);
        self.seek(index, seek.from())
    }

    /// Seeks partition `index` to offset `from`. Errors name topic, partition and offset.
    fn seek(&mut self, index: usize, from: i64) -> Result<(), ReadError> {
        let partition = &mut self.partitions[index];
        partition.sought = Instant::now();
        partition.at_eof = false;
        let id = partition.id;
        self.consumer
            .seek(&self.topic.topic, id, Offset::Offset(from), BROKER_TIMEOUT)
            .map_err(|e| {
                ReadError::io(
                    &self.topic.url(),
                    format!("partition {id}: cannot seek to offset {from}: {e}"),
                )
            })
    }

    /// Reads one message of partition `index` into `out` (or skips it, `--on-bad-line skip`).
    fn read(
        &mut self,
        index: usize,
        offset: i64,
        payload: &[u8],
        timestamp: Option<i64>,
        out: &mut Vec<Stamped<CsvItem>>,
    ) -> Result<(), ReadError> {
        let id = self.partitions[index].id;
        self.partitions[index].next = offset + 1;
        self.partitions[index].last_record = Some(Instant::now());
        if self.partitions[index].done() {
            // Fetch nothing more of it (what librdkafka already holds is skipped).
            self.set_paused(index, true)?;
        }
        let place = format!("{} partition {id} offset {offset}", self.topic.url());
        let parsed = self.fill_row(payload, timestamp).and_then(|()| {
            self.layout.parse(&self.row).map_err(|e| {
                let field = e
                    .field
                    .map(|f| format!("field '{f}': "))
                    .unwrap_or_default();
                format!("{field}{}", e.message)
            })
        });
        match parsed {
            Ok(parsed) => {
                let partition = &mut self.partitions[index];
                // Never below the source's watermark (a partition back from idle).
                let time = partition
                    .watermark
                    .stamp(parsed.ts)
                    .max(self.watermark.current());
                out.push(
                    self.layout
                        .item(&self.row, &parsed, time, position(id, offset)),
                );
                self.stats.records.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(message) if self.bad_lines == BadLines::Skip => {
                let skipped = self.stats.bad_lines.fetch_add(1, Ordering::Relaxed) + 1;
                warn_skipped(skipped, &format!("{place}: {message}"));
                Ok(())
            }
            Err(message) => Err(ReadError::Io {
                file: place,
                message,
            }),
        }
    }
}

impl Feed for KafkaFeed {
    type Item = CsvItem;
    type Error = ReadError;

    fn poll(&mut self, max: usize, out: &mut Vec<Stamped<CsvItem>>) -> Result<Poll, ReadError> {
        self.poll_bounded(max, out, u64::MAX)
    }

    /// Reads up to `max` messages, first those held of partitions that `bound` lets go on, and
    /// holds back every message of a partition whose watermark is above `bound`.
    fn poll_bounded(
        &mut self,
        max: usize,
        out: &mut Vec<Stamped<CsvItem>>,
        bound: u64,
    ) -> Result<Poll, ReadError> {
        let max = max.max(1);
        let mut taken = 0;
        for index in 0..self.partitions.len() {
            while taken < max && self.may_read(index, bound) {
                let Some(held) = self.partitions[index].held.pop_front() else {
                    break;
                };
                taken += 1;
                self.read(index, held.offset, &held.payload, held.timestamp, out)?;
            }
            let partition = &self.partitions[index];
            if partition.held.len() < HOLD_BEFORE_PAUSE && !partition.done() {
                self.set_paused(index, false)?;
            }
        }
        for index in 0..self.partitions.len() {
            let partition = &self.partitions[index];
            let stuck = partition.sought.elapsed() >= RESEEK_PATIENCE
                && !partition.paused
                && partition.seek.is_some_and(|seek| {
                    fetched_high(&self.consumer, &self.topic.topic, partition.id)
                        .is_some_and(|high| high > seek.target)
                });
            if stuck {
                if let Some(from) = self.partitions[index]
                    .seek
                    .as_mut()
                    .and_then(Reseek::further)
                {
                    self.seek(index, from)?;
                }
            }
        }
        while taken < max && !self.partitions.iter().all(Partition::done) {
            let message = match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(KafkaError::PartitionEOF(id))) => {
                    self.reached_end(id)?;
                    continue;
                }
                Some(Err(e)) if passing(&self.consumer, &self.topic.topic, &e) => continue,
                Some(Err(e)) => return Err(ReadError::io(&self.topic.url(), e)),
            };
            let (id, offset) = (message.partition(), message.offset());
            let Some(index) = self.index_of(id) else {
                continue;
            };
            // At the partition's first fetch answer, its end is settled.
            self.partitions[index].settle(&self.consumer, &self.topic.topic);
            if self.partitions[index].done() {
                continue;
            }
            if let Some(seek) = &mut self.partitions[index].seek {
                match seek.first(offset) {
                    None => self.partitions[index].seek = None,
                    Some(from) => {
                        // The seek landed past the checkpointed offset (a batch boundary):
                        // read again from earlier.
                        drop(message);
                        self.seek(index, from)?;
                        continue;
                    }
                }
            }
            let partition = &self.partitions[index];
            if partition.end.is_some_and(|end| offset >= end) {
                // Past the end found at the start (`--exit-at-end`): not this run's input.
                continue;
            }
            if offset < partition.expected() {
                // Fetched again after a pause: read or held already.
                continue;
            }
            taken += 1;
            let timestamp = match message.timestamp() {
                Timestamp::NotAvailable => None,
                Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
            };
            let payload = message.payload().unwrap_or_default();
            if !partition.held.is_empty() || !self.may_read(index, bound) {
                // Past the pending cut: kept for after it (the checkpoint's position).
                let held = Held {
                    offset,
                    payload: payload.to_vec(),
                    timestamp,
                };
                self.partitions[index].held.push_back(held);
                if self.partitions[index].held.len() >= HOLD_BEFORE_PAUSE {
                    self.set_paused(index, true)?;
                }
                continue;
            }
            let payload = payload.to_vec();
            drop(message);
            self.read(index, offset, &payload, timestamp, out)?;
        }
        if self.partitions.iter().all(Partition::done) {
            if let Some(peers) = &self.peers {
                peers.borrow_mut().finish(self.watermark.current());
            }
            return Ok(Poll::Done);
        }
        let moved = self.advance();
        Ok(if taken > 0 || moved {
            Poll::Ready
        } else {
            Poll::Pending
        })
    }

    fn state(&self, done: bool) -> Option<SourceState> {
        let partitions = self.partitions.iter().map(|p| PartitionState {
            id: p.id,
            next: p.held.front().map_or(p.next, |h| h.offset),
            end: p.end,
            watermark: p.watermark.clone(),
        });
        Some(SourceState {
            position: Position::default(),
            watermark: self.watermark.clone(),
            done,
            blocks: Vec::new(),
            partitions: partitions.collect(),
        })
    }

    fn watermark(&mut self) -> &mut Watermark {
        &mut self.watermark
    }

    /// Every partition not done is idle by its own clock (see `KafkaFeed::idle`): one not
    /// yet fetched from holds the watermark, as the module docs say; and no other worker's
    /// reader has an active partition (while one has, this one follows it instead, see
    /// [`Peers::follow`]).
    fn may_idle(&self) -> bool {
        let now = Instant::now();
        self.partitions
            .iter()
            .all(|p| p.done() || self.idle(p, now))
            && !self
                .peers
                .as_ref()
                .is_some_and(|peers| peers.borrow().others_active())
    }
}

/// Where a worker's Kafka reader stands, as it tells the others ([`Peers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Reading {
    /// A partition of it is neither idle nor done (or not fetched from yet): its watermark,
    /// the minimum over those, holds the windows.
    Active,
    /// Every partition of it is idle or done: it holds no window open.
    Idle,
    /// Every partition of it is done (`--exit-at-end`): it sends nothing more.
    Done,
}

/// A reader's message to the others: its watermark and how it reads, numbered by the reader
/// (a receiver keeps the newest: timely does not promise an order between messages).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Status {
    worker: usize,
    seq: u64,
    watermark: u64,
    reading: Reading,
}

/// How long a reader waits before it tells the others a watermark that moved while its
/// reading stayed the same (`Active` or `Idle`): a changed reading goes at once. Bounds the
/// messages of a reader that reads on, or follows processing time (every millisecond), at
/// the cost of others following it this much late.
const TELL_PAUSE: Duration = Duration::from_millis(10);

/// What a worker's Kafka reader knows of the other workers' readers under `--idle-timeout`,
/// and what it tells them (see the module docs, "Idle partitions").
struct Peers {
    me: usize,
    /// By global worker index, for every worker that reads a partition: the newest status
    /// received. Before one arrives, `Active` at 0: a reader not heard from yet may hold
    /// windows, and whether it does is not known.
    latest: Vec<Status>,
    outbox: Rc<RefCell<Outbox<Status>>>,
    /// The last status sent, and when.
    sent: Option<(Status, Instant)>,
}

impl Peers {
    /// For worker `me`, of `readers` workers reading partitions (workers `0 .. readers`).
    fn new(me: usize, readers: usize, outbox: Rc<RefCell<Outbox<Status>>>) -> Peers {
        let unknown = |worker| Status {
            worker,
            seq: 0,
            watermark: 0,
            reading: Reading::Active,
        };
        Peers {
            me,
            latest: (0..readers).map(unknown).collect(),
            outbox,
            sent: None,
        }
    }

    fn receive(&mut self, status: Status) {
        if let Some(latest) = self.latest.get_mut(status.worker) {
            if status.seq > latest.seq {
                *latest = status;
            }
        }
    }

    fn others(&self) -> impl Iterator<Item = &Status> {
        self.latest.iter().filter(|s| s.worker != self.me)
    }

    /// Whether another reader has an active partition (or was not heard from yet).
    fn others_active(&self) -> bool {
        self.others().any(|s| s.reading == Reading::Active)
    }

    /// The watermark a reader without an active partition follows: the minimum over the
    /// other readers with an active one (the input's watermark without this reader's idle
    /// partitions, Flink's rule), or, when no reader has one, the highest of the other idle
    /// readers' (every partition is idle: the input's watermark starts from the highest
    /// partition watermark, and follows processing time from there). `None` when every other
    /// reader is done.
    fn follow(&self) -> Option<u64> {
        let active = self.others().filter(|s| s.reading == Reading::Active);
        match active.map(|s| s.watermark).min() {
            Some(min) => Some(min),
            None => self
                .others()
                .filter(|s| s.reading == Reading::Idle)
                .map(|s| s.watermark)
                .max(),
        }
    }

    /// Tells the other readers this one's `watermark` and `reading`: a changed reading at
    /// once, a moved watermark at most every [`TELL_PAUSE`] (called on every poll, so a
    /// change held back goes out with a later call).
    fn tell(&mut self, watermark: u64, reading: Reading) {
        let due = match &self.sent {
            None => true,
            Some((sent, at)) => {
                sent.reading != reading
                    || (sent.watermark != watermark && at.elapsed() >= TELL_PAUSE)
            }
        };
        if due {
            let seq = self.sent.map_or(1, |(sent, _)| sent.seq + 1);
            let status = Status {
                worker: self.me,
                seq,
                watermark,
                reading,
            };
            self.outbox.borrow_mut().push(status);
            self.sent = Some((status, Instant::now()));
        }
    }

    /// Every partition of this reader is done: tells the others so, and sends no more.
    fn finish(&mut self, watermark: u64) {
        if self.outbox.borrow().is_closed() {
            return;
        }
        self.tell(watermark, Reading::Done);
        self.outbox.borrow_mut().close();
    }
}

/// The source of a topic read by `feed` on this worker (`None` on a worker that reads no
/// partition), as [`feed_source_paced`] sends it. Every worker of every process calls it.
///
/// With `--idle-timeout` (`options.idle_timeout`) and more than one worker, the readers of
/// the `partitions` partitions tell each other their watermarks and whether they have an
/// active partition, on a [`side_channel`]: a reader whose partitions are all idle or empty
/// follows the others instead of holding every window open at its own watermark (with event
/// times in epoch milliseconds, a reader that never had a record would hold them at 0
/// forever). See the module docs, "Idle partitions".
pub fn kafka_source<'scope, P: Payload<CsvItem>>(
    scope: Scope<'scope, u64>,
    feed: Option<KafkaFeed>,
    partitions: u32,
    options: SourceOptions,
    pacing: Pacing,
    error: Rc<RefCell<Option<ReadError>>>,
    cut: Cut<Option<SourceState>>,
) -> StreamVec<'scope, u64, P> {
    let mut feed = feed;
    if options.idle_timeout.is_some() && scope.peers() > 1 {
        let outbox = Rc::new(RefCell::new(Outbox::default()));
        let readers = scope.peers().min(partitions as usize);
        let peers = Rc::new(RefCell::new(Peers::new(
            scope.index(),
            readers,
            Rc::clone(&outbox),
        )));
        match feed.as_mut() {
            Some(feed) => feed.peers = Some(Rc::clone(&peers)),
            // Nothing to tell.
            None => outbox.borrow_mut().close(),
        }
        side_channel(scope, "KafkaWatermarks", outbox, move |statuses| {
            let mut peers = peers.borrow_mut();
            for status in statuses.drain(..) {
                peers.receive(status);
            }
        });
    }
    feed_source_paced(scope, feed, options, pacing, error, cut)
}

/// The position ([`super::csv::CsvRecord::pos`]) of the record at `offset` of partition `id`:
/// the id in the high 16 bits, the offset in the low 48. Ids up to 65535 and offsets up to
/// 2^48 - 1 (some 2.8 * 10^14) are kept exact; larger ones saturate, which loses only their
/// order among records that share a time.
fn position(id: i32, offset: i64) -> u64 {
    const OFFSET_BITS: u32 = 48;
    let offset = u64::try_from(offset)
        .unwrap_or(0)
        .min((1 << OFFSET_BITS) - 1);
    let id = u64::try_from(id).unwrap_or(0).min(u64::from(u16::MAX));
    (id << OFFSET_BITS) | offset
}

#[cfg(test)]
mod tests {
    use super::{position, KafkaTopic};
    use std::net::SocketAddr;

    #[test]
    fn positions_order_partitions_by_id_and_each_by_offset() {
        let order = [
            (0, 0),
            (0, 1),
            (0, (1 << 48) - 1),
            (1, 0),
            (1, 7),
            (2, 0),
            (65535, 3),
        ];
        let positions: Vec<u64> = order.iter().map(|&(id, o)| position(id, o)).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        // Beyond the exact ranges, positions saturate instead of wrapping into others.
        assert_eq!(position(0, 1 << 50), position(0, (1 << 48) - 1));
        assert!(position(70000, 0) >= position(65535, 0));
    }

    fn addresses(broker: &str) -> Vec<SocketAddr> {
        KafkaTopic {
            broker: broker.to_string(),
            topic: "t".to_string(),
        }
        .addresses()
    }

    /// Broker lists resolve as librdkafka reads `bootstrap.servers`: comma-separated,
    /// an optional `PROTOCOL://`, port 9092 when none is given, IPv6 literals in brackets.
    #[test]
    fn broker_lists_resolve_to_socket_addresses() {
        let at = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert_eq!(addresses("127.0.0.1:9093"), [at("127.0.0.1:9093")]);
        assert_eq!(addresses("PLAINTEXT://127.0.0.1"), [at("127.0.0.1:9092")]);
        assert_eq!(addresses("[::1]:9093"), [at("[::1]:9093")]);
        assert_eq!(addresses("[::1]"), [at("[::1]:9092")]);
        assert_eq!(
            addresses("10.0.0.1:1, 10.0.0.2"),
            [at("10.0.0.1:1"), at("10.0.0.2:9092")]
        );
        assert!(addresses("localhost:9093").contains(&at("127.0.0.1:9093")));
        assert!(addresses("no such host.invalid:9092").is_empty());
    }
}
