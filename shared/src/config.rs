//! Typed configuration from the Spin variables of design.md.
//!
//! Every variable is read into a type whose constructor checks the profile's range, once per
//! component instance. A missing or bad variable becomes a [`ConfigError`] that names the
//! variable and the problem, never the value (several variables are secrets); the adapter logs
//! it once and answers 500 `server_error`. Nothing here panics on bad input.

use crate::client::registry::Clients;
use crate::jose::keys::ServerKeys;
use crate::users::Users;

/// The variable names of design.md (fixed).
pub mod var {
    /// Issuer identifier, the base of every URL.
    pub const ISSUER: &str = "issuer";
    /// JWK Set of RSA signing keys (secret).
    pub const SIGNING_KEYS: &str = "signing_keys";
    /// JWK Set of RSA-OAEP keys (secret).
    pub const ENCRYPTION_KEYS: &str = "encryption_keys";
    /// JSON array of client registrations.
    pub const CLIENTS: &str = "clients";
    /// JSON array of account holders.
    pub const USERS: &str = "users";
    /// Bearer token of the authentication device (secret).
    pub const DEVICE_API_TOKEN: &str = "device_api_token";
    /// Header carrying the client certificate from the TLS-terminating proxy.
    pub const CLIENT_CERT_HEADER: &str = "client_cert_header";
    /// Access-token lifetime, seconds.
    pub const ACCESS_TOKEN_TTL: &str = "access_token_ttl";
    /// auth_req_id lifetime, seconds.
    pub const AUTH_REQ_TTL: &str = "auth_req_ttl";
    /// Poll interval, seconds.
    pub const POLL_INTERVAL: &str = "poll_interval";
    /// id_token lifetime, seconds.
    pub const ID_TOKEN_TTL: &str = "id_token_ttl";
    /// Refresh-token lifetime, seconds.
    pub const REFRESH_TOKEN_TTL: &str = "refresh_token_ttl";
    /// The sandbox device page: `on`, or empty (off).
    pub const DEVICE_PAGE: &str = "device_page";
    /// Backchannel requests one client may make per minute (BCA-31).
    pub const CLIENT_RATE_LIMIT: &str = "client_rate_limit";
    /// Backchannel requests one client may have pending at once (BCA-31).
    pub const CLIENT_PENDING_LIMIT: &str = "client_pending_limit";
    /// Backchannel requests that may name one holder per hour (BCA-31).
    pub const HOLDER_RATE_LIMIT: &str = "holder_rate_limit";
    /// Backchannel requests one holder may have pending at once (BCA-31).
    pub const HOLDER_PENDING_LIMIT: &str = "holder_pending_limit";
    /// Consent lodging requests one client may make per minute (CONS, issue 16).
    pub const CONSENT_RATE_LIMIT: &str = "consent_rate_limit";
    /// `client_credentials` grants one client may ask for per minute (TOK-20, issue 16).
    pub const CLIENT_CREDENTIALS_RATE_LIMIT: &str = "client_credentials_rate_limit";
    /// JSON array of the `x5t#S256` thumbprints of the certificates the bank's backend
    /// presents on `/device/...` (required while `client_cert_header` is set).
    pub const DEVICE_API_CERTIFICATES: &str = "device_api_certificates";
    /// Comma-separated origins from which `jwks_uri`s may be fetched (KEY-10).
    pub const JWKS_ALLOWED_HOSTS: &str = "jwks_allowed_hosts";
    /// Seconds a fetched JWK Set stays fresh (KEY-12).
    pub const CLIENT_JWKS_TTL: &str = "client_jwks_ttl";
    /// The base URL of the host name where the proxy asks for client certificates (DISC-3).
    pub const MTLS_BASE_URL: &str = "mtls_base_url";
}

/// A variable that is missing or bad. Its text names the variable and the problem only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable's name.
    pub variable: &'static str,
    /// What is wrong, without the value.
    pub problem: String,
}

