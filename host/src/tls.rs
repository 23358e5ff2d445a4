//! HTTPS for the components' outbound HTTP, as Spin 4 makes it (spinframework/spin
//! `crates/factor-outbound-networking/src/tls.rs` and `src/runtime_config/spin.rs`, used by
//! `crates/factor-outbound-http/src/wasi.rs`):
//!
//! - By default a server's chain is verified against the platform's roots and Mozilla's
//!   (webpki) roots together, and its name against the request's host.
//! - A runtime configuration file's `[[client_tls]]` entries give named components, for named
//!   hosts (no port), their own roots (`ca_roots_file`, PEM, relative to the file's folder),
//!   with or without the platform's and webpki's (`ca_use_platform_roots`,
//!   `ca_use_webpki_roots`), and a client certificate (`client_cert_file` with
//!   `client_private_key_file`). The first entry naming a (component, host) pair wins.
//! - A handshake that fails (an unknown issuer, a name the certificate does not hold, an
//!   expired certificate, a TLS alert) reaches the guest as `ErrorCode::TlsProtocolError`
//!   (host/src/outbound.rs).
//!
//! Where this host differs: the platform's roots are read once into rustls' own verifier
//! (Spin verifies through `rustls-platform-verifier`, which on Linux reads the same files), and
//! ALPN offers `http/1.1` only (Spin also offers `h2`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, bail, ensure};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// One `[[client_tls]]` entry, as Spin's `ClientTlsToml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientTlsToml {
    component_ids: Vec<String>,
    hosts: Vec<String>,
    ca_use_platform_roots: Option<bool>,
    ca_use_webpki_roots: Option<bool>,
    ca_roots_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_private_key_file: Option<PathBuf>,
}

/// Host (authority without port) -> the TLS client configuration for it.
type HostConfigs = HashMap<String, Arc<ClientConfig>>;

/// The `[[client_tls]]` entries of a runtime configuration, by component.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    by_component: HashMap<String, Arc<HostConfigs>>,
}

/// One component's TLS client configurations.
#[derive(Debug, Clone, Default)]
pub struct ComponentTls(Option<Arc<HostConfigs>>);

impl ClientTls {
    /// The `[[client_tls]]` entries of the runtime configuration file at `path` (none: Spin's
    /// defaults for every component and host).
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the runtime configuration {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new(""));
        Self::parse(&text, dir).with_context(|| format!("in {}", path.display()))
    }

    /// [`ClientTls::read`] on the file's text; relative file names are from `dir`.
    pub fn parse(text: &str, dir: &Path) -> anyhow::Result<Self> {
        let doc: toml::Table = text.parse().context("not TOML")?;
        let Some(entries) = doc.get("client_tls") else {
            return Ok(Self::default());
        };
        let entries: Vec<ClientTlsToml> = entries
            .clone()
            .try_into()
            .context("failed to parse [[client_tls]] table")?;
        let mut by_component: HashMap<String, HostConfigs> = HashMap::new();
        for entry in entries {
            let (components, hosts, config) =
                load_entry(entry, dir).context("failed to parse [[client_tls]] table")?;
            for component in components {
                let configs = by_component.entry(component).or_default();
                for host in &hosts {
                    configs
                        .entry(host.clone())
                        .or_insert_with(|| config.clone());
                }
            }
        }
        Ok(Self {
            by_component: by_component
                .into_iter()
                .map(|(id, hosts)| (id, Arc::new(hosts)))
                .collect(),
        })
    }

    /// What the component `id` uses.
    pub fn for_component(&self, id: &str) -> ComponentTls {
        ComponentTls(self.by_component.get(id).cloned())
    }
}

