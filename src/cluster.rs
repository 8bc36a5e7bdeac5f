//! Threads, processes and hostfiles to a timely configuration.
//!
//! This module owns how a run is spread over workers: `--workers N` threads per process, and
//! `--processes P --process I --hostfile FILE` for timely's cluster mode, one `host:port` per
//! line (blank lines and `#` comments are ignored). timely retries unreachable peers forever,
//! so [`Cluster::watchdog`] turns a peer that never answers into a clear error.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use timely::{CommunicationConfig, Config, WorkerConfig};

/// Why a cluster description was rejected.
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
}

impl Cluster {
    /// Checks the counts and reads the hostfile when there is more than one process.
    pub fn new(
        workers: usize,
        processes: usize,
        process: usize,
        hostfile: Option<&Path>,
    ) -> Result<Cluster, ClusterError> {
        if workers == 0 {
            return Err(ClusterError::Counts("--workers must be at least 1".into()));
        }
        if processes == 0 {
            return Err(ClusterError::Counts(
                "--processes must be at least 1".into(),
            ));
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
        })
    }

    /// The timely configuration.
    pub fn config(&self) -> Config {
        let communication = if !self.addresses.is_empty() {
            CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses: self.addresses.clone(),
                report: false,
                zerocopy: false,
            }
        } else if self.workers > 1 {
            CommunicationConfig::Process(self.workers)
        } else {
            CommunicationConfig::Thread
        };
        Config {
            communication,
            worker: WorkerConfig::default(),
        }
    }

    /// Whether this process reads input and writes output (process 0).
    pub fn is_leader(&self) -> bool {
        self.process == 0
    }

    /// Exits with an error naming the unreachable peers if the workers have not started
    /// within `timeout`; call `started.store(true)` from the workers.
    pub fn watchdog(&self, timeout: Duration) -> Arc<AtomicBool> {
        let started = Arc::new(AtomicBool::new(false));
        if self.addresses.is_empty() {
            return started;
        }
        let flag = Arc::clone(&started);
        let (addresses, me) = (self.addresses.clone(), self.process);
        std::thread::spawn(move || {
            std::thread::sleep(timeout);
            if flag.load(Ordering::SeqCst) {
                return;
            }
            let unreachable: Vec<&str> = addresses
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != me)
                .filter(|(_, a)| !reachable(a))
                .map(|(_, a)| a.as_str())
                .collect();
            let peers = if unreachable.is_empty() {
                "peers did not all connect".to_string()
            } else {
                format!("unreachable peer(s): {}", unreachable.join(", "))
            };
            eprintln!("error: cluster did not start within {timeout:?}: {peers}");
            std::process::exit(1);
        });
        started
    }
}

fn reachable(address: &str) -> bool {
    let addrs: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default();
    addrs
        .iter()
        .any(|a| TcpStream::connect_timeout(a, Duration::from_millis(500)).is_ok())
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

    fn hostfile(text: &str) -> tempfile_path::TempPath {
        tempfile_path::TempPath::with(text)
    }

    mod tempfile_path {
        pub struct TempPath(pub std::path::PathBuf);
        impl TempPath {
            pub fn with(text: &str) -> TempPath {
                let n = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                let path =
                    std::env::temp_dir().join(format!("tidemark-hosts-{}-{n}", std::process::id()));
                std::fs::write(&path, text).unwrap();
                TempPath(path)
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn reads_hostfiles_and_names_bad_lines() {
        let good = hostfile("# peers\nlocalhost:2101\n\n127.0.0.1:2102\n");
        let cluster = Cluster::new(2, 2, 1, Some(&good.0)).unwrap();
        assert_eq!(cluster.addresses, vec!["localhost:2101", "127.0.0.1:2102"]);

        let bad = hostfile("localhost:2101\nlocalhost\n");
        let err = Cluster::new(1, 2, 0, Some(&bad.0)).unwrap_err().to_string();
        assert!(
            err.ends_with(":2: expected host:port, got \"localhost\""),
            "{err}"
        );

        let short = hostfile("localhost:2101\n");
        let err = Cluster::new(1, 2, 0, Some(&short.0))
            .unwrap_err()
            .to_string();
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
        assert!(matches!(
            Cluster::new(3, 1, 0, None).unwrap().config().communication,
            CommunicationConfig::Process(3)
        ));
    }
}
