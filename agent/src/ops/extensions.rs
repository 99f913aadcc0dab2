//! `extension_list` and `extension_action` (FR19–FR21): what is available
//! and installed, and enable / disable / update. Names must be available
//! extensions and versions plain version strings, so the statements built
//! from them are safe; identifiers are quoted all the same.

use serde_json::{Value, json};

use lasect_runs::{ExtensionActionParams, ExtensionListParams, ExtensionVerb};

use super::{OpContext, OpError, OpOutcome, quote_ident};

pub async fn list(ctx: &mut OpContext, p: &ExtensionListParams) -> Result<OpOutcome, OpError> {
    let client = ctx.connect(p.database.as_deref()).await?;
    let rows = client
        .query(
            "SELECT json_build_object('name', a.name, 'default_version', a.default_version,
                 'installed_version', e.extversion, 'schema', n.nspname, 'comment', a.comment)
             FROM pg_available_extensions a
             LEFT JOIN pg_extension e ON e.extname = a.name
             LEFT JOIN pg_namespace n ON n.oid = e.extnamespace
             ORDER BY a.name",
            &[],
        )
        .await
        .map_err(OpError::Postgres)?;
    let extensions: Vec<Value> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
    Ok(OpOutcome {
        summary: json!({ "extensions": extensions }),
    })
}

fn plain_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

pub async fn action(ctx: &mut OpContext, p: &ExtensionActionParams) -> Result<OpOutcome, OpError> {
    let action = p.action;
    let name = p.name.clone();
    let version = p.version.clone();
    if let Some(v) = &version
        && !plain_version(v)
    {
        return Err(OpError::Params(format!(
            "version {v:?} is not a version string"
        )));
    }
    let schema = p.schema.clone();
    let cascade = p.cascade;
    let client = ctx.connect(p.database.as_deref()).await?;
    let available = client
        .query_opt(
            "SELECT 1 FROM pg_available_extensions WHERE name = $1",
            &[&name],
        )
        .await
        .map_err(OpError::Postgres)?
        .is_some();
    if !available {
        return Err(OpError::Failed {
            message: format!("extension {name:?} is not available on this server"),
            detail: json!({ "name": name }),
        });
    }
    let ident = quote_ident(&name);
    let version_clause = version
        .as_ref()
        .map(|v| format!(" VERSION '{v}'"))
        .unwrap_or_default();
    let sql = match action {
        ExtensionVerb::Enable => format!(
            "CREATE EXTENSION IF NOT EXISTS {ident}{}{version_clause}{}",
            schema
                .as_ref()
                .map(|s| format!(" SCHEMA {}", quote_ident(s)))
                .unwrap_or_default(),
            if cascade { " CASCADE" } else { "" }
        ),
        ExtensionVerb::Disable => format!(
            "DROP EXTENSION IF EXISTS {ident}{}",
            if cascade { " CASCADE" } else { "" }
        ),
        ExtensionVerb::Update => format!(
            "ALTER EXTENSION {ident} UPDATE{}",
            version
                .as_ref()
                .map(|v| format!(" TO '{v}'"))
                .unwrap_or_default()
        ),
    };
    client
        .batch_execute(&sql)
        .await
        .map_err(OpError::Postgres)?;
    let installed: Option<String> = client
        .query_opt(
            "SELECT extversion FROM pg_extension WHERE extname = $1",
            &[&name],
        )
        .await
        .map_err(OpError::Postgres)?
        .map(|r| r.get(0));
    Ok(OpOutcome {
        summary: json!({ "name": name, "action": action.as_str(), "installed_version": installed }),
    })
}
