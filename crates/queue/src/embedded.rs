//! The embedded store: a segmented append-only log under `data-directory`,
//! written by one committer thread that group-commits everything pending into
//! one write and one `fdatasync`, then answers every waiter. Reads go straight
//! to the segment files through the in-memory [`Index`].
//!
//! Crash safety: a record is acknowledged only after the fsync that covers it;
//! replay stops at the first record whose length or CRC does not check out and
//! cuts the file there (a torn tail), so what was acknowledged is always there
//! and the log never holds garbage in the middle.

use crate::index::Index;
use crate::record::{self, Record, HEADER_LEN};
use crate::{lock, now_ms, BoxFuture, NewMessage, Queue, QueueError, QueueStats, StoredMessage};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// Tuning for the embedded store.
#[derive(Clone)]
pub struct StoreOptions {
    /// A segment file is closed and a new one started past this size.
    pub segment_size: u64,
    /// Most requests folded into one commit.
    pub max_batch: usize,
    /// Told of every group commit: how long it took (write and fsync) and
    /// how many requests it carried (the daemon's metrics).
    pub on_commit: Option<Arc<dyn Fn(Duration, usize) + Send + Sync>>,
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("segment_size", &self.segment_size)
            .field("max_batch", &self.max_batch)
            .field("on_commit", &self.on_commit.is_some())
            .finish()
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            segment_size: 64 << 20,
            max_batch: 4096,
            on_commit: None,
        }
    }
}

struct Request {
    publish: Vec<NewMessage>,
    ack: Vec<u64>,
    done: oneshot::Sender<Result<(), QueueError>>,
}

struct StoreState {
    dir: PathBuf,
    index: Mutex<Index>,
    files: Mutex<HashMap<u32, Arc<File>>>,
    notify: Notify,
}

