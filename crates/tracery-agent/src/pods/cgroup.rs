//! Which pod and container a process runs in, read from the cgroup path kubelet gave it.
//!
//! kubelet names a pod's cgroup after the pod's uid, and the runtime names each container's
//! cgroup after the container id, under either cgroup driver:
//!
//! ```text
//! systemd:  /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid, _ for ->.slice/cri-containerd-<id>.scope
//! cgroupfs: /kubepods/besteffort/pod<uid>/<id>
//! ```
//!
//! A prefix may come first (a node that is itself a container, as in kind, or a nested
//! cgroup namespace), so the pod and container segments are looked for anywhere in the path.

/// The pod segment of a process's cgroup, and its container's id when it is in one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCgroup {
    /// The pod's `metadata.uid`, with dashes (the systemd driver writes `_`).
    pub pod_uid: String,
    /// The container's id (64 hex digits), or `None` for a process of the pod that is in
    /// no container's cgroup (CRI-O's `conmon`, or the pod cgroup itself).
    pub container_id: Option<String>,
    /// The pod-level cgroup (the container cgroups' parent), as `/proc/PID/cgroup` names
    /// it; `None` when the path names the pod and container in one segment.
    pub pod_path: Option<String>,
}

impl PodCgroup {
    /// The pod of a process, from the text of its `/proc/PID/cgroup`: the unified (`0::`)
    /// line first, then any v1 line that names a pod (a hybrid host may put kubelet's
    /// groups in v1 only).
    pub fn from_proc_cgroup(text: &str) -> Option<Self> {
        let paths = text
            .lines()
            .filter_map(|l| Some(l.splitn(3, ':').nth(2)?.trim_end()));
        let unified = text.lines().find_map(|l| l.strip_prefix("0::"));
        unified
            .and_then(|p| Self::from_path(p.trim_end()))
            .or_else(|| paths.filter_map(Self::from_path).next())
    }

    /// The pod a cgroup path names, e.g.
    /// `/kubepods/besteffort/pod0b5c…/8f3a…`; `None` for a path outside every pod.
    pub fn from_path(path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.split('/').collect();
        // The last pod segment: a pod is never nested in another.
        let (at, uid) = segments
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, s)| pod_uid(s).map(|uid| (i, uid)))?;
        let here = segments[at];
        // containerd's systemd naming `kubepods-…-pod<uid>.slice:cri-containerd:<id>` puts
        // the container in the pod's segment.
        if let Some((_, id)) = here.split_once(':') {
            let id = id.rsplit(':').next().filter(|id| is_container_id(id));
            return Some(Self {
                pod_uid: uid,
                container_id: id.map(str::to_owned),
                pod_path: None,
            });
        }
        let container_id = segments
            .get(at + 1)
            .and_then(|s| container_id(s))
            .map(str::to_owned);
        Some(Self {
            pod_uid: uid,
            container_id,
            pod_path: Some(segments[..=at].join("/")),
        })
    }
}

/// The pod uid a path segment names: `pod<uid>` (cgroupfs) or `…-pod<uid_>.slice`
/// (systemd, where `-` in the uid is written `_`), with an optional `:runtime:id` tail.
fn pod_uid(segment: &str) -> Option<String> {
    let segment = segment.split(':').next().unwrap_or(segment);
    let raw = match segment.strip_suffix(".slice") {
        Some(unit) => &unit[unit.rfind("-pod")? + "-pod".len()..],
        None => segment.strip_prefix("pod")?,
    };
    let uid = raw.replace('_', "-");
    is_uid(&uid).then_some(uid)
}

