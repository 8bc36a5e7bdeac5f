//! Kafka output: changelog rows (and late rows) as messages of a topic, written by worker 0.
//!
//! `--output kafka://HOST:PORT/TOPIC` sends every changelog row as one message, keyed by the
//! window's key, its payload one CSV line (`window_start,window_end,key,value,diff`, no header)
//! or one JSON object with those fields (`--output-format`). Rows go out as the windows close;
//! at the end of the input the producer is flushed and every delivery checked, so a run that
//! succeeds has had every row acknowledged by the broker. A delivery failure (the broker lost,
//! the topic missing) stops the run with one line naming the topic. This is at-least-once, like
//! any non-transactional producer: a run that fails after some rows were delivered leaves them
//! in the topic.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

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
        let failed = self.deliveries.failed.lock().unwrap_or_else(|p| p.into_inner());
        match failed.as_ref() {
            Some(e) => Err(format!("writing {}: {e}", self.topic.url())),
            None => Ok(()),
        }
    }

    fn failure(&self, e: impl std::fmt::Display) -> String {
        format!("writing {}: {e}", self.topic.url())
    }
}

/// Sends each record of `stream` through worker 0's `writer` (other workers pass `None`),
/// `encode` giving its key and payload; flushes and checks every delivery once the input is
/// complete. The first error stops writing and is stored in `error`.
pub fn kafka_sink<'scope, D, E>(
    stream: StreamVec<'scope, u64, D>,
    writer: Option<KafkaWriter>,
    mut encode: E,
    error: Rc<RefCell<Option<String>>>,
) where
    D: ExchangeData,
    E: FnMut(&D, PayloadFormat) -> (String, Vec<u8>) + 'static,
{
    let mut writer = writer;
    stream.sink(
        Exchange::new(|_: &D| 0),
        "KafkaSink",
        move |(input, frontier)| {
            let mut result = Ok(());
            input.for_each(|_cap, data| {
                let Some(out) = writer.as_ref() else { return };
                for item in data.iter() {
                    let (key, payload) = encode(item, out.format);
                    if result.is_ok() {
                        result = out.send(&key, &payload);
                    }
                }
            });
            if let Some(out) = writer.as_ref() {
                if result.is_ok() {
                    result = if frontier.is_empty() {
                        out.flush()
                    } else {
                        out.poll()
                    };
                }
                if let Err(e) = result {
                    *error.borrow_mut() = Some(e);
                    writer = None;
                } else if frontier.is_empty() {
                    writer = None;
                }
            }
        },
    );
}

/// A changelog row as a message: its key, and the payload in `format`.
pub fn changelog_message<K: AsRef<str>, O: std::fmt::Display>(
    row: &crate::window::WindowResult<K, O>,
    format: PayloadFormat,
) -> (String, Vec<u8>) {
    let key = row.key.as_ref().to_string();
    let diff = if row.diff > 0 { 1 } else { -1 };
    let payload = match format {
        PayloadFormat::Json => serde_json::json!({
            "window_start": row.window.start,
            "window_end": row.window.end,
            "key": key,
            "value": row.value.to_string(),
            "diff": diff,
        })
        .to_string()
        .into_bytes(),
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
