//! Explicit limits on what a request may carry (issue 9, part 2), over real HTTP: bodies over
//! 64 KiB are 413, header values over their limits and forms with more than 64 parameters are
//! 400 `invalid_request`, and a header block over the HTTP server's own limits is its 431.
//! Every refusal is the endpoint's protocol error and leaves the store as it was.

use std::io::{Read, Write};

use e2e::ciba::{CERT_HEADER, Ciba, DEVICE_TOKEN, assert_oauth_error, text};
use e2e::{Response, Server};
use serde_json::{Value, json};

const BODY_LIMIT: usize = 64 * 1024;
const HEADER_LIMIT: usize = 16 * 1024;
const AUTHORIZATION_LIMIT: usize = 4 * 1024;
const CONSENTS: &str = "/open-banking/consents/v3/consents";
const INTERACTION_ID: &str = "3f1c6a4e-8f7d-4c2b-9a1e-2b3c4d5e6f70";

/// The Consents API's error shape: `errors[0].code`.
fn assert_consents_error(response: &Response, status: u16, code: &str) {
    assert_eq!(
        (
            response.status,
            response.json()["errors"][0]["code"].clone()
        ),
        (status, json!(code)),
        "{}",
        text(response)
    );
}

fn description(response: &Response) -> String {
    let body = response.json();
    body["error_description"]
        .as_str()
        .or(body["errors"][0]["detail"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// One raw HTTP/1.1 exchange on a new connection (for what the test client cannot send:
/// chunked bodies, hundreds of headers); the status and the body.
fn raw(server: &Server, head: &str, body: &[u8]) -> (u16, String) {
    let address = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A chunked body in chunks of 4 KiB, with its last chunk.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(4096) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn a_body_over_64_kib_is_413_at_every_endpoint_that_reads_one() {
    let server = crate::server();
    let cert = e2e::certificate_header("CN=tpp-1,C=BR");
    let device = format!("Bearer {DEVICE_TOKEN}");
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "/token",
            vec![
                ("content-type", "application/x-www-form-urlencoded"),
                (CERT_HEADER, &cert),
            ],
        ),
        (
            "/bc-authorize",
            vec![
                ("content-type", "application/x-www-form-urlencoded"),
                (CERT_HEADER, &cert),
            ],
        ),
        (
            "/device/hints",
            vec![
                ("content-type", "application/json"),
                ("authorization", &device),
                (CERT_HEADER, e2e::device_certificate().0.as_str()),
            ],
        ),
        (
            CONSENTS,
            vec![
                ("content-type", "application/json"),
                (CERT_HEADER, &cert),
                ("x-fapi-interaction-id", INTERACTION_ID),
            ],
        ),
    ];
    for (path, headers) in cases {
        let over = server.send("POST", path, &headers, &vec![b'a'; BODY_LIMIT + 1]);
        assert_eq!(over.status, 413, "{path}: {}", text(&over));
        assert_eq!(
            description(&over),
            "the request body is larger than 64 KiB",
            "{path}"
        );
        if path == CONSENTS {
            assert_consents_error(&over, 413, "invalid_request");
        } else {
            assert_oauth_error(&over, 413, "invalid_request");
        }
        // At the limit the body is read, and the endpoint answers what it is.
        let at = server.send("POST", path, &headers, &vec![b'a'; BODY_LIMIT]);
        assert_ne!(at.status, 413, "{path}: {}", text(&at));
    }
}

#[test]
fn a_chunked_body_over_64_kib_is_413_once_it_passes_the_limit() {
    let server = crate::server();
    let head = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
    };
    let (status, body) = raw(
        server,
        &head("/token"),
        &chunked(&vec![b'a'; BODY_LIMIT + 1]),
    );
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("\"error\":\"invalid_request\""), "{body}");
    // Within the limit, the same chunked body is read and refused for what it says.
    let (status, body) = raw(
        server,
        &head("/token"),
        &chunked(b"grant_type=client_credentials"),
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid_client"), "{body}");
}

#[test]
fn a_client_certificate_header_over_16_kib_is_400_invalid_request() {
    let server = crate::server();
    let form = ("content-type", "application/x-www-form-urlencoded");
    let over = "A".repeat(HEADER_LIMIT + 1);
    let at = "A".repeat(HEADER_LIMIT);
    for path in ["/token", "/bc-authorize"] {
        let response = server.send(
            "POST",
            path,
            &[form, (CERT_HEADER, &over)],
            b"grant_type=client_credentials",
        );
        assert_oauth_error(&response, 400, "invalid_request");
        assert_eq!(
            description(&response),
            "a header value is longer than 16 KiB"
        );
        // At the limit it is read, and it is no certificate.
        let response = server.send(
            "POST",
            path,
            &[form, (CERT_HEADER, &at)],
            b"grant_type=client_credentials",
        );
        assert_oauth_error(&response, 401, "invalid_client");
        assert_eq!(
            description(&response),
            "the client certificate cannot be read"
        );
    }
    let response = server.send(
        "GET",
        "/userinfo",
        &[(CERT_HEADER, &over), ("authorization", "Bearer x")],
        b"",
    );
    assert_oauth_error(&response, 400, "invalid_request");
    let response = server.send(
        "POST",
        CONSENTS,
        &[
            (CERT_HEADER, &over),
            ("authorization", "Bearer x"),
            ("x-fapi-interaction-id", INTERACTION_ID),
        ],
        b"",
    );
    assert_consents_error(&response, 400, "invalid_request");
}

#[test]
fn an_authorization_header_over_4_kib_is_400_invalid_request() {
    let server = crate::server();
    let over = format!("Bearer {}", "t".repeat(AUTHORIZATION_LIMIT - 6));
    let at = format!("Bearer {}", "t".repeat(AUTHORIZATION_LIMIT - 7));
    assert_eq!((over.len(), at.len()), (4097, 4096));
    let fapi = ("x-fapi-interaction-id", INTERACTION_ID);
    // (path, method, other headers, the answer at the limit: a token nobody issued)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: [Case; 4] = [
        ("/device/holders", "GET", vec![], 401, "invalid_token"),
        ("/userinfo", "GET", vec![], 401, "invalid_token"),
        (CONSENTS, "POST", vec![fapi], 401, "invalid_token"),
        (
            "/token",
            "POST",
            vec![("content-type", "application/x-www-form-urlencoded")],
            401,
            "invalid_client",
        ),
    ];
    for (path, method, headers, status, error) in cases {
        let with = |auth: &str| {
            let mut all = headers.clone();
            all.push(("authorization", auth));
            server.send(method, path, &all, b"grant_type=client_credentials")
        };
        let response = with(&over);
        assert_eq!(response.status, 400, "{path}: {}", text(&response));
        assert_eq!(
            description(&response),
            "the Authorization header is longer than 4 KiB",
            "{path}"
        );
        let response = with(&at);
        assert_eq!(response.status, status, "{path}: {}", text(&response));
        if path == CONSENTS {
            assert_consents_error(&response, status, error);
        } else {
            assert_oauth_error(&response, status, error);
        }
    }
}

