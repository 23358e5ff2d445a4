//! `ciba-host`: run the bundle without Spin.
//!
//! - `ciba-host up [--from spin.toml] [--listen 127.0.0.1:3000] [--build] [--state-dir DIR]
//!   [--variable name=value|name=@file]... [--fail-kv-op N]`: like `spin up`; `--fail-kv-op N`
//!   (also with `dev`) makes the N-th key-value call of the components fail, once (fault tests).
//! - `ciba-host build [--from spin.toml]`: like `spin build`.
//! - `ciba-host dev [--listen ...]`: generates development material into `.dev/` on first run,
//!   builds, and serves with it on `http://127.0.0.1:3000`.
//! - `ciba-host assertion`: prints a fresh `private_key_jwt` assertion of the demo client.
//! - `ciba-host keygen --kid KID [--use sig|enc]`: prints a new private JWK (key rotation).
//! - `ciba-host request --consent ID [...]`: prints a signed backchannel request object of
//!   the demo client; `ciba-host qr --auth-req-id ID`: prints the QR code's
//!   login_hint_token for an as-generated request (both for trying the flow by hand).
//! - `ciba-host sweep-legacy [--state-dir DIR]`: once after upgrading from a version without
//!   the purge index, drops from the SQLite file the expired keys that version wrote (README,
//!   "Expiry and store size"); run it with the server stopped or running.
//! - `ciba-host deregister --client-id ID | --software-id ID [--state-dir DIR]
//!   [--runtime-config-file FILE]`: the operator's delete of a dynamic registration, for a TPP
//!   that lost its registration access token (registration.md Q4), on the store `up` opens.
//! - `ciba-host up|dev --runtime-config-file FILE`: the `default` store as a Spin runtime
//!   configuration names it (`type = "redis"`, `url = ...`: runtime-config.redis.toml), and
//!   its `[[client_tls]]` entries for the components' https fetches (host/src/tls.rs).
//! - `ciba-host create-store [--wal] [--force] PATH`: creates Spin's key-value file (its
//!   schema), in WAL mode with `--wal`, for `spin up` to open as it is; an existing file is
//!   refused unless `--force`.
//! - `ciba-host wasm-bench [--samples N] [--native] [--json FILE]`: times the shared crate's
//!   hot steps inside Wasm on this host's engine settings (and natively with `--native`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use ciba::client::registration::Deregister;
use ciba_host::dev::DevFolder;
use ciba_host::directory::{DEV_SSA_ISSUER, DevDirectory};
use ciba_host::kv::KvFaults;
use ciba_host::manifest::Manifest;
use ciba_host::runtime::{Logs, Runtime};
use ciba_host::server::{App, HostOptions, StoreLocation, serve};
use ciba_host::stores::StoreChoice;
use ciba_host::variables::Overrides;

struct Args {
    command: String,
    manifest: PathBuf,
    listen: SocketAddr,
    build: bool,
    state_dir: Option<String>,
    overrides: Overrides,
    demo: HashMap<&'static str, String>,
    samples: usize,
    native: bool,
    json: Option<PathBuf>,
    fail_kv_op: Option<u64>,
    runtime_config: Option<PathBuf>,
    wal: bool,
    force: bool,
    path: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_else(|| "help".into());
    let mut out = Args {
        command,
        manifest: PathBuf::from("spin.toml"),
        listen: "127.0.0.1:3000".parse()?,
        build: false,
        state_dir: None,
        overrides: Overrides::default(),
        demo: HashMap::new(),
        samples: 101,
        native: false,
        json: None,
        fail_kv_op: None,
        runtime_config: None,
        wal: false,
        force: false,
        path: None,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--from" | "-f" => out.manifest = value("--from")?.into(),
            "--listen" => {
                out.listen = value("--listen")?
                    .parse()
                    .context("--listen takes host:port")?
            }
            "--build" => out.build = true,
            "--state-dir" => out.state_dir = Some(value("--state-dir")?),
            "--variable" => out.overrides.add(&value("--variable")?)?,
            "--consent" => _ = out.demo.insert("consent", value("--consent")?),
            "--binding-message" => {
                _ = out
                    .demo
                    .insert("binding_message", value("--binding-message")?)
            }
            "--id-token-hint" => _ = out.demo.insert("id_token_hint", value("--id-token-hint")?),
            "--login-hint-token" => {
                _ = out
                    .demo
                    .insert("login_hint_token", value("--login-hint-token")?)
            }
            "--auth-req-id" => _ = out.demo.insert("auth_req_id", value("--auth-req-id")?),
            "--software-id" => _ = out.demo.insert("software_id", value("--software-id")?),
            "--client-id" => _ = out.demo.insert("client_id", value("--client-id")?),
            "--kid" => _ = out.demo.insert("kid", value("--kid")?),
            "--use" => _ = out.demo.insert("use", value("--use")?),
            "--samples" => {
                out.samples = value("--samples")?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .context("--samples takes a positive number")?
            }
            "--native" => out.native = true,
            "--json" => out.json = Some(value("--json")?.into()),
            "--fail-kv-op" => {
                out.fail_kv_op = Some(
                    value("--fail-kv-op")?
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .context("--fail-kv-op takes a positive number")?,
                )
            }
            "--runtime-config-file" => {
                out.runtime_config = Some(value("--runtime-config-file")?.into())
            }
            "--wal" => out.wal = true,
            "--force" => out.force = true,
            path if out.command == "create-store"
                && !path.starts_with('-')
                && out.path.is_none() =>
            {
                out.path = Some(path.into())
            }
            other => bail!("unknown argument {other}; see `ciba-host help`"),
        }
    }
    Ok(out)
}

