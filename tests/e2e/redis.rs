//! Spin's Redis store on the local host (issue 18, items 1 and 3): the host's `wasi:keyvalue`
//! on a `redis-server` of the test's own, as Spin's `key-value-redis` does it (a new
//! connection per compare-and-swap, every swap reported `cas-failed`, even one that wrote),
//! the bundle's flow on it, and two `ciba-host` processes on one Redis with requests
//! alternating between them. The races on Redis are in one_grant.rs, ciba_grant.rs, soak.rs
//! and faults.rs (`..._on_redis`).

use serde_json::{Value, json};

use e2e::ciba::{Ciba, HOLDER_1_CPF, LOA2, assert_oauth_error, ciba_variables, text};
use e2e::{RedisServer, Server, Store};

fn post(server: &Server, path: &str, body: &[u8]) -> Value {
    let response = server.send("POST", path, &[], body);
    assert_eq!(response.status, 200, "{}", text(&response));
    response.json()
}

#[test]
fn redis_every_swap_reports_cas_failed_even_the_one_that_wrote() {
    let redis = RedisServer::start();
    let server = Server::probe(Store::Redis(redis.url()));
    server.send("PUT", "/kv/state", &[], b"PENDING");
    // Nothing else writes between `current` and `swap`: SQLite would say `swapped`.
    assert_eq!(
        post(&server, "/kv/state/swap", b"APPROVED")["outcome"],
        json!("cas-failed")
    );
    assert_eq!(
        server.get("/kv/state").json()["value"],
        json!("APPROVED"),
        "written all the same"
    );
    // And with a write in between, WATCH keeps the swap out.
    assert_eq!(
        post(&server, "/kv/state/race", b"")["outcome"],
        json!("cas-failed")
    );
    assert_eq!(server.get("/kv/state").json()["value"], json!("intruder"));
}

#[test]
fn redis_a_swap_opens_new_connections_and_other_calls_share_one() {
    let redis = RedisServer::start();
    let server = Server::probe(Store::Redis(redis.url()));
    server.send("PUT", "/kv/k", &[], b"v");
    // Each `info` is a connection of its own.
    let before = redis.info("total_connections_received");
    for _ in 0..5 {
        server.send("PUT", "/kv/k", &[], b"v");
        assert_eq!(server.get("/kv/k").status, 200);
        post(&server, "/kv/n/increment", b"");
    }
    let after_plain = redis.info("total_connections_received");
    // Only `info`'s own: get/set/increment share the host's one connection.
    assert_eq!(after_plain - before, 1);
    post(&server, "/kv/k/swap", b"w");
    let after_swap = redis.info("total_connections_received");
    // `info`'s own, the handle's own, and the fresh handle's that Spin makes for its
    // cas-failed answer.
    assert_eq!(after_swap - after_plain, 1 + 2);
}

#[test]
fn redis_the_glue_s_compare_and_swap_is_exactly_once_on_redis() {
    let redis = RedisServer::start();
    let server = Server::probe(Store::Redis(redis.url()));
    crate::store::cas_conflicts(&server);
    crate::store::twenty_swaps_win_once(&server);
}

#[test]
fn tok_13_tok_10_the_ciba_grant_on_redis_issues_tokens_once() {
    let redis = RedisServer::start();
    let c = Ciba::with(Server::bundle_on_redis(ciba_variables(), &redis));
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let id = c.start_with_login_hint("tpp-1", &consent_id);
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "authorization_pending");
    assert_eq!(c.approve(&id, LOA2).status, 200);
    let tokens = c.poll("tpp-1", &id);
    assert_eq!(tokens.status, 200, "{}", text(&tokens));
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "invalid_grant");
    assert_eq!(
        c.consent("tpp-1", &consent_id)["status"],
        json!("AUTHORISED")
    );
    let rt = tokens.json()["refresh_token"].as_str().unwrap().to_string();
    let refreshed = refresh(&c, &rt);
    assert_eq!(refreshed.status, 200, "{}", text(&refreshed));
}

fn refresh(c: &Ciba, refresh_token: &str) -> e2e::Response {
    let body = format!(
        "grant_type=refresh_token&refresh_token={refresh_token}&{}",
        c.client_auth("tpp-1")
    );
    c.post("tpp-1", "/token", &body)
}

/// Two `ciba-host up` processes on one Redis, as two replicas behind a load balancer: the
/// same issuer, the same registrations; the client's certificates are the same on both.
pub(crate) fn two_hosts(redis: &RedisServer) -> (Ciba, Ciba) {
    let config = e2e::temp_dir(&format!("redis-config-{}", redis.port)).join("runtime.toml");
    std::fs::write(
        &config,
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
            redis.url()
        ),
    )
    .unwrap();
    let args = ["--runtime-config-file", config.to_str().unwrap()];
    let a = Server::process(ciba_variables(), &args);
    let mut vars = ciba_variables();
    vars.insert("issuer", a.base.clone());
    let b = Server::process(vars, &args);
    // Both have read it.
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
    let issuer = a.base.clone();
    let a = Ciba::with_issuer(a, &issuer);
    let mut b = Ciba::with_issuer(b, &issuer);
    b.cert = a.cert.clone();
    b.other_cert = a.other_cert.clone();
    (a, b)
}