#[test]
fn bca_30_an_interaction_id_is_never_refused_at_as_endpoints_below_the_header_limit() {
    let server = crate::server();
    let long = "5".repeat(HEADER_LIMIT);
    // At an AS endpoint an id that is no UUID gets a fresh one, however long (BCA-30).
    let response = server.send(
        "GET",
        "/.well-known/openid-configuration",
        &[("x-fapi-interaction-id", &long)],
        b"",
    );
    assert_eq!(response.status, 200);
    let fresh = response.header("x-fapi-interaction-id").unwrap();
    assert_eq!(fresh.len(), 36, "{fresh}");
    // Over the header limit it is refused, with a fresh id too.
    let over = format!("{long}5");
    let response = server.send(
        "GET",
        "/.well-known/openid-configuration",
        &[("x-fapi-interaction-id", &over)],
        b"",
    );
    assert_oauth_error(&response, 400, "invalid_request");
    assert_eq!(
        response.header("x-fapi-interaction-id").map(str::len),
        Some(36)
    );
    // At the Consents API it must be a UUID anyway (AMB-17).
    let response = server.send(
        "GET",
        &format!("{CONSENTS}/x"),
        &[
            ("x-fapi-interaction-id", &long),
            ("authorization", "Bearer x"),
        ],
        b"",
    );
    assert_consents_error(&response, 400, "invalid_request");
}

