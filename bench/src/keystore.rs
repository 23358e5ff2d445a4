//! A small keystore for runs with a client whose keys are published by `jwks_uri`
//! (registration.md KEY-8, issue 17 item 7): it serves the public half of the benchmark
//! client's key at `http://<addr>/bench/application.jwks` and counts the fetches, and it
//! writes the `clients` value that registers such a client next to `ciba-host dev`'s demo
//! client.
//!
//! ```sh
//! ciba-bench --keyed-clients 127.0.0.1:3399 > /tmp/clients.json
//! ciba-host dev --variable clients=@/tmp/clients.json \
//!   --variable jwks_allowed_hosts=http://127.0.0.1:3399
//! ciba-bench --client-id demo-client-keyed --keystore 127.0.0.1:3399
//! ```

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

/// The path the keystore serves the set at.
pub const PATH: &str = "/bench/application.jwks";

/// The `client_id` of the demo client registered by `jwks_uri`.
pub const KEYED_CLIENT_ID: &str = "demo-client-keyed";

/// `ciba-host dev`'s `clients.json` in `dev_dir`, with a copy of its first client under
/// [`KEYED_CLIENT_ID`] whose keys are at this keystore instead of by value.
pub fn keyed_clients(dev_dir: &Path, addr: &str) -> anyhow::Result<String> {
    let path = dev_dir.join("clients.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {} (run `ciba-host dev` once)", path.display()))?;
    let mut clients: Vec<Value> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON array", path.display()))?;
    let mut keyed = clients
        .first()
        .cloned()
        .with_context(|| format!("{} registers no client", path.display()))?;
    let object = keyed
        .as_object_mut()
        .context("a client registration is not a JSON object")?;
    object.remove("jwks");
    object.insert("client_id".into(), json!(KEYED_CLIENT_ID));
    object.insert("jwks_uri".into(), json!(format!("http://{addr}{PATH}")));
    clients.retain(|c| c["client_id"] != json!(KEYED_CLIENT_ID));
    clients.push(keyed);
    Ok(serde_json::to_string(&clients)?)
}

/// A running keystore.
pub struct Keystore {
    hits: Arc<AtomicUsize>,
}

impl Keystore {
    /// Serves `{"keys": [public]}` on `addr` (a loopback `host:port`) from a task of the
    /// current Tokio runtime.
    pub async fn start(addr: &str, public: Value) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--keystore {addr}: cannot listen"))?;
        let body = Bytes::from(json!({ "keys": [public] }).to_string());
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (body, hits) = (body.clone(), counted.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: http::Request<_>| {
                        let (body, hits) = (body.clone(), hits.clone());
                        async move {
                            let mut response = http::Response::new(Full::new(Bytes::new()));
                            if request.uri().path() == PATH {
                                hits.fetch_add(1, Ordering::SeqCst);
                                *response.body_mut() = Full::new(body);
                                response.headers_mut().insert(
                                    http::header::CONTENT_TYPE,
                                    http::HeaderValue::from_static("application/json"),
                                );
                            } else {
                                *response.status_mut() = http::StatusCode::NOT_FOUND;
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { hits })
    }

    /// How many times the set was fetched.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The public JWK of `key` under `kid`, as a keystore publishes it.
pub fn public_jwk(key: &devkeys::rsa::RsaPrivateKey, kid: &str) -> Value {
    devkeys::public_jwk(&devkeys::rsa::RsaPublicKey::from(key), kid, "sig", "PS256")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_clients_adds_a_jwks_uri_copy_of_the_demo_client() {
        let dir = std::env::temp_dir().join(format!("ciba-bench-keyed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("clients.json"),
            json!([{ "client_id": "demo-client", "jwks": { "keys": [] }, "scope": "openid" }])
                .to_string(),
        )
        .unwrap();
        let text = keyed_clients(&dir, "127.0.0.1:3399").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let clients: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(clients[0]["client_id"], json!("demo-client"));
        assert_eq!(
            clients[1],
            json!({
                "client_id": KEYED_CLIENT_ID,
                "jwks_uri": "http://127.0.0.1:3399/bench/application.jwks",
                "scope": "openid",
            })
        );
    }
}