impl ConfigError {
    /// A problem with `variable`.
    pub fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self {
            variable,
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "configuration variable `{}`: {}",
            self.variable, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}

/// Where variables come from: Spin in the components, a map in tests.
pub trait Variables {
    /// The value of `name`, `Ok(None)` when the component has no such variable.
    fn get(&self, name: &'static str) -> Result<Option<String>, ConfigError>;
}

impl Variables for std::collections::HashMap<&'static str, String> {
    fn get(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        Ok(std::collections::HashMap::get(self, name).cloned())
    }
}

/// The value of a variable that must be set and non-empty.
pub fn required(vars: &dyn Variables, name: &'static str) -> Result<String, ConfigError> {
    match vars.get(name)? {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::new(name, "is not set")),
    }
}

/// The issuer identifier (DISC-1): an `https` URL with no query, fragment, user info or
/// trailing slash. Plain `http` is accepted only for a loopback host, for local development.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer(String);

impl Issuer {
    /// Checks the form of an issuer identifier.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::new(var::ISSUER, why.to_string());
        let (rest, secure) = if let Some(rest) = text.strip_prefix("https://") {
            (rest, true)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (rest, false)
        } else {
            return Err(bad("must be an https URL"));
        };
        if text.ends_with('/') {
            return Err(bad("must not end with a slash"));
        }
        if text
            .bytes()
            .any(|b| !(0x21..=0x7e).contains(&b) || matches!(b, b'?' | b'#' | b'@' | b'\\'))
        {
            return Err(bad(
                "must be a plain URL: no query, fragment, user info, spaces or non-ASCII",
            ));
        }
        let authority = rest.split('/').next().unwrap_or_default();
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        if host.is_empty() {
            return Err(bad("must name a host"));
        }
        if let Some(port) = authority.rsplit_once("]:").map(|(_, p)| p).or_else(|| {
            (!authority.starts_with('['))
                .then(|| authority.split_once(':').map(|(_, p)| p))
                .flatten()
        }) && (port.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(bad("has a bad port"));
        }
        // DISC-1: only an address literal in 127.0.0.0/8, [::1] or `localhost` is loopback;
        // a name such as `127.attacker.example` is not.
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
            || (authority.starts_with('[')
                && host
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok_and(|ip| ip.is_loopback()));
        if !secure && !loopback {
            return Err(bad(
                "must be an https URL (plain http only for a loopback host)",
            ));
        }
        Ok(Self(text.to_string()))
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL of `path` (which starts with `/`) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.0, path)
    }
}

/// A lifetime in seconds within the profile's range, parsed from its variable.
fn seconds(
    vars: &dyn Variables,
    name: &'static str,
    range: std::ops::RangeInclusive<u32>,
    clause: &str,
) -> Result<u32, ConfigError> {
    let text = required(vars, name)?;
    let value: u32 = text
        .trim()
        .parse()
        .map_err(|_| ConfigError::new(name, "must be a whole number of seconds"))?;
    if !range.contains(&value) {
        return Err(ConfigError::new(
            name,
            format!(
                "must be between {} and {} seconds ({clause})",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(value)
}

/// Lifetimes and the poll interval, each within the range the profile allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Access tokens: 300–900 s (BR-CIBA 5.2.2-10, TKN-3, TOK-13).
    pub access_token: u32,
    /// auth_req_id: 60–360 s; the profile's acknowledgement maximum is 300 s, 360 is allowed
    /// for a literal reading of item 13 (BCA-26, AMB-1).
    pub auth_req: u32,
    /// Minimum seconds between polls: 5–60 (BCA-27; CIBA 7.3 makes 5 the client default).
    pub poll_interval: u32,
    /// id_tokens: at least 180 days, at most 5 years (TKN-5, AMB-20; KEY-6 retention grows with it).
    pub id_token: u32,
    /// Refresh tokens of consents with no end date: 1 day to 10 years (TOK-19).
    pub refresh_token: u32,
}

impl Lifetimes {
    /// Reads the five lifetime variables.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        Ok(Self {
            access_token: seconds(vars, var::ACCESS_TOKEN_TTL, 300..=900, "TKN-3")?,
            auth_req: seconds(vars, var::AUTH_REQ_TTL, 60..=360, "BCA-26")?,
            poll_interval: seconds(vars, var::POLL_INTERVAL, 5..=60, "BCA-27")?,
            id_token: seconds(vars, var::ID_TOKEN_TTL, 15_552_000..=157_680_000, "TKN-5")?,
            refresh_token: seconds(vars, var::REFRESH_TOKEN_TTL, 86_400..=315_360_000, "TOK-19")?,
        })
    }
}

