//! `--register` (issue 17, item 7): the run acts as a client registered through `POST
//! /register` (DCR) instead of a static one, so static and registered clients can be compared
//! on the same server. The software statement comes from the development Directory of
//! `ciba-host dev` (`ciba-host ssa`: a new software, its client key and its certificate), so
//! the server must run in dev mode with mTLS on (`--variable client_cert_header=...`), since
//! registration needs the certificate (REG-3). The registration is deleted after the run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use http::header::AUTHORIZATION;
use serde_json::json;

use crate::flow::Registrations;
use crate::load::{self, Req, Target};

/// A client registered for the run: what `DELETE /register/<client_id>` needs afterwards.
pub struct Registered {
    /// The registered `client_id`.
    pub client_id: String,
    /// Its registration access token (never printed).
    registration_access_token: String,
    /// The certificate header, as the registration sent it.
    cert: (String, String),
}

/// The software `ciba-host ssa` issued: its SSA and its folder.
struct Software {
    ssa: String,
    software_id: String,
    folder: PathBuf,
}

/// Runs `host_bin ssa --listen <the base's address>` in the manifest's folder (where `dev`
/// keeps `.dev/`).
fn issue_ssa(host_bin: &Path, manifest_dir: &Path, target: &Target) -> anyhow::Result<Software> {
    let output = Command::new(host_bin)
        .current_dir(manifest_dir)
        .args(["ssa", "--listen", &target.authority])
        .output()
        .with_context(|| format!("cannot run {} ssa", host_bin.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("{} ssa failed: {}", host_bin.display(), stderr.trim());
    }
    let line = |name: &str| {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .with_context(|| format!("`ciba-host ssa` printed no {name}"))
    };
    let folder = line("folder ")?;
    let folder = folder.split(" (").next().unwrap_or(&folder).to_string();
    Ok(Software {
        ssa: String::from_utf8_lossy(&output.stdout).trim().to_string(),
        software_id: line("software_id ")?,
        folder: manifest_dir.join(folder),
    })
}

/// Registers a new development software at `registrations.base` and points `registrations`
/// at it: its `client_id`, its client key and its certificate.
pub async fn register(
    registrations: &mut Registrations,
    host_bin: &Path,
    manifest: &Path,
) -> anyhow::Result<Registered> {
    let header = registrations
        .cert_header
        .clone()
        .context("--register needs --cert-header: registration needs mTLS (REG-3)")?;
    let target = Target::parse(&registrations.base)?;
    let manifest_dir = match manifest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let software = issue_ssa(host_bin, &manifest_dir, &target)?;
    let cert_value = std::fs::read_to_string(software.folder.join("certificate.url"))
        .with_context(|| format!("no certificate.url in {}", software.folder.display()))?
        .trim()
        .to_string();
    let body = json!({
        "software_statement": software.ssa,
        "redirect_uris": ["https://tpp.example/cb"],
    });
    let req = Req::post(
        target.path("/register"),
        "application/json",
        body.to_string(),
    )
    .header(header.parse()?, &cert_value)?;
    let answer = load::sequential(&target, &[req]).await?.remove(0);
    if answer.status != 201 {
        bail!("POST /register answered {}", answer.describe());
    }
    let doc = answer.json();
    let member = |name: &str| {
        doc[name]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("the registration has no {name}"))
    };
    let registered = Registered {
        client_id: member("client_id")?,
        registration_access_token: member("registration_access_token")?,
        cert: (header, cert_value),
    };
    eprintln!(
        "registered client {} (software {})",
        registered.client_id, software.software_id
    );
    registrations.client_id = registered.client_id.clone();
    registrations.client_key = Some(software.folder.join("client_private_key.json"));
    registrations.cert_file = Some(software.folder.join("certificate.pem"));
    Ok(registered)
}

impl Registered {
    /// `DELETE /register/<client_id>` with its registration access token (REG-33).
    pub async fn delete(&self, base: &str) -> anyhow::Result<()> {
        let target = Target::parse(base)?;
        let mut req = Req::get(target.path(&format!("/register/{}", self.client_id)))
            .header(
                AUTHORIZATION,
                &format!("Bearer {}", self.registration_access_token),
            )?
            .header(self.cert.0.parse()?, &self.cert.1)?;
        req.method = http::Method::DELETE;
        let answer = load::sequential(&target, &[req]).await?.remove(0);
        anyhow::ensure!(
            answer.status == 204,
            "DELETE /register/{} answered {}",
            self.client_id,
            answer.describe()
        );
        eprintln!("deleted the registration of {}", self.client_id);
        Ok(())
    }
}
