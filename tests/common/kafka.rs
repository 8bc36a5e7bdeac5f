//! A Kafka-protocol broker for tests: `tansu` with in-memory storage on a free local port,
//! killed when dropped; topics created with `tansu topic create`; messages produced to chosen
//! partitions and read back with rdkafka. Or librdkafka's mock cluster ([`Broker::mock`]), the
//! one broker at hand that commits transactions.
//!
//! `tansu` must be installed (`cargo install tansu --features dynostore --locked`, as `.ci/run`
//! does): without it the Kafka tests fail with a message saying so, they do not skip.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// The `tansu` binary: `$TANSU`, else on `PATH`, else in cargo's bin directory.
pub fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("tansu"))
            .find(|p| p.is_file())
    });
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin").join("tansu"));
    match on_path.or(cargo_bin.filter(|p| p.is_file())) {
        Some(path) => path,
        None => panic!(
            "the Kafka tests need the tansu broker: install it with \
             `cargo install tansu --features dynostore --locked` (as .ci/run does), \
             or set TANSU to its path"
        ),
    }
}

/// A running broker, stopped on drop.
pub struct Broker {
    server: Server,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

/// What serves a [`Broker`].
enum Server {
    /// A tansu process.
    Tansu(Child),
    /// librdkafka's mock cluster, in this process.
    Mock(MockCluster<'static, DefaultProducerContext>),
}

impl Broker {
    /// Starts tansu on a free port, listening and advertising on 127.0.0.1, in memory; returns
    /// once it answers a metadata request.
    pub fn start() -> Broker {
        let port = super::cli::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let broker = Broker {
            server: Server::Tansu(child),
            address: format!("127.0.0.1:{port}"),
        };
        let client: BaseConsumer = broker.config().create().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.fetch_metadata(None, Duration::from_secs(2)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not answer in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        broker
    }

    /// librdkafka's mock cluster (`rd_kafka_mock_cluster_new`, librdkafka's
    /// `src/rdkafka_mock*.c`): one broker on a free port of 127.0.0.1, served by threads of
    /// this process, that answers EndTxn, so tidemark writes exactly-once output to it in
    /// transactions. Unlike Kafka (read in librdkafka 2.12.1's `rdkafka_mock_handlers.c`):
    /// produced records are appended and visible at once, EndTxn writes no COMMIT or ABORT
    /// marker and aborts nothing, a fetch reports no aborted transaction (its last stable
    /// offset is the high watermark), TxnOffsetCommit is acknowledged but not stored (an
    /// OffsetFetch does not return it), and InitProducerId without a current producer id
    /// mints a new producer id at epoch 0 instead of bumping the transactional id's epoch, so
    /// an older instance is not fenced. So only what a run that commits every transaction
    /// writes can be checked on it: not what a consumer sees after an abort, not a restart
    /// from a committed checkpoint, not fencing.
    pub fn mock() -> Broker {
        let cluster = MockCluster::new(1).expect("librdkafka's mock cluster starts");
        let address = cluster.bootstrap_servers();
        Broker {
            server: Server::Mock(cluster),
            address,
        }
    }

    /// Makes the mock cluster answer the next requests of kind `api` with `errors`, one each,
    /// as if the broker had (mock cluster only).
    pub fn fail_next(&self, api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) {
        match &self.server {
            Server::Mock(cluster) => cluster.request_errors(api, errors),
            Server::Tansu(_) => panic!("errors are injected on the mock cluster only"),
        }
    }

    /// The client configuration of this broker.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.address)
            .set("log_level", "3");
        config
    }

    /// `kafka://127.0.0.1:PORT/TOPIC`.
    pub fn url(&self, topic: &str) -> String {
        format!("kafka://{}/{topic}", self.address)
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        match &self.server {
            Server::Tansu(_) => {
                let partitions = partitions.to_string();
                self.topic_command(&["create", topic, "--partitions", &partitions]);
            }
            Server::Mock(cluster) => cluster.create_topic(topic, partitions as i32, 1).unwrap(),
        }
    }

    /// Deletes `topic` and its records (tansu only).
    pub fn delete_topic(&self, topic: &str) {
        assert!(matches!(self.server, Server::Tansu(_)), "tansu only");
        self.topic_command(&["delete", topic]);
    }

