//! The standalone token: random, written once at first start to `DATA_DIR/token` with mode
//! 0600, so only the user the standalone runs as (and root) can read it; `tracery-ctl`
//! running as that user reads it from there.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tonic::Status;

use super::Caller;

/// The token's file name in the data directory.
pub const TOKEN_FILE: &str = "token";
/// Random bytes in a token (hex-encoded in the file).
const TOKEN_BYTES: usize = 32;

/// The one token a standalone controller accepts, and where it is kept.
#[derive(Clone)]
pub struct StandaloneToken {
    token: String,
    path: PathBuf,
}

/// Why the token file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot create the token file {path}; check that the data directory is writable, or pass another --data-dir")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the token file {path}; delete it to have a new one written")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}` or delete it to have a new one written")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the token file {path} is empty; delete it to have a new one written")]
    Empty { path: PathBuf },
}

impl StandaloneToken {
    /// Reads `dir/token`, or writes a new random one (0600) when there is none.
    pub fn load_or_create(dir: &Path) -> Result<Self, TokenError> {
        let path = dir.join(TOKEN_FILE);
        std::fs::create_dir_all(dir).map_err(|source| TokenError::Create {
            path: path.clone(),
            source,
        })?;
        // create_new: two standalones starting at once must not both write a token.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                let token = random_token().map_err(|source| TokenError::Create {
                    path: path.clone(),
                    source,
                })?;
                file.write_all(format!("{token}\n").as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|source| TokenError::Create {
                        path: path.clone(),
                        source,
                    })?;
                tracing::info!(path = %path.display(), "wrote a new API token; tracery-ctl reads it from there");
                Ok(StandaloneToken { token, path })
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Self::read(path),
            Err(source) => Err(TokenError::Create { path, source }),
        }
    }

    fn read(path: PathBuf) -> Result<Self, TokenError> {
        let meta = std::fs::metadata(&path).map_err(|source| TokenError::Read {
            path: path.clone(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenError::Exposed { path, mode });
        }
        let token = std::fs::read_to_string(&path).map_err(|source| TokenError::Read {
            path: path.clone(),
            source,
        })?;
        let token = token.trim().to_owned();
        if token.is_empty() {
            return Err(TokenError::Empty { path });
        }
        Ok(StandaloneToken { token, path })
    }

    /// A token for a controller that keeps it elsewhere (tests, a Secret).
    pub fn new(token: String, path: PathBuf) -> Self {
        StandaloneToken { token, path }
    }

    /// Where the token is kept, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn check(&self, presented: Option<&str>) -> Result<Caller, Status> {
        let path = self.path.display();
        let Some(presented) = presented else {
            return Err(Status::unauthenticated(format!(
                "this controller needs its API token; it is in {path} on the controller's \
                 machine: run tracery-ctl there as the same user (it reads the file), or pass \
                 --token-file PATH or set TRACERY_TOKEN"
            )));
        };
        if !constant_time_eq(presented.as_bytes(), self.token.as_bytes()) {
            return Err(Status::unauthenticated(format!(
                "wrong API token; the valid one is in {path} on the controller's machine \
                 (pass it with --token-file PATH or TRACERY_TOKEN)"
            )));
        }
        Ok(Caller {
            who: "standalone-token".into(),
            ..Caller::default()
        })
    }
}

/// Compares without stopping at the first difference, so timing does not leak a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_written_once_with_mode_600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = StandaloneToken::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(first.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(first.token.len(), 2 * TOKEN_BYTES);
        let again = StandaloneToken::load_or_create(dir.path()).unwrap();
        assert_eq!(first.token, again.token);
        std::fs::set_permissions(first.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = StandaloneToken::load_or_create(dir.path()).err().unwrap();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }
}
