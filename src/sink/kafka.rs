//! Kafka output: changelog rows (and late rows) as messages of a topic, written by worker 0.
//!
//! `--output kafka://HOST:PORT/TOPIC` sends every changelog row as one message, keyed by the
//! window's key, its payload one CSV line (`window_start,window_end,key,value,diff`, no header)
//! or one JSON object with those fields (`--output-format`). Rows go out as the windows close;
//! at the end of the input the producer is flushed and every delivery checked, so a run that
//! succeeds has had every row acknowledged by the broker. A delivery failure (the broker lost,
//! the topic missing) stops the run with one line naming the topic. This is at-least-once, like
//! any non-transactional producer: a run that fails after some rows were delivered leaves them
//! in the topic. With `--checkpoint-dir` the output is exactly once instead ([`KafkaCommit`]):
//! one transaction per checkpoint interval, whose commit is the checkpoint's commit point, on a
//! broker with transactions; on a broker without them (tansu 0.6), a deterministic replay that
//! finds the rows a crashed run already wrote in the topic and sends only the rest.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use super::LateFields;
use crate::checkpoint::{begin_checkpoint, config_hash, crash, file, CrashPoint};
use crate::source::kafka::{
    passing, KafkaTopic, PayloadFormat, Reseek, BROKER_TIMEOUT, FETCH_WAIT_MS,
};
use crate::window::Late;

/// Remembers the first failed delivery, and per partition the last message delivered,
/// reported by librdkafka's delivery callback.
#[derive(Clone, Default)]
pub struct Deliveries {
    failed: Arc<Mutex<Option<String>>>,
    /// Per topic and partition, the [`Tail`] of the message of the highest offset delivered.
    tails: Arc<Mutex<BTreeMap<(String, i32), Tail>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Err((e, message)) => {
                let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                failed.get_or_insert_with(|| format!("topic {}: {e}", message.topic()));
            }
            Ok(message) => {
                // The row count is known only to the sender, which fills it in.
                let tail = Tail {
                    next: message.offset() + 1,
                    crc: row_crc(message.key().unwrap_or_default(), message.payload()),
                    rows: 0,
                };
                let mut tails = self.tails.lock().unwrap_or_else(|p| p.into_inner());
                let place = (message.topic().to_string(), message.partition());
                let at = tails.entry(place).or_insert(tail);
                if at.next < tail.next {
                    *at = tail;
                }
            }
        }
    }
}

/// Where a job's rows end in one output partition: the offset just past its last row there,
/// the [`row_crc`] of that row (checked when a restart starts reading there), and how many
/// rows of the job the partition holds up to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tail {
    /// The offset after the row.
    pub next: i64,
    /// The row's [`row_crc`].
    pub crc: u32,
    /// The job's rows in the partition up to and including it.
    pub rows: u64,
}

/// CRC-32 (IEEE) of a message's key length (8 bytes, little endian), key and payload: what a
/// restart compares the last row it skips with.
///
/// ```
/// use tidemark::sink::kafka::row_crc;
/// assert_ne!(row_crc(b"ab", Some(b"c")), row_crc(b"a", Some(b"bc")));
/// ```
pub fn row_crc(key: &[u8], payload: Option<&[u8]>) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&(key.len() as u64).to_le_bytes());
    hasher.update(key);
    hasher.update(payload.unwrap_or_default());
    hasher.finalize()
}

/// A producer of one topic, or of several (the changelog's and the late rows'), on the worker
/// that writes; errors name the first.
pub struct KafkaWriter {
    /// The topics, by the index [`kafka_sink`]'s `encode` gives a row.
    topics: Vec<KafkaTopic>,
    producer: BaseProducer<Deliveries>,
    deliveries: Deliveries,
    /// The payload format of the messages.
    pub format: PayloadFormat,
    /// Waits this long before each message ([`DELAY_VAR`], for tests).
    delay: Duration,
}

/// A test hook: `TIDEMARK_KAFKA_SINK_DELAY_US=N` makes a Kafka output wait `N` microseconds
/// before sending each message, a slow sink for the backpressure test.
pub const DELAY_VAR: &str = "TIDEMARK_KAFKA_SINK_DELAY_US";

/// The wait of [`DELAY_VAR`] (zero when unset). Errors: a value that is not a whole number, so
/// a misspelt hook fails instead of testing nothing.
fn sink_delay() -> Result<Duration, String> {
    match std::env::var(DELAY_VAR) {
        Err(_) => Ok(Duration::ZERO),
        Ok(text) => text
            .parse()
            .map(Duration::from_micros)
            .map_err(|_| format!("{DELAY_VAR}: expected microseconds, got {text:?}")),
    }
}

