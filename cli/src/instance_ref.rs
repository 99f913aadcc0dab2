//! `--instance`: a numeric id, an instance name, or `agent/name` when the name alone is on
//! several agents.

use anyhow::bail;
use lasect_api_contract::instances::{Instance, InstanceList};

use crate::api_client::ApiClient;

/// The id of the instance `input` designates. A numeric id is used as is (the API answers
/// `not_found` for an unknown one); a name is looked up in the instance list.
pub async fn resolve(client: &ApiClient, input: &str) -> anyhow::Result<i64> {
    if let Ok(id) = input.parse::<i64>() {
        return Ok(id);
    }
    let list: InstanceList = client.get("api/v1/instances").await?;
    pick(&list.instances, input)
}

/// Picks the instance named `input` (or `agent/name`) out of `instances`.
pub fn pick(instances: &[Instance], input: &str) -> anyhow::Result<i64> {
    let by_name: Vec<&Instance> = instances.iter().filter(|i| i.name == input).collect();
    match by_name.as_slice() {
        [one] => return Ok(one.id),
        [] => {}
        several => {
            let names: Vec<String> = several
                .iter()
                .map(|i| format!("{}/{}", i.agent_id, i.name))
                .collect();
            bail!(
                "instance name {input:?} is on several agents: {}; give agent/name or the numeric id",
                names.join(", ")
            );
        }
    }
    // Agent ids never contain '/', so the first one separates agent from name.
    let qualified = input.split_once('/').and_then(|(agent, name)| {
        instances
            .iter()
            .find(|i| i.agent_id == agent && i.name == name)
    });
    if let Some(found) = qualified {
        return Ok(found.id);
    }
    bail!("no instance named {input:?} (see `lasect instance list`)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Vec<Instance> {
        [
            (1, "main", "db-01"),
            (2, "main", "db-02"),
            (3, "reports", "db-01"),
            (4, "a/b", "db-03"),
        ]
        .into_iter()
        .map(|(id, name, agent)| Instance {
            id,
            name: name.to_owned(),
            agent_id: agent.to_owned(),
            server_version_num: None,
            version: None,
            in_recovery: None,
            labels: serde_json::json!({}),
            created_at: String::new(),
            last_seen: None,
            source: "agent".to_owned(),
            state: "active".to_owned(),
            dsn: None,
            health: None,
            health_at: None,
            figures: None,
        })
        .collect()
    }

    #[test]
    fn unique_names_and_agent_qualified_names_resolve() {
        assert_eq!(pick(&list(), "reports").expect("unique"), 3);
        assert_eq!(pick(&list(), "db-02/main").expect("qualified"), 2);
        assert_eq!(pick(&list(), "a/b").expect("name with a slash"), 4);
    }

    #[test]
    fn ambiguous_and_unknown_names_fail() {
        let err = pick(&list(), "main").expect_err("ambiguous").to_string();
        assert!(err.contains("db-01/main, db-02/main"), "{err}");
        let err = pick(&list(), "nope").expect_err("unknown").to_string();
        assert!(err.contains("no instance named \"nope\""), "{err}");
        assert!(pick(&list(), "db-09/main").is_err());
    }
}
