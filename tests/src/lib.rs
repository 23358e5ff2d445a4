//! The end-to-end harness: builds the components with the manifest's own build commands,
//! starts the local host in this process on a free loopback port, and speaks real HTTP/1.1
//! to it.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use ciba_host::kv::KvFaults;
use ciba_host::manifest::Manifest;
use ciba_host::runtime::{Logs, MemoryOutputPipe, Runtime, TimeShift};
use ciba_host::server::{App, HostOptions, StoreLocation};
use ciba_host::tls::ClientTls;
use ciba_host::variables::Overrides;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The bundle's manifest.
pub fn bundle_manifest() -> PathBuf {
    root().join("spin.toml")
}

/// The key-value probe's manifest (test only).
pub fn probe_manifest() -> PathBuf {
    root().join("tests/kv-probe/spin.toml")
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new().unwrap())
}

/// Builds every component once per test run, with the build commands of the manifests.
fn build_once() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        for manifest in [bundle_manifest(), probe_manifest()] {
            ciba_host::build::build_all(&Manifest::load(&manifest).unwrap()).unwrap();
        }
    });
}

/// The `ciba-host` binary, built once per test run (`cargo build -p ciba-host`).
pub fn host_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args(["build", "-p", "ciba-host", "--bin", "ciba-host"])
                .current_dir(root())
                .status()
                .unwrap();
            assert!(status.success(), "cargo build -p ciba-host failed");
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root().join("target"));
            target.join("debug").join("ciba-host")
        })
        .clone()
}

pub mod assertion;
pub mod ciba;
pub mod dcr;
pub mod directory;
pub mod tls;

/// Keys and registrations generated once per test run (never committed).
pub struct Material {
    /// The current signing key (private JWK).
    pub signing: Value,
    /// A retired signing key still published (KEY-6/7).
    pub retired: Value,
    /// The encryption key.
    pub encryption: Value,
    /// A client's public key.
    pub client_public: Value,
    /// `tpp-1`'s private key (its public half is `client_public`).
    pub client_key: devkeys::rsa::RsaPrivateKey,
    /// `tpp-2`'s private key.
    pub other_key: devkeys::rsa::RsaPrivateKey,
}

/// The shared material.
pub fn material() -> &'static Material {
    static MATERIAL: OnceLock<Material> = OnceLock::new();
    MATERIAL.get_or_init(|| {
        let client = devkeys::rsa_key(2048).unwrap();
        let other = devkeys::rsa_key(2048).unwrap();
        Material {
            signing: devkeys::signing_jwk("sig-2026").unwrap(),
            retired: devkeys::signing_jwk("sig-2025").unwrap(),
            encryption: devkeys::encryption_jwk("enc-2026").unwrap(),
            client_public: devkeys::public_jwk(
                &devkeys::rsa::RsaPublicKey::from(&client),
                "tpp-key-1",
                "sig",
                "PS256",
            ),
            client_key: client,
            other_key: other,
        }
    })
}

/// A client registration using `private_key_jwt`, with `tpp-1`'s key (or `tpp-2`'s for
/// the client named `tpp-2`).
pub fn client(id: &str, scope: &str) -> Value {
    let m = material();
    let key = if id == "tpp-2" {
        devkeys::public_jwk(
            &devkeys::rsa::RsaPublicKey::from(&m.other_key),
            "tpp-key-2",
            "sig",
            "PS256",
        )
    } else {
        m.client_public.clone()
    };
    json!({
        "client_id": id,
        "jwks": { "keys": [key] },
        "token_endpoint_auth_method": "private_key_jwt",
        "scope": scope,
        "grant_types": ["urn:openid:params:grant-type:ciba", "client_credentials", "refresh_token"],
        "backchannel_token_delivery_mode": "poll",
    })
}

