//! The Kubernetes manifests in `deploy/` validate offline against the Kubernetes OpenAPI
//! schemas, with `kubernetes-validate` (PyPI) in strict mode, so an unknown field fails:
//! every document of every YAML file under `deploy/kubernetes` (the generated CRD
//! included), and what `kubectl kustomize` renders of the base and of each overlay under
//! `deploy/overlays` (patches are only checkable applied). A copy with a typo'd field must
//! fail, which proves the check bites.
//!
//! No cluster is involved: nothing here talks to an API server.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Where `cargo xtask setup` installs the validator (xtask/src/setup.rs,
/// `KUBERNETES_VALIDATE_VENV`); this variable names another one.
const VALIDATOR_ENV: &str = "TRACERY_KUBERNETES_VALIDATE";
const VALIDATOR: &str = "/var/cache/tracery/kubernetes-validate/bin/kubernetes-validate";

/// The Kubernetes versions whose schemas every object must satisfy: the oldest the
/// workspace's k8s-openapi targets (feature `v1_33`), and the newest the pinned
/// validator ships.
const KUBERNETES_VERSIONS: &[&str] = &["1.33", "1.37"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository root")
        .to_path_buf()
}

/// The validator's executable; fails the test (never skips it) when it is missing.
fn validator() -> PathBuf {
    let path =
        std::env::var_os(VALIDATOR_ENV).map_or_else(|| PathBuf::from(VALIDATOR), PathBuf::from);
    assert!(
        path.is_file(),
        "kubernetes-validate is not installed at {}: run `cargo xtask setup` (or set {VALIDATOR_ENV})",
        path.display()
    );
    path
}

/// Validates every document of `file` against each of [`KUBERNETES_VERSIONS`], strictly.
/// `Ok(n)`: all `n` (document, version) checks passed. `Err`: the validator's complaints.
/// A document of a kind it has no schema for is a complaint too (the validator itself
/// only warns and exits 0), and so is a file with no document at all.
fn validate(file: &Path) -> Result<usize, Vec<String>> {
    let mut cmd = Command::new(validator());
    cmd.arg("--strict");
    for version in KUBERNETES_VERSIONS {
        cmd.args(["--kubernetes-version", version]);
    }
    let out = cmd
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubernetes-validate: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut passed = 0;
    let mut problems = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("INFO ") && line.contains(" passed for resource ") {
            passed += 1;
        } else {
            problems.push(line.to_string());
        }
    }
    if !out.status.success() && problems.is_empty() {
        problems.push(format!("kubernetes-validate exited with {}", out.status));
    }
    if passed == 0 && problems.is_empty() {
        problems.push("no Kubernetes object in the file".to_string());
    }
    if problems.is_empty() {
        Ok(passed)
    } else {
        Err(problems)
    }
}

/// Every `*.yaml` under `dir`, recursively, except kustomizations (kustomize's own
/// configuration, not Kubernetes objects), sorted.
fn manifests_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
                && path.file_stem().is_some_and(|s| s != "kustomization")
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A directory of its own under the temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tracery-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `kubectl kustomize DIR`: the objects `kubectl apply -k DIR` would send.
fn kustomize(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run kubectl ({e}): its built-in kustomize renders deploy/kubernetes and \
                 the overlays under deploy/overlays for validation; install kubectl"
            )
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kustomize prints UTF-8")
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_manifest_under_deploy_kubernetes_validates_strictly() {
    let root = repo_root();
    let files = manifests_under(&root.join("deploy/kubernetes"));
    for expected in ["namespace.yaml", "controller.yaml", "agent.yaml"] {
        assert!(
            files.iter().any(|f| f.ends_with(expected)),
            "deploy/kubernetes/{expected} is missing (found {files:?})"
        );
    }
    let mut failures = Vec::new();
    for file in &files {
        match validate(file) {
            Ok(passed) => println!("{}: {passed} checks passed", relative(file)),
            Err(problems) => {
                failures.extend(problems.iter().map(|p| format!("{}: {p}", relative(file))))
            }
        }
    }
    assert!(
        failures.is_empty(),
        "manifests that do not validate against Kubernetes {KUBERNETES_VERSIONS:?}:\n{}",
        failures.join("\n")
    );
}

