//! Clients' keys by `jwks_uri` (registration.md KEY-8, KEY-10…18), against the fake Directory
//! of `e2e::directory`: `tpp-1` keeps its keys on the Directory's keystore, `tpp-2` by value.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::assertion::{self, claims_at};
use e2e::ciba::{AS_GENERATED, Ciba, HOLDER_1_CPF, LOA2, assert_oauth_error, ciba_variables, text};
use e2e::directory::{Directory, OPENBANKING_JWKS, Outage, application_jwks};
use e2e::{Response, Server, Store, bundle_manifest, material, request};
use serde_json::{Value, json};

/// A server whose `tpp-1` has a `jwks_uri` on a fake Directory, and that Directory.
struct Keyed {
    c: Ciba,
    directory: Directory,
    /// `tpp-1`'s `application.jwks` path.
    path: String,
}

/// `tpp-1`'s key set as the Directory publishes it: its current key.
fn published() -> Value {
    json!({ "keys": [material().client_public] })
}

/// A second key for `tpp-1`, to rotate to.
fn rotated_key() -> (&'static devkeys::rsa::RsaPrivateKey, Value) {
    let key = &material().other_key;
    let public = devkeys::public_jwk(
        &devkeys::rsa::RsaPublicKey::from(key),
        "tpp-key-rotated",
        "sig",
        "PS256",
    );
    (key, public)
}

/// The variables of [`Ciba`] with `tpp-1`'s `jwks` replaced by a `jwks_uri` on `directory`,
/// whose origin is the one allowed.
fn keyed_variables(directory: &Directory, path: &str) -> HashMap<&'static str, String> {
    let mut vars = ciba_variables();
    let mut clients: Value = serde_json::from_str(&vars["clients"]).unwrap();
    let tpp1 = clients[0].as_object_mut().unwrap();
    assert_eq!(tpp1["client_id"], json!("tpp-1"));
    tpp1.remove("jwks");
    tpp1.insert("jwks_uri".into(), json!(directory.url(path)));
    vars.insert("clients", clients.to_string());
    vars.insert("jwks_allowed_hosts", directory.origin());
    vars
}

fn keyed(name: &str) -> Keyed {
    let directory = Directory::start();
    let path = application_jwks("org-1", "tpp-1");
    directory.serve(&path, published());
    let vars = keyed_variables(&directory, &path);
    Keyed {
        c: Ciba::with(Server::bundle_on_disk(vars, name)),
        directory,
        path,
    }
}

impl Keyed {
    fn hits(&self) -> usize {
        self.directory.hits(&self.path)
    }

    /// A `client_credentials` grant for `tpp-1`, its assertion signed by `key` under `kid`.
    fn token_with(&self, key: &devkeys::rsa::RsaPrivateKey, kid: &str) -> Response {
        let c = &self.c;
        let a = assertion::sign(
            "PS256",
            key,
            kid,
            claims_at("tpp-1", &format!("{}/token", c.issuer), c.now()),
        );
        c.post(
            "tpp-1",
            "/token",
            &format!(
                "grant_type=client_credentials&scope=consents&{}",
                assertion::form(&a)
            ),
        )
    }

    /// The same with `tpp-1`'s current key.
    fn token(&self) -> Response {
        self.token_with(&material().client_key, "tpp-key-1")
    }
}

