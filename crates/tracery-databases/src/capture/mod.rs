//! Capture queries named by a breakpoint (`shop: SELECT ... WHERE id = {order.id}`):
//! parsed and checked when the breakpoint is set, bound to captured values at the hit.

pub mod mongodb;
pub mod placeholder;
pub mod postgres;
pub mod redis;

use std::fmt;

use crate::{
    config::{DatabaseConfig, DatabaseKind},
    param::Param,
};

pub use self::{
    mongodb::{MongoOperation, MongoQuery},
    postgres::PgQuery,
    redis::{ArgPart, RedisCommand, READ_ONLY_COMMANDS},
};

/// A checked capture query: which database, and a query that can only read it.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureSpec {
    source: String,
    database: String,
    query: CaptureQuery,
}

/// The parsed query, by kind of database.
#[derive(Debug, Clone, PartialEq)]
pub enum CaptureQuery {
    /// One read-only SQL query with `$n` parameters.
    Postgres(PgQuery),
    /// One read-only Redis command.
    Redis(RedisCommand),
    /// A MongoDB find or aggregate.
    Mongodb(MongoQuery),
}

impl CaptureSpec {
    /// Parses `NAME: QUERY` against the configured databases and checks that the query
    /// only reads. Placeholders are checked against the scope separately
    /// ([`CaptureSpec::check_in_scope`]).
    pub fn parse(text: &str, known: &[DatabaseConfig]) -> Result<Self, CaptureError> {
        let Some((name, query)) = text.split_once(':') else {
            return Err(CaptureError::NoDatabase {
                text: text.to_owned(),
            });
        };
        let (name, query) = (name.trim(), query.trim());
        let Some(database) = known.iter().find(|d| d.name == name) else {
            return Err(CaptureError::UnknownDatabase {
                name: name.to_owned(),
                known: known_names(known),
            });
        };
        if query.is_empty() {
            return Err(CaptureError::Empty);
        }
        let query = match database.kind() {
            DatabaseKind::Postgres => CaptureQuery::Postgres(postgres::parse(query)?),
            DatabaseKind::Redis => CaptureQuery::Redis(redis::parse(query)?),
            DatabaseKind::Mongodb => CaptureQuery::Mongodb(mongodb::parse(query)?),
        };
        Ok(Self {
            source: text.trim().to_owned(),
            database: name.to_owned(),
            query,
        })
    }

    /// The text as the user wrote it (`shop: SELECT ...`): store this and parse it again.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The query after `NAME:`, as written.
    pub fn query_text(&self) -> &str {
        self.source
            .split_once(':')
            .map_or("", |(_, query)| query.trim())
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The kind of database.
    pub fn kind(&self) -> DatabaseKind {
        match self.query {
            CaptureQuery::Postgres(_) => DatabaseKind::Postgres,
            CaptureQuery::Redis(_) => DatabaseKind::Redis,
            CaptureQuery::Mongodb(_) => DatabaseKind::Mongodb,
        }
    }

    /// The parsed query.
    pub fn query(&self) -> &CaptureQuery {
        &self.query
    }

    /// The distinct placeholder paths, in first-use order (`order.customer`, `items[0]`).
    pub fn placeholders(&self) -> &[String] {
        match &self.query {
            CaptureQuery::Postgres(q) => &q.paths.paths,
            CaptureQuery::Redis(c) => &c.paths.paths,
            CaptureQuery::Mongodb(q) => &q.paths.paths,
        }
    }

    /// Checks that every placeholder starts from a variable in scope at the breakpoint.
    pub fn check_in_scope<S: AsRef<str>>(&self, in_scope: &[S]) -> Result<(), CaptureError> {
        for path in self.placeholders() {
            let root = placeholder::root_variable(path);
            if !in_scope.iter().any(|v| v.as_ref() == root) {
                let mut names: Vec<&str> = in_scope.iter().map(AsRef::as_ref).collect();
                names.sort_unstable();
                names.dedup();
                return Err(CaptureError::NotInScope {
                    placeholder: path.clone(),
                    in_scope: if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    },
                });
            }
        }
        Ok(())
    }

    /// Binds each placeholder with `lookup(path)`; a path it cannot resolve is kept as
    /// unresolved and becomes an error on this query's result, never a panic.
    pub fn bind(&self, lookup: impl Fn(&str) -> Option<Param>) -> BoundQuery {
        BoundQuery {
            spec: self.clone(),
            params: self
                .placeholders()
                .iter()
                .map(|path| BoundParam {
                    path: path.clone(),
                    value: lookup(path),
                })
                .collect(),
        }
    }
}

