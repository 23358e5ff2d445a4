//! The Wasm side: one engine, one linker with WASI (0.2 and 0.3), `wasi:http` (WASIp3) and the
//! Spin host interfaces the components import (`wasi:keyvalue` store, atomics and batch,
//! `wasi:config`),
//! and per component the instance reuse of Spin's WASIp3 HTTP trigger, through the same
//! `wasmtime_wasi_http::handler::ProxyHandler` that Spin uses: an instance takes new requests
//! while fewer than [`MAX_INSTANCE_CONCURRENT_REUSE`] are in flight on it and it has taken fewer
//! than [`MAX_INSTANCE_REUSE`] in all, so requests interleave inside one instance wherever the
//! guest awaits (reading a body, a timer); otherwise a new instance is made. An instance that
//! trapped is dropped with the requests in flight on it; an idle one is dropped after
//! [`IDLE_INSTANCE_TIMEOUT`], and beyond [`MAX_IDLE`] idle ones per component.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::component::{Component, GuestTaskId, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreContextMut};
pub use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::handler::{
    self as proxy, HandlerState, Proxy, ProxyHandler, ShouldAccept, ViewFn, WorkerExpiration,
    WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p3::{WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::kv::KvOp;
use crate::stores::{CasState, Kv, Swapped};

/// Spin's default `max_instance_reuse_count` for WASIp3: requests one instance takes in all.
pub const MAX_INSTANCE_REUSE: usize = 128;
/// Spin's default `max_instance_concurrent_reuse_count` for WASIp3: requests in flight on one
/// instance at once.
pub const MAX_INSTANCE_CONCURRENT_REUSE: usize = 16;
/// Spin's default `idle_instance_timeout`.
pub const IDLE_INSTANCE_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle instances kept per component (after a burst, the others are dropped at once).
pub const MAX_IDLE: usize = 16;
/// The largest response body collected from a guest.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

wasmtime::component::bindgen!({
    path: "wit",
    world: "ciba:host/imports",
    imports: { default: trappable },
    with: {
        "wasi:keyvalue/store.bucket": Bucket,
        "wasi:keyvalue/atomics.cas": Cas,
    },
});

use wasi::config::store as config;
use wasi::keyvalue::{atomics, batch, store as kv};

/// An open store label, as the guest's `bucket`.
pub struct Bucket {
    label: String,
}

/// A compare-and-swap in progress: what `current` saw (SQLite) or its connection (Redis).
pub struct Cas {
    label: String,
    key: String,
    state: CasState,
}

/// No WASIp3 outbound HTTP (`wasi:http/handler` imported): the components fetch through the
/// WASIp2 `outgoing-handler` ([`crate::outbound`]), so this host answers a WASIp3 request with
/// `HttpRequestDenied`, whatever its destination.
struct NoOutbound;

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, ErrorCode>;
type IoFuture = Box<dyn Future<Output = Result<(), ErrorCode>> + Send>;

impl WasiHttpHooks for NoOutbound {
    fn send_request(
        &mut self,
        _request: http::Request<Body>,
        _options: Option<wasmtime_wasi_http::p3::RequestOptions>,
        _io: IoFuture,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (http::Response<Body>, IoFuture),
                    wasmtime_wasi::TrappableError<ErrorCode>,
                >,
            > + Send,
    > {
        Box::new(async { Err(ErrorCode::HttpRequestDenied.into()) })
    }
}

/// What one component instance's store holds.
pub struct Ctx {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: NoOutbound,
    outbound: crate::outbound::Outbound,
    component: Arc<ComponentEnv>,
}

/// Where a component's stdout and stderr go, and the host's own lines about them.
#[derive(Clone)]
pub enum Logs {
    /// To the host's own (as `spin up` prints them).
    Inherit,
    /// Into a buffer that tests read.
    Capture(MemoryOutputPipe),
}

impl Logs {
    /// Writes one line of the host's own (a trap, a failed component, a broken connection)
    /// where the components' lines go, so that a test reading the logs sees every line the
    /// bundle and its runner print (tests/e2e/secrets.rs).
    pub fn line(&self, line: std::fmt::Arguments<'_>) {
        match self {
            Self::Inherit => eprintln!("{line}"),
            Self::Capture(pipe) => {
                use wasmtime_wasi::p2::OutputStream;
                // Past the buffer's capacity the line is dropped, as the guests' would be.
                let _ = pipe.clone().write(Bytes::from(format!("{line}\n")));
            }
        }
    }
}

/// A shift of the guests' wall clock, for tests that need time to pass (a consent's window,
/// an expiry). `ciba-host` itself never shifts time.
#[derive(Clone, Default)]
pub struct TimeShift(Arc<std::sync::atomic::AtomicI64>);

impl TimeShift {
    /// Moves the guests' clock `seconds` forward.
    pub fn advance(&self, seconds: i64) {
        self.0
            .fetch_add(seconds, std::sync::atomic::Ordering::SeqCst);
    }

    /// How far the guests' clock is ahead.
    pub fn seconds(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

struct ShiftedClock(TimeShift);

impl wasmtime_wasi::HostWallClock for ShiftedClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(1)
    }

    fn now(&self) -> std::time::Duration {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let shift = self.0.0.load(std::sync::atomic::Ordering::SeqCst);
        let shift_abs = std::time::Duration::from_secs(shift.unsigned_abs());
        if shift >= 0 {
            now + shift_abs
        } else {
            now.saturating_sub(shift_abs)
        }
    }
}

/// What a component may see: its variables and its store labels.
pub struct ComponentEnv {
    /// The component id.
    pub id: String,
    /// Its resolved variables.
    pub variables: HashMap<String, String>,
    /// Its `allowed_outbound_hosts`, templates resolved.
    pub allowed_outbound_hosts: Arc<crate::outbound::AllowedHosts>,
    /// Its TLS client configurations (the runtime configuration's `[[client_tls]]`).
    pub tls: crate::tls::ComponentTls,
    /// `key_value_stores`.
    pub key_value_stores: Vec<String>,
    /// The shared store.
    pub kv: Arc<Kv>,
    /// Its logs.
    pub logs: Logs,
    /// A shift of its wall clock, in tests.
    pub time: Option<TimeShift>,
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Ctx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.hooks,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

impl wasmtime_wasi_http::p2::WasiHttpView for Ctx {
    fn http(&mut self) -> wasmtime_wasi_http::p2::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::p2::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl config::Host for Ctx {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, config::Error>> {
        // Spin: an undefined or invalid name reads as none.
        Ok(Ok(self.component.variables.get(&key).cloned()))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, config::Error>> {
        Ok(Ok(self
            .component
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}

impl kv::Host for Ctx {
    fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, kv::Error>> {
        if !self.component.key_value_stores.contains(&identifier) {
            return Ok(Err(kv::Error::AccessDenied));
        }
        // The local host backs only the `default` label, as `spin up` does without a
        // runtime configuration.
        if identifier != "default" {
            return Ok(Err(kv::Error::NoSuchStore));
        }
        Ok(Ok(self.table.push(Bucket { label: identifier })?))
    }
}

fn other(e: String) -> kv::Error {
    kv::Error::Other(e)
}

impl Ctx {
    fn label(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.label.clone())
    }

    /// Counts one key-value call; `Err` when it is the fault to inject (`--fail-kv-op`).
    fn count(&self, op: KvOp) -> Result<(), kv::Error> {
        self.component.kv.faults().check(op).map_err(other)
    }
}

impl kv::HostBucket for Ctx {
    fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::Error>> {
        let label = self.label(&bucket)?;
        if let Err(e) = self.count(KvOp::Get) {
            return Ok(Err(e));
        }
        Ok(self.component.kv.get(&label, &key).map_err(other))
    }

    fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let label = self.label(&bucket)?;
        if let Err(e) = self.count(KvOp::Set) {
            return Ok(Err(e));
        }
        Ok(self.component.kv.set(&label, &key, &value).map_err(other))
    }

    fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let label = self.label(&bucket)?;
        if let Err(e) = self.count(KvOp::Delete) {
            return Ok(Err(e));
        }
        Ok(self.component.kv.delete(&label, &key).map_err(other))
    }

    fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, kv::Error>> {
        let label = self.label(&bucket)?;
        if let Err(e) = self.count(KvOp::Exists) {
            return Ok(Err(e));
        }
        Ok(self.component.kv.exists(&label, &key).map_err(other))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<kv::KeyResponse, kv::Error>> {
        if cursor.is_some() {
            return Ok(Err(kv::Error::Other("cursor not supported".into())));
        }
        let label = self.label(&bucket)?;
        if let Err(e) = self.count(KvOp::ListKeys) {
            return Ok(Err(e));
        }
        Ok(self
            .component
            .kv
            .keys(&label)
            .map(|keys| kv::KeyResponse { keys, cursor: None })
            .map_err(other))
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for Ctx {
    fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, kv::Error>> {
        let label = self.label(&bucket)?;
        if let Err(e) = self.count(KvOp::Increment) {
            return Ok(Err(e));
        }
        Ok(self
            .component
            .kv
            .increment(&label, &key, delta)
            .map_err(other))
    }

    fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let cas = self.table.delete(cas)?;
        if let Err(e) = self.count(KvOp::CasSwap) {
            return Ok(Err(atomics::CasError::StoreError(e)));
        }
        match self
            .component
            .kv
            .cas_swap(&cas.label, &cas.key, cas.state, &value)
        {
            Ok(Swapped::Yes) => Ok(Ok(())),
            // Spin answers a lost race with a fresh handle that has already read the value.
            Ok(Swapped::Failed(state)) => {
                let fresh = self.table.push(Cas {
                    label: cas.label,
                    key: cas.key,
                    state,
                })?;
                Ok(Err(atomics::CasError::CasFailed(fresh)))
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(other(e)))),
        }
    }
}

/// The batch calls as Spin's host makes them (`crates/factor-key-value/src/host.rs`): an empty
/// batch answers at once, touching no data (and is not counted); otherwise one call to the
/// store, counted once ([`KvOp::GetMany`], [`KvOp::SetMany`], [`KvOp::DeleteMany`]).
impl batch::Host for Ctx {
    fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, kv::Error>> {
        let label = self.label(&bucket)?;
        if keys.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        if let Err(e) = self.count(KvOp::GetMany) {
            return Ok(Err(e));
        }
        Ok(self.component.kv.get_many(&label, &keys).map_err(other))
    }

    fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let label = self.label(&bucket)?;
        if key_values.is_empty() {
            return Ok(Ok(()));
        }
        if let Err(e) = self.count(KvOp::SetMany) {
            return Ok(Err(e));
        }
        Ok(self
            .component
            .kv
            .set_many(&label, &key_values)
            .map_err(other))
    }

    fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), kv::Error>> {
        let label = self.label(&bucket)?;
        if keys.is_empty() {
            return Ok(Ok(()));
        }
        if let Err(e) = self.count(KvOp::DeleteMany) {
            return Ok(Err(e));
        }
        Ok(self.component.kv.delete_many(&label, &keys).map_err(other))
    }
}

impl atomics::HostCas for Ctx {
    fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, kv::Error>> {
        let label = self.label(&bucket)?;
        // On Redis, Spin opens the handle's own connection here.
        let state = match self.component.kv.cas(&key) {
            Ok(state) => state,
            Err(e) => return Ok(Err(other(e))),
        };
        Ok(Ok(self.table.push(Cas { label, key, state })?))
    }

    fn current(
        &mut self,
        cas: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv::Error>> {
        let (label, key) = {
            let c = self.table.get(&cas)?;
            (c.label.clone(), c.key.clone())
        };
        if let Err(e) = self.count(KvOp::CasCurrent) {
            return Ok(Err(e));
        }
        let state = &mut self.table.get_mut(&cas)?.state;
        Ok(self
            .component
            .kv
            .cas_current(&label, &key, state)
            .map_err(other))
    }

    fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

/// The engine's settings: wasmtime's defaults (Cranelift, its default optimisation level),
/// with the component model's async support, as WASIp3 needs. `ciba-host wasm-bench` runs on
/// the same settings, so its figures are the components'.
pub fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model_async(true);
    config
}

/// The engine and linker, made once per process, and the components compiled so far.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Ctx>,
    compiled: Mutex<HashMap<Vec<u8>, Component>>,
}

impl Runtime {
    /// An engine on [`engine_config`].
    pub fn new() -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config())?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        // `wasi:http/outgoing-handler` 0.2: what the components fetch with (crate::outbound).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        Imports::add_to_linker::<Ctx, HasSelf<Ctx>>(&mut linker, |ctx| ctx)?;
        Ok(Self {
            engine,
            linker,
            compiled: Mutex::new(HashMap::new()),
        })
    }

    /// Compiles a component, once per distinct binary (a restart in the same process reuses
    /// the machine code).
    pub fn compile(&self, wasm: &[u8]) -> anyhow::Result<Component> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(wasm).to_vec();
        if let Some(c) = self
            .compiled
            .lock()
            .ok()
            .and_then(|m| m.get(&digest).cloned())
        {
            return Ok(c);
        }
        let component = Component::new(&self.engine, wasm)?;
        if let Ok(mut cache) = self.compiled.lock() {
            cache.insert(digest, component.clone());
        }
        Ok(component)
    }

    /// Links a compiled component for serving.
    pub fn prepare(&self, component: &Component, env: ComponentEnv) -> anyhow::Result<Handler> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "component {} imports what this host does not provide",
                    env.id
                )
            })?;
        let pre = ServicePre::new(pre)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "component {} does not export wasi:http/handler@0.3.0",
                    env.id
                )
            })?;
        Ok(Handler {
            proxy: ProxyHandler::new(Instances {
                engine: self.engine.clone(),
                pre,
                env: Arc::new(env),
                idle: Arc::new(AtomicUsize::new(0)),
            }),
        })
    }
}