/// Has an idempotent (not transactional) `producer` ask for its producer id now: librdkafka
/// asks for it on its first metadata answer, or else on a timer 500 ms after the producer is
/// created, and again 500 ms later if no broker connection was up then. Its first message waits
/// for the id, so a run writing to Kafka for about a second spent up to a second at its end
/// waiting for the acknowledgements of its last rows (strace on tansu: the producer's first
/// connection 0.5 s after the start, its InitProducerId 0.5 s after that). A failure here is
/// left to librdkafka's timer, which asks again.
fn ask_for_producer_id(producer: &BaseProducer<Deliveries>, topic: &KafkaTopic) {
    let _ = producer
        .client()
        .fetch_metadata(Some(&topic.topic), BROKER_TIMEOUT);
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
        ask_for_producer_id(&producer, topic);
        Ok(KafkaWriter {
            topics: vec![topic.clone()],
            producer,
            deliveries,
            format,
            delay: sink_delay()?,
        })
    }

    /// Sends one message to topic `target` (an index into the writer's topics; waiting while
    /// librdkafka's queue is full).
    pub fn send(&self, target: usize, key: &str, payload: &[u8]) -> Result<(), String> {
        let topic = &self.topic(target)?.topic;
        self.send_record(BaseRecord::to(topic).key(key).payload(payload))
    }

    /// Topic `target`; errors when the writer has no such topic.
    fn topic(&self, target: usize) -> Result<&KafkaTopic, String> {
        self.topics
            .get(target)
            .ok_or_else(|| self.failure(format!("no output topic {target}")))
    }

    /// The first topic's address, which errors name.
    fn url(&self) -> String {
        self.topics.first().map(KafkaTopic::url).unwrap_or_default()
    }

    /// Sends `record` (waiting while librdkafka's queue is full).
    fn send_record(&self, mut record: BaseRecord<'_, str, [u8]>) -> Result<(), String> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    // Serve delivery reports as they come: librdkafka keeps every delivered
                    // message until its report is served, so memory would grow with the
                    // rows sent between polls (one sink activation may send many).
                    self.producer.poll(Duration::ZERO);
                    return Ok(());
                }
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

    /// Waits until every message sent was acknowledged (within three broker timeouts); errors
    /// if one was not.
    pub fn flush(&self) -> Result<(), String> {
        // Not rdkafka's `flush`: it waits in whole 100 ms polls (rdkafka 0.38's `poll` returns
        // at its deadline, not at the first delivery report), so every flush with a message in
        // flight took at least 100 ms. An exactly-once commit flushes twice, so checkpoints
        // could not commit more often than about five times a second, whatever the broker's
        // answer time (about 1 ms on tansu), and a run spent most of its time waiting there.
        let deadline = Instant::now() + BROKER_TIMEOUT * 3;
        while self.producer.in_flight_count() > 0 {
            if Instant::now() >= deadline {
                return Err(self.failure(format!(
                    "{} messages not acknowledged within {} s",
                    self.producer.in_flight_count(),
                    (BROKER_TIMEOUT * 3).as_secs()
                )));
            }
            // Not `poll(1 ms)`: rdkafka 0.38 polls again until its deadline, and once less than
            // a millisecond is left it polls without waiting, so each call spun for most of its
            // millisecond (perf: a fifth of a worker's time in `clock_gettime` while a run waited
            // for acknowledgements). Serve the reports, then sleep.
            self.producer.poll(Duration::ZERO);
            if self.producer.in_flight_count() > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.check()
    }

    fn check(&self) -> Result<(), String> {
        let failed = self
            .deliveries
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match failed.as_ref() {
            Some(e) => Err(format!("writing {}: {e}", self.url())),
            None => Ok(()),
        }
    }

    fn failure(&self, e: impl std::fmt::Display) -> String {
        format!("writing {}: {e}", self.url())
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
        PayloadFormat::Csv => csv_line(|line| super::write_changelog_row(line, row)),
    };
    (key, payload)
}

/// One CSV line, as `write` writes it, without its terminator.
fn csv_line(write: impl FnOnce(&mut csv::Writer<Vec<u8>>) -> csv::Result<()>) -> Vec<u8> {
    let mut line = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Into memory: cannot fail.
    let _ = write(&mut line);
    let mut bytes = line.into_inner().unwrap_or_default();
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    bytes
}

/// A late row as a message: keyed by its record's key, the payload in `format`. `columns` are
/// the late output's columns ([`super::late_header`]): the input row's fields, then
/// `window_start`, `window_end` and, with `--emit updates`, `diff`. JSON: one object with
/// those fields in that order, the input's fields as strings (as read), the window's bounds
/// and the diff as numbers, e.g.
/// `{"ts":"1500","key":"a","value":"3","window_start":1000,"window_end":2000}`. CSV: the line
/// a late file holds, without the header.
pub fn late_message<K: AsRef<str>>(
    late: &Late<K, LateFields>,
    columns: &[String],
    format: PayloadFormat,
) -> (String, Vec<u8>) {
    let key = late.key.as_ref().to_string();
    let payload = match format {
        PayloadFormat::Json => {
            let name = |c: &String| serde_json::to_string(c).unwrap_or_default();
            let mut fields: Vec<String> = columns
                .iter()
                .zip(&late.record.row)
                .map(|(c, v)| format!("{}:{}", name(c), name(v)))
                .collect();
            fields.push(format!("\"window_start\":{}", late.window.start));
            fields.push(format!("\"window_end\":{}", late.window.end));
            if let Some(diff) = late.record.diff {
                fields.push(format!("\"diff\":{diff}"));
            }
            format!("{{{}}}", fields.join(",")).into_bytes()
        }
        PayloadFormat::Csv => csv_line(|line| super::write_late_row(line, late)),
    };
    (key, payload)
}

