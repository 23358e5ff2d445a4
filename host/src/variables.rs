//! Variable resolution as Spin does it: `--variable` values first, then
//! `SPIN_VARIABLE_<NAME>` from the environment, then the manifest's `default`; component
//! variables are templates (`"{{ name }}"`) over application variables, and a component
//! sees only its own.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, bail};

use crate::manifest::Manifest;

/// Values given on the command line: `name=value`, `name=@file`, or `@file.json`. Some are
/// secrets (`signing_keys`, `device_api_token`): `Debug` prints the names only.
#[derive(Default, Clone)]
pub struct Overrides(BTreeMap<String, String>);

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Overrides")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Overrides {
    /// Adds one `--variable` argument.
    pub fn add(&mut self, arg: &str) -> anyhow::Result<()> {
        if let Some(file) = arg.strip_prefix('@') {
            if !file.ends_with(".json") {
                bail!(
                    "--variable @{file}: only a .json file of names and values can be given this way"
                );
            }
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("--variable @{file}: cannot read the file"))?;
            let map: BTreeMap<String, String> = serde_json::from_str(&text)
                .with_context(|| format!("--variable @{file}: not a JSON object of strings"))?;
            self.0.extend(map);
            return Ok(());
        }
        let Some((name, value)) = arg.split_once('=') else {
            bail!("--variable takes name=value or name=@file");
        };
        let value = match value.strip_prefix('@') {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("--variable {name}=@{file}: cannot read the file"))?,
            None => value.to_string(),
        };
        self.0.insert(name.to_string(), value);
        Ok(())
    }

    /// Sets a value directly.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(name.to_string(), value.into());
    }

    /// Sets a value unless one was given.
    pub fn set_default(&mut self, name: &str, value: impl Into<String>) {
        self.0
            .entry(name.to_string())
            .or_insert_with(|| value.into());
    }
}

/// Spin's rule for variable names: lower-case letters, digits and `_`, starting with a
/// letter, with no `__` and no trailing `_`.
pub fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_')
}

/// The resolved variables of every component: component id -> name -> value.
pub type ComponentVariables = HashMap<String, HashMap<String, String>>;

/// Resolves every application variable, then every component's templates. `env` is the
/// process environment (a parameter so that tests can give their own).
pub fn resolve(
    manifest: &Manifest,
    overrides: &Overrides,
    env: &HashMap<String, String>,
) -> anyhow::Result<ComponentVariables> {
    let app = application_values(manifest, overrides, env)?;
    let mut out = ComponentVariables::new();
    for (id, component) in &manifest.component {
        let mut vars = HashMap::new();
        for (name, template) in &component.variables {
            if !valid_name(name) {
                bail!("component {id}: variable name {name:?} is not valid in Spin");
            }
            let value = expand(template, &app)
                .with_context(|| format!("component {id}, variable {name}"))?;
            vars.insert(name.clone(), value);
        }
        out.insert(id.clone(), vars);
    }
    Ok(out)
}

/// Every component's `allowed_outbound_hosts`, each entry's templates expanded from the
/// application variables and the result parsed as one entry, as Spin does
/// (`outbound-networking-config`, `PartialAllowedHostConfig::resolve`).
pub fn resolve_allowed_hosts(
    manifest: &Manifest,
    overrides: &Overrides,
    env: &HashMap<String, String>,
) -> anyhow::Result<HashMap<String, crate::outbound::AllowedHosts>> {
    let app = application_values(manifest, overrides, env)?;
    let mut out = HashMap::new();
    for (id, component) in &manifest.component {
        let entries = component
            .allowed_outbound_hosts
            .iter()
            .map(|entry| expand(entry, &app))
            .collect::<anyhow::Result<Vec<_>>>()
            .and_then(|entries| crate::outbound::AllowedHosts::parse(&entries))
            .with_context(|| format!("component {id}"))?;
        out.insert(id.clone(), entries);
    }
    Ok(out)
}