/// A uid as Kubernetes makes them: 36 characters of hex digits and dashes (a UUID).
fn is_uid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The container id a segment below the pod names: `<runtime>-<id>.scope` (systemd:
/// `cri-containerd-`, `crio-`, `docker-`) or a bare `<id>` (cgroupfs). CRI-O's
/// `crio-conmon-<id>.scope` holds its monitor, not the container.
fn container_id(segment: &str) -> Option<&str> {
    let unit = segment.strip_suffix(".scope").unwrap_or(segment);
    if unit.starts_with("crio-conmon-") {
        return None;
    }
    let id = unit.rsplit('-').next()?;
    is_container_id(id).then_some(id)
}

/// Runtimes' container ids: 64 lowercase hex digits.
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0b5c8d2e-6f1a-4c3b-9d7e-2a1b3c4d5e6f";
    const ID: &str = "8f3a6c1d2e4b5a69788796a5b4c3d2e1f0112233445566778899aabbccddeeff";

    fn pod(container: Option<&str>, pod_path: Option<&str>) -> Option<PodCgroup> {
        Some(PodCgroup {
            pod_uid: UID.into(),
            container_id: container.map(str::to_owned),
            pod_path: pod_path.map(str::to_owned),
        })
    }

    #[test]
    fn the_systemd_driver_names_the_pod_with_underscores() {
        let slice = format!("kubepods-burstable-pod{}.slice", UID.replace('-', "_"));
        for runtime in ["cri-containerd", "crio", "docker"] {
            let dir = format!("/kubepods.slice/kubepods-burstable.slice/{slice}");
            let path = format!("{dir}/{runtime}-{ID}.scope");
            assert_eq!(
                PodCgroup::from_path(&path),
                pod(Some(ID), Some(&dir)),
                "{path}"
            );
        }
        // Guaranteed pods sit right under kubepods.slice; besteffort has its own slice.
        let dir = format!(
            "/kubepods.slice/kubepods-pod{}.slice",
            UID.replace('-', "_")
        );
        let path = format!("{dir}/cri-containerd-{ID}.scope");
        assert_eq!(PodCgroup::from_path(&path), pod(Some(ID), Some(&dir)));
        let dir = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
            UID.replace('-', "_")
        );
        let path = format!("{dir}/crio-{ID}.scope");
        assert_eq!(PodCgroup::from_path(&path), pod(Some(ID), Some(&dir)));
        // CRI-O's monitor is in the pod but in no container.
        let path = format!("{dir}/crio-conmon-{ID}.scope");
        assert_eq!(PodCgroup::from_path(&path), pod(None, Some(&dir)));
    }

    #[test]
    fn the_cgroupfs_driver_names_the_pod_as_is() {
        for qos in ["/kubepods/besteffort", "/kubepods/burstable", "/kubepods"] {
            let dir = format!("{qos}/pod{UID}");
            let path = format!("{dir}/{ID}");
            assert_eq!(
                PodCgroup::from_path(&path),
                pod(Some(ID), Some(&dir)),
                "{path}"
            );
        }
        // The pod's own cgroup (the sandbox's parent) is the pod, in no container.
        let dir = format!("/kubepods/pod{UID}");
        assert_eq!(PodCgroup::from_path(&dir), pod(None, Some(&dir)));
    }

    #[test]
    fn pods_are_found_below_a_prefix() {
        // kind: the node is a container, kubelet's groups sit under kubelet.slice.
        let dir = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
             kubelet-kubepods-besteffort-pod{}.slice",
            UID.replace('-', "_")
        );
        let path = format!("{dir}/cri-containerd-{ID}.scope");
        assert_eq!(PodCgroup::from_path(&path), pod(Some(ID), Some(&dir)));
        let dir = format!("/docker/abc/kubepods/burstable/pod{UID}");
        assert_eq!(
            PodCgroup::from_path(&format!("{dir}/{ID}")),
            pod(Some(ID), Some(&dir))
        );
        // containerd's systemd-driver naming, with the container in the pod's segment.
        let path = format!(
            "/system.slice/containerd.service/kubepods-burstable-pod{}.slice:cri-containerd:{ID}",
            UID.replace('-', "_")
        );
        assert_eq!(PodCgroup::from_path(&path), pod(Some(ID), None));
    }

    #[test]
    fn a_process_in_no_pod_has_none() {
        for path in [
            "/",
            "/user.slice/user-0.slice/session-1.scope",
            "/system.slice/containerd.service",
            "/kubepods.slice/kubepods-burstable.slice",
            "/kubepods/besteffort",
            // Not a uid: too short, or not hex.
            "/kubepods/besteffort/pod1234/abc",
            "/kubepods/besteffort/podxyz8d2e-6f1a-4c3b-9d7e-2a1b3c4d5e6f/x",
            "/tracery-demo/node-a",
        ] {
            assert_eq!(PodCgroup::from_path(path), None, "{path}");
        }
        // A container id must be one.
        let dir = format!("/kubepods/pod{UID}");
        assert_eq!(
            PodCgroup::from_path(&format!("{dir}/not-a-container")),
            pod(None, Some(&dir))
        );
    }

    #[test]
    fn the_unified_line_wins_and_v1_lines_are_read_without_one() {
        let v2 = format!("/kubepods/pod{UID}/{ID}");
        let hybrid = format!("4:memory:/elsewhere\n0::{v2}\n");
        assert_eq!(
            PodCgroup::from_proc_cgroup(&hybrid),
            pod(Some(ID), Some(&format!("/kubepods/pod{UID}")))
        );
        let v1_only = format!("9:name=systemd:/\n4:memory:{v2}\n0::/\n");
        assert_eq!(
            PodCgroup::from_proc_cgroup(&v1_only),
            pod(Some(ID), Some(&format!("/kubepods/pod{UID}")))
        );
        assert_eq!(PodCgroup::from_proc_cgroup("0::/\n4:memory:/x\n"), None);
        assert_eq!(PodCgroup::from_proc_cgroup(""), None);
    }
}
