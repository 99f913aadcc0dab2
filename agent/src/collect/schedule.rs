//! Which family is due when. The agent's loop ticks every [`TICK`]; each
//! instance (and the host) keeps a next-due time per family, and a tick
//! collects exactly the families whose time has come. Intervals are whole
//! seconds, so a 1 s tick loses no precision.
//!
//! After a slow round the next due time keeps the family's spacing (it is
//! moved to now + interval) instead of firing several times to catch up.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// The agent's base tick.
pub const TICK: Duration = Duration::from_secs(1);

/// A family the agent collects on its own schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FamilyKind {
    /// `database`, sent together with `instance_info`.
    Database,
    Statement,
    /// Per database: `table` and `index`.
    Table,
    Index,
    Wal,
    Bgwriter,
    Archiver,
    /// `settings` and `setting_changes`.
    Settings,
    /// `activity` and `activity_sessions`.
    Activity,
    /// `lock` and `lock_waits`.
    Lock,
    Replication,
    ReplicationSlot,
    Progress,
    /// One 1-second sample of wait events (internal: not configurable).
    WaitSample,
    /// Sends the wait samples taken since the previous `wait`.
    Wait,
    /// `host_cpu` and `host_memory`.
    Host,
    Standby,
    /// `subscription` and `subscription_tables`.
    Subscription,
    /// User-defined metrics; each keeps its own interval, so this kind is
    /// asked every second (internal: not configurable).
    Custom,
    /// Per instance: the filesystems of its data, WAL and log directories.
    HostFilesystem,
    /// The server's log files (events and auto_explain plans).
    Log,
    /// `replication_identity`, `subscription_source` and `publication`.
    Topology,
}

impl FamilyKind {
    /// Every kind, once. A new family is added here and nowhere else.
    pub const EVERY: [FamilyKind; 22] = [
        FamilyKind::Database,
        FamilyKind::Statement,
        FamilyKind::Table,
        FamilyKind::Index,
        FamilyKind::Wal,
        FamilyKind::Bgwriter,
        FamilyKind::Archiver,
        FamilyKind::Settings,
        FamilyKind::Activity,
        FamilyKind::Lock,
        FamilyKind::Replication,
        FamilyKind::ReplicationSlot,
        FamilyKind::Progress,
        FamilyKind::WaitSample,
        FamilyKind::Wait,
        FamilyKind::Host,
        FamilyKind::Standby,
        FamilyKind::Subscription,
        FamilyKind::Custom,
        FamilyKind::HostFilesystem,
        FamilyKind::Log,
        FamilyKind::Topology,
    ];

    /// The kinds a config may name in `intervals` (the 1 s wait sampling is
    /// internal to `wait`; custom metrics have their own intervals).
    pub fn configurable() -> impl Iterator<Item = FamilyKind> {
        Self::EVERY
            .into_iter()
            .filter(|f| !matches!(f, FamilyKind::WaitSample | FamilyKind::Custom))
    }

    /// Kinds collected per instance (the host ones are per agent).
    pub fn per_instance() -> impl Iterator<Item = FamilyKind> {
        Self::EVERY.into_iter().filter(|f| *f != FamilyKind::Host)
    }

    /// The name used in config (`[collect.intervals]`) and in logs.
    pub fn name(self) -> &'static str {
        match self {
            FamilyKind::Database => "database",
            FamilyKind::Statement => "statement",
            FamilyKind::Table => "table",
            FamilyKind::Index => "index",
            FamilyKind::Wal => "wal",
            FamilyKind::Bgwriter => "bgwriter",
            FamilyKind::Archiver => "archiver",
            FamilyKind::Settings => "settings",
            FamilyKind::Activity => "activity",
            FamilyKind::Lock => "lock",
            FamilyKind::Replication => "replication",
            FamilyKind::ReplicationSlot => "replication_slot",
            FamilyKind::Progress => "progress",
            FamilyKind::WaitSample => "wait_sample",
            FamilyKind::Wait => "wait",
            FamilyKind::Host => "host",
            FamilyKind::Standby => "standby",
            FamilyKind::Subscription => "subscription",
            FamilyKind::Custom => "custom",
            FamilyKind::HostFilesystem => "host_filesystem",
            FamilyKind::Log => "log",
            FamilyKind::Topology => "replication_topology",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::configurable().find(|f| f.name() == name)
    }

