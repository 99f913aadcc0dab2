//! Daily partitions on demand (native layout; a no-op on TimescaleDB).
//!
//! Before a batch's rows are copied, the UTC days they fall on must have
//! partitions. Asking the store for every batch would serialise all writers
//! on the partition lock, so the days already ensured by this process are
//! remembered. The cache is emptied after each maintenance pass (which may
//! drop expired partitions) and after a write that found no partition for a
//! row, so a stale entry costs one retried batch, never lost data.
//!
//! Partitions are created in their own short transaction before the batch's
//! transaction starts: creating a partition locks its parent table, and
//! holding that lock for a whole COPY would stall every other writer. It also
//! means a batch rolled back as a duplicate cannot take the partitions (and
//! the cache's belief in them) down with it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::NaiveDate;
use lasect_migrations::MigrateError;
use tokio_postgres::GenericClient;

/// `lasect_ensure_partitions` refuses ranges longer than 400 days.
const MAX_RANGE_DAYS: i64 = 366;

/// UTC days known to have partitions; cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct PartitionCache {
    days: Arc<Mutex<BTreeSet<NaiveDate>>>,
}

impl PartitionCache {
    /// Makes sure every day in `days` has its partitions.
    pub async fn ensure(
        &self,
        client: &impl GenericClient,
        days: BTreeSet<NaiveDate>,
    ) -> Result<(), MigrateError> {
        let missing: Vec<NaiveDate> = {
            let known = self.days.lock().unwrap_or_else(PoisonError::into_inner);
            days.into_iter().filter(|d| !known.contains(d)).collect()
        };
        for (from, to) in ranges(&missing) {
            let created = lasect_migrations::ensure_partitions(client, from, to).await?;
            if created > 0 {
                tracing::info!(%from, %to, created, "created metric partitions");
            }
        }
        self.days
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(missing);
        Ok(())
    }

    /// Forgets every day, so the next batch asks the store again.
    pub fn forget_all(&self) {
        self.days
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Groups sorted, distinct days into runs of consecutive days, each at most
/// [`MAX_RANGE_DAYS`] long, so a batch with one sample in 2001 and one today
/// does not ask for every day in between.
fn ranges(days: &[NaiveDate]) -> Vec<(NaiveDate, NaiveDate)> {
    let mut out: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    for &day in days {
        match out.last_mut() {
            Some((from, to))
                if (day - *to).num_days() == 1 && (day - *from).num_days() < MAX_RANGE_DAYS =>
            {
                *to = day;
            }
            _ => out.push((day, day)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("valid date")
    }

    #[test]
    fn consecutive_days_form_one_range() {
        let days = [d(2024, 1, 30), d(2024, 1, 31), d(2024, 2, 1), d(2024, 2, 5)];
        assert_eq!(
            ranges(&days),
            [
                (d(2024, 1, 30), d(2024, 2, 1)),
                (d(2024, 2, 5), d(2024, 2, 5))
            ]
        );
        assert!(ranges(&[]).is_empty());
    }

    #[test]
    fn long_runs_are_split() {
        let start = d(2020, 1, 1);
        let days: Vec<_> = (0..800).map(|i| start + chrono::Days::new(i)).collect();
        let r = ranges(&days);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], (start, start + chrono::Days::new(365)));
        assert_eq!(r[2].1, start + chrono::Days::new(799));
        assert!(r.iter().all(|(f, t)| (*t - *f).num_days() < MAX_RANGE_DAYS));
    }
}