/// The exactly-once output of a checkpointed run (`--checkpoint-dir` with a Kafka output), and
/// where the previous run of the same job got to. Two ways, by what the broker supports (asked
/// with an ApiVersions request when it opens: does it answer EndTxn? and then, does it grant
/// the job's transactional id?):
///
/// **Transactions** (Kafka 0.11 and later). The commit point of a checkpoint at time `c` is the
/// commit of the Kafka transaction that holds the checkpoint interval's rows *and*, as a
/// transactional offset commit of the job's consumer group, the value `c` (the offset committed
/// for partition 0 of the output topic; the end of the input is `2^62`, above every event time).
/// Both become visible together or not at all, so a crash at any point leaves the rows of
/// exactly the committed intervals, and the group's offset says which. A restart with the same
/// `transactional.id` (derived from the job) fences the crashed instance and aborts its open
/// transaction (what `init_transactions` does); it never needs to re-commit an old one. Nothing
/// is read back from the output topic.
///
/// **Deterministic replay** (brokers without EndTxn, such as tansu 0.6, on which no
/// transaction can ever commit: librdkafka refuses `commit_transaction` there; and brokers that
/// list EndTxn but answer the transactional producer's InitProducerId with
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED, such as nisshi 0.8.1 for every id). Every row is
/// sent by an idempotent producer to partition `crc32(key) mod partitions` with the header
/// `tidemark-job` naming the job, in the sink's order (times ascending, within a time by
/// payload then key). That order, and so each partition's sequence of rows, depends only on the
/// input (the determinism contract that checkpoints already rely on), and an idempotent
/// producer's rows land in a partition as a prefix of what it sent. So a restart (which replays
/// the input from its beginning) reads the job's rows already in each partition, checks that
/// they are the prefix of what it produces there, skips them and sends the rest: each row ends
/// up in the topic once, with no loss, even through repeated crashes. Weaker than transactions
/// in what a consumer sees meanwhile: rows are visible as soon as they are written, including
/// the part of an interval that a crashed run wrote (the restart does not repeat them). When
/// the whole input is written the group offset `2^62` marks the job complete (a plain offset
/// commit). A row in the log that differs from the recomputed one (the input or the query
/// changed under the same job) is an error naming partition and offset. Not covered: a request
/// of the crashed process that the broker applies only after the restart read the partition
/// (the crash hooks flush before they fire, so the tests do not race it).
///
/// So that a restart does not read the whole output again, each replayed commit leaves the
/// sink's state in the checkpoint directory (the file [`PROGRESS_FILE`], written atomically
/// once every row sent is acknowledged): per output partition the [`Tail`] of the job's rows
/// there, which says how many rows `n` the partition holds up to offset `o`. A restart reads
/// each partition from its tail's last row (checking that it is that row: the job's header and
/// its [`row_crc`]; a topic that does not hold it, say recreated, is an error), skips the first
/// `n` rows it computes for the partition unchecked (the same `n` rows, by the order above) and
/// checks the rest against what lies past `o`, as without the file. The rule counts rows, not
/// times: the rows' order is the same on any number of workers, and a restart may use
/// another (their timely times are not). What a restart reads back is then what was written
/// since the last commit (and the batch holding each tail's row, at most [`REPLAY_BATCH`]
/// messages), not the whole output; a partition where the job has no rows yet is read from its
/// beginning (only other jobs' messages can be there).
pub struct KafkaCommit {
    /// The producer of the changelog's topic and, with a Kafka late output, the late rows'.
    writer: KafkaWriter,
    group: BaseConsumer,
    /// The job: transactional id, consumer group and `tidemark-job` header.
    job: String,
    /// Per topic of `writer` (by the same index), its partition count and the index of its
    /// partition 0 in the per-partition vectors below (a *slot*: the changelog's partitions
    /// come first, then the late topic's).
    partitions: Vec<(u32, usize)>,
    /// `None` with transactions; with deterministic replay, per output partition (slot), the
    /// job's rows found there and not yet matched by this run.
    logged: Option<Vec<Logged>>,
    /// Checkpoint every this many milliseconds of event time (positive).
    pub interval: u64,
    /// Wall-clock time from one commit (or the start) to the next.
    pub min_pause: Duration,
    /// The checkpoint the previous run committed: rows at times up to it are in the topic
    /// (always `None` with deterministic replay, which replays every row but the complete run's).
    pub resumed: Option<u64>,
    /// With deterministic replay, the sink state's file in the checkpoint directory.
    progress: Option<PathBuf>,
    /// With deterministic replay, per output partition: where the job's rows end so far (as
    /// far as this run knows: saved, matched or sent).
    tails: Vec<Option<Tail>>,
    /// Per output partition, the rows this run put so far (skipped, matched or sent).
    counted: Vec<u64>,
    /// Per output partition, how many rows of this run the saved tail covers: they are
    /// skipped unchecked.
    skip: Vec<u64>,
    /// The messages read back from the topic when opening (deterministic replay).
    read_back: u64,
    /// Why the output is replayed on a broker that lists EndTxn: its refusal of the
    /// transactional producer (`None` when it has transactions or lists no EndTxn).
    refused: Option<String>,
}

/// The sink state of a deterministic-replay output at a commit (see [`KafkaCommit`]); its
/// file's [`file::Header::time`] is the commit's checkpoint time, for people.
#[derive(serde::Serialize, serde::Deserialize)]
struct Progress {
    /// The job (its `tidemark-job` header).
    job: String,
    /// Per output partition (the changelog topic's, then the late topic's), where the job's
    /// rows end (`None`: no row there yet).
    tails: Vec<Option<Tail>>,
}

/// The file, in the checkpoint directory, that holds a deterministic-replay output's state at
/// its last checkpoint (a checkpoint file: magic, version, checksum; see
/// [`crate::checkpoint::file`]).
pub const PROGRESS_FILE: &str = "ckpt-kafka-output";

/// The rows of a job found in one partition, in log order: `(key, payload, offset)`.
type Logged = VecDeque<(String, Vec<u8>, i64)>;

/// The offset that stands for "the whole input is committed".
const END: i64 = 1 << 62;

/// The most rows in one produce batch of a deterministic-replay output (librdkafka's
/// `batch.num.messages`), so that a restart finds the batch of a tail's row at most this many
/// offsets before the tail.
pub const REPLAY_BATCH: i64 = 256;

/// The header that names the job a message of a deterministic-replay output belongs to.
pub const JOB_HEADER: &str = "tidemark-job";

/// The Kafka API key of EndTxn (the request that commits or aborts a transaction).
const END_TXN: i16 = 26;

