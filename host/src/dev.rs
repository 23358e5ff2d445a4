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
            return Ok(false);
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
        Ok(true)
    }

    /// `--variable name=@file` for every generated variable.
    pub fn overrides(&self, overrides: &mut Overrides) -> anyhow::Result<()> {
        for (name, file) in FILES {
            overrides.add(&format!("{name}=@{}", self.dir.join(file).display()))?;
        }
        Ok(())
    }

    /// A fresh client assertion of the demo client for `aud`, for trying the server by hand.
    pub fn demo_client_assertion(&self, aud: &str) -> anyhow::Result<String> {
        let path = self.dir.join("demo_client_private_key.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("cannot read {}: run `ciba-host dev` first", path.display())
        })?;
        let set: serde_json::Value = serde_json::from_str(&text)?;
        let jwk = &set["keys"][0];
        let key = devkeys::private_key_from_jwk(jwk)?;
        let kid = jwk["kid"].as_str().unwrap_or_default();
        devkeys::client_assertion(&key, kid, DEMO_CLIENT_ID, aud)
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