/// What makes a component's instances, for the [`ProxyHandler`].
struct Instances {
    engine: Engine,
    pre: ServicePre<Ctx>,
    env: Arc<ComponentEnv>,
    /// How many of its instances are idle.
    idle: Arc<AtomicUsize>,
}

fn http_view(ctx: &mut Ctx) -> WasiHttpCtxView<'_> {
    <Ctx as WasiHttpView>::http(ctx)
}

impl HandlerState for Instances {
    type StoreData = Ctx;
    type WorkerExpiration = IdleExpiry;
    type WorkerState = Reuse;

    async fn instantiate(&self) -> wasmtime::Result<proxy::Instance<Ctx, IdleExpiry, Reuse>> {
        let mut wasi = WasiCtxBuilder::new();
        match &self.env.logs {
            Logs::Inherit => wasi.inherit_stdout().inherit_stderr(),
            Logs::Capture(pipe) => wasi.stdout(pipe.clone()).stderr(pipe.clone()),
        };
        if let Some(shift) = &self.env.time {
            wasi.wall_clock(ShiftedClock(shift.clone()));
        }
        let wasi = wasi.build();
        let mut store = Store::new(
            &self.engine,
            Ctx {
                table: ResourceTable::new(),
                wasi,
                http: WasiHttpCtx::new(),
                hooks: NoOutbound,
                outbound: crate::outbound::Outbound {
                    id: self.env.id.clone(),
                    allowed: self.env.allowed_outbound_hosts.clone(),
                    logs: self.env.logs.clone(),
                    tls: self.env.tls.clone(),
                },
                component: self.env.clone(),
            },
        );
        let service = self.pre.instantiate_async(&mut store).await?;
        Ok(proxy::Instance {
            store,
            proxy: Proxy::P3(service),
            view: ViewFn::P3(http_view),
            expiration: IdleExpiry {
                sleep: Box::pin(tokio::time::sleep(IDLE_INSTANCE_TIMEOUT)),
                idle: self.idle.clone(),
                counted: false,
            },
            state: Reuse {
                id: self.env.id.clone(),
                logs: self.env.logs.clone(),
            },
        })
    }
}

