//! `settings`: every row of `pg_settings`, and a change event for each
//! setting whose value or `pending_restart` changed since the previous
//! round (none on the agent's first round, which is the baseline). A
//! setting that appears (an extension's, once loaded) is a change from
//! nothing; one that disappears is not reported.

use std::collections::HashMap;

use lasect_proto::v1::{Setting, SettingChange, SettingsSnapshot};
use tokio_postgres::Client;

const QUERY: &str = "SELECT name::text, coalesce(setting, '') AS setting, \
     coalesce(unit, '') AS unit, source::text, pending_restart \
     FROM pg_settings ORDER BY name";

/// (setting, pending_restart) by name.
type Seen = HashMap<String, (String, bool)>;

#[derive(Debug, Default)]
pub struct SettingsCollector {
    previous: Option<Seen>,
}

impl SettingsCollector {
    pub async fn collect(
        &mut self,
        client: &Client,
    ) -> Result<SettingsSnapshot, tokio_postgres::Error> {
        let rows = client.query(QUERY, &[]).await?;
        let mut settings = Vec::with_capacity(rows.len());
        for row in &rows {
            settings.push(Setting {
                name: row.try_get(0)?,
                setting: row.try_get(1)?,
                unit: row.try_get(2)?,
                source: row.try_get(3)?,
                pending_restart: row.try_get(4)?,
            });
        }
        let current: Seen = settings
            .iter()
            .map(|s| (s.name.clone(), (s.setting.clone(), s.pending_restart)))
            .collect();
        let changes = match &self.previous {
            Some(previous) => changes(previous, &settings),
            None => Vec::new(),
        };
        self.previous = Some(current);
        Ok(SettingsSnapshot { settings, changes })
    }
}

fn changes(previous: &Seen, current: &[Setting]) -> Vec<SettingChange> {
    current
        .iter()
        .filter_map(|s| {
            let old = previous.get(&s.name);
            let changed = old.is_none_or(|(value, pending)| {
                *value != s.setting || *pending != s.pending_restart
            });
            changed.then(|| SettingChange {
                name: s.name.clone(),
                old_setting: old.map(|(v, _)| v.clone()).unwrap_or_default(),
                new_setting: s.setting.clone(),
                pending_restart: s.pending_restart,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(name: &str, value: &str, pending: bool) -> Setting {
        Setting {
            name: name.into(),
            setting: value.into(),
            unit: String::new(),
            source: "default".into(),
            pending_restart: pending,
        }
    }

    #[test]
    fn value_and_pending_restart_changes_are_events() {
        let previous: Seen = [
            ("work_mem".to_owned(), ("4096".to_owned(), false)),
            ("shared_buffers".to_owned(), ("16384".to_owned(), false)),
            ("gone".to_owned(), ("1".to_owned(), false)),
            ("same".to_owned(), ("x".to_owned(), false)),
        ]
        .into_iter()
        .collect();
        let current = [
            setting("work_mem", "8192", false),
            setting("shared_buffers", "16384", true),
            setting("same", "x", false),
            setting("new.one", "on", false),
        ];
        let mut got = changes(&previous, &current);
        got.sort_by(|a, b| a.name.cmp(&b.name));
        let summary: Vec<(&str, &str, &str, bool)> = got
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.old_setting.as_str(),
                    c.new_setting.as_str(),
                    c.pending_restart,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("new.one", "", "on", false),
                ("shared_buffers", "16384", "16384", true),
                ("work_mem", "4096", "8192", false),
            ]
        );
    }
}
