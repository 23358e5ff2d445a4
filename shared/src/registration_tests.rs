//! Registration (REG-*) through the endpoint, against an in-memory store, a fixed clock and a
//! fake Directory keystore.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::client::fetch::{Fetch, FetchError, FetchRequest, FetchResponse};
use crate::client::registration::var as reg;
use crate::clock::{CountingRandom, FixedClock, UnixTime};
use crate::endpoints::Deps;
use crate::endpoints::register::RegisterEndpoint;
use crate::fixtures::{certificate, variables};
use crate::http::{Method, Request, Response};
use crate::store::memory::MemoryStore;

const NOW: UnixTime = 1_800_000_000;
const DIRECTORY: &str = "http://127.0.0.1:9/openbanking.jwks";
const SSA_ISSUER: &str = "Test Directory SSA issuer";
pub(crate) const ORG: &str = "b961c4eb-509d-4edf-afeb-35642b38185d";
pub(crate) const SOFTWARE: &str = "a6c6e8b5-4e4c-4b5b-9e36-0d2f1e0d9a11";
const JWKS_URI: &str =
    "https://keystore.directory.openbankingbrasil.org.br/b961c4eb/a6c6e8b5/application.jwks";
const REDIRECT: &str = "https://tpp.example/cb";

struct Directory {
    key: devkeys::rsa::RsaPrivateKey,
    jwks: Vec<u8>,
}

fn directory() -> &'static Directory {
    static D: OnceLock<Directory> = OnceLock::new();
    D.get_or_init(|| {
        let key = devkeys::rsa_key(2048).unwrap();
        let public = devkeys::public_jwk(
            &devkeys::rsa::RsaPublicKey::from(&key),
            "dir-1",
            "sig",
            "PS256",
        );
        Directory {
            key,
            jwks: json!({ "keys": [public] }).to_string().into_bytes(),
        }
    })
}

/// Serves the Directory's keystore, or fails every fetch.
struct FakeKeystore(bool);

impl Fetch for FakeKeystore {
    fn get(&self, request: &FetchRequest<'_>) -> Result<FetchResponse, FetchError> {
        if !self.0 || request.url != DIRECTORY {
            return Err(FetchError::Failed("unreachable".into()));
        }
        Ok(FetchResponse {
            status: 200,
            headers: vec![],
            body: directory().jwks.clone(),
        })
    }
}

pub(crate) fn ssa_claims() -> serde_json::Map<String, Value> {
    json!({
        "iss": SSA_ISSUER,
        "iat": NOW,
        "org_id": ORG,
        "org_status": "Active",
        "software_id": SOFTWARE,
        "software_client_name": "TPP App",
        "software_jwks_uri": JWKS_URI,
        "software_redirect_uris": [REDIRECT, "https://tpp.example/cb2"],
        "software_api_webhook_uris": ["https://tpp.example/hook"],
        "software_statement_roles": [
            { "role": "DADOS", "authorisation_domain": "Open Banking", "status": "Active" },
            { "role": "PAGTO", "authorisation_domain": "Open Banking", "status": "Inactive" }
        ],
        "software_version": 1.1,
    })
    .as_object()
    .unwrap()
    .clone()
}

fn sign(claims: &serde_json::Map<String, Value>, kid: &str) -> String {
    use jwt_compact::{AlgorithmExt, Claims, Header};
    jwt_compact::alg::Rsa::ps256()
        .token(
            &Header::empty().with_key_id(kid),
            &Claims::new(claims.clone()),
            &directory().key,
        )
        .unwrap()
}

pub(crate) fn ssa() -> String {
    sign(&ssa_claims(), "dir-1")
}

/// The TPP's certificate: UID = software_id, organizationIdentifier = OFBBR-<org_id>.
fn tpp_certificate() -> &'static str {
    static C: OnceLock<String> = OnceLock::new();
    C.get_or_init(|| {
        certificate(&format!(
            "UID={SOFTWARE},2.5.4.97=OFBBR-{ORG},CN=tpp.example,O=TPP,C=BR"
        ))
        .0
    })
}

struct Fixture {
    endpoint: RegisterEndpoint,
    store: MemoryStore,
    random: CountingRandom,
    keystore: FakeKeystore,
}

