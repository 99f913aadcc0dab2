//! `schema_snapshot`: the database's schema as one JSON document, built by
//! the server in a single catalog query (consistent, and no per-object round
//! trips). Sent as raw pages; ingest stores it and records what changed
//! since the previous snapshot (`ingest/src/schema_history.rs`).
//!
//! Document: `{database, server_version_num, extensions[], schemas[{name,
//! tables[{name, kind, partition_of, size_bytes, row_estimate, columns[],
//! constraints[], indexes[], triggers[]}], views[{name, materialized,
//! definition, columns[], depends_on[]}], functions[], types[],
//! sequences[]}]}`, every list sorted by name. System schemas and objects
//! that belong to extensions are left out.

use lasect_runs::SchemaSnapshotParams;
use serde_json::json;

use super::{OpContext, OpError, OpOutcome};

pub const SNAPSHOT_SQL: &str = r#"
WITH ns AS (
    SELECT oid, nspname FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
      AND nspname NOT LIKE 'pg_temp_%' AND nspname NOT LIKE 'pg_toast_temp_%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = pg_namespace.oid
                      AND d.classid = 'pg_namespace'::regclass AND d.deptype = 'e')
)
SELECT json_build_object(
  'database', current_database(),
  'server_version_num', current_setting('server_version_num')::int,
  'extensions', (SELECT coalesce(json_agg(json_build_object(
        'name', e.extname, 'version', e.extversion, 'schema', n.nspname) ORDER BY e.extname), '[]')
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace),
  'schemas', (SELECT coalesce(json_agg(json_build_object(
    'name', ns.nspname,
    'tables', (SELECT coalesce(json_agg(json_build_object(
        'name', c.relname,
        'kind', CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned' ELSE 'foreign' END,
        'partition_of', (SELECT pn.nspname || '.' || pc.relname FROM pg_inherits i
                         JOIN pg_class pc ON pc.oid = i.inhparent
                         JOIN pg_namespace pn ON pn.oid = pc.relnamespace
                         WHERE i.inhrelid = c.oid AND c.relispartition LIMIT 1),
        'size_bytes', pg_total_relation_size(c.oid),
        'row_estimate', greatest(c.reltuples, 0)::bigint,
        'columns', (SELECT coalesce(json_agg(json_build_object(
              'name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
              'nullable', NOT a.attnotnull, 'default', pg_get_expr(d.adbin, d.adrelid),
              'identity', nullif(a.attidentity::text, ''),
              'generated', nullif(a.attgenerated::text, '')) ORDER BY a.attnum), '[]')
            FROM pg_attribute a
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
        'constraints', (SELECT coalesce(json_agg(json_build_object(
              'name', k.conname,
              'type', CASE k.contype WHEN 'p' THEN 'primary_key' WHEN 'u' THEN 'unique'
                      WHEN 'c' THEN 'check' WHEN 'f' THEN 'foreign_key'
                      WHEN 'x' THEN 'exclusion' ELSE k.contype::text END,
              'definition', pg_get_constraintdef(k.oid),
              'columns', (SELECT json_agg(a.attname ORDER BY u.ord)
                          FROM unnest(k.conkey) WITH ORDINALITY u(n, ord)
                          JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n),
              'ref_schema', rn.nspname, 'ref_table', rc.relname,
              'ref_columns', (SELECT json_agg(a.attname ORDER BY u.ord)
                              FROM unnest(k.confkey) WITH ORDINALITY u(n, ord)
                              JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n))
              ORDER BY k.conname), '[]')
            FROM pg_constraint k
            LEFT JOIN pg_class rc ON rc.oid = k.confrelid
            LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
            WHERE k.conrelid = c.oid),
        'indexes', (SELECT coalesce(json_agg(json_build_object(
              'name', ic.relname, 'definition', pg_get_indexdef(x.indexrelid),
              'unique', x.indisunique, 'primary', x.indisprimary, 'valid', x.indisvalid)
              ORDER BY ic.relname), '[]')
            FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid WHERE x.indrelid = c.oid),
        'triggers', (SELECT coalesce(json_agg(json_build_object(
              'name', t.tgname, 'definition', pg_get_triggerdef(t.oid),
              'enabled', t.tgenabled <> 'D') ORDER BY t.tgname), '[]')
            FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal)
      ) ORDER BY c.relname), '[]')
      FROM pg_class c WHERE c.relnamespace = ns.oid AND c.relkind IN ('r', 'p', 'f')
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                        AND d.objid = c.oid AND d.deptype = 'e')),
    'views', (SELECT coalesce(json_agg(json_build_object(
        'name', c.relname, 'materialized', c.relkind = 'm',
        'definition', pg_get_viewdef(c.oid),
        'columns', (SELECT coalesce(json_agg(json_build_object(
              'name', a.attname, 'type', format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum), '[]')
            FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
        'depends_on', (SELECT coalesce(json_agg(DISTINCT rn.nspname || '.' || rc.relname), '[]')
            FROM pg_rewrite r
            JOIN pg_depend dp ON dp.objid = r.oid AND dp.classid = 'pg_rewrite'::regclass
                             AND dp.refclassid = 'pg_class'::regclass
            JOIN pg_class rc ON rc.oid = dp.refobjid
            JOIN pg_namespace rn ON rn.oid = rc.relnamespace
            WHERE r.ev_class = c.oid AND rc.oid <> c.oid)
      ) ORDER BY c.relname), '[]')
      FROM pg_class c WHERE c.relnamespace = ns.oid AND c.relkind IN ('v', 'm')
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                        AND d.objid = c.oid AND d.deptype = 'e')),
    'functions', (SELECT coalesce(json_agg(json_build_object(
        'name', p.proname,
        'signature', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
        'returns', pg_get_function_result(p.oid), 'kind', p.prokind::text,
        'language', l.lanname, 'volatility', p.provolatile::text,
        'definition_md5', md5(coalesce(p.prosrc, '')))
        ORDER BY p.proname, pg_get_function_identity_arguments(p.oid)), '[]')
      FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
      WHERE p.pronamespace = ns.oid
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')),
    'types', (SELECT coalesce(json_agg(json_build_object(
        'name', t.typname,
        'kind', CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'c' THEN 'composite'
                WHEN 'd' THEN 'domain' ELSE 'range' END,
        'values', CASE WHEN t.typtype = 'e' THEN (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder)
                                                  FROM pg_enum e WHERE e.enumtypid = t.oid) END,
        'definition', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END)
        ORDER BY t.typname), '[]')
      FROM pg_type t
      WHERE t.typnamespace = ns.oid
        AND (t.typtype IN ('e', 'd', 'r')
             OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class cc
                                             WHERE cc.oid = t.typrelid AND cc.relkind = 'c')))
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')),
    'sequences', (SELECT coalesce(json_agg(json_build_object('name', c.relname) ORDER BY c.relname), '[]')
      FROM pg_class c WHERE c.relnamespace = ns.oid AND c.relkind = 'S'
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                        AND d.objid = c.oid AND d.deptype = 'e'))
  ) ORDER BY ns.nspname), '[]') FROM ns)
)::text
"#;