// `kubectl kustomize` needs a kubectl with kustomize v4+ (1.21 or later), which set-up
// cannot install on Debian 12 (its kubernetes-client is 1.20). `cargo xtask test` runs this
// with --ignored when such a kubectl is on PATH and reports it SKIPPED otherwise.
#[test]
#[ignore = "needs kubectl 1.21+ on PATH; cargo xtask test runs it when there is one"]
fn the_base_and_every_overlay_render_to_valid_objects() {
    let root = repo_root();
    let overlays_dir = root.join("deploy/overlays");
    let mut kustomizations = vec![root.join("deploy/kubernetes")];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(&overlays_dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", overlays_dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    overlays.sort();
    assert!(
        overlays.iter().any(|o| o.ends_with("postgres")),
        "no postgres overlay under {}",
        overlays_dir.display()
    );
    kustomizations.extend(overlays);

    let scratch = Scratch::new("kustomize");
    let mut failures = Vec::new();
    for dir in &kustomizations {
        let rendered = kustomize(dir);
        let name = relative(dir).replace('/', "_");
        let file = scratch.0.join(format!("{name}.yaml"));
        std::fs::write(&file, &rendered).expect("write the rendered objects");
        match validate(&file) {
            Ok(passed) => println!("{} rendered: {passed} checks passed", relative(dir)),
            Err(problems) => failures.extend(
                problems
                    .iter()
                    .map(|p| format!("{} (rendered): {p}", relative(dir))),
            ),
        }
        // Every object kind the deployment needs is in every rendering.
        for kind in [
            "kind: Namespace",
            "kind: CustomResourceDefinition",
            "kind: ClusterRole\n",
            "kind: ClusterRoleBinding",
            "kind: Deployment",
            "kind: Service\n",
            "kind: DaemonSet",
        ] {
            if !rendered.contains(kind) {
                failures.push(format!("{} (rendered): no {}", relative(dir), kind.trim()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "kustomizations that do not render to valid objects:\n{}",
        failures.join("\n")
    );

    // The postgres overlay did what it is for: no SQLite volume, the URL from the Secret.
    let postgres = kustomize(&overlays_dir.join("postgres"));
    for absent in [
        "kind: PersistentVolumeClaim",
        "claimName",
        "--store",
        "sqlite://",
    ] {
        assert!(
            !postgres.contains(absent),
            "the postgres overlay still renders {absent:?}"
        );
    }
    for present in [
        "name: TRACERY_STORE_URL",
        "name: tracery-store-url",
        "key: url",
    ] {
        assert!(
            postgres.contains(present),
            "the postgres overlay renders no {present:?}"
        );
    }
    let base = kustomize(&root.join("deploy/kubernetes"));
    for present in [
        "kind: PersistentVolumeClaim",
        "sqlite:///var/lib/tracery/store.db",
    ] {
        assert!(base.contains(present), "the base renders no {present:?}");
    }
}

#[test]
fn a_typo_in_a_manifest_fails_validation() {
    let root = repo_root().join("deploy/kubernetes");
    let scratch = Scratch::new("manifest-typo");
    // (file, text, the typo, what the complaint must name)
    let cases = [
        (
            "agent.yaml",
            "hostPID:",
            "hostPid:",
            "'hostPid' was unexpected",
        ),
        (
            "controller.yaml",
            "readOnlyRootFilesystem:",
            "readOnlyRootFileSystem:",
            "'readOnlyRootFileSystem' was unexpected",
        ),
        // A misspelt required field is reported as the missing one.
        (
            "controller.yaml",
            "containers:",
            "contaners:",
            "'containers' is a required property",
        ),
        // A misspelt kind: the validator only warns (no schema), and the check must fail.
        (
            "namespace.yaml",
            "kind: Namespace",
            "kind: Namespce",
            "Couldn't find schema for kind Namespce",
        ),
    ];
    for (name, text, typo, complaint) in cases {
        let original = std::fs::read_to_string(root.join(name))
            .unwrap_or_else(|e| panic!("cannot read deploy/kubernetes/{name}: {e}"));
        assert!(
            original.contains(text),
            "deploy/kubernetes/{name} has no {text:?} to misspell; update this test"
        );

        // The unchanged copy passes: what fails below is the typo, not the copy.
        let copy = scratch.0.join(name);
        std::fs::write(&copy, &original).expect("write the copy");
        if let Err(problems) = validate(&copy) {
            panic!("the unchanged copy of {name} fails: {problems:?}");
        }

        std::fs::write(&copy, original.replacen(text, typo, 1)).expect("write the typo");
        match validate(&copy) {
            Ok(passed) => panic!(
                "{name} with {typo:?} for {text:?} passed validation ({passed} checks): \
                 the check does not catch typos"
            ),
            Err(problems) => assert!(
                problems.iter().any(|p| p.contains(complaint)),
                "{name} with {typo:?} failed, but not for the typo ({complaint:?}): {problems:?}"
            ),
        }
    }
}
