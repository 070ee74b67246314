//! A PostgreSQL database of a test's own on the server `NEWSWATCH_PG_URL` names.

use newswatch::store::postgres::PgDb;

/// A database of its own on the test server, dropped when the test ends.
pub struct TestDb {
    admin: String,
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// `None` (after printing SKIPPED) when no server is configured.
    pub fn create(tag: &str) -> Option<TestDb> {
        let Ok(base) = std::env::var("NEWSWATCH_PG_URL") else {
            eprintln!("SKIPPED: NEWSWATCH_PG_URL unset");
            return None;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("nw_test_{tag}_{}_{nanos}_{n}", std::process::id());
        let mut url = url::Url::parse(&base).expect("NEWSWATCH_PG_URL is a URL");
        url.set_path(&format!("/{name}"));
        let mut admin = PgDb::connect(&base, None).expect("connect to NEWSWATCH_PG_URL");
        admin
            .client()
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("create test database");
        Some(TestDb {
            admin: base,
            name,
            url: url.to_string(),
        })
    }

    pub fn connect(&self) -> PgDb {
        PgDb::connect(&self.url, None).expect("connect to test database")
    }

    /// `count(*)` of `rows`: a table, optionally with a WHERE clause.
    pub fn count(&self, rows: &str) -> i64 {
        self.connect()
            .client()
            .query_one(&format!("SELECT count(*) FROM {rows}"), &[])
            .expect("count")
            .get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgDb::connect(&self.admin, None) {
            let _ = admin.client().batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ));
        }
    }
}
