//! The HTTP side: accept connections, route, add Spin's request headers, run the component.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;

use crate::kv::{KvFaults, SqliteKv};
use crate::kv_redis::RedisKv;
use crate::manifest::Manifest;
use crate::routes::Router;
use crate::runtime::{ComponentEnv, Handler, Logs, Runtime, TimeShift};
use crate::stores::Kv;
use crate::tls::ClientTls;
use crate::variables::{self, Overrides};

/// A loaded application: its routes and a handler per component.
pub struct App {
    router: Router,
    handlers: HashMap<String, Arc<Handler>>,
    /// Where the host's own lines go: with the components' logs.
    logs: Logs,
}

/// How the host runs the components.
pub struct HostOptions<'a> {
    /// Where the `default` store lives.
    pub store: StoreLocation<'a>,
    /// Where their logs go.
    pub logs: Logs,
    /// A shift of their clock (tests only).
    pub time: Option<TimeShift>,
    /// The count of their key-value calls, and a fault to inject (`--fail-kv-op`, tests).
    pub faults: KvFaults,
    /// The runtime configuration's `[[client_tls]]` entries (none: Spin's default roots).
    pub client_tls: ClientTls,
}

/// Where the default key-value store lives.
pub enum StoreLocation<'a> {
    /// A SQLite file (Spin: `<state dir>/sqlite_key_value.db`).
    File(&'a Path),
    /// Memory only (Spin: `--state-dir ""`).
    Memory,
    /// A Redis server (a runtime configuration's `type = "redis"`, `url = ...`).
    Redis(&'a str),
}

impl App {
    /// Loads the manifest's components with their resolved variables.
    pub fn load(
        runtime: &Runtime,
        manifest: &Manifest,
        overrides: &Overrides,
        env: &HashMap<String, String>,
        options: HostOptions<'_>,
    ) -> anyhow::Result<Self> {
        let vars = variables::resolve(manifest, overrides, env)?;
        let mut outbound = variables::resolve_allowed_hosts(manifest, overrides, env)?;
        let kv = Arc::new(match options.store {
            StoreLocation::File(path) => {
                Kv::Sqlite(SqliteKv::open(path)?.with_faults(options.faults))
            }
            StoreLocation::Memory => Kv::Sqlite(SqliteKv::in_memory()?.with_faults(options.faults)),
            StoreLocation::Redis(url) => Kv::Redis(RedisKv::open(url)?.with_faults(options.faults)),
        });
        let router = Router::new(&manifest.trigger.http);
        let mut handlers = HashMap::new();
        for route in router.routes() {
            if handlers.contains_key(&route.component) {
                continue;
            }
            let decl = &manifest.component[&route.component];
            let path = manifest.source_path(decl);
            let wasm = std::fs::read(&path).with_context(|| {
                format!(
                    "component {}: cannot read {} (build it first)",
                    route.component,
                    path.display()
                )
            })?;
            let component = runtime
                .compile(&wasm)
                .with_context(|| format!("component {}: not a valid component", route.component))?;
            let env = ComponentEnv {
                id: route.component.clone(),
                variables: vars.get(&route.component).cloned().unwrap_or_default(),
                allowed_outbound_hosts: Arc::new(
                    outbound.remove(&route.component).unwrap_or_default(),
                ),
                tls: options.client_tls.for_component(&route.component),
                key_value_stores: decl.key_value_stores.clone(),
                kv: kv.clone(),
                logs: options.logs.clone(),
                time: options.time.clone(),
            };
            handlers.insert(
                route.component.clone(),
                Arc::new(runtime.prepare(&component, env)?),
            );
        }
        Ok(Self {
            router,
            handlers,
            logs: options.logs,
        })
    }

    /// The routes, for printing.
    pub fn router(&self) -> &Router {
        &self.router
    }

    async fn answer(
        &self,
        request: hyper::Request<Incoming>,
        client: SocketAddr,
    ) -> hyper::Response<Full<Bytes>> {
        let path = request.uri().path().to_string();
        if let Some(rest) = path.strip_prefix("/.well-known/spin/") {
            return match rest {
                "health" => plain(200, "OK"),
                _ => plain(404, ""),
            };
        }
        let Some(route) = self.router.find(&path) else {
            return plain(404, "");
        };
        let Some(handler) = self.handlers.get(route.component) else {
            return plain(500, "");
        };
        let (mut parts, body) = request.into_parts();
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let full_url = format!("http://{host}{path_and_query}");
        let Ok(uri) = http::Uri::try_from(full_url.as_str()) else {
            return plain(400, "");
        };
        parts.uri = uri;
        // Spin appends its headers after the client's (crates/trigger-http/src/headers.rs).
        let spin_headers = [
            ("spin-full-url", full_url.as_str()),
            ("spin-path-info", route.path_info),
            ("spin-matched-route", route.raw),
            ("spin-base-path", "/"),
            ("spin-raw-component-route", route.raw),
            ("spin-component-route", route.base),
            ("spin-client-addr", &client.to_string()),
        ];
        for (name, value) in spin_headers {
            if let Ok(value) = http::HeaderValue::from_str(value) {
                parts.headers.append(name, value);
            }
        }
        let body = body.map_err(|_| ErrorCode::HttpProtocolError);
        let request = http::Request::from_parts(parts, body);
        match handler.handle(request).await {
            Ok(response) => response,
            Err(e) => {
                handler
                    .logs()
                    .line(format_args!("component {} failed: {e:#}", handler.id()));
                plain(500, "")
            }
        }
    }
}

fn plain(status: u16, body: &'static str) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let app = app.clone();
        let logs = app.logs.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let app = app.clone();
                async move { Ok::<_, std::convert::Infallible>(app.answer(request, client).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
                && !e.is_incomplete_message()
            {
                logs.line(format_args!("connection from {client}: {e}"));
            }
        });
    }
}