/// KEY-18: the fake Directory serves, replaces, fails and counts, as the tests below rely on.
#[test]
fn key_18_the_fake_directory_serves_rotates_fails_and_counts() {
    let directory = Directory::start();
    let path = application_jwks("org-1", "software-1");
    assert_eq!(request("GET", &directory.url(&path), &[], b"").status, 404);
    directory.serve(&path, json!({"keys": [{"kid": "a"}]}));
    directory.serve(OPENBANKING_JWKS, json!({"keys": []}));
    let got = request("GET", &directory.url(&path), &[], b"");
    assert_eq!(
        (got.status, got.json()["keys"][0]["kid"].clone()),
        (200, json!("a"))
    );
    directory.serve_with(
        &path,
        json!({"keys": [{"kid": "b"}]}),
        vec![("cache-control", "max-age=60")],
    );
    let got = request("GET", &directory.url(&path), &[], b"");
    assert_eq!(got.json()["keys"][0]["kid"], json!("b"));
    assert_eq!(got.header("cache-control"), Some("max-age=60"));
    directory.fail(&path, Outage::Status(500));
    assert_eq!(request("GET", &directory.url(&path), &[], b"").status, 500);
    directory.fail(&path, Outage::Redirect(directory.url(OPENBANKING_JWKS)));
    let got = request("GET", &directory.url(&path), &[], b"");
    assert_eq!(got.status, 302);
    directory.fail(&path, Outage::Huge(300 * 1024));
    assert_eq!(
        request("GET", &directory.url(&path), &[], b"").body.len(),
        300 * 1024
    );
    directory.fail(&path, Outage::Hang(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(request("GET", &directory.url(&path), &[], b"").status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    directory.restore(&path);
    assert_eq!(request("GET", &directory.url(&path), &[], b"").status, 200);
    // The first 404 was before the path existed.
    assert_eq!(directory.hits(&path), 7);
    assert_eq!(directory.hits(OPENBANKING_JWKS), 0);
}

/// KEY-8, KEY-12: a client whose keys are on the Directory runs the whole flow (token,
/// Consents, bc-authorize with its request object, device, poll), and the AS QR flow's
/// client JWS (HINT-15); the set is fetched once for every component, through the store.
#[test]
fn key_8_key_12_a_jwks_uri_client_runs_the_whole_ciba_flow_on_one_fetch() {
    let k = keyed("key-8-flow");
    let c = &k.c;
    let (_, tokens) = c.grant("tpp-1", HOLDER_1_CPF);
    assert!(tokens["access_token"].is_string(), "{tokens}");
    assert!(tokens["id_token"].is_string(), "{tokens}");
    // The QR code: the device verifies the client's JWS with the published key.
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut claims = c.request_claims("tpp-1", &consent_id);
    claims.insert("login_hint_token".into(), json!(AS_GENERATED));
    claims.insert("binding_message".into(), json!("QR 1"));
    let id = c.start("tpp-1", claims);
    let qr = c.qr_token("tpp-1", &c.qr_claims("tpp-1", &id), "cibabr+jwt");
    let claimed = c.device(
        "POST",
        "/claims",
        Some(&json!({ "login_hint_token": qr, "subject": "holder-1" })),
    );
    assert_eq!(claimed.status, 200, "{}", text(&claimed));
    assert_eq!(c.approve(&id, LOA2).status, 200);
    assert_eq!(c.poll("tpp-1", &id).status, 200);
    assert_eq!(
        k.hits(),
        1,
        "token, bc-authorize and device share the stored copy"
    );
    // The client with keys by value is untouched.
    c.grant("tpp-2", HOLDER_1_CPF);
}

/// KEY-12, KEY-13: rotation on the keystore, without a redeploy. A new kid is found by one
/// forced refetch (once the set is a minute old); the set is replaced whole, so a kid the
/// Directory dropped stops at once.
#[test]
fn key_12_key_13_rotation_old_kid_new_kid_and_a_dropped_kid() {
    let k = keyed("key-13-rotation");
    let (new_key, new_public) = rotated_key();
    assert_eq!(k.token().status, 200);
    // The client publishes its new key next to the old one.
    k.directory.serve(
        &k.path,
        json!({ "keys": [material().client_public, new_public.clone()] }),
    );
    // Within the minute after the fetch, an unknown kid refetches nothing: 401.
    let early = k.token_with(new_key, "tpp-key-rotated");
    assert_oauth_error(&early, 401, "invalid_client");
    assert_eq!(k.hits(), 1);
    k.c.server.time.advance(61);
    assert_eq!(
        k.token_with(new_key, "tpp-key-rotated").status,
        200,
        "new kid"
    );
    assert_eq!(k.hits(), 2, "one forced refetch");
    assert_eq!(k.token().status, 200, "the old kid still works");
    // The Directory drops the old key; the next refetch replaces the set.
    k.directory.serve(&k.path, json!({ "keys": [new_public] }));
    k.c.server.time.advance(601);
    assert_eq!(k.token_with(new_key, "tpp-key-rotated").status, 200);
    assert_eq!(k.hits(), 3, "refetched once the set was stale");
    let dropped = k.token();
    assert_oauth_error(&dropped, 401, "invalid_client");
    assert_eq!(k.hits(), 3, "dropped at once, with no fetch");
}

/// KEY-13: assertions under random kids cost at most one refetch per minute per URI.
#[test]
fn key_13_random_kids_refetch_at_most_once_a_minute() {
    let k = keyed("key-13-random");
    assert_eq!(k.token().status, 200);
    let key = &material().client_key;
    for round in 0..3 {
        k.c.server.time.advance(61);
        let before = k.hits();
        for i in 0..15 {
            let kid = format!("random-{round}-{i}-{}", uuid::Uuid::new_v4());
            assert_oauth_error(&k.token_with(key, &kid), 401, "invalid_client");
        }
        assert_eq!(k.hits(), before + 1, "round {round}");
    }
    assert_eq!(k.token().status, 200);
}

/// KEY-14: a keystore outage is served from the cached set, with a warning, for up to an
/// hour after the fetch; then 503 `temporarily_unavailable` with `Retry-After: 30`. The
/// keystore is not asked again for 30 s after a failure.
#[test]
fn key_14_an_outage_is_served_from_the_cache_then_503() {
    let k = keyed("key-14-outage");
    assert_eq!(k.token().status, 200);
    k.directory.fail(&k.path, Outage::Status(500));
    k.c.server.time.advance(601);
    assert_eq!(k.token().status, 200, "stale, within the hour");
    assert_eq!(k.hits(), 2, "one try");
    assert!(
        k.c.server.log_text().contains("fetch failed: status 500"),
        "{}",
        k.c.server.log_text()
    );
    assert_eq!(k.token().status, 200);
    assert_eq!(k.hits(), 2, "no retry within 30 s");
    k.c.server.time.advance(3000);
    let down = k.token();
    assert_oauth_error(&down, 503, "temporarily_unavailable");
    assert_eq!(down.header("retry-after"), Some("30"));
    assert_eq!(k.hits(), 3);
    // Back up: the next try after 30 s fetches again.
    k.directory.restore(&k.path);
    k.c.server.time.advance(31);
    assert_eq!(k.token().status, 200);
    assert_eq!(k.hits(), 4);
}

/// KEY-14: with nothing cached and the keystore down, every endpoint that verifies the
/// client's keys answers 503 with `Retry-After`, and nothing is written.
#[test]
fn key_14_nothing_cached_and_the_keystore_down_is_503_and_changes_nothing() {
    let k = keyed("key-14-cold");
    let c = &k.c;
    k.directory.fail(&k.path, Outage::Status(503));
    let rows = c.server.store_rows();
    let down = k.token();
    assert_oauth_error(&down, 503, "temporarily_unavailable");
    assert_eq!(down.header("retry-after"), Some("30"));
    let request = c.sign_request("tpp-1", c.request_claims("tpp-1", "urn:bank:none"));
    let down = c.bc_authorize("tpp-1", &request);
    assert_oauth_error(&down, 503, "temporarily_unavailable");
    assert_eq!(down.header("retry-after"), Some("30"));
    assert_eq!(c.server.store_rows(), rows, "no state change");
    assert!(!c.server.log_text().contains(" 500 "));
}

/// KEY-10: redirects are not followed, a set over 256 KiB is refused, and a keystore that
/// does not answer times out in 3 s: with nothing cached, each is a 503.
#[test]
fn key_10_no_redirect_no_huge_set_and_a_3_second_timeout() {
    let k = keyed("key-10-fetch");
    let elsewhere = "/elsewhere/application.jwks";
    k.directory.serve(elsewhere, published());
    let cases = [
        Outage::Redirect(k.directory.url(elsewhere)),
        Outage::Huge(256 * 1024 + 1),
        Outage::Hang(Duration::from_secs(5)),
    ];
    for (i, outage) in cases.into_iter().enumerate() {
        k.directory.fail(&k.path, outage.clone());
        // Past the 30 s without retries that the previous failure started.
        k.c.server.time.advance(31);
        let started = Instant::now();
        let down = k.token();
        assert_oauth_error(&down, 503, "temporarily_unavailable");
        assert_eq!(k.hits(), i + 1, "{outage:?}");
        if let Outage::Hang(_) = outage {
            let waited = started.elapsed();
            assert!(
                waited >= Duration::from_millis(2900) && waited < Duration::from_millis(4500),
                "{waited:?}"
            );
        }
    }
    assert_eq!(
        k.directory.hits(elsewhere),
        0,
        "the redirect was not followed"
    );
    // Just under the cap is a set like any other.
    k.directory.fail(&k.path, Outage::Huge(256 * 1024 - 1));
    k.c.server.time.advance(31);
    assert_eq!(k.token().status, 200, "{}", text(&k.token()));
}

/// KEY-10: a `jwks_uri` whose origin is not on `jwks_allowed_hosts` is a configuration
/// error naming `clients`, reported once; nothing is fetched.
#[test]
fn key_10_an_origin_not_on_jwks_allowed_hosts_is_refused() {
    let directory = Directory::start();
    let path = application_jwks("org-1", "tpp-1");
    directory.serve(&path, published());
    let mut vars = keyed_variables(&directory, &path);
    let other = Directory::start();
    vars.insert("jwks_allowed_hosts", other.origin());
    let c = Ciba::with(Server::bundle_on_disk(vars, "key-10-allowed"));
    let a = assertion::sign(
        "PS256",
        &material().client_key,
        "tpp-key-1",
        claims_at("tpp-1", &format!("{}/token", c.issuer), c.now()),
    );
    let refused = c.post(
        "tpp-1",
        "/token",
        &format!(
            "grant_type=client_credentials&scope=consents&{}",
            assertion::form(&a)
        ),
    );
    assert_oauth_error(&refused, 500, "server_error");
    assert!(
        c.server
            .log_text()
            .contains("jwks_uri is not on jwks_allowed_hosts"),
        "{}",
        c.server.log_text()
    );
    assert_eq!(directory.hits(&path), 0);
}

/// KEY-10: an origin on `jwks_allowed_hosts` that the component's `allowed_outbound_hosts`
/// does not allow is refused by the runtime, as Spin refuses it (`HttpRequestDenied`, and its
/// warning): the request gets 503, the keystore is never reached.
#[test]
fn key_10_a_destination_not_in_allowed_outbound_hosts_is_denied_like_spin() {
    let directory = Directory::start();
    let path = application_jwks("org-1", "tpp-1");
    directory.serve(&path, published());
    let vars = keyed_variables(&directory, &path);
    let mut manifest = ciba_host::manifest::Manifest::load(&bundle_manifest()).unwrap();
    manifest
        .component
        .get_mut("token")
        .unwrap()
        .allowed_outbound_hosts = vec!["http://127.0.0.1:1".into()];
    let server = Server::try_start_manifest(manifest, vars, Store::Memory).unwrap();
    let k = Keyed {
        c: Ciba::with(server),
        directory,
        path,
    };
    let down = k.token();
    assert_oauth_error(&down, 503, "temporarily_unavailable");
    assert_eq!(k.hits(), 0);
    let logs = k.c.server.log_text();
    assert!(logs.contains("disallowed destination"), "{logs}");
    assert!(logs.contains("HttpRequestDenied"), "{logs}");
}

/// KEY-10: Spin resolves a templated `allowed_outbound_hosts` entry as one origin: a
/// comma-separated `jwks_allowed_hosts` becomes one malformed host that matches nothing (or,
/// for some values, stops the app), so every fetch is denied, here as under Spin.
#[test]
fn key_10_a_templated_allowed_outbound_hosts_entry_holds_one_origin() {
    let directory = Directory::start();
    let path = application_jwks("org-1", "tpp-1");
    directory.serve(&path, published());
    let mut vars = keyed_variables(&directory, &path);
    vars.insert(
        "jwks_allowed_hosts",
        format!("{},http://127.0.0.1:1", directory.origin()),
    );
    let k = Keyed {
        c: Ciba::with(Server::bundle(vars)),
        directory,
        path,
    };
    assert_oauth_error(&k.token(), 503, "temporarily_unavailable");
    assert_eq!(k.hits(), 0);
    assert!(k.c.server.log_text().contains("HttpRequestDenied"));
    // A value that Spin cannot parse at all stops the app.
    let mut vars = ciba_variables();
    vars.insert(
        "jwks_allowed_hosts",
        "http://127.0.0.1:8001,https://keystore.example".into(),
    );
    let refused = Server::try_start(&bundle_manifest(), vars, Store::Memory)
        .err()
        .expect("the host must refuse to start");
    let text = format!("{refused:#}");
    assert!(
        text.contains("`allowed_outbound_hosts` is malformed"),
        "{text}"
    );
}

/// KEY-15 (issue 17, item 7): once its keys are cached, a `jwks_uri` client's pending poll
/// makes no outbound request and no more key-value calls than a client with keys by value.
#[test]
fn key_15_a_cached_jwks_uri_client_s_poll_costs_what_a_by_value_client_s_does() {
    let k = keyed("key-15-cost");
    let c = &k.c;
    // What the first use costs (printed: `-- --nocapture`): the fetch's store calls (a get of
    // the stored copy, its announcement and its write come first; on a new store the first
    // purge sweep follows), then a cached request's, a client_credentials grant each.
    c.server.faults.count();
    assert_eq!(k.token().status, 200);
    let cold = c.server.faults.ops();
    c.server.faults.count();
    assert_eq!(k.token().status, 200);
    let warm = c.server.faults.ops();
    println!(
        "key-15 | client_credentials, jwks_uri client | first (fetch) {} calls, starting {:?} | cached {} calls {warm:?}",
        cold.len(),
        &cold[..4],
        warm.len()
    );
    assert!(
        cold.len() > warm.len(),
        "the first use reads and writes the stored copy"
    );
    let pending = |client: &str| {
        let consent_id = c.lodge(client, HOLDER_1_CPF, None);
        c.start_with_login_hint(client, &consent_id)
    };
    let (by_uri, by_value) = (pending("tpp-1"), pending("tpp-2"));
    // Warm: one poll each (the token component's instance fetched or read the store).
    assert_oauth_error(&c.poll("tpp-1", &by_uri), 400, "authorization_pending");
    assert_oauth_error(&c.poll("tpp-2", &by_value), 400, "authorization_pending");
    let hits = k.hits();
    let calls = |client: &str, id: &str| {
        c.server.time.advance(6);
        c.server.faults.count();
        assert_oauth_error(&c.poll(client, id), 400, "authorization_pending");
        c.server.faults.ops()
    };
    for round in 0..5 {
        let uri_calls = calls("tpp-1", &by_uri);
        let value_calls = calls("tpp-2", &by_value);
        if round == 0 {
            println!(
                "key-15 | pending poll | jwks_uri client {} calls | by-value client {} calls {value_calls:?}",
                uri_calls.len(),
                value_calls.len()
            );
        }
        assert_eq!(uri_calls, value_calls);
    }
    assert_eq!(k.hits(), hits, "no outbound request while cached");
}

/// `tpp-1` keyed on a Directory served over TLS at `https://localhost:<port>`, its certificate
/// for `names` issued by a test CA; the host's runtime configuration trusts that CA for the
/// `token` component on `localhost` through `[[client_tls]]` when `trusted`, and has no
/// `[[client_tls]]` otherwise (Spin's default roots: the platform's and webpki's).
fn keyed_over_tls(name: &str, names: &[&str], trusted: bool) -> Keyed {
    let ca = e2e::tls::TestCa::new("ciba e2e test CA");
    let directory = Directory::start_tls(ca.server(names).server_config(), "localhost");
    let path = application_jwks("org-1", "tpp-1");
    directory.serve(&path, published());
    let vars = keyed_variables(&directory, &path);
    let dir = e2e::temp_dir(name);
    ca.write_pem(&dir);
    let runtime_config = dir.join("runtime-config.toml");
    let client_tls = if trusted {
        "[[client_tls]]\ncomponent_ids = [\"token\"]\nhosts = [\"localhost\"]\nca_roots_file = \"ca.pem\"\n"
    } else {
        ""
    };
    std::fs::write(&runtime_config, client_tls).unwrap();
    let manifest = ciba_host::manifest::Manifest::load(&bundle_manifest()).unwrap();
    let server = Server::try_start_with_tls(
        manifest,
        vars,
        Store::Dir(dir),
        ciba_host::tls::ClientTls::read(&runtime_config).unwrap(),
    )
    .unwrap();
    Keyed {
        c: Ciba::with(server),
        directory,
        path,
    }
}

/// KEY-10 (issue 17, item 1): the keystore over https, as the Directory's is: the host makes
/// the TLS connection, verifies the chain against the CA that `[[client_tls]]` names for the
/// component and host, and the client's keys work at the token endpoint, fetched once.
#[test]
fn key_10_https_a_jwks_uri_on_a_keystore_trusted_through_client_tls_works() {
    let k = keyed_over_tls("key-10-https", &["localhost"], true);
    assert!(k.directory.origin().starts_with("https://localhost:"));
    let first = k.token();
    assert_eq!(
        first.status,
        200,
        "{} {}",
        text(&first),
        k.c.server.log_text()
    );
    assert_eq!(k.token().status, 200);
    assert_eq!(k.hits(), 1, "fetched once over https, then cached");
    assert!(!k.c.server.log_text().contains("TlsProtocolError"));
}

/// KEY-10, KEY-14: a keystore whose certificate chains to no trusted root (no
/// `[[client_tls]]` for it, and not a public CA) is refused at the handshake, as Spin refuses
/// it (`TlsProtocolError`): with nothing cached, 503 `temporarily_unavailable`, no path of the
/// keystore reached, nothing written.
#[test]
fn key_10_key_14_https_a_keystore_certificate_not_trusted_is_503_and_changes_nothing() {
    let k = keyed_over_tls("key-10-https-untrusted", &["localhost"], false);
    let rows = k.c.server.store_rows();
    let down = k.token();
    assert_oauth_error(&down, 503, "temporarily_unavailable");
    assert_eq!(down.header("retry-after"), Some("30"));
    assert_eq!(k.hits(), 0, "the request never got past the handshake");
    assert_eq!(k.c.server.store_rows(), rows, "no state change");
    let logs = k.c.server.log_text();
    assert!(logs.contains("TlsProtocolError"), "{logs}");
    assert!(logs.contains("UnknownIssuer"), "{logs}");
    assert!(!logs.contains(" 500 "), "{logs}");
}

/// KEY-10, KEY-14: a certificate from the trusted CA but for another host name is refused
/// as well: 503 `temporarily_unavailable`, the keystore not reached, nothing written.
#[test]
fn key_10_key_14_https_a_certificate_for_another_host_is_503_and_changes_nothing() {
    let k = keyed_over_tls(
        "key-10-https-wrong-name",
        &["keystore.directory.openbankingbrasil.org.br"],
        true,
    );
    let rows = k.c.server.store_rows();
    let down = k.token();
    assert_oauth_error(&down, 503, "temporarily_unavailable");
    assert_eq!(k.hits(), 0, "the request never got past the handshake");
    assert_eq!(k.c.server.store_rows(), rows, "no state change");
    let logs = k.c.server.log_text();
    assert!(logs.contains("TlsProtocolError"), "{logs}");
    assert!(logs.contains("not valid for name"), "{logs}");
}

/// KEY-10: `ciba-host up --runtime-config-file FILE` reads the file's `[[client_tls]]`, as
/// `spin up` does: the keystore over https, trusted through it, serves the client's keys.
#[test]
fn key_10_https_ciba_host_up_reads_client_tls_from_its_runtime_configuration_file() {
    let ca = e2e::tls::TestCa::new("ciba e2e test CA");
    let directory = Directory::start_tls(ca.server(&["localhost"]).server_config(), "localhost");
    let path = application_jwks("org-1", "tpp-1");
    directory.serve(&path, published());
    let dir = e2e::temp_dir("key-10-https-process");
    ca.write_pem(&dir);
    let config = dir.join("runtime-config.toml");
    std::fs::write(
        &config,
        "[[client_tls]]\ncomponent_ids = [\"token\"]\nhosts = [\"localhost\"]\nca_roots_file = \"ca.pem\"\n",
    )
    .unwrap();
    let server = Server::process(
        keyed_variables(&directory, &path),
        &["--runtime-config-file", config.to_str().unwrap()],
    );
    let k = Keyed {
        c: Ciba::with(server),
        directory,
        path,
    };
    let first = k.token();
    assert_eq!(first.status, 200, "{}", text(&first));
    assert_eq!(k.hits(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
