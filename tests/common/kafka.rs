//! A Kafka-protocol broker for tests: `tansu` with in-memory storage on a free local port,
//! killed when dropped; topics created with `tansu topic create`; messages produced to chosen
//! partitions and read back with rdkafka.
//!
//! `tansu` must be installed (`cargo install tansu --features dynostore --locked`, as `.ci/run`
//! does): without it the Kafka tests fail with a message saying so, they do not skip.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

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

/// A running broker, killed on drop.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
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
            child,
            address: format!("127.0.0.1:{port}"),
        };
        let client: BaseConsumer = broker.config().create().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while client
            .fetch_metadata(None, Duration::from_secs(2))
            .is_err()
        {
            assert!(Instant::now() < deadline, "tansu did not answer in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        broker
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
        let out = Command::new(tansu_binary())
            .args(["topic", "create", topic, "--partitions"])
            .arg(partitions.to_string())
            .args(["--broker", &format!("tcp://{}", self.address)])
            .output()
            .expect("tansu runs");
        assert!(
            out.status.success(),
            "tansu topic create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Produces `messages` (`(partition, payload)`, in order per partition) and waits until all
    /// are acknowledged.
    pub fn produce(&self, topic: &str, messages: &[(i32, String)]) {
        let producer: BaseProducer = self.config().create().unwrap();
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

    /// Every message of `topic` (all partitions, from the beginning up to the end offsets now):
    /// `(partition, key, payload)`.
    pub fn read_all(&self, topic: &str) -> Vec<(i32, String, String)> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", "tidemark-test")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let partitions = metadata.topics()[0].partitions().len() as i32;
        let mut list = TopicPartitionList::new();
        let mut left = 0;
        for p in 0..partitions {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap();
            left += high;
            list.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&list).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while (out.len() as i64) < left {
            assert!(Instant::now() < deadline, "reading {topic} back took over 60 s");
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.unwrap();
                let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
                out.push((message.partition(), text(message.key()), text(message.payload())));
            }
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