/// A count within `range`, parsed from its variable.
fn count(
    vars: &dyn Variables,
    name: &'static str,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ConfigError> {
    let value: u32 = required(vars, name)?
        .trim()
        .parse()
        .map_err(|_| ConfigError::new(name, "must be a whole number"))?;
    if !range.contains(&value) {
        return Err(ConfigError::new(
            name,
            format!("must be between {} and {}", range.start(), range.end()),
        ));
    }
    Ok(value)
}

/// The range of every abuse limit: at least 1, so that a bank cannot turn one off, only raise
/// it (load tests lift them to the top).
const LIMIT_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;

/// The abuse limits of the backchannel endpoint (BCA-31; FAPI-CIBA 7.2), enforced by
/// [`crate::rate_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbuseLimits {
    /// Requests per client per minute; every request past client authentication counts,
    /// refused or not (issue 16).
    pub client_rate: u32,
    /// Requests one client may have pending at once.
    pub client_pending: u32,
    /// Requests naming one holder per hour.
    pub holder_rate: u32,
    /// Requests one holder may have pending at once; the device list reads as many of the
    /// holder's latest requests ([`crate::auth_req::HolderSlots`]).
    pub holder_pending: u32,
}

impl AbuseLimits {
    /// The production values `spin.toml` ships (README, Abuse limits): 600 requests a minute
    /// and 1,000 pending per client; 20 requests an hour and 5 pending per holder (a person's
    /// phone). Load tests and soaks lift them explicitly (`ciba-host dev`, the test fixtures).
    pub const SHIPPED: Self = Self {
        client_rate: 600,
        client_pending: 1000,
        holder_rate: 20,
        holder_pending: 5,
    };

    /// Reads the four limit variables, each 1–1,000,000.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        Ok(Self {
            client_rate: count(vars, var::CLIENT_RATE_LIMIT, LIMIT_RANGE)?,
            client_pending: count(vars, var::CLIENT_PENDING_LIMIT, LIMIT_RANGE)?,
            holder_rate: count(vars, var::HOLDER_RATE_LIMIT, LIMIT_RANGE)?,
            holder_pending: count(vars, var::HOLDER_PENDING_LIMIT, LIMIT_RANGE)?,
        })
    }
}

/// An abuse limit read on its own, 1–1,000,000 like the BCA-31 limits: the per-client,
/// per-minute limits of consent lodging and `client_credentials` (issue 16: both grow the
/// store), and `holder_pending_limit` where the device API sizes its list from it.
pub fn abuse_limit(vars: &dyn Variables, name: &'static str) -> Result<u32, ConfigError> {
    count(vars, name, LIMIT_RANGE)
}

/// The header that carries the client certificate, or `None` when the server runs without
/// mTLS (local development only; discovery then says so, design.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertHeader(Option<String>);

impl ClientCertHeader {
    /// Reads `client_cert_header`: empty or unset means no mTLS.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        let value = vars.get(var::CLIENT_CERT_HEADER)?.unwrap_or_default();
        let name = value.trim().to_ascii_lowercase();
        if name.is_empty() {
            return Ok(Self(None));
        }
        // RFC 9110 5.1: a header name is a token.
        let token = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(ConfigError::new(
                var::CLIENT_CERT_HEADER,
                "must be an HTTP header name",
            ));
        }
        Ok(Self(Some(name)))
    }

    /// The header name in lower case, when mTLS is on.
    pub fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// Whether clients must present a certificate and tokens are bound to it (CLI-9).
    pub fn mtls(&self) -> bool {
        self.0.is_some()
    }
}

/// The bearer secret of the authentication device. Compared in constant time, never printed.
#[derive(Clone)]
pub struct DeviceApiToken(String);

impl std::fmt::Debug for DeviceApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceApiToken([redacted])")
    }
}