/// Issue 18 item 3: consent lodged on A, backchannel request on B, approval on A, polls
/// alternating: one token across both; refreshes on either; a revocation on one is seen by
/// the other.
#[test]
fn tok_10_ad_5_cons_2_two_hosts_on_one_redis_alternating_requests_hold_exactly_once() {
    let redis = RedisServer::start();
    let (a, b) = two_hosts(&redis);
    let hosts = [&a, &b];
    for trial in 0..5 {
        let consent_id = a.lodge("tpp-1", HOLDER_1_CPF, None);
        let id = b.start_with_login_hint("tpp-1", &consent_id);
        assert_oauth_error(&a.poll("tpp-1", &id), 400, "authorization_pending");
        let approved = a.approve(&id, LOA2);
        assert_eq!(approved.status, 200, "{}", text(&approved));
        assert_eq!(
            b.device("GET", &format!("/requests/{id}"), None).json()["status"],
            json!("APPROVED")
        );
        // 20 polls at once, alternating between the hosts.
        let bodies: Vec<String> = (0..20)
            .map(|i| {
                format!(
                    "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id={id}&{}",
                    hosts[i % 2].client_auth("tpp-1")
                )
            })
            .collect();
        let barrier = std::sync::Barrier::new(bodies.len());
        let answers: Vec<e2e::Response> = std::thread::scope(|s| {
            let handles: Vec<_> = bodies
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    let (barrier, host) = (&barrier, hosts[i % 2]);
                    s.spawn(move || {
                        barrier.wait();
                        host.post("tpp-1", "/token", body)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won: Vec<&e2e::Response> = answers.iter().filter(|r| r.status == 200).collect();
        assert_eq!(won.len(), 1, "trial {trial}: one token across both hosts");
        for r in &answers {
            assert!(
                r.status == 200 || r.json()["error"] == json!("invalid_grant"),
                "trial {trial}: {}",
                text(r)
            );
        }
        assert_oauth_error(&b.poll("tpp-1", &id), 400, "invalid_grant");
        // The refresh token works on both, and stays (TOK-17: no rotation).
        let rt = won[0].json()["refresh_token"].as_str().unwrap().to_string();
        for host in hosts {
            let refreshed = refresh(host, &rt);
            assert_eq!(refreshed.status, 200, "{}", text(&refreshed));
            assert_eq!(refreshed.json()["refresh_token"], json!(rt));
        }
        // Revoked on B, the consent's refresh token stops on A (CONS-2).
        let token = b.consents_token("tpp-1");
        let revoked = b.consents("tpp-1", &token, "DELETE", &consent_id, None);
        assert_eq!(revoked.status, 204, "{}", text(&revoked));
        assert_oauth_error(&refresh(&a, &rt), 400, "invalid_grant");
    }
}

/// The batch calls on Redis as Spin 4.1 makes them: `set-many` is `MSET`, `delete-many` is
/// `DEL`, and `get-many` sends the keys to `KEYS` (kv_redis.rs), which answers no value:
/// refused for two keys or more, an error for one key that exists, nothing for one that
/// does not. The glue reads one key with `get` and a refused batch one `get` per key, so its
/// `get_many` still answers the values.
#[test]
fn redis_batch_calls_as_spin_makes_them_get_many_answers_no_value() {
    let redis = RedisServer::start();
    let server = Server::probe(Store::Redis(redis.url()));
    let call = |path: &str, body: Value| {
        server.send(
            "POST",
            path,
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    };
    let stored = call(
        "/kv/_/set-many",
        json!({ "pairs": { "a": "1", "b": "2", "c": "3" } }),
    );
    assert_eq!(stored.status, 200, "{}", text(&stored));
    assert_eq!(server.get("/kv/b").json()["value"], json!("2"));
    // The host's call, as Spin's: two keys, Redis refuses `KEYS a c`; one key that exists,
    // `KEYS a` answers `["a"]`, which the redis crate cannot read as pairs (it panics); one
    // that does not, no match and no pair.
    let kv = ciba_host::kv_redis::RedisKv::open(&redis.url()).unwrap();
    let keys = |k: &[&str]| k.iter().map(|k| (*k).to_string()).collect::<Vec<_>>();
    let two = kv.get_many(&keys(&["a", "c"])).unwrap_err();
    assert!(
        two.contains("wrong number of arguments for 'keys'"),
        "{two}"
    );
    assert!(kv.get_many(&keys(&["a"])).is_err());
    assert_eq!(kv.get_many(&keys(&["zz"])), Ok(Vec::new()));
    // The glue's get_many, over HTTP: the values all the same.
    let found = call("/kv/_/get-many", json!({ "keys": ["a", "c", "zz"] }));
    assert_eq!(found.json()["found"], json!({ "a": "1", "c": "3" }));
    let one = call("/kv/_/get-many", json!({ "keys": ["a"] }));
    assert_eq!(one.json()["found"], json!({ "a": "1" }));
    // The connection survives all that.
    assert_eq!(server.get("/kv/a").json()["value"], json!("1"));
    let deleted = call("/kv/_/delete-many", json!({ "keys": ["a", "c"] }));
    assert_eq!(deleted.status, 200, "{}", text(&deleted));
    assert_eq!(server.get("/kv/a").status, 404);
    assert_eq!(server.get("/kv/b").json()["value"], json!("2"));
}
