//! Threads, processes and hostfiles to running timely workers, and what keeps a cluster honest.
//!
//! This module owns how a run is spread over workers: `--workers N` threads per process, and
//! `--processes P --process I --hostfile FILE` for timely's cluster mode, one `host:port` per
//! line (blank lines and `#` comments are ignored).
//!
//! In cluster mode the processes connect themselves (timely retries an unreachable peer
//! forever, takes any listener for a peer, and prints its progress on stdout), then hand the
//! sockets to timely. Every connection starts with a handshake: a magic word, the connection's
//! kind, the sender's and receiver's indices, and the *job*: every option that must agree
//! across processes (see [`set_job`]). So:
//! - `--connect-timeout` bounds every wait for peers, including a foreign program that accepts
//!   the connection but never answers as tidemark; errors name host and port.
//! - Processes started with different options refuse to run, naming the first differing
//!   option, before any data moves.
//! - Besides timely's data connection, each pair of processes keeps a control connection: a
//!   heartbeat every `--peer-timeout / 4` (at most every second), a process's failure message
//!   (so every process stops with the cause), and a "finished" mark. A peer silent for
//!   `--peer-timeout` (stopped, hung) or gone before finishing ends the run with one line.
//!   [`Running::join`] waits until every process finished, so no process commits its results
//!   while another one is failing.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
use timely::communication::{Hooks, WorkerGuards};
use timely::worker::Worker;
use timely::{CommunicationConfig, WorkerConfig};

use crate::abort;

/// The most worker threads one process may run: timely's channels grow with the square of the
/// workers (3000 took 15 GB and 206 s on one input row), and no machine this targets has more
/// cores than this.
pub const MAX_WORKERS: usize = 512;

/// The most processes a cluster may have (each keeps a connection to every other one).
pub const MAX_PROCESSES: usize = 1024;

/// Why a cluster could not be described or started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Worker or process counts are out of range.
    #[error("{0}")]
    Counts(String),
    /// The hostfile could not be read.
    #[error("{file}: {message}")]
    Unreadable {
        /// The hostfile.
        file: String,
        /// What went wrong.
        message: String,
    },
    /// A hostfile line is not `host:port`.
    #[error("{file}:{line}: expected host:port, got {text:?}")]
    BadLine {
        /// The hostfile.
        file: String,
        /// The 1-based line.
        line: usize,
        /// The offending text.
        text: String,
    },
    /// The hostfile lists too few hosts.
    #[error("{file}: lists {found} hosts, but --processes {processes} needs {processes}")]
    TooFew {
        /// The hostfile.
        file: String,
        /// Hosts listed.
        found: usize,
        /// Processes requested.
        processes: usize,
    },
    /// This process cannot listen on its own address.
    #[error("cannot listen on {address} (process {process} in the hostfile): {message}")]
    Listen {
        /// The `host:port`.
        address: String,
        /// This process's index.
        process: usize,
        /// What went wrong (for example "Address already in use").
        message: String,
    },
    /// The peers did not all connect within `--connect-timeout`.
    #[error("cluster did not start within {timeout:?}: {detail}")]
    Timeout {
        /// The connect timeout.
        timeout: Duration,
        /// Which peers, and what was seen of them.
        detail: String,
    },
    /// A peer runs another job: the first option that differs.
    #[error("{peer} was started with {option} {there}, this process with {option} {here}: every process must run the same job")]
    Mismatch {
        /// The peer, `process I (host:port)`.
        peer: String,
        /// The option (`--window`, ...).
        option: String,
        /// Its value here.
        here: String,
        /// Its value on the peer.
        there: String,
    },
    /// timely could not start the workers.
    #[error("cannot start workers: {0}")]
    Start(String),
}

/// How a run is spread over threads and processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Worker threads per process.
    pub workers: usize,
    /// This process's index.
    pub process: usize,
    /// Peer addresses, one per process (empty for a single process).
    pub addresses: Vec<String>,
    /// How long to wait for every peer to connect (`--connect-timeout`).
    pub connect_timeout: Duration,
    /// How long a connected peer may stay silent before the run fails (`--peer-timeout`).
    pub peer_timeout: Duration,
}

/// The options every process of a run must agree on, `(option, value)` in command-line order.
static JOB: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// Sets the job the processes compare before any data moves: `(option, value)` pairs, such as
/// `("--window", "tumbling:10s")`. Options that may differ between processes (paths, the
/// process index) are left out by the caller. Without a job, processes compare nothing.
pub fn set_job(options: Vec<(String, String)>) {
    let _ = JOB.set(options);
}

