//! The demo's services, started together: gateway (Go) -> orders (Rust, PostgreSQL and
//! Redis) -> payments (Go), and the worker (Go) that takes the fulfilment jobs orders
//! enqueues in Redis. Used by `cargo xtask demo` and by the services' own tests: all on
//! loopback ([`DemoServices`]) or spread over the demo's two nodes ([`NodeServices`]).

use std::path::Path;

use crate::{
    fixture,
    node::{Node, Nodes},
    FixtureProcess,
};

/// The Redis that `cargo xtask test` runs on loopback: orders keeps customer totals there.
pub const REDIS_LOOPBACK: &str = "redis://127.0.0.1:6379";

/// One running service and the address it listens on.
pub struct Service {
    pub process: FixtureProcess,
    pub addr: String,
}

/// The demo services, each on a free loopback port; all are killed on drop.
pub struct DemoServices {
    pub gateway: Service,
    pub orders: Service,
    pub payments: Service,
    /// Takes orders' fulfilment jobs from [`REDIS_LOOPBACK`]; its `addr` is Redis's.
    pub worker: Service,
}

impl DemoServices {
    /// Starts payments, then orders (the `demo-orders` binary at `orders_bin`, storing in
    /// PostgreSQL at `database`, customer totals and fulfilment jobs in [`REDIS_LOOPBACK`]),
    /// then the gateway in front of them, and the worker.
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
                "--redis",
                REDIS_LOOPBACK,
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
        let worker = service(FixtureProcess::spawn_service(
            &fixture("demo-worker"),
            &["-redis", REDIS_LOOPBACK],
        ));
        Self {
            gateway,
            orders,
            payments,
            worker,
        }
    }
}

/// The demo's services spread over two nodes: gateway and orders on node-a, payments and
/// the worker on node-b ([`crate::node`]). Each listens on its node's address; all are
/// killed on drop.
pub struct NodeServices {
    pub gateway: Service,
    pub orders: Service,
    pub payments: Service,
    /// Takes orders' fulfilment jobs from Redis; its `addr` is Redis's.
    pub worker: Service,
}

impl NodeServices {
    /// Starts payments on node-b, then orders on node-a (the `demo-orders` binary at
    /// `orders_bin`, storing in PostgreSQL at `database` and Redis at `redis`, which both
    /// nodes must reach over TCP), then the gateway on node-a in front of it, and the worker
    /// on node-b.
    pub fn start(
        nodes: &Nodes,
        orders_bin: &Path,
        database: &str,
        redis: &str,
    ) -> Result<Self, String> {
        let spawn = |node: &Node, program: &Path, args: &[&str]| -> Result<Service, String> {
            let mut cmd = node.command(program)?;
            cmd.args(args);
            let (process, addr) = FixtureProcess::spawn_service_command(cmd);
            Ok(Service { process, addr })
        };
        let listen = |node: &Node| format!("{}:0", node.spec.ip);
        let payments = spawn(
            &nodes.b,
            &fixture("demo-payments"),
            &["-listen", &listen(&nodes.b)],
        )?;
        let orders = spawn(
            &nodes.a,
            orders_bin,
            &[
                "--listen",
                &listen(&nodes.a),
                "--database",
                database,
                "--payments",
                &format!("http://{}", payments.addr),
                "--redis",
                redis,
            ],
        )?;
        let gateway = spawn(
            &nodes.a,
            &fixture("demo-gateway"),
            &[
                "-listen",
                &listen(&nodes.a),
                "-orders",
                &format!("http://{}", orders.addr),
            ],
        )?;
        let worker = spawn(&nodes.b, &fixture("demo-worker"), &["-redis", redis])?;
        Ok(Self {
            gateway,
            orders,
            payments,
            worker,
        })
    }
}
