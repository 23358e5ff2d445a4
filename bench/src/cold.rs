//! Each component's `.wasm` size (the `source` paths of spin.toml) and the cost of its first
//! request: a fresh `ciba-host up` (in-memory store, the development registrations) gets one
//! representative, valid request per component, timed, then the same request again `NEXT`
//! times on the instance it made; the first against the median of the next.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::flow::{Bench, Client, member};
use crate::load::{self, Req, Sample, Target};
use crate::report::{Component, median_ms};

/// Requests after the first, for the median.
pub const NEXT: usize = 20;

/// A component of the manifest: its id, its first route, its `.wasm` file.
#[derive(Debug, PartialEq)]
pub struct ManifestComponent {
    /// The id (`[component.<id>]`).
    pub id: String,
    /// Its route (`[[trigger.http]]`).
    pub route: String,
    /// Its `source`, resolved against the manifest's folder.
    pub source: PathBuf,
}

/// The components of the manifest text `text` (in `dir`), in the order of their triggers.
pub fn components(text: &str, dir: &Path) -> anyhow::Result<Vec<ManifestComponent>> {
    let manifest: toml::Value = toml::from_str(text)?;
    let triggers = manifest
        .get("trigger")
        .and_then(|t| t.get("http"))
        .and_then(toml::Value::as_array)
        .context("the manifest has no [[trigger.http]]")?;
    let mut out: Vec<ManifestComponent> = Vec::new();
    for trigger in triggers {
        let (Some(route), Some(id)) = (
            trigger.get("route").and_then(toml::Value::as_str),
            trigger.get("component").and_then(toml::Value::as_str),
        ) else {
            continue;
        };
        if out.iter().any(|c| c.id == id) {
            continue;
        }
        let source = manifest
            .get("component")
            .and_then(|c| c.get(id))
            .and_then(|c| c.get("source"))
            .and_then(toml::Value::as_str)
            .with_context(|| format!("component {id} has no source"))?;
        out.push(ManifestComponent {
            id: id.to_string(),
            route: route.to_string(),
            source: dir.join(source),
        });
    }
    Ok(out)
}

/// The abuse-limit variables of the manifest text `text` (`[variables]` named `*_limit`), each
/// with the largest value it takes: `spin.toml` ships production limits (README, Abuse
/// limits), and this measurement sends `NEXT` + 1 requests for one demo holder.
pub fn lifted_limits(text: &str) -> anyhow::Result<Vec<String>> {
    let manifest: toml::Value = toml::from_str(text)?;
    Ok(manifest
        .get("variables")
        .and_then(toml::Value::as_table)
        .map(|vars| {
            vars.keys()
                .filter(|name| name.ends_with("_limit"))
                .map(|name| format!("{name}=1000000"))
                .collect()
        })
        .unwrap_or_default())
}

/// The sizes only (no host to start).
pub fn sizes(manifest: &Path) -> anyhow::Result<Vec<Component>> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let dir = manifest.parent().unwrap_or(Path::new("."));
    Ok(components(&text, dir)?
        .into_iter()
        .map(|c| Component {
            wasm_bytes: std::fs::metadata(&c.source).ok().map(|m| m.len()),
            id: c.id,
            route: c.route,
            request: String::new(),
            first_ms: None,
            next_median_ms: None,
            next_count: 0,
            note: String::new(),
        })
        .collect())
}

