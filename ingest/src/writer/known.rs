//! What the group transaction must not do: update `agents` and `instances`
//! rows.
//!
//! An `UPDATE` (or an upsert that updates) holds its row lock until the
//! transaction commits. Every group touches the rows of the agents it
//! carries, so two writer tasks whose groups share one agent wrote one after
//! the other: the second waited in its upsert for the first's commit. On
//! `make bench` that wait was 40 % of a group's time.
//!
//! So a group never updates a row for what every batch changes:
//!
//! - Agents and instances are inserted with `ON CONFLICT DO NOTHING`, which
//!   on an existing row is a read (no lock, no WAL), and instance ids are
//!   read from the store every group, so a store restored or re-created
//!   under a running ingest gets its rows back and no stale id is used.
//! - [`Known`] remembers the facts (version, recovery) this process last
//!   wrote to each instance row; a group updates them only when they
//!   changed (a new row, an upgrade, a promotion; once per instance after
//!   a restart), and records what it wrote only after its commit.
//! - `last_seen` changes with every batch, so it goes to [`Sightings`]:
//!   kept in memory, newest per instance, and written in one short
//!   statement per refresh interval (`[agents] refresh_interval_secs`),
//!   beside the agents' own reports (`crate::reports`), which keep
//!   `agents.last_seen`. An instance of an agent's config file that was
//!   removed through the API while its agent still collects it comes back
//!   (`state = 'active'`) with the first samples newer than its last
//!   sighting: the store never hides an instance whose samples keep
//!   arriving (the API refuses such a removal while they arrive).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, Transaction};

use super::{Pending, StoreError, prepare, query};
use crate::ErrorChain;
use crate::validate::{InstanceFacts, Timed};

/// Instance ids by agent, then name.
pub(super) type InstanceIds = HashMap<String, HashMap<String, i64>>;

/// An instance row as this process last wrote or read it.
#[derive(Debug, Clone)]
struct KnownInstance {
    id: i64,
    /// Facts the row holds (`None`: never written, or not known here).
    facts: Option<InstanceFacts>,
}

/// What a group wrote that [`Known::learn`] records after the commit.
#[derive(Default)]
pub(super) struct Learned<'a> {
    /// By agent and name: the id and the facts the row now holds (`None`:
    /// none written).
    instances: Vec<(&'a str, &'a str, i64, Option<&'a InstanceFacts>)>,
}

/// The facts this process last wrote to each instance row; cheap to clone.
#[derive(Clone, Default)]
pub struct Known {
    inner: Arc<Mutex<KnownInner>>,
}

#[derive(Default)]
struct KnownInner {
    instances: HashMap<String, HashMap<String, KnownInstance>>,
}

impl Known {
    fn lock(&self) -> std::sync::MutexGuard<'_, KnownInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records what a committed group wrote.
    pub(super) fn learn(&self, learned: &Learned<'_>) {
        let mut inner = self.lock();
        for (agent, name, id, facts) in &learned.instances {
            let by_name = inner.instances.entry((*agent).to_owned()).or_default();
            let known = by_name
                .entry((*name).to_owned())
                .or_insert_with(|| KnownInstance {
                    id: *id,
                    facts: None,
                });
            known.id = *id;
            known.facts = facts.map(Clone::clone);
        }
    }
}

