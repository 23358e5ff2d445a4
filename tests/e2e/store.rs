//! The key-value store through the host, driven by the test-only probe component: data
//! persists across requests and restarts, and a compare-and-swap conflict is a conflict.

use serde_json::{Value, json};

use e2e::{Server, Store};

fn post(server: &Server, path: &str, body: Value) -> Value {
    let response = server.send(
        "POST",
        path,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    response.json()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ciba-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_store_keeps_data_across_requests_and_restarts() {
    let dir = temp_dir("restart");
    {
        let server = Server::probe(Store::Dir(dir.clone()));
        assert_eq!(server.get("/kv/greeting").status, 404);
        assert_eq!(server.send("PUT", "/kv/greeting", &[], b"ola").status, 200);
        assert_eq!(server.get("/kv/greeting").json()["value"], json!("ola"));
        assert_eq!(
            post(&server, "/kv/counter/increment", json!({}))["value"],
            json!(1)
        );
    }
    let server = Server::probe(Store::Dir(dir.clone()));
    assert_eq!(
        server.get("/kv/greeting").json()["value"],
        json!("ola"),
        "lost on restart"
    );
    assert_eq!(
        post(&server, "/kv/counter/increment", json!({}))["value"],
        json!(2)
    );
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_compare_and_swap_on_a_changed_value_is_a_conflict() {
    cas_conflicts(&Server::probe(Store::Memory));
}

/// The glue's compare-and-swap: insert-if-absent and a swap from a value conflict when the
/// value is not the one expected, and write nothing then (also on Redis: redis.rs).
pub(crate) fn cas_conflicts(server: &Server) {
    assert_eq!(
        post(
            server,
            "/kv/state/cas",
            json!({ "expected": null, "new": "PENDING#1" })
        )["swapped"],
        json!(true)
    );
    assert_eq!(
        post(
            server,
            "/kv/state/cas",
            json!({ "expected": null, "new": "PENDING#2" })
        )["swapped"],
        json!(false),
        "the key exists: insert-if-absent must conflict"
    );
    assert_eq!(
        post(
            server,
            "/kv/state/cas",
            json!({ "expected": "APPROVED#9", "new": "CONSUMED#1" })
        )["swapped"],
        json!(false)
    );
    assert_eq!(
        server.get("/kv/state").json()["value"],
        json!("PENDING#1"),
        "a conflict writes nothing"
    );
    assert_eq!(
        post(
            server,
            "/kv/state/cas",
            json!({ "expected": "PENDING#1", "new": "APPROVED#1" })
        )["swapped"],
        json!(true)
    );
    assert_eq!(server.get("/kv/state").json()["value"], json!("APPROVED#1"));
}

#[test]
fn a_write_between_current_and_swap_makes_the_host_report_cas_failed() {
    let server = Server::probe(Store::Memory);
    server.send("PUT", "/kv/race", &[], b"before");
    assert_eq!(
        post(&server, "/kv/race/race", json!({}))["outcome"],
        json!("cas-failed")
    );
    assert_eq!(
        server.get("/kv/race").json()["value"],
        json!("intruder"),
        "the intruder's write stands"
    );
}

#[test]
fn twenty_concurrent_swaps_from_one_state_succeed_once_and_one_increment_is_first() {
    twenty_swaps_win_once(&Server::probe(Store::Memory));
}

/// 20 swaps from one state at once: one wins; 20 increments at once: one is first.
pub(crate) fn twenty_swaps_win_once(server: &Server) {
    server.send("PUT", "/kv/grant", &[], b"APPROVED");
    let wins: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let server = &server;
                s.spawn(move || {
                    post(
                        server,
                        "/kv/grant/cas",
                        json!({ "expected": "APPROVED", "new": format!("CONSUMED#{i}") }),
                    )["swapped"]
                        == json!(true)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum()
    });
    assert_eq!(wins, 1);
    let counters: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let server = &server;
                s.spawn(move || {
                    post(server, "/kv/jti/increment", json!({}))["value"]
                        .as_i64()
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        counters.iter().filter(|v| **v == 1).count(),
        1,
        "exactly one first use"
    );
    assert_eq!(counters.iter().max(), Some(&20));
}

#[test]
fn a_client_sent_spin_path_info_header_cannot_redirect_the_request() {
    // Spin appends its own `spin-path-info` after the client's headers: the glue must read
    // Spin's (the last), or a client could address another key or consent.
    let server = Server::probe(Store::Memory);
    server.send("PUT", "/kv/real", &[], b"the real one");
    server.send("PUT", "/kv/other", &[], b"someone else's");
    let response = server.send("GET", "/kv/real", &[("spin-path-info", "/other")], b"");
    assert_eq!(response.json()["value"], json!("the real one"));
}

fn journal_mode(db: &std::path::Path) -> String {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap()
}

fn create_store(args: &[&str]) -> std::process::Output {
    std::process::Command::new(e2e::host_binary())
        .arg("create-store")
        .args(args)
        .output()
        .unwrap()
}

/// Issue 18 item 4: `ciba-host create-store --wal` makes Spin's file in WAL mode, and the host,
/// opening files as Spin does (no pragma), keeps it WAL; a file the host creates itself is a
/// rollback journal, as Spin's is. Read through a second connection while the host runs.
#[test]
fn a_store_created_in_wal_mode_stays_wal_and_a_fresh_one_is_a_rollback_journal() {
    let wal_dir = temp_dir("wal-store");
    let db = wal_dir.join("sqlite_key_value.db");
    let created = create_store(&["--wal", db.to_str().unwrap()]);
    assert!(created.status.success(), "{created:?}");
    {
        let server = Server::probe(Store::Dir(wal_dir.clone()));
        assert_eq!(server.send("PUT", "/kv/k", &[], b"v").status, 200);
        assert_eq!(journal_mode(&db), "wal");
        assert!(wal_dir.join("sqlite_key_value.db-wal").exists());
    }
    // An existing file is left alone.
    let again = create_store(&[db.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("left alone"));
    let server = Server::probe(Store::Dir(wal_dir.clone()));
    assert_eq!(server.get("/kv/k").json()["value"], json!("v"));
    assert_eq!(journal_mode(&db), "wal");
    drop(server);

    let fresh_dir = temp_dir("rollback-store");
    let server = Server::probe(Store::Dir(fresh_dir.clone()));
    assert_eq!(server.send("PUT", "/kv/k", &[], b"v").status, 200);
    assert_eq!(
        journal_mode(&fresh_dir.join("sqlite_key_value.db")),
        "delete"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(wal_dir);
    let _ = std::fs::remove_dir_all(fresh_dir);
}

/// Issue 18: the batch calls of `wasi:keyvalue/batch` as Spin's SQLite store makes them:
/// `get-many` answers only the keys that exist, `set-many` writes every pair and
/// `delete-many` removes every key, each one counted call (and a batch write one write)
/// whatever its number of keys.
#[test]
fn batch_calls_read_write_and_delete_many_keys_in_one_call_each() {
    let dir = temp_dir("batch");
    let server = Server::probe(Store::Dir(dir.clone()));
    let faults = &server.faults;
    server.send("PUT", "/kv/kept", &[], b"k");
    faults.count();
    let stored = post(
        &server,
        "/kv/_/set-many",
        json!({ "pairs": { "a": "1", "b": "2", "c": "3" } }),
    );
    assert_eq!(stored["stored"], json!(3));
    assert_eq!(faults.ops(), [ciba_host::kv::KvOp::SetMany]);
    assert!(faults.ops().iter().all(|op| op.is_write()));
    for (key, value) in [("a", "1"), ("b", "2"), ("c", "3")] {
        assert_eq!(
            server.get(&format!("/kv/{key}")).json()["value"],
            json!(value)
        );
    }
    faults.count();
    let found = post(
        &server,
        "/kv/_/get-many",
        json!({ "keys": ["a", "absent", "c", "kept"] }),
    );
    assert_eq!(
        found["found"],
        json!({ "a": "1", "c": "3", "kept": "k" }),
        "only the keys that exist"
    );
    assert_eq!(faults.ops(), [ciba_host::kv::KvOp::GetMany]);
    faults.count();
    post(
        &server,
        "/kv/_/delete-many",
        json!({ "keys": ["a", "c", "absent"] }),
    );
    assert_eq!(faults.ops(), [ciba_host::kv::KvOp::DeleteMany]);
    assert_eq!(server.get("/kv/a").status, 404);
    assert_eq!(server.get("/kv/c").status, 404);
    assert_eq!(server.get("/kv/b").json()["value"], json!("2"));
    // No keys: no call at all, as Spin answers an empty batch without the store.
    faults.count();
    post(&server, "/kv/_/get-many", json!({ "keys": [] }));
    post(&server, "/kv/_/set-many", json!({ "pairs": {} }));
    assert_eq!(faults.ops(), []);
    // A failed set-many writes nothing.
    faults.arm(1);
    let failed = server.send(
        "POST",
        "/kv/_/set-many",
        &[("content-type", "application/json")],
        json!({ "pairs": { "x": "1", "y": "2" } })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(failed.status, 500);
    assert_eq!(server.get("/kv/x").status, 404);
    assert_eq!(server.get("/kv/y").status, 404);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
