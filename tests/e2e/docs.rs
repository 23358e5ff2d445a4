//! The deployment guides in `docs/` (issue 10, item 3). Every fenced example names its
//! language. Every `yaml` block parses (multi-document included), and so does every `toml`
//! block. The variables a `SpinApp` or a `spin ... deploy` sets are the ones `spin.toml`
//! declares, the required ones included, and the secrets come from Kubernetes Secrets that the
//! guide defines. The proxies forward the verified certificate in the header the app is told to
//! read, overwriting what a client sent.

use std::collections::{BTreeMap, BTreeSet};

use yaml_rust2::{Yaml, YamlLoader};

use e2e::root;

/// One fenced block of a guide.
struct Block {
    guide: String,
    line: usize,
    lang: String,
    text: String,
}

impl Block {
    fn place(&self) -> String {
        format!("docs/{}:{}", self.guide, self.line)
    }
}

/// The guides, by file name.
fn guides() -> BTreeMap<String, String> {
    let mut guides = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            guides.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    for expected in ["spinkube.md", "fermyon-cloud-akamai.md", "mtls-proxy.md"] {
        assert!(guides.contains_key(expected), "docs/{expected} is missing");
    }
    guides
}

/// The fenced blocks of a guide. An opening fence without a language, or a fence left open, is
/// a failure.
fn blocks_of(guide: &str, text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in text.lines().enumerate() {
        match open.as_mut() {
            None => {
                if let Some(lang) = line.trim_start().strip_prefix("```") {
                    let lang = lang.trim();
                    assert!(
                        !lang.is_empty(),
                        "docs/{guide}:{}: a fenced block without its language",
                        index + 1
                    );
                    open = Some(Block {
                        guide: guide.to_owned(),
                        line: index + 1,
                        lang: lang.to_owned(),
                        text: String::new(),
                    });
                }
            }
            Some(block) => {
                if line.trim() == "```" {
                    blocks.push(open.take().unwrap());
                } else {
                    block.text.push_str(line);
                    block.text.push('\n');
                }
            }
        }
    }
    assert!(
        open.is_none(),
        "docs/{guide}: a fenced block is never closed"
    );
    blocks
}

fn all_blocks() -> Vec<Block> {
    guides()
        .iter()
        .flat_map(|(guide, text)| blocks_of(guide, text))
        .collect()
}

/// The YAML documents of every `yaml` block, with the block they come from.
fn yaml_documents(blocks: &[Block]) -> Vec<(&Block, Yaml)> {
    blocks
        .iter()
        .filter(|b| b.lang == "yaml")
        .flat_map(|b| {
            let docs =
                YamlLoader::load_from_str(&b.text).unwrap_or_else(|e| panic!("{}: {e}", b.place()));
            docs.into_iter().map(move |d| (b, d))
        })
        .collect()
}

/// `spin.toml`'s `[variables]`: every name, the required ones, the secret ones.
struct Declared {
    all: BTreeSet<String>,
    required: BTreeSet<String>,
    secret: BTreeSet<String>,
}

