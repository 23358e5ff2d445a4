//! A development Directory of Participants for `ciba-host dev` (issue 17; registration.md
//! KEY-17/18): its SSA signing key is generated into `.dev/directory/` (git-ignored, never
//! committed), its keystore is served on loopback (`/openbanking.jwks` and each software's
//! `/<org_id>/<software_id>/application.jwks`), and `ciba-host ssa` issues software
//! statements from it, with the matching client certificate (UID = `software_id`,
//! organizationIdentifier = `OFBBR-<org_id>`) and client keys. Never for production.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use devkeys::rsa::RsaPublicKey;
use http_body_util::Full;
use serde_json::{Value, json};

/// The `iss` of the development Directory's SSAs (`ssa_issuer` under `ciba-host dev`).
pub const DEV_SSA_ISSUER: &str = "ciba-host development Directory SSA issuer";

/// The `kid` of its SSA signing key.
pub const DEV_DIRECTORY_KID: &str = "dev-directory-1";

/// The redirect URI every development software lists.
pub const DEV_REDIRECT_URI: &str = "https://tpp.example/cb";

/// The development Directory's folder (`.dev/directory`).
pub struct DevDirectory {
    dir: PathBuf,
}

/// One software issued by the development Directory, as `ciba-host ssa` writes it.
pub struct Software {
    /// `org_id`.
    pub org_id: String,
    /// `software_id`.
    pub software_id: String,
    /// Its folder: `client_private_key.json`, `certificate.pem`, `certificate.url`.
    pub dir: PathBuf,
}

fn uuid() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}: run `ciba-host dev` first", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

impl DevDirectory {
    /// The Directory kept under `dev_dir` (`.dev`).
    pub fn new(dev_dir: &Path) -> Self {
        Self {
            dir: dev_dir.join("directory"),
        }
    }

    /// Generates the Directory's signing key and organisation when missing; whether it did.
    pub fn ensure(&self) -> anyhow::Result<bool> {
        let key = self.dir.join("directory_private_key.json");
        if key.exists() {
            return Ok(false);
        }
        std::fs::create_dir_all(self.dir.join("software"))
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let rsa = devkeys::rsa_key(2048)?;
        write(
            &key,
            &devkeys::private_jwk(&rsa, DEV_DIRECTORY_KID, "sig", "PS256", None).to_string(),
        )?;
        write(
            &self.dir.join("organisation.json"),
            &json!({ "org_id": uuid()?, "org_name": "Dev TPP Ltda" }).to_string(),
        )?;
        Ok(true)
    }

    /// `openbanking.jwks`: the public SSA signing key.
    pub fn openbanking_jwks(&self) -> anyhow::Result<Value> {
        let jwk = read_json(&self.dir.join("directory_private_key.json"))?;
        let key = devkeys::private_key_from_jwk(&jwk)?;
        Ok(json!({ "keys": [devkeys::public_jwk(
            &RsaPublicKey::from(&key),
            DEV_DIRECTORY_KID,
            "sig",
            "PS256",
        )] }))
    }

    fn org_id(&self) -> anyhow::Result<String> {
        let org = read_json(&self.dir.join("organisation.json"))?;
        org["org_id"]
            .as_str()
            .map(str::to_string)
            .context("organisation.json has no org_id")
    }

