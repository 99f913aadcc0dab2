//! `import_csv`: CSV (the run's input) into a table, all or nothing.
//!
//! Everything the agent can check is checked before a row is written:
//! UTF-8 per line, the column count of every record, the header's names
//! against the table's columns. Any problem fails the run with a per-row
//! report (`detail.errors`: line and reason, at most 100) and writes
//! nothing. The rows then go in with one `COPY … FROM STDIN` inside a
//! transaction; a value the server refuses (a bad integer, a constraint)
//! rolls everything back and is reported with its line.

use bytes::Bytes;
use futures::SinkExt;
use lasect_runs::ImportCsvParams;
use serde_json::{Value, json};

use super::{OpContext, OpError, OpOutcome, quote_ident};

const MAX_ERRORS: usize = 100;

fn fail(message: String, errors: Vec<Value>) -> OpError {
    OpError::Failed {
        message,
        detail: json!({ "errors": errors, "rows_imported": 0 }),
    }
}

/// Lines (1-based) that are not valid UTF-8.
fn encoding_errors(input: &[u8]) -> Vec<Value> {
    input
        .split(|b| *b == b'\n')
        .enumerate()
        .filter_map(|(i, line)| {
            std::str::from_utf8(line).err().map(|e| {
                json!({ "line": i + 1, "error": format!("invalid UTF-8 at byte {} of the line", e.valid_up_to() + 1) })
            })
        })
        .take(MAX_ERRORS)
        .collect()
}

pub async fn run(ctx: &mut OpContext, p: &ImportCsvParams) -> Result<OpOutcome, OpError> {
    let schema = p.schema.clone();
    let table = p.table.clone();
    let header = p.header;
    let input = ctx.input.clone();
    if input.is_empty() {
        return Err(fail("the CSV is empty".to_owned(), Vec::new()));
    }
    let bad_encoding = encoding_errors(&input);
    if !bad_encoding.is_empty() {
        return Err(fail(
            format!(
                "{} line(s) are not valid UTF-8; nothing was imported",
                bad_encoding.len()
            ),
            bad_encoding,
        ));
    }

    let mut client = ctx.connect(p.database.as_deref()).await?;
    let table_columns: Vec<String> = client
        .query(
            "SELECT a.attname::text FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attgenerated = ''
             ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await
        .map_err(OpError::Postgres)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if table_columns.is_empty() {
        return Err(fail(format!("no table {schema}.{table}"), Vec::new()));
    }

    let mut reader = csv::ReaderBuilder::new()
        .has_headers(header)
        .flexible(true)
        .from_reader(&input[..]);
    let mut errors = Vec::new();
    let columns: Vec<String> = if header {
        let names: Vec<String> = reader
            .headers()
            .map_err(|e| fail(format!("cannot read the header: {e}"), Vec::new()))?
            .iter()
            .map(str::to_owned)
            .collect();
        for name in &names {
            if !table_columns.contains(name) {
                errors.push(json!({ "line": 1, "error": format!("column {name:?} is not in {schema}.{table}") }));
            }
        }
        names
    } else {
        p.columns.clone().unwrap_or_else(|| table_columns.clone())
    };
    let mut records = 0u64;
    for record in reader.records() {
        if errors.len() >= MAX_ERRORS {
            break;
        }
        match record {
            Ok(r) => {
                records += 1;
                if r.len() != columns.len() {
                    let line = r.position().map_or(0, |p| p.line());
                    errors.push(json!({
                        "line": line,
                        "error": format!("{} field(s), expected {}", r.len(), columns.len()),
                    }));
                }
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(json!({ "line": line, "error": e.to_string() }));
            }
        }
    }
    if !errors.is_empty() {
        return Err(fail(
            format!(
                "{} problem(s) in the CSV; nothing was imported",
                errors.len()
            ),
            errors,
        ));
    }

    let tx = client.transaction().await.map_err(OpError::Postgres)?;
    let column_list: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let copy = format!(
        "COPY {}.{} ({}) FROM STDIN WITH (FORMAT csv, HEADER {})",
        quote_ident(&schema),
        quote_ident(&table),
        column_list.join(", "),
        header
    );
    let result = async {
        let sink = tx.copy_in::<_, Bytes>(&copy).await?;
        futures::pin_mut!(sink);
        sink.send(input.clone()).await?;
        sink.finish().await
    }
    .await;
    match result {
        Ok(rows) => {
            tx.commit().await.map_err(OpError::Postgres)?;
            Ok(OpOutcome {
                summary: json!({ "rows_imported": rows, "records": records, "errors": [] }),
            })
        }
        Err(e) => {
            let _ = tx.rollback().await;
            // "COPY t, line 3, column n: …": the server's line counts the header too.
            let line = e
                .as_db_error()
                .and_then(|d| d.where_())
                .and_then(|w| w.split("line ").nth(1))
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<u64>().ok());
            let error = super::pg_error_line(&e);
            Err(OpError::Failed {
                message: format!("{error}; nothing was imported"),
                detail: json!({
                    "errors": [{ "line": line, "error": error }],
                    "rows_imported": 0,
                    "postgres": super::pg_error_detail(&e),
                }),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::encoding_errors;

    #[test]
    fn bad_utf8_lines_are_named() {
        let e = encoding_errors(b"a,b\n1,\xff\n2,ok\n3,\xc3\x28\n");
        let lines: Vec<u64> = e.iter().filter_map(|v| v["line"].as_u64()).collect();
        assert_eq!(lines, [2, 4]);
    }
}