fn job_text() -> String {
    let mut text = format!("version={}\n", env!("CARGO_PKG_VERSION"));
    for (option, value) in JOB.get().map(Vec::as_slice).unwrap_or_default() {
        // One option per line: values never hold a line break in the comparison.
        text.push_str(&format!("{option}={}\n", value.replace('\n', " ")));
    }
    text
}

/// The first option whose value differs: `(option, here, there)`.
fn first_difference(here: &str, there: &str) -> Option<(String, String, String)> {
    let parse = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (mine, theirs) = (parse(here), parse(there));
    let lookup = |list: &[(String, String)], key: &str| {
        list.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "(not given)".to_string())
    };
    for (key, value) in &mine {
        let other = lookup(&theirs, key);
        if &other != value {
            return Some((key.clone(), value.clone(), other));
        }
    }
    for (key, value) in &theirs {
        if !mine.iter().any(|(k, _)| k == key) {
            return Some((key.clone(), "(not given)".to_string(), value.clone()));
        }
    }
    None
}

impl Cluster {
    /// Checks the counts and reads the hostfile when there is more than one process; the
    /// timeouts are 30 s to connect and 10 s of peer silence (see [`Cluster::with_timeouts`]).
    ///
    /// Errors: counts of zero, above [`MAX_WORKERS`] or [`MAX_PROCESSES`], a process index
    /// out of range, a missing or bad hostfile.
    pub fn new(
        workers: usize,
        processes: usize,
        process: usize,
        hostfile: Option<&Path>,
    ) -> Result<Cluster, ClusterError> {
        if workers == 0 {
            return Err(ClusterError::Counts("--workers must be at least 1".into()));
        }
        if workers > MAX_WORKERS {
            return Err(ClusterError::Counts(format!(
                "--workers {workers} is above the limit of {MAX_WORKERS} threads per process \
                 (timely's channels grow with the square of the workers); use more processes"
            )));
        }
        if processes == 0 {
            return Err(ClusterError::Counts(
                "--processes must be at least 1".into(),
            ));
        }
        if processes > MAX_PROCESSES {
            return Err(ClusterError::Counts(format!(
                "--processes {processes} is above the limit of {MAX_PROCESSES}"
            )));
        }
        if process >= processes {
            return Err(ClusterError::Counts(format!(
                "--process {process} must be below --processes {processes}"
            )));
        }
        let addresses = match (processes, hostfile) {
            (1, _) => Vec::new(),
            (_, None) => {
                return Err(ClusterError::Counts(
                    "--processes above 1 needs --hostfile FILE (one host:port per line)".into(),
                ))
            }
            (_, Some(file)) => read_hostfile(file, processes)?,
        };
        Ok(Cluster {
            workers,
            process,
            addresses,
            connect_timeout: Duration::from_secs(30),
            peer_timeout: Duration::from_secs(10),
        })
    }

    /// The same cluster with other connect and peer-silence timeouts.
    pub fn with_timeouts(mut self, connect: Duration, peer: Duration) -> Cluster {
        self.connect_timeout = connect;
        self.peer_timeout = peer;
        self
    }

    /// Whether this process reads input and writes output (process 0).
    pub fn is_leader(&self) -> bool {
        self.process == 0
    }

    /// Starts the workers: in cluster mode after connecting to every peer and comparing jobs
    /// (see the module docs). `func` runs on every worker, as with `timely::execute`.
    ///
    /// In cluster mode a peer that fails, dies or stays silent ends this process through
    /// [`abort::fail`].
    ///
    /// Errors: [`ClusterError::Listen`], [`ClusterError::Timeout`] (naming the peers not
    /// reached and what was seen of them), [`ClusterError::Mismatch`], [`ClusterError::Start`].
    pub fn execute<T, F>(&self, func: F) -> Result<Running<T>, ClusterError>
    where
        T: Send + 'static,
        F: Fn(&mut Worker) -> T + Send + Sync + 'static,
    {
        let (builders, others, control) = if self.addresses.is_empty() {
            let communication = if self.workers > 1 {
                CommunicationConfig::Process(self.workers)
            } else {
                CommunicationConfig::Thread
            };
            let (builders, others) = communication.try_build().map_err(ClusterError::Start)?;
            (builders, others, None)
        } else {
            abort::set_process(self.process, self.addresses.clone());
            let (data, control) = self.connect()?;
            let hooks = Hooks::default();
            let local = ProcessBuilder::new_typed_vector(
                self.workers,
                hooks.refill.clone(),
                hooks.spill.clone(),
            );
            let (builders, guard) =
                initialize_networking_from_sockets(local, data, self.process, self.workers, hooks)
                    .map_err(|e| ClusterError::Start(e.to_string()))?;
            let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
            let control = Control::start(control, self.peer_timeout);
            (
                builders,
                Box::new(guard) as Box<dyn std::any::Any + Send>,
                Some(control),
            )
        };
        let guards = timely::execute::execute_from(builders, others, WorkerConfig::default(), func)
            .map_err(ClusterError::Start)?;
        Ok(Running { guards, control })
    }

