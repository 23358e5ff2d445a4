//! The load runner: a fixed list of prepared requests, sent over `concurrency` keep-alive
//! HTTP/1.1 connections (each connection one request at a time), timing each request from
//! the moment it is handed to the connection to the last byte of its response body.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// Where the server is: `http://host[:port][/prefix]`.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port`, to connect to.
    pub authority: String,
    /// The base path, without a trailing slash (usually empty).
    pub prefix: String,
}

impl Target {
    /// Parses a base URL. Only `http://`: put a TLS-terminating proxy's plain listener (or a
    /// local TLS tunnel) in front of an `https://` deployment.
    pub fn parse(base: &str) -> anyhow::Result<Self> {
        let uri: http::Uri = base.parse().context("--base is not a URL")?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "--base must be an http:// URL (this tool speaks no TLS)"
        );
        let host = uri.host().context("--base has no host")?;
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        let prefix = uri.path().trim_end_matches('/').to_string();
        Ok(Self { authority, prefix })
    }

    /// The request target for `path` (which starts with `/`).
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }
}

/// One prepared request.
#[derive(Clone, Debug)]
pub struct Req {
    /// The method.
    pub method: Method,
    /// Path and query, prefix included.
    pub path: String,
    /// Headers besides `host` (and `content-length`, which hyper adds).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body.
    pub body: Bytes,
}

impl Req {
    /// A `GET`.
    pub fn get(path: String) -> Self {
        Self {
            method: Method::GET,
            path,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A `POST` of `body` as `content_type`.
    pub fn post(path: String, content_type: &'static str, body: String) -> Self {
        Self {
            method: Method::POST,
            path,
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(content_type),
            )],
            body: Bytes::from(body),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: &str) -> anyhow::Result<Self> {
        self.headers.push((name, HeaderValue::from_str(value)?));
        Ok(self)
    }
}

/// What one request got: status 0 when the connection failed.
#[derive(Clone, Debug)]
pub struct Sample {
    /// From sending to the end of the body.
    pub latency: Duration,
    /// The status, or 0 for a transport error.
    pub status: u16,
    /// The body (the transport error's text for status 0).
    pub body: Bytes,
}

impl Sample {
    /// The body as JSON, or `Null`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A short description, for error notes.
    pub fn describe(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text: String = text.chars().take(160).collect();
        format!("{} {}", self.status, text.trim())
    }
}

/// A run: the samples in the order of the requests, and the wall time of the whole run.
#[derive(Debug)]
pub struct Run {
    /// One per request, same order.
    pub samples: Vec<Sample>,
    /// From the first request sent to the last response read.
    pub elapsed: Duration,
}

/// One HTTP/1.1 connection's request half.
pub type Sender = SendRequest<Full<Bytes>>;

/// Opens a keep-alive connection to `authority` (`TCP_NODELAY`).
pub async fn connect(authority: &str) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends `req` on `sender` and reads the whole response.
pub async fn send(sender: &mut Sender, authority: &str, req: &Req) -> anyhow::Result<(u16, Bytes)> {
    let mut builder = http::Request::builder()
        .method(req.method.clone())
        .uri(req.path.as_str())
        .header(http::header::HOST, authority);
    for (name, value) in &req.headers {
        builder = builder.header(name, value);
    }
    let request = builder.body(Full::new(req.body.clone()))?;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Sends every request of `reqs` over `concurrency` connections opened before the clock
/// starts; a connection that fails is counted as an error and opened again.
pub async fn run(target: &Target, reqs: Vec<Req>, concurrency: usize) -> anyhow::Result<Run> {
    let reqs = Arc::new(reqs);
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..concurrency.max(1) {
        senders.push(connect(&target.authority).await?);
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for sender in senders {
        let (reqs, next, authority) = (reqs.clone(), next.clone(), target.authority.clone());
        tasks.spawn(async move {
            let mut sender = Some(sender);
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(req) = reqs.get(i) else { break };
                let t0 = Instant::now();
                let result = match sender.as_mut() {
                    Some(s) => send(s, &authority, req).await,
                    None => match connect(&authority).await {
                        Ok(s) => send(sender.insert(s), &authority, req).await,
                        Err(e) => Err(e),
                    },
                };
                let latency = t0.elapsed();
                let (status, body) = result.unwrap_or_else(|e| {
                    sender = None;
                    (0, Bytes::from(format!("{e:#}")))
                });
                mine.push((
                    i,
                    Sample {
                        latency,
                        status,
                        body,
                    },
                ));
            }
            mine
        });
    }
    let mut all = Vec::with_capacity(reqs.len());
    while let Some(done) = tasks.join_next().await {
        all.extend(done?);
    }
    let elapsed = start.elapsed();
    all.sort_by_key(|(i, _)| *i);
    Ok(Run {
        samples: all.into_iter().map(|(_, s)| s).collect(),
        elapsed,
    })
}

/// Sends `reqs` one after the other on one connection (for the first-request measurements).
pub async fn sequential(target: &Target, reqs: &[Req]) -> anyhow::Result<Vec<Sample>> {
    let mut sender = connect(&target.authority).await?;
    let mut out = Vec::new();
    for req in reqs {
        let t0 = Instant::now();
        let (status, body) = send(&mut sender, &target.authority, req).await?;
        out.push(Sample {
            latency: t0.elapsed(),
            status,
            body,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keeps_the_port_and_the_prefix() {
        let t = Target::parse("http://127.0.0.1:3100/").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path("/jwks")),
            ("127.0.0.1:3100", "/jwks".into())
        );
        let t = Target::parse("http://auth.example/as").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path("/jwks")),
            ("auth.example:80", "/as/jwks".into())
        );
        assert!(Target::parse("https://auth.example").is_err());
    }
}
