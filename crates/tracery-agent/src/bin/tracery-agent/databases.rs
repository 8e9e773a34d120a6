//! The databases a standalone controller may read at hits: `[databases.NAME]` and
//! `[capture_limits]` of tracery.toml, then `--database NAME=URL` flags over them.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use tracery_databases::{resolve_databases, CaptureLimits, DatabaseConfig, DatabasesSection};

/// The parts of tracery.toml the controller reads; `[services]` is the agent's.
#[derive(Deserialize, Default)]
struct ControllerConfig {
    #[serde(default)]
    databases: DatabasesSection,
    #[serde(default)]
    capture_limits: CaptureLimits,
}

/// What `--capture` queries may read, and under which limits.
pub struct DatabaseOptions {
    pub databases: Vec<DatabaseConfig>,
    pub limits: CaptureLimits,
}

/// Reads `config` (when given) and applies `--database` flags and the limit flags.
pub fn load(
    config: Option<&Path>,
    flags: &[String],
    timeout_ms: Option<u64>,
    max_rows: Option<usize>,
) -> anyhow::Result<DatabaseOptions> {
    let file: ControllerConfig = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text).with_context(|| {
                format!(
                    "{}: [databases] or [capture_limits] is not valid",
                    path.display()
                )
            })?
        }
        None => ControllerConfig::default(),
    };
    let databases = resolve_databases(&file.databases, flags)?;
    let mut limits = file.capture_limits;
    if let Some(ms) = timeout_ms {
        limits.statement_timeout_ms = ms;
    }
    if let Some(rows) = max_rows {
        limits.max_rows = rows;
    }
    anyhow::ensure!(
        limits.statement_timeout_ms > 0 && limits.max_rows > 0 && limits.max_result_bytes > 0,
        "capture limits must be at least 1 (statement timeout, rows, bytes); leave them out for \
         the defaults (2000 ms, 100 rows, 256 KiB)"
    );
    for db in &databases {
        tracing::info!(database = %db.name, kind = %db.kind(), url = %db.url, "capture database");
    }
    Ok(DatabaseOptions { databases, limits })
}
