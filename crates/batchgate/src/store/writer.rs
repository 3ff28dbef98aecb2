//! The single writer: validates writes in arrival order, commits each batch in one durable
//! transaction (group commit: concurrent pushes share one fsync), then publishes the batch to
//! readers and answers every caller. Nothing is acknowledged, nor visible to scrapes, before it
//! is on disk.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use batchgate_format::{MetricFamily, MetricType};
use tokio::sync::{mpsc, oneshot};

use super::consistency::{Index, has_timestamps, sanitize};
use super::{
    Backend, Group, GroupKey, Labels, PUSH_FAILURE_TIME, PUSH_TIME, Published, StorageError, StoredFamily,
    timestamp_gauge,
};
use crate::telemetry::Telemetry;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 1024;
/// Committed batches a slow subscriber may fall behind by before it must resynchronise.
const CHANGE_EVENTS: usize = 128;
/// Writes waiting for the writer before callers wait to enqueue.
const QUEUE: usize = 4096;

#[derive(Debug)]
pub enum WriteKind {
    /// PUT (`replace`) or POST.
    Push { families: Vec<MetricFamily>, replace: bool },
    /// DELETE of exactly one grouping key.
    Delete,
    /// Delete every group.
    Wipe,
    /// Commit everything queued before it, then stop: later writes answer "shutting down".
    Close,
}

#[derive(Debug)]
pub struct WriteRequest {
    /// Grouping labels, `job` included.
    pub labels: Labels,
    /// When the request arrived, Unix nanoseconds.
    pub time_ns: i64,
    pub kind: WriteKind,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PushError {
    /// The push would make the store inconsistent, or carries timestamps (a 400).
    #[error("{0}")]
    Rejected(String),
    /// The change could not be made durable; nothing was applied (a 500).
    #[error("{0}")]
    Storage(String),
    #[error("batchgate is shutting down; retry against a running instance")]
    ShuttingDown,
    /// A new group would exceed `--push.max-groups` (a 4xx; nothing was stored).
    #[error(
        "batchgate already holds {0} groups, the limit (--push.max-groups); nothing was stored: delete groups \
         that are no longer pushed, or raise the limit"
    )]
    TooManyGroups(usize),
}

type Job = (WriteRequest, oneshot::Sender<Result<(), PushError>>);

/// The handle the HTTP side uses: submit writes, read committed groups.
#[derive(Clone)]
pub struct MetricStore {
    tx: mpsc::Sender<Job>,
    published: Arc<Published>,
    changes: Arc<Subscribers>,
    /// Whether the last commit failed (health turns 500 until one succeeds).
    failing: Arc<AtomicBool>,
}

impl MetricStore {
    /// Loads every stored group and starts the writer thread. `own` names batchgate's own
    /// metric families, which pushed families must agree with on type.
    pub fn open(
        mut backend: Box<dyn Backend>,
        own: HashMap<String, MetricType>,
        telemetry: Arc<Telemetry>,
        max_groups: usize,
    ) -> Result<(MetricStore, std::thread::JoinHandle<()>), StorageError> {
        let loaded = backend.load()?;
        let published = Arc::new(Published::default());
        published.apply(loaded.into_iter().map(|(k, g)| (k, Some(Arc::new(g)))).collect());
        let (tx, rx) = mpsc::channel(QUEUE);
        let failing = Arc::new(AtomicBool::new(false));
        let changes = Arc::new(Subscribers::default());
        let mut writer = Writer {
            backend,
            index: Index::new(own.clone()),
            own,
            published: published.clone(),
            telemetry,
            failing: failing.clone(),
            changes: changes.clone(),
            max_groups,
        };
        writer.rebuild_index();
        let handle = std::thread::Builder::new()
            .name("batchgate-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StorageError::Io(format!("cannot start the writer thread: {e}")))?;
        Ok((
            MetricStore {
                tx,
                published,
                changes,
                failing,
            },
            handle,
        ))
    }

    /// Applies one write and returns once it is durable (or rejected).
    pub async fn write(&self, request: WriteRequest) -> Result<(), PushError> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send((request, reply))
            .await
            .map_err(|_| PushError::ShuttingDown)?;
        done.await.unwrap_or(Err(PushError::ShuttingDown))
    }

    /// Every committed group, in grouping-key order.
    pub fn snapshot(&self) -> Vec<(GroupKey, Arc<Group>)> {
        self.published.snapshot()
    }