impl fmt::Display for CaptureSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn known_names(known: &[DatabaseConfig]) -> String {
    if known.is_empty() {
        return "none are configured".into();
    }
    let mut names: Vec<&str> = known.iter().map(|d| d.name.as_str()).collect();
    names.sort_unstable();
    format!("known: {}", names.join(", "))
}

/// A capture query with its placeholder values, ready to run at a hit.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundQuery {
    /// The query.
    pub spec: CaptureSpec,
    /// One value per placeholder, in [`CaptureSpec::placeholders`] order.
    pub params: Vec<BoundParam>,
}

impl BoundQuery {
    /// The values in placeholder order, or the paths that did not resolve.
    pub fn values(&self) -> Result<Vec<&Param>, Vec<&str>> {
        let missing: Vec<&str> = self
            .params
            .iter()
            .filter(|p| p.value.is_none())
            .map(|p| p.path.as_str())
            .collect();
        if missing.is_empty() {
            Ok(self
                .params
                .iter()
                .filter_map(|p| p.value.as_ref())
                .collect())
        } else {
            Err(missing)
        }
    }
}

/// One placeholder's path and its value at the hit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BoundParam {
    /// The path as written in the query.
    pub path: String,
    /// Its value, or `None` when the captured values do not contain it.
    pub value: Option<Param>,
}

/// Why a capture query is refused when a breakpoint is set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// No `NAME:` before the query.
    #[error("capture `{text}` names no database; write NAME: QUERY, e.g. `shop: SELECT ...`")]
    NoDatabase {
        /// The capture as written.
        text: String,
    },
    /// The name is not configured.
    #[error(
        "unknown database `{name}` ({known}); add it with --database {name}=URL \
         or a [databases.{name}] table"
    )]
    UnknownDatabase {
        /// The name as written.
        name: String,
        /// The configured names, as a sentence part.
        known: String,
    },
    /// Nothing after `NAME:`.
    #[error("the capture query is empty; write a query after `NAME:`")]
    Empty,
    /// Not valid PostgreSQL.
    #[error("PostgreSQL syntax error in `{query}`: {message}")]
    SqlSyntax {
        /// The query as written.
        query: String,
        /// The parser's message.
        message: String,
    },
    /// Zero or several statements.
    #[error("`{query}` has {count} statements; a capture runs exactly one query")]
    NotOneStatement {
        /// The query as written.
        query: String,
        /// How many statements it has.
        count: usize,
    },
    /// It would write or lock.
    #[error("refused `{query}`: {reason}; capture queries may only read")]
    Writes {
        /// The query as written.
        query: String,
        /// What in it writes.
        reason: String,
    },
    /// A `$1` written by hand.
    #[error("`{query}` uses a $n parameter; write {{variable}} placeholders instead")]
    PositionalParameter {
        /// The query as written.
        query: String,
    },
    /// A `{` that does not open a placeholder.
    #[error(
        "bad placeholder at `{near}` in `{query}`; write {{name}}, {{name.field}}, \
         {{ptr->field}} or {{items[0]}}"
    )]
    BadPlaceholder {
        /// The query as written.
        query: String,
        /// The text from the bad `{`.
        near: String,
    },
    /// A quote without its end.
    #[error("unclosed quote in `{query}`")]
    UnclosedQuote {
        /// The query as written.
        query: String,
    },
    /// A Redis command off the read-only list.
    #[error(
        "Redis command {command} is not allowed: captures run read-only commands only ({allowed})"
    )]
    RedisCommandNotAllowed {
        /// The command, upper-case.
        command: String,
        /// The allowed commands.
        allowed: String,
    },
    /// Not `coll.find(...)`/`coll.aggregate(...)` or bad JSON.
    #[error("bad MongoDB query `{query}`: {reason}")]
    MongoSyntax {
        /// The query as written.
        query: String,
        /// What is wrong.
        reason: String,
    },
    /// A MongoDB method other than find/aggregate.
    #[error("MongoDB method `{method}` is not allowed; captures run find or aggregate only")]
    MongoMethodNotAllowed {
        /// The method as written.
        method: String,
    },
    /// A placeholder whose variable is not in scope at the breakpoint.
    #[error("placeholder {{{placeholder}}} names no variable in scope here; in scope: {in_scope}")]
    NotInScope {
        /// The placeholder's path.
        placeholder: String,
        /// The variables in scope.
        in_scope: String,
    },
}
