//! The binary, natively: every step runs and is reported, as a table and as JSON.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use ciba_hot_paths::{Keys, Step};

fn run(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ciba-hot-paths"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn every_step_is_timed_and_reported() {
    let keys = Keys::generate().unwrap().to_json();
    let table = run(&["--samples", "1", "--keys", "-"], &keys);
    for step in Step::ALL {
        assert!(
            table.contains(step.name()),
            "{} missing:\n{table}",
            step.name()
        );
    }

    let json: serde_json::Value =
        serde_json::from_str(&run(&["--samples", "3", "--json", "--keys", "-"], &keys)).unwrap();
    assert_eq!(json["samples"], 3);
    let steps = json["steps"].as_array().unwrap();
    assert_eq!(steps.len(), Step::ALL.len());
    for (figures, step) in steps.iter().zip(Step::ALL) {
        assert_eq!(figures["name"], step.name());
        let (q1, median, q3) = (
            figures["q1_ns"].as_f64().unwrap(),
            figures["median_ns"].as_f64().unwrap(),
            figures["q3_ns"].as_f64().unwrap(),
        );
        assert!(0.0 < q1 && q1 <= median && median <= q3, "{figures}");
    }
}

#[test]
fn keys_that_are_not_the_three_jwks_are_refused() {
    assert!(Keys::from_json("{}").is_err());
    assert!(Keys::from_json("not json").is_err());
    let keys = Keys::generate().unwrap();
    let again = Keys::from_json(&keys.to_json()).unwrap();
    assert_eq!(again.client, keys.client);
    assert_eq!(again.signing, keys.signing);
    assert_eq!(again.encryption, keys.encryption);
}