    /// Commits every write queued so far and stops the writer (whoever still holds a handle
    /// gets [`PushError::ShuttingDown`] from then on).
    pub async fn close(&self) {
        let _ = self
            .write(WriteRequest {
                labels: Labels::new(),
                time_ns: 0,
                kind: WriteKind::Close,
            })
            .await;
    }

    /// Every committed batch from now on, as the groups it changed (before and after). A
    /// subscriber that falls more than a thousand batches behind gets `Lagged` and should
    /// resynchronise from [`MetricStore::snapshot`].
    pub fn subscribe(&self) -> ChangeFeed {
        let (tx, rx) = mpsc::channel(CHANGE_EVENTS);
        let lagged = Arc::new(AtomicBool::new(false));
        lock(&self.changes.0).push((tx, lagged.clone()));
        ChangeFeed { rx, lagged }
    }

    /// Why the store cannot take writes now, if it cannot.
    pub fn health(&self) -> Result<(), &'static str> {
        if self.tx.capacity() == 0 {
            return Err("write queue is full");
        }
        if self.failing.load(Ordering::Relaxed) {
            return Err("the last commit to storage failed; check free space and permissions of --storage.path");
        }
        Ok(())
    }
}

struct Writer {
    backend: Box<dyn Backend>,
    index: Index,
    own: HashMap<String, MetricType>,
    published: Arc<Published>,
    telemetry: Arc<Telemetry>,
    failing: Arc<AtomicBool>,
    changes: Arc<Subscribers>,
    max_groups: usize,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Who follows committed batches. A bounded channel each, so a batch is freed as soon as it is
/// read (a broadcast ring would keep the last thousand batches' groups alive), and a subscriber
/// that falls behind is told so instead of slowing the writer.
#[derive(Default)]
pub struct Subscribers(std::sync::Mutex<Vec<Subscriber>>);

/// A subscriber's channel and whether it missed a batch.
type Subscriber = (mpsc::Sender<Arc<Vec<GroupChange>>>, Arc<AtomicBool>);

impl Subscribers {
    fn publish(&self, events: impl FnOnce() -> Vec<GroupChange>) {
        let mut subscribers = lock(&self.0);
        subscribers.retain(|(tx, _)| !tx.is_closed());
        if subscribers.is_empty() {
            return;
        }
        let events = Arc::new(events());
        for (tx, lagged) in subscribers.iter() {
            if tx.try_send(events.clone()).is_err() {
                lagged.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Committed batches, in order, for one subscriber.
pub struct ChangeFeed {
    rx: mpsc::Receiver<Arc<Vec<GroupChange>>>,
    lagged: Arc<AtomicBool>,
}

/// Why [`ChangeFeed::recv`] has no batch.
#[derive(Debug, PartialEq, Eq)]
pub enum FeedError {
    /// Batches were missed: resynchronise from [`MetricStore::snapshot`].
    Lagged,
    /// The store is closed.
    Closed,
}

impl ChangeFeed {
    pub async fn recv(&mut self) -> Result<Arc<Vec<GroupChange>>, FeedError> {
        if self.lagged.swap(false, Ordering::Relaxed) {
            return Err(FeedError::Lagged);
        }
        self.rx.recv().await.ok_or(FeedError::Closed)
    }
}

/// One group as a committed batch changed it (`None`: absent).
#[derive(Debug, Clone)]
pub struct GroupChange {
    pub key: GroupKey,
    pub before: Option<Arc<Group>>,
    pub after: Option<Arc<Group>>,
}

/// Groups changed by the batch so far (`None`: deleted), on top of the published state.
type Overlay = BTreeMap<GroupKey, Option<Arc<Group>>>;

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let closing = batch
                .iter()
                .any(|(request, _)| matches!(request.kind, WriteKind::Close));
            let mut overlay = Overlay::new();
            let mut replies = Vec::with_capacity(batch.len());
            for (request, reply) in batch {
                replies.push((self.apply(request, &mut overlay), reply));
            }
            let changes: Vec<_> = overlay.into_iter().collect();
            let started = Instant::now();
            let committed = if changes.is_empty() {
                Ok(())
            } else {
                self.backend.commit(&changes)
            };
            self.telemetry
                .observe_commit(started.elapsed().as_secs_f64(), replies.len(), committed.is_ok());
            self.failing.store(committed.is_err(), Ordering::Relaxed);
            match committed {
                Ok(()) => {
                    self.changes.publish(|| {
                        changes
                            .iter()
                            .map(|(key, after)| GroupChange {
                                key: key.clone(),
                                before: self.published.get(key),
                                after: after.clone(),
                            })
                            .collect()
                    });
                    self.published.apply(changes);
                    let groups = self.published.len();
                    self.telemetry
                        .set_store_size(groups, self.index.series_count() + 2 * groups);
                    for (result, reply) in replies {
                        let _ = reply.send(result);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "commit failed; the batch was not applied");
                    self.rebuild_index();
                    let err = PushError::Storage(format!("{e}; nothing was stored, retry later"));
                    for (_, reply) in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
            if closing {
                return;
            }
        }
    }

    /// The index as the published state defines it (at start, and after a failed commit).
    fn rebuild_index(&mut self) {
        self.index = Index::new(self.own.clone());
        for (_, group) in self.published.snapshot() {
            self.index.add_trusted(group.families.values().map(|f| &f.family));
        }
    }

    /// Groups there will be once the batch so far is committed.
    fn group_count(&self, overlay: &Overlay) -> usize {
        let mut n = self.published.len();
        for (key, group) in overlay {
            match (self.published.get(key).is_some(), group.is_some()) {
                (false, true) => n += 1,
                (true, false) => n -= 1,
                _ => {}
            }
        }
        n
    }

    fn current(&self, overlay: &Overlay, key: &GroupKey) -> Option<Arc<Group>> {
        match overlay.get(key) {
            Some(g) => g.clone(),
            None => self.published.get(key),
        }
    }

    fn apply(&mut self, request: WriteRequest, overlay: &mut Overlay) -> Result<(), PushError> {
        let key = GroupKey::new(&request.labels);
        let current = self.current(overlay, &key);
        match request.kind {
            WriteKind::Close => Ok(()),
            WriteKind::Delete => {
                if let Some(group) = current {
                    self.index.remove(group.families.values().map(|f| &f.family));
                    overlay.insert(key, None);
                }
                Ok(())
            }
            WriteKind::Wipe => {
                let keys: HashSet<GroupKey> = self
                    .published
                    .snapshot()
                    .into_iter()
                    .map(|(k, _)| k)
                    .chain(overlay.keys().cloned())
                    .collect();
                for k in keys {
                    overlay.insert(k, None);
                }
                self.index = Index::new(self.own.clone());
                Ok(())
            }
            WriteKind::Push { .. } if current.is_none() && self.group_count(overlay) >= self.max_groups => {
                Err(PushError::TooManyGroups(self.max_groups))
            }
            WriteKind::Push { families, replace } => {
                let time_ns = request.time_ns;
                let labels = request.labels;
                match self.push(current.as_deref(), &labels, families, replace, time_ns) {
                    Ok(group) => {
                        overlay.insert(key, Some(Arc::new(group)));
                        Ok(())
                    }
                    Err(reason) => {
                        // As the Pushgateway does: record the failure on the group (creating it if
                        // need be) so `push_failure_time_seconds` shows it. Keys are canonical, so
                        // such a group can never collide with another one.
                        let mut group = current.map(|g| (*g).clone()).unwrap_or_else(|| Group {
                            labels: labels.clone(),
                            ..Group::default()
                        });
                        group.families.insert(
                            PUSH_FAILURE_TIME.into(),
                            StoredFamily {
                                time_ns,
                                family: timestamp_gauge(PUSH_FAILURE_TIME, &labels, time_ns),
                            },
                        );
                        group.families.entry(PUSH_TIME.into()).or_insert_with(|| StoredFamily {
                            time_ns,
                            family: timestamp_gauge(PUSH_TIME, &labels, 0),
                        });
                        overlay.insert(key, Some(Arc::new(group)));
                        Err(PushError::Rejected(reason))
                    }
                }
            }
        }
    }

    /// The group after a successful push, with the index updated; or why the push is refused
    /// (index unchanged).
    fn push(
        &mut self,
        current: Option<&Group>,
        labels: &Labels,
        families: Vec<MetricFamily>,
        replace: bool,
        time_ns: i64,
    ) -> Result<Group, String> {
        if has_timestamps(&families) {
            return Err("pushed metrics must not have timestamps".into());
        }
        // One family per name, the last one winning (protobuf bodies may repeat a name); the
        // synthetic timestamps are batchgate's to write.
        let mut pushed: BTreeMap<String, MetricFamily> = BTreeMap::new();
        for mut family in families {
            let name = family.name.clone().unwrap_or_default();
            // An empty family (possible in protobuf) exposes nothing but would reserve its
            // name's type for every group; the text parser drops them too.
            if name == PUSH_TIME || name == PUSH_FAILURE_TIME || family.metric.is_empty() {
                continue;
            }
            sanitize(&mut family, labels);
            pushed.insert(name, family);
        }
        let old: Vec<&MetricFamily> = current
            .map(|g| {
                g.families
                    .iter()
                    .filter(|(name, _)| replace || pushed.contains_key(*name))
                    .map(|(_, f)| &f.family)
                    .filter(|f| Index::indexed(f))
                    .collect()
            })
            .unwrap_or_default();
        let new: Vec<&MetricFamily> = pushed.values().collect();
        self.index.replace(&old, &new)?;

        let mut group = current.cloned().unwrap_or_default();
        group.labels = labels.clone();
        if replace {
            group
                .families
                .retain(|name, _| name == PUSH_TIME || name == PUSH_FAILURE_TIME);
        }
        for (name, family) in pushed {
            group.families.insert(name, StoredFamily { time_ns, family });
        }
        group.families.insert(
            PUSH_TIME.into(),
            StoredFamily {
                time_ns,
                family: timestamp_gauge(PUSH_TIME, labels, time_ns),
            },
        );
        group
            .families
            .entry(PUSH_FAILURE_TIME.into())
            .or_insert_with(|| StoredFamily {
                time_ns,
                family: timestamp_gauge(PUSH_FAILURE_TIME, labels, 0),
            });
        Ok(group)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    /// A backend in memory that can be told to fail, counting commits.
    #[derive(Clone, Default)]
    struct MemoryBackend {
        groups: Arc<Mutex<BTreeMap<GroupKey, Group>>>,
        fail: Arc<AtomicBool>,
        commits: Arc<AtomicUsize>,
    }

    impl Backend for MemoryBackend {
        fn load(&mut self) -> Result<Vec<(GroupKey, Group)>, StorageError> {
            Ok(self
                .groups
                .lock()
                .unwrap()
                .iter()
                .map(|(k, g)| (k.clone(), g.clone()))
                .collect())
        }

        fn commit(&mut self, changes: &[(GroupKey, Option<Arc<Group>>)]) -> Result<(), StorageError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(StorageError::Io("disk full".into()));
            }
            self.commits.fetch_add(1, Ordering::SeqCst);
            // About an fsync: long enough for concurrent writes to queue up behind it.
            std::thread::sleep(std::time::Duration::from_millis(2));
            let mut groups = self.groups.lock().unwrap();
            for (k, g) in changes {
                match g {
                    Some(g) => groups.insert(k.clone(), (**g).clone()),
                    None => groups.remove(k),
                };
            }
            Ok(())
        }
    }

    fn open(backend: &MemoryBackend) -> MetricStore {
        MetricStore::open(
            Box::new(backend.clone()),
            HashMap::new(),
            Arc::new(Telemetry::new()),
            1000,
        )
        .unwrap()
        .0
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    fn push(labels: Labels, body: &str, replace: bool) -> WriteRequest {
        let families = batchgate_format::text::parse(body.as_bytes()).unwrap();
        WriteRequest {
            labels,
            time_ns: 1_000_000_000,
            kind: WriteKind::Push { families, replace },
        }
    }

    fn names(store: &MetricStore) -> Vec<Vec<String>> {
        store
            .snapshot()
            .iter()
            .map(|(_, g)| g.families.keys().cloned().collect())
            .collect()
    }

    #[tokio::test]
    async fn put_post_delete_and_reload() {
        let backend = MemoryBackend::default();
        let store = open(&backend);
        let job = labels(&[("job", "j")]);
        store.write(push(job.clone(), "a 1\nb 2\n", true)).await.unwrap();
        store.write(push(job.clone(), "b 3\nc 4\n", false)).await.unwrap();
        assert_eq!(names(&store), vec![vec!["a", "b", "c", PUSH_FAILURE_TIME, PUSH_TIME]]);
        store.write(push(job.clone(), "d 5\n", true)).await.unwrap();
        assert_eq!(names(&store), vec![vec!["d", PUSH_FAILURE_TIME, PUSH_TIME]]);
        // What a restart sees is what was acknowledged.
        let reopened = open(&backend);
        assert_eq!(reopened.snapshot(), store.snapshot());
        store
            .write(WriteRequest {
                labels: job,
                time_ns: 2,
                kind: WriteKind::Delete,
            })
            .await
            .unwrap();
        assert!(store.snapshot().is_empty());
        assert!(open(&backend).snapshot().is_empty());
    }

    #[tokio::test]
    async fn a_rejected_push_never_poisons_the_store() {
        let store = open(&MemoryBackend::default());
        store
            .write(push(labels(&[("job", "dupe")]), "dd 1\n", true))
            .await
            .unwrap();
        // The Pushgateway answers 400 here and then refuses every push and scrape.
        let err = store
            .write(push(
                labels(&[("job", "dupe"), ("instance", "")]),
                "dd 2\nother 1\n",
                false,
            ))
            .await;
        assert!(err.is_ok(), "same group: {err:?}");
        let err = store
            .write(push(labels(&[("job", "x")]), "x 1 1000\n", true))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "pushed metrics must not have timestamps");
        store.write(push(labels(&[("job", "y")]), "y 1\n", true)).await.unwrap();
        let groups = store.snapshot();
        assert_eq!(groups.len(), 3);
        let ghost = &groups.iter().find(|(k, _)| k.job() == "x").unwrap().1;
        assert_eq!(ghost.push_time(), 0.0);
        assert!(ghost.push_failure_time() > 0.0);
        assert!(!ghost.last_push_successful());
    }

    #[tokio::test]
    async fn a_failed_commit_changes_nothing_and_says_so() {
        let backend = MemoryBackend::default();
        let store = open(&backend);
        store.write(push(labels(&[("job", "a")]), "m 1\n", true)).await.unwrap();
        backend.fail.store(true, Ordering::SeqCst);
        let err = store
            .write(push(labels(&[("job", "b")]), "m 2\n", true))
            .await
            .unwrap_err();
        assert!(matches!(err, PushError::Storage(_)), "{err:?}");
        assert!(store.health().is_err());
        assert_eq!(store.snapshot().len(), 1);
        backend.fail.store(false, Ordering::SeqCst);
        // The index forgot the uncommitted series: the same push now succeeds.
        store.write(push(labels(&[("job", "b")]), "m 2\n", true)).await.unwrap();
        assert!(store.health().is_ok());
        assert_eq!(open(&backend).snapshot().len(), 2);
    }

    #[tokio::test]
    async fn the_groups_limit_refuses_new_groups_only() {
        let backend = MemoryBackend::default();
        let store = MetricStore::open(Box::new(backend), HashMap::new(), Arc::new(Telemetry::new()), 2)
            .unwrap()
            .0;
        store.write(push(labels(&[("job", "a")]), "m 1\n", true)).await.unwrap();
        store.write(push(labels(&[("job", "b")]), "m 1\n", true)).await.unwrap();
        let err = store
            .write(push(labels(&[("job", "c")]), "m 1\n", true))
            .await
            .unwrap_err();
        assert!(matches!(err, PushError::TooManyGroups(2)), "{err:?}");
        // A rejected push to a new group creates no group past the limit either.
        let err = store
            .write(push(labels(&[("job", "d")]), "m 1 1000\n", true))
            .await
            .unwrap_err();
        assert!(matches!(err, PushError::TooManyGroups(2)), "{err:?}");
        // Existing groups still take pushes; a delete frees a place.
        store.write(push(labels(&[("job", "a")]), "m 2\n", true)).await.unwrap();
        store
            .write(WriteRequest {
                labels: labels(&[("job", "b")]),
                time_ns: 2,
                kind: WriteKind::Delete,
            })
            .await
            .unwrap();
        store.write(push(labels(&[("job", "c")]), "m 1\n", true)).await.unwrap();
        assert_eq!(store.snapshot().len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits() {
        let backend = MemoryBackend::default();
        let store = open(&backend);
        let writes: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .write(push(
                            labels(&[("job", "j"), ("instance", &i.to_string())]),
                            "m 1\n",
                            true,
                        ))
                        .await
                })
            })
            .collect();
        for w in writes {
            w.await.unwrap().unwrap();
        }
        assert_eq!(store.snapshot().len(), 200);
        let commits = backend.commits.load(Ordering::SeqCst);
        // Without group commit this would be 200 (one per write).
        assert!(commits < 100, "{commits} commits for 200 writes");
    }
}
