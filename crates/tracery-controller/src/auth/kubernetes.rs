//! Cluster mode: a bearer token is whoever the Kubernetes API says it is (TokenReview),
//! and may do what RBAC allows on `breakpoints.tracery.dev` (SubjectAccessReview), so
//! cluster admins grant Tracery access with Roles and RoleBindings.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use tonic::Status;

use super::{Caller, Verb};

/// The API group and resource every check is made on.
pub const GROUP: &str = "tracery.dev";
pub const RESOURCE: &str = "breakpoints";

/// The caller `token` belongs to, or UNAUTHENTICATED with what to do.
pub(super) async fn review_token(
    client: &kube::Client,
    token: Option<&str>,
) -> Result<Caller, Status> {
    let Some(token) = token else {
        return Err(Status::unauthenticated(
            "this controller needs a Kubernetes bearer token: tracery-ctl sends the \
             kubeconfig user's token with --context; else pass --token-file PATH or set \
             TRACERY_TOKEN (e.g. from `kubectl create token NAME`)",
        ));
    };
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_owned()),
            audiences: None,
        },
        ..TokenReview::default()
    };
    let reviewed = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| {
            Status::unavailable(format!(
                "cannot check the token with the Kubernetes API ({e}); the controller needs \
                 `create` on tokenreviews (deploy/kubernetes/controller.yaml); try again"
            ))
        })?;
    let status = reviewed.status.unwrap_or_default();
    if status.authenticated != Some(true) {
        let why = status
            .error
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "not a valid token".into());
        return Err(Status::unauthenticated(format!(
            "the Kubernetes API refused this token: {why}; get a new one (log in again, \
             or `kubectl create token NAME`) and retry"
        )));
    }
    let user = status.user.unwrap_or_default();
    Ok(Caller {
        who: user.username.unwrap_or_default(),
        uid: user.uid.unwrap_or_default(),
        groups: user.groups.unwrap_or_default(),
        extra: user.extra.unwrap_or_default(),
        peer: String::new(),
    })
}

/// Ok when RBAC lets `caller` `verb` breakpoints.tracery.dev in `namespace` (empty: in
/// every namespace).
pub(super) async fn review_access(
    client: &kube::Client,
    caller: &Caller,
    verb: Verb,
    namespace: &str,
) -> Result<(), Status> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(caller.who.clone()),
            uid: Some(caller.uid.clone()).filter(|u| !u.is_empty()),
            groups: Some(caller.groups.clone()),
            extra: Some(caller.extra.clone()).filter(|e| !e.is_empty()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(GROUP.into()),
                resource: Some(RESOURCE.into()),
                verb: Some(verb.as_str().into()),
                namespace: Some(namespace.to_owned()).filter(|n| !n.is_empty()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let reviewed = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| {
            Status::unavailable(format!(
                "cannot check access with the Kubernetes API ({e}); the controller needs \
                 `create` on subjectaccessreviews (deploy/kubernetes/controller.yaml); try again"
            ))
        })?;
    let status = reviewed.status.unwrap_or_default();
    if status.allowed {
        return Ok(());
    }
    let place = if namespace.is_empty() {
        "cluster-wide (a ClusterRoleBinding)".to_owned()
    } else {
        format!("in namespace {namespace}")
    };
    let reason = status
        .reason
        .filter(|r| !r.is_empty())
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    Err(Status::permission_denied(format!(
        "{} may not {} {RESOURCE}.{GROUP} {place}{reason}; ask a cluster admin to bind a \
         role granting it, e.g. tracery-{} (deploy/kubernetes/rbac-roles.yaml)",
        caller.who,
        verb.as_str(),
        match verb {
            Verb::Get | Verb::List => "viewer",
            Verb::Create | Verb::Delete => "editor",
            Verb::Eval | Verb::Freeze => "debugger",
        }
    )))
}
