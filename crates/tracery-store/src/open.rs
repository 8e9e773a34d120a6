//! Opening a store from a URL: connect, create what is missing, migrate.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Connection;

use crate::{migrations, Backend, Store, StoreError};

/// The database behind a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// How long a query waits for a locked SQLite file or a free pooled connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Opens the store at `url` and migrates its schema to this version.
    ///
    /// - `sqlite:///path/to/file.db`: the file and its directory are created if missing.
    /// - `postgres://user[:password]@host[:port]/database[?options]`: the database must
    ///   exist. `?host=/var/run/postgresql` connects through a unix socket;
    ///   `?options=-c%20search_path%3Dname` keeps the tables in schema `name`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let shown = redact(url);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite(open_sqlite(url, &shown).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(open_postgres(url, &shown).await?)
        } else {
            return Err(StoreError::UnsupportedUrl { url: shown });
        };
        let store = Store {
            backend,
            url: shown,
        };
        tracing::debug!(url = %store.url, "snapshot store open");
        Ok(store)
    }
}

async fn open_sqlite(url: &str, shown: &str) -> Result<sqlx::SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|source| StoreError::InvalidUrl {
            url: shown.to_owned(),
            source,
        })?
        .create_if_missing(true)
        // Readers (snapshot list, watch) never block the writer.
        .journal_mode(SqliteJournalMode::Wal)
        // A stored snapshot survives a power loss too, not only a crash.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT);
    let path = options.get_filename().to_owned();
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if !in_memory {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                dir: dir.to_owned(),
                source,
            })?;
        }
    }
    let mut pool = SqlitePoolOptions::new().acquire_timeout(BUSY_TIMEOUT);
    if in_memory {
        // The database lives as long as one connection to it.
        pool = pool
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
    }
    let pool = pool
        .connect_with(options)
        .await
        .map_err(|source| StoreError::OpenSqlite {
            path: path.clone(),
            source,
        })?;
    migrate(&migrations::migrator(migrations::SQLITE), &pool, shown).await?;
    Ok(pool)
}

async fn open_postgres(url: &str, shown: &str) -> Result<sqlx::PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url).map_err(|source| StoreError::InvalidUrl {
        url: shown.to_owned(),
        source,
    })?;
    let unreachable = |source| StoreError::ConnectPostgres {
        url: shown.to_owned(),
        source,
    };
    // One plain connection first: the pool retries a refused connection until its
    // acquire timeout, and a user with a wrong URL should hear about it at once.
    PgConnection::connect_with(&options)
        .await
        .map_err(unreachable)?
        .close()
        .await
        .map_err(unreachable)?;
    let pool = PgPoolOptions::new()
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(unreachable)?;
    migrate(&migrations::migrator(migrations::POSTGRES), &pool, shown).await?;
    Ok(pool)
}

async fn migrate<'a, A>(migrator: &Migrator, pool: A, shown: &str) -> Result<(), StoreError>
where
    A: sqlx::Acquire<'a>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    migrator.run(pool).await.map_err(|source| match source {
        MigrateError::VersionMissing(version) => StoreError::NewerSchema {
            url: shown.to_owned(),
            version,
        },
        source => StoreError::Migrate {
            url: shown.to_owned(),
            source,
        },
    })
}

/// `url` with its password masked (in the user info or a `password=` parameter), so it
/// can be shown and logged.
pub(crate) fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut shown = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((user_info, host)) => match user_info.split_once(':') {
                    Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
                    None => base.to_owned(),
                },
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _value)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_masks_only_the_password() {
        assert_eq!(
            redact("postgres://tracery:s3cret@db:5432/tracery?sslmode=require"),
            "postgres://tracery:***@db:5432/tracery?sslmode=require"
        );
        assert_eq!(
            redact("postgres://root@localhost/t?host=/var/run/postgresql"),
            "postgres://root@localhost/t?host=/var/run/postgresql"
        );
        assert_eq!(
            redact("sqlite:///var/lib/tracery/store.db"),
            "sqlite:///var/lib/tracery/store.db"
        );
        assert_eq!(
            redact("postgres://db/tracery?user=t&password=s3cret&sslmode=require"),
            "postgres://db/tracery?user=t&password=***&sslmode=require"
        );
    }
}
