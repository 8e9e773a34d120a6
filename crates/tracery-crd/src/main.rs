//! Prints the `Breakpoint` CRD as YAML (`cargo xtask gen-crds` writes it to
//! `deploy/kubernetes/breakpoint-crd.yaml`).

fn main() {
    print!("{}", tracery_crd::crd_yaml());
}