/// The application variables' values: overrides, then `SPIN_VARIABLE_*`, then defaults.
fn application_values<'m>(
    manifest: &'m Manifest,
    overrides: &Overrides,
    env: &HashMap<String, String>,
) -> anyhow::Result<HashMap<&'m str, String>> {
    for name in overrides.0.keys() {
        if !manifest.variables.contains_key(name) {
            bail!("--variable {name}: the manifest has no application variable of that name");
        }
    }
    let mut app: HashMap<&str, String> = HashMap::new();
    for (name, decl) in &manifest.variables {
        if !valid_name(name) {
            bail!("variable name {name:?} is not valid in Spin");
        }
        let env_name = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
        let value = overrides
            .0
            .get(name)
            .cloned()
            .or_else(|| env.get(&env_name).cloned())
            .or_else(|| decl.default.clone());
        match value {
            Some(v) => {
                app.insert(name, v);
            }
            None => bail!(
                "no provider resolved required variable {name}: give it with --variable {name}=... or {env_name}"
            ),
        }
    }
    Ok(app)
}

/// Expands `{{ name }}` references to application variables.
fn expand(template: &str, app: &HashMap<&str, String>) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("unterminated {{{{ in template");
        };
        let name = after[..end].trim();
        let value = app
            .get(name)
            .with_context(|| format!("unknown variable {name:?} in template"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Manifest {
        let mut m: Manifest = toml::from_str(text).unwrap();
        m.dir = ".".into();
        m
    }

    const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
issuer = { default = "https://a.example" }
ttl = { default = "900" }
secret_key = { required = true, secret = true }
[[trigger.http]]
route = "/x"
component = "x"
[component.x]
source = "x.wasm"
[component.x.variables]
issuer = "{{ issuer }}"
url = "{{issuer}}/jwks"
key = "{{ secret_key }}"
"#;

    #[test]
    fn overrides_beat_environment_which_beats_defaults() {
        let m = manifest(APP);
        let mut o = Overrides::default();
        o.add("secret_key=s3").unwrap();
        let env = HashMap::from([
            (
                "SPIN_VARIABLE_ISSUER".to_string(),
                "https://env.example".to_string(),
            ),
            (
                "SPIN_VARIABLE_SECRET_KEY".to_string(),
                "from-env".to_string(),
            ),
        ]);
        let vars = resolve(&m, &o, &env).unwrap();
        let x = &vars["x"];
        assert_eq!(x["issuer"], "https://env.example");
        assert_eq!(x["url"], "https://env.example/jwks");
        assert_eq!(x["key"], "s3");
        assert!(
            !x.contains_key("ttl"),
            "a component sees only its own variables"
        );
    }

    #[test]
    fn a_required_variable_without_value_stops_startup_and_is_named() {
        let err = resolve(&manifest(APP), &Overrides::default(), &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("secret_key"), "{err}");
    }

    #[test]
    fn variable_from_file_and_unknown_names() {
        let dir = std::env::temp_dir().join(format!("vars-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("v.txt");
        std::fs::write(&file, "from-file").unwrap();
        let mut o = Overrides::default();
        o.add(&format!("secret_key=@{}", file.display())).unwrap();
        let vars = resolve(&manifest(APP), &o, &HashMap::new()).unwrap();
        assert_eq!(vars["x"]["key"], "from-file");
        let mut o = Overrides::default();
        o.add("nope=1").unwrap();
        assert!(resolve(&manifest(APP), &o, &HashMap::new()).is_err());
        assert!(Overrides::default().add("novalue").is_err());
    }

    #[test]
    fn spin_variable_names() {
        assert!(valid_name("client_cert_header"));
        assert!(!valid_name("Issuer"));
        assert!(!valid_name("a__b"));
        assert!(!valid_name("a_"));
        assert!(!valid_name("1a"));
    }

    #[test]
    fn debug_of_overrides_names_the_variables_without_their_values() {
        let mut o = Overrides::default();
        o.set(
            "device_api_token",
            "a-device-token-of-at-least-32-characters",
        );
        let printed = format!("{o:?}");
        assert_eq!(printed, r#"Overrides(["device_api_token"])"#);
    }
}