/// The output partition of a row keyed `key` with deterministic replay: CRC-32 (IEEE) of the key
/// modulo the partition count.
///
/// ```
/// use tidemark::sink::kafka::partition_of;
/// assert_eq!(partition_of("a", 1), 0);
/// assert_eq!(partition_of("a", 4), (crc32fast::hash(b"a") % 4) as i32);
/// ```
pub fn partition_of(key: &str, partitions: u32) -> i32 {
    (crc32fast::hash(key.as_bytes()) % partitions.max(1)) as i32
}

/// The API keys in an ApiVersions v0 response body (after the size): `None` if it is cut
/// short or carries an error code.
///
/// ```
/// use tidemark::sink::kafka::api_keys;
/// // correlation id 1, no error, two keys: (0, 0..9) and (26, 0..3).
/// let body = [0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 9, 0, 26, 0, 0, 0, 3];
/// assert_eq!(api_keys(&body), Some(vec![0, 26]));
/// assert_eq!(api_keys(&body[..12]), None);
/// ```
pub fn api_keys(body: &[u8]) -> Option<Vec<i16>> {
    let i16_at = |at: usize| Some(i16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?));
    let count = i32::from_be_bytes(body.get(6..10)?.try_into().ok()?);
    if i16_at(4)? != 0 || count < 0 {
        return None;
    }
    (0..count as usize)
        .map(|i| {
            let at = 10 + 6 * i;
            i16_at(at + 4)?; // the entry is whole
            i16_at(at)
        })
        .collect()
}

/// Whether the broker of `topic` answers EndTxn, asked with an ApiVersions v0 request on a
/// connection of its own (librdkafka does not tell) to each address of the broker list in turn
/// ([`KafkaTopic::addresses`]: default port 9092), the first that answers. Errors: no address
/// answers an ApiVersions response (each address's failure named).
fn supports_transactions(topic: &KafkaTopic) -> Result<bool, String> {
    let mut failures = Vec::new();
    for address in topic.addresses() {
        match api_versions_end_txn(&address) {
            Ok(answer) => return Ok(answer),
            Err(e) => failures.push(format!("{address}: {e}")),
        }
    }
    if failures.is_empty() {
        failures.push("no address".to_string());
    }
    Err(format!(
        "{}: asking the broker's API versions: {}",
        topic.url(),
        failures.join("; ")
    ))
}