/// Makes sure the agents and instances of the stored batches `stored` of
/// `group` have rows, with the newest facts of the group; returns every
/// instance id by agent and name, and what to [`Known::learn`] after the
/// commit.
pub(super) async fn ensure_rows<'a>(
    tx: &Transaction<'_>,
    known: &Known,
    group: &'a [Pending],
    stored: &[usize],
) -> Result<(InstanceIds, Learned<'a>), StoreError> {
    // The newest facts of each instance over the group.
    let mut newest: BTreeMap<(&str, &str), Option<&Timed<InstanceFacts>>> = BTreeMap::new();
    for &i in stored {
        let p = &group[i];
        for seen in &p.batch.instances {
            let facts = newest
                .entry((p.agent.as_str(), seen.name.as_str()))
                .or_default();
            if let Some(f) = seen.facts.as_ref()
                && facts.is_none_or(|known| known.time < f.time)
            {
                *facts = Some(f);
            }
        }
    }
    let mut learned = Learned::default();
    // Every group, not once per process: a store restored or re-created
    // under a running ingest must get its rows back. On a row that exists,
    // DO NOTHING is a read (no lock, no WAL).
    let mut agents: Vec<&str> = stored.iter().map(|&i| group[i].agent.as_str()).collect();
    agents.sort_unstable();
    agents.dedup();
    let action = "registering agents";
    let statement = prepare(
        tx,
        action,
        "INSERT INTO agents (id) SELECT * FROM unnest($1::text[]) ON CONFLICT (id) DO NOTHING",
    )
    .await?;
    tx.execute(&statement, &[&agents])
        .await
        .map_err(query(action))?;
    // Ids come from the store every time (a read: no lock, no WAL), never
    // from memory alone, so a store restored or re-created under a running
    // ingest cannot get rows under a stale id.
    let keys: Vec<(&str, &str)> = newest.keys().copied().collect();
    let mut ids = lookup_ids(tx, &keys).await?;
    let missing: BTreeMap<(&str, &str), Option<&Timed<InstanceFacts>>> = newest
        .iter()
        .filter(|((agent, name), _)| !ids.get(*agent).is_some_and(|m| m.contains_key(*name)))
        .map(|(k, f)| (*k, *f))
        .collect();
    if !missing.is_empty() {
        insert_instances(tx, group, stored, &missing, &mut ids).await?;
    }
    // Facts are written when they differ from what this process last wrote
    // to the same row (a new row, an upgrade, a promotion; once per instance
    // after a restart).
    let mut changed: BTreeMap<i64, &InstanceFacts> = BTreeMap::new();
    {
        let inner = known.lock();
        for (&(agent, name), facts) in &newest {
            let Some(&id) = ids.get(agent).and_then(|m| m.get(name)) else {
                continue;
            };
            // A row this group inserted holds only what the group had: what
            // memory says of an earlier row under the same key and id (a
            // re-created store) no longer holds.
            let inserted = missing.contains_key(&(agent, name));
            let Some(f) = facts else {
                if inserted {
                    learned.instances.push((agent, name, id, None));
                }
                continue;
            };
            let written = inner
                .instances
                .get(agent)
                .and_then(|m| m.get(name))
                .filter(|row| row.id == id && !inserted)
                .and_then(|row| row.facts.as_ref());
            if written != Some(&f.value) {
                changed.insert(id, &f.value);
                learned.instances.push((agent, name, id, Some(&f.value)));
            }
        }
    }
    if !changed.is_empty() {
        update_facts(tx, &changed).await?;
    }
    Ok((ids, learned))
}

/// Writes changed facts, rows in id order (concurrent groups lock alike).
async fn update_facts(
    tx: &Transaction<'_>,
    changed: &BTreeMap<i64, &InstanceFacts>,
) -> Result<(), StoreError> {
    let ids: Vec<i64> = changed.keys().copied().collect();
    let version_nums: Vec<i32> = changed.values().map(|f| f.server_version_num).collect();
    let versions: Vec<&str> = changed.values().map(|f| f.version.as_str()).collect();
    let in_recovery: Vec<bool> = changed.values().map(|f| f.in_recovery).collect();
    let action = "updating instance facts";
    let statement = prepare(
        tx,
        action,
        "UPDATE instances AS i SET
             server_version_num = f.server_version_num, version = f.version,
             in_recovery = f.in_recovery
         FROM unnest($1::int8[], $2::int4[], $3::text[], $4::bool[])
             AS f (id, server_version_num, version, in_recovery)
         WHERE i.id = f.id",
    )
    .await?;
    tx.execute(&statement, &[&ids, &version_nums, &versions, &in_recovery])
        .await
        .map_err(query(action))?;
    Ok(())
}

/// Inserts the instances of `missing` that have no row yet (with the facts
/// and newest sample time of the group) and adds their ids to `ids`.
async fn insert_instances(
    tx: &Transaction<'_>,
    group: &[Pending],
    stored: &[usize],
    missing: &BTreeMap<(&str, &str), Option<&Timed<InstanceFacts>>>,
    ids: &mut InstanceIds,
) -> Result<(), StoreError> {
    let mut last_seen: HashMap<(&str, &str), DateTime<Utc>> = HashMap::new();
    for &i in stored {
        let p = &group[i];
        for seen in &p.batch.instances {
            let key = (p.agent.as_str(), seen.name.as_str());
            if missing.contains_key(&key) {
                let t = last_seen.entry(key).or_insert(seen.last_sample);
                *t = (*t).max(seen.last_sample);
            }
        }
    }
    let agents: Vec<&str> = missing.keys().map(|(a, _)| *a).collect();
    let names: Vec<&str> = missing.keys().map(|(_, n)| *n).collect();
    let facts = missing.values().map(|f| f.map(|f| &f.value));
    let version_nums: Vec<Option<i32>> = facts
        .clone()
        .map(|f| f.map(|f| f.server_version_num))
        .collect();
    let versions: Vec<Option<&str>> = facts
        .clone()
        .map(|f| f.map(|f| f.version.as_str()))
        .collect();
    let in_recovery: Vec<Option<bool>> = facts.map(|f| f.map(|f| f.in_recovery)).collect();
    let times: Vec<DateTime<Utc>> = missing
        .keys()
        .map(|k| last_seen.get(k).copied().unwrap_or_else(Utc::now))
        .collect();
    let action = "registering instances";
    let statement = prepare(
        tx,
        action,
        "INSERT INTO instances (agent_id, name, server_version_num, version, in_recovery, last_seen)
             SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::text[], $5::bool[], $6::timestamptz[])
             ON CONFLICT (agent_id, name) DO NOTHING",
    )
    .await?;
    tx.execute(
        &statement,
        &[
            &agents,
            &names,
            &version_nums,
            &versions,
            &in_recovery,
            &times,
        ],
    )
    .await
    .map_err(query(action))?;
    let keys: Vec<(&str, &str)> = missing.keys().copied().collect();
    for (agent, by_name) in lookup_ids(tx, &keys).await? {
        ids.entry(agent).or_default().extend(by_name);
    }
    Ok(())
}

