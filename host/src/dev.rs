//! Development material, generated on first run into a git-ignored folder: signing and
//! encryption keys with self-signed certificates, a demo client with its private key, a demo
//! account holder and a device token. Never for production; never committed.

use std::path::{Path, PathBuf};

use anyhow::Context;
use devkeys::rsa::RsaPublicKey;
use devkeys::{encryption_jwk, private_jwk, public_jwk, random_token, rsa_key, signing_jwk};
use serde_json::json;

use crate::variables::Overrides;

/// The demo client's id.
pub const DEMO_CLIENT_ID: &str = "demo-client";
/// The demo account holder's subject.
pub const DEMO_SUB: &str = "demo-user-1";
/// A valid CPF for the demo account holder (check digits right; not a real person's).
pub const DEMO_CPF: &str = "52998224725";

/// The abuse-limit variables, which `dev` lifts: bc-authorize's four (BCA-31), then consent
/// lodging's and `client_credentials`' (issue 16). `spin.toml` ships production values.
pub const ABUSE_LIMITS: [&str; 6] = [
    "client_rate_limit",
    "client_pending_limit",
    "holder_rate_limit",
    "holder_pending_limit",
    "consent_rate_limit",
    "client_credentials_rate_limit",
];

/// The largest value each abuse limit takes.
pub const LIFTED_LIMIT: &str = "1000000";

/// The bank backend's certificate on the device API (PEM), for tools that call `/device/...`
/// through an mTLS proxy, and the variable that lists it.
const DEVICE_CERTIFICATE: &str = "device_certificate.pem";
const DEVICE_API_CERTIFICATES: &str = "device_api_certificates.json";

/// The files of the development folder.
pub struct DevFolder {
    dir: PathBuf,
}

const FILES: [(&str, &str); 5] = [
    ("signing_keys", "signing_keys.json"),
    ("encryption_keys", "encryption_keys.json"),
    ("clients", "clients.json"),
    ("users", "users.json"),
    ("device_api_token", "device_api_token.txt"),
];