/// [`supports_transactions`]' question to one broker address. Errors: the connection fails or
/// the answer is not an ApiVersions response.
fn api_versions_end_txn(address: &std::net::SocketAddr) -> Result<bool, String> {
    let mut stream =
        TcpStream::connect_timeout(address, BROKER_TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(BROKER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let client = b"tidemark";
    let mut request = Vec::new();
    request.extend(18i16.to_be_bytes()); // ApiVersions
    request.extend(0i16.to_be_bytes()); // v0: no tagged fields, understood by every broker
    request.extend(1i32.to_be_bytes()); // correlation id
    request.extend((client.len() as i16).to_be_bytes());
    request.extend(client);
    let mut framed = (request.len() as i32).to_be_bytes().to_vec();
    framed.extend(request);
    stream.write_all(&framed).map_err(|e| e.to_string())?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).map_err(|e| e.to_string())?;
    let size = i32::from_be_bytes(size);
    if !(0..1 << 20).contains(&size) {
        return Err(format!("a response of {size} bytes"));
    }
    let mut body = vec![0u8; size as usize];
    stream.read_exact(&mut body).map_err(|e| e.to_string())?;
    let keys = api_keys(&body).ok_or("not an ApiVersions response")?;
    Ok(keys.contains(&END_TXN))
}

impl KafkaCommit {
    /// Opens the exactly-once output of `topics` as `job` (the transactional id, the consumer
    /// group, the `tidemark-job` header): the changelog's topic, then, with a Kafka late output,
    /// the late rows' (written alike, by one producer: in the same transactions, or replayed
    /// by the same rule). With transactions when the broker has them (fencing any earlier
    /// instance), else by deterministic replay (reading the job's rows already in the topics,
    /// from the tails saved in checkpoint directory `dir` if it holds them); and reads the
    /// committed checkpoint (the changelog topic's group offset). Errors name the topic, or
    /// the checkpoint file.
    pub fn open(
        topics: &[KafkaTopic],
        format: PayloadFormat,
        job: &str,
        dir: &Path,
    ) -> Result<Self, String> {
        let topic = topics
            .first()
            .ok_or_else(|| "an exactly-once Kafka output needs a topic".to_string())?;
        let mut partitions = Vec::new();
        let mut slots = 0;
        for t in topics {
            let n = t.partitions()?;
            partitions.push((n, slots));
            slots += n as usize;
        }
        let mut transactions = supports_transactions(topic)?;
        let url = topic.url();
        let fail = |what: &str, e: KafkaError| format!("{url}: {what}: {e}");
        let deliveries = Deliveries::default();
        let producer = |transactional: bool| {
            let mut config = topic.config();
            config
                .set("enable.idempotence", "true")
                .set("message.timeout.ms", "30000")
                .set("batch.num.messages", REPLAY_BATCH.to_string());
            if transactional {
                config
                    .set("transactional.id", job)
                    .set("transaction.timeout.ms", "60000");
            }
            config
                .create_with_context::<_, BaseProducer<Deliveries>>(deliveries.clone())
                .map_err(|e| fail("cannot create a Kafka producer", e))
        };
        let mut refused = None;
        let producer = match producer(transactions)? {
            transactional if transactions => {
                match transactional.init_transactions(BROKER_TIMEOUT * 3) {
                    Ok(()) => transactional,
                    // A broker that lists EndTxn may still refuse every transactional producer:
                    // nisshi 0.8.1 (tansu's successor) answers InitProducerId with a transactional
                    // id so, as Kafka does for a principal the id is not granted to. No transaction
                    // can start there, so the output is written as where EndTxn is missing.
                    Err(e)
                        if e.rdkafka_error_code()
                            == Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed) =>
                    {
                        drop(transactional);
                        refused = Some(e.to_string());
                        transactions = false;
                        producer(false)?
                    }
                    Err(e) => return Err(fail("cannot start transactions", e)),
                }
            }
            idempotent => idempotent,
        };
        if !transactions {
            ask_for_producer_id(&producer, topic);
        }
        let group: BaseConsumer = topic
            .config()
            .set("group.id", job)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| fail("cannot create a Kafka consumer", e))?;
        let resumed = match committed_progress(&group, topic)? {
            Some(Offset::Offset(END)) => Some(u64::MAX),
            Some(Offset::Offset(c)) if c >= 0 && transactions => Some(c as u64),
            _ => None,
        };
        let progress = (!transactions).then(|| dir.join(PROGRESS_FILE));
        let mut tails = vec![None; slots];
        let mut read_back = 0;
        let logged = match (&progress, resumed) {
            (None, _) | (Some(_), Some(_)) => None,
            (Some(file), None) => {
                if let Some(saved) = read_progress(file, job, slots)? {
                    tails = saved;
                }
                let mut rows = Vec::new();
                for (t, &(n, base)) in topics.iter().zip(&partitions) {
                    let (found, read) = job_rows(t, job, &tails[base..base + n as usize], file)?;
                    rows.extend(found);
                    read_back += read;
                }
                Some(rows)
            }
        };
        let skip = tails.iter().map(|t| t.map_or(0, |t| t.rows)).collect();
        Ok(KafkaCommit {
            writer: KafkaWriter {
                topics: topics.to_vec(),
                producer,
                deliveries,
                format,
                delay: sink_delay()?,
            },
            group,
            job: job.to_string(),
            partitions,
            logged: logged.or_else(|| (!transactions).then(Vec::new)),
            interval: 1,
            min_pause: Duration::ZERO,
            resumed,
            progress,
            tails,
            counted: vec![0; slots],
            skip,
            read_back,
            refused,
        })
    }

    /// Why the output is written by deterministic replay although the broker lists EndTxn: its
    /// answer to the transactional producer's InitProducerId (TRANSACTIONAL_ID_AUTHORIZATION_
    /// FAILED), as librdkafka words it; `None` otherwise.
    pub fn transactions_refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// The messages read back from the topic when opening: with deterministic replay, those
    /// past the tails of the last commit (all of them without one), and the batch of the row
    /// before each tail; 0 with transactions.
    pub fn read_back(&self) -> u64 {
        self.read_back
    }

    /// The job's rows up to the tails saved at the previous run's last commit (deterministic
    /// replay), which this run skips without reading them.
    pub fn before_tails(&self) -> u64 {
        self.skip.iter().sum()
    }

    /// Saves the sink state at checkpoint `cut` (deterministic replay; every row sent must be
    /// acknowledged already): the job's tail in each partition, from this run's deliveries and
    /// the rows it found in the topic. Errors name the file.
    fn save_progress(&mut self, cut: u64) -> Result<(), String> {
        let Some(path) = &self.progress else {
            return Ok(());
        };
        let delivered = self
            .writer
            .deliveries
            .tails
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for ((topic, partition), mut tail) in delivered {
            let Some(p) = self.slot_of(&topic, partition) else {
                continue;
            };
            if let (Some(slot), Some(rows)) = (self.tails.get_mut(p), self.counted.get(p)) {
                // Every row sent is acknowledged, and rows are sent only past the ones found
                // in the topic: the last one delivered is the partition's last row so far.
                tail.rows = *rows;
                *slot = Some(tail);
            }
        }
        let header = file::Header {
            revision: crate::harness::report::git_rev(),
            config_hash: config_hash(&self.job),
            // Any number of workers may resume from it (see `KafkaCommit`).
            workers: 0,
            time: cut,
        };
        let progress = Progress {
            job: self.job.clone(),
            tails: self.tails.clone(),
        };
        // A crash halfway through the file (`snapshot:N`) leaves the previous one in force.
        file::write_atomic(
            path,
            &file::encode(&header, &progress),
            CrashPoint::Snapshot,
        )
        .map_err(|e| e.to_string())
    }

    /// Whether the previous run committed the whole input.
    pub fn complete(&self) -> bool {
        self.resumed == Some(u64::MAX)
    }

    /// Whether rows go out in transactions (else by deterministic replay).
    pub fn transactional(&self) -> bool {
        self.logged.is_none()
    }

    /// The number of the job's rows that a previous run left in the topic (deterministic
    /// replay; 0 with transactions), which this run checks and does not send again.
    pub fn already_written(&self) -> usize {
        self.logged.iter().flatten().map(VecDeque::len).sum()
    }

    /// Commits checkpoint `cut` with `rows` (the interval's rows, `(topic, key, payload)` in
    /// the sink's order; the topic an index into those [`KafkaCommit::open`] was given).
    fn commit(&mut self, rows: &[Row], cut: u64) -> Result<(), String> {
        if self.logged.is_some() {
            self.commit_replayed(rows, cut)
        } else {
            self.commit_transaction(rows, cut)
        }
    }

    /// Sends `rows` in one transaction whose commit also commits `cut` as the job's progress:
    /// the changelog's rows and the late rows of the interval alike (one producer writes both
    /// topics in one transaction).
    fn commit_transaction(&self, rows: &[Row], cut: u64) -> Result<(), String> {
        let url = self.writer.url();
        let fail = |what: &str, e: KafkaError| format!("writing {url}: {what}: {e}");
        begin_checkpoint();
        let producer = &self.writer.producer;
        producer
            .begin_transaction()
            .map_err(|e| fail("cannot begin a transaction", e))?;
        let half = rows.len() / 2;
        for (target, key, payload) in &rows[..half] {
            self.writer.send(*target, key, payload)?;
        }
        // A crash in the middle of an interval's rows, which are in the topic by then, in the
        // open transaction that the restart aborts (as for deterministic replay, so that the
        // tests' crash leaves rows to abort, not only rows still queued in this process).
        self.writer.flush()?;
        crash(CrashPoint::Output);
        for (target, key, payload) in &rows[half..] {
            self.writer.send(*target, key, payload)?;
        }
        let offset = if cut == u64::MAX { END } else { cut as i64 };
        let progress = self.progress(offset)?;
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

    /// The job's progress as an offset of partition 0 of the output topic.
    fn progress(&self, offset: i64) -> Result<TopicPartitionList, String> {
        let mut progress = TopicPartitionList::new();
        progress
            .add_partition_offset(&self.writer.topic(0)?.topic, 0, Offset::Offset(offset))
            .map_err(|e| format!("writing {}: progress: {e}", self.url()))?;
        Ok(progress)
    }

    /// Sends those of `rows` that are not in the topic yet and waits until every one is
    /// acknowledged; at the end of the input (`cut` is `u64::MAX`) marks the job complete.
    fn commit_replayed(&mut self, rows: &[Row], cut: u64) -> Result<(), String> {
        begin_checkpoint();
        let half = rows.len() / 2;
        for (target, key, payload) in &rows[..half] {
            self.put(*target, key, payload)?;
        }
        // A crash in the middle of an interval's rows, which are in the topic by then (a dead
        // process's requests still on their way would race the restart's reading).
        self.writer.flush()?;
        crash(CrashPoint::Output);
        for (target, key, payload) in &rows[half..] {
            self.put(*target, key, payload)?;
        }
        self.writer.flush()?;
        if cut != u64::MAX {
            self.save_progress(cut)?;
        }
        if cut == u64::MAX {
            let mut logged = self.logged.iter().flatten().enumerate();
            if let Some((slot, (_, _, offset))) =
                logged.find_map(|(p, rows)| rows.front().map(|row| (p, row)))
            {
                return Err(self.mismatch(slot, *offset));
            }
            if let Some((p, tail)) = self.unreached() {
                return Err(self.mismatch(p, tail.next - 1));
            }
            self.group
                .commit(&self.progress(END)?, CommitMode::Sync)
                .map_err(|e| format!("writing {}: marking the job complete: {e}", self.url()))?;
        }
        // Past the commit: a restart must neither lose nor repeat these rows.
        crash(CrashPoint::Manifest);
        Ok(())
    }

    /// A partition (its slot, and its saved tail) whose rows up to the tail this run did not
    /// all produce.
    fn unreached(&self) -> Option<(usize, Tail)> {
        let short = |p: usize| self.counted[p] < self.skip[p];
        (0..self.skip.len())
            .find(|p| short(*p))
            .and_then(|p| Some((p, self.tails[p]?)))
    }

    /// The slot of partition `partition` of the topic named `topic`.
    fn slot_of(&self, topic: &str, partition: i32) -> Option<usize> {
        let target = self.writer.topics.iter().position(|t| t.topic == topic)?;
        let (n, base) = *self.partitions.get(target)?;
        (0..n as i32)
            .contains(&partition)
            .then_some(base + partition as usize)
    }

    /// The topic (its index) and partition of slot `slot`.
    fn place_of(&self, slot: usize) -> (usize, i32) {
        let target = self
            .partitions
            .iter()
            .rposition(|(_, base)| *base <= slot)
            .unwrap_or_default();
        let base = self.partitions.get(target).map_or(0, |(_, base)| *base);
        (target, (slot - base) as i32)
    }

    /// One row for topic `target` with deterministic replay: skipped when the saved tail
    /// covers it, checked against the next row of the job already in its partition, or sent
    /// when there is none.
    fn put(&mut self, target: usize, key: &str, payload: &[u8]) -> Result<(), String> {
        let (partitions, base) = self.partitions.get(target).copied().unwrap_or_default();
        let partition = partition_of(key, partitions);
        let p = base + partition as usize;
        if let (Some(counted), Some(skip)) = (self.counted.get_mut(p), self.skip.get(p)) {
            *counted += 1;
            if *counted <= *skip {
                return Ok(());
            }
        }
        let count = self.counted.get(p).copied().unwrap_or_default();
        let logged = self.logged.as_mut().and_then(|l| l.get_mut(p));
        match logged.and_then(VecDeque::pop_front) {
            Some((k, row, offset)) if k == key && row == payload => {
                if let Some(slot) = self.tails.get_mut(p) {
                    let crc = row_crc(key.as_bytes(), Some(payload));
                    *slot = Some(Tail {
                        next: offset + 1,
                        crc,
                        rows: count,
                    });
                }
                Ok(())
            }
            Some((_, _, offset)) => Err(self.mismatch(p, offset)),
            None => {
                let headers = OwnedHeaders::new().insert(Header {
                    key: JOB_HEADER,
                    value: Some(self.job.as_str()),
                });
                let record = BaseRecord::to(&self.writer.topic(target)?.topic)
                    .partition(partition)
                    .key(key)
                    .payload(payload)
                    .headers(headers);
                self.writer.send_record(record)
            }
        }
    }

    fn url(&self) -> String {
        self.writer.url()
    }

    /// The error for the row at `offset` of slot `slot`, which this run does not produce.
    fn mismatch(&self, slot: usize, offset: i64) -> String {
        let (target, partition) = self.place_of(slot);
        let url = self
            .writer
            .topics
            .get(target)
            .map(KafkaTopic::url)
            .unwrap_or_default();
        format!(
            "writing {url}: partition {partition} offset {offset} holds a row of job {} that \
             this run does not produce there: the input or the query changed since that run; \
             write to a fresh topic or use another --checkpoint-dir",
            self.job
        )
    }
}

