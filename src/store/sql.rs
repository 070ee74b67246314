//! One way to run SQL on either database, for the code that reads and reviews stored matches
//! (`query`, `show`, `mark`, `stats`, `story`, the web and its API): a [`Db`] runs a
//! statement with [`Val`] arguments and returns [`Row`]s of [`Val`]s, on SQLite
//! ([`Store`](super::Store)) or PostgreSQL ([`PgDb`](super::postgres::PgDb)).
//!
//! Both schemas hold the same values (migrations/postgres/0001 says how), so one statement
//! serves both when it is written in the SQL they share: `?N` placeholders (rewritten to
//! `$N` for PostgreSQL), no SQLite-only functions. Where the dialects differ (JSON
//! aggregates, date arithmetic) the statement takes its fragment from [`Dialect`].
//!
//! The poll path does not use this layer: it has its own prepared statements per backend
//! ([`super::backend::PollStore`]), as the hot path.

use std::borrow::Cow;

use super::{Result, StoreError};

/// Which SQL a [`Db`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `(SELECT <json array of col> FROM (<subquery>))` as JSON text: the values of column
    /// `col` of `subquery`, ordered by `order`, `[]` when there are none.
    pub fn json_list(self, col: &str, subquery: &str, order: &str) -> String {
        match self {
            Dialect::Sqlite => {
                format!("(SELECT json_group_array({col}) FROM ({subquery} ORDER BY {order}))")
            }
            Dialect::Postgres => format!(
                "(SELECT COALESCE(json_agg({col} ORDER BY {order}), '[]')::text FROM ({subquery}) AS sub)"
            ),
        }
    }

    /// The distinct terms of item `item`'s rules (`item_rules.terms` holds JSON lists), as a
    /// JSON array text (SQLite: NULL when the item has no rules).
    pub fn item_terms(self, item: &str) -> String {
        match self {
            Dialect::Sqlite => format!(
                "(SELECT json_group_array(DISTINCT t.value) FROM item_rules r, json_each(r.terms) t WHERE r.item_id = {item})"
            ),
            // In SQLite's order: by rule, each rule's terms in their order, each term where
            // it first appears.
            Dialect::Postgres => format!(
                "(SELECT COALESCE(json_agg(value ORDER BY rule, ord), '[]')::text FROM (
                   SELECT DISTINCT ON (t.value) t.value, r.rule, t.ord FROM item_rules r,
                     json_array_elements_text(r.terms::json) WITH ORDINALITY AS t(value, ord)
                   WHERE r.item_id = {item} ORDER BY t.value, r.rule, t.ord) AS sub)"
            ),
        }
    }

    /// RFC 3339 text `t` plus one day, in [`super::ts`]'s form (NULL when `t` is unreadable).
    pub fn plus_day(self, t: &str) -> String {
        match self {
            Dialect::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%fZ', {t}, '+1 day')"),
            // migrations/postgres/0007: IMMUTABLE, so that the index on it can be used.
            Dialect::Postgres => format!("newswatch_plus_day({t})"),
        }
    }

    /// The values of a JSON array of strings given as text (a parameter `p`), as a subquery
    /// for `IN (…)`.
    pub fn json_values(self, p: &str) -> String {
        match self {
            Dialect::Sqlite => format!("SELECT value FROM json_each({p})"),
            Dialect::Postgres => {
                format!("SELECT json_array_elements_text(CAST({p} AS TEXT)::json)")
            }
        }
    }

    /// RFC 3339 text `t` minus `secs` seconds (an integer parameter or expression), in
    /// [`super::ts`]'s form.
    pub fn minus_seconds(self, t: &str, secs: &str) -> String {
        match self {
            Dialect::Sqlite => format!(
                "strftime('%Y-%m-%dT%H:%M:%fZ', {t}, '-' || CAST({secs} AS TEXT) || ' seconds')"
            ),
            Dialect::Postgres => format!(
                "to_char(({t}::timestamptz AT TIME ZONE 'UTC') - CAST({secs} AS BIGINT) * interval '1 second',
                         'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
            ),
        }
    }

    /// The smaller of two values (SQLite's two-argument `min`, PostgreSQL's `LEAST`).
    pub fn least(self, a: &str, b: &str) -> String {
        match self {
            Dialect::Sqlite => format!("min({a}, {b})"),
            Dialect::Postgres => format!("LEAST({a}, {b})"),
        }
    }

    /// Start a write transaction: SQLite takes the write lock at once (`IMMEDIATE`), so a
    /// read-then-write cannot fail half-way on a busy database.
    fn begin(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }
}