fn vars() -> HashMap<&'static str, String> {
    let mut vars = variables();
    vars.insert(reg::SSA_ISSUER, SSA_ISSUER.to_string());
    vars.insert(reg::SSA_JWKS_URI, DIRECTORY.to_string());
    vars.insert(
        crate::config::var::JWKS_ALLOWED_HOSTS,
        "http://127.0.0.1:9,https://keystore.directory.openbankingbrasil.org.br".to_string(),
    );
    vars
}

/// The registration records in `store` (`client:`, `rat:`, `software:`); the keystore's
/// cache of the Directory's keys is not one.
fn registrations(store: &MemoryStore) -> usize {
    use crate::store::KeyValue;
    store
        .list_keys(None)
        .unwrap()
        .keys
        .iter()
        .filter(|k| {
            ["client:", "rat:", "software:"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .count()
}

impl Fixture {
    fn new() -> Self {
        Self::with(vars())
    }

    fn with(vars: HashMap<&'static str, String>) -> Self {
        Self {
            endpoint: RegisterEndpoint::load(&vars).unwrap(),
            store: MemoryStore::new(),
            random: CountingRandom::default(),
            keystore: FakeKeystore(true),
        }
    }

    fn call(
        &self,
        method: Method,
        path: &str,
        cert: Option<&str>,
        rat: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut headers = vec![];
        if let Some(cert) = cert {
            headers.push(("x-ssl-client-cert".to_string(), cert.to_string()));
        }
        if let Some(rat) = rat {
            headers.push(("authorization".to_string(), format!("Bearer {rat}")));
        }
        if body.is_some() {
            headers.push(("content-type".to_string(), "application/json".to_string()));
        }
        let request = Request {
            method,
            path_info: path.to_string(),
            query: None,
            headers,
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        };
        let deps = Deps {
            store: &self.store,
            clock: &FixedClock(NOW),
            random: &self.random,
            fetch: &self.keystore,
        };
        self.endpoint.handle(&request, &deps)
    }

    fn post(&self, body: &Value) -> Response {
        self.call(Method::Post, "", Some(tpp_certificate()), None, Some(body))
    }
}

fn body(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn error(r: &Response) -> String {
    body(r)["error"].as_str().unwrap_or_default().to_string()
}

fn request() -> Value {
    json!({
        "software_statement": ssa(),
        "redirect_uris": [REDIRECT],
        "jwks_uri": JWKS_URI,
        "token_endpoint_auth_method": "private_key_jwt",
        "grant_types": ["authorization_code", "implicit", "refresh_token", "client_credentials"],
        "response_types": ["code id_token"],
    })
}

#[test]
fn reg_28_registration_returns_201_with_client_id_rat_uri_and_defaults() {
    let f = Fixture::new();
    let sent = request();
    let r = f.post(&sent);
    assert_eq!(r.status, 201, "{:?}", body(&r));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("pragma"), Some("no-cache"));
    let b = body(&r);
    let id = b["client_id"].as_str().unwrap();
    assert!(id.len() >= 22);
    assert_eq!(
        b["registration_client_uri"],
        format!("https://auth.bank.example/register/{id}")
    );
    assert!(b["registration_access_token"].as_str().unwrap().len() >= 22);
    assert_eq!(b["client_id_issued_at"], NOW);
    assert_eq!(b["redirect_uris"], json!([REDIRECT]));
    assert_eq!(b["jwks_uri"], JWKS_URI);
    assert_eq!(b["software_id"], SOFTWARE);
    assert_eq!(b["software_version"], "1.1");
    assert_eq!(b["client_name"], "TPP App");
    // REG-24: the redirect-flow grants are dropped; REG-25: response_types is [].
    assert_eq!(
        b["grant_types"],
        json!(["refresh_token", "client_credentials"])
    );
    assert_eq!(b["response_types"], json!([]));
    // REG-23: no scope asked: the union of the active roles' scopes (DADOS only).
    let scope = b["scope"].as_str().unwrap();
    assert!(scope.contains("accounts") && !scope.contains("payments"));
    assert_eq!(b["backchannel_token_delivery_mode"], "poll");
    assert_eq!(b["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(b["software_statement"], sent["software_statement"]);
    assert!(b.get("client_secret").is_none());
    // REG-31: the RAT is stored only as a hash.
    let rat = b["registration_access_token"].as_str().unwrap();
    use crate::store::KeyValue;
    for key in f.store.list_keys(None).unwrap().keys {
        let value = f.store.get(&key).unwrap().unwrap_or_default();
        assert!(!key.contains(rat) && !String::from_utf8_lossy(&value).contains(rat));
    }
}

#[test]
fn reg_34_get_returns_the_registration_and_the_same_rat() {
    let f = Fixture::new();
    let created = body(&f.post(&request()));
    let id = created["client_id"].as_str().unwrap();
    let rat = created["registration_access_token"].as_str().unwrap();
    let r = f.call(
        Method::Get,
        &format!("/{id}"),
        Some(tpp_certificate()),
        Some(rat),
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(body(&r), created);
}

#[test]
fn reg_33_rat_checks_come_after_mtls_and_before_the_binding() {
    let f = Fixture::new();
    let created = body(&f.post(&request()));
    let id = created["client_id"].as_str().unwrap();
    let rat = created["registration_access_token"].as_str().unwrap();
    let path = format!("/{id}");
    // No Authorization: 401 with a bare Bearer challenge.
    let r = f.call(Method::Get, &path, Some(tpp_certificate()), None, None);
    assert_eq!(
        (r.status, r.header("www-authenticate")),
        (401, Some("Bearer"))
    );
    // A bogus RAT: invalid_token.
    let r = f.call(
        Method::Get,
        &path,
        Some(tpp_certificate()),
        Some("bogus"),
        None,
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    assert!(!String::from_utf8_lossy(&r.body).contains(id));
    // The RAT on another path: invalid_token, and it still works on its own.
    let r = f.call(
        Method::Get,
        "/AAAAAAAAAAAAAAAAAAAAAA",
        Some(tpp_certificate()),
        Some(rat),
        None,
    );
    assert_eq!((r.status, error(&r).as_str()), (401, "invalid_token"));
    // No certificate comes first: invalid_client.
    let r = f.call(Method::Get, &path, None, Some("bogus"), None);
    assert_eq!((r.status, error(&r).as_str()), (401, "invalid_client"));
    // REG-15: another software's certificate.
    let other = certificate(&format!(
        "UID=0c1e7a4e-0000-4000-8000-000000000000,2.5.4.97=OFBBR-{ORG},CN=x,C=BR"
    ))
    .0;
    let r = f.call(Method::Get, &path, Some(&other), Some(rat), None);
    assert_eq!((r.status, error(&r).as_str()), (401, "invalid_client"));
    let r = f.call(Method::Get, &path, Some(tpp_certificate()), Some(rat), None);
    assert_eq!(r.status, 200);
}

#[test]
fn reg_36_delete_removes_every_record() {
    let f = Fixture::new();
    let before = registrations(&f.store);
    let created = body(&f.post(&request()));
    let id = created["client_id"].as_str().unwrap();
    let rat = created["registration_access_token"].as_str().unwrap();
    let path = format!("/{id}");
    let r = f.call(
        Method::Delete,
        &path,
        Some(tpp_certificate()),
        Some(rat),
        None,
    );
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(
        registrations(&f.store),
        before,
        "client, rat and software records are gone"
    );
    let r = f.call(Method::Get, &path, Some(tpp_certificate()), Some(rat), None);
    assert_eq!(r.status, 401);
    let r = f.call(
        Method::Delete,
        &path,
        Some(tpp_certificate()),
        Some(rat),
        None,
    );
    assert_eq!(r.status, 401);
    // REG-29: the software may register again.
    assert_eq!(f.post(&request()).status, 201);
}

#[test]
fn reg_29_one_registration_per_software() {
    let f = Fixture::new();
    assert_eq!(f.post(&request()).status, 201);
    let rows = registrations(&f.store);
    let r = f.post(&request());
    assert_eq!(
        (r.status, error(&r).as_str()),
        (400, "unapproved_software_statement")
    );
    assert_eq!(registrations(&f.store), rows);
}

/// REG-29's claim decides a race the presence check cannot see: the second registration of a
/// software that passed the check before the first claimed it is still refused, and leaves
/// no record behind.
#[test]
fn reg_29_racing_registrations_of_one_software_are_decided_by_the_claim() {
    let f = Fixture::new();
    // Every `software:` claim reads as absent, as to two registrations that both read it
    // before either claimed the software.
    let blind = crate::fixtures::Hooked {
        hide: |key| key.starts_with("software:"),
        ..crate::fixtures::Hooked::new(&f.store)
    };
    let post = || {
        let request = Request {
            method: Method::Post,
            path_info: String::new(),
            query: None,
            headers: vec![
                (
                    "x-ssl-client-cert".to_string(),
                    tpp_certificate().to_string(),
                ),
                ("content-type".to_string(), "application/json".to_string()),
            ],
            body: request().to_string().into_bytes(),
        };
        f.endpoint.handle(
            &request,
            &Deps {
                store: &blind,
                clock: &FixedClock(NOW),
                random: &f.random,
                fetch: &f.keystore,
            },
        )
    };
    assert_eq!(post().status, 201);
    let rows = registrations(&f.store);
    let r = post();
    assert_eq!(
        (r.status, error(&r).as_str()),
        (400, "unapproved_software_statement")
    );
    assert_eq!(registrations(&f.store), rows);
}

#[test]
fn reg_35_put_replaces_the_registration_and_keeps_the_rat() {
    let f = Fixture::new();
    let created = body(&f.post(&request()));
    let id = created["client_id"].as_str().unwrap().to_string();
    let rat = created["registration_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/{id}");
    let mut update = created.clone();
    for k in [
        "registration_access_token",
        "registration_client_uri",
        "client_id_issued_at",
    ] {
        update.as_object_mut().unwrap().remove(k);
    }
    update["software_statement"] = json!(ssa());
    update["redirect_uris"] = json!(["https://tpp.example/cb2"]);
    let r = f.call(
        Method::Put,
        &path,
        Some(tpp_certificate()),
        Some(&rat),
        Some(&update),
    );
    assert_eq!(r.status, 200, "{:?}", body(&r));
    let b = body(&r);
    assert_eq!(b["client_id"], id);
    assert_eq!(b["registration_access_token"], rat);
    assert_eq!(b["redirect_uris"], json!(["https://tpp.example/cb2"]));
    assert_eq!(b["client_id_issued_at"], NOW);
    // A failing PUT changes nothing.
    let mut bad = update.clone();
    bad["redirect_uris"] = json!(["https://evil.example/cb"]);
    let r = f.call(
        Method::Put,
        &path,
        Some(tpp_certificate()),
        Some(&rat),
        Some(&bad),
    );
    assert_eq!(
        (r.status, error(&r).as_str()),
        (400, "invalid_redirect_uri")
    );
    let mut other = update.clone();
    other["client_id"] = json!("someone-else");
    let r = f.call(
        Method::Put,
        &path,
        Some(tpp_certificate()),
        Some(&rat),
        Some(&other),
    );
    assert_eq!(
        (r.status, error(&r).as_str()),
        (400, "invalid_client_metadata")
    );
    let mut no_ssa = update.clone();
    no_ssa.as_object_mut().unwrap().remove("software_statement");
    let r = f.call(
        Method::Put,
        &path,
        Some(tpp_certificate()),
        Some(&rat),
        Some(&no_ssa),
    );
    assert_eq!(
        (r.status, error(&r).as_str()),
        (400, "invalid_client_metadata")
    );
    let r = f.call(
        Method::Get,
        &path,
        Some(tpp_certificate()),
        Some(&rat),
        None,
    );
    assert_eq!(
        body(&r)["redirect_uris"],
        json!(["https://tpp.example/cb2"])
    );
}

/// REG-7…11: the SSA's trust, one case each (the error table's invalid_software_statement).
#[test]
fn reg_8_to_11_untrusted_software_statements() {
    let f = Fixture::new();
    let with = |change: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut claims = ssa_claims();
        change(&mut claims);
        sign(&claims, "dir-1")
    };
    let mut tampered = ssa();
    tampered.pop();
    tampered.push('A');
    let cases: Vec<(&str, String)> = vec![
        ("not a JWS", "abc.def".to_string()),
        ("tampered signature", {
            let mut parts: Vec<String> = ssa().split('.').map(str::to_string).collect();
            parts[2] = parts[2].chars().rev().collect();
            parts.join(".")
        }),
        ("unknown kid", sign(&ssa_claims(), "dir-9")),
        (
            "wrong iss",
            with(&|c| {
                c.insert("iss".into(), json!("Someone"));
            }),
        ),
        (
            "stale iat",
            with(&|c| {
                c.insert("iat".into(), json!(NOW - 301));
            }),
        ),
        (
            "future iat",
            with(&|c| {
                c.insert("iat".into(), json!(NOW + 61));
            }),
        ),
        (
            "no iat",
            with(&|c| {
                c.remove("iat");
            }),
        ),
        (
            "expired",
            with(&|c| {
                c.insert("exp".into(), json!(NOW));
            }),
        ),
        (
            "no org_id",
            with(&|c| {
                c.remove("org_id");
            }),
        ),
        (
            "no software_id",
            with(&|c| {
                c.remove("software_id");
            }),
        ),
        (
            "no jwks uri",
            with(&|c| {
                c.remove("software_jwks_uri");
            }),
        ),
        (
            "http jwks uri",
            with(&|c| {
                c.insert(
                    "software_jwks_uri".into(),
                    json!("http://keystore.example/x"),
                );
            }),
        ),
        (
            "no redirect uris",
            with(&|c| {
                c.insert("software_redirect_uris".into(), json!([]));
            }),
        ),
        (
            "no roles",
            with(&|c| {
                c.remove("software_statement_roles");
            }),
        ),
        ("alg none", {
            let header = crate::jose::b64url(br#"{"alg":"none","kid":"dir-1"}"#);
            let payload = ssa().split('.').nth(1).unwrap().to_string();
            format!("{header}.{payload}.")
        }),
    ];
    for (case, ssa) in cases {
        let mut req = request();
        req["software_statement"] = json!(ssa);
        let r = f.post(&req);
        assert_eq!(
            (r.status, error(&r).as_str()),
            (400, "invalid_software_statement"),
            "{case}"
        );
    }
    // Boundaries that pass: iat exactly five minutes old, one minute ahead.
    for iat in [NOW - 300, NOW + 60] {
        let f = Fixture::new();
        let mut req = request();
        req["software_statement"] = json!(with(&|c| {
            c.insert("iat".into(), json!(iat));
        }));
        assert_eq!(f.post(&req).status, 201, "iat {iat}");
    }
    assert!(registrations(&f.store) == 0);
}

/// REG-12/14: policy refuses a valid SSA.
#[test]
fn reg_12_14_unapproved_software_statements() {
    let f = Fixture::new();
    let with = |change: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut claims = ssa_claims();
        change(&mut claims);
        sign(&claims, "dir-1")
    };
    let cases = [
        (
            "org inactive",
            with(&|c| {
                c.insert("org_status".into(), json!("Inactive"));
            }),
        ),
        (
            "no active role",
            with(&|c| {
                c.insert(
                    "software_statement_roles".into(),
                    json!([{ "role": "DADOS", "status": "Inactive" }]),
                );
            }),
        ),
        (
            "unknown role",
            with(&|c| {
                c.insert(
                    "software_statement_roles".into(),
                    json!([{ "role": "XYZ", "status": "Active" }]),
                );
            }),
        ),
        (
            "another software",
            with(&|c| {
                c.insert(
                    "software_id".into(),
                    json!("0c1e7a4e-0000-4000-8000-000000000000"),
                );
            }),
        ),
        (
            "another org",
            with(&|c| {
                c.insert(
                    "org_id".into(),
                    json!("0c1e7a4e-0000-4000-8000-000000000000"),
                );
            }),
        ),
    ];
    for (case, ssa) in cases {
        let mut req = request();
        req["software_statement"] = json!(ssa);
        let r = f.post(&req);
        assert_eq!(
            (r.status, error(&r).as_str()),
            (400, "unapproved_software_statement"),
            "{case}"
        );
    }
    assert!(registrations(&f.store) == 0);
}

#[test]
fn reg_14_uid_and_organization_identifier_compare_without_case_and_ou_for_legacy() {
    let f = Fixture::new();
    let upper = certificate(&format!(
        "UID={},2.5.4.97=OFBBR-{},CN=tpp,C=BR",
        SOFTWARE.to_uppercase(),
        ORG.to_uppercase()
    ))
    .0;
    let r = f.call(Method::Post, "", Some(&upper), None, Some(&request()));
    assert_eq!(r.status, 201, "{:?}", body(&r));
    let f = Fixture::new();
    let legacy = certificate(&format!("UID={SOFTWARE},OU={ORG},CN=tpp,C=BR")).0;
    let r = f.call(Method::Post, "", Some(&legacy), None, Some(&request()));
    assert_eq!(r.status, 201, "{:?}", body(&r));
    let f = Fixture::new();
    let wrong_oid = certificate(&format!(
        "2.5.4.45={SOFTWARE},2.5.4.97=OFBBR-{ORG},CN=tpp,C=BR"
    ))
    .0;
    let r = f.call(Method::Post, "", Some(&wrong_oid), None, Some(&request()));
    assert_eq!(
        (r.status, error(&r).as_str()),
        (400, "unapproved_software_statement")
    );
}

/// REG-16…27: metadata refusals, each with its code.
#[test]
fn reg_16_to_27_metadata_refusals() {
    let f = Fixture::new();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "jwks by value",
            json!({ "jwks": { "keys": [] } }),
            "invalid_client_metadata",
        ),
        (
            "other jwks_uri",
            json!({ "jwks_uri": "https://keystore.directory.openbankingbrasil.org.br/other.jwks" }),
            "invalid_client_metadata",
        ),
        (
            "no redirect_uris",
            json!({ "redirect_uris": null }),
            "invalid_redirect_uri",
        ),
        (
            "empty redirect_uris",
            json!({ "redirect_uris": [] }),
            "invalid_redirect_uri",
        ),
        (
            "foreign redirect",
            json!({ "redirect_uris": ["https://evil.example/cb"] }),
            "invalid_redirect_uri",
        ),
        (
            "webhook not in ssa",
            json!({ "webhook_uris": ["https://tpp.example/other"] }),
            "invalid_webhook_uris",
        ),
        (
            "webhook with query",
            json!({ "webhook_uris": ["https://tpp.example/hook?x=1"] }),
            "invalid_webhook_uris",
        ),
        (
            "client_secret_basic",
            json!({ "token_endpoint_auth_method": "client_secret_basic" }),
            "invalid_client_metadata",
        ),
        (
            "tls_client_auth off",
            json!({ "token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "CN=tpp,C=BR" }),
            "invalid_client_metadata",
        ),
        (
            "san",
            json!({ "tls_client_auth_san_dns": "tpp.example" }),
            "invalid_client_metadata",
        ),
        (
            "RS256 assertion",
            json!({ "token_endpoint_auth_signing_alg": "RS256" }),
            "invalid_client_metadata",
        ),
        (
            "scope beyond roles",
            json!({ "scope": "openid payments" }),
            "invalid_client_metadata",
        ),
        (
            "consent scope",
            json!({ "scope": "openid consent:abc" }),
            "invalid_client_metadata",
        ),
        (
            "unknown grant",
            json!({ "grant_types": ["password"] }),
            "invalid_client_metadata",
        ),
        (
            "only redirect grants",
            json!({ "grant_types": ["authorization_code"] }),
            "invalid_client_metadata",
        ),
        (
            "RS256 request object",
            json!({ "request_object_signing_alg": "RS256" }),
            "invalid_client_metadata",
        ),
        (
            "RS256 id_token",
            json!({ "id_token_signed_response_alg": "RS256" }),
            "invalid_client_metadata",
        ),
        (
            "enc without alg",
            json!({ "id_token_encrypted_response_enc": "A256GCM" }),
            "invalid_client_metadata",
        ),
        (
            "RSA1_5",
            json!({ "id_token_encrypted_response_alg": "RSA1_5" }),
            "invalid_client_metadata",
        ),
        (
            "pairwise",
            json!({ "subject_type": "pairwise" }),
            "invalid_client_metadata",
        ),
        (
            "unbound tokens",
            json!({ "tls_client_certificate_bound_access_tokens": false }),
            "invalid_client_metadata",
        ),
        (
            "application_type",
            json!({ "application_type": "desktop" }),
            "invalid_client_metadata",
        ),
        (
            "ping mode",
            json!({ "backchannel_token_delivery_mode": "ping" }),
            "invalid_client_metadata",
        ),
        (
            "notification endpoint",
            json!({ "backchannel_client_notification_endpoint": "https://tpp.example/n" }),
            "invalid_client_metadata",
        ),
        (
            "RS256 backchannel",
            json!({ "backchannel_authentication_request_signing_alg": "RS256" }),
            "invalid_client_metadata",
        ),
        (
            "user code",
            json!({ "backchannel_user_code_parameter": true }),
            "invalid_client_metadata",
        ),
        (
            "no ssa",
            json!({ "software_statement": null }),
            "invalid_client_metadata",
        ),
    ];
    for (case, change, code) in cases {
        let mut req = request();
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                req.as_object_mut().unwrap().remove(k);
            } else {
                req[k] = v.clone();
            }
        }
        let r = f.post(&req);
        assert_eq!((r.status, error(&r).as_str()), (400, code), "{case}");
    }
    assert!(registrations(&f.store) == 0);
}

#[test]
fn reg_5_bodies_that_are_not_one_json_object() {
    let f = Fixture::new();
    let post = |content_type: &str, body: &str| {
        let request = Request {
            method: Method::Post,
            path_info: String::new(),
            query: None,
            headers: vec![
                ("x-ssl-client-cert".into(), tpp_certificate().to_string()),
                ("content-type".into(), content_type.into()),
            ],
            body: body.as_bytes().to_vec(),
        };
        let deps = Deps {
            store: &f.store,
            clock: &FixedClock(NOW),
            random: &f.random,
            fetch: &f.keystore,
        };
        f.endpoint.handle(&request, &deps)
    };
    let good = request().to_string();
    let duplicated = format!(r#"{{"scope":"openid",{}"#, &good[1..])
        .replace(r#""grant_types""#, r#""scope":"accounts","grant_types""#);
    for (case, content_type, body) in [
        ("form", "application/x-www-form-urlencoded", good.as_str()),
        ("bad json", "application/json", "{"),
        ("array", "application/json", "[]"),
        ("duplicate", "application/json", duplicated.as_str()),
    ] {
        let r = post(content_type, body);
        assert_eq!(
            (r.status, error(&r).as_str()),
            (400, "invalid_client_metadata"),
            "{case}"
        );
    }
    assert_eq!(post("application/json; charset=utf-8", &good).status, 201);
}

#[test]
fn reg_3_no_certificate_or_no_mtls_is_invalid_client() {
    let f = Fixture::new();
    let r = f.call(Method::Post, "", None, None, Some(&request()));
    assert_eq!((r.status, error(&r).as_str()), (401, "invalid_client"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let mut vars = vars();
    vars.insert(crate::config::var::CLIENT_CERT_HEADER, String::new());
    let f = Fixture::with(vars);
    let r = f.call(
        Method::Post,
        "",
        Some(tpp_certificate()),
        None,
        Some(&request()),
    );
    assert_eq!((r.status, error(&r).as_str()), (401, "invalid_client"));
}

#[test]
fn reg_1_other_methods_get_405_with_allow() {
    let f = Fixture::new();
    let r = f.call(Method::Get, "", Some(tpp_certificate()), None, None);
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = f.call(Method::Post, "/abc", Some(tpp_certificate()), None, None);
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, PUT, DELETE"))
    );
}

#[test]
fn key_14_directory_unreachable_is_503() {
    let mut f = Fixture::new();
    f.keystore = FakeKeystore(false);
    let r = f.post(&request());
    assert_eq!(
        (r.status, error(&r).as_str()),
        (503, "temporarily_unavailable")
    );
    assert!(registrations(&f.store) == 0);
}

#[test]
fn reg_23_scope_subset_in_any_order_and_reg_22_role_scopes_configurable() {
    let f = Fixture::new();
    let mut req = request();
    req["scope"] = json!("resources openid accounts openid");
    let r = f.post(&req);
    assert_eq!(body(&r)["scope"], "resources openid accounts");
    let mut vars = vars();
    vars.insert(
        reg::ROLE_SCOPES,
        r#"{"DADOS":"openid extra-scope"}"#.to_string(),
    );
    let f = Fixture::with(vars);
    let mut req = request();
    req["scope"] = json!("extra-scope");
    let r = f.post(&req);
    assert_eq!(
        (r.status, body(&r)["scope"].clone()),
        (201, json!("extra-scope"))
    );
}

#[test]
fn reg_21_tls_client_auth_when_allowed_needs_a_matching_dn_in_rfc_4514_names() {
    let mut vars = vars();
    vars.insert(reg::DCR_ALLOW_TLS_CLIENT_AUTH, "on".to_string());
    let dn = "CN=tpp.example,O=TPP,C=BR";
    let cert = certificate(&format!("UID={SOFTWARE},2.5.4.97=OFBBR-{ORG},{dn}")).0;
    let oi = format!("OFBBR-{ORG}");
    let hex: String = oi.bytes().map(|b| format!("{b:02x}")).collect();
    let hex_oi = format!("2.5.4.97=#0c{:02x}{hex}", oi.len());
    for (case, subject_dn, status) in [
        ("oid form", format!("UID={SOFTWARE},{hex_oi},{dn}"), 201),
        (
            "named organizationIdentifier",
            format!("UID={SOFTWARE},organizationIdentifier=OFBBR-{ORG},{dn}"),
            400,
        ),
        (
            "mismatch",
            format!("UID={SOFTWARE},{hex_oi},CN=other,O=TPP,C=BR"),
            400,
        ),
        ("absent", String::new(), 400),
    ] {
        let f = Fixture::with(vars.clone());
        let mut req = request();
        req["token_endpoint_auth_method"] = json!("tls_client_auth");
        req["tls_client_auth_subject_dn"] = json!(subject_dn);
        let r = f.call(Method::Post, "", Some(&cert), None, Some(&req));
        assert_eq!(r.status, status, "{case}: {:?}", body(&r));
    }
}

/// REG-11: several failures at once answer the first of certificate, SSA trust, policy,
/// metadata.
#[test]
fn reg_11_the_first_failure_in_order_answers() {
    let f = Fixture::new();
    let stranger = certificate("CN=stranger,C=BR").0;
    let mut bad_metadata = request();
    bad_metadata["redirect_uris"] = json!(["https://evil.example/cb"]);
    // Policy (the certificate is not the software's) before metadata.
    let r = f.call(Method::Post, "", Some(&stranger), None, Some(&bad_metadata));
    assert_eq!(error(&r), "unapproved_software_statement");
    // Trust before policy.
    let mut untrusted = bad_metadata.clone();
    let mut claims = ssa_claims();
    claims.insert("iss".into(), json!("Someone else"));
    untrusted["software_statement"] = json!(sign(&claims, "dir-1"));
    let r = f.call(Method::Post, "", Some(&stranger), None, Some(&untrusted));
    assert_eq!(error(&r), "invalid_software_statement");
    // The certificate before anything.
    let r = f.call(Method::Post, "", None, None, Some(&untrusted));
    assert_eq!(error(&r), "invalid_client");
}

/// Registration.md Q4 with REG-29 and REG-36: the operator's delete, by `client_id` or by
/// `software_id`, removes what DELETE removes without a RAT; the client's RAT stops, and the
/// software registers again. Nothing to remove is `None`, and changes nothing.
#[test]
fn reg_29_q4_operator_deregister_frees_the_software_without_a_rat() {
    use crate::client::registration::{Deregister, Deregistered, deregister};
    for by_software in [false, true] {
        let f = Fixture::new();
        let before = registrations(&f.store);
        let created = body(&f.post(&request()));
        let id = created["client_id"].as_str().unwrap();
        let rat = created["registration_access_token"].as_str().unwrap();
        let which = if by_software {
            Deregister::SoftwareId(SOFTWARE)
        } else {
            Deregister::ClientId(id)
        };
        let removed = deregister(&f.store, &which, NOW).unwrap();
        match removed {
            Some(Deregistered::Registration(r)) => {
                assert_eq!(
                    (r.client_id.as_str(), r.metadata.software_id.as_str()),
                    (id, SOFTWARE)
                )
            }
            other => panic!("by_software {by_software}: {other:?}"),
        }
        assert_eq!(registrations(&f.store), before, "client, rat and software");
        let path = format!("/{id}");
        let r = f.call(Method::Get, &path, Some(tpp_certificate()), Some(rat), None);
        assert_eq!(r.status, 401);
        assert_eq!(deregister(&f.store, &which, NOW).unwrap(), None);
        assert_eq!(f.post(&request()).status, 201);
    }
    let f = Fixture::new();
    assert_eq!(
        deregister(
            &f.store,
            &Deregister::ClientId("AAAAAAAAAAAAAAAAAAAAAA"),
            NOW
        )
        .unwrap(),
        None
    );
    assert_eq!(
        deregister(&f.store, &Deregister::ClientId("client-1"), NOW).unwrap(),
        None,
        "a static client is not in the store"
    );
}

/// Registration.md Q4: a software claim left without its registration (DELETE removes the
/// claim best effort) keeps REG-29 refusing the software; the operator's delete by
/// `software_id` removes it, and the software registers again.
#[test]
fn reg_29_q4_operator_deregister_removes_an_orphaned_software_claim() {
    use crate::client::registration::{Deregister, Deregistered, deregister};
    use crate::store::KeyValue;
    let f = Fixture::new();
    f.store
        .increment(&crate::store::keys::software(SOFTWARE), 1)
        .unwrap();
    assert_eq!(error(&f.post(&request())), "unapproved_software_statement");
    assert_eq!(
        deregister(&f.store, &Deregister::ClientId(SOFTWARE), NOW).unwrap(),
        None,
        "by client_id only the client's record counts"
    );
    assert_eq!(
        deregister(&f.store, &Deregister::SoftwareId(SOFTWARE), NOW).unwrap(),
        Some(Deregistered::SoftwareClaim)
    );
    assert_eq!(f.post(&request()).status, 201);
}