/// A child process killed when dropped.
struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// Starts `host_bin up` on a free port with the development material of `dev`, measures, and
/// stops it. Fills in `first_ms` and `next_median_ms` of `table`; says how in the result.
pub async fn measure(
    host_bin: &Path,
    manifest: &Path,
    dev: &Path,
    table: &mut [Component],
) -> anyhow::Result<String> {
    let clients = read_json(&dev.join("clients.json"))?;
    let users = read_json(&dev.join("users.json"))?;
    let client_id = clients[0]["client_id"]
        .as_str()
        .context("clients.json has no client")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let bench = Bench {
        target: Target::parse(&format!("http://{addr}"))?,
        client: Client::load(client_id, &dev.join("demo_client_private_key.json"))?,
        subject: users[0]["sub"].as_str().unwrap_or_default().to_string(),
        cpf: users[0]["cpf"].as_str().unwrap_or_default().to_string(),
        device_token: std::fs::read_to_string(dev.join("device_api_token.txt"))?
            .trim()
            .to_string(),
        device_cert: None,
        issuer: format!("http://{addr}"),
        token_endpoint: format!("http://{addr}/token"),
        concurrency: 1,
    };
    let n = NEXT + 1;
    let cc = bench.cc_requests(n)?;

    let log = std::env::temp_dir().join(format!("ciba-bench-host-{}.log", std::process::id()));
    let mut command = Command::new(host_bin);
    command
        .arg("up")
        .arg("--from")
        .arg(manifest)
        .args(["--listen", &addr, "--state-dir", ""])
        .args(["--variable", &format!("issuer=http://{addr}")]);
    let manifest_text = std::fs::read_to_string(manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    for lifted in lifted_limits(&manifest_text)? {
        command.arg("--variable").arg(lifted);
    }
    for (name, file) in [
        ("signing_keys", "signing_keys.json"),
        ("encryption_keys", "encryption_keys.json"),
        ("clients", "clients.json"),
        ("users", "users.json"),
        ("device_api_token", "device_api_token.txt"),
    ] {
        command
            .arg("--variable")
            .arg(format!("{name}=@{}", dev.join(file).display()));
    }
    let started = Instant::now();
    let mut host = Host(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", host_bin.display()))?,
    );
    loop {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            break;
        }
        let exited = host.0.try_wait()?;
        if exited.is_some() || started.elapsed() > Duration::from_secs(120) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            anyhow::bail!("the host did not start ({exited:?}): {}", text.trim());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = started.elapsed();

    let mut record = |id: &str, request: &str, samples: &[Sample], ok: &dyn Fn(&Sample) -> bool| {
        if let Some(row) = table.iter_mut().find(|c| c.id == id) {
            row.request = request.to_string();
            row.first_ms = samples.first().map(|s| s.latency.as_secs_f64() * 1000.0);
            let next: Vec<Duration> = samples.iter().skip(1).map(|s| s.latency).collect();
            row.next_median_ms = Some(median_ms(&next));
            row.next_count = next.len();
            if let Some(bad) = samples.iter().find(|s| !ok(s)) {
                row.note = format!("unexpected {}", bad.describe());
            }
        }
    };
    let target = bench.target.clone();
    let ok_200 = |s: &Sample| s.status == 200;

    let discovery = vec![Req::get(target.path(crate::flow::DISCOVERY)); n];
    let s = load::sequential(&target, &discovery).await?;
    record("well-known", "GET discovery", &s, &ok_200);

    let s = load::sequential(&target, &vec![Req::get(target.path("/jwks")); n]).await?;
    record("jwks", "GET /jwks", &s, &ok_200);

    let s = load::sequential(&target, &cc).await?;
    record("token", "POST /token client_credentials", &s, &ok_200);
    let token = s
        .iter()
        .find_map(|s| member(s, &["access_token"]))
        .context("client_credentials gave no token on the fresh host")?;

    let s = load::sequential(&target, &bench.lodge_requests(n, &token)?).await?;
    record("consents", "POST consent", &s, &|s| s.status == 201);
    let consents: Vec<String> = s
        .iter()
        .filter_map(|s| member(s, &["data", "consentId"]))
        .collect();

    let s = load::sequential(&target, &bench.bc_requests(&consents)?).await?;
    record("bc-authorize", "POST /bc-authorize", &s, &ok_200);
    let ids: Vec<String> = s
        .iter()
        .filter_map(|s| member(s, &["auth_req_id"]))
        .collect();

    let s = load::sequential(&target, &bench.approve_requests(&ids)?).await?;
    record("device", "POST approve", &s, &ok_200);

    // The first poll of an approved request redeems it (the token component is warm by now).
    let polls = load::sequential(&target, &bench.poll_requests(&ids)?).await?;
    let access: Vec<String> = polls
        .iter()
        .filter_map(|s| member(s, &["access_token"]))
        .collect();
    if !access.is_empty() {
        let s = load::sequential(&target, &bench.userinfo_requests(&access)?).await?;
        record("userinfo", "GET /userinfo", &s, &ok_200);
    }
    drop(host);
    let _ = std::fs::remove_file(&log);
    Ok(format!(
        "first request on a fresh `{} up` (ready in {:.1} s; components compiled at load, \
         instances made on demand) vs the median of the next {NEXT}, one connection",
        host_bin.display(),
        ready.as_secs_f64()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_follow_the_triggers_and_resolve_sources() {
        let text = r#"
[[trigger.http]]
route = "/jwks"
component = "jwks"
[[trigger.http]]
route = "/device/..."
component = "device"
[component.device]
source = "target/device.wasm"
[component.jwks]
source = "target/jwks.wasm"
"#;
        let c = components(text, Path::new("/app")).unwrap();
        assert_eq!(
            c,
            vec![
                ManifestComponent {
                    id: "jwks".into(),
                    route: "/jwks".into(),
                    source: "/app/target/jwks.wasm".into()
                },
                ManifestComponent {
                    id: "device".into(),
                    route: "/device/...".into(),
                    source: "/app/target/device.wasm".into()
                },
            ]
        );
    }

    #[test]
    fn bca_31_every_limit_of_the_shipped_manifest_is_lifted() {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml"))
                .unwrap();
        let lifted = lifted_limits(&text).unwrap();
        for name in [
            "client_rate_limit",
            "client_pending_limit",
            "holder_rate_limit",
            "holder_pending_limit",
            "consent_rate_limit",
            "client_credentials_rate_limit",
        ] {
            assert!(
                lifted.contains(&format!("{name}=1000000")),
                "{name}: {lifted:?}"
            );
        }
        assert_eq!(lifted.len(), 6, "{lifted:?}");
    }
}