/// A value in or out of a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_string())
    }
}

impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}

impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}

impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

/// A type a [`Val`] can be read as.
pub trait FromVal: Sized {
    fn from_val(v: &Val) -> Option<Self>;
}

impl FromVal for i64 {
    fn from_val(v: &Val) -> Option<i64> {
        match v {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl FromVal for bool {
    fn from_val(v: &Val) -> Option<bool> {
        match v {
            Val::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}

impl FromVal for f64 {
    fn from_val(v: &Val) -> Option<f64> {
        match v {
            Val::Real(f) => Some(*f),
            Val::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl FromVal for String {
    fn from_val(v: &Val) -> Option<String> {
        match v {
            Val::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromVal for Vec<u8> {
    fn from_val(v: &Val) -> Option<Vec<u8>> {
        match v {
            Val::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}

impl<T: FromVal> FromVal for Option<T> {
    fn from_val(v: &Val) -> Option<Option<T>> {
        match v {
            Val::Null => Some(None),
            v => T::from_val(v).map(Some),
        }
    }
}

macro_rules! from_val_int {
    ($($t:ty),*) => {$(
        impl FromVal for $t {
            fn from_val(v: &Val) -> Option<$t> {
                match v {
                    Val::Int(i) => <$t>::try_from(*i).ok(),
                    _ => None,
                }
            }
        }
    )*};
}
from_val_int!(u16, u32, u64, usize);

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Val>);

impl Row {
    /// Column `i` as a `T`; a missing column or a value of another type is
    /// [`StoreError::Corrupt`] (the schema says what each column holds).
    pub fn get<T: FromVal>(&self, i: usize) -> Result<T> {
        let v = self.0.get(i).unwrap_or(&Val::Null);
        T::from_val(v).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "column {i} holds {v:?}, not a {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// A connection that runs shared SQL ([`Dialect`] says which).
pub trait Db {
    fn dialect(&self) -> Dialect;
    /// Run a query; every row.
    fn rows(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>>;
    /// Run a statement; the number of rows it changed.
    fn exec(&mut self, sql: &str, args: &[Val]) -> Result<u64>;
    /// Run statements without arguments (`BEGIN`, `COMMIT`, …).
    fn batch(&mut self, sql: &str) -> Result<()>;

    /// The first row, if any.
    fn row(&mut self, sql: &str, args: &[Val]) -> Result<Option<Row>> {
        Ok(self.rows(sql, args)?.into_iter().next())
    }

    /// The first column of the first row; an empty result is [`StoreError::Corrupt`] (for
    /// aggregates, which always give a row).
    fn value<T: FromVal>(&mut self, sql: &str, args: &[Val]) -> Result<T>
    where
        Self: Sized,
    {
        match self.row(sql, args)? {
            Some(r) => r.get(0),
            None => Err(StoreError::Corrupt(format!("no row from {sql:?}"))),
        }
    }
}

/// [`Db::value`] for `dyn Db`.
pub fn value<T: FromVal>(db: &mut dyn Db, sql: &str, args: &[Val]) -> Result<T> {
    match db.row(sql, args)? {
        Some(r) => r.get(0),
        None => Err(StoreError::Corrupt(format!("no row from {sql:?}"))),
    }
}

/// Run `f` in one write transaction: committed when it returns `Ok`, rolled back otherwise.
pub fn transaction<T>(db: &mut dyn Db, f: impl FnOnce(&mut dyn Db) -> Result<T>) -> Result<T> {
    db.batch(db.dialect().begin())?;
    match f(db) {
        Ok(v) => {
            db.batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            // The error that ended the transaction is the one to report.
            let _ = db.batch("ROLLBACK");
            Err(e)
        }
    }
}

/// `?N` placeholders → `$N`, outside quoted strings and identifiers.
pub fn pg_placeholders(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                out.push(c);
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    out.push(c);
                }
                '?' if chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
                c => out.push(c),
            },
        }
    }
    Cow::Owned(out)
}

/// A connection to the SQLite store, borrowed.
pub struct Sqlite<'a>(pub &'a rusqlite::Connection);

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Val::Null => ValueRef::Null,
            Val::Int(i) => ValueRef::Integer(*i),
            Val::Real(f) => ValueRef::Real(*f),
            Val::Text(s) => ValueRef::Text(s.as_bytes()),
            Val::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl Db for Sqlite<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn rows(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                use rusqlite::types::ValueRef;
                vals.push(match r.get_ref(i)? {
                    ValueRef::Null => Val::Null,
                    ValueRef::Integer(i) => Val::Int(i),
                    ValueRef::Real(f) => Val::Real(f),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Val::Blob(b.to_vec()),
                });
            }
            out.push(Row(vals));
        }
        Ok(out)
    }

    fn exec(&mut self, sql: &str, args: &[Val]) -> Result<u64> {
        let n = self
            .0
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(args))?;
        Ok(n as u64)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.0.execute_batch(sql)?;
        Ok(())
    }
}

impl Db for super::Store {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn rows(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>> {
        Sqlite(self.conn()).rows(sql, args)
    }

    fn exec(&mut self, sql: &str, args: &[Val]) -> Result<u64> {
        Sqlite(self.conn()).exec(sql, args)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Sqlite(self.conn()).batch(sql)
    }
}

/// A connection to whichever database `[storage]` names, for the commands and the web.
#[derive(Debug)]
pub enum AnyDb {
    Sqlite(super::Store),
    Postgres(super::postgres::PgDb),
}

impl AnyDb {
    /// Connect to PostgreSQL database `url` and bring its schema up to date.
    pub fn postgres(url: &str, password: Option<&str>) -> Result<AnyDb> {
        let mut db = super::postgres::PgDb::connect(url, password)?;
        db.migrate()?;
        Ok(AnyDb::Postgres(db))
    }

    /// The SQLite store, if this is one (for what PostgreSQL does not do yet).
    pub fn sqlite(&self) -> Option<&super::Store> {
        match self {
            AnyDb::Sqlite(s) => Some(s),
            AnyDb::Postgres(_) => None,
        }
    }

    fn inner(&mut self) -> &mut dyn Db {
        match self {
            AnyDb::Sqlite(s) => s,
            AnyDb::Postgres(p) => p,
        }
    }
}

impl Db for AnyDb {
    fn dialect(&self) -> Dialect {
        match self {
            AnyDb::Sqlite(_) => Dialect::Sqlite,
            AnyDb::Postgres(_) => Dialect::Postgres,
        }
    }

    fn rows(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>> {
        self.inner().rows(sql, args)
    }

    fn exec(&mut self, sql: &str, args: &[Val]) -> Result<u64> {
        self.inner().exec(sql, args)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.inner().batch(sql)
    }
}

pub use pg::PgTx;

mod pg {
    use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

    use super::*;
    use crate::store::postgres::PgDb;

    impl ToSql for Val {
        fn to_sql(
            &self,
            ty: &Type,
            out: &mut bytes::BytesMut,
        ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
            match self {
                Val::Null => Ok(IsNull::Yes),
                Val::Int(i) => match *ty {
                    Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                    Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                    Type::BOOL => (*i != 0).to_sql(ty, out),
                    Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                    _ => i.to_sql(ty, out),
                },
                Val::Real(f) => f.to_sql(ty, out),
                Val::Text(s) => s.as_str().to_sql(ty, out),
                Val::Blob(b) => b.as_slice().to_sql(ty, out),
            }
        }

        fn accepts(_: &Type) -> bool {
            // The value's own type decides (checked by the encoders above, which fail on a
            // mismatch instead of writing wrong bytes).
            true
        }

        to_sql_checked!();
    }

    /// A PostgreSQL row as [`Val`]s, by column type.
    fn row(r: &postgres::Row) -> std::result::Result<Row, postgres::Error> {
        let mut vals = Vec::with_capacity(r.len());
        for (i, c) in r.columns().iter().enumerate() {
            let v = match *c.type_() {
                Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Val::Int),
                Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(|v| Val::Int(v.into())),
                Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(|v| Val::Int(v.into())),
                Type::BOOL => r
                    .try_get::<_, Option<bool>>(i)?
                    .map(|v| Val::Int(i64::from(v))),
                Type::FLOAT8 => r.try_get::<_, Option<f64>>(i)?.map(Val::Real),
                Type::FLOAT4 => r.try_get::<_, Option<f32>>(i)?.map(|v| Val::Real(v.into())),
                Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Val::Blob),
                // `SELECT pg_advisory_xact_lock(…)` and other functions returning nothing.
                Type::VOID => None,
                _ => r.try_get::<_, Option<String>>(i)?.map(Val::Text),
            };
            vals.push(v.unwrap_or(Val::Null));
        }
        Ok(Row(vals))
    }

    fn params(args: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
        args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
    }

    /// An open PostgreSQL transaction as a [`Db`]: its statements run inside it (`batch` must
    /// not begin or end it; the owner commits).
    pub struct PgTx<'a, 'b> {
        pub tx: &'a mut postgres::Transaction<'b>,
        /// `user@host:port/dbname`, for errors.
        pub target: &'a str,
    }

    impl PgTx<'_, '_> {
        fn error(&self, e: &postgres::Error) -> StoreError {
            StoreError::Postgres {
                target: self.target.to_string(),
                reason: crate::store::postgres::one_line(e),
            }
        }
    }

    /// A statement's rows on a PostgreSQL client or transaction (`?N` placeholders).
    fn query_rows(
        c: &mut impl postgres::GenericClient,
        sql: &str,
        args: &[Val],
    ) -> std::result::Result<Vec<Row>, postgres::Error> {
        c.query(pg_placeholders(sql).as_ref(), &params(args))?
            .iter()
            .map(row)
            .collect()
    }

    /// A statement's changed-row count on a PostgreSQL client or transaction.
    fn execute(
        c: &mut impl postgres::GenericClient,
        sql: &str,
        args: &[Val],
    ) -> std::result::Result<u64, postgres::Error> {
        c.execute(pg_placeholders(sql).as_ref(), &params(args))
    }

    impl Db for PgTx<'_, '_> {
        fn dialect(&self) -> Dialect {
            Dialect::Postgres
        }

        fn rows(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>> {
            query_rows(self.tx, sql, args).map_err(|e| self.error(&e))
        }

        fn exec(&mut self, sql: &str, args: &[Val]) -> Result<u64> {
            execute(self.tx, sql, args).map_err(|e| self.error(&e))
        }

        fn batch(&mut self, sql: &str) -> Result<()> {
            self.tx.batch_execute(sql).map_err(|e| self.error(&e))
        }
    }

    impl Db for PgDb {
        fn dialect(&self) -> Dialect {
            Dialect::Postgres
        }

        fn rows(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>> {
            query_rows(self.client(), sql, args).map_err(|e| self.error(&e))
        }

        fn exec(&mut self, sql: &str, args: &[Val]) -> Result<u64> {
            execute(self.client(), sql, args).map_err(|e| self.error(&e))
        }

        fn batch(&mut self, sql: &str) -> Result<()> {
            self.client().batch_execute(sql).map_err(|e| self.error(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_quotes_only() {
        assert_eq!(
            pg_placeholders("SELECT ?1, '?2', \"a?3\" WHERE x = ?12 AND y LIKE 'a?'"),
            "SELECT $1, '?2', \"a?3\" WHERE x = $12 AND y LIKE 'a?'"
        );
        assert!(matches!(pg_placeholders("SELECT 1"), Cow::Borrowed(_)));
    }

    #[test]
    fn rows_read_typed_values_and_reject_wrong_types() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut db = Sqlite(&conn);
        let rows = db
            .rows(
                "SELECT ?1, ?2, NULL, x'00ff', 1.5",
                &[Val::Int(7), Val::from("a")],
            )
            .unwrap();
        let r = &rows[0];
        assert_eq!(r.get::<i64>(0).unwrap(), 7);
        assert_eq!(r.get::<String>(1).unwrap(), "a");
        assert_eq!(r.get::<Option<String>>(2).unwrap(), None);
        assert_eq!(r.get::<Vec<u8>>(3).unwrap(), vec![0, 255]);
        assert_eq!(r.get::<f64>(4).unwrap(), 1.5);
        assert!(matches!(r.get::<i64>(1), Err(StoreError::Corrupt(_))));
        assert!(matches!(r.get::<String>(9), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_failed_transaction_is_rolled_back() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut db = Sqlite(&conn);
        db.batch("CREATE TABLE t (x INTEGER)").unwrap();
        let r: Result<()> = transaction(&mut db, |db| {
            db.exec("INSERT INTO t VALUES (1)", &[])?;
            Err(StoreError::NotFound("stop".into()))
        });
        assert!(r.is_err());
        assert_eq!(
            value::<i64>(&mut db, "SELECT count(*) FROM t", &[]).unwrap(),
            0
        );
        transaction(&mut db, |db| {
            db.exec("INSERT INTO t VALUES (1)", &[]).map(drop)
        })
        .unwrap();
        assert_eq!(
            value::<i64>(&mut db, "SELECT count(*) FROM t", &[]).unwrap(),
            1
        );
    }
}