impl ComponentTls {
    /// The configuration for `host` (the request URI's host, as Spin looks it up): its
    /// `[[client_tls]]` entry, or Spin's default roots. An error when the platform's roots
    /// cannot be read.
    pub fn config_for(&self, host: &str) -> Result<Arc<ClientConfig>, String> {
        if let Some(config) = self.0.as_ref().and_then(|hosts| hosts.get(host)) {
            return Ok(config.clone());
        }
        static DEFAULT: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                client_config(true, true, Vec::new(), None)
                    .map(Arc::new)
                    .map_err(|e| format!("{e:#}"))
            })
            .clone()
    }
}

/// An entry's components, hosts and configuration, with Spin's defaults for the roots.
fn load_entry(
    entry: ClientTlsToml,
    dir: &Path,
) -> anyhow::Result<(Vec<String>, Vec<String>, Arc<ClientConfig>)> {
    let ClientTlsToml {
        component_ids,
        hosts,
        ca_use_platform_roots,
        ca_use_webpki_roots,
        ca_roots_file,
        client_cert_file,
        client_private_key_file,
    } = entry;
    ensure!(
        !component_ids.is_empty(),
        "'component_ids' list may not be empty"
    );
    ensure!(!hosts.is_empty(), "'hosts' list may not be empty");
    for host in &hosts {
        validate_host(host)?;
    }
    let (platform, webpki) = match (ca_use_platform_roots, ca_use_webpki_roots) {
        (Some(platform), Some(webpki)) => (platform, webpki),
        (Some(platform), None) => (platform, false),
        (None, Some(webpki)) => (false, webpki),
        // Spin: the platform's roots unless the entry names its own.
        (None, None) => (ca_roots_file.is_none(), false),
    };
    let roots = ca_roots_file
        .map(|file| load_certs(&dir.join(file)))
        .transpose()?
        .unwrap_or_default();
    let client_cert = match (client_cert_file, client_private_key_file) {
        (Some(cert), Some(key)) => Some((load_certs(&dir.join(cert))?, load_key(&dir.join(key))?)),
        (None, None) => None,
        (Some(_), None) => bail!("client_cert_file specified without client_private_key_file"),
        (None, Some(_)) => bail!("client_private_key_file specified without client_cert_file"),
    };
    let config = client_config(platform, webpki, roots, client_cert)
        .context("error building TLS client config")?;
    Ok((component_ids, hosts, Arc::new(config)))
}

/// A host name as Spin takes it: an authority without a port.
fn validate_host(host: &str) -> anyhow::Result<()> {
    let authority: http::uri::Authority = host
        .parse()
        .with_context(|| format!("invalid TLS 'host' {host:?}"))?;
    ensure!(
        authority.port().is_none(),
        "invalid TLS 'host' {host:?}; ports not currently supported"
    );
    Ok(())
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("failed to load certificate(s) from '{}'", path.display()))?;
    ensure!(
        !certs.is_empty(),
        "failed to load certificate(s) from '{}': no certificate in it",
        path.display()
    );
    Ok(certs)
}

fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    // Never the key itself in the message: only where it was looked for.
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("failed to load key from '{}'", path.display()))
}

