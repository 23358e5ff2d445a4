//! The local host behaves as Spin 4.1 where the components can tell: WASIp3 requests interleave
//! inside one instance, at most 16 at once; and the glue reads a request body only as far as
//! the request says it goes (design.md, "Running without Spin").

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use e2e::assertion::{self, claims, sign};
use e2e::{Server, Store, certificate_header, material};

/// Spin's defaults for WASIp3: `--max-instance-concurrent-reuse-count` and
/// `--max-instance-reuse-count`.
const CONCURRENT_REUSE: usize = 16;
const REUSE: usize = 128;

/// The probe's `<key>-arrived` counter, read from its store's file.
fn arrived(db: &rusqlite::Connection, key: &str) -> i64 {
    db.query_row(
        "SELECT value FROM spin_key_value WHERE store = 'default' AND key = ?1",
        [format!("{key}-arrived")],
        |row| row.get::<_, Vec<u8>>(0),
    )
    .map(|v| i64::from_le_bytes(v.try_into().unwrap()))
    .unwrap_or(0)
}

/// Which instance answered each hold, and the most holds that instance had at once.
fn instances(answers: &[Value]) -> Vec<(i64, u64)> {
    answers
        .iter()
        .map(|a| {
            assert_eq!(a["released"], json!(true), "{a}");
            (a["instance"].as_i64().unwrap(), a["peak"].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn requests_interleave_inside_one_instance_at_most_sixteen_at_once() {
    const HELD: usize = 20;
    let dir = e2e::temp_dir("interleave");
    let server = Server::probe(Store::Dir(dir.clone()));
    let db = rusqlite::Connection::open(dir.join("sqlite_key_value.db")).unwrap();
    let answers: Vec<Value> = std::thread::scope(|s| {
        let mut held = Vec::new();
        // One at a time, each sent once the one before is waiting inside its instance, so
        // that an instance that can take it is free to.
        for i in 1..=HELD {
            let server = &server;
            held.push(s.spawn(move || {
                let response = server.send("POST", "/kv/barrier/hold", &[], b"");
                assert_eq!(response.status, 200, "{response:?}");
                response.json()
            }));
            let deadline = Instant::now() + Duration::from_secs(10);
            while arrived(&db, "barrier") < i as i64 {
                assert!(Instant::now() < deadline, "hold {i} never arrived");
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            server.send("PUT", "/kv/barrier-release", &[], b"go").status,
            200
        );
        held.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut by_instance: HashMap<i64, (usize, u64)> = HashMap::new();
    for (instance, peak) in instances(&answers) {
        let entry = by_instance.entry(instance).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(peak);
    }
    let mut shape: Vec<(usize, u64)> = by_instance.values().copied().collect();
    shape.sort_unstable();
    // The first instance took sixteen at once, then a second one the rest, all at once.
    assert_eq!(
        shape,
        vec![
            (HELD - CONCURRENT_REUSE, (HELD - CONCURRENT_REUSE) as u64),
            (CONCURRENT_REUSE, CONCURRENT_REUSE as u64)
        ],
        "(requests, most at once) per instance: {by_instance:?}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_instance_takes_at_most_128_requests() {
    let server = Server::probe(Store::Memory);
    // The first request, then 127 holds (released at once) on the same instance.
    assert_eq!(
        server.send("PUT", "/kv/open-release", &[], b"go").status,
        200
    );
    let answers: Vec<Value> = (0..REUSE)
        .map(|_| server.send("POST", "/kv/open/hold", &[], b"").json())
        .collect();
    let ids: Vec<i64> = instances(&answers).into_iter().map(|(id, _)| id).collect();
    assert!(
        ids[..REUSE - 1].iter().all(|id| *id == ids[0]),
        "one instance for the first {REUSE} requests: {ids:?}"
    );
    assert_ne!(ids[REUSE - 1], ids[0], "then a new one: {ids:?}");
}

/// Sends `head` (and `body`) on a fresh connection that the server closes after answering,
/// and reads the answer, failing after `timeout`.
fn raw_exchange(server: &Server, head: &str, body: &[u8], timeout: Duration) -> String {
    let address = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "no complete answer within {timeout:?} ({e}); so far: {}",
                String::from_utf8_lossy(&answer)
            ),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_body_announced_over_the_limit_is_refused_without_waiting_for_it() {
    let server = crate::server();
    let host = server.base.trim_start_matches("http://");
    let head = format!(
        "POST /token HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\
         content-type: application/x-www-form-urlencoded\r\ncontent-length: 100000000\r\n\r\n"
    );
    let started = Instant::now();
    // Only the head is sent: a server that waited for the body would never answer.
    let answer = raw_exchange(server, &head, b"", Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_chunked_form_body_is_read_to_its_end() {
    let server = crate::server();
    let host = server.base.trim_start_matches("http://");
    let assertion = sign(
        "PS256",
        &material().client_key,
        "tpp-key-1",
        claims("tpp-1", &format!("{}/token", server.base)),
    );
    let form = format!(
        "grant_type=client_credentials&scope=consents&{}",
        assertion::form(&assertion)
    );
    let cert = certificate_header("CN=tpp-1,O=TPP Ltda,C=BR");
    let head = format!(
        "POST /token HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\
         content-type: application/x-www-form-urlencoded\r\nx-client-cert: {cert}\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
    // Three chunks, then the last chunk.
    let mut body = Vec::new();
    let third = form.len() / 3;
    for chunk in [&form[..third], &form[third..2 * third], &form[2 * third..]] {
        body.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(server, &head, &body, Duration::from_secs(10));
    // A token is issued only if the whole form, assertion included, was read.
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"access_token\""), "{answer}");
}