/// The sink state saved in `file` at the last commit of `job` (see [`KafkaCommit`]): the
/// tails of the topics' `partitions` (all of them); `None` without a file, or with
/// one of another job (the directory reused with other flags: that job's rows are not this
/// one's). Errors: the file cannot be read or is damaged, or names another partition count.
fn read_progress(
    file: &Path,
    job: &str,
    partitions: usize,
) -> Result<Option<Vec<Option<Tail>>>, String> {
    if !file.exists() {
        return Ok(None);
    }
    let (_, progress) = file::read::<Progress>(file).map_err(|e| {
        format!("{e} (deleting it makes the restart check the whole output topic instead)")
    })?;
    if progress.job != job {
        return Ok(None);
    }
    if progress.tails.len() != partitions {
        return Err(format!(
            "checkpoint {}: job {job} wrote to {} output partitions, the topics have \
             {partitions} now; write to a fresh topic or use another --checkpoint-dir",
            file.display(),
            progress.tails.len()
        ));
    }
    Ok(Some(progress.tails))
}

/// The progress job `job` committed to `topic` (its consumer group's offset of partition 0:
/// the last checkpoint's time, or [`END`] once the job is complete), through `group`, a
/// consumer of that group. Errors name the topic.
fn committed_progress(group: &BaseConsumer, topic: &KafkaTopic) -> Result<Option<Offset>, String> {
    let mut progress = TopicPartitionList::new();
    progress.add_partition(&topic.topic, 0);
    let committed = group
        .committed_offsets(progress, BROKER_TIMEOUT)
        .map_err(|e| format!("{}: cannot read the committed checkpoint: {e}", topic.url()))?;
    Ok(committed
        .find_partition(&topic.topic, 0)
        .map(|e| e.offset()))
}

