//! `export_csv`: a table or a read-only query as CSV with a header line,
//! streamed page by page (`COPY … TO STDOUT`), never held in memory whole.

use futures::StreamExt;
use lasect_runs::ExportCsvParams;
use serde_json::json;

use super::{OpContext, OpError, OpOutcome, quote_ident};
use crate::csv_stream::CsvStream;

/// Counts CSV records across chunk boundaries (a quoted value may hold
/// newlines; a row whose only column is NULL is an empty line).
pub struct RecordCounter {
    stream: CsvStream,
    records: u64,
}

impl Default for RecordCounter {
    fn default() -> Self {
        Self {
            stream: CsvStream::counting(),
            records: 0,
        }
    }
}

impl RecordCounter {
    pub fn feed(&mut self, mut chunk: &[u8]) -> u64 {
        let before = self.records;
        while !chunk.is_empty() {
            let (used, done) = self.stream.feed(chunk);
            chunk = &chunk[used..];
            self.records += u64::from(done);
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

    /// What COPY writes for awkward values: NULL alone on a line, quotes,
    /// newlines, bytes that are not UTF-8 (a SQL_ASCII database), a quoted
    /// `\.`; split at every byte.
    #[test]
    fn nasty_rows_are_counted_across_any_split() {
        let copy: &[u8] = b"v\n\n\"\"\n\"a\"\"\n\"\"b\"\n\xff\xfe,\"\r\n\"\n\"\\.\"\n";
        for at in 0..=copy.len() {
            let mut c = RecordCounter::default();
            let n = c.feed(&copy[..at]) + c.feed(&copy[at..]);
            assert_eq!(n, 6, "split at {at}");
            assert_eq!(c.records, 6);
        }
    }
}
