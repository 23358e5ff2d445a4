//! Outbound HTTP for the components, the way Spin 4 serves it (spinframework/spin
//! `crates/factor-outbound-http/src/wasi.rs`, `crates/outbound-networking-config/src/
//! allowed_hosts.rs`): `wasi:http/outgoing-handler` (0.2), limited by the component's
//! `allowed_outbound_hosts`.
//!
//! - Each entry of `allowed_outbound_hosts` is one `scheme://host[:port]` (`*` wildcards for
//!   each, `*.domain` for subdomains, port ranges `a..b`); a `{{ variable }}` template in an
//!   entry is resolved from the application variables and the result parsed as one entry, as
//!   Spin does: a value holding a comma-separated list is malformed, and the app does not start.
//! - A request to a destination no entry allows gets `ErrorCode::HttpRequestDenied` from the
//!   response future, and a warning line, as Spin answers it.
//! - Redirects are never followed (a 3xx reaches the guest as it is), like Spin's client.
//! - `https` destinations are reached over TLS with the component's client configuration
//!   (host/src/tls.rs: Spin's default roots, or the runtime configuration's `[[client_tls]]`);
//!   a handshake that fails, for a certificate not trusted or not for the host, is
//!   `ErrorCode::TlsProtocolError`, as Spin's `connect_tls` answers it, with a warning line.
//!
//! Where this host differs: each request has a connection of its own, over HTTP/1.1 only
//! (Spin pools connections and negotiates HTTP/2 by ALPN).

use std::ops::Range;

use anyhow::{Context, bail};
use http_body_util::BodyExt;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{
    HostFutureIncomingResponse, IncomingResponse, OutgoingRequestConfig,
};
use wasmtime_wasi_http::p2::{HttpResult, WasiHttpHooks};

use crate::runtime::Logs;