/// Whether job `job` (a [`KafkaCommit`]'s job id) marked its output to `topic` complete,
/// read without opening a producer (which would fence the job's running instance): what a
/// process other than process 0 checks, as process 0 does with [`KafkaCommit::complete`],
/// so that a rerun of a finished job ends on every process. Errors name the topic.
pub fn job_complete(topic: &KafkaTopic, job: &str) -> Result<bool, String> {
    let group: BaseConsumer = topic
        .config()
        .set("group.id", job)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| format!("{}: cannot create a Kafka consumer: {e}", topic.url()))?;
    Ok(committed_progress(&group, topic)? == Some(Offset::Offset(END)))
}

/// The rows of `job` in each partition of `topic`, in log order: `(key, payload, offset)` of the
/// messages whose `tidemark-job` header is `job`, read up to the end of each partition, from
/// its tail in `tails` (saved in `file` at a checkpoint) or else from its beginning; and the
/// number of messages read. The row just before a tail must be the job's, with the tail's
/// [`row_crc`]; it is checked, not returned. Errors name the topic: the broker lost, no end
/// within three broker timeouts of silence, a tail's row not there.
fn job_rows(
    topic: &KafkaTopic,
    job: &str,
    tails: &[Option<Tail>],
    file: &Path,
) -> Result<(Vec<Logged>, u64), String> {
    let url = topic.url();
    let fail = |e: &dyn std::fmt::Display| format!("{url}: reading the rows already written: {e}");
    let lost = |p: i32, tail: &Tail| {
        format!(
            "{url}: partition {p} does not hold, at offset {}, the row of job {job} that \
             checkpoint {} says it wrote there (was the topic recreated?); write to a fresh \
             topic or use another --checkpoint-dir",
            tail.next - 1,
            file.display()
        )
    };
    let consumer: BaseConsumer = topic
        .config()
        .set("group.id", job)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        // It reads to the end and no further: a broker holds a fetch at the end of a
        // partition for this long before it answers that nothing more is there (librdkafka's
        // default 500 ms: a fresh output's restart waited that long for each empty read).
        .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string())
        .create()
        .map_err(|e| fail(&e))?;
    let mut assignment = TopicPartitionList::new();
    // Per partition, the read for its tail's row not yet proven to have skipped nothing.
    let mut seeks = vec![None; tails.len()];
    for (p, tail) in tails.iter().enumerate() {
        let start = match tail {
            None => Offset::Beginning,
            Some(tail) => {
                let (low, high) = consumer
                    .fetch_watermarks(&topic.topic, p as i32, BROKER_TIMEOUT)
                    .map_err(|e| fail(&e))?;
                // The partition ends before the row's batch, or starts after the row (a
                // broker may understate the end, by less than a batch: tansu 0.6 by all but
                // the first record of the last one, and the producer's batches hold at most
                // `REPLAY_BATCH` rows).
                if high <= (tail.next - REPLAY_BATCH).max(0) || low >= tail.next {
                    return Err(lost(p as i32, tail));
                }
                // tansu 0.6 answers a fetch with the batches that start at or after its
                // offset: the row is read from the start of its batch, or earlier.
                let seek = Reseek::new(tail.next - 1, low, REPLAY_BATCH - 1);
                seeks[p] = Some(seek);
                Offset::Offset(seek.from())
            }
        };
        assignment
            .add_partition_offset(&topic.topic, p as i32, start)
            .map_err(|e| fail(&e))?;
    }
    consumer.assign(&assignment).map_err(|e| fail(&e))?;
    let mut rows = vec![VecDeque::new(); tails.len()];
    // The partitions whose tail row is still to be checked.
    let mut unchecked: BTreeSet<i32> = (0..tails.len() as i32)
        .filter(|p| tails[*p as usize].is_some())
        .collect();
    let mut open: BTreeSet<i32> = (0..tails.len() as i32).collect();
    let mut read = 0;
    // Per partition, the offset of the last message taken.
    let mut seen = vec![-1i64; tails.len()];
    let mut heard = Instant::now();
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            None if heard.elapsed() > BROKER_TIMEOUT * 3 => {
                return Err(fail(&format!(
                    "partitions {open:?} did not reach their end"
                )));
            }
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if let (true, Some(Some(tail))) = (unchecked.contains(&p), tails.get(p as usize)) {
                    return Err(lost(p, tail));
                }
                open.remove(&p);
            }
            // Still bounded by the wait for an answer above.
            Some(Err(e)) if passing(&consumer, &topic.topic, &e) => {}
            Some(Err(e)) => return Err(fail(&e)),
            Some(Ok(message)) => {
                heard = Instant::now();
                read += 1;
                let p = message.partition();
                let Some(last) = seen.get_mut(p as usize) else {
                    continue;
                };
                if message.offset() <= *last {
                    // Fetched again (tansu understates high watermarks, and librdkafka then
                    // resets to it): a row must not count twice.
                    continue;
                }
                if let Some(seek) = seeks.get_mut(p as usize).and_then(Option::as_mut) {
                    if let Some(from) = seek.first(message.offset()) {
                        // Past the row: its batch started before the read; read from earlier.
                        drop(message);
                        consumer
                            .seek(&topic.topic, p, Offset::Offset(from), BROKER_TIMEOUT)
                            .map_err(|e| fail(&e))?;
                        continue;
                    }
                    seeks[p as usize] = None;
                }
                *last = message.offset();
                let ours = message.headers().is_some_and(|headers| {
                    headers
                        .iter()
                        .any(|h| h.key == JOB_HEADER && h.value == Some(job.as_bytes()))
                });
                let key = message.key().unwrap_or_default();
                if let (true, Some(Some(tail))) = (unchecked.contains(&p), tails.get(p as usize)) {
                    // Before the tail's row (read from the start of its batch), or that row.
                    if message.offset() < tail.next - 1 {
                        continue;
                    }
                    let crc = row_crc(key, message.payload());
                    if !ours || message.offset() != tail.next - 1 || crc != tail.crc {
                        return Err(lost(p, tail));
                    }
                    unchecked.remove(&p);
                    continue;
                }
                if let (true, Some(slot)) = (ours, rows.get_mut(p as usize)) {
                    let key = String::from_utf8_lossy(key);
                    let payload = message.payload().unwrap_or_default().to_vec();
                    slot.push_back((key.into_owned(), payload, message.offset()));
                }
            }
        }
    }
    Ok((rows, read))
}

