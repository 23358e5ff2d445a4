//! The parts of Spin's manifest (`spin.toml`, version 2) that this bundle uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// A parsed `spin.toml`.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    spin_manifest_version: u32,
    /// `[application]`.
    pub application: Application,
    /// `[variables]`: the application variables.
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDecl>,
    /// `[[trigger.http]]`.
    pub trigger: Triggers,
    /// `[component.<id>]`.
    pub component: BTreeMap<String, ComponentDecl>,
    /// The folder the manifest is in: relative paths start here.
    #[serde(skip)]
    pub dir: PathBuf,
}

/// `[application]`.
#[derive(Debug, Deserialize)]
pub struct Application {
    /// `name`.
    pub name: String,
}

/// One application variable.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    /// `default`.
    pub default: Option<String>,
    /// `required`.
    #[serde(default)]
    pub required: bool,
    /// `secret`: the value is never printed.
    #[serde(default)]
    pub secret: bool,
    /// `description`.
    pub description: Option<String>,
}

/// `[trigger]`.
#[derive(Debug, Deserialize)]
pub struct Triggers {
    /// `[[trigger.http]]`.
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
}

/// One HTTP route.
#[derive(Debug, Deserialize)]
pub struct HttpTrigger {
    /// `route`: exact, or a prefix ending in `/...`.
    pub route: String,
    /// `component`: the id of a `[component.<id>]`.
    pub component: String,
}

/// `[component.<id>]`.
#[derive(Debug, Deserialize)]
pub struct ComponentDecl {
    /// `source`: the `.wasm` file, relative to the manifest.
    pub source: String,
    /// `key_value_stores`: the store labels it may open.
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    /// `[component.<id>.variables]`: templates over application variables.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// `allowed_outbound_hosts`: where it may send HTTP requests, each entry one origin
    /// pattern, possibly a `{{ variable }}` template ([`crate::outbound`]).
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// `[component.<id>.build]`.
    pub build: Option<BuildDecl>,
}

/// `[component.<id>.build]`.
#[derive(Debug, Deserialize)]
pub struct BuildDecl {
    /// `command`: one command or several, run by a shell.
    pub command: Commands,
    /// `workdir`, relative to the manifest.
    pub workdir: Option<String>,
}

/// One build command or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Commands {
    /// `command = "..."`
    One(String),
    /// `command = ["...", "..."]`
    Many(Vec<String>),
}

impl Commands {
    /// The commands in order.
    pub fn all(&self) -> Vec<&str> {
        match self {
            Self::One(c) => vec![c.as_str()],
            Self::Many(cs) => cs.iter().map(String::as_str).collect(),
        }
    }
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the manifest {}", path.display()))?;
        let mut manifest: Manifest = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid Spin manifest", path.display()))?;
        if manifest.spin_manifest_version != 2 {
            bail!("only spin_manifest_version = 2 is supported");
        }
        let absolute = std::path::absolute(path)
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        manifest.dir = absolute
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        for trigger in &manifest.trigger.http {
            if !manifest.component.contains_key(&trigger.component) {
                bail!(
                    "route {} names component {}, which the manifest does not define",
                    trigger.route,
                    trigger.component
                );
            }
            if !trigger.route.starts_with('/') {
                bail!("route {} must start with /", trigger.route);
            }
        }
        Ok(manifest)
    }

    /// The absolute path of a component's `.wasm`.
    pub fn source_path(&self, component: &ComponentDecl) -> PathBuf {
        self.dir.join(&component.source)
    }
}
