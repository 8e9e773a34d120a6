//! The demo's three services, started together: gateway (Go) -> orders (Rust, PostgreSQL)
//! -> payments (Go). Used by `cargo xtask demo` and by the services' own tests.

use std::path::Path;

use crate::{fixture, FixtureProcess};

/// One running service and the address it listens on.
pub struct Service {
    pub process: FixtureProcess,
    pub addr: String,
}

/// The three demo services, each on a free loopback port; all are killed on drop.
pub struct DemoServices {
    pub gateway: Service,
    pub orders: Service,
    pub payments: Service,
}

impl DemoServices {
    /// Starts payments, then orders (the `demo-orders` binary at `orders_bin`, storing in
    /// PostgreSQL at `database`), then the gateway in front of them.
    pub fn start(orders_bin: &Path, database: &str) -> Self {
        let service = |(process, addr): (FixtureProcess, String)| Service { process, addr };
        let payments = service(FixtureProcess::spawn_service(
            &fixture("demo-payments"),
            &["-listen", "127.0.0.1:0"],
        ));
        let orders = service(FixtureProcess::spawn_service(
            orders_bin,
            &[
                "--listen",
                "127.0.0.1:0",
                "--database",
                database,
                "--payments",
                &format!("http://{}", payments.addr),
            ],
        ));
        let gateway = service(FixtureProcess::spawn_service(
            &fixture("demo-gateway"),
            &[
                "-listen",
                "127.0.0.1:0",
                "-orders",
                &format!("http://{}", orders.addr),
            ],
        ));
        Self {
            gateway,
            orders,
            payments,
        }
    }
}