/// Spin's reuse policy for one instance.
struct Reuse {
    id: String,
    logs: Logs,
}

impl WorkerState for Reuse {
    type StoreData = Ctx;
    type RequestId = ();

    fn should_accept_request(&self, concurrent_count: usize, total_count: usize) -> ShouldAccept {
        if total_count >= MAX_INSTANCE_REUSE {
            ShouldAccept::Never
        } else if concurrent_count >= MAX_INSTANCE_CONCURRENT_REUSE {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, Ctx>,
        _id: (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        // Spin sets no request timeout by default.
        Box::pin(std::future::pending())
    }

    fn drop(&self, store: Store<Ctx>, result: wasmtime::Result<()>) {
        // A trap. ("worker panicked" is also what a worker cancelled at shutdown reports, and
        // a real panic has printed its own message.)
        if let Err(e) = result
            && e.to_string() != "worker panicked"
        {
            self.logs.line(format_args!(
                "component {}: instance dropped: {e:?}",
                self.id
            ));
        }
        drop(store);
    }
}

/// Ends an instance that has been idle for [`IDLE_INSTANCE_TIMEOUT`], or at once when
/// [`MAX_IDLE`] others of its component are idle already.
struct IdleExpiry {
    sleep: Pin<Box<tokio::time::Sleep>>,
    idle: Arc<AtomicUsize>,
    /// Whether this instance is counted in `idle`.
    counted: bool,
}

impl IdleExpiry {
    fn uncount(&mut self) {
        if self.counted {
            self.counted = false;
            self.idle.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for IdleExpiry {
    fn drop(&mut self) {
        self.uncount();
    }
}

impl WorkerExpiration for IdleExpiry {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let this = self.get_mut();
        if status != WorkerStatus::Idle {
            this.uncount();
            return Poll::Pending;
        }
        if !this.counted {
            if this.idle.fetch_add(1, Ordering::SeqCst) >= MAX_IDLE {
                this.idle.fetch_sub(1, Ordering::SeqCst);
                return Poll::Ready(());
            }
            this.counted = true;
        }
        let deadline = tokio::time::Instant::from_std(start + IDLE_INSTANCE_TIMEOUT);
        if this.sleep.deadline() != deadline {
            this.sleep.as_mut().reset(deadline);
        }
        this.sleep.as_mut().poll(cx)
    }
}

/// Serves requests with one component, reusing its instances as Spin does.
pub struct Handler {
    proxy: ProxyHandler<Instances>,
}

/// The response of a guest, fully read.
pub type GuestResponse = http::Response<Full<Bytes>>;

impl Handler {
    /// The component's id.
    pub fn id(&self) -> &str {
        &self.proxy.state().env.id
    }

    /// Where its logs go.
    pub fn logs(&self) -> &Logs {
        &self.proxy.state().env.logs
    }

    /// Runs one request through the component, on an instance that may be serving others at
    /// the same time, and reads the whole response.
    pub async fn handle<B>(&self, request: http::Request<B>) -> anyhow::Result<GuestResponse>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::p3::bindings::http::types::ErrorCode>,
    {
        let request = request.map(|body| {
            body.map_err(|e| proxy::ErrorCode::P3(e.into()))
                .boxed_unsync()
        });
        let response = self
            .proxy
            .handle((), request)
            .await
            .map_err(|e| anyhow::anyhow!("the component failed: {e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the component's response: {e}"))?
            .to_bytes();
        Ok(http::Response::from_parts(parts, Full::new(body)))
    }
}