/// The durable queue store that runs without any broker.
pub struct EmbeddedStore {
    shared: Arc<StoreState>,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn segment_path(dir: &Path, seg: u32) -> PathBuf {
    dir.join(format!("{seg:010}.log"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

struct Active {
    segment: u32,
    file: Arc<File>,
    end: u64,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, replaying the log.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Self, QueueError> {
        std::fs::create_dir_all(dir)?;
        let mut segments: Vec<u32> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
            .collect();
        segments.sort_unstable();

        let mut index = Index::default();
        let mut files = HashMap::new();
        let mut next_id = 1u64;
        for (i, &seg) in segments.iter().enumerate() {
            let path = segment_path(dir, seg);
            let buf = std::fs::read(&path)?;
            let last = i + 1 == segments.len();
            let Some(first_id) = record::parse_header(&buf) else {
                if last && buf.len() < HEADER_LEN as usize {
                    // Crashed while creating the segment: start it over.
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(0)?;
                    f.write_all_at(&record::header(next_id), 0)?;
                    f.sync_all()?;
                    files.insert(seg, Arc::new(OpenOptions::new().read(true).write(true).open(&path)?));
                    index.segments.entry(seg).or_default();
                    continue;
                }
                return Err(QueueError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a Sluice queue segment", path.display()),
                )));
            };
            next_id = next_id.max(first_id);
            index.segments.entry(seg).or_default();
            let mut pos = HEADER_LEN as usize;
            while let Some((rec, next)) = record::decode(&buf, pos) {
                match rec {
                    Record::Publish {
                        id,
                        not_before_ms,
                        queue,
                        body_offset,
                        body_len,
                    } => {
                        index.insert(id, queue, not_before_ms, seg, body_offset as u64, body_len as u32);
                        next_id = next_id.max(id + 1);
                    }
                    Record::Ack { id } => {
                        index.remove(id);
                        next_id = next_id.max(id + 1);
                    }
                }
                pos = next;
            }
            if pos < buf.len() {
                if last {
                    tracing::warn!(segment = %path.display(), cut = buf.len() - pos, "queue log: cutting a torn tail left by a crash");
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(pos as u64)?;
                    f.sync_all()?;
                } else {
                    tracing::error!(segment = %path.display(), offset = pos, "queue log: corrupt record in a closed segment; later records of this segment are skipped");
                }
            }
            files.insert(seg, Arc::new(OpenOptions::new().read(true).write(true).open(&path)?));
        }

        let active = match segments.last() {
            Some(&seg) => {
                let file = files[&seg].clone();
                let end = file.metadata()?.len();
                Active {
                    segment: seg,
                    file,
                    end,
                }
            }
            None => {
                let (file, end) = create_segment(dir, 1, next_id)?;
                files.insert(1, file.clone());
                index.segments.entry(1).or_default();
                Active { segment: 1, file, end }
            }
        };
        tracing::info!(dir = %dir.display(), messages = index.len(), segments = files.len(), "queue store opened");

        let shared = Arc::new(StoreState {
            dir: dir.to_path_buf(),
            index: Mutex::new(index),
            files: Mutex::new(files),
            notify: Notify::new(),
        });
        drop_dead_segments(&shared, active.segment);
        let (tx, rx) = mpsc::channel();
        let committer_shared = shared.clone();
        let committer = std::thread::Builder::new()
            .name("queue-committer".into())
            .spawn(move || {
                Committer {
                    shared: committer_shared,
                    active,
                    next_id,
                    options,
                }
                .run(rx)
            })?;
        Ok(EmbeddedStore {
            shared,
            tx: Mutex::new(Some(tx)),
            committer: Mutex::new(Some(committer)),
        })
    }

    /// Stops the committer after it wrote everything already submitted.
    pub fn close(&self) {
        lock(&self.tx).take();
        if let Some(handle) = lock(&self.committer).take() {
            let _ = handle.join();
        }
    }

    async fn submit(&self, publish: Vec<NewMessage>, ack: Vec<u64>) -> Result<(), QueueError> {
        if publish.is_empty() && ack.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        {
            let tx = lock(&self.tx);
            let tx = tx.as_ref().ok_or(QueueError::Closed)?;
            tx.send(Request { publish, ack, done })
                .map_err(|_| QueueError::Closed)?;
        }
        wait.await.map_err(|_| QueueError::Closed)?
    }

    /// Reads the bodies of `entries` (located under the index lock).
    fn read_bodies(
        &self,
        located: Vec<(u64, crate::index::Entry, Option<Arc<File>>)>,
    ) -> Result<Vec<StoredMessage>, QueueError> {
        let mut out = Vec::with_capacity(located.len());
        for (id, e, file) in located {
            let file =
                file.ok_or_else(|| io::Error::other(format!("segment {} of message {id} is missing", e.segment)))?;
            let mut body = vec![0u8; e.len as usize];
            file.read_exact_at(&mut body, e.offset)?;
            out.push(StoredMessage {
                id,
                queue: e.queue.to_string(),
                body,
                not_before_ms: e.not_before_ms,
            });
        }
        Ok(out)
    }

    fn locate(&self, entries: Vec<(u64, crate::index::Entry)>) -> Vec<(u64, crate::index::Entry, Option<Arc<File>>)> {
        let files = lock(&self.shared.files);
        entries
            .into_iter()
            .map(|(id, e)| {
                let f = files.get(&e.segment).cloned();
                (id, e, f)
            })
            .collect()
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn create_segment(dir: &Path, seg: u32, first_id: u64) -> io::Result<(Arc<File>, u64)> {
    let path = segment_path(dir, seg);
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    file.write_all_at(&record::header(first_id), 0)?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok((Arc::new(file), HEADER_LEN))
}

/// Deletes the oldest segments while none of their messages is live. Only a
/// prefix may go: a later segment can hold acks for messages of an earlier one.
fn drop_dead_segments(shared: &StoreState, active: u32) {
    let mut index = lock(&shared.index);
    while let Some((&seg, live)) = index.segments.first_key_value() {
        if seg == active || live.messages > 0 {
            break;
        }
        index.segments.remove(&seg);
        lock(&shared.files).remove(&seg);
        if let Err(e) = std::fs::remove_file(segment_path(&shared.dir, seg)) {
            tracing::warn!(segment = seg, error = %e, "queue log: could not delete a spent segment");
        }
    }
}

struct Committer {
    shared: Arc<StoreState>,
    active: Active,
    next_id: u64,
    options: StoreOptions,
}

impl Committer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < self.options.max_batch {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let started = std::time::Instant::now();
            let result = self.commit(&mut batch);
            if let (Some(told), Ok(())) = (&self.options.on_commit, &result) {
                told(started.elapsed(), batch.len());
            }
            for req in batch {
                let answer = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(QueueError::Io(io::Error::new(e.kind(), e.to_string()))),
                };
                let _ = req.done.send(answer);
            }
            if result.is_ok() {
                self.shared.notify.notify_waiters();
                drop_dead_segments(&self.shared, self.active.segment);
                if let Err(e) = self.relocate_oldest() {
                    tracing::warn!(error = %e, "queue log: relocating the oldest segment failed; will retry");
                }
            }
        }
        if let Err(e) = self.active.file.sync_all() {
            tracing::error!(error = %e, "queue log: final sync failed");
        }
    }

    fn roll_if_full(&mut self) -> io::Result<()> {
        if self.active.end < self.options.segment_size {
            return Ok(());
        }
        let seg = self.active.segment + 1;
        let (file, end) = create_segment(&self.shared.dir, seg, self.next_id)?;
        lock(&self.shared.files).insert(seg, file.clone());
        lock(&self.shared.index).segments.entry(seg).or_default();
        self.active = Active {
            segment: seg,
            file,
            end,
        };
        Ok(())
    }

    /// Writes `buf` at the end of the active segment and syncs it; on failure
    /// the segment is cut back so no half-written record stays in the middle.
    fn append(&mut self, buf: &[u8]) -> io::Result<u64> {
        let base = self.active.end;
        let res = self
            .active
            .file
            .write_all_at(buf, base)
            .and_then(|_| self.active.file.sync_data());
        if let Err(e) = res {
            if let Err(cut) = self.active.file.set_len(base) {
                tracing::error!(error = %cut, "queue log: could not cut back a failed write");
            }
            return Err(e);
        }
        self.active.end += buf.len() as u64;
        Ok(base)
    }

    fn commit(&mut self, batch: &mut [Request]) -> io::Result<()> {
        self.roll_if_full()?;
        let mut buf = Vec::new();
        let mut placed = Vec::new();
        let mut acks = Vec::new();
        for req in batch.iter() {
            for m in &req.publish {
                let id = self.next_id;
                self.next_id += 1;
                let off = record::encode_publish(&mut buf, id, m.not_before_ms, &m.queue, &m.body);
                placed.push((id, m.queue.as_str(), m.not_before_ms, off, m.body.len()));
            }
            for &id in &req.ack {
                record::encode_ack(&mut buf, id);
                acks.push(id);
            }
        }
        let base = self.append(&buf)?;
        let mut index = lock(&self.shared.index);
        for (id, queue, due, off, len) in placed {
            index.insert(id, queue, due, self.active.segment, base + off as u64, len as u32);
        }
        for id in acks {
            index.remove(id);
        }
        Ok(())
    }

    /// Moves the few live messages of the oldest closed segment to the active
    /// one, so one long-delayed message does not pin a whole segment on disk.
    fn relocate_oldest(&mut self) -> io::Result<()> {
        let (seg, live) = {
            let index = lock(&self.shared.index);
            match index.segments.first_key_value() {
                Some((&seg, &live)) if seg != self.active.segment => (seg, live),
                _ => return Ok(()),
            }
        };
        if live.bytes > self.options.segment_size / 4 {
            return Ok(());
        }
        let entries = lock(&self.shared.index).in_segment(seg);
        let Some(file) = lock(&self.shared.files).get(&seg).cloned() else {
            return Ok(());
        };
        let mut buf = Vec::new();
        let mut moved = Vec::new();
        for (id, e) in entries {
            let mut body = vec![0u8; e.len as usize];
            file.read_exact_at(&mut body, e.offset)?;
            let off = record::encode_publish(&mut buf, id, e.not_before_ms, &e.queue, &body);
            moved.push((id, off, e.len));
        }
        self.roll_if_full()?;
        let base = self.append(&buf)?;
        {
            let mut index = lock(&self.shared.index);
            for (id, off, len) in moved {
                index.relocate(id, self.active.segment, base + off as u64, len);
            }
        }
        drop_dead_segments(&self.shared, self.active.segment);
        Ok(())
    }
}

impl Queue for EmbeddedStore {
    fn publish(&self, messages: Vec<NewMessage>) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(self.submit(messages, Vec::new()))
    }

