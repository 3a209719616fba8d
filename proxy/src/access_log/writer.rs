//! Where access log lines go: one writer thread per destination (a file
//! path, stdout or stderr), fed through a bounded channel so a worker never
//! blocks on disk. When the channel is full the line is dropped and counted.
//!
//! Stats use Envoy's `filesystem.*` names where Envoy has one:
//! `write_buffered` (lines queued), `write_completed` (flushes),
//! `write_failed`, the gauge `write_total_buffered`; plus Sluice's own
//! `filesystem.write_dropped` for lines dropped on a full queue.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};

use crate::stats::{Counter, Gauge, Store};

/// Lines one destination can hold while its thread is busy writing.
pub const DEFAULT_QUEUE_LINES: usize = 16 * 1024;

/// Where a logger writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    File(PathBuf),
    Stdout,
    Stderr,
}

impl Destination {
    /// `/dev/stdout` and `/dev/stderr` write to the process's own streams
    /// (opening them fails when they are sockets).
    pub fn for_path(path: &str) -> Self {
        match path {
            "/dev/stdout" => Destination::Stdout,
            "/dev/stderr" => Destination::Stderr,
            _ => Destination::File(PathBuf::from(path)),
        }
    }

    fn open(&self) -> io::Result<Box<dyn Write + Send>> {
        Ok(match self {
            Destination::Stdout => Box::new(io::stdout()),
            Destination::Stderr => Box::new(io::stderr()),
            Destination::File(path) => Box::new(open_append(path)?),
        })
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::File(path) => write!(f, "{}", path.display()),
            Destination::Stdout => f.write_str("/dev/stdout"),
            Destination::Stderr => f.write_str("/dev/stderr"),
        }
    }
}

fn open_append(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[derive(Debug, Clone)]
struct WriterStats {
    write_buffered: Counter,
    write_completed: Counter,
    write_failed: Counter,
    write_dropped: Counter,
    total_buffered: Gauge,
}

impl WriterStats {
    fn new(store: &Store) -> Self {
        WriterStats {
            write_buffered: store.counter("filesystem.write_buffered"),
            write_completed: store.counter("filesystem.write_completed"),
            write_failed: store.counter("filesystem.write_failed"),
            write_dropped: store.counter("filesystem.write_dropped"),
            total_buffered: store.gauge("filesystem.write_total_buffered"),
        }
    }
}

/// The writers of one proxy, shared by every access log list compiled
/// with it, so that loggers naming the same path share one writer (and one
/// open file). Cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLogWriters {
    open: Arc<Mutex<HashMap<Destination, Weak<LogWriter>>>>,
    stats: WriterStats,
    queue_lines: usize,
}

impl AccessLogWriters {
    pub fn new(store: &Store) -> Self {
        Self::with_queue_lines(store, DEFAULT_QUEUE_LINES)
    }

    /// Each destination queues at most `queue_lines` lines.
    pub fn with_queue_lines(store: &Store, queue_lines: usize) -> Self {
        AccessLogWriters {
            open: Arc::default(),
            stats: WriterStats::new(store),
            queue_lines: queue_lines.max(1),
        }
    }

    /// The writer for `destination`, opening it (append mode, created if
    /// missing) unless some live logger already has it open.
    pub fn writer(&self, destination: &Destination) -> io::Result<Arc<LogWriter>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(writer) = open.get(destination).and_then(Weak::upgrade) {
            return Ok(writer);
        }
        let sink = destination.open()?;
        let writer = Arc::new(LogWriter::spawn(
            sink,
            self.queue_lines,
            self.stats.clone(),
        )?);
        open.retain(|_, writer| writer.strong_count() > 0);
        open.insert(destination.clone(), Arc::downgrade(&writer));
        Ok(writer)
    }
}

/// One destination's queue. Dropping the last handle lets its thread write
/// what is queued and exit.
#[derive(Debug)]
pub struct LogWriter {
    queue: SyncSender<String>,
    stats: WriterStats,
}

