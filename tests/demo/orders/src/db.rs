//! PostgreSQL connections, each driven by the request that holds it.
//!
//! tokio-postgres splits a connection into a `Client` and a `Connection` future that does
//! the socket I/O; the usual `tokio::spawn(connection)` (and pools built on it) would do
//! every request's I/O on one background task. Driving the connection in the request's
//! own task keeps a request's queries its own: Tracery holds a frozen request's messages
//! by the task that sends them. And `query_typed` sends Parse, Bind and Execute in one
//! write, so a held INSERT shows its SQL and its values together.

use std::{future::Future, pin::Pin, sync::Mutex};

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::{tls::NoTlsStream, Client, Config, Connection, NoTls, Socket};

type Driver = Pin<Box<Connection<Socket, NoTlsStream>>>;

struct Conn {
    client: Client,
    driver: Driver,
}

/// At most `size` connections, opened as needed and reused.
pub struct Db {
    config: Config,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
}

/// A connection lent to one request; back to the pool on drop unless it broke.
pub struct Lease<'a> {
    db: &'a Db,
    conn: Option<Conn>,
    _permit: SemaphorePermit<'a>,
}

impl Db {
    pub fn new(config: Config, size: usize) -> Self {
        Self {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size),
        }
    }

    /// An idle connection, or a new one once fewer than `size` are lent.
    pub async fn get(&self) -> Result<Lease<'_>, tokio_postgres::Error> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                Conn {
                    client,
                    driver: Box::pin(connection),
                }
            }
        };
        Ok(Lease {
            db: self,
            conn: Some(conn),
            _permit: permit,
        })
    }
}

impl Lease<'_> {
    /// Runs `query` on the connection, driving its I/O here until the query is done.
    pub async fn run<'c, T, F>(
        &'c mut self,
        query: impl FnOnce(&'c Client) -> F,
    ) -> Result<T, tokio_postgres::Error>
    where
        F: Future<Output = Result<T, tokio_postgres::Error>> + 'c,
    {
        let Some(Conn { client, driver }) = self.conn.as_mut() else {
            unreachable!("a lease holds its connection until dropped");
        };
        let query = query(client);
        tokio::pin!(query);
        tokio::select! {
            r = &mut query => r,
            ended = driver.as_mut() => match ended {
                // The connection ended (the server closed it, or it failed): its client is
                // closed now, so the query fails with why, and the lease drops it.
                Err(e) => Err(e),
                Ok(()) => query.await,
            },
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            if !c.client.is_closed() {
                self.db
                    .idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(c);
            }
        }
    }
}