    /// Runs `tansu topic ARGS` against this broker, which must succeed.
    fn topic_command(&self, args: &[&str]) {
        let out = Command::new(tansu_binary())
            .arg("topic")
            .args(args)
            .args(["--broker", &format!("tcp://{}", self.address)])
            .output()
            .expect("tansu runs");
        assert!(
            out.status.success(),
            "tansu topic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Produces `messages` (`(partition, payload)`, in order per partition) and waits until all
    /// are acknowledged, one message per batch: the exactly-once tests count on a run making
    /// several commits, which small fetches pace (with ordinary batches a crash trial's run once
    /// finished under load before its second commit). Batches no longer hide records from
    /// `--exit-at-end` (it reads to the fetch's high watermark): [`Broker::produce_batched`]
    /// and [`Broker::produce_many`] make ordinary ones.
    pub fn produce(&self, topic: &str, messages: &[(i32, String)]) {
        let producer: BaseProducer = self
            .config()
            .set("batch.num.messages", "1")
            .set("linger.ms", "0")
            .create()
            .unwrap();
        for (partition, payload) in messages {
            let mut record = BaseRecord::<(), _>::to(topic)
                .partition(*partition)
                .payload(payload.as_str());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Produces `messages` (`(partition, payload)`) in batches of `per_batch` consecutive
    /// messages of a partition (the last batch of each partition holding the rest); waits
    /// until all are acknowledged.
    pub fn produce_batched(&self, topic: &str, messages: &[(i32, String)], per_batch: usize) {
        let mut by_partition: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
        for (partition, payload) in messages {
            by_partition.entry(*partition).or_default().push(payload);
        }
        // A batch goes out only when flushed, with at most `per_batch` records.
        let producer: BaseProducer = self
            .config()
            .set("linger.ms", "60000")
            .set("batch.num.messages", per_batch.to_string())
            .create()
            .unwrap();
        for (partition, payloads) in by_partition {
            for chunk in payloads.chunks(per_batch) {
                for payload in chunk {
                    let mut record = BaseRecord::<(), _>::to(topic)
                        .partition(partition)
                        .payload(*payload);
                    while let Err((_, back)) = producer.send(record) {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                }
                producer.flush(Duration::from_secs(60)).unwrap();
            }
        }
    }

    /// The first record batch a fetch of `partition` from `offset` returns: its first offset
    /// and its number of records.
    pub fn first_batch(&self, topic: &str, partition: i32, offset: i64) -> (i64, i32) {
        let (records, _) = self.fetch_raw(topic, partition, offset);
        let mut r = Bytes {
            data: &records,
            at: 0,
        };
        let base = r.i64();
        r.i32(); // length
        r.i32(); // leader epoch
        r.i8(); // magic
        r.i32(); // crc
        r.i16(); // attributes
        (base, r.i32() + 1)
    }

    /// [`Broker::produce`] for many messages: batched as librdkafka fills them within 5 ms.
    /// How many records a batch holds depends on timing; [`Broker::produce_batched`] makes the
    /// batches on purpose.
    pub fn produce_many(&self, topic: &str, messages: &[(i32, String)]) {
        let producer: BaseProducer = self
            .config()
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .unwrap();
        for (partition, payload) in messages {
            let mut record = BaseRecord::<(), _>::to(topic)
                .partition(*partition)
                .payload(payload.as_str());
            while let Err((_, back)) = producer.send(record) {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
        }
        producer.flush(Duration::from_secs(60)).unwrap();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Server::Tansu(child) = &mut self.server {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A big-endian reader over a Kafka response or record batch.
struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let out = &self.data[self.at..self.at + n];
        self.at += n;
        out
    }
    fn i8(&mut self) -> i8 {
        self.take(1)[0] as i8
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let n = self.i16();
        String::from_utf8_lossy(self.take(n.max(0) as usize)).into_owned()
    }
    /// A zigzag varint (record fields).
    fn varint(&mut self) -> i64 {
        let (mut n, mut shift) = (0u64, 0);
        loop {
            let b = self.take(1)[0];
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        (n >> 1) as i64 ^ -((n & 1) as i64)
    }
    fn varbytes(&mut self) -> Option<&'a [u8]> {
        let n = self.varint();
        (n >= 0).then(|| self.take(n as usize))
    }
    fn left(&self) -> usize {
        self.data.len() - self.at
    }
}

impl Broker {
    /// Fetch v4 of one partition from `offset`, uncommitted records included: the raw record
    /// batches and the high watermark.
    fn fetch_raw(&self, topic: &str, partition: i32, offset: i64) -> (Vec<u8>, i64) {
        use std::io::{Read, Write};
        let mut body = Vec::new();
        body.extend(1i16.to_be_bytes()); // Fetch
        body.extend(4i16.to_be_bytes()); // v4: record batches, isolation level
        body.extend(7i32.to_be_bytes()); // correlation id
        let client = b"tidemark-test";
        body.extend((client.len() as i16).to_be_bytes());
        body.extend(client);
        body.extend((-1i32).to_be_bytes()); // replica id
        body.extend(100i32.to_be_bytes()); // max wait ms
        body.extend(0i32.to_be_bytes()); // min bytes
        body.extend((64i32 << 20).to_be_bytes()); // max bytes
        body.push(0); // read uncommitted: every record and every marker
        body.extend(1i32.to_be_bytes());
        body.extend((topic.len() as i16).to_be_bytes());
        body.extend(topic.as_bytes());
        body.extend(1i32.to_be_bytes());
        body.extend(partition.to_be_bytes());
        body.extend(offset.to_be_bytes());
        body.extend((64i32 << 20).to_be_bytes());
        let mut stream = std::net::TcpStream::connect(&self.address).unwrap();
        stream
            .write_all(&(body.len() as i32).to_be_bytes())
            .unwrap();
        stream.write_all(&body).unwrap();
        let mut size = [0u8; 4];
        stream.read_exact(&mut size).unwrap();
        let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
        stream.read_exact(&mut response).unwrap();
        let mut r = Bytes {
            data: &response,
            at: 0,
        };
        assert_eq!(r.i32(), 7, "correlation id");
        r.i32(); // throttle
        assert_eq!(r.i32(), 1, "one topic");
        assert_eq!(r.string(), topic);
        assert_eq!(r.i32(), 1, "one partition");
        assert_eq!(r.i32(), partition);
        let error = r.i16();
        assert_eq!(error, 0, "fetch {topic}/{partition}: error code {error}");
        let high = r.i64();
        r.i64(); // last stable offset
        let aborted = r.i32();
        for _ in 0..aborted.max(0) {
            r.i64();
            r.i64();
        }
        let n = r.i32();
        let records = if n < 0 {
            Vec::new()
        } else {
            r.take(n as usize).to_vec()
        };
        (records, high)
    }

    /// Every record of `topic` as it lies in the log, markers included, in log order per
    /// partition (read by raw fetches: rdkafka stops at tansu's understated high watermarks).
    pub fn records(&self, topic: &str) -> Vec<LogRecord> {
        let consumer: BaseConsumer = self.config().create().unwrap();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let partitions = metadata.topics()[0].partitions().len() as i32;
        let mut out = Vec::new();
        for partition in 0..partitions {
            let mut next = 0;
            loop {
                let (records, high) = self.fetch_raw(topic, partition, next);
                if next >= high {
                    break;
                }
                let mut r = Bytes {
                    data: &records,
                    at: 0,
                };
                let before = next;
                while r.left() >= 12 {
                    let base = r.i64();
                    let length = r.i32() as usize;
                    if r.left() < length {
                        break;
                    }
                    let mut b = Bytes {
                        data: r.take(length),
                        at: 0,
                    };
                    b.i32(); // leader epoch
                    assert_eq!(b.i8(), 2, "record batch v2");
                    b.i32(); // crc
                    let attributes = b.i16();
                    assert_eq!(attributes & 7, 0, "uncompressed batches");
                    let (transactional, control) = (attributes & 0x10 != 0, attributes & 0x20 != 0);
                    let last_delta = b.i32();
                    b.i64();
                    b.i64();
                    let producer = b.i64();
                    let epoch = b.i16();
                    b.i32();
                    let count = b.i32();
                    for _ in 0..count {
                        b.varint(); // length
                        b.i8();
                        b.varint(); // timestamp delta
                        b.varint(); // offset delta
                        let key = b.varbytes().unwrap_or_default().to_vec();
                        let value = b.varbytes().unwrap_or_default().to_vec();
                        for _ in 0..b.varint() {
                            b.varbytes();
                            b.varbytes();
                        }
                        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
                        out.push(LogRecord {
                            partition,
                            producer,
                            epoch,
                            transactional,
                            // Key: version, type (0 abort, 1 commit).
                            marker: control.then(|| i16::from_be_bytes([key[2], key[3]])),
                            key: text(key),
                            value: text(value),
                        });
                    }
                    next = base + i64::from(last_delta) + 1;
                }
                assert!(
                    next > before,
                    "fetch {topic}/{partition} at {next} made no progress"
                );
            }
        }
        out
    }

    /// The committed messages of `topic`, read by the transaction markers themselves (not by
    /// trusting a `read_committed` fetch): a transactional producer's records count once a
    /// COMMIT marker of that producer follows them, and never when an ABORT marker does or no
    /// marker yet; records of non-transactional batches count as written. Returns
    /// `(partition, key, payload)` in log order per partition. (tansu 0.6 writes ABORT markers
    /// when it fences an epoch, and never a COMMIT marker: it does not serve EndTxn, so no
    /// transaction commits there, and tidemark writes exactly-once output to it without
    /// transactions.)
    pub fn read_committed_by_markers(&self, topic: &str) -> Vec<(i32, String, String)> {
        let mut out = Vec::new();
        let mut open: BTreeMap<(i32, i64), Vec<(String, String)>> = BTreeMap::new();
        for r in self.records(topic) {
            let message = (r.partition, r.key, r.value);
            match r.marker {
                Some(kind) => {
                    let pending = open.remove(&(r.partition, r.producer)).unwrap_or_default();
                    if kind == 1 {
                        out.extend(pending.into_iter().map(|(k, v)| (r.partition, k, v)));
                    }
                }
                None if r.transactional => open
                    .entry((r.partition, r.producer))
                    .or_default()
                    .push((message.1, message.2)),
                None => out.push(message),
            }
        }
        out
    }
}

/// One record of a topic's log (see [`Broker::records`]).
#[derive(Debug)]
pub struct LogRecord {
    pub partition: i32,
    /// The producer id and epoch of its batch (-1 without idempotence).
    pub producer: i64,
    pub epoch: i16,
    /// Whether its batch is part of a transaction.
    pub transactional: bool,
    /// For a control record, its type: 0 ABORT, 1 COMMIT.
    pub marker: Option<i16>,
    pub key: String,
    pub value: String,
}
