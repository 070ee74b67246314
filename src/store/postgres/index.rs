//! The archive's full-text documents on PostgreSQL, built after the poll.
//!
//! A polled entry's archive row is queued in `archive_pending` by the statement that writes it
//! (`poll::archive_put`); [`index_pending`] turns queued rows into `archive_fts` documents (the
//! matcher's folded tokens as a binary `tsvector`, [`crate::store::copy::tsvector_binary`]) and
//! takes them off the queue in the same transaction, so a row is always either indexed or
//! queued. Search and backfill read both ([`candidates`]): rows whose document matches, and
//! every queued row, which the matcher then checks like any other candidate. That is how
//! SQLite's FTS5 index trails the poll behind its watermark; on PostgreSQL the queue replaces
//! the watermark because several workers commit ids out of order.

use super::PgDb;
use super::poll::At;
use crate::pipeline::matcher::item_body;
use crate::store::Result;

/// Rows indexed per transaction.
const BATCH: i64 = 500;

/// A subquery (alias `c`, columns `id` and `pending`) of the archive ids that may match
/// tsquery `?1`: documents that match it and every row still queued, each side bounded by
/// `bound` on the id (e.g. `"< ?2"`).
pub(crate) fn candidates(bound: &str) -> String {
    format!(
        "(SELECT id, false AS pending FROM archive_fts
           WHERE doc @@ CAST(CAST(?1 AS TEXT) AS tsquery) AND id {bound}
         UNION ALL
         SELECT id, true FROM archive_pending WHERE id {bound}) c"
    )
}

/// Build the documents of up to `max_rows` queued archive rows (oldest first), a transaction
/// per [`BATCH`]; returns how many were indexed. Rows another connection is indexing (or whose
/// archive row is being replaced) are skipped, not waited for, so several workers index
/// side by side.
pub fn index_pending(db: &mut PgDb, max_rows: u64) -> Result<u64> {
    let target = db.target().to_string();
    let t = target.as_str();
    let mut done = 0u64;
    while done < max_rows {
        let limit = BATCH.min(i64::try_from(max_rows - done).unwrap_or(BATCH));
        let mut tx = db.client().transaction().at(t)?;
        // The archive row is share-locked too: an edit that replaces it waits for this
        // transaction (instead of the two waiting for each other through the foreign key).
        let rows = tx
            .query(
                "SELECT p.id, a.title, a.summary, a.content
                   FROM archive_pending p JOIN archive a ON a.id = p.id
                  ORDER BY p.id LIMIT $1
                  FOR UPDATE OF p SKIP LOCKED FOR KEY SHARE OF a SKIP LOCKED",
                &[&limit],
            )
            .at(t)?;
        if rows.is_empty() {
            break;
        }
        let mut ids: Vec<i64> = Vec::with_capacity(rows.len());
        let mut docs: Vec<TsVector> = Vec::with_capacity(rows.len());
        for r in &rows {
            let (id, title, summary, content): (i64, &str, &str, &str) = (
                r.try_get(0).at(t)?,
                r.try_get(1).at(t)?,
                r.try_get(2).at(t)?,
                r.try_get(3).at(t)?,
            );
            ids.push(id);
            docs.push(TsVector(crate::store::copy::tsvector_binary(
                title,
                &item_body(summary, content),
            )));
        }
        tx.execute(
            "INSERT INTO archive_fts (id, doc)
             SELECT u.id, u.doc FROM unnest($1::bigint[], $2::tsvector[]) AS u(id, doc)
             ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc",
            &[&ids, &docs],
        )
        .at(t)?;
        tx.execute(
            "DELETE FROM archive_pending WHERE id = ANY($1::bigint[])",
            &[&ids],
        )
        .at(t)?;
        tx.commit().at(t)?;
        done += ids.len() as u64;
        if (ids.len() as i64) < limit {
            break;
        }
    }
    Ok(done)
}

/// `archive rebuild`: every archived row queued again and its old document dropped (one
/// transaction, so search stays complete throughout), then all of them indexed. Returns how
/// many were indexed.
pub fn rebuild(db: &mut PgDb) -> Result<u64> {
    let target = db.target().to_string();
    let mut tx = db.client().transaction().at(&target)?;
    tx.batch_execute(
        "DELETE FROM archive_fts;
         INSERT INTO archive_pending (id) SELECT id FROM archive ON CONFLICT DO NOTHING;",
    )
    .at(&target)?;
    tx.commit().at(&target)?;
    index_pending(db, u64::MAX)
}

/// An archive document already in PostgreSQL's binary `tsvector` format
/// ([`crate::store::copy::tsvector_binary`]), sent as it is.
#[derive(Debug)]
struct TsVector(Vec<u8>);

impl postgres::types::ToSql for TsVector {
    fn to_sql(
        &self,
        _: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        out.extend_from_slice(&self.0);
        Ok(postgres::types::IsNull::No)
    }

    fn accepts(ty: &postgres::types::Type) -> bool {
        ty.name() == "tsvector"
    }

    postgres::types::to_sql_checked!();
}
