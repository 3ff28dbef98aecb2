//! The metric store: groups of pushed metric families, kept in memory for reads and committed to
//! a durable backend before any write is acknowledged.
//!
//! Writes go through one writer thread ([`writer`]) that validates them against an incremental
//! consistency index ([`consistency`]), commits a whole batch of them in one transaction (group
//! commit) and only then publishes the new groups to readers and answers the callers.

pub mod consistency;
pub mod sqlite;
pub mod writer;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use batchgate_format::{MetricFamily, proto::Gauge, proto::LabelPair, proto::Metric};

pub use writer::{ChangeFeed, FeedError, GroupChange, MetricStore, PushError, WriteKind, WriteRequest};

/// Name of the synthetic gauge holding a group's last successful change.
pub const PUSH_TIME: &str = "push_time_seconds";
/// Name of the synthetic gauge holding a group's last rejected change.
pub const PUSH_FAILURE_TIME: &str = "push_failure_time_seconds";
const PUSH_TIME_HELP: &str = "Last Unix time when changing this group in the Pushgateway succeeded.";
const PUSH_FAILURE_TIME_HELP: &str = "Last Unix time when changing this group in the Pushgateway failed.";

/// The labels that identify a group (`job` included), sorted by name.
pub type Labels = BTreeMap<String, String>;

/// The identity of a group: its grouping labels with an empty `instance` removed.
///
/// `{job="x"}` and `{job="x",instance=""}` expose exactly the same series (the missing `instance`
/// is injected as `""`), so they are one group. The Pushgateway keeps them apart, which lets a
/// rejected push create a second group whose `push_time_seconds` collides with the first and
/// breaks every later push and scrape.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey(Vec<(String, String)>);

impl GroupKey {
    pub fn new(labels: &Labels) -> GroupKey {
        GroupKey(
            labels
                .iter()
                .filter(|(n, v)| !(n.as_str() == "instance" && v.is_empty()))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
        )
    }

    /// `name\xffvalue\xff…`: the stable byte form used as the storage key.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in &self.0 {
            out.extend_from_slice(n.as_bytes());
            out.push(0xff);
            out.extend_from_slice(v.as_bytes());
            out.push(0xff);
        }
        out
    }

    pub fn job(&self) -> &str {
        self.0
            .iter()
            .find(|(n, _)| n == "job")
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

/// One pushed family with the time of the write that last set it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFamily {
    /// Unix time in nanoseconds.
    pub time_ns: i64,
    pub family: MetricFamily,
}

/// A group: everything pushed under one grouping key.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Group {
    /// The grouping labels as last pushed (may carry `instance=""`).
    pub labels: Labels,
    /// Families by name, including the synthetic `push_time_seconds` and
    /// `push_failure_time_seconds`.
    pub families: BTreeMap<String, StoredFamily>,
}

impl Group {
    fn synthetic_value(&self, name: &str) -> f64 {
        self.families
            .get(name)
            .and_then(|f| f.family.metric.first())
            .and_then(|m| m.gauge.as_ref())
            .and_then(|g| g.value)
            .unwrap_or(0.0)
    }

    /// Unix seconds of the last successful change, 0 if none.
    pub fn push_time(&self) -> f64 {
        self.synthetic_value(PUSH_TIME)
    }

    /// Unix seconds of the last rejected change, 0 if none.
    pub fn push_failure_time(&self) -> f64 {
        self.synthetic_value(PUSH_FAILURE_TIME)
    }

    /// As the Pushgateway defines it: false iff the last failure is later than the last success.
    pub fn last_push_successful(&self) -> bool {
        self.push_failure_time() <= self.push_time()
    }

    /// Number of series (metrics) stored in the group, synthetic ones included.
    pub fn series_count(&self) -> usize {
        self.families.values().map(|f| f.family.metric.len()).sum()
    }
}

/// A synthetic timestamp gauge as the Pushgateway builds it: the grouping labels plus
/// `instance=""` if absent, value `ns / 1e9`, 0 meaning never.
pub fn timestamp_gauge(name: &str, labels: &Labels, time_ns: i64) -> MetricFamily {
    let help = if name == PUSH_TIME {
        PUSH_TIME_HELP
    } else {
        PUSH_FAILURE_TIME_HELP
    };
    let mut label: Vec<LabelPair> = labels.iter().map(|(n, v)| LabelPair::new(n, v)).collect();
    if !labels.contains_key("instance") {
        label.push(LabelPair::new("instance", ""));
        label.sort_by(|a, b| a.name.cmp(&b.name));
    }
    MetricFamily {
        name: Some(name.to_string()),
        help: Some(help.to_string()),
        r#type: Some(batchgate_format::MetricType::Gauge as i32),
        metric: vec![Metric {
            label,
            gauge: Some(Gauge {
                value: Some(time_ns as f64 / 1e9),
            }),
            ..Default::default()
        }],
        unit: None,
    }
}

/// What readers see: the groups of the last committed batch.
pub type Groups = BTreeMap<GroupKey, Arc<Group>>;

/// The published, committed state shared between the writer and the readers.
#[derive(Default)]
pub struct Published {
    groups: RwLock<Groups>,
}

impl Published {
    /// A consistent copy of the current groups (cheap: the groups themselves are shared).
    pub fn snapshot(&self) -> Vec<(GroupKey, Arc<Group>)> {
        let groups = self.groups.read().unwrap_or_else(|e| e.into_inner());
        groups.iter().map(|(k, g)| (k.clone(), g.clone())).collect()
    }

    pub fn get(&self, key: &GroupKey) -> Option<Arc<Group>> {
        let groups = self.groups.read().unwrap_or_else(|e| e.into_inner());
        groups.get(key).cloned()
    }

    pub fn len(&self) -> usize {
        self.groups.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn apply(&self, changes: Vec<(GroupKey, Option<Arc<Group>>)>) {
        let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
        for (key, group) in changes {
            match group {
                Some(g) => groups.insert(key, g),
                None => groups.remove(&key),
            };
        }
    }
}

/// A durable home for groups. Implementations commit a batch atomically and durably before
/// returning: the caller acknowledges writes only after `commit` succeeded.
pub trait Backend: Send + 'static {
    /// Every stored group.
    fn load(&mut self) -> Result<Vec<(GroupKey, Group)>, StorageError>;
    /// Applies the changes (`None` deletes) in one durable transaction.
    fn commit(&mut self, changes: &[(GroupKey, Option<Arc<Group>>)]) -> Result<(), StorageError>;
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The data file exists but cannot be trusted; it is left untouched.
    #[error(
        "the data file {path} cannot be read: {reason}. batchgate never overwrites a data file it \
         cannot read. To recover, restore the file from a backup, or move it aside \
         (mv {path} {path}.corrupt) to start with an empty store"
    )]
    Corrupt { path: String, reason: String },
    #[error("storage error: {0}")]
    Io(String),
}
