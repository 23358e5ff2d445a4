//! Where every endpoint gets a client's public keys (KEY-8), in one place: from the
//! registration (`jwks` by value, static clients only) or from its `jwks_uri` through the
//! instance's [`Keystore`]. Client assertions (CLI-4), request objects (BCA-5) and the QR
//! code's login_hint_token (HINT-15) all verify through [`KeySource::verifiers`]; however a
//! client was found (the `clients` variable, or a registration in the store), its keys come
//! from here.

use std::sync::Arc;

use crate::client::keystore::{AllowedOrigins, Keystore, KeystoreUnavailable};
use crate::client::registry::{Client, ClientKeys, Clients};
use crate::config::{ConfigError, Variables, var};
use crate::endpoints::Deps;
use crate::jose::jwk::{KeyUse, PublicJwk};
use crate::jose::ps256::Ps256VerifyingKey;

/// The allowed origins and the key cache of one component instance.
#[derive(Debug)]
pub struct KeySource {
    allowed: AllowedOrigins,
    keystore: Keystore,
}

impl KeySource {
    /// Reads `jwks_allowed_hosts` and `client_jwks_ttl`.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        Ok(Self::new(
            AllowedOrigins::load(vars)?,
            Keystore::load(vars)?,
        ))
    }

    /// From parts already read.
    pub fn new(allowed: AllowedOrigins, keystore: Keystore) -> Self {
        Self { allowed, keystore }
    }

    /// [`KeySource::load`], also checking that every static client's `jwks_uri` may be
    /// fetched (KEY-10): a bad one is a configuration error naming `clients`, reported once,
    /// rather than a 503 on each of its requests.
    pub fn load_for(vars: &dyn Variables, clients: &Clients) -> Result<Self, ConfigError> {
        let source = Self::load(vars)?;
        for (i, client) in clients.all().iter().enumerate() {
            if let ClientKeys::JwksUri(uri) = &client.keys
                && let Err(why) = source.allowed.jwks_uri(uri)
            {
                return Err(ConfigError::new(
                    var::CLIENTS,
                    format!("clients[{i}]: jwks_uri {why}"),
                ));
            }
        }
        Ok(source)
    }

    /// `jwks_allowed_hosts`.
    pub fn allowed(&self) -> &AllowedOrigins {
        &self.allowed
    }

    /// The key cache.
    pub fn keystore(&self) -> &Keystore {
        &self.keystore
    }

    /// The keys of `client` that may verify the JWS `compact` (KEY-8, KEY-9). By value: all
    /// of them, [`crate::jose::jws::verify_ps256`] picks by `kid`. By `jwks_uri`: the one key
    /// the header's `kid` names, fetched or refetched as KEY-12…14 say; a JWS without a `kid`
    /// cannot pick among published keys and finds none [decision]. No key found is the
    /// endpoint's own refusal (an unknown key); `Err` when the keys cannot be had (503,
    /// KEY-14).
    pub fn verifiers<'c>(
        &self,
        deps: &Deps<'_>,
        client: &'c Client,
        compact: &str,
    ) -> Result<Verifiers<'c>, KeystoreUnavailable> {
        match &client.keys {
            ClientKeys::Jwks(keys) => Ok(Verifiers(Inner::Registered(keys))),
            ClientKeys::JwksUri(uri) => {
                let Some(kid) = unverified_kid(compact) else {
                    return Ok(Verifiers(Inner::Published(None)));
                };
                // A URI not on the list is refused at load for static clients; a registration
                // stored earlier under another list finds no key rather than fetching.
                let Ok(uri) = self.allowed.jwks_uri(uri) else {
                    return Ok(Verifiers(Inner::Published(None)));
                };
                let key = self.keystore.key(deps, &uri, &kid, KeyUse::Signature)?;
                Ok(Verifiers(Inner::Published(key)))
            }
        }
    }
}

/// The keys [`KeySource::verifiers`] found.
pub struct Verifiers<'c>(Inner<'c>);

enum Inner<'c> {
    Registered(&'c [PublicJwk]),
    Published(Option<Arc<PublicJwk>>),
}

impl Verifiers<'_> {
    /// `(kid, verifier)` pairs, as [`crate::jose::jws::verify_ps256`] takes them.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&str, &Ps256VerifyingKey)> + '_> {
        match &self.0 {
            Inner::Registered(keys) => Box::new(keys.iter().map(|k| (k.kid.as_str(), &k.verifier))),
            Inner::Published(key) => Box::new(key.iter().map(|k| (k.kid.as_str(), &k.verifier))),
        }
    }
}

/// The `kid` of a compact JWS's protected header, read before verification only to choose
/// the key (KEY-9); nothing else of an unverified token is trusted.
fn unverified_kid(compact: &str) -> Option<String> {
    let header = compact.split('.').next()?;
    if header.len() > 4096 {
        return None;
    }
    let bytes = crate::jose::b64url_decode(header)?;
    let header: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    header.get("kid")?.as_str().map(str::to_string)
}