    /// Connects to every peer: dials the lower indices, accepts the higher ones, each with a
    /// data and a control connection. Returns the data sockets (timely's order: `None` at this
    /// process's index) and the control sockets by peer.
    #[allow(clippy::type_complexity)]
    fn connect(&self) -> Result<(Vec<Option<TcpStream>>, Vec<(usize, TcpStream)>), ClusterError> {
        let deadline = Instant::now() + self.connect_timeout;
        let me = self.process;
        let n = self.addresses.len();
        let listener =
            TcpListener::bind(&self.addresses[me]).map_err(|e| ClusterError::Listen {
                address: self.addresses[me].clone(),
                process: me,
                message: e.to_string(),
            })?;
        let job = job_text();
        let mut data: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
        let mut control = Vec::new();
        for (peer, slot) in data.iter_mut().enumerate().take(me) {
            *slot = Some(self.dial(peer, Kind::Data, &job, deadline)?);
            control.push((peer, self.dial(peer, Kind::Control, &job, deadline)?));
        }
        self.accept(&listener, &job, deadline, &mut data, &mut control)?;
        Ok((data, control))
    }

    fn timeout(&self, detail: String) -> ClusterError {
        ClusterError::Timeout {
            timeout: self.connect_timeout,
            detail,
        }
    }