    /// A software of the development organisation: `software_id` when given (it must
    /// exist), else a new one with a fresh client key and certificate.
    pub fn software(&self, software_id: Option<&str>) -> anyhow::Result<Software> {
        let org_id = self.org_id()?;
        if let Some(id) = software_id {
            let dir = self.dir.join("software").join(id);
            anyhow::ensure!(
                dir.join("client_private_key.json").exists(),
                "no software {id} in {}",
                self.dir.display()
            );
            return Ok(Software {
                org_id,
                software_id: id.to_string(),
                dir,
            });
        }
        let software_id = uuid()?;
        let dir = self.dir.join("software").join(&software_id);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let key = devkeys::rsa_key(2048)?;
        let kid = format!("{software_id}-sig");
        write(
            &dir.join("client_private_key.json"),
            &devkeys::private_jwk(&key, &kid, "sig", "PS256", None).to_string(),
        )?;
        write(
            &dir.join("application.jwks"),
            &json!({ "keys": [devkeys::public_jwk(&RsaPublicKey::from(&key), &kid, "sig", "PS256")] })
                .to_string(),
        )?;
        // The certificate the TPP presents through the mTLS proxy (BR-DCR 7.1-14, REG-13/14).
        let cert_key = devkeys::rsa_key(2048)?;
        let der = devkeys::self_signed_certificate(
            &cert_key,
            &format!(
                "UID={software_id},2.5.4.97=OFBBR-{org_id},CN=dev-tpp.example,O=Dev TPP Ltda,C=BR"
            ),
            365,
        )?;
        let pem = devkeys::certificate_pem(&der);
        write(&dir.join("certificate.pem"), &pem)?;
        let encoded: String = pem
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        write(&dir.join("certificate.url"), &encoded)?;
        Ok(Software {
            org_id,
            software_id,
            dir,
        })
    }

    /// A software statement for `software`, signed now, whose keystore is at `keystore`
    /// (`http://127.0.0.1:<port>`).
    pub fn ssa(&self, software: &Software, keystore: &str) -> anyhow::Result<String> {
        use jwt_compact::{AlgorithmExt, Claims, Header};
        let jwk = read_json(&self.dir.join("directory_private_key.json"))?;
        let key = devkeys::private_key_from_jwk(&jwk)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let claims = json!({
            "iss": DEV_SSA_ISSUER,
            "iat": now,
            "jti": uuid()?,
            "org_id": software.org_id,
            "org_name": "Dev TPP Ltda",
            "org_status": "Active",
            "software_id": software.software_id,
            "software_client_id": software.software_id,
            "software_client_name": "Dev TPP App",
            "software_jwks_uri": format!("{keystore}/{}/{}/application.jwks", software.org_id, software.software_id),
            "software_redirect_uris": [DEV_REDIRECT_URI],
            "software_statement_roles": [
                { "role": "DADOS", "authorisation_domain": "Open Banking", "status": "Active" },
                { "role": "PAGTO", "authorisation_domain": "Open Banking", "status": "Active" },
            ],
            "software_version": "1.0",
            "software_mode": "Live",
        });
        Ok(jwt_compact::alg::Rsa::ps256().token(
            &Header::empty().with_key_id(DEV_DIRECTORY_KID),
            &Claims::new(claims),
            &key,
        )?)
    }

    /// A client assertion of the registered `client_id` of `software` for `aud`.
    pub fn client_assertion(
        &self,
        software: &Software,
        client_id: &str,
        aud: &str,
    ) -> anyhow::Result<String> {
        let jwk = read_json(&software.dir.join("client_private_key.json"))?;
        let key = devkeys::private_key_from_jwk(&jwk)?;
        let kid = jwk["kid"].as_str().unwrap_or_default();
        devkeys::client_assertion(&key, kid, client_id, aud)
    }

    /// The body to serve at `path`, if any: the Directory's keys or a software's.
    fn document(&self, path: &str) -> Option<Value> {
        if path == "/openbanking.jwks" {
            return self.openbanking_jwks().ok();
        }
        let mut parts = path.trim_start_matches('/').split('/');
        let (Some(org), Some(software), Some("application.jwks"), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let safe =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !safe(org) || !safe(software) || self.org_id().ok()? != org {
            return None;
        }
        read_json(
            &self
                .dir
                .join("software")
                .join(software)
                .join("application.jwks"),
        )
        .ok()
    }

    /// Serves the keystore on `listener` until `stop` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let directory = std::sync::Arc::new(self);
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let directory = directory.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            let directory = directory.clone();
                            async move {
                                let found = (request.method() == http::Method::GET)
                                    .then(|| directory.document(request.uri().path()))
                                    .flatten();
                                let response = match found {
                                    Some(doc) => http::Response::builder()
                                        .status(200)
                                        .header("content-type", "application/jwk-set+json")
                                        .body(Full::new(Bytes::from(doc.to_string()))),
                                    None => http::Response::builder()
                                        .status(404)
                                        .body(Full::new(Bytes::new())),
                                };
                                Ok::<_, Infallible>(response.unwrap_or_default())
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        }
    }
}
