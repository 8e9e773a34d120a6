//! MongoDB: all of a hit's queries in one snapshot session (reads at one `atClusterTime`).

use mongodb::{
    bson::{Bson, Document},
    options::ClientOptions,
    Client, ClientSession,
};
use tokio::sync::OnceCell;

use super::{ClusterTime, Consistency, Read, Rows};
use crate::{
    capture::{mongodb::param_to_bson, BoundQuery, CaptureQuery, MongoOperation, MongoQuery},
    config::{CaptureLimits, DatabaseConfig},
    param::Param,
};

/// The client and the URL's database, made on first use (a failure is retried next hit).
#[derive(Default)]
pub(super) struct MongoClient {
    client: OnceCell<(Client, String)>,
}

impl MongoClient {
    async fn client(
        &self,
        config: &DatabaseConfig,
        limits: &CaptureLimits,
    ) -> Result<&(Client, String), String> {
        self.client
            .get_or_try_init(|| async {
                let mut options = ClientOptions::parse(config.url.expose_secret())
                    .await
                    .map_err(|e| format!("bad MongoDB URL: {e}"))?;
                // Unreachable servers fail within the capture's time, not after 30 s.
                options.server_selection_timeout = Some(limits.statement_timeout());
                options.connect_timeout = Some(limits.statement_timeout());
                options.app_name = Some("tracery-capture".into());
                let database = options.default_database.clone().ok_or_else(|| {
                    "the MongoDB URL names no database; add it as the path, \
                     e.g. mongodb://host:27017/shop"
                        .to_owned()
                })?;
                let client = Client::with_options(options)
                    .map_err(|e| format!("cannot create the MongoDB client: {e}"))?;
                Ok::<_, String>((client, database))
            })
            .await
    }

    pub(super) async fn read(
        &self,
        config: &DatabaseConfig,
        queries: &[(&BoundQuery, &[&Param])],
        limits: &CaptureLimits,
    ) -> Result<Read, String> {
        let (client, database) = self.client(config, limits).await?;
        let mut session = client
            .start_session()
            .snapshot(true)
            .await
            .map_err(|e| format!("cannot start a MongoDB snapshot session: {e}"))?;
        let database = client.database(database);
        let mut outcomes = Vec::with_capacity(queries.len());
        for (query, values) in queries {
            let CaptureQuery::Mongodb(mongo) = query.spec.query() else {
                outcomes.push(Err("internal: not a MongoDB query".into()));
                continue;
            };
            let values: Vec<Bson> = values.iter().map(|v| param_to_bson(v)).collect();
            outcomes.push(run_one(&database, &mut session, mongo, &values, limits).await);
        }
        let at_cluster_time = session.snapshot_time().map(|t| ClusterTime {
            time: t.time,
            increment: t.increment,
        });
        let read_at = at_cluster_time.map(|t| i64::from(t.time) * 1_000_000);
        // The session is lazy: with no snapshot time and no success, nothing was read.
        let consistency = if at_cluster_time.is_none() && outcomes.iter().all(Result::is_err) {
            Consistency::NotRead
        } else {
            Consistency::MongodbSnapshot { at_cluster_time }
        };
        Ok(Read {
            consistency,
            read_at,
            outcomes,
        })
    }
}

async fn run_one(
    database: &mongodb::Database,
    session: &mut ClientSession,
    query: &MongoQuery,
    values: &[Bson],
    limits: &CaptureLimits,
) -> Result<Rows, String> {
    let collection = database.collection::<Document>(&query.collection);
    let keep = limits.max_rows + 1;
    let mut cursor = match query.bind(values) {
        MongoOperation::Find { filter, projection } => {
            let mut find = collection
                .find(filter)
                .limit(i64::try_from(keep).unwrap_or(i64::MAX))
                .max_time(limits.statement_timeout());
            if let Some(projection) = projection {
                find = find.projection(projection);
            }
            find.session(&mut *session).await
        }
        MongoOperation::Aggregate { pipeline } => {
            collection
                .aggregate(pipeline)
                .max_time(limits.statement_timeout())
                .session(&mut *session)
                .await
        }
    }
    .map_err(|e| e.to_string())?;
    let mut documents = Vec::new();
    while documents.len() < keep {
        match cursor.next(&mut *session).await {
            Some(Ok(document)) => documents.push(Bson::Document(document).into_relaxed_extjson()),
            Some(Err(e)) => return Err(e.to_string()),
            None => break,
        }
    }
    Ok(Rows::limited(documents, limits))
}