    /// Connects to `peer`, retrying until `deadline`, and shakes hands.
    fn dial(
        &self,
        peer: usize,
        kind: Kind,
        job: &str,
        deadline: Instant,
    ) -> Result<TcpStream, ClusterError> {
        let address = &self.addresses[peer];
        let who = format!("{address} (process {peer})");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timeout(format!("unreachable peer(s): {who}")));
            }
            let targets: Vec<SocketAddr> = address
                .to_socket_addrs()
                .map(|a| a.collect())
                .unwrap_or_default();
            for target in targets {
                let Ok(stream) =
                    TcpStream::connect_timeout(&target, left.min(Duration::from_secs(1)))
                else {
                    continue;
                };
                let hello = Hello {
                    kind,
                    from: self.process,
                    to: peer,
                    job: job.to_string(),
                };
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                let answer = handshake(&stream, &hello, left);
                return match answer {
                    Ok(Some(reply)) => match first_difference(job, &reply.job) {
                        Some((option, here, there)) => Err(ClusterError::Mismatch {
                            peer: abort::describe_process(peer),
                            option,
                            here,
                            there,
                        }),
                        None if reply.to != peer => Err(self.timeout(format!(
                            "{who} answered as process {}: the hostfiles differ",
                            reply.to
                        ))),
                        None => ready(stream).map_err(|e| self.timeout(format!("{who}: {e}"))),
                    },
                    Ok(None) | Err(_) => Err(self.timeout(format!(
                        "{who} accepted a connection but did not answer as a tidemark process \
                         (another program on that port?)"
                    ))),
                };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Accepts the data and control connections of every higher-indexed peer.
    fn accept(
        &self,
        listener: &TcpListener,
        job: &str,
        deadline: Instant,
        data: &mut [Option<TcpStream>],
        control: &mut Vec<(usize, TcpStream)>,
    ) -> Result<(), ClusterError> {
        let me = self.process;
        let n = self.addresses.len();
        let mut seen_control = vec![false; n];
        let missing = |data: &[Option<TcpStream>], seen: &[bool]| -> Vec<usize> {
            (me + 1..n)
                .filter(|&p| data[p].is_none() || !seen[p])
                .collect()
        };
        listener
            .set_nonblocking(true)
            .map_err(|e| ClusterError::Start(e.to_string()))?;
        let (sender, hellos) = mpsc::channel::<(TcpStream, Hello)>();
        while !missing(data, &seen_control).is_empty() {
            if Instant::now() >= deadline {
                let list: Vec<String> = missing(data, &seen_control)
                    .into_iter()
                    .map(|p| format!("{} (process {p})", self.addresses[p]))
                    .collect();
                return Err(self.timeout(format!("peer(s) never connected: {}", list.join(", "))));
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    // Read the greeting in a thread of its own: a foreign client that sends
                    // nothing must not hold up the real peers.
                    let sender = sender.clone();
                    let left = deadline.saturating_duration_since(Instant::now());
                    std::thread::spawn(move || {
                        let ok = stream.set_nonblocking(false).is_ok()
                            && stream
                                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                                .is_ok();
                        if let (true, Ok(Some(hello))) = (ok, read_hello(&mut &stream)) {
                            let _ = sender.send((stream, hello));
                        }
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    return Err(ClusterError::Start(format!(
                        "accepting on {}: {e}",
                        self.addresses[me]
                    )))
                }
            }
            while let Ok((stream, hello)) = hellos.try_recv() {
                if hello.from <= me || hello.from >= n {
                    continue;
                }
                let reply = Hello {
                    kind: hello.kind,
                    from: me,
                    to: me,
                    job: job.to_string(),
                };
                let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                let sent = write_hello(&mut &stream, &reply);
                if let Some((option, here, there)) = first_difference(job, &hello.job) {
                    return Err(ClusterError::Mismatch {
                        peer: abort::describe_process(hello.from),
                        option,
                        here,
                        there,
                    });
                }
                if hello.to != me {
                    return Err(self.timeout(format!(
                        "process {} took this process for process {}: the hostfiles differ",
                        hello.from, hello.to
                    )));
                }
                if sent.is_err() {
                    continue;
                }
                let stream = ready(stream).map_err(|e| ClusterError::Start(e.to_string()))?;
                match hello.kind {
                    Kind::Data => data[hello.from] = Some(stream),
                    Kind::Control => {
                        seen_control[hello.from] = true;
                        control.push((hello.from, stream));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// A socket after the handshake: blocking, no timeouts, no delay.
fn ready(stream: TcpStream) -> io::Result<TcpStream> {
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The greeting's first bytes: tidemark's cluster protocol, version 1.
const MAGIC: &[u8; 8] = b"TIDEMRK1";
/// The longest job description accepted in a greeting.
const JOB_MAX: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Data,
    Control,
}

/// A greeting: `MAGIC, kind u8, from u32, to u32, job length u32, job` (little-endian).
struct Hello {
    kind: Kind,
    from: usize,
    to: usize,
    job: String,
}

fn write_hello(stream: &mut impl Write, hello: &Hello) -> io::Result<()> {
    let mut bytes = MAGIC.to_vec();
    bytes.push(match hello.kind {
        Kind::Data => 0,
        Kind::Control => 1,
    });
    bytes.extend_from_slice(&(hello.from as u32).to_le_bytes());
    bytes.extend_from_slice(&(hello.to as u32).to_le_bytes());
    bytes.extend_from_slice(&(hello.job.len() as u32).to_le_bytes());
    bytes.extend_from_slice(hello.job.as_bytes());
    stream.write_all(&bytes)?;
    stream.flush()
}

/// Reads a greeting; `None` if the bytes are not one (a foreign program).
fn read_hello(stream: &mut impl Read) -> io::Result<Option<Hello>> {
    let mut head = [0u8; 21];
    stream.read_exact(&mut head)?;
    if &head[..8] != MAGIC {
        return Ok(None);
    }
    let kind = match head[8] {
        0 => Kind::Data,
        1 => Kind::Control,
        _ => return Ok(None),
    };
    let word =
        |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]) as usize;
    let (from, to, len) = (word(9), word(13), word(17));
    if len > JOB_MAX {
        return Ok(None);
    }
    let mut job = vec![0u8; len];
    stream.read_exact(&mut job)?;
    let Ok(job) = String::from_utf8(job) else {
        return Ok(None);
    };
    Ok(Some(Hello {
        kind,
        from,
        to,
        job,
    }))
}

/// Sends `hello` and reads the answer within `timeout`.
fn handshake(stream: &TcpStream, hello: &Hello, timeout: Duration) -> io::Result<Option<Hello>> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write_hello(&mut &*stream, hello)?;
    read_hello(&mut &*stream)
}

/// Control messages, one tag byte each: a heartbeat, "finished", a failure (followed by the
/// message's length as u32 and the message).
const HEARTBEAT: u8 = b'H';
const FINISHED: u8 = b'F';
const FAILED: u8 = b'A';

/// The control connections of a running cluster process.
struct Control {
    peers: Vec<(usize, Arc<Mutex<TcpStream>>)>,
    finished: Arc<(Mutex<Vec<usize>>, Condvar)>,
}

impl Control {
    /// Starts a heartbeat and a watching thread per peer, and tells the peers of a failure
    /// here (an [`abort::on_abort`] hook).
    fn start(streams: Vec<(usize, TcpStream)>, peer_timeout: Duration) -> Control {
        let finished = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let interval = (peer_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut peers = Vec::new();
        for (peer, stream) in streams {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = stream.set_read_timeout(Some(peer_timeout));
            let Ok(reader) = stream.try_clone() else {
                abort::fail(
                    &format!("lost the connection to {}", abort::describe_process(peer)),
                    1,
                );
            };
            let writer = Arc::new(Mutex::new(stream));
            let heartbeat = Arc::clone(&writer);
            std::thread::spawn(move || loop {
                std::thread::sleep(interval);
                let sent = heartbeat
                    .lock()
                    .map(|mut s| s.write_all(&[HEARTBEAT]).is_ok())
                    .unwrap_or(false);
                if !sent {
                    return;
                }
            });
            let done = Arc::clone(&finished);
            std::thread::spawn(move || watch(peer, reader, peer_timeout, done));
            peers.push((peer, writer));
        }
        let tell: Vec<_> = peers.iter().map(|(_, s)| Arc::clone(s)).collect();
        abort::on_abort(move |message| {
            let mut bytes = vec![FAILED];
            bytes.extend_from_slice(&(message.len() as u32).to_le_bytes());
            bytes.extend_from_slice(message.as_bytes());
            for stream in &tell {
                if let Ok(mut stream) = stream.try_lock() {
                    let _ = stream.write_all(&bytes);
                }
            }
        });
        Control { peers, finished }
    }

    /// Tells every peer this process finished, and waits until every peer did.
    fn finish(&self) {
        for (_, stream) in &self.peers {
            if let Ok(mut stream) = stream.lock() {
                let _ = stream.write_all(&[FINISHED]);
            }
        }
        let (lock, condvar) = &*self.finished;
        let mut done = lock.lock().unwrap_or_else(|p| p.into_inner());
        while done.len() < self.peers.len() {
            done = condvar.wait(done).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Reads `peer`'s control connection until it finished; ends the run if it fails, dies or
/// stays silent for `timeout` first.
fn watch(
    peer: usize,
    mut stream: TcpStream,
    timeout: Duration,
    finished: Arc<(Mutex<Vec<usize>>, Condvar)>,
) {
    let who = abort::describe_process(peer);
    let mut done = false;
    loop {
        let mut tag = [0u8; 1];
        match stream.read(&mut tag) {
            Ok(1) => match tag[0] {
                FINISHED => {
                    done = true;
                    let (lock, condvar) = &*finished;
                    lock.lock().unwrap_or_else(|p| p.into_inner()).push(peer);
                    condvar.notify_all();
                }
                FAILED => {
                    let mut len = [0u8; 4];
                    let mut message = Vec::new();
                    if stream.read_exact(&mut len).is_ok() {
                        message = vec![0u8; (u32::from_le_bytes(len) as usize).min(JOB_MAX)];
                        let _ = stream.read_exact(&mut message);
                    }
                    let message = String::from_utf8_lossy(&message);
                    abort::fail(&format!("{who} failed: {message}"), 1);
                }
                _ => {}
            },
            // SIGCONT after SIGSTOP interrupts the read: nothing happened to the peer.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ if done => return,
            Ok(_) => abort::fail(&format!("{who} closed its connection before finishing (did it die?)"), 1),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => abort::fail(
                &format!(
                    "{who} sent nothing for {timeout:?} (stopped or hung?); --peer-timeout sets how long a peer may stay silent"
                ),
                1,
            ),
            Err(e) => abort::fail(&format!("lost the connection to {who}: {e}"), 1),
        }
    }
}

/// Workers started by [`Cluster::execute`].
pub struct Running<T: Send + 'static> {
    guards: WorkerGuards<T>,
    control: Option<Control>,
}

impl<T: Send + 'static> Running<T> {
    /// Waits for this process's workers, then (in cluster mode) until every process finished.
    ///
    /// Errors: a worker that panicked (only when no panic hook ends the process first), as
    /// `a worker failed: ...`.
    pub fn join(self) -> Result<Vec<T>, String> {
        let mut results = Vec::new();
        for result in self.guards.join() {
            results.push(result.map_err(|e| format!("a worker failed: {e}"))?);
        }
        if let Some(control) = &self.control {
            control.finish();
        }
        Ok(results)
    }
}

fn read_hostfile(path: &Path, processes: usize) -> Result<Vec<String>, ClusterError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ClusterError::Unreadable {
        file: file.clone(),
        message: e.to_string(),
    })?;
    let mut hosts = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let valid = line
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(ClusterError::BadLine {
                file,
                line: index + 1,
                text: line.to_string(),
            });
        }
        hosts.push(line.to_string());
    }
    if hosts.len() < processes {
        return Err(ClusterError::TooFew {
            file,
            found: hosts.len(),
            processes,
        });
    }
    hosts.truncate(processes);
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch hostfile holding `text`, removed when dropped.
    fn hostfile(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        file
    }

    /// The message `Cluster::new` refuses 2 processes with, process 0 of them reading a
    /// hostfile holding `text`.
    fn refused(text: &str) -> String {
        let file = hostfile(text);
        Cluster::new(1, 2, 0, Some(file.path()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_hostfiles_and_names_bad_lines() {
        let good = hostfile("# peers\nlocalhost:2101\n\n127.0.0.1:2102\n");
        let cluster = Cluster::new(2, 2, 1, Some(good.path())).unwrap();
        assert_eq!(cluster.addresses, vec!["localhost:2101", "127.0.0.1:2102"]);

        let err = refused("localhost:2101\nlocalhost\n");
        assert!(
            err.ends_with(":2: expected host:port, got \"localhost\""),
            "{err}"
        );

        let err = refused("localhost:2101\n");
        assert!(
            err.contains("lists 1 hosts, but --processes 2 needs 2"),
            "{err}"
        );
    }

    #[test]
    fn rejects_bad_counts() {
        assert!(Cluster::new(0, 1, 0, None).is_err());
        assert!(Cluster::new(1, 2, 2, None).is_err());
        assert!(Cluster::new(1, 2, 0, None).is_err());
        assert_eq!(Cluster::new(3, 1, 0, None).unwrap().workers, 3);
        let err = Cluster::new(99_999_999_999, 1, 0, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("above the limit of 512"), "{err}");
        assert!(Cluster::new(MAX_WORKERS, 1, 0, None).is_ok());
    }

    #[test]
    fn jobs_are_compared_option_by_option() {
        let here = "version=1\n--window=tumbling:10s\n--agg=sum\n";
        assert_eq!(first_difference(here, here), None);
        let there = "version=1\n--window=tumbling:5s\n--agg=count\n";
        assert_eq!(
            first_difference(here, there),
            Some((
                "--window".into(),
                "tumbling:10s".into(),
                "tumbling:5s".into()
            ))
        );
        let fewer = "version=1\n--window=tumbling:10s\n";
        assert_eq!(
            first_difference(fewer, here),
            Some(("--agg".into(), "(not given)".into(), "sum".into()))
        );
    }

    #[test]
    fn greetings_round_trip_and_foreign_bytes_are_not_one() {
        let hello = Hello {
            kind: Kind::Control,
            from: 2,
            to: 1,
            job: "--agg=sum\n".into(),
        };
        let mut bytes = Vec::new();
        write_hello(&mut bytes, &hello).unwrap();
        let back = read_hello(&mut bytes.as_slice()).unwrap().unwrap();
        assert_eq!(
            (back.kind, back.from, back.to, back.job),
            (Kind::Control, 2, 1, hello.job)
        );
        let foreign = b"HTTP/1.1 200 OK\r\n\r\nhello".to_vec();
        assert!(read_hello(&mut foreign.as_slice()).unwrap().is_none());
    }
}