const HELP: &str = "ciba-host: runs this Spin bundle without Spin

  ciba-host dev   [--listen ADDR]   generate .dev/ on first run, build, serve on 127.0.0.1:3000
  ciba-host up    [--from spin.toml] [--listen ADDR] [--build] [--state-dir DIR] [--variable name=value|name=@file]...
                  [--runtime-config-file FILE] (dev and up) the `default` store as a Spin runtime configuration
                                        names it: [key_value_store.default] type = \"redis\", url = \"redis://...\"
                                        (runtime-config.redis.toml); without it, <state dir>/sqlite_key_value.db;
                                        and its [[client_tls]] roots for the components' https fetches
                  [--fail-kv-op N]      (dev and up) fail the N-th key-value call components make, once,
                                        as a store that is down would (fault testing)
  ciba-host build [--from spin.toml]
  ciba-host assertion [--listen ADDR] [--client-id ID --software-id SOFTWARE]
                                       print a client assertion of the demo client (after `dev`), or
                                       of a client registered with a software of `ciba-host ssa`
  ciba-host ssa [--software-id SOFTWARE] [--listen ADDR]
                                       print a software statement of `dev`'s development Directory
                                       for a new software (its client key and certificate under
                                       .dev/directory/software/<software_id>/), or a fresh one for SOFTWARE
  ciba-host request --consent ID [--binding-message TEXT] [--id-token-hint JWT | --login-hint-token VALUE] [--listen ADDR]
                                       print a signed backchannel request object of the demo client
                                       (login_hint = the consent id unless a hint is given)
  ciba-host keygen --kid KID [--use sig|enc]
                                       print a new RSA-2048 private JWK: a signing key (PS256) with a
                                       self-signed x5c certificate, or an encryption key (RSA-OAEP)
  ciba-host qr --auth-req-id ID [--listen ADDR]
                                       print the login_hint_token of an as-generated request's QR code
  ciba-host sweep-legacy [--state-dir DIR]
                                       once after an upgrade: drop from the SQLite store the expired
                                       keys written by versions before the purge index (lists every key)
  ciba-host deregister (--client-id ID | --software-id ID) [--state-dir DIR] [--runtime-config-file FILE]
                                       remove a dynamic registration without its registration access
                                       token (a TPP that lost it), as DELETE /register/<client_id> does,
                                       from the store `up` opens with the same options; by --software-id
                                       it lists every key of the store, and also removes a software claim
                                       left without its registration
  ciba-host create-store [--wal] [--force] PATH
                                       create Spin's key-value file (Spin's schema) at PATH, in WAL mode
                                       with --wal, before `spin up` (.spin/sqlite_key_value.db); refuses an
                                       existing file unless --force (which deletes it and its data)
  ciba-host wasm-bench [--samples N] [--native] [--json FILE]
                                       build the shared crate's hot steps for wasm32-wasip2 and time
                                       them on this host's engine settings (--native: natively too)";

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let mut args = parse_args()?;
    if args.command == "create-store" {
        let path = args
            .path
            .as_deref()
            .context("create-store needs the file's path (Spin's: .spin/sqlite_key_value.db)")?;
        ciba_host::stores::create_store(path, args.wal, args.force)?;
        println!(
            "Created {} ({} journal)",
            path.display(),
            if args.wal { "WAL" } else { "rollback" }
        );
        return Ok(());
    }
    if args.command == "deregister" {
        let which = match (args.demo.get("client_id"), args.demo.get("software_id")) {
            (Some(id), None) => Deregister::ClientId(id),
            (None, Some(id)) => Deregister::SoftwareId(id),
            _ => bail!("deregister takes one of --client-id ID or --software-id ID"),
        };
        let state_dir = match &args.state_dir {
            Some(dir) if dir.is_empty() => {
                bail!("an in-memory store lives only inside its server: nothing to remove")
            }
            Some(dir) => PathBuf::from(dir),
            // Where `up` keeps it: `.spin/` beside the manifest, which need not be read.
            None => args
                .manifest
                .parent()
                .unwrap_or(std::path::Path::new(""))
                .join(".spin"),
        };
        let choice = match &args.runtime_config {
            Some(file) => ciba_host::stores::read_runtime_config(file)?,
            None => StoreChoice::Default,
        };
        let kv = ciba_host::operator::open_store(&choice, &state_dir.join("sqlite_key_value.db"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        println!(
            "{}",
            ciba_host::operator::deregister_command(&kv, &which, i64::try_from(now)?)?
        );
        return Ok(());
    }
    let manifest = Manifest::load(&args.manifest)?;
    match args.command.as_str() {
        "build" => return ciba_host::build::build_all(&manifest),
        "assertion" if args.demo.contains_key("client_id") => {
            let directory = DevDirectory::new(&manifest.dir.join(".dev"));
            let software = directory.software(Some(
                args.demo
                    .get("software_id")
                    .context("a registered client's assertion needs --software-id")?,
            ))?;
            let client_id = &args.demo["client_id"];
            println!(
                "{}",
                directory.client_assertion(
                    &software,
                    client_id,
                    &format!("http://{}/token", args.listen)
                )?
            );
            return Ok(());
        }
        "ssa" => {
            let directory = DevDirectory::new(&manifest.dir.join(".dev"));
            let software = directory.software(args.demo.get("software_id").map(String::as_str))?;
            println!(
                "{}",
                directory.ssa(
                    &software,
                    &format!("http://{}", keystore_addr(args.listen)?)
                )?
            );
            eprintln!(
                "software_id {}\norg_id {}\nfolder {} (client_private_key.json, \
                 certificate.pem, certificate.url: the proxy's header value)",
                software.software_id,
                software.org_id,
                software.dir.display()
            );
            return Ok(());
        }
        "assertion" => {
            let folder = DevFolder::new(manifest.dir.join(".dev"));
            println!(
                "{}",
                folder.demo_client_assertion(&format!("http://{}/token", args.listen))?
            );
            return Ok(());
        }
        "keygen" => {
            let kid = args.demo.get("kid").context("keygen needs --kid <kid>")?;
            let jwk = match args.demo.get("use").map(String::as_str) {
                None | Some("sig") => devkeys::signing_jwk(kid)?,
                Some("enc") => devkeys::encryption_jwk(kid)?,
                Some(_) => bail!("--use is sig or enc"),
            };
            println!("{jwk}");
            return Ok(());
        }
        "request" => {
            let folder = DevFolder::new(manifest.dir.join(".dev"));
            let consent = args
                .demo
                .get("consent")
                .context("request needs --consent <consentId>")?;
            println!(
                "{}",
                folder.demo_request_object(
                    &format!("http://{}", args.listen),
                    consent,
                    &args.demo
                )?
            );
            return Ok(());
        }
        "qr" => {
            let folder = DevFolder::new(manifest.dir.join(".dev"));
            let id = args
                .demo
                .get("auth_req_id")
                .context("qr needs --auth-req-id <auth_req_id>")?;
            println!(
                "{}",
                folder.demo_qr_token(&format!("http://{}", args.listen), id)?
            );
            return Ok(());
        }
        "wasm-bench" => {
            let report = ciba_host::wasm_bench::run(
                &manifest.dir,
                &ciba_host::wasm_bench::Options {
                    samples: args.samples,
                    native: args.native,
                },
            )
            .await?;
            println!("{}", ciba_host::wasm_bench::table(&report));
            if let Some(file) = &args.json {
                std::fs::write(file, serde_json::to_string_pretty(&report)? + "\n")
                    .with_context(|| format!("cannot write {}", file.display()))?;
            }
            return Ok(());
        }
        "sweep-legacy" => {
            let state_dir = match &args.state_dir {
                Some(dir) => PathBuf::from(dir),
                None => manifest.dir.join(".spin"),
            };
            let db = state_dir.join("sqlite_key_value.db");
            if !db.exists() {
                bail!("no key-value store at {}", db.display());
            }
            let kv = ciba_host::kv::SqliteKv::open(&db)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let deleted = ciba_host::kv::sweep_legacy(&kv, i64::try_from(now)?)
                .map_err(anyhow::Error::msg)?;
            println!("Deleted {deleted} expired keys from {}", db.display());
            return Ok(());
        }
        "up" => {}
        "dev" => {
            let folder = DevFolder::new(manifest.dir.join(".dev"));
            if folder.ensure()? {
                eprintln!(
                    "Generated development keys, demo client, user and device token in {}",
                    folder.dir().display()
                );
            }
            folder.overrides(&mut args.overrides)?;
            // Its own URL, unless given (two hosts on one Redis serve one issuer).
            args.overrides
                .set_default("issuer", format!("http://{}", args.listen));
            // The development Directory (README, Registration): its keystore on the next
            // port, trusted for software statements and clients' keys.
            let directory = DevDirectory::new(folder.dir());
            if directory.ensure()? {
                eprintln!(
                    "Generated a development Directory (SSA signing key) in {}",
                    folder.dir().join("directory").display()
                );
            }
            let keystore = keystore_addr(args.listen)?;
            let origin = format!("http://{keystore}");
            args.overrides.set_default("ssa_issuer", DEV_SSA_ISSUER);
            args.overrides
                .set_default("ssa_jwks_uri", format!("{origin}/openbanking.jwks"));
            args.overrides
                .set_default("jwks_allowed_hosts", origin.clone());
            let listener = tokio::net::TcpListener::bind(keystore)
                .await
                .with_context(|| format!("cannot listen on {keystore}"))?;
            println!("Development Directory keystore on {origin}");
            tokio::spawn(directory.serve(listener, std::future::pending()));
            args.build = true;
        }
        _ => {
            println!("{HELP}");
            return Ok(());
        }
    }
    if args.build {
        ciba_host::build::build_all(&manifest)?;
    }
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => manifest.dir.join(".spin").display().to_string(),
    };
    let db = PathBuf::from(&state_dir).join("sqlite_key_value.db");
    let choice = match &args.runtime_config {
        Some(file) => ciba_host::stores::read_runtime_config(file)?,
        None => StoreChoice::Default,
    };
    let client_tls = match &args.runtime_config {
        Some(file) => ciba_host::tls::ClientTls::read(file)?,
        None => ciba_host::tls::ClientTls::default(),
    };
    let store = match &choice {
        StoreChoice::Redis(url) => StoreLocation::Redis(url),
        StoreChoice::Default if state_dir.is_empty() => StoreLocation::Memory,
        StoreChoice::Default => StoreLocation::File(&db),
    };
    match &store {
        // Never the URL's password: what follows its last `@`, as Spin's summary.
        StoreLocation::Redis(url) => println!(
            "Key-value store: Redis at {}",
            url.rsplit('@').next().unwrap_or_default()
        ),
        StoreLocation::File(path) => println!("Key-value store: {}", path.display()),
        StoreLocation::Memory => println!("Key-value store: in memory"),
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let faults = KvFaults::default();
    if let Some(n) = args.fail_kv_op {
        faults.arm(n);
        println!("Key-value call {n} will fail (--fail-kv-op)");
    }
    let runtime = Runtime::new()?;
    let app = Arc::new(App::load(
        &runtime,
        &manifest,
        &args.overrides,
        &env,
        HostOptions {
            store,
            logs: Logs::Inherit,
            time: None,
            faults,
            client_tls,
        },
    )?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("Serving http://{}", args.listen);
    println!("Available Routes:");
    for route in app.router().routes() {
        println!("  {}: http://{}{}", route.component, args.listen, route.raw);
    }
    serve(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

/// Where `dev` serves its development Directory's keystore: the port after the server's.
fn keystore_addr(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    let port = listen
        .port()
        .checked_add(1)
        .context("--listen leaves no port for the development Directory")?;
    Ok(SocketAddr::new(listen.ip(), port))
}
