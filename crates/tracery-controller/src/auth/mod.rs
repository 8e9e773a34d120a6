//! Who is calling, and may they: every `Tracery` call is authenticated (a bearer token),
//! and in cluster mode authorized per namespace through Kubernetes RBAC. Agents are
//! authenticated by their client certificate instead (see [`crate::tls`]).
//!
//! Tonic interceptors cannot wait, and TokenReview is an API call, so each handler calls
//! [`Access::authenticate`] first; the [`Caller`] it returns is what authorization and the
//! audit log see.

mod kubernetes;
mod token;

use tonic::{Request, Status};

pub use token::{StandaloneToken, TokenError, TOKEN_FILE};

/// Who may call the controller's `Tracery` API ([`ControllerOptions::access`]).
///
/// [`ControllerOptions::access`]: crate::ControllerOptions::access
#[derive(Clone)]
pub enum Access {
    /// One bearer token (standalone, or a controller outside Kubernetes): its holder may
    /// do everything.
    Token(StandaloneToken),
    /// Cluster mode: tokens checked by a TokenReview, each action by a
    /// SubjectAccessReview on `breakpoints.tracery.dev` in its namespace.
    Kubernetes(kube::Client),
    /// No authentication: for tests that drive the library in-process. No binary uses it.
    Open,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Token(_) => "Access::Token",
            Access::Kubernetes(_) => "Access::Kubernetes",
            Access::Open => "Access::Open",
        })
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The user name the audit log records.
    pub who: String,
    /// Kubernetes identity for SubjectAccessReviews (empty outside cluster mode).
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
    /// The caller's address as the controller saw it.
    pub peer: String,
}

/// What a call does to breakpoints.tracery.dev, as an RBAC verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Create,
    Delete,
    /// `trace eval`: reads arbitrary memory of a stopped thread.
    Eval,
    /// `--freeze` on set, and `trace resume`: holds or lets go of live requests.
    Freeze,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Create => "create",
            Verb::Delete => "delete",
            Verb::Eval => "eval",
            Verb::Freeze => "freeze",
        }
    }
}

impl Access {
    /// The caller of `request`, or UNAUTHENTICATED saying how to get a valid token.
    pub async fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let presented = bearer(request)?;
        let caller = match self {
            Access::Open => Caller {
                who: "anonymous".into(),
                ..Caller::default()
            },
            Access::Token(token) => token.check(presented)?,
            Access::Kubernetes(client) => kubernetes::review_token(client, presented).await?,
        };
        Ok(Caller { peer, ..caller })
    }

    /// Ok when `caller` may `verb` breakpoints in `namespace` (empty: in every namespace),
    /// else PERMISSION_DENIED naming the missing RBAC rule.
    pub async fn authorize(
        &self,
        caller: &Caller,
        verb: Verb,
        namespace: &str,
    ) -> Result<(), Status> {
        match self {
            Access::Open | Access::Token(_) => Ok(()),
            Access::Kubernetes(client) => {
                kubernetes::review_access(client, caller, verb, namespace).await
            }
        }
    }
}

/// The token of `authorization: Bearer TOKEN`, if any.
fn bearer<T>(request: &Request<T>) -> Result<Option<&str>, Status> {
    let Some(value) = request.metadata().get("authorization") else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| {
        Status::unauthenticated("the authorization header is not text; send `Bearer TOKEN`")
    })?;
    match value.strip_prefix("Bearer ") {
        Some(token) => Ok(Some(token.trim())),
        None => Err(Status::unauthenticated(
            "the authorization header must be `Bearer TOKEN`",
        )),
    }
}

#[cfg(test)]
mod tests;