    fn take<'a>(
        &'a self,
        queue: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<StoredMessage>, QueueError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let notified = self.shared.notify.notified();
                let now = now_ms();
                let (leased, next_due) = {
                    let mut index = lock(&self.shared.index);
                    let leased = index.lease(queue, max, now);
                    let next = index.next_due(queue);
                    (self.locate(leased), next)
                };
                if !leased.is_empty() {
                    let ids: Vec<u64> = leased.iter().map(|(id, _, _)| *id).collect();
                    return match self.read_bodies(leased) {
                        Ok(v) => Ok(v),
                        Err(e) => {
                            let mut index = lock(&self.shared.index);
                            ids.into_iter().for_each(|id| index.unlease(id));
                            Err(e)
                        }
                    };
                }
                let mut until = deadline;
                if let Some(due) = next_due {
                    until = until.min(tokio::time::Instant::now() + Duration::from_millis(due.saturating_sub(now)));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Ok(Vec::new());
                }
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep_until(until) => {}
                }
            }
        })
    }

    fn settle(&self, publish: Vec<NewMessage>, ack: Vec<u64>) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(self.submit(publish, ack))
    }

    fn release(&self, ids: Vec<u64>) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let mut index = lock(&self.shared.index);
            for id in ids {
                if index.is_leased(id) {
                    index.unlease(id);
                }
            }
            drop(index);
            self.shared.notify.notify_waiters();
            Ok(())
        })
    }

    fn peek<'a>(&'a self, queue: &'a str, max: usize) -> BoxFuture<'a, Result<Vec<StoredMessage>, QueueError>> {
        Box::pin(async move {
            let located = {
                let index = lock(&self.shared.index);
                self.locate(index.peek(queue, max))
            };
            self.read_bodies(located)
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<Vec<QueueStats>, QueueError>> {
        Box::pin(async move { Ok(lock(&self.shared.index).stats(now_ms())) })
    }
}