    /// The interval when the config names none: the defaults, and
    /// `collect.interval_secs` for the families of the walking skeleton.
    pub fn default_interval_secs(self, collect_interval_secs: u64) -> u64 {
        match self {
            FamilyKind::Database | FamilyKind::Host => collect_interval_secs,
            FamilyKind::WaitSample | FamilyKind::Custom | FamilyKind::Log => 1,
            FamilyKind::Standby | FamilyKind::Subscription | FamilyKind::HostFilesystem => 10,
            FamilyKind::Wal
            | FamilyKind::Activity
            | FamilyKind::Lock
            | FamilyKind::Replication
            | FamilyKind::Progress
            | FamilyKind::Wait => 10,
            FamilyKind::Statement | FamilyKind::ReplicationSlot => 30,
            FamilyKind::Table | FamilyKind::Index | FamilyKind::Bgwriter | FamilyKind::Archiver => {
                60
            }
            FamilyKind::Settings => 300,
            FamilyKind::Topology => 30,
        }
    }
}

/// Resolves a family's interval: the instance's own setting, else
/// `[collect.intervals]`, else the default.
pub fn interval(
    family: FamilyKind,
    instance: &BTreeMap<String, u64>,
    collect: &BTreeMap<String, u64>,
    collect_interval_secs: u64,
) -> Duration {
    let secs = instance
        .get(family.name())
        .or_else(|| collect.get(family.name()))
        .copied()
        .unwrap_or_else(|| family.default_interval_secs(collect_interval_secs));
    Duration::from_secs(secs.max(1))
}

/// Next-due times of a set of families.
#[derive(Debug)]
pub struct Schedule {
    entries: BTreeMap<FamilyKind, (Duration, Instant)>,
}

impl Schedule {
    /// Every family is due at `start` (the first tick collects everything).
    pub fn new(
        intervals: impl IntoIterator<Item = (FamilyKind, Duration)>,
        start: Instant,
    ) -> Self {
        Self {
            entries: intervals
                .into_iter()
                .map(|(family, every)| (family, (every, start)))
                .collect(),
        }
    }

    /// The families due at `now`, each moved to its next time.
    pub fn take_due(&mut self, now: Instant) -> Vec<FamilyKind> {
        let mut due = Vec::new();
        for (family, (every, next)) in &mut self.entries {
            if *next <= now {
                due.push(*family);
                let following = *next + *every;
                *next = if following > now {
                    following
                } else {
                    now + *every
                };
            }
        }
        due
    }

    pub fn interval(&self, family: FamilyKind) -> Option<Duration> {
        self.entries.get(&family).map(|(every, _)| *every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_fire_at_their_own_intervals() {
        let start = Instant::now();
        let mut s = Schedule::new(
            [
                (FamilyKind::Database, Duration::from_secs(10)),
                (FamilyKind::Statement, Duration::from_secs(30)),
            ],
            start,
        );
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(
            s.take_due(at(0)),
            [FamilyKind::Database, FamilyKind::Statement]
        );
        assert!(s.take_due(at(9)).is_empty());
        assert_eq!(s.take_due(at(10)), [FamilyKind::Database]);
        assert_eq!(s.take_due(at(20)), [FamilyKind::Database]);
        assert_eq!(
            s.take_due(at(30)),
            [FamilyKind::Database, FamilyKind::Statement]
        );
        // A stall of 95 s fires each family once, then keeps the spacing.
        assert_eq!(
            s.take_due(at(125)),
            [FamilyKind::Database, FamilyKind::Statement]
        );
        assert!(s.take_due(at(134)).is_empty());
        assert_eq!(s.take_due(at(135)), [FamilyKind::Database]);
    }

    #[test]
    fn instance_settings_override_collect_settings_and_defaults() {
        let mut collect = BTreeMap::new();
        collect.insert("statement".to_owned(), 20);
        let mut instance = BTreeMap::new();
        instance.insert("statement".to_owned(), 1);
        let none = BTreeMap::new();
        assert_eq!(
            interval(FamilyKind::Statement, &instance, &collect, 10),
            Duration::from_secs(1)
        );
        assert_eq!(
            interval(FamilyKind::Statement, &none, &collect, 10),
            Duration::from_secs(20)
        );
        assert_eq!(
            interval(FamilyKind::Statement, &none, &none, 10),
            Duration::from_secs(30)
        );
        assert_eq!(
            interval(FamilyKind::Database, &none, &none, 7),
            Duration::from_secs(7)
        );
        for f in FamilyKind::configurable() {
            assert_eq!(FamilyKind::from_name(f.name()), Some(f));
        }
        assert_eq!(FamilyKind::from_name("wait_sample"), None, "internal kind");
        assert_eq!(FamilyKind::from_name("custom"), None, "own intervals");
        assert_eq!(FamilyKind::configurable().count(), 20);
        assert!(FamilyKind::per_instance().all(|f| f != FamilyKind::Host));
        assert_eq!(FamilyKind::per_instance().count(), 21);
        assert_eq!(
            interval(FamilyKind::Topology, &none, &none, 7),
            Duration::from_secs(30)
        );
        assert_eq!(
            interval(FamilyKind::Standby, &none, &none, 7),
            Duration::from_secs(10)
        );
        assert_eq!(FamilyKind::from_name("statements"), None);
    }
}
