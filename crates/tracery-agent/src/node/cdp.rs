//! One Chrome DevTools Protocol session over the inspector's WebSocket: commands are
//! `chromiumoxide_cdp`'s generated types, answers are matched by id, and two events are
//! kept: the scripts V8 has parsed, and the capture's binding calls.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use chromiumoxide_cdp::cdp::js_protocol::{
    debugger::EventScriptParsed, runtime::EventBindingCalled,
};
use chromiumoxide_types::{Command, MethodCall};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value as Json;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::{condition::BINDING, NodeError};

/// How long one command may take before the session is considered stuck.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A script V8 reported with `Debugger.scriptParsed`.
#[derive(Clone, Debug)]
pub struct Script {
    /// V8's id for it in this session.
    pub id: String,
    /// Its URL: `file:///..` for files, `node:..` for Node's own modules.
    pub url: String,
    /// `sourceMappingURL` of the script, when it has one.
    pub source_map_url: Option<String>,
}

type Pending = Arc<Mutex<HashMap<usize, oneshot::Sender<Result<Json, String>>>>>;

/// A live CDP session. Dropping it closes the WebSocket.
pub struct CdpSession {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicUsize,
    scripts: Arc<Mutex<Vec<Script>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl CdpSession {
    /// Opens the session on `ws_url` over `stream` (connected inside the target's network
    /// namespace); binding calls go to `hits` as `(pid, payload)`.
    pub async fn open(
        pid: u32,
        ws_url: &str,
        stream: std::net::TcpStream,
        hits: std::sync::mpsc::Sender<(u32, String)>,
    ) -> Result<Self, NodeError> {
        let ws_err = |e: tokio_tungstenite::tungstenite::Error| NodeError::WebSocket {
            pid,
            reason: e.to_string(),
        };
        stream
            .set_nonblocking(true)
            .map_err(|source| NodeError::Io {
                action: "preparing the inspector connection",
                source,
            })?;
        let stream = tokio::net::TcpStream::from_std(stream).map_err(|source| NodeError::Io {
            action: "preparing the inspector connection",
            source,
        })?;
        let (ws, _) = tokio_tungstenite::client_async(ws_url, stream)
            .await
            .map_err(ws_err)?;
        let (mut sink, mut source) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let pending: Pending = Arc::default();
        let scripts: Arc<Mutex<Vec<Script>>> = Arc::default();
        let (p, s) = (pending.clone(), scripts.clone());
        let reader = tokio::spawn(async move {
            while let Some(Ok(m)) = source.next().await {
                let Message::Text(text) = m else { continue };
                let Ok(msg) = serde_json::from_str::<Json>(text.as_str()) else {
                    continue;
                };
                dispatch(pid, msg, &p, &s, &hits);
            }
            // The inspector closed: every call still waiting fails now.
            p.lock().unwrap_or_else(|e| e.into_inner()).clear();
        });
        Ok(Self {
            out,
            pending,
            next_id: AtomicUsize::new(1),
            scripts,
            reader,
        })
    }

    /// Sends `cmd` and waits for its answer.
    pub async fn call<C: Command>(&self, cmd: C) -> Result<C::Response, NodeError> {
        let method = cmd.identifier().to_string();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let params = serde_json::to_value(&cmd).map_err(|e| NodeError::Protocol {
            method: method.clone(),
            reason: e.to_string(),
        })?;
        let call = MethodCall {
            id: chromiumoxide_types::CallId::new(id),
            method: method.clone().into(),
            session_id: None,
            params,
        };
        let text = serde_json::to_string(&call).expect("a method call serializes");
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        if self.out.send(Message::text(text)).is_err() {
            return Err(NodeError::Closed { method });
        }
        let answer = match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => return Err(NodeError::Closed { method }),
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                return Err(NodeError::Timeout {
                    method,
                    after: CALL_TIMEOUT,
                });
            }
        };
        let result = answer.map_err(|reason| NodeError::Protocol {
            method: method.clone(),
            reason,
        })?;
        C::response_from_value(result).map_err(|e| NodeError::Protocol {
            method,
            reason: format!("unexpected answer: {e}"),
        })
    }

    /// Sends `cmd` without waiting for an answer (for `inspector.close()`, whose answer
    /// may never come: the connection closes under it).
    pub fn send<C: Command>(&self, cmd: C) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let call = MethodCall {
            id: chromiumoxide_types::CallId::new(id),
            method: cmd.identifier(),
            session_id: None,
            params: serde_json::to_value(&cmd).unwrap_or(Json::Null),
        };
        if let Ok(text) = serde_json::to_string(&call) {
            let _ = self.out.send(Message::text(text));
        }
    }

    /// The scripts V8 has parsed so far (all of them are reported on `Debugger.enable`).
    pub fn scripts(&self) -> Vec<Script> {
        self.scripts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// True once the inspector closed the connection.
    pub fn is_closed(&self) -> bool {
        self.reader.is_finished()
    }
}

impl Drop for CdpSession {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn dispatch(
    pid: u32,
    msg: Json,
    pending: &Pending,
    scripts: &Mutex<Vec<Script>>,
    hits: &std::sync::mpsc::Sender<(u32, String)>,
) {
    if let Some(id) = msg.get("id").and_then(Json::as_u64) {
        let waiter = pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(id as usize));
        if let Some(w) = waiter {
            let answer = match msg.get("error") {
                Some(e) => Err(e["message"].as_str().unwrap_or("error").to_owned()),
                None => Ok(msg.get("result").cloned().unwrap_or(Json::Null)),
            };
            let _ = w.send(answer);
        }
        return;
    }
    let method = msg["method"].as_str().unwrap_or("");
    let Some(mut params) = msg.get("params").cloned() else {
        return;
    };
    if method == EventBindingCalled::IDENTIFIER {
        if let Ok(ev) = serde_json::from_value::<EventBindingCalled>(params) {
            if ev.name == BINDING {
                let _ = hits.send((pid, ev.payload));
            }
        }
    } else if method == EventScriptParsed::IDENTIFIER {
        // The generated type follows a newer protocol than Node's V8 speaks: fields Node
        // does not send yet are filled with their empty values.
        if let Some(o) = params.as_object_mut() {
            o.entry("buildId").or_insert(Json::String(String::new()));
            o.entry("hash").or_insert(Json::String(String::new()));
            o.entry("executionContextId").or_insert(Json::from(0));
        }
        if let Ok(ev) = serde_json::from_value::<EventScriptParsed>(params) {
            scripts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Script {
                    id: ev.script_id.inner().clone(),
                    url: ev.url,
                    source_map_url: ev.source_map_url.filter(|u| !u.is_empty()),
                });
        }
    }
}
