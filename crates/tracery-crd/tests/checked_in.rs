//! The CRD in `deploy/kubernetes` must be what the Rust type generates, so the cluster
//! validates objects exactly as the controller reads them.

#[test]
fn the_checked_in_crd_matches_the_rust_type() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join(tracery_crd::CRD_PATH);
    let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run `cargo xtask gen-crds`",
            path.display()
        )
    });
    assert!(
        checked_in == tracery_crd::crd_yaml(),
        "{} differs from what crates/tracery-crd generates; run `cargo xtask gen-crds` and commit the result",
        path.display()
    );
}