impl DeviceApiToken {
    /// Reads `device_api_token`: at least 32 visible ASCII characters.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        let value = required(vars, var::DEVICE_API_TOKEN)?;
        if value.len() < 32 || !value.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(ConfigError::new(
                var::DEVICE_API_TOKEN,
                "must be at least 32 visible ASCII characters",
            ));
        }
        Ok(Self(value))
    }

    /// Whether `presented` is this token. Both are hashed to equal-length SHA-256 digests
    /// first, which are compared in constant time (`subtle`), so neither the length nor the
    /// position of the first difference shows in the timing.
    pub fn matches(&self, presented: &str) -> bool {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let ours = sha2::Sha256::digest(self.0.as_bytes());
        let theirs = sha2::Sha256::digest(presented.as_bytes());
        ours.as_slice().ct_eq(theirs.as_slice()).into()
    }
}

/// The certificates the bank's backend may present on the device API, by `x5t#S256`
/// (design.md, The device API): with mTLS on, a leaked device token alone approves nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceApiCertificates(Vec<[u8; 32]>);

impl DeviceApiCertificates {
    /// Reads `device_api_certificates`: a JSON array of base64url SHA-256 thumbprints. It is
    /// required, non-empty, whenever `client_cert_header` is set; without mTLS (sandboxes) it
    /// may be empty, and a value given is still checked.
    pub fn load(vars: &dyn Variables, mtls: bool) -> Result<Self, ConfigError> {
        let name = var::DEVICE_API_CERTIFICATES;
        let value = vars.get(name)?.unwrap_or_default();
        if value.trim().is_empty() {
            return if mtls {
                Err(ConfigError::new(
                    name,
                    "is required while client_cert_header is set (mTLS on)",
                ))
            } else {
                Ok(Self(Vec::new()))
            };
        }
        let bad = || ConfigError::new(name, "must be a JSON array of x5t#S256 thumbprints");
        let list: Vec<String> = serde_json::from_str(&value).map_err(|_| bad())?;
        let thumbprints = list
            .iter()
            .map(|t| {
                crate::jose::b64url_decode(t.trim()).and_then(|b| <[u8; 32]>::try_from(b).ok())
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        if mtls && thumbprints.is_empty() {
            return Err(ConfigError::new(
                name,
                "must list at least one thumbprint while client_cert_header is set (mTLS on)",
            ));
        }
        Ok(Self(thumbprints))
    }

    /// Whether a certificate with this `x5t#S256` is listed. Every listed thumbprint is
    /// compared, each in constant time (`subtle`).
    pub fn lists(&self, x5t_s256: &str) -> bool {
        use subtle::ConstantTimeEq;
        let Some(presented) =
            crate::jose::b64url_decode(x5t_s256).and_then(|b| <[u8; 32]>::try_from(b).ok())
        else {
            return false;
        };
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |found, t| {
                found | t.ct_eq(&presented)
            })
            .into()
    }
}

/// Everything the server is configured with.
#[derive(Debug)]
pub struct Config {
    /// `issuer`.
    pub issuer: Issuer,
    /// `signing_keys` and `encryption_keys`.
    pub keys: ServerKeys,
    /// `clients`.
    pub clients: Clients,
    /// `users`.
    pub users: Users,
    /// `device_api_token`.
    pub device_api_token: DeviceApiToken,
    /// `client_cert_header`.
    pub client_cert_header: ClientCertHeader,
    /// The five lifetimes.
    pub lifetimes: Lifetimes,
}

impl Config {
    /// Reads and checks every variable; the first problem found is returned.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        Ok(Self {
            issuer: Issuer::parse(&required(vars, var::ISSUER)?)?,
            keys: load_keys(vars)?,
            clients: Clients::load(vars)?,
            users: Users::load(vars)?,
            device_api_token: DeviceApiToken::load(vars)?,
            client_cert_header: ClientCertHeader::load(vars)?,
            lifetimes: Lifetimes::load(vars)?,
        })
    }
}

/// Reads `signing_keys` and `encryption_keys`.
pub fn load_keys(vars: &dyn Variables) -> Result<ServerKeys, ConfigError> {
    ServerKeys::parse(
        &required(vars, var::SIGNING_KEYS)?,
        &required(vars, var::ENCRYPTION_KEYS)?,
    )
}
