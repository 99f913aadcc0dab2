//! `export_csv`: a table or a read-only query as CSV with a header line,
//! streamed page by page (`COPY … TO STDOUT`), never held in memory whole.

use futures::StreamExt;
use lasect_runs::ExportCsvParams;
use serde_json::json;

use super::{OpContext, OpError, OpOutcome, quote_ident};

/// Counts CSV records across chunk boundaries (a quoted value may hold newlines).
#[derive(Default)]
pub struct RecordCounter {
    in_quotes: bool,
    records: u64,
}

impl RecordCounter {
    pub fn feed(&mut self, chunk: &[u8]) -> u64 {
        let before = self.records;
        for &b in chunk {
            match b {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => self.records += 1,
                _ => {}
            }
        }
        self.records - before
    }
}

pub async fn run(ctx: &mut OpContext, p: &ExportCsvParams) -> Result<OpOutcome, OpError> {
    let source = match (p.table.as_deref(), p.sql.as_deref()) {
        (Some(table), None) => {
            let schema = p.schema.as_deref().unwrap_or("public");
            format!(
                "SELECT * FROM {}.{}",
                quote_ident(schema),
                quote_ident(table)
            )
        }
        (None, Some(sql)) if !sql.trim().is_empty() => sql.trim().trim_end_matches(';').to_owned(),
        _ => {
            return Err(OpError::Params(
                "give either `table` (and `schema`) or `sql`".to_owned(),
            ));
        }
    };
    let mut client = ctx.connect(p.database.as_deref()).await?;
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(OpError::Postgres)?;
    // The query must stand alone as one row-returning statement before it is
    // wrapped in COPY: otherwise `SELECT 1) TO PROGRAM '…' --` would turn the
    // export into something else. The newlines end any trailing line comment.
    let statement = tx.prepare(&source).await.map_err(OpError::Postgres)?;
    if statement.columns().is_empty() {
        return Err(OpError::Params(
            "`sql` must be a query that returns rows (SELECT, VALUES, TABLE, WITH …)".to_owned(),
        ));
    }
    let stream = tx
        .copy_out(&format!(
            "COPY (\n{source}\n) TO STDOUT WITH (FORMAT csv, HEADER)"
        ))
        .await
        .map_err(OpError::Postgres)?;
    futures::pin_mut!(stream);
    let mut counter = RecordCounter::default();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(OpError::Postgres)?;
        let records = counter.feed(&chunk);
        if !ctx.out.raw(&chunk, records).await? {
            break;
        }
    }
    ctx.out.flush().await?;
    Ok(OpOutcome {
        summary: json!({ "records_with_header": counter.records }),
    })
}

#[cfg(test)]
mod tests {
    use super::RecordCounter;

    #[test]
    fn quoted_newlines_are_not_records() {
        let mut c = RecordCounter::default();
        assert_eq!(c.feed(b"a,b\n1,\"x\ny"), 1);
        assert_eq!(c.feed(b"\"\n2,\"\"\"q\"\"\"\n"), 2);
    }
}
