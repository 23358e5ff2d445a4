//! Test-only component (never deployed): exposes the key-value store over HTTP so that the
//! end-to-end tests can check persistence and the atomics through the real host.
//!
//! - `GET /kv/<key>`: 200 with the value, or 404
//! - `PUT /kv/<key>`: stores the body
//! - `POST /kv/<key>/cas` `{"expected": "…"|null, "new": "…"}`: the glue's compare-and-swap
//! - `POST /kv/<key>/race`: reads with a CAS handle, lets an intruder write, then swaps
//! - `POST /kv/<key>/swap`: reads with a CAS handle and swaps the body in, with no intruder:
//!   the store's own answer (`swapped`, `cas-failed`)
//! - `POST /kv/<key>/increment`: adds 1 to a counter
//! - `POST /kv/_/get-many` `{"keys": […]}`, `POST /kv/_/set-many` `{"pairs": {key: value}}`,
//!   `POST /kv/_/delete-many` `{"keys": […]}`: the glue's batch calls (`wasi:keyvalue/batch`)
//! - `POST /kv/<key>/hold`: a barrier, to see requests interleave inside one instance: adds 1
//!   to `<key>-arrived`, then waits (sleeping, so the instance can take other requests) until
//!   `<key>-release` exists, and answers this instance's id and the most hold requests it has
//!   had in flight at once

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use ciba::store::{KeyValue, Swap};
use ciba_spin::SpinStore;
use spin_sdk::experimental::wasi::keyvalue::{atomics, store};
use spin_sdk::http::{IntoResponse, Request, StatusCode};
use spin_sdk::http_service;

fn json(status: u16, value: serde_json::Value) -> (StatusCode, String) {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        value.to_string(),
    )
}

/// Hold requests in flight in this instance now, and at most so far.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// This instance's id: a counter in the store, so that ids are unique across instances.
static INSTANCE: OnceLock<i64> = OnceLock::new();

async fn hold(store: &SpinStore, key: &str) -> Result<serde_json::Value, ciba::store::StoreError> {
    let instance = *INSTANCE.get_or_init(|| store.increment("probe-instances", 1).unwrap_or(-1));
    let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    let waited = async {
        store.increment(&format!("{key}-arrived"), 1)?;
        // At most 20 s, so that a failing test ends.
        for _ in 0..4000 {
            if store.get(&format!("{key}-release"))?.is_some() {
                return Ok(true);
            }
            spin_sdk::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Ok(false)
    }
    .await;
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    Ok(serde_json::json!({
        "instance": instance,
        "peak": PEAK.load(Ordering::SeqCst),
        "released": waited?,
    }))
}

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let request = match ciba_spin::read_request(request).await {
        Ok(r) => r,
        Err(e) => return json(400, serde_json::json!({ "error": e.code() })),
    };
    let store = match SpinStore::open_default() {
        Ok(s) => s,
        Err(e) => return json(500, serde_json::json!({ "error": e.to_string() })),
    };
    let path = request.path_info.trim_start_matches('/');
    let (key, action) = match path.split_once('/') {
        Some((k, a)) => (k, a),
        None => (path, ""),
    };
    let result = match (request.method, action) {
        (ciba::http::Method::Get, "") => match store.get(key) {
            Ok(Some(v)) => {
                return json(
                    200,
                    serde_json::json!({ "value": String::from_utf8_lossy(&v) }),
                );
            }
            Ok(None) => return json(404, serde_json::json!({})),
            Err(e) => Err(e),
        },
        (ciba::http::Method::Post | ciba::http::Method::Put | ciba::http::Method::Other, "") => {
            store
                .set(key, &request.body)
                .map(|()| serde_json::json!({ "stored": true }))
        }
        (ciba::http::Method::Post, "cas") => {
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let expected = body["expected"].as_str().map(str::as_bytes);
            let new = body["new"].as_str().unwrap_or_default().as_bytes();
            store
                .compare_and_swap(key, expected, new)
                .map(|s| serde_json::json!({ "swapped": s == Swap::Swapped }))
        }
        (ciba::http::Method::Post, "race") => {
            let race = || -> Result<&'static str, store::Error> {
                let bucket = store::open("default")?;
                let cas = atomics::Cas::new(&bucket, key)?;
                cas.current()?;
                bucket.set(key, b"intruder")?;
                Ok(match atomics::swap(cas, b"mine") {
                    Ok(()) => "swapped",
                    Err(atomics::CasError::CasFailed(_)) => "cas-failed",
                    Err(atomics::CasError::StoreError(_)) => "store-error",
                })
            };
            match race() {
                Ok(outcome) => Ok(serde_json::json!({ "outcome": outcome })),
                Err(_) => Ok(serde_json::json!({ "outcome": "store-error" })),
            }
        }
        (ciba::http::Method::Post, "swap") => {
            let swap = || -> Result<&'static str, store::Error> {
                let bucket = store::open("default")?;
                let cas = atomics::Cas::new(&bucket, key)?;
                cas.current()?;
                Ok(match atomics::swap(cas, &request.body) {
                    Ok(()) => "swapped",
                    Err(atomics::CasError::CasFailed(_)) => "cas-failed",
                    Err(atomics::CasError::StoreError(_)) => "store-error",
                })
            };
            match swap() {
                Ok(outcome) => Ok(serde_json::json!({ "outcome": outcome })),
                Err(_) => Ok(serde_json::json!({ "outcome": "store-error" })),
            }
        }
        (ciba::http::Method::Post, "hold") => hold(&store, key).await,
        (ciba::http::Method::Post, "increment") => store
            .increment(key, 1)
            .map(|v| serde_json::json!({ "value": v })),
        (ciba::http::Method::Post, "get-many" | "set-many" | "delete-many") => {
            batch(&store, action, &request.body)
        }
        _ => return json(404, serde_json::json!({})),
    };
    match result {
        Ok(v) => json(200, v),
        Err(e) => json(500, serde_json::json!({ "error": e.to_string() })),
    }
}

/// One batch call of the glue, from the JSON body described above.
fn batch(
    store: &SpinStore,
    action: &str,
    body: &[u8],
) -> Result<serde_json::Value, ciba::store::StoreError> {
    let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let keys: Vec<&str> = body["keys"]
        .as_array()
        .map(|keys| keys.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    match action {
        "get-many" => {
            let found = store.get_many(&keys)?;
            let found: serde_json::Map<String, serde_json::Value> = found
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into()))
                .collect();
            Ok(serde_json::json!({ "found": found }))
        }
        "set-many" => {
            let pairs: Vec<(&str, &[u8])> = body["pairs"]
                .as_object()
                .map(|pairs| {
                    pairs
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default().as_bytes()))
                        .collect()
                })
                .unwrap_or_default();
            store
                .set_many(&pairs)
                .map(|()| serde_json::json!({ "stored": pairs.len() }))
        }
        _ => store
            .delete_many(&keys)
            .map(|()| serde_json::json!({ "deleted": keys.len() })),
    }
}