/// rustls' `ring` provider. rustls 0.23.48 deprecates it for lacking the post-quantum hybrid
/// key exchange (X25519MLKEM768) that its `aws-lc-rs` provider (Spin's) offers; the classical
/// ones remain (X25519, P-256, P-384). What this host fetches over TLS is public (JWK Sets),
/// so recorded traffic decrypted later reveals nothing; `ring` spares an aws-lc C build.
#[allow(deprecated)]
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client configuration (the `ring` provider, TLS 1.2 and 1.3) trusting the
/// platform's roots, webpki's roots and `roots`, as said; at least one must be set.
fn client_config(
    platform: bool,
    webpki: bool,
    roots: Vec<CertificateDer<'static>>,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> anyhow::Result<ClientConfig> {
    ensure!(
        platform || webpki || !roots.is_empty(),
        "at least one of 'ca_use_platform_roots', 'ca_use_webpki_roots', or 'ca_roots_file' must be set"
    );
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root).context("a root certificate is not valid")?;
    }
    if webpki {
        store.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    }
    if platform {
        // The files the platform verifier would read; unreadable or unparsable ones are
        // skipped, as there.
        let native = rustls_native_certs::load_native_certs();
        store.add_parsable_certificates(native.certs);
    }
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(store);
    let mut config = match client_cert {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .context("the client certificate and key do not match")?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ciba-host-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A self-signed certificate's PEM, to stand as a root.
    fn a_root_pem() -> String {
        rcgen::generate_simple_self_signed(vec!["test-root.example".to_string()])
            .unwrap()
            .cert
            .pem()
    }

    #[test]
    fn no_client_tls_table_is_spin_s_defaults_for_everyone() {
        let tls = ClientTls::parse(
            "[key_value_store.default]\ntype = \"spin\"\n",
            Path::new(""),
        )
        .unwrap();
        assert!(tls.by_component.is_empty());
        assert!(tls.for_component("token").0.is_none());
    }

    #[test]
    fn client_tls_entries_apply_to_their_components_and_hosts_first_match_winning() {
        let dir = temp("entries");
        std::fs::write(dir.join("ca.pem"), a_root_pem()).unwrap();
        let text = r#"
            [[client_tls]]
            component_ids = ["token", "bc-authorize"]
            hosts = ["keystore.example", "localhost"]
            ca_roots_file = "ca.pem"

            [[client_tls]]
            component_ids = ["token"]
            hosts = ["localhost", "other.example"]
            ca_use_webpki_roots = true
        "#;
        let tls = ClientTls::parse(text, &dir).unwrap();
        let token = tls.for_component("token");
        let bc = tls.for_component("bc-authorize");
        let first = token.config_for("localhost").unwrap();
        assert!(Arc::ptr_eq(
            &first,
            &bc.config_for("keystore.example").unwrap()
        ));
        assert!(!Arc::ptr_eq(
            &first,
            &token.config_for("other.example").unwrap()
        ));
        // Another component, or a host no entry names: the default.
        let default = tls.for_component("device").config_for("localhost").unwrap();
        assert!(!Arc::ptr_eq(&first, &default));
        assert!(Arc::ptr_eq(
            &default,
            &token.config_for("elsewhere.example").unwrap()
        ));
        assert_eq!(first.alpn_protocols, vec![b"http/1.1".to_vec()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_client_tls_entries_are_refused_as_spin_refuses_them() {
        let dir = temp("malformed");
        std::fs::write(dir.join("ca.pem"), a_root_pem()).unwrap();
        std::fs::write(dir.join("empty.pem"), "not a certificate\n").unwrap();
        for text in [
            "[[client_tls]]\ncomponent_ids = []\nhosts = [\"a.example\"]\n",
            "[[client_tls]]\ncomponent_ids = [\"token\"]\nhosts = []\n",
            "[[client_tls]]\ncomponent_ids = [\"token\"]\nhosts = [\"a.example:443\"]\n",
            "[[client_tls]]\ncomponent_ids = [\"token\"]\nhosts = [\"a.example\"]\nca_roots_file = \"missing.pem\"\n",
            "[[client_tls]]\ncomponent_ids = [\"token\"]\nhosts = [\"a.example\"]\nca_roots_file = \"empty.pem\"\n",
            "[[client_tls]]\ncomponent_ids = [\"token\"]\nhosts = [\"a.example\"]\nca_use_platform_roots = false\n",
            "[[client_tls]]\ncomponent_ids = [\"token\"]\nhosts = [\"a.example\"]\nclient_cert_file = \"ca.pem\"\n",
            "[[client_tls]]\ncomponent_ids = [\"token\"]\nhosts = [\"a.example\"]\nunknown = 1\n",
            "[client_tls]\ncomponent_ids = [\"token\"]\nhosts = [\"a.example\"]\n",
        ] {
            assert!(ClientTls::parse(text, &dir).is_err(), "{text}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