pub async fn run(ctx: &mut OpContext, p: &SchemaSnapshotParams) -> Result<OpOutcome, OpError> {
    let mut client = ctx.connect(p.database.as_deref()).await?;
    // One snapshot of the catalog, even while DDL runs elsewhere.
    let tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(OpError::Postgres)?;
    let document: String = tx
        .query_one(SNAPSHOT_SQL, &[])
        .await
        .map_err(OpError::Postgres)?
        .try_get(0)
        .map_err(OpError::Postgres)?;
    tx.rollback().await.map_err(OpError::Postgres)?;
    let size = document.len() as u64;
    if size > ctx.limits.max_bytes {
        return Err(OpError::Failed {
            message: format!(
                "the schema document is {size} bytes, more than the run's max_bytes ({}); \
                 raise max_bytes rather than store a partial snapshot",
                ctx.limits.max_bytes
            ),
            detail: json!({ "bytes": size }),
        });
    }
    let doc: serde_json::Value = serde_json::from_str(&document).map_err(|e| OpError::Failed {
        message: format!("the server built an unreadable schema document: {e}"),
        detail: serde_json::Value::Null,
    })?;
    let objects: usize = doc["schemas"]
        .as_array()
        .map(|schemas| {
            schemas
                .iter()
                .map(|s| {
                    ["tables", "views", "functions", "types", "sequences"]
                        .iter()
                        .map(|k| s[*k].as_array().map_or(0, Vec::len))
                        .sum::<usize>()
                })
                .sum()
        })
        .unwrap_or(0);
    ctx.out.raw(document.as_bytes(), 0).await?;
    ctx.out.flush().await?;
    Ok(OpOutcome {
        summary: json!({ "database": doc["database"], "objects": objects }),
    })
}