/// Every variable the bundle needs, valid, with mTLS on. The issuer is set at start.
pub fn variables() -> HashMap<&'static str, String> {
    let m = material();
    HashMap::from([
        (
            "signing_keys",
            json!({ "keys": [m.signing, m.retired] }).to_string(),
        ),
        (
            "encryption_keys",
            json!({ "keys": [m.encryption] }).to_string(),
        ),
        (
            "clients",
            json!([
                client("tpp-1", "openid consents accounts"),
                client("tpp-2", "openid payments")
            ])
            .to_string(),
        ),
        (
            "users",
            json!([{ "sub": "holder-1", "cpf": "52998224725", "name": "Holder" }]).to_string(),
        ),
        (
            "device_api_token",
            "a-device-token-of-at-least-32-characters".to_string(),
        ),
        ("client_cert_header", "x-client-cert".to_string()),
        (
            "device_api_certificates",
            json!([device_certificate().1]).to_string(),
        ),
    ])
    .into_iter()
    // The abuse limits (BCA-31, consent lodging, client_credentials) lifted for the tests that
    // are about something else: they make many requests for one holder and move the clock.
    // spin.toml ships production values; tests/e2e/rate_limits.rs sets them.
    .chain(ABUSE_LIMITS.map(|name| (name, LIFTED_LIMIT.to_string())))
    .collect()
}

/// The abuse-limit variables (BCA-31, issue 16), and the value [`variables`] gives each.
pub use ciba_host::dev::{ABUSE_LIMITS, LIFTED_LIMIT};

/// A running host. Dropping it stops the server.
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The components' stdout and stderr.
    pub logs: MemoryOutputPipe,
    /// The components' clock: `time.advance(3600)` lets an hour pass.
    pub time: TimeShift,
    /// The count of the components' key-value calls: `faults.arm(k)` fails the k-th call from
    /// now, once (tests/e2e/faults.rs).
    pub faults: KvFaults,
    db: Option<PathBuf>,
    /// A `ciba-host up` process serving this (see [`Server::process`]).
    process: Option<std::process::Child>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Where a test server keeps its key-value store.
pub enum Store {
    /// In memory.
    Memory,
    /// A SQLite file in this folder, kept across restarts.
    Dir(PathBuf),
    /// A Redis server at this URL (a runtime configuration's `type = "redis"`).
    Redis(String),
}

impl Server {
    /// The bundle with `vars` (the issuer is added: the server's own URL).
    pub fn bundle(vars: HashMap<&'static str, String>) -> Self {
        Self::try_start(&bundle_manifest(), vars, Store::Memory).unwrap()
    }

    /// The bundle with its store in `dir` (kept across restarts).
    pub fn bundle_in(vars: HashMap<&'static str, String>, dir: &Path) -> Self {
        Self::try_start(&bundle_manifest(), vars, Store::Dir(dir.to_path_buf())).unwrap()
    }

    /// The bundle with its store in a fresh folder, so tests can count what it holds.
    pub fn bundle_on_disk(vars: HashMap<&'static str, String>, name: &str) -> Self {
        Self::try_start(&bundle_manifest(), vars, Store::Dir(temp_dir(name))).unwrap()
    }

    /// The bundle with its store on the Redis server `redis` (shared with other servers on it).
    pub fn bundle_on_redis(vars: HashMap<&'static str, String>, redis: &RedisServer) -> Self {
        Self::try_start(&bundle_manifest(), vars, Store::Redis(redis.url())).unwrap()
    }