/// One `allowed_outbound_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    /// `None`: any scheme (`*`).
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.domain`, kept as `.domain`.
    Subdomain(String),
    Exact(String),
    /// `self`: the app itself, by relative URL (never an absolute destination).
    ToSelf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    Port(u16),
    /// `a..b`, `b` excluded as in Spin.
    Range(Range<u16>),
}

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        _ => None,
    }
}

impl AllowedHost {
    /// Parses one entry as Spin's `AllowedHostConfig::parse` does.
    fn parse(entry: &str) -> anyhow::Result<Self> {
        let url = entry.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            bail!(
                "{url:?} does not contain a scheme (e.g., 'http://' or '*://'): hosts must be \
                 in the form <scheme>://<host>[:<port>], with '*' wildcards allowed for each"
            );
        };
        let (host, rest) = rest.rsplit_once(':').unwrap_or((rest, ""));
        let port = match rest.split_once('/') {
            Some((_, path)) if !path.is_empty() => {
                bail!("{url:?} has a path but is not allowed to")
            }
            Some((port, _)) => port,
            None => rest,
        };
        let scheme = match scheme {
            "*" => None,
            s if !s.is_empty() && s.chars().all(char::is_alphabetic) => Some(s.to_string()),
            s => bail!("scheme {s:?} contains non alphabetic character"),
        };
        let host = host.trim();
        let host = if host == "*" {
            HostPattern::Any
        } else if host == "self" || host == "self.alt" {
            HostPattern::ToSelf
        } else if host.starts_with('{') {
            bail!("host lists are not yet supported")
        } else if matches!(host.split('/').nth(1), Some(p) if !p.is_empty()) {
            bail!(
                "{url:?}: hosts must not contain paths (address ranges are not supported by this host)"
            )
        } else if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') {
                bail!("invalid allowed host {host}: wildcards are allowed only as prefixes");
            }
            HostPattern::Subdomain(format!(".{domain}"))
        } else if host.contains('*') {
            bail!("invalid allowed host {host}: wildcards are allowed only as subdomains")
        } else {
            HostPattern::Exact(host.trim_end_matches('/').to_string())
        };
        let port = if port.is_empty() {
            let known = scheme.as_deref().and_then(well_known_port);
            PortPattern::Port(known.with_context(|| {
                format!("no port was provided and the scheme {scheme:?} has no known default port")
            })?)
        } else if port == "*" {
            PortPattern::Any
        } else if let Some((start, end)) = port.split_once("..") {
            let start = start
                .parse()
                .with_context(|| format!("port range {port:?} contains non-number"))?;
            let end = end
                .parse()
                .with_context(|| format!("port range {port:?} contains non-number"))?;
            PortPattern::Range(start..end)
        } else {
            PortPattern::Port(
                port.parse()
                    .with_context(|| format!("port {port:?} is not a number"))?,
            )
        };
        Ok(Self { scheme, host, port })
    }

    fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Subdomain(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::Exact(h) => h == host,
            HostPattern::ToSelf => false,
        };
        let port_ok = match &self.port {
            PortPattern::Any => true,
            pattern => match port.or_else(|| well_known_port(scheme)) {
                Some(p) => match pattern {
                    PortPattern::Port(q) => *q == p,
                    PortPattern::Range(r) => r.contains(&p),
                    PortPattern::Any => true,
                },
                None => false,
            },
        };
        scheme_ok && host_ok && port_ok
    }
}

/// A component's `allowed_outbound_hosts`, templates resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<AllowedHost>);

impl AllowedHosts {
    /// Parses the resolved entries; an error is Spin's "`allowed_outbound_hosts` is
    /// malformed".
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> anyhow::Result<Self> {
        if entries.len() == 1 && entries[0].as_ref() == "insecure:allow-all" {
            bail!("'insecure:allow-all' is not allowed: use '*://*:*'");
        }
        entries
            .iter()
            .map(|e| AllowedHost::parse(e.as_ref()))
            .collect::<anyhow::Result<Vec<_>>>()
            .map(Self)
            .context("`allowed_outbound_hosts` is malformed")
    }

    /// Whether an absolute request URI may be sent.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        // The `url` crate Spin parses with lower-cases the host and drops a default port.
        let host = host.to_ascii_lowercase();
        let port = uri
            .port_u16()
            .filter(|p| Some(*p) != well_known_port(scheme));
        self.0.iter().any(|h| h.allows(scheme, &host, port))
    }
}

/// The `wasi:http` (0.2) hooks of one component instance.
pub struct Outbound {
    /// The component's id, for the log line.
    pub id: String,
    /// What it may reach.
    pub allowed: std::sync::Arc<AllowedHosts>,
    /// Where the denial warning goes.
    pub logs: Logs,
    /// Its TLS client configurations (`[[client_tls]]`).
    pub tls: crate::tls::ComponentTls,
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> HttpResult<HostFutureIncomingResponse> {
        if !self.allowed.allows(request.uri()) {
            // Spin's warning, then `HttpRequestDenied` from the response future.
            self.logs.line(format_args!(
                "Warning: component {} tried to make an outbound network connection to \
                 disallowed destination '{}'. ErrorCode::HttpRequestDenied",
                self.id,
                origin_of(request.uri())
            ));
            return Ok(HostFutureIncomingResponse::ready(Ok(Err(
                ErrorCode::HttpRequestDenied,
            ))));
        }
        let tls = if config.use_tls || request.uri().scheme_str() == Some("https") {
            // Spin looks the configuration up by the URI's host, without the port.
            let host = request.uri().host().unwrap_or_default();
            match self.tls.config_for(host) {
                Ok(tls) => Some(tls),
                Err(e) => {
                    self.logs.line(format_args!(
                        "component {}: no TLS client configuration: {e}",
                        self.id
                    ));
                    return Ok(HostFutureIncomingResponse::ready(Ok(Err(
                        ErrorCode::InternalError(Some("no TLS client configuration".into())),
                    ))));
                }
            }
        } else {
            None
        };
        let failed = Failed {
            id: self.id.clone(),
            logs: self.logs.clone(),
        };
        let handle =
            wasmtime_wasi::runtime::spawn(
                async move { Ok(send(request, config, tls, failed).await) },
            );
        Ok(HostFutureIncomingResponse::pending(handle))
    }
}

/// `scheme://host[:port]` of a URI, for the log (never its path or query).
fn origin_of(uri: &http::Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(s), Some(a)) => format!("{s}://{}", a.as_str().rsplit('@').next().unwrap_or("")),
        _ => "(relative)".to_string(),
    }
}

/// Where a failed handshake is told.
struct Failed {
    id: String,
    logs: Logs,
}

