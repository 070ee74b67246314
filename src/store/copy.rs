//! `newswatch migrate`: copy a whole newswatch database from one backend to the other
//! (SQLite → PostgreSQL or back, or between two databases of one backend).
//!
//! What is copied is read from the source's schema, not listed by hand: every table except the
//! full-text index (rebuilt on the target instead, so PostgreSQL's queue of rows awaiting it,
//! `archive_pending`, is left out too) and PostgreSQL's `schema_version`, in
//! foreign-key order, every column by name, ids included. Both ends are first brought to the
//! same schema version, and the target must have the same tables and columns with the same
//! kinds (integer, text, bytes: the two schemas keep SQLite's value representation).
//!
//! The target is written in one transaction, in batches of [`BATCH`] rows (COPY on PostgreSQL),
//! and checked before it commits: row counts per table, and a random sample of rows of every
//! table with an `id` compared column by column. A failure or a mismatch rolls back, leaving
//! the target as it was. The source is read in one snapshot (a read transaction). Afterwards
//! PostgreSQL's identity sequences continue past the copied ids.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, ValueRef};

use super::postgres::PgDb;
use super::{BUSY_TIMEOUT, Store, StoreError};
use crate::pipeline::matcher::item_body;
use crate::pipeline::normalise::{ASCII_HASH_SEED, ascii_hash_step, fold_cow, tokens};

/// Rows per batch (one COPY on PostgreSQL).
pub const BATCH: usize = 1_000;
/// Rows per table compared column by column after the copy.
pub const SAMPLE: usize = 100;

/// The PostgreSQL side table that replaces SQLite's FTS5 `archive_fts`.
const PG_FTS: &str = "archive_fts";
/// Columns that describe the target's own full-text index rather than data (the index
/// watermark): copied, then set by the target's rebuild, so not compared.
const INDEX_STATE: &[(&str, &str)] = &[("archive_index", "indexed_upto")];
/// PostgreSQL's queue of archive rows whose documents are not built yet (empty after a copy:
/// the copy writes every document).
const PG_PENDING: &str = "archive_pending";

/// PostgreSQL's record of applied migrations (SQLite keeps it in `PRAGMA user_version`).
const PG_VERSIONS: &str = "schema_version";

/// What a column holds (the two schemas agree on these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Int,
    Text,
    Bytes,
}

/// One table to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<(String, Kind)>,
    /// Primary-key columns, in key order (rows are read in this order).
    pub key: Vec<String>,
    /// Tables its foreign keys point to.
    refs: Vec<String>,
}