fn declared() -> Declared {
    let manifest: toml::Table = std::fs::read_to_string(root().join("spin.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let variables = manifest["variables"].as_table().unwrap();
    let flagged = |flag: &str| -> BTreeSet<String> {
        variables
            .iter()
            .filter(|(_, v)| v.get(flag).and_then(toml::Value::as_bool) == Some(true))
            .map(|(k, _)| k.clone())
            .collect()
    };
    Declared {
        all: variables.keys().cloned().collect(),
        required: flagged("required"),
        secret: flagged("secret"),
    }
}

/// The names set with `--variable NAME=...` in a shell block, with their values.
fn cli_variables(text: &str) -> Vec<(String, String)> {
    let joined = text.replace("\\\n", " ");
    let mut tokens = joined.split_whitespace();
    let mut found = Vec::new();
    while let Some(token) = tokens.next() {
        let assignment = if token == "--variable" {
            tokens.next().unwrap_or_default()
        } else if let Some(rest) = token.strip_prefix("--variable=") {
            rest
        } else {
            continue;
        };
        let assignment = assignment.trim_start_matches(['"', '\'']);
        if let Some((name, value)) = assignment.split_once('=') {
            found.push((
                name.to_owned(),
                value.trim_end_matches(['"', '\'']).to_owned(),
            ));
        }
    }
    found
}

fn str_of(y: &Yaml) -> Option<&str> {
    y.as_str()
}

/// The keys defined by the Secrets (or ConfigMaps) of the guides: (kind, name) -> keys.
fn defined_keys(docs: &[(&Block, Yaml)], kind: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut defined: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, doc) in docs {
        if str_of(&doc["kind"]) != Some(kind) {
            continue;
        }
        let name = str_of(&doc["metadata"]["name"]).unwrap().to_owned();
        for field in ["data", "stringData"] {
            if let Some(map) = doc[field].as_hash() {
                let keys = map.keys().filter_map(|k| k.as_str().map(str::to_owned));
                defined.entry(name.clone()).or_default().extend(keys);
            }
        }
    }
    defined
}

/// Every hash in a YAML tree that has `key`.
fn hashes_with<'a>(y: &'a Yaml, key: &str, found: &mut Vec<&'a Yaml>) {
    match y {
        Yaml::Hash(map) => {
            if !y[key].is_badvalue() {
                found.push(y);
            }
            for value in map.values() {
                hashes_with(value, key, found);
            }
        }
        Yaml::Array(items) => {
            for item in items {
                hashes_with(item, key, found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_yaml_and_toml_block_of_the_guides_parses() {
    let blocks = all_blocks();
    let mut failures = Vec::new();
    let (mut yaml, mut toml_blocks) = (0, 0);
    for block in &blocks {
        match block.lang.as_str() {
            "yaml" => {
                yaml += 1;
                match YamlLoader::load_from_str(&block.text) {
                    Ok(docs) if docs.is_empty() => {
                        failures.push(format!("{}: empty", block.place()))
                    }
                    Ok(_) => {}
                    Err(e) => failures.push(format!("{}: {e}", block.place())),
                }
            }
            "toml" => {
                toml_blocks += 1;
                if let Err(e) = block.text.parse::<toml::Table>() {
                    failures.push(format!("{}: {e}", block.place()));
                }
            }
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "blocks that do not parse:\n{}",
        failures.join("\n")
    );
    assert!(
        yaml >= 5 && toml_blocks >= 2,
        "{yaml} yaml and {toml_blocks} toml blocks"
    );

    // Multi-document blocks count every document: the Secrets come three to a block.
    let docs = yaml_documents(&blocks);
    let secrets = docs
        .iter()
        .filter(|(_, d)| str_of(&d["kind"]) == Some("Secret"))
        .count();
    assert!(secrets >= 3, "{secrets} Secret manifests");
    // The runtime configurations put the `default` store on Redis.
    for block in blocks.iter().filter(|b| b.lang == "toml") {
        let table: toml::Table = block.text.parse().unwrap();
        let store = &table["key_value_store"]["default"];
        assert_eq!(store["type"].as_str(), Some("redis"), "{}", block.place());
        let url = store["url"].as_str().unwrap();
        assert!(url.starts_with("redis://"), "{}: {url}", block.place());
    }
}

#[test]
fn the_guides_set_only_declared_variables_with_every_required_one_and_secrets_from_secrets() {
    let declared = declared();
    let blocks = all_blocks();
    let docs = yaml_documents(&blocks);
    let secrets = defined_keys(&docs, "Secret");
    let config_maps = defined_keys(&docs, "ConfigMap");

    let mut spin_apps = 0;
    for (block, doc) in docs
        .iter()
        .filter(|(_, d)| str_of(&d["kind"]) == Some("SpinApp"))
    {
        spin_apps += 1;
        let place = block.place();
        assert_eq!(
            str_of(&doc["apiVersion"]),
            Some("core.spinkube.dev/v1alpha1"),
            "{place}"
        );
        assert_eq!(
            str_of(&doc["spec"]["executor"]),
            Some("containerd-shim-spin"),
            "{place}"
        );
        assert!(
            str_of(&doc["spec"]["image"]).is_some(),
            "{place}: spec.image"
        );
        assert!(
            doc["spec"]["replicas"].as_i64().is_some(),
            "{place}: spec.replicas"
        );

        let mut names = BTreeSet::new();
        for variable in doc["spec"]["variables"].as_vec().unwrap() {
            let name = str_of(&variable["name"]).unwrap();
            assert!(
                declared.all.contains(name),
                "{place}: `{name}` is not in spin.toml"
            );
            assert!(names.insert(name.to_owned()), "{place}: `{name}` twice");
            let from = &variable["valueFrom"];
            if declared.secret.contains(name) {
                let reference = &from["secretKeyRef"];
                assert!(
                    variable["value"].is_badvalue() && !reference.is_badvalue(),
                    "{place}: the secret `{name}` must come from a Secret"
                );
                let (secret, key) = (str_of(&reference["name"]), str_of(&reference["key"]));
                assert!(
                    secrets
                        .get(secret.unwrap())
                        .is_some_and(|k| k.contains(key.unwrap())),
                    "{place}: `{name}` reads Secret {secret:?} key {key:?}, which no guide defines"
                );
            } else if !from["configMapKeyRef"].is_badvalue() {
                let reference = &from["configMapKeyRef"];
                let (map, key) = (str_of(&reference["name"]), str_of(&reference["key"]));
                assert!(
                    config_maps
                        .get(map.unwrap())
                        .is_some_and(|k| k.contains(key.unwrap())),
                    "{place}: `{name}` reads ConfigMap {map:?} key {key:?}, which no guide defines"
                );
            } else {
                assert!(
                    str_of(&variable["value"]).is_some(),
                    "{place}: `{name}` has no value"
                );
            }
        }
        let missing: Vec<_> = declared.required.difference(&names).collect();
        assert!(
            missing.is_empty(),
            "{place}: required variables missing: {missing:?}"
        );

        // The `default` store on Redis through the runtime configuration, its URL a secret.
        let stores = doc["spec"]["runtimeConfig"]["keyValueStores"]
            .as_vec()
            .unwrap();
        let default = stores
            .iter()
            .find(|s| str_of(&s["name"]) == Some("default"))
            .unwrap_or_else(|| panic!("{place}: no `default` key-value store"));
        assert_eq!(str_of(&default["type"]), Some("redis"), "{place}");
        let url = default["options"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|o| str_of(&o["name"]) == Some("url"))
            .unwrap_or_else(|| panic!("{place}: the store has no url"));
        assert!(
            !url["valueFrom"]["secretKeyRef"].is_badvalue(),
            "{place}: url from a Secret"
        );
    }
    assert!(spin_apps >= 1, "no SpinApp in the guides");

    // The command lines: every name declared; every deploy sets the required ones.
    let mut deploys = BTreeSet::new();
    for block in blocks.iter().filter(|b| b.lang == "sh") {
        let set = cli_variables(&block.text);
        for (name, _) in &set {
            assert!(
                declared.all.contains(name),
                "{}: `--variable {name}` is not in spin.toml",
                block.place()
            );
        }
        for command in ["spin cloud deploy", "spin aka deploy", "spin up"] {
            if block.text.contains(command) {
                deploys.insert(command);
                let names: BTreeSet<String> = set.iter().map(|(n, _)| n.clone()).collect();
                let missing: Vec<_> = declared.required.difference(&names).collect();
                assert!(
                    missing.is_empty(),
                    "{}: `{command}` misses required variables {missing:?}",
                    block.place()
                );
            }
        }
    }
    assert_eq!(deploys.len(), 3, "examples of {deploys:?} only");
}

#[test]
fn the_proxies_forward_the_verified_certificate_in_the_header_the_app_reads() {
    let blocks = all_blocks();
    let docs = yaml_documents(&blocks);

    // Envoy: the header set from the peer certificate, overwriting, and removed from client
    // input on the same level (where removal comes before addition).
    let mut header = None;
    for (block, doc) in docs.iter().filter(|(b, _)| b.guide == "mtls-proxy.md") {
        let mut route_configs = Vec::new();
        hashes_with(doc, "request_headers_to_add", &mut route_configs);
        for config in route_configs {
            for add in config["request_headers_to_add"].as_vec().unwrap() {
                if str_of(&add["header"]["value"]) != Some("%DOWNSTREAM_PEER_CERT%") {
                    continue;
                }
                let key = str_of(&add["header"]["key"]).unwrap().to_owned();
                assert_eq!(
                    str_of(&add["append_action"]),
                    Some("OVERWRITE_IF_EXISTS_OR_ADD"),
                    "{}",
                    block.place()
                );
                let removed = config["request_headers_to_remove"].as_vec();
                assert!(
                    removed.is_some_and(|r| r.iter().any(|h| str_of(h) == Some(&key))),
                    "{}: `{key}` is not removed from the client's input",
                    block.place()
                );
                header = Some(key);
            }
        }
        // GEN-1 on the listener.
        let mut tls = Vec::new();
        hashes_with(doc, "common_tls_context", &mut tls);
        for context in tls {
            assert_eq!(
                context["disable_stateless_session_resumption"].as_bool(),
                Some(true)
            );
            assert_eq!(
                context["disable_stateful_session_resumption"].as_bool(),
                Some(true)
            );
            let params = &context["common_tls_context"]["tls_params"];
            assert_eq!(
                str_of(&params["tls_minimum_protocol_version"]),
                Some("TLSv1_2")
            );
            let suites: Vec<_> = params["cipher_suites"]
                .as_vec()
                .unwrap()
                .iter()
                .filter_map(str_of)
                .collect();
            for suite in ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"] {
                assert!(suites.contains(&suite), "{}: {suite}", block.place());
            }
            assert!(
                !context["common_tls_context"]["validation_context"]["trusted_ca"].is_badvalue()
            );
        }
    }
    let header = header.expect("no Envoy config sets a header from %DOWNSTREAM_PEER_CERT%");

    // nginx: the same header, from the escaped certificate, with GEN-1's TLS settings.
    let nginx: Vec<_> = blocks.iter().filter(|b| b.lang == "nginx").collect();
    assert!(!nginx.is_empty(), "no nginx example");
    for block in nginx {
        for line in [
            format!("proxy_set_header {header} $ssl_client_escaped_cert;"),
            "ssl_protocols TLSv1.2 TLSv1.3;".to_owned(),
            "ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384;".to_owned(),
            "ssl_session_tickets off;".to_owned(),
            "ssl_session_cache off;".to_owned(),
        ] {
            assert!(block.text.contains(&line), "{}: no `{line}`", block.place());
        }
    }

    // The app is told to read that header wherever a guide sets it (or keeps mTLS off).
    let mut told = 0;
    for block in blocks.iter().filter(|b| b.lang == "sh") {
        for (name, value) in cli_variables(&block.text) {
            if name == "client_cert_header" {
                told += 1;
                assert_eq!(value, header, "{}", block.place());
            }
        }
    }
    for (block, doc) in &docs {
        if str_of(&doc["kind"]) == Some("ConfigMap")
            && let Some(value) = str_of(&doc["data"]["client_cert_header"])
        {
            told += 1;
            assert_eq!(value, header, "{}", block.place());
        }
    }
    assert!(told >= 2, "client_cert_header is set {told} times");
}