impl DevFolder {
    /// The folder `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Generates whatever is missing, and says what was made.
    pub fn ensure(&self) -> anyhow::Result<bool> {
        if FILES.iter().all(|(_, f)| self.dir.join(f).exists()) {
            return self.ensure_device_certificate();
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let write = |name: &str, text: String| -> anyhow::Result<()> {
            let path = self.dir.join(name);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            restrict(&path)
        };
        let client_key = rsa_key(2048)?;
        let client_private = private_jwk(&client_key, "demo-client-key-1", "sig", "PS256", None);
        let client_public = public_jwk(
            &RsaPublicKey::from(&client_key),
            "demo-client-key-1",
            "sig",
            "PS256",
        );
        write(
            "signing_keys.json",
            json!({ "keys": [signing_jwk("dev-signing-1")?] }).to_string(),
        )?;
        write(
            "encryption_keys.json",
            json!({ "keys": [encryption_jwk("dev-encryption-1")?] }).to_string(),
        )?;
        write(
            "demo_client_private_key.json",
            json!({ "keys": [client_private] }).to_string(),
        )?;
        write(
            "clients.json",
            json!([{
                "client_id": DEMO_CLIENT_ID,
                "client_name": "Demo TPP",
                "jwks": { "keys": [client_public] },
                "token_endpoint_auth_method": "private_key_jwt",
                "scope": "openid consents resources accounts payments",
                "grant_types": ["urn:openid:params:grant-type:ciba", "client_credentials", "refresh_token"],
                "backchannel_token_delivery_mode": "poll",
            }])
            .to_string(),
        )?;
        write(
            "users.json",
            json!([{ "sub": DEMO_SUB, "cpf": DEMO_CPF, "name": "Demo Holder", "email": "holder@example.test" }])
                .to_string(),
        )?;
        write("device_api_token.txt", random_token()?)?;
        self.ensure_device_certificate()?;
        Ok(true)
    }

    /// A self-signed certificate for the bank backend and `device_api_certificates` listing
    /// it, when missing (also in a folder made before they existed).
    fn ensure_device_certificate(&self) -> anyhow::Result<bool> {
        let (pem, list) = (
            self.dir.join(DEVICE_CERTIFICATE),
            self.dir.join(DEVICE_API_CERTIFICATES),
        );
        if pem.exists() && list.exists() {
            return Ok(false);
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let der = devkeys::self_signed_certificate(
            &rsa_key(2048)?,
            "CN=dev-bank-backend,O=Dev Bank,C=BR",
            365,
        )?;
        std::fs::write(&pem, devkeys::certificate_pem(&der))
            .with_context(|| format!("cannot write {}", pem.display()))?;
        std::fs::write(&list, json!([devkeys::x5t_s256(&der)]).to_string())
            .with_context(|| format!("cannot write {}", list.display()))?;
        Ok(true)
    }

    /// `--variable name=@file` for every generated variable not given on the command line
    /// (`ciba-bench --keyed-clients` gives `clients`), and the abuse limits ([`ABUSE_LIMITS`])
    /// lifted unless given: one demo client and one demo holder are all that load tools
    /// (`ciba-bench`, `ciba-soak`) have to drive this server with.
    pub fn overrides(&self, overrides: &mut Overrides) -> anyhow::Result<()> {
        for (name, file) in FILES {
            let path = self.dir.join(file);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            overrides.set_default(name, text);
        }
        for name in ABUSE_LIMITS {
            overrides.set_default(name, LIFTED_LIMIT);
        }
        // Used only with mTLS on (`--variable client_cert_header=...`): the device API then
        // also asks for the certificate in device_certificate.pem.
        let list = self.dir.join(DEVICE_API_CERTIFICATES);
        if let Ok(text) = std::fs::read_to_string(&list) {
            overrides.set_default("device_api_certificates", text.trim());
        }
        Ok(())
    }

    /// A fresh client assertion of the demo client for `aud`, for trying the server by hand.
    pub fn demo_client_assertion(&self, aud: &str) -> anyhow::Result<String> {
        let (key, kid) = self.demo_client_key()?;
        devkeys::client_assertion(&key, &kid, DEMO_CLIENT_ID, aud)
    }

    fn demo_client_key(&self) -> anyhow::Result<(devkeys::rsa::RsaPrivateKey, String)> {
        let path = self.dir.join("demo_client_private_key.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("cannot read {}: run `ciba-host dev` first", path.display())
        })?;
        let set: serde_json::Value = serde_json::from_str(&text)?;
        let jwk = &set["keys"][0];
        let kid = jwk["kid"].as_str().unwrap_or_default().to_string();
        Ok((devkeys::private_key_from_jwk(jwk)?, kid))
    }

    /// A signed backchannel request object of the demo client for `consent_id`, to the
    /// issuer `issuer`: `login_hint` = the consent id unless `options` names another hint
    /// (`id_token_hint`, `login_hint_token`); `binding_message` when given.
    pub fn demo_request_object(
        &self,
        issuer: &str,
        consent_id: &str,
        options: &std::collections::HashMap<&'static str, String>,
    ) -> anyhow::Result<String> {
        use jwt_compact::{AlgorithmExt, Claims, Header};
        let (key, kid) = self.demo_client_key()?;
        let now = unix_now()?;
        let mut claims = json!({
            "iss": DEMO_CLIENT_ID,
            "aud": issuer,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": random_token()?,
            "scope": format!("openid consent:{consent_id}"),
        });
        match (
            options.get("id_token_hint"),
            options.get("login_hint_token"),
        ) {
            (Some(h), _) => claims["id_token_hint"] = json!(h),
            (None, Some(t)) => claims["login_hint_token"] = json!(t),
            (None, None) => claims["login_hint"] = json!(consent_id),
        }
        if let Some(m) = options.get("binding_message") {
            claims["binding_message"] = json!(m);
        }
        Ok(jwt_compact::alg::Rsa::ps256().token(
            &Header::empty().with_key_id(kid),
            &Claims::new(claims),
            &key,
        )?)
    }

    /// The login_hint_token of an as-generated request's QR code (HINT-15): the demo client's
    /// PS256 JWS (`typ: cibabr+jwt`), encrypted to the server's first encryption key.
    pub fn demo_qr_token(&self, issuer: &str, auth_req_id: &str) -> anyhow::Result<String> {
        use jwt_compact::{AlgorithmExt, Claims, Header};
        let (key, kid) = self.demo_client_key()?;
        let now = unix_now()?;
        let mut uuid = [0u8; 16];
        getrandom::fill(&mut uuid).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        uuid[6] = (uuid[6] & 0x0f) | 0x40;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
        let jti = format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        );
        let claims = json!({
            "iss": DEMO_CLIENT_ID,
            "aud": issuer,
            "jti": jti,
            "iat": now,
            "exp": now + 240,
            "auth_request_id": auth_req_id,
        });
        let jws = jwt_compact::alg::Rsa::ps256().token(
            &Header::empty()
                .with_key_id(kid)
                .with_token_type("cibabr+jwt"),
            &Claims::new(claims),
            &key,
        )?;
        let path = self.dir.join("encryption_keys.json");
        let set: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let jwk = &set["keys"][0];
        let public = RsaPublicKey::from(&devkeys::private_key_from_jwk(jwk)?);
        devkeys::encrypt_jwe(
            jws.as_bytes(),
            &public,
            jwk["kid"].as_str().unwrap_or_default(),
        )
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(unix)]
fn restrict(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

fn unix_now() -> anyhow::Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs())
}