/// The ids of the instances `keys` (agent, name) that have rows.
async fn lookup_ids(
    tx: &Transaction<'_>,
    keys: &[(&str, &str)],
) -> Result<InstanceIds, StoreError> {
    let mut ids = InstanceIds::new();
    if keys.is_empty() {
        return Ok(ids);
    }
    let agents: Vec<&str> = keys.iter().map(|(a, _)| *a).collect();
    let names: Vec<&str> = keys.iter().map(|(_, n)| *n).collect();
    let action = "looking up instance ids";
    let statement = prepare(
        tx,
        action,
        "SELECT i.agent_id, i.name, i.id FROM instances i
             JOIN unnest($1::text[], $2::text[]) AS k (agent_id, name)
               ON i.agent_id = k.agent_id AND i.name = k.name",
    )
    .await?;
    let rows = tx
        .query(&statement, &[&agents, &names])
        .await
        .map_err(query(action))?;
    for row in rows {
        ids.entry(row.get(0))
            .or_default()
            .insert(row.get(1), row.get(2));
    }
    Ok(ids)
}

/// The newest sample time of each instance seen, waiting to be written to
/// `instances.last_seen` (see the module docs); cheap to clone.
#[derive(Clone, Default)]
pub struct Sightings {
    pending: Arc<Mutex<BTreeMap<i64, DateTime<Utc>>>>,
}

impl Sightings {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, DateTime<Utc>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the sample times of the committed batches `stored` of `group`.
    pub(super) fn record(&self, group: &[Pending], stored: &[usize], ids: &InstanceIds) {
        let mut pending = self.lock();
        for &i in stored {
            let p = &group[i];
            let Some(by_name) = ids.get(p.agent.as_str()) else {
                continue;
            };
            for seen in &p.batch.instances {
                if let Some(&id) = by_name.get(seen.name.as_str()) {
                    merge(&mut pending, id, seen.last_sample);
                }
            }
        }
    }

    /// Writes every pending time in one statement; on failure they are
    /// kept, merged with newer ones, for the next attempt. `last_seen` never
    /// moves backwards (an old batch resent late).
    pub async fn flush(&self, pool: &Pool) -> Result<(), String> {
        let taken = std::mem::take(&mut *self.lock());
        if taken.is_empty() {
            return Ok(());
        }
        let result = write(pool, &taken).await;
        if result.is_err() {
            let mut pending = self.lock();
            for (id, time) in taken {
                merge(&mut pending, id, time);
            }
        }
        result
    }
}

fn merge(pending: &mut BTreeMap<i64, DateTime<Utc>>, id: i64, time: DateTime<Utc>) {
    let t = pending.entry(id).or_insert(time);
    *t = (*t).max(time);
}

async fn write(pool: &Pool, pending: &BTreeMap<i64, DateTime<Utc>>) -> Result<(), String> {
    // Ids in order (a BTreeMap), as `update_facts` locks them.
    let ids: Vec<i64> = pending.keys().copied().collect();
    let times: Vec<DateTime<Utc>> = pending.values().copied().collect();
    let client = pool.get().await.map_err(|e| ErrorChain(&e).to_string())?;
    client
        .execute(
            "UPDATE instances AS i SET last_seen = greatest(i.last_seen, s.last_seen),
                 state = CASE WHEN i.state = 'removed' AND i.source = 'agent'
                                   AND s.last_seen > coalesce(i.last_seen, '-infinity')
                              THEN 'active' ELSE i.state END
             FROM unnest($1::int8[], $2::timestamptz[]) AS s (id, last_seen)
             WHERE i.id = s.id",
            &[&ids, &times],
        )
        .await
        .map_err(|e| ErrorChain(&e).to_string())?;
    Ok(())
}
