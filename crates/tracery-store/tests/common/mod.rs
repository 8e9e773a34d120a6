//! A database of its own per test, on either backend (see `store.rs`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

use sqlx::Connection;
use tracery_model::error::chain;
use tracery_store::Store;

const DEFAULT_PG_URL: &str = "postgres://root@localhost/tracery_test?host=/var/run/postgresql";

/// A database of its own for one test; `url()` opens it as often as a test likes.
pub enum Fixture {
    Sqlite { dir: tempfile::TempDir },
    Postgres { base: String, schema: String },
}

impl Fixture {
    pub fn sqlite() -> Fixture {
        Fixture::Sqlite {
            dir: tempfile::tempdir().expect("cannot create a temporary directory"),
        }
    }

    pub async fn postgres() -> Fixture {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base = std::env::var("TRACERY_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!(
            "store_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach PostgreSQL at {base}: {e}\n\
                 run the tests with `cargo xtask test`, which starts PostgreSQL and creates \
                 the test database, or point TRACERY_TEST_PG_URL at one"
                )
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .expect("cannot create the test schema");
        conn.close().await.ok();
        Fixture::Postgres { base, schema }
    }

    pub fn url(&self) -> String {
        match self {
            Fixture::Sqlite { dir } => {
                format!("sqlite://{}", dir.path().join("data/store.db").display())
            }
            Fixture::Postgres { base, schema } => {
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}options[search_path]={schema}")
            }
        }
    }

    pub async fn open(&self) -> Store {
        let url = self.url();
        Store::open(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {}", chain(&e)))
    }

    /// Drops the PostgreSQL schema; a failed test leaves it for inspection.
    pub async fn cleanup(self) {
        if let Fixture::Postgres { base, schema } = self {
            let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}