/// Sends one request over a new HTTP/1.1 connection (over TLS with `tls`), with the guest's
/// connect and first-byte timeouts (the between-bytes one applies as the guest reads the body).
async fn send(
    request: http::Request<HyperOutgoingBody>,
    config: OutgoingRequestConfig,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    failed: Failed,
) -> Result<IncomingResponse, ErrorCode> {
    use tokio::time::timeout;
    let authority = request
        .uri()
        .authority()
        .ok_or(ErrorCode::HttpRequestUriInvalid)?
        .clone();
    let default_port = if tls.is_some() { 443 } else { 80 };
    let address = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(default_port)
    );
    let stream = timeout(
        config.connect_timeout,
        tokio::net::TcpStream::connect(&address),
    )
    .await
    .map_err(|_| ErrorCode::ConnectionTimeout)?
    .map_err(|_| ErrorCode::ConnectionRefused)?;
    if let Some(tls) = tls {
        // The name verified is the URI's host, as Spin's `connect_tls` takes it.
        let name = rustls::pki_types::ServerName::try_from(authority.host().to_string()).map_err(
            |_| {
                ErrorCode::DnsError(
                    wasmtime_wasi_http::p2::bindings::http::types::DnsErrorPayload {
                        rcode: Some("invalid dns name".into()),
                        info_code: Some(0),
                    },
                )
            },
        )?;
        // Spin's handshake runs inside the first-byte timeout.
        let stream = timeout(
            config.first_byte_timeout,
            tokio_rustls::TlsConnector::from(tls).connect(name, stream),
        )
        .await
        .map_err(|_| ErrorCode::ConnectionReadTimeout)?
        .map_err(|e| {
            // The reason (an unknown issuer, a name not in the certificate) holds no secret.
            failed.logs.line(format_args!(
                "Warning: component {}: TLS handshake with 'https://{}' failed: {e}. \
                 ErrorCode::TlsProtocolError",
                failed.id,
                origin_host(&authority)
            ));
            ErrorCode::TlsProtocolError
        })?;
        return exchange(stream, request, &authority, config).await;
    }
    exchange(stream, request, &authority, config).await
}

/// `host[:port]` of an authority (never its user info), for the log.
fn origin_host(authority: &http::uri::Authority) -> &str {
    authority.as_str().rsplit('@').next().unwrap_or("")
}

/// The HTTP/1.1 exchange on a connected stream, plain or TLS.
async fn exchange<S>(
    stream: S,
    mut request: http::Request<HyperOutgoingBody>,
    authority: &http::uri::Authority,
    config: OutgoingRequestConfig,
) -> Result<IncomingResponse, ErrorCode>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::time::timeout;
    let (mut sender, connection) = timeout(
        config.connect_timeout,
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)),
    )
    .await
    .map_err(|_| ErrorCode::ConnectionTimeout)?
    .map_err(wasmtime_wasi_http::p2::hyper_request_error)?;
    let worker = wasmtime_wasi::runtime::spawn(async move {
        let _ = connection.await;
    });
    if let Ok(host) = http::HeaderValue::from_str(authority.as_str()) {
        request.headers_mut().insert(http::header::HOST, host);
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = path.parse().map_err(|_| ErrorCode::HttpRequestUriInvalid)?;
    let response = timeout(config.first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| ErrorCode::ConnectionReadTimeout)?
        .map_err(wasmtime_wasi_http::p2::hyper_request_error)?
        .map(|body| {
            body.map_err(wasmtime_wasi_http::p2::hyper_request_error)
                .boxed_unsync()
        });
    Ok(IncomingResponse {
        resp: response,
        worker: Some(worker),
        between_bytes_timeout: config.between_bytes_timeout,
    })
}
#[cfg(test)]
mod tests {
    use super::*;

    fn allows(entries: &[&str], url: &str) -> bool {
        AllowedHosts::parse(entries)
            .unwrap()
            .allows(&url.parse().unwrap())
    }

    #[test]
    fn entries_allow_as_spin_s_do() {
        let keystore = "https://keystore.directory.openbankingbrasil.org.br";
        assert!(allows(
            &[keystore],
            &format!("{keystore}/a/b/application.jwks")
        ));
        assert!(allows(&[keystore], &format!("{keystore}:443/x")));
        assert!(!allows(
            &[keystore],
            "http://keystore.directory.openbankingbrasil.org.br/x"
        ));
        assert!(!allows(&[keystore], &format!("{keystore}:8443/x")));
        assert!(!allows(&[keystore], "https://other.example/x"));
        assert!(allows(
            &["http://127.0.0.1:8080"],
            "http://127.0.0.1:8080/x"
        ));
        assert!(!allows(
            &["http://127.0.0.1:8080"],
            "http://127.0.0.1:8081/x"
        ));
        assert!(allows(
            &["https://*.example.org"],
            "https://a.b.example.org/x"
        ));
        assert!(!allows(&["https://*.example.org"], "https://example.org/x"));
        assert!(allows(&["*://*:*"], "http://anything:1/x"));
        assert!(allows(
            &["http://localhost:8000..8010"],
            "http://localhost:8009/"
        ));
        assert!(!allows(
            &["http://localhost:8000..8010"],
            "http://localhost:8010/"
        ));
        assert!(!allows(&[], "https://example.org/"));
    }

    #[test]
    fn malformed_entries_are_refused_as_spin_refuses_them() {
        for bad in [
            "keystore.example",
            "",
            "https://a.example,https://b.example",
            "https://a.example/path",
            "https://a.*.example",
            "ftp+x://a.example",
            "foo://a.example",
            "insecure:allow-all",
        ] {
            assert!(AllowedHosts::parse(&[bad]).is_err(), "{bad:?}");
        }
    }
}