impl Table {
    fn has_id(&self) -> bool {
        self.key.len() == 1 && self.key[0] == "id"
    }

    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(c, _)| quote(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn order_by(&self) -> String {
        if self.key.is_empty() {
            String::new()
        } else {
            format!(
                " ORDER BY {}",
                self.key
                    .iter()
                    .map(|c| quote(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

/// One value, as both backends store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Val::Null => ValueRef::Null,
            Val::Int(i) => ValueRef::Integer(*i),
            Val::Text(s) => ValueRef::Text(s.as_bytes()),
            Val::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

impl postgres::types::ToSql for Val {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(postgres::types::IsNull::Yes),
            Val::Int(i) => postgres::types::ToSql::to_sql(i, ty, out),
            Val::Text(s) => postgres::types::ToSql::to_sql(&s.as_str(), ty, out),
            Val::Bytes(b) => postgres::types::ToSql::to_sql(&b.as_slice(), ty, out),
        }
    }

    fn accepts(ty: &postgres::types::Type) -> bool {
        use postgres::types::Type;
        [Type::INT8, Type::TEXT, Type::BYTEA].contains(ty)
    }

    postgres::types::to_sql_checked!();
}

/// One end of a copy.
pub enum Db {
    Sqlite { conn: Connection, path: PathBuf },
    Postgres(PgDb),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Rows per table on both ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: String,
    pub source: i64,
    pub target: i64,
}

/// What a copy did, and what its check found.
#[derive(Debug, Clone, Default)]
pub struct CopyReport {
    pub counts: Vec<TableCount>,
    /// Rows compared column by column, over all tables.
    pub sampled: usize,
    /// Differences found (empty: the copy was committed).
    pub mismatches: Vec<String>,
    /// Rows the target's full-text index holds afterwards.
    pub indexed: u64,
    /// The target held rows that `force` replaced.
    pub replaced: bool,
}

fn pg_error(target: &str, e: &postgres::Error) -> StoreError {
    StoreError::Postgres {
        target: target.to_string(),
        reason: super::postgres::one_line(e),
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn copy_err(msg: impl Into<String>) -> StoreError {
    StoreError::Copy(msg.into())
}

impl Db {
    /// Open an SQLite database file (created when `create`, else it must exist), brought to
    /// the current schema.
    pub fn sqlite(path: &Path, create: bool) -> Result<Db, StoreError> {
        if !create && !path.exists() {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                reason: "no such file".into(),
            });
        }
        // Store::open creates the file if needed and applies the migrations.
        drop(Store::open(path)?);
        let open_err = |e: rusqlite::Error| StoreError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")
            .map_err(open_err)?;
        Ok(Db::Sqlite {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Connect to a PostgreSQL database and bring it to the current schema (created when
    /// `create`; else the database must hold one already).
    pub fn postgres(url: &str, password: Option<&str>, create: bool) -> Result<Db, StoreError> {
        let mut db = PgDb::connect(url, password)?;
        if !create && db.schema_version()? == 0 {
            return Err(copy_err(format!(
                "PostgreSQL {} holds no newswatch database",
                db.target()
            )));
        }
        db.migrate()?;
        Ok(Db::Postgres(db))
    }

    /// "SQLite newswatch.db" / "PostgreSQL user@host:5432/db".
    pub fn describe(&self) -> String {
        match self {
            Db::Sqlite { path, .. } => format!("SQLite {}", path.display()),
            Db::Postgres(pg) => format!("PostgreSQL {}", pg.target()),
        }
    }

    fn sqlite_err(&self, e: rusqlite::Error) -> StoreError {
        match self {
            Db::Sqlite { path, .. } => copy_err(format!("{}: {e}", path.display())),
            Db::Postgres(_) => StoreError::Sqlite(e),
        }
    }

    fn pg_err(&self, e: &postgres::Error) -> StoreError {
        match self {
            Db::Postgres(pg) => pg.error(e),
            Db::Sqlite { .. } => copy_err(super::postgres::one_line(e)),
        }
    }

    /// The tables to copy, in foreign-key order (a table after those it points to).
    pub fn tables(&mut self) -> Result<Vec<Table>, StoreError> {
        let tables = match self {
            Db::Sqlite { conn, .. } => {
                let r = sqlite_tables(conn);
                r.map_err(|e| self.sqlite_err(e))??
            }
            Db::Postgres(pg) => {
                let r = pg_tables(pg.client());
                r.map_err(|e| self.pg_err(&e))??
            }
        };
        Ok(dependency_order(tables))
    }

    fn count(&mut self, table: &str) -> Result<i64, StoreError> {
        let sql = format!("SELECT count(*) FROM {}", quote(table));
        match self {
            Db::Sqlite { conn, .. } => {
                let r = conn.query_row(&sql, [], |r| r.get(0));
                r.map_err(|e| self.sqlite_err(e))
            }
            Db::Postgres(pg) => {
                let r = pg.client().query_one(&sql, &[]).and_then(|r| r.try_get(0));
                r.map_err(|e| self.pg_err(&e))
            }
        }
    }

    fn execute(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            Db::Sqlite { conn, .. } => {
                let r = conn.execute_batch(sql);
                r.map_err(|e| self.sqlite_err(e))
            }
            Db::Postgres(pg) => {
                let r = pg.client().batch_execute(sql);
                r.map_err(|e| self.pg_err(&e))
            }
        }
    }

    fn begin_read(&mut self) -> Result<(), StoreError> {
        match self {
            Db::Sqlite { .. } => self.execute("BEGIN"),
            // A lock wait (say, the same database named twice) fails instead of hanging.
            Db::Postgres(_) => self.execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL lock_timeout = '10s'",
            ),
        }
    }

    fn begin_write(&mut self) -> Result<(), StoreError> {
        match self {
            Db::Sqlite { .. } => self.execute("BEGIN IMMEDIATE"),
            Db::Postgres(_) => self.execute("BEGIN; SET LOCAL lock_timeout = '10s'"),
        }
    }

    fn rollback(&mut self) {
        // Best effort: an error here means the transaction is gone already.
        let _ = self.execute("ROLLBACK");
    }

    /// Read every row of `t` in key order, handing them on in batches.
    fn read(
        &mut self,
        t: &Table,
        sink: &mut dyn FnMut(Vec<Vec<Val>>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let select = format!(
            "SELECT {} FROM {}{}",
            t.column_list(),
            quote(&t.name),
            t.order_by()
        );
        match self {
            Db::Sqlite { conn, path } => {
                let fail = |e: rusqlite::Error| copy_err(format!("{}: {e}", path.display()));
                let mut stmt = conn.prepare(&select).map_err(fail)?;
                let mut rows = stmt.query([]).map_err(fail)?;
                let mut batch = Vec::with_capacity(BATCH);
                while let Some(r) = rows.next().map_err(fail)? {
                    batch.push(sqlite_row(r, t)?);
                    if batch.len() == BATCH {
                        sink(std::mem::take(&mut batch))?;
                    }
                }
                if !batch.is_empty() {
                    sink(batch)?;
                }
                Ok(())
            }
            Db::Postgres(pg) => {
                let target = pg.target().to_string();
                let fail = |e: postgres::Error| pg_error(&target, &e);
                let client = pg.client();
                client
                    .batch_execute(&format!(
                        "DECLARE newswatch_copy NO SCROLL CURSOR FOR {select}"
                    ))
                    .map_err(fail)?;
                loop {
                    let rows = client
                        .query(&format!("FETCH {BATCH} FROM newswatch_copy"), &[])
                        .map_err(fail)?;
                    if rows.is_empty() {
                        break;
                    }
                    let batch = rows
                        .iter()
                        .map(|r| pg_row(r, t))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(fail)?;
                    sink(batch)?;
                }
                client.batch_execute("CLOSE newswatch_copy").map_err(fail)
            }
        }
    }

    /// Empty the copied tables and the full-text index (inside the write transaction).
    fn clear(&mut self, tables: &[Table]) -> Result<(), StoreError> {
        match self {
            Db::Sqlite { .. } => {
                let mut sql = String::new();
                for t in tables.iter().rev() {
                    sql.push_str(&format!("DELETE FROM {};\n", quote(&t.name)));
                }
                for fts in self.sqlite_fts()? {
                    sql.push_str(&format!(
                        "INSERT INTO {q} ({q}) VALUES ('delete-all');\n",
                        q = quote(&fts)
                    ));
                }
                self.execute(&sql)
            }
            Db::Postgres(_) => {
                let mut names: Vec<String> = tables.iter().map(|t| quote(&t.name)).collect();
                names.push(quote(PG_FTS));
                names.push(quote(PG_PENDING));
                self.execute(&format!("TRUNCATE {}", names.join(", ")))
            }
        }
    }

    /// SQLite's FTS5 tables.
    fn sqlite_fts(&self) -> Result<Vec<String>, StoreError> {
        let Db::Sqlite { conn, .. } = self else {
            return Ok(Vec::new());
        };
        let r = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%' ORDER BY rowid")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
        r.map_err(|e| self.sqlite_err(e))
    }

    fn write(&mut self, t: &Table, batch: &[Vec<Val>]) -> Result<(), StoreError> {
        match self {
            Db::Sqlite { conn, path } => {
                let fail = |e: rusqlite::Error| {
                    copy_err(format!("{}: writing {}: {e}", path.display(), t.name))
                };
                let marks = vec!["?"; t.columns.len()].join(", ");
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "INSERT INTO {} ({}) VALUES ({marks})",
                        quote(&t.name),
                        t.column_list()
                    ))
                    .map_err(fail)?;
                for row in batch {
                    stmt.execute(rusqlite::params_from_iter(row.iter()))
                        .map_err(fail)?;
                }
                Ok(())
            }
            Db::Postgres(pg) => {
                let target = pg.target().to_string();
                let fail = |e: postgres::Error| pg_error(&target, &e);
                let types: Vec<postgres::types::Type> = t
                    .columns
                    .iter()
                    .map(|(_, k)| match k {
                        Kind::Int => postgres::types::Type::INT8,
                        Kind::Text => postgres::types::Type::TEXT,
                        Kind::Bytes => postgres::types::Type::BYTEA,
                    })
                    .collect();
                let client = pg.client();
                let sink = client
                    .copy_in(&format!(
                        "COPY {} ({}) FROM STDIN (FORMAT binary)",
                        quote(&t.name),
                        t.column_list()
                    ))
                    .map_err(fail)?;
                let mut w = postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
                for row in batch {
                    let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = row
                        .iter()
                        .map(|v| v as &(dyn postgres::types::ToSql + Sync))
                        .collect();
                    w.write(&refs).map_err(fail)?;
                }
                w.finish().map_err(fail)?;
                if t.name == "archive" {
                    let (ids, docs) = archive_docs(t, batch)?;
                    client
                        .execute(
                            "INSERT INTO archive_fts (id, doc)
                             SELECT u.id, u.doc::tsvector FROM unnest($1::bigint[], $2::text[]) AS u(id, doc)",
                            &[&ids, &docs],
                        )
                        .map_err(fail)?;
                }
                Ok(())
            }
        }
    }

    /// After the rows are in (inside the write transaction): PostgreSQL's identity sequences
    /// continue past the copied ids and its full-text index (filled with the archive rows)
    /// covers every row; SQLite's emptied FTS5 index is refilled after commit
    /// ([`Db::reindex`]), so its watermark starts from 0.
    fn finish(&mut self) -> Result<(), StoreError> {
        match self {
            Db::Sqlite { .. } => {
                self.execute("UPDATE archive_index SET indexed_upto = 0 WHERE id = 1")
            }
            Db::Postgres(pg) => {
                let client = pg.client();
                let identities = client.query(
                    "SELECT c.relname::text, a.attname::text
                       FROM pg_attribute a
                       JOIN pg_class c ON c.oid = a.attrelid
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = current_schema() AND a.attidentity <> '' AND NOT a.attisdropped",
                    &[],
                );
                let identities = match identities {
                    Ok(rows) => rows,
                    Err(e) => return Err(pg.error(&e)),
                };
                let mut sql = String::new();
                for r in identities {
                    let (table, column): (String, String) = match (r.try_get(0), r.try_get(1)) {
                        (Ok(t), Ok(c)) => (t, c),
                        (Err(e), _) | (_, Err(e)) => return Err(pg.error(&e)),
                    };
                    let (qt, qc) = (quote(&table), quote(&column));
                    sql.push_str(&format!(
                        "SELECT setval(pg_get_serial_sequence('{qt}', '{column}'), \
                         COALESCE((SELECT max({qc}) FROM {qt}), 1), (SELECT max({qc}) FROM {qt}) IS NOT NULL);\n",
                        qt = qt.replace('\'', "''"),
                        column = column.replace('\'', "''"),
                    ));
                }
                sql.push_str(
                    "UPDATE archive_index SET indexed_upto = COALESCE((SELECT max(id) FROM archive), 0) WHERE id = 1;",
                );
                self.execute(&sql)
            }
        }
    }

    /// Refill SQLite's full-text index after the copy committed; returns the rows the index
    /// holds. (PostgreSQL's was filled inside the copy.)
    fn reindex(&mut self) -> Result<u64, StoreError> {
        match self {
            Db::Sqlite { path, .. } => {
                let mut store = Store::open(path)?;
                store.index_archive(usize::MAX)?;
                let n: i64 = store.conn().query_row(
                    "SELECT indexed_upto FROM archive_index WHERE id = 1",
                    [],
                    |r| r.get(0),
                )?;
                let indexed: i64 = store.conn().query_row(
                    "SELECT count(*) FROM archive WHERE id <= ?1",
                    [n],
                    |r| r.get(0),
                )?;
                Ok(u64::try_from(indexed).unwrap_or(0))
            }
            Db::Postgres(_) => {
                let n = self.count(PG_FTS)?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
        }
    }

    fn sample_ids(&mut self, t: &Table) -> Result<Vec<i64>, StoreError> {
        let sql = format!(
            "SELECT id FROM {} ORDER BY random() LIMIT {SAMPLE}",
            quote(&t.name)
        );
        match self {
            Db::Sqlite { conn, .. } => {
                let r = conn
                    .prepare(&sql)
                    .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
                r.map_err(|e| self.sqlite_err(e))
            }
            Db::Postgres(pg) => {
                let r = pg
                    .client()
                    .query(&sql, &[])
                    .and_then(|rows| rows.iter().map(|r| r.try_get(0)).collect());
                r.map_err(|e| self.pg_err(&e))
            }
        }
    }

    fn rows_by_id(&mut self, t: &Table, ids: &[i64]) -> Result<Vec<Vec<Val>>, StoreError> {
        match self {
            Db::Sqlite { conn, path } => {
                let fail = |e: rusqlite::Error| copy_err(format!("{}: {e}", path.display()));
                let marks = vec!["?"; ids.len()].join(", ");
                let mut stmt = conn
                    .prepare(&format!(
                        "SELECT {} FROM {} WHERE id IN ({marks}) ORDER BY id",
                        t.column_list(),
                        quote(&t.name)
                    ))
                    .map_err(fail)?;
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(ids.iter()))
                    .map_err(fail)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(fail)? {
                    out.push(sqlite_row(r, t)?);
                }
                Ok(out)
            }
            Db::Postgres(pg) => {
                let sql = format!(
                    "SELECT {} FROM {} WHERE id = ANY($1) ORDER BY id",
                    t.column_list(),
                    quote(&t.name)
                );
                let ids = ids.to_vec();
                let r = pg.client().query(&sql, &[&ids]).and_then(|rows| {
                    rows.iter()
                        .map(|r| pg_row(r, t))
                        .collect::<Result<Vec<_>, _>>()
                });
                r.map_err(|e| pg.error(&e))
            }
        }
    }
}

/// Row counts of a freshly migrated database: the rows migrations seed (the one-row state
/// tables), which an otherwise empty target may hold.
fn seed_counts(tables: &[Table]) -> Result<HashMap<String, i64>, StoreError> {
    let store = Store::open(Path::new(":memory:"))?;
    let mut out = HashMap::new();
    for t in tables {
        let n: i64 = store.conn().query_row(
            &format!("SELECT count(*) FROM {}", quote(&t.name)),
            [],
            |r| r.get(0),
        )?;
        out.insert(t.name.clone(), n);
    }
    Ok(out)
}

/// Copy everything in `from` to `to` (see the module docs). With `force` a non-empty target
/// is emptied first (in the same transaction); without it, it is refused.
pub fn copy(from: &mut Db, to: &mut Db, force: bool) -> Result<CopyReport, StoreError> {
    let tables = from.tables()?;
    let target_tables: HashMap<String, Table> = to
        .tables()?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    for t in &tables {
        let Some(other) = target_tables.get(&t.name) else {
            return Err(copy_err(format!(
                "{} has no table {} that {} has",
                to.describe(),
                t.name,
                from.describe()
            )));
        };
        let mine: HashSet<_> = t.columns.iter().collect();
        let theirs: HashSet<_> = other.columns.iter().collect();
        if mine != theirs {
            return Err(copy_err(format!(
                "table {} has other columns in {} than in {}",
                t.name,
                to.describe(),
                from.describe()
            )));
        }
    }
    let seeds = seed_counts(&tables)?;

    from.begin_read()?;
    if let Err(e) = to.begin_write() {
        from.rollback();
        return Err(e);
    }
    let result = copy_in_transaction(from, to, &tables, &seeds, force);
    from.rollback();
    let mut report = match result {
        Ok(r) if r.mismatches.is_empty() => r,
        Ok(r) => {
            to.rollback();
            return Ok(r);
        }
        Err(e) => {
            to.rollback();
            return Err(e);
        }
    };
    if let Err(e) = to.execute("COMMIT") {
        to.rollback();
        return Err(e);
    }
    report.indexed = to.reindex()?;
    Ok(report)
}

fn copy_in_transaction(
    from: &mut Db,
    to: &mut Db,
    tables: &[Table],
    seeds: &HashMap<String, i64>,
    force: bool,
) -> Result<CopyReport, StoreError> {
    let mut report = CopyReport::default();
    let mut held = Vec::new();
    for t in tables {
        let n = to.count(&t.name)?;
        if n > seeds.get(&t.name).copied().unwrap_or(0) {
            held.push(format!("{}: {n}", t.name));
        }
    }
    if !held.is_empty() {
        if !force {
            return Err(StoreError::NotEmpty(format!(
                "{} is not empty ({} rows); pass --force to replace its contents",
                to.describe(),
                held.join(", ")
            )));
        }
        report.replaced = true;
    }
    to.clear(tables)?;
    for t in tables {
        from.read(t, &mut |batch| to.write(t, &batch))?;
    }
    to.finish()?;

    for t in tables {
        let (source, target) = (from.count(&t.name)?, to.count(&t.name)?);
        if source != target {
            report.mismatches.push(format!(
                "{}: {source} rows in the source, {target} in the target",
                t.name
            ));
        }
        report.counts.push(TableCount {
            table: t.name.clone(),
            source,
            target,
        });
    }
    for t in tables.iter().filter(|t| t.has_id()) {
        let ids = from.sample_ids(t)?;
        if ids.is_empty() {
            continue;
        }
        let (a, b) = (from.rows_by_id(t, &ids)?, to.rows_by_id(t, &ids)?);
        report.sampled += a.len();
        if a.len() != b.len() {
            report.mismatches.push(format!(
                "{}: {} of {} sampled rows are missing in the target",
                t.name,
                a.len().saturating_sub(b.len()),
                a.len()
            ));
            continue;
        }
        for (ra, rb) in a.iter().zip(&b) {
            for (i, (col, _)) in t.columns.iter().enumerate() {
                let index_state = INDEX_STATE.contains(&(t.name.as_str(), col.as_str()));
                if !index_state && ra.get(i) != rb.get(i) {
                    let id = match ra.first() {
                        Some(Val::Int(id)) => id.to_string(),
                        _ => "?".into(),
                    };
                    report
                        .mismatches
                        .push(format!("{} row {id}: column {col} differs", t.name));
                }
            }
        }
    }
    Ok(report)
}

fn sqlite_row(r: &rusqlite::Row<'_>, t: &Table) -> Result<Vec<Val>, StoreError> {
    let mut out = Vec::with_capacity(t.columns.len());
    for (i, (col, kind)) in t.columns.iter().enumerate() {
        let v = r.get_ref(i)?;
        let bad = |what: &str| {
            let declared = match kind {
                Kind::Int => "an integer",
                Kind::Text => "text",
                Kind::Bytes => "bytes",
            };
            StoreError::Corrupt(format!(
                "{}.{col} holds {what} where the schema declares {declared}",
                t.name
            ))
        };
        out.push(match (v, kind) {
            (ValueRef::Null, _) => Val::Null,
            (ValueRef::Integer(n), Kind::Int) => Val::Int(n),
            (ValueRef::Text(s), Kind::Text) => {
                Val::Text(String::from_utf8(s.to_vec()).map_err(|_| bad("text that is not UTF-8"))?)
            }
            (ValueRef::Blob(b), Kind::Bytes) => Val::Bytes(b.to_vec()),
            (ValueRef::Integer(_), _) => return Err(bad("an integer")),
            (ValueRef::Real(_), _) => return Err(bad("a real number")),
            (ValueRef::Text(_), _) => return Err(bad("text")),
            (ValueRef::Blob(_), _) => return Err(bad("bytes")),
        });
    }
    Ok(out)
}

fn pg_row(r: &postgres::Row, t: &Table) -> Result<Vec<Val>, postgres::Error> {
    let mut out = Vec::with_capacity(t.columns.len());
    for (i, (_, kind)) in t.columns.iter().enumerate() {
        out.push(match kind {
            Kind::Int => r.try_get::<_, Option<i64>>(i)?.map_or(Val::Null, Val::Int),
            Kind::Text => r
                .try_get::<_, Option<String>>(i)?
                .map_or(Val::Null, Val::Text),
            Kind::Bytes => r
                .try_get::<_, Option<Vec<u8>>>(i)?
                .map_or(Val::Null, Val::Bytes),
        });
    }
    Ok(out)
}

fn sqlite_kind(table: &str, column: &str, decl: &str) -> Result<Kind, StoreError> {
    let d = decl.to_ascii_uppercase();
    if d.contains("INT") {
        Ok(Kind::Int)
    } else if d.contains("TEXT") || d.contains("CHAR") || d.contains("CLOB") {
        Ok(Kind::Text)
    } else if d.contains("BLOB") {
        Ok(Kind::Bytes)
    } else {
        Err(copy_err(format!(
            "{table}.{column}: column type {decl:?} cannot be copied"
        )))
    }
}

fn sqlite_tables(conn: &Connection) -> rusqlite::Result<Result<Vec<Table>, StoreError>> {
    let all: Vec<(String, String)> = conn
        .prepare("SELECT name, coalesce(sql, '') FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY rowid")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    // Virtual (FTS5) tables and their shadow tables are the index, rebuilt, not copied.
    let virtual_tables: Vec<&str> = all
        .iter()
        .filter(|(_, sql)| sql.to_ascii_uppercase().starts_with("CREATE VIRTUAL TABLE"))
        .map(|(n, _)| n.as_str())
        .collect();
    let mut out = Vec::new();
    for (name, _) in &all {
        if virtual_tables
            .iter()
            .any(|v| name == v || name.starts_with(&format!("{v}_")))
        {
            continue;
        }
        let mut columns = Vec::new();
        let mut key: Vec<(i64, String)> = Vec::new();
        let cols: Vec<(String, String, i64)> = conn
            .prepare("SELECT name, type, pk FROM pragma_table_info(?1) ORDER BY cid")?
            .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (col, decl, pk) in cols {
            match sqlite_kind(name, &col, &decl) {
                Ok(k) => columns.push((col.clone(), k)),
                Err(e) => return Ok(Err(e)),
            }
            if pk > 0 {
                key.push((pk, col));
            }
        }
        key.sort();
        let refs: Vec<String> = conn
            .prepare("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list(?1)")?
            .query_map([name], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        out.push(Table {
            name: name.clone(),
            columns,
            key: key.into_iter().map(|(_, c)| c).collect(),
            refs,
        });
    }
    Ok(Ok(out))
}

fn pg_tables(
    client: &mut postgres::Client,
) -> Result<Result<Vec<Table>, StoreError>, postgres::Error> {
    let names: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY c.oid",
            &[],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for name in names
        .into_iter()
        .filter(|n| n != PG_FTS && n != PG_PENDING && n != PG_VERSIONS)
    {
        let qualified = quote(&name);
        let mut columns = Vec::new();
        for r in client.query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&qualified],
        )? {
            let (col, ty): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            let kind = match ty.as_str() {
                "bigint" | "integer" | "smallint" => Kind::Int,
                "text" => Kind::Text,
                "bytea" => Kind::Bytes,
                other => {
                    return Ok(Err(copy_err(format!(
                        "{name}.{col}: column type {other} cannot be copied"
                    ))));
                }
            };
            columns.push((col, kind));
        }
        let key = client
            .query(
                "SELECT a.attname::text FROM pg_index i
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                  WHERE i.indrelid = $1::text::regclass AND i.indisprimary
                  ORDER BY array_position(i.indkey::int2[], a.attnum)",
                &[&qualified],
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let refs = client
            .query(
                "SELECT DISTINCT f.relname::text FROM pg_constraint k JOIN pg_class f ON f.oid = k.confrelid
                  WHERE k.conrelid = $1::text::regclass AND k.contype = 'f'",
                &[&qualified],
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        out.push(Table {
            name,
            columns,
            key,
            refs,
        });
    }
    Ok(Ok(out))
}

/// Order tables so each comes after the tables its foreign keys point to, keeping the schema's
/// own order otherwise (self-references and unknown tables are ignored).
fn dependency_order(mut tables: Vec<Table>) -> Vec<Table> {
    let names: HashSet<String> = tables.iter().map(|t| t.name.clone()).collect();
    let mut placed: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(tables.len());
    while !tables.is_empty() {
        let ready = tables.iter().position(|t| {
            t.refs
                .iter()
                .all(|r| r == &t.name || !names.contains(r) || placed.contains(r))
        });
        // A cycle (none in newswatch's schema): take the next table as it comes.
        let t = tables.remove(ready.unwrap_or(0));
        placed.insert(t.name.clone());
        out.push(t);
    }
    out
}

/// Full-text documents for archive rows: `(ids, tsvector literals)`.
fn archive_docs(t: &Table, batch: &[Vec<Val>]) -> Result<(Vec<i64>, Vec<String>), StoreError> {
    let col = |name: &str| {
        t.columns
            .iter()
            .position(|(c, _)| c == name)
            .ok_or_else(|| copy_err(format!("archive has no column {name}")))
    };
    let (id, title, summary, content) =
        (col("id")?, col("title")?, col("summary")?, col("content")?);
    let text = |row: &[Val], i: usize| match row.get(i) {
        Some(Val::Text(s)) => s.clone(),
        _ => String::new(),
    };
    let mut ids = Vec::with_capacity(batch.len());
    let mut docs = Vec::with_capacity(batch.len());
    for row in batch {
        let Some(Val::Int(n)) = row.get(id) else {
            return Err(copy_err("archive row without an id"));
        };
        ids.push(*n);
        docs.push(tsvector_literal(
            &text(row, title),
            &item_body(&text(row, summary), &text(row, content)),
        ));
    }
    Ok((ids, docs))
}

/// PostgreSQL's longest lexeme, in bytes.
pub(crate) const MAX_LEXEME: usize = 2_046;
/// PostgreSQL's highest word position.
const MAX_POSITION: usize = 16_383;
/// PostgreSQL's most positions kept per lexeme.
const MAX_POSITIONS: usize = 256;

/// The archive document of an entry as tsvector entries: each distinct folded token with its
/// positions (`position << 1 | 1` for the body), ascending, at most [`MAX_POSITIONS`], no
/// position twice. The title's tokens are at positions from 2 (weight A), the body's after a
/// gap (weight B), as `store::archive` indexes them in FTS5. Tokens are grouped by their term
/// hash (which the tokenizer computes for ASCII tokens in its one pass) in a map, so a
/// repeated token costs one lookup and is never folded again; the lexemes come out in order of
/// first appearance (PostgreSQL orders a tsvector's lexemes itself).
fn archive_terms<'a>(title: &'a str, body: &'a str) -> Vec<(std::borrow::Cow<'a, str>, Vec<u32>)> {
    let mut terms: Vec<(std::borrow::Cow<'a, str>, Vec<u32>)> = Vec::new();
    let mut by_hash: HashMap<u64, usize, std::hash::BuildHasherDefault<KeyHasher>> =
        HashMap::default();
    let mut pos = 0usize;
    for (text, in_body) in [(title, 0u32), (body, 1)] {
        pos += 1; // a gap between the fields: no phrase spans them
        let mut it = tokens(text);
        while let Some((t, hash)) = it.next_hashed() {
            pos += 1;
            // MAX_POSITION < 2^14: the shift cannot overflow.
            let at = ((pos.min(MAX_POSITION) as u32) << 1) | in_body;
            let same = |lexeme: &str| match hash {
                Some(_) => t.text.eq_ignore_ascii_case(lexeme),
                None => fold_cow(t.text) == lexeme,
            };
            let (key, folded) = match hash {
                Some(h) => (h, None),
                None => {
                    let f = fold_cow(t.text);
                    (f.bytes().fold(ASCII_HASH_SEED, ascii_hash_step), Some(f))
                }
            };
            let known = match by_hash.get(&key) {
                Some(&i) if same(&terms[i].0) => Some(i),
                // Two lexemes with one hash (not seen in practice): find it the slow way.
                Some(_) => terms.iter().position(|(l, _)| same(l)),
                None => None,
            };
            match known {
                Some(i) => {
                    let positions = &mut terms[i].1;
                    // Positions capped at MAX_POSITION repeat: keep one.
                    if positions.len() < MAX_POSITIONS
                        && positions.last().is_none_or(|&p| p >> 1 < at >> 1)
                    {
                        positions.push(at);
                    }
                }
                None => {
                    let lexeme = folded.unwrap_or_else(|| fold_cow(t.text));
                    if lexeme.is_empty() || lexeme.len() > MAX_LEXEME {
                        continue;
                    }
                    by_hash.entry(key).or_insert(terms.len());
                    terms.push((lexeme, vec![at]));
                }
            }
        }
    }
    terms
}

/// A hasher for keys that are hashes already (term hashes): the key itself.
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = bytes.iter().fold(self.0, |h, &b| ascii_hash_step(h, b));
    }

    fn write_u64(&mut self, n: u64) {
        // FNV's low bits are its weakest: fold the high half in.
        self.0 = n ^ (n >> 32);
    }
}

/// A `tsvector` literal holding the matcher's folded tokens ([`archive_terms`]). Written as a
/// literal, not through `to_tsvector`, so no text-search parser re-splits them (`migrate`; the
/// indexer, `store::postgres::index`, sends [`tsvector_binary`]).
pub fn tsvector_literal(title: &str, body: &str) -> String {
    let terms = archive_terms(title, body);
    let mut out = String::with_capacity(terms.iter().map(|(l, p)| l.len() + 4 + 6 * p.len()).sum());
    for (lexeme, at) in &terms {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push('\'');
        for c in lexeme.chars() {
            match c {
                '\'' => out.push_str("''"),
                '\\' => out.push_str("\\\\"),
                c => out.push(c),
            }
        }
        out.push_str("':");
        for (k, at) in at.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            push_number(&mut out, at >> 1);
            out.push(if at & 1 == 1 { 'B' } else { 'A' });
        }
    }
    out
}

/// The same document in PostgreSQL's binary `tsvector` format (what `tsvectorrecv` reads: the
/// lexeme count, then per lexeme its UTF-8 text and a NUL, the position count and each
/// position with its weight in the top two bits, A = 3, B = 2). A third of the literal's size
/// for the archive, and no text for the server to parse.
pub fn tsvector_binary(title: &str, body: &str) -> Vec<u8> {
    let terms = archive_terms(title, body);
    let mut out = Vec::with_capacity(
        4 + terms
            .iter()
            .map(|(l, p)| l.len() + 3 + 2 * p.len())
            .sum::<usize>(),
    );
    out.extend_from_slice(&(terms.len() as u32).to_be_bytes());
    for (lexeme, at) in &terms {
        out.extend_from_slice(lexeme.as_bytes());
        out.push(0);
        out.extend_from_slice(&(at.len() as u16).to_be_bytes());
        for &at in at {
            let weight: u16 = if at & 1 == 1 { 2 } else { 3 };
            out.extend_from_slice(&((weight << 14) | (at >> 1) as u16).to_be_bytes());
        }
    }
    out
}

/// `n` in decimal, without the formatting machinery.
fn push_number(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsvector_literal_holds_folded_tokens_with_field_weights() {
        let v = tsvector_literal("Ransomware hits NHS", "The NHS said");
        assert!(v.contains("'nhs':4A,7B"), "{v}");
        assert!(v.contains("'ransomware':2A"), "{v}");
    }

    /// The first implementation (a map of lexemes to formatted positions), kept to check the
    /// faster one against.
    fn reference_literal(title: &str, body: &str) -> String {
        let mut positions: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        let mut pos = 0usize;
        for (text, weight) in [(title, 'A'), (body, 'B')] {
            pos += 1;
            for t in tokens(text) {
                pos += 1;
                let lexeme = fold_cow(t.text);
                if lexeme.is_empty() || lexeme.len() > MAX_LEXEME {
                    continue;
                }
                let at = positions.entry(lexeme.into_owned()).or_default();
                if at.len() < MAX_POSITIONS {
                    at.push(format!("{}{weight}", pos.min(MAX_POSITION)));
                }
            }
        }
        let mut out = String::new();
        for (lexeme, at) in positions {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push('\'');
            for c in lexeme.chars() {
                match c {
                    '\'' => out.push_str("''"),
                    '\\' => out.push_str("\\\\"),
                    c => out.push(c),
                }
            }
            out.push_str("':");
            out.push_str(&at.join(","));
        }
        out
    }

    #[test]
    fn tsvector_literal_is_the_reference_literal() {
        let long = "nca ".repeat(300) + &"x".repeat(3000) + " GCHQ";
        let many: String = (0..17_000).map(|i| format!("w{} ", i % 50)).collect();
        let cases = [
            ("", ""),
            ("O'Brien's \\ back\\slash", "l'NCA d'Angleterre ''quoted''"),
            (
                "GCHQ and NCA join forces",
                "The National Crime Agency (NCA) and GCHQ's JOC, Warrington.",
            ),
            ("Überwachung – ÇA VA", "ﬁnance ＮＣＡ 東京 ελληνικά"),
            ("Café CAFE", "cafe Café ÇA ca ça NCA nca Nca"),
            ("title", long.as_str()),
            ("positions", many.as_str()),
        ];
        for (title, body) in cases {
            let want = entries(&reference_literal(title, body));
            assert_eq!(entries(&tsvector_literal(title, body)), want, "{title:?}");
            assert_eq!(
                decode_binary(&tsvector_binary(title, body)),
                want,
                "{title:?}"
            );
        }
        // Positions past PostgreSQL's highest are capped, and then kept once (the binary
        // format refuses a position that does not ascend).
        let past: String = (0..16_400).map(|_| "x ").collect::<String>() + "nca nca nca";
        let lit = tsvector_literal("", &past);
        assert!(lit.contains("'nca':16383B"), "{lit}");
        assert!(!lit.contains("16383B,16383B"), "{lit}");
    }

    /// A literal's entries, sorted (PostgreSQL orders lexemes itself), repeated positions once.
    fn entries(literal: &str) -> Vec<String> {
        let mut out: Vec<String> = literal
            .split(' ')
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (lexeme, at) = e.rsplit_once("':").unwrap();
                let mut at: Vec<&str> = at.split(',').collect();
                at.dedup();
                format!("{lexeme}':{}", at.join(","))
            })
            .collect();
        out.sort();
        out
    }

    /// [`tsvector_binary`] read back as [`entries`] of a literal.
    fn decode_binary(b: &[u8]) -> Vec<String> {
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let mut i = 4;
        let mut out = Vec::new();
        for _ in 0..n {
            let end = i + b[i..].iter().position(|&c| c == 0).unwrap();
            let lexeme = std::str::from_utf8(&b[i..end]).unwrap().replace('\'', "''");
            i = end + 1;
            let npos = usize::from(u16_at(i));
            i += 2;
            let mut at = Vec::new();
            for _ in 0..npos {
                let p = u16_at(i);
                i += 2;
                let w = if p >> 14 == 3 { 'A' } else { 'B' };
                at.push(format!("{}{w}", p & 0x3fff));
            }
            out.push(format!("'{lexeme}':{}", at.join(",")));
        }
        assert_eq!(i, b.len(), "nothing after the last lexeme");
        out.sort();
        out
    }

    #[test]
    fn sqlite_schema_is_copied_in_foreign_key_order_without_the_fts_index() {
        let store = Store::open(Path::new(":memory:")).unwrap();
        let tables = dependency_order(sqlite_tables(store.conn()).unwrap().unwrap());
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        assert!(
            !names.iter().any(|n| n.starts_with("archive_fts")),
            "{names:?}"
        );
        let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(at("stories") < at("items") && at("items") < at("item_rules"));
        assert!(at("feeds") < at("sightings") && at("alert_messages") < at("alert_outbox"));
        let items = &tables[at("items")];
        assert_eq!(items.key, ["id"]);
        assert!(items.columns.contains(&("story_key".into(), Kind::Bytes)));
    }
}
