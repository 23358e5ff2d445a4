//! A fake Directory of Participants on loopback (registration.md KEY-18): its keystore serves
//! JWK Sets at paths (`/openbanking.jwks`, `/<org>/<software>/application.jwks`), which a test
//! can replace (rotation), make fail (outage: a status, a hang past the AS's timeout, a
//! redirect, a huge body) and count the hits of. The AS reaches it over plain http, which
//! `jwks_allowed_hosts` allows for loopback origins only (KEY-10): [`Directory::origin`]; or
//! over https with a test CA's certificate ([`Directory::start_tls`], `crate::tls`).
//!
//! (Signed software statements, for registration, are to be added here next to the keystore.)

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;

/// The Directory's own signing keys (KEY-17).
pub const OPENBANKING_JWKS: &str = "/openbanking.jwks";

/// Where a client's keys live on the Directory's keystore (BR-DCR 9.4).
pub fn application_jwks(org_id: &str, software_id: &str) -> String {
    format!("/{org_id}/{software_id}/application.jwks")
}

/// How a path fails.
#[derive(Debug, Clone)]
pub enum Outage {
    /// Answers with this status and an error body.
    Status(u16),
    /// Waits this long before answering (past the AS's 3 s timeout).
    Hang(Duration),
    /// `302 Found` to this URL (which may well serve a good set: it must not be followed).
    Redirect(String),
    /// A 200 whose body is a JWK Set padded to this many bytes.
    Huge(usize),
}

#[derive(Debug, Clone, Default)]
struct Path {
    set: Option<Value>,
    headers: Vec<(String, String)>,
    outage: Option<Outage>,
    hits: usize,
}

#[derive(Default)]
struct State {
    paths: Mutex<HashMap<String, Path>>,
}

/// A running fake Directory. Dropping it stops it.
pub struct Directory {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Directory {
    /// Starts on a free loopback port, serving nothing yet (every path 404).
    pub fn start() -> Self {
        Self::start_with(None, "127.0.0.1")
    }

    /// As [`Directory::start`], over TLS with `config`'s certificate, its origin
    /// `https://<host>:<port>` (`host` resolving to loopback: `localhost`, `127.0.0.1`). A
    /// client that refuses the certificate never reaches a path (no hit is counted).
    pub fn start_tls(config: Arc<rustls::ServerConfig>, host: &str) -> Self {
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(config)), host)
    }

    fn start_with(tls: Option<tokio_rustls::TlsAcceptor>, host: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = match tls {
            Some(_) => format!("https://{host}:{port}"),
            None => format!("http://{host}:{port}"),
        };
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(State::default());
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let state = served.clone();
                            let tls = tls.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |request| {
                                    let state = state.clone();
                                    async move { Ok::<_, Infallible>(answer(&state, request).await) }
                                });
                                let http = hyper::server::conn::http1::Builder::new();
                                match tls {
                                    None => {
                                        let io = hyper_util::rt::TokioIo::new(stream);
                                        let _ = http.serve_connection(io, service).await;
                                    }
                                    // A handshake the client refuses ends here.
                                    Some(tls) => if let Ok(stream) = tls.accept(stream).await {
                                        let io = hyper_util::rt::TokioIo::new(stream);
                                        let _ = http.serve_connection(io, service).await;
                                    },
                                }
                            });
                        }
                    }
                }
            });
        });
        Self {
            base,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The origin to put on `jwks_allowed_hosts` (and so in `allowed_outbound_hosts`).
    pub fn origin(&self) -> String {
        self.base.clone()
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Serves `set` at `path` from now on (a rotation replaces it), ending any outage there.
    pub fn serve(&self, path: &str, set: Value) {
        self.serve_with(path, set, Vec::new());
    }

    /// As [`Directory::serve`], with response headers (`cache-control`, ...).
    pub fn serve_with(&self, path: &str, set: Value, headers: Vec<(&str, &str)>) {
        let mut paths = self.state.paths.lock().unwrap();
        let entry = paths.entry(path.to_string()).or_default();
        entry.set = Some(set);
        entry.headers = headers
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        entry.outage = None;
    }

    /// Makes `path` fail as `outage` says until [`Directory::restore`] or the next `serve`.
    pub fn fail(&self, path: &str, outage: Outage) {
        let mut paths = self.state.paths.lock().unwrap();
        paths.entry(path.to_string()).or_default().outage = Some(outage);
    }

    /// Ends an outage of `path`: its set is served again.
    pub fn restore(&self, path: &str) {
        if let Some(entry) = self.state.paths.lock().unwrap().get_mut(path) {
            entry.outage = None;
        }
    }

    /// How many requests reached `path`, failed ones included.
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .paths
            .lock()
            .unwrap()
            .get(path)
            .map_or(0, |p| p.hits)
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn answer(
    state: &State,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let found = {
        let mut paths = state.paths.lock().unwrap();
        paths.get_mut(&path).map(|entry| {
            entry.hits += 1;
            entry.clone()
        })
    };
    let respond = |status: u16, headers: &[(String, String)], body: Vec<u8>| {
        let mut response = http::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        for (name, value) in headers {
            response.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        response
    };
    let Some(entry) = found else {
        return respond(404, &[], br#"{"error":"not found"}"#.to_vec());
    };
    let set = entry.set.clone().unwrap_or(Value::Null);
    match entry.outage {
        None if entry.set.is_some() => respond(200, &entry.headers, set.to_string().into_bytes()),
        None => respond(404, &[], br#"{"error":"not found"}"#.to_vec()),
        Some(Outage::Status(status)) => respond(status, &[], br#"{"error":"outage"}"#.to_vec()),
        Some(Outage::Hang(delay)) => {
            tokio::time::sleep(delay).await;
            respond(200, &entry.headers, set.to_string().into_bytes())
        }
        Some(Outage::Redirect(to)) => respond(302, &[("location".into(), to)], Vec::new()),
        Some(Outage::Huge(size)) => {
            // A valid set followed by spaces: only the size is wrong.
            let mut body = set.to_string().into_bytes();
            body.resize(size.max(body.len()), b' ');
            respond(200, &entry.headers, body)
        }
    }
}
