//! The AS's own key sets, from the `signing_keys` and `encryption_keys` variables.
//!
//! The first signing key signs; every signing key stays published and accepted for
//! verification, so that a rotated key keeps unexpired id_tokens verifiable (KEY-6/7).

use super::jwk::{KeyUse, PrivateJwk, RawJwkSet};
use crate::config::{ConfigError, var};

/// A non-empty JWK Set of RSA private keys of one use.
pub struct KeySet {
    keys: Vec<PrivateJwk>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| k.kid()))
            .finish()
    }
}

impl KeySet {
    /// Parses a JWK Set of private keys for `key_use`. Errors name the variable and the key's
    /// position, never a value: these variables are secrets.
    pub fn parse(variable: &'static str, text: &str, key_use: KeyUse) -> Result<Self, ConfigError> {
        let raw: RawJwkSet = serde_json::from_str(text).map_err(|e| {
            ConfigError::new(
                variable,
                format!(
                    "not a JWK Set ({{\"keys\": [...]}}): JSON problem at line {}, column {}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        if raw.keys.is_empty() {
            return Err(ConfigError::new(variable, "the key set is empty"));
        }
        let mut keys: Vec<PrivateJwk> = Vec::with_capacity(raw.keys.len());
        for (i, jwk) in raw.keys.into_iter().enumerate() {
            let key = jwk
                .into_private(key_use)
                .map_err(|why| ConfigError::new(variable, format!("keys[{i}]: {why}")))?;
            if keys.iter().any(|k| k.kid() == key.kid()) {
                return Err(ConfigError::new(
                    variable,
                    format!("keys[{i}]: kid is not unique (KEY-2)"),
                ));
            }
            keys.push(key);
        }
        Ok(Self { keys })
    }

    /// The key that signs (or encrypts to) new material: the first.
    pub fn active(&self) -> &PrivateJwk {
        &self.keys[0]
    }

    /// Every key, current first.
    pub fn all(&self) -> &[PrivateJwk] {
        &self.keys
    }

    /// The key named `kid`, if any (KEY-9).
    pub fn by_kid(&self, kid: &str) -> Option<&PrivateJwk> {
        self.keys.iter().find(|k| k.kid() == kid)
    }
}

/// Both key sets of the AS, with `kid`s unique across them (KEY-2).
#[derive(Debug)]
pub struct ServerKeys {
    /// `signing_keys`: PS256, each with its certificate (KEY-3/4/6).
    pub signing: KeySet,
    /// `encryption_keys`: RSA-OAEP (KEY-5).
    pub encryption: KeySet,
}

impl ServerKeys {
    /// Parses both variables and checks that no `kid` appears twice.
    pub fn parse(signing_keys: &str, encryption_keys: &str) -> Result<Self, ConfigError> {
        let signing = KeySet::parse(var::SIGNING_KEYS, signing_keys, KeyUse::Signature)?;
        let encryption = KeySet::parse(var::ENCRYPTION_KEYS, encryption_keys, KeyUse::Encryption)?;
        if let Some(i) = encryption
            .all()
            .iter()
            .position(|k| signing.by_kid(k.kid()).is_some())
        {
            return Err(ConfigError::new(
                var::ENCRYPTION_KEYS,
                format!("keys[{i}]: kid is also used by a signing key (KEY-2)"),
            ));
        }
        Ok(Self {
            signing,
            encryption,
        })
    }

    /// The public JWK Set served at `jwks_uri`: signing keys (current and retired), then
    /// encryption keys (KEY-1…7).
    pub fn public_jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .signing
            .all()
            .iter()
            .chain(self.encryption.all())
            .map(PrivateJwk::public_jwk)
            .collect();
        serde_json::json!({ "keys": keys })
    }
}