impl LogWriter {
    fn spawn(
        sink: Box<dyn Write + Send>,
        queue_lines: usize,
        stats: WriterStats,
    ) -> io::Result<Self> {
        let (queue, lines) = mpsc::sync_channel(queue_lines);
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(lines, sink, thread_stats))?;
        Ok(LogWriter { queue, stats })
    }

    /// Queues `line` without blocking; a full queue drops it.
    pub fn write(&self, line: String) {
        match self.queue.try_send(line) {
            Ok(()) => {
                self.stats.write_buffered.inc();
                self.stats.total_buffered.inc();
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.write_dropped.inc();
            }
        }
    }
}

fn write_lines(lines: Receiver<String>, sink: Box<dyn Write + Send>, stats: WriterStats) {
    let mut sink = BufWriter::with_capacity(64 * 1024, sink);
    while let Ok(line) = lines.recv() {
        let mut result = write_one(&mut sink, &line, &stats);
        // Write whatever else is already queued before paying for a flush.
        while let Ok(line) = lines.try_recv() {
            result = result.and(write_one(&mut sink, &line, &stats));
        }
        result = result.and(sink.flush());
        match result {
            Ok(()) => stats.write_completed.inc(),
            Err(_) => stats.write_failed.inc(),
        }
    }
}

fn write_one(sink: &mut impl Write, line: &str, stats: &WriterStats) -> io::Result<()> {
    stats.total_buffered.dec();
    sink.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Sender;
    use std::time::{Duration, Instant};

    /// A sink that says when a write starts and then waits to be released.
    struct GatedSink {
        started: Sender<()>,
        release: Arc<Mutex<Receiver<()>>>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for GatedSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.started.send(());
            let _ = self.release.lock().unwrap().recv();
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let store = Store::new();
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = GatedSink {
            started: started_tx,
            release: Arc::new(Mutex::new(release_rx)),
            written: written.clone(),
        };
        let writer = LogWriter::spawn(Box::new(sink), 1, WriterStats::new(&store)).unwrap();
        // A line larger than the BufWriter goes straight to the sink, so the
        // thread is stuck in the sink's write while we fill the queue.
        let big = "x".repeat(70 * 1024) + "\n";
        writer.write(big.clone());
        started.recv_timeout(Duration::from_secs(5)).unwrap();
        let begun = Instant::now();
        writer.write("queued\n".into());
        for _ in 0..3 {
            writer.write("dropped\n".into());
        }
        assert!(begun.elapsed() < Duration::from_secs(1), "write blocked");
        assert_eq!(store.counter("filesystem.write_dropped").value(), 3);
        assert_eq!(store.counter("filesystem.write_buffered").value(), 2);
        assert_eq!(store.gauge("filesystem.write_total_buffered").value(), 1);
        for _ in 0..4 {
            let _ = release.send(());
        }
        drop(release);
        drop(writer);
        let deadline = Instant::now() + Duration::from_secs(5);
        let expected = big.len() + "queued\n".len();
        while written.lock().unwrap().len() < expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let written = written.lock().unwrap();
        assert!(written.ends_with(b"queued\n"));
        assert!(!String::from_utf8_lossy(&written).contains("dropped"));
    }

    #[test]
    fn same_destination_shares_one_writer_while_alive() {
        let dir = tempfile::tempdir().unwrap();
        let writers = AccessLogWriters::new(&Store::new());
        let path = Destination::File(dir.path().join("a.log"));
        let first = writers.writer(&path).unwrap();
        let second = writers.writer(&path).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        let other = writers
            .writer(&Destination::File(dir.path().join("b.log")))
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
    }

    #[test]
    fn dev_stdout_and_stderr_are_the_process_streams() {
        assert_eq!(Destination::for_path("/dev/stdout"), Destination::Stdout);
        assert_eq!(Destination::for_path("/dev/stderr"), Destination::Stderr);
        assert_eq!(
            Destination::for_path("/var/log/a.log"),
            Destination::File("/var/log/a.log".into())
        );
    }
}
