//! Database discovery and the per-instance connection budget for the
//! per-database families (`table`, `index`).
//!
//! The instance's main connection (to the DSN's database) serves that
//! database; the other databases share `max_connections - 1` further
//! connections, kept open across rounds and reused, the least recently used
//! one closed when another database needs a slot. With `max_connections =
//! 1` only the DSN's database is visited.

use tokio_postgres::Client;

use super::{CollectError, session};
use crate::config::DatabaseFilter;

/// Does `name` match `pattern` (`*` any run, `?` one character)?
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with backtracking to the last `*`: linear-ish, no
    // recursion, so a hostile pattern cannot blow the stack.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

pub fn allows(filter: &DatabaseFilter, datname: &str) -> bool {
    (filter.include.is_empty() || filter.include.iter().any(|p| glob_match(p, datname)))
        && !filter.exclude.iter().any(|p| glob_match(p, datname))
}

/// The databases to visit, in name order.
pub async fn discover(
    client: &Client,
    filter: &DatabaseFilter,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT datname::text FROM pg_database \
             WHERE datallowconn AND NOT datistemplate \
               AND has_database_privilege(oid, 'CONNECT') \
             ORDER BY datname",
            &[],
        )
        .await?;
    let mut names = Vec::with_capacity(rows.len());
    for row in &rows {
        let name: String = row.try_get(0)?;
        if allows(filter, &name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Connections to databases other than the DSN's, at most `capacity`.
pub struct DatabaseConnections {
    base: lasect_pgtls::PgConfig,
    capacity: usize,
    /// Most recently used last.
    open: Vec<(String, Client)>,
}

impl DatabaseConnections {
    pub fn new(base: lasect_pgtls::PgConfig, capacity: usize) -> Self {
        Self {
            base,
            capacity,
            open: Vec::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A session on `datname`, reusing an open one when there is one.
    pub async fn get(&mut self, datname: &str, instance: &str) -> Result<&Client, CollectError> {
        self.open.retain(|(_, c)| !c.is_closed());
        if let Some(i) = self.open.iter().position(|(d, _)| d == datname) {
            let entry = self.open.remove(i);
            self.open.push(entry);
        } else {
            if self.capacity == 0 {
                return Err(CollectError::NotConnected);
            }
            while self.open.len() >= self.capacity {
                // Dropping the client closes its connection.
                self.open.remove(0);
            }
            let mut pg = self.base.clone();
            pg.dbname(datname);
            let client = session::open(&pg, instance).await?;
            self.open.push((datname.to_owned(), client));
        }
        self.open
            .last()
            .map(|(_, c)| c)
            .ok_or(CollectError::NotConnected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("*", ""));
        assert!(glob_match("app_*", "app_1"));
        assert!(!glob_match("app_*", "xapp_1"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*_tmp*", "x_tmp_y"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("é*", "été"));
        // Pathological pattern terminates quickly.
        assert!(!glob_match(&"*a".repeat(30), &"a".repeat(20)));
    }

    #[test]
    fn include_and_exclude() {
        let all = DatabaseFilter::default();
        assert!(allows(&all, "postgres"));
        let some = DatabaseFilter {
            include: vec!["app*".into(), "postgres".into()],
            exclude: vec!["*_tmp".into()],
        };
        assert!(allows(&some, "app1"));
        assert!(allows(&some, "postgres"));
        assert!(!allows(&some, "app1_tmp"));
        assert!(!allows(&some, "other"));
    }
}