/// `n` distinct parameters, each with a value.
fn parameters(n: usize) -> String {
    (0..n)
        .map(|i| format!("p{i}=v"))
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn more_than_64_form_parameters_are_400_invalid_request() {
    let server = crate::server();
    let cert = e2e::certificate_header("CN=tpp-1,C=BR");
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        (CERT_HEADER, cert.as_str()),
    ];
    for path in ["/token", "/bc-authorize"] {
        let response = server.send("POST", path, &headers, parameters(65).as_bytes());
        assert_oauth_error(&response, 400, "invalid_request");
        assert_eq!(description(&response), "too many parameters", "{path}");
        // 64 are read, and refused for what they are.
        let response = server.send("POST", path, &headers, parameters(64).as_bytes());
        assert_ne!(description(&response), "too many parameters", "{path}");
        assert!(response.status < 500, "{path}: {}", text(&response));
    }
    // The device API's query is read like a form.
    let device = format!("Bearer {DEVICE_TOKEN}");
    let response = server.send(
        "GET",
        &format!("/device/requests?subject=holder-1&{}", parameters(64)),
        &[
            ("authorization", &device),
            (CERT_HEADER, e2e::device_certificate().0.as_str()),
        ],
        b"",
    );
    assert_oauth_error(&response, 400, "invalid_request");
    assert_eq!(description(&response), "too many parameters");
}

#[test]
fn a_header_block_over_the_http_server_limits_is_431_before_any_component() {
    let server = crate::server();
    let mut head = String::from("GET /jwks HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
    for i in 0..120 {
        head.push_str(&format!("x-filler-{i}: v\r\n"));
    }
    head.push_str("\r\n");
    let (status, _) = raw(server, &head, b"");
    assert_eq!(status, 431);
    // Well under it, the same request is served.
    let (status, _) = raw(
        server,
        "GET /jwks HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-filler: v\r\n\r\n",
        b"",
    );
    assert_eq!(status, 200);
}

#[test]
fn a_request_refused_for_its_size_changes_no_state() {
    let ciba = Ciba::new("limits-state");
    let consent = ciba.lodge("tpp-1", e2e::ciba::HOLDER_1_CPF, None);
    let mut claims = ciba.request_claims("tpp-1", &consent);
    claims.insert("login_hint".into(), Value::String(consent.clone()));
    let body = format!(
        "request={}&{}",
        ciba.sign_request("tpp-1", claims),
        ciba.client_auth("tpp-1")
    );
    let rows = ciba.server.store_rows();
    let long = "v".repeat(HEADER_LIMIT + 1);
    let send = |extra: Option<(&str, &str)>, body: &str| {
        let mut headers = vec![
            ("content-type", "application/x-www-form-urlencoded"),
            (CERT_HEADER, ciba.cert.as_str()),
        ];
        headers.extend(extra);
        ciba.server
            .send("POST", "/bc-authorize", &headers, body.as_bytes())
    };
    let refused = send(Some(("x-long", &long)), &body);
    assert_oauth_error(&refused, 400, "invalid_request");
    let padded = format!("{body}&{}", "a".repeat(BODY_LIMIT));
    assert_eq!(send(None, &padded).status, 413);
    let crowded = format!("{body}&{}", parameters(64));
    assert_oauth_error(&send(None, &crowded), 400, "invalid_request");
    assert_eq!(ciba.server.store_rows(), rows, "a refused request wrote");
    // The same request within the limits is accepted, and writes.
    let accepted = send(None, &body);
    assert_eq!(accepted.status, 200, "{}", text(&accepted));
    assert!(ciba.server.store_rows() > rows);
}