    /// The bundle served by a `ciba-host up` process of its own (built once per run), with
    /// `vars` as `--variable`s and `args` added (e.g. `--runtime-config-file FILE`). Its
    /// `time`, `faults` and `logs` are not connected (the process has its own); its issuer is
    /// `vars["issuer"]` or its own URL.
    pub fn process(vars: HashMap<&'static str, String>, args: &[&str]) -> Self {
        build_once();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let base = format!("http://{addr}");
        let mut command = std::process::Command::new(host_binary());
        command
            .args(["up", "--from"])
            .arg(bundle_manifest())
            .args(["--listen", &addr.to_string(), "--state-dir", ""])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if !vars.contains_key("issuer") {
            command.arg("--variable").arg(format!("issuer={base}"));
        }
        for (name, value) in vars {
            command.arg("--variable").arg(format!("{name}={value}"));
        }
        let mut child = command.spawn().unwrap();
        // It compiles every component first: up to two minutes on a loaded machine.
        for _ in 0..2400 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Self {
                    base,
                    logs: MemoryOutputPipe::new(1),
                    time: TimeShift::default(),
                    faults: KvFaults::default(),
                    db: None,
                    process: Some(child),
                    stop: None,
                    thread: None,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("ciba-host up exited: {status}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("ciba-host up did not listen on {addr}");
    }

    /// The key-value probe.
    pub fn probe(store: Store) -> Self {
        Self::try_start(&probe_manifest(), HashMap::new(), store).unwrap()
    }

    /// Starts `manifest` on a free port; an error if the host refuses to start.
    pub fn try_start(
        manifest: &Path,
        vars: HashMap<&'static str, String>,
        store: Store,
    ) -> anyhow::Result<Self> {
        build_once();
        Self::try_start_manifest(Manifest::load(manifest)?, vars, store)
    }

    /// Starts a manifest already loaded (and perhaps edited by the test: a component's
    /// `allowed_outbound_hosts`, say) on a free port.
    pub fn try_start_manifest(
        manifest: Manifest,
        vars: HashMap<&'static str, String>,
        store: Store,
    ) -> anyhow::Result<Self> {
        Self::try_start_with_tls(manifest, vars, store, ClientTls::default())
    }

    /// As [`Server::try_start_manifest`], with a runtime configuration's `[[client_tls]]`
    /// entries (`ClientTls::read` of the file, as `--runtime-config-file` reads it).
    pub fn try_start_with_tls(
        manifest: Manifest,
        vars: HashMap<&'static str, String>,
        store: Store,
        client_tls: ClientTls,
    ) -> anyhow::Result<Self> {
        build_once();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let base = format!("http://{}", listener.local_addr()?);
        let mut overrides = Overrides::default();
        // The issuer is the server's own URL unless the test sets one.
        if manifest.variables.contains_key("issuer") && !vars.contains_key("issuer") {
            overrides.set("issuer", base.clone());
        }
        for (name, value) in vars {
            overrides.set(name, value);
        }
        let logs = MemoryOutputPipe::new(1 << 20);
        let db = match &store {
            Store::Dir(dir) => Some(dir.join("sqlite_key_value.db")),
            Store::Memory | Store::Redis(_) => None,
        };
        let location = match (&db, &store) {
            (Some(path), _) => StoreLocation::File(path),
            (None, Store::Redis(url)) => StoreLocation::Redis(url),
            (None, _) => StoreLocation::Memory,
        };
        let time = TimeShift::default();
        let faults = KvFaults::default();
        let app = Arc::new(App::load(
            runtime(),
            &manifest,
            &overrides,
            &HashMap::new(),
            HostOptions {
                store: location,
                logs: Logs::Capture(logs.clone()),
                time: Some(time.clone()),
                faults: faults.clone(),
                client_tls,
            },
        )?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        listener.set_nonblocking(true)?;
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                ciba_host::server::serve(listener, app, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        Ok(Self {
            base,
            logs,
            time,
            faults,
            db,
            process: None,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// How many pairs the key-value store holds (for a server started with [`Store::Dir`]),
    /// but for the per-minute rate counters (`rate:…`) and their announcements to the purge
    /// index: every request past client authentication counts in one, refused or not, and a
    /// new minute makes a new one, announced once (BCA-31, issue 16; tests/e2e/rate_limits.rs
    /// checks them). The index's per-bucket counts (`purge_n:…`) are left out too; any other
    /// announcement still shows as its entry. Tests that a refusal writes nothing compare this
    /// count.
    /// Rows of the store outside the purge index and the per-minute counters, and the index's
    /// entries (`purge_at:`), in a store on disk. Since issue 18 a request's announcements
    /// share an entry per hourly bucket, so how many entries a request adds depends on
    /// whether its keys' times fall in one hour or two.
    pub fn store_rows_and_index_entries(&self) -> (i64, i64) {
        let path = self.db.as_ref().expect("store rows need Store::Dir");
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row(
            "SELECT \
               SUM(key NOT LIKE 'rate:%' AND key NOT LIKE 'purge\\_n:%' ESCAPE '\\' \
                   AND key NOT LIKE 'purge\\_at:%' ESCAPE '\\'), \
               SUM(key LIKE 'purge\\_at:%' ESCAPE '\\') \
             FROM spin_key_value",
            [],
            |r| {
                Ok((
                    r.get::<_, Option<i64>>(0)?.unwrap_or(0),
                    r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                ))
            },
        )
        .unwrap()
    }

    pub fn store_rows(&self) -> i64 {
        let path = self.db.as_ref().expect("store_rows needs Store::Dir");
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row(
            "SELECT COUNT(*) FROM spin_key_value WHERE key NOT LIKE 'rate:%' \
             AND key NOT LIKE 'purge\\_n:%' ESCAPE '\\' \
             AND NOT (key LIKE 'purge\\_at:%' ESCAPE '\\' AND CAST(value AS TEXT) LIKE 'rate:%')",
            [],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// What the components logged so far.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&self.logs.contents()).into_owned()
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Response {
        self.send("GET", path, &[], b"")
    }

    /// A form POST, with the client certificate header when given.
    pub fn post_form(&self, path: &str, cert: Option<&str>, body: &str) -> Response {
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if let Some(cert) = cert {
            headers.push(("x-client-cert", cert));
        }
        self.send("POST", path, &headers, body.as_bytes())
    }

    /// Any request.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        request(method, &format!("{}{}", self.base, path), headers, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A `redis-server` of its own on a free loopback port, without persistence (`--save ''
/// --appendonly no`), stopped when dropped. Debian's `redis-server` package provides it
/// (`.ci/run` installs it); without it the test fails, saying so.
pub struct RedisServer {
    /// The port it listens on.
    pub port: u16,
    child: std::process::Child,
}

impl RedisServer {
    /// Starts one and waits until it answers.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the Redis tests need it \
                     (Debian: apt-get install redis-server; .ci/run installs it)"
                )
            });
        let server = Self { port, child };
        for _ in 0..200 {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let mut pong = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut pong).is_ok()
                    && &pong == b"+PONG\r\n"
                {
                    return server;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("redis-server did not answer on port {port}");
    }

    /// A field of `INFO` (e.g. `total_connections_received`), on a connection of its own.
    pub fn info(&self, field: &str) -> u64 {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.write_all(b"INFO\r\nQUIT\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let prefix = format!("{field}:");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {field} in INFO"))
            .trim()
            .parse()
            .unwrap()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh folder under the system's temporary folder.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ciba-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The bank backend's certificate on the device API, as the proxy forwards it, and its
/// `x5t#S256` (listed in `device_api_certificates` by [`variables`]).
pub fn device_certificate() -> &'static (String, String) {
    static CERT: OnceLock<(String, String)> = OnceLock::new();
    CERT.get_or_init(|| {
        let header = certificate_header("CN=bank-backend,O=Bank,C=BR");
        let thumbprint = thumbprint_of(&header);
        (header, thumbprint)
    })
}

/// The `x5t#S256` of a certificate as the proxy forwards it.
pub fn thumbprint_of(header: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let pem = percent_encoding::percent_decode_str(header)
        .decode_utf8()
        .unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der))
}

/// A client certificate as the TLS-terminating proxy forwards it: URL-encoded PEM.
pub fn certificate_header(subject: &str) -> String {
    use base64::Engine;
    let key = devkeys::rsa_key(2048).unwrap();
    let der = devkeys::self_signed_certificate(&key, subject, 30).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    );
    percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A response, fully read.
#[derive(Debug)]
pub struct Response {
    /// The status.
    pub status: u16,
    /// Header names in lower case.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One HTTP/1.1 request on a new connection.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let uri: http::Uri = url.parse().unwrap();
    let authority = uri.authority().unwrap().to_string();
    let mut builder = http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header("host", &authority);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let response = sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    })
}