/// A row for a Kafka output: its topic (an index into the writer's topics: the changelog's,
/// then the late rows'), key and payload.
pub type Row = (usize, String, Vec<u8>);

/// Rows waiting for their checkpoint, per time.
type Pending = BTreeMap<u64, Vec<Row>>;

/// What worker 0 of process 0 writes a Kafka output with.
pub enum KafkaOut {
    /// Every row as soon as it arrives; every delivery checked at the end (at least once).
    Plain(KafkaWriter),
    /// Every checkpoint interval's rows in one transaction, or by deterministic replay (exactly
    /// once, `--checkpoint-dir`; see [`KafkaCommit`]).
    Exactly(Box<KafkaCommit>),
}

/// Sends each record of `stream` through worker 0's `out` (every other worker passes `None`);
/// `encode` gives a record's topic (an index into the topics of `out`'s writer: the changelog's,
/// then the late rows'), key and payload (and is called on every worker, which may count).
///
/// [`KafkaOut::Plain`] sends rows as they arrive and, once the input is complete, flushes and
/// checks every delivery. [`KafkaOut::Exactly`] holds each row by its timely time until the
/// frontier passes the next checkpoint time `c = k * interval` (and `min_pause` passed since the
/// last commit), then sends the rows at times `<= c`, ordered by (time, topic, payload, key), as one
/// commit (see [`KafkaCommit`]); rows at times up to the checkpoint resumed from are
/// dropped (the topic holds them), intervals without rows commit nothing, and the end of the
/// input commits at once. The first error is stored in `error` and stops the sink.
///
/// Returns a stream without records whose frontier passes a time once the sink has taken in
/// every row up to it (written it, or with [`KafkaOut::Exactly`] queued it for its
/// checkpoint): a probe there paces a source by the output (see [`crate::source::Pacing`]).
pub fn kafka_sink<'scope, D, E>(
    stream: StreamVec<'scope, u64, D>,
    out: Option<KafkaOut>,
    mut encode: E,
    error: Rc<RefCell<Option<String>>>,
) -> StreamVec<'scope, u64, ()>
where
    D: ExchangeData,
    E: FnMut(&D, PayloadFormat) -> Row + 'static,
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
                        let (target, key, payload) = encode(row, format);
                        match &out {
                            Some(KafkaOut::Plain(writer)) if result.is_ok() => {
                                result = writer.send(target, &key, &payload);
                            }
                            Some(KafkaOut::Exactly(_)) if resumed.is_none_or(|c| time > c) => {
                                pending
                                    .entry(time)
                                    .or_default()
                                    .push((target, key, payload));
                            }
                            _ => {}
                        }
                    }
                });
                let done = frontier.frontier().is_empty();
                let result = result.and_then(|()| match &mut out {
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
                            at.sort_unstable_by(|a, b| (a.0, &a.2, &a.1).cmp(&(b.0, &b.2, &b.1)));
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
    )
}
