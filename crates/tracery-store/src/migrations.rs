//! The schema migrations, one directory per backend, embedded in the binary.
//!
//! Listed by hand rather than with `sqlx::migrate!`: that macro needs sqlx's `macros`
//! feature, which builds both database drivers a second time for the proc-macro (a second
//! copy of SQLite's C source). The test below keeps this list and the directories equal.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::SqlSafeStr;

/// One migration file: `migrations/<backend>/<version>_<description>.sql`.
pub(crate) struct Embedded {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

pub(crate) const SQLITE: &[Embedded] = &[
    Embedded {
        version: 1,
        description: "initial",
        sql: include_str!("../migrations/sqlite/0001_initial.sql"),
    },
    Embedded {
        version: 2,
        description: "audit",
        sql: include_str!("../migrations/sqlite/0002_audit.sql"),
    },
    Embedded {
        version: 3,
        description: "messages",
        sql: include_str!("../migrations/sqlite/0003_messages.sql"),
    },
];

pub(crate) const POSTGRES: &[Embedded] = &[
    Embedded {
        version: 1,
        description: "initial",
        sql: include_str!("../migrations/postgres/0001_initial.sql"),
    },
    Embedded {
        version: 2,
        description: "audit",
        sql: include_str!("../migrations/postgres/0002_audit.sql"),
    },
    Embedded {
        version: 3,
        description: "messages",
        sql: include_str!("../migrations/postgres/0003_messages.sql"),
    },
];

/// A migrator that applies `list` in version order, each in its own transaction.
pub(crate) fn migrator(list: &'static [Embedded]) -> Migrator {
    let migrations = list
        .iter()
        .map(|m| {
            Migration::new(
                m.version,
                Cow::Borrowed(m.description),
                MigrationType::Simple,
                m.sql.into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// Every file in `migrations/<dir>` is embedded with the same version, name and text.
    fn assert_embedded(dir: &str, list: &[Embedded]) {
        // Cargo's run-time value first: a cached test binary may come from another checkout.
        let dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(
                || Path::new(env!("CARGO_MANIFEST_DIR")).into(),
                PathBuf::from,
            )
            .join("migrations")
            .join(dir);
        let mut files: Vec<(i64, String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
                let (version, description) = name.split_once('_').unwrap();
                let sql = std::fs::read_to_string(&path).unwrap();
                (version.parse().unwrap(), description.to_owned(), sql)
            })
            .collect();
        files.sort();
        let embedded: Vec<(i64, String, String)> = list
            .iter()
            .map(|m| (m.version, m.description.to_owned(), m.sql.to_owned()))
            .collect();
        assert_eq!(
            embedded,
            files,
            "{} and the embedded list differ: add the new file to migrations.rs",
            dir.display()
        );
    }

    #[test]
    fn sqlite_migrations_are_all_embedded() {
        assert_embedded("sqlite", SQLITE);
    }

    #[test]
    fn postgres_migrations_are_all_embedded() {
        assert_embedded("postgres", POSTGRES);
    }
}
