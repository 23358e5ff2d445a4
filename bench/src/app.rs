//! The command line: options, the run, the outputs.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::{cold, flow, keystore, register, report};

const HELP: &str = "ciba-bench: end-to-end load benchmark of the CIBA bundle

  ciba-bench [--base URL] [--requests N] [--concurrency C] [--json FILE] [--svg FILE]
             [--dev-dir DIR] [--client-id ID] [--client-key JWK_FILE]
             [--subject SUB] [--cpf CPF] [--device-token-file FILE]
             [--cert-header NAME --cert-file PEM [--device-cert-file PEM]]
             [--manifest spin.toml] [--host-bin PATH | --no-cold-start]
             [--keystore ADDR] [--register]
  ciba-bench --keyed-clients ADDR [--dev-dir DIR]

  --base URL            the running server (http:// only), default http://127.0.0.1:3000
  --requests N          requests per scenario (default 2000); --concurrency C connections (default 8)
  --dev-dir DIR         where `ciba-host dev` wrote its material (default .dev); the defaults below
                        come from it: --client-id demo-client, --client-key DIR/demo_client_private_key.json,
                        --subject demo-user-1, --cpf 52998224725, --device-token-file DIR/device_api_token.txt
  --cert-header NAME --cert-file PEM
                        send this client certificate (URL-encoded PEM) in header NAME, as the
                        TLS-terminating proxy of an mTLS deployment would
  --device-cert-file PEM
                        with mTLS on, the bank backend's certificate for /device/... (its
                        x5t#S256 listed in device_api_certificates), in the same header
  --manifest FILE       spin.toml whose `source` paths give the .wasm sizes (default spin.toml)
  --host-bin PATH       the ciba-host binary started fresh (on a free loopback port, store in memory,
                        --dev-dir registrations) to time each component's first request
                        (default target/release/ciba-host, skipped when absent); --no-cold-start skips it
  --keystore ADDR       serve the public half of --client-key at http://ADDR/bench/application.jwks
                        during the run and report how often it was fetched: for a client whose
                        keys are by jwks_uri (issue 17), such as demo-client-keyed below
  --register            act as a client registered for the run through POST /register (DCR), with
                        a new software of `ciba-host dev`'s development Directory (--host-bin ssa:
                        its SSA, client key and certificate), instead of --client-id; needs
                        --cert-header (registration needs mTLS); the registration is deleted after
  --keyed-clients ADDR  print the `clients` value of `ciba-host dev` plus demo-client-keyed, the
                        demo client with its keys at that keystore, and exit; give it to
                        `ciba-host dev --variable clients=@FILE --variable jwks_allowed_hosts=http://ADDR`";

struct Args {
    registrations: flow::Registrations,
    requests: usize,
    concurrency: usize,
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
    manifest: PathBuf,
    host_bin: PathBuf,
    cold_start: bool,
    keystore: Option<String>,
    keyed_clients: Option<String>,
    register: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Option<Args>> {
    let mut out = Args {
        registrations: flow::Registrations::default(),
        requests: 2000,
        concurrency: 8,
        json: None,
        svg: None,
        manifest: "spin.toml".into(),
        host_bin: "target/release/ciba-host".into(),
        cold_start: true,
        keystore: None,
        keyed_clients: None,
        register: false,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        if out.registrations.take(&arg, &mut value)? {
            continue;
        }
        match arg.as_str() {
            "--requests" => out.requests = value()?.parse().context("--requests")?,
            "--concurrency" => out.concurrency = value()?.parse().context("--concurrency")?,
            "--json" => out.json = Some(value()?.into()),
            "--svg" => out.svg = Some(value()?.into()),
            "--manifest" => out.manifest = value()?.into(),
            "--host-bin" => out.host_bin = value()?.into(),
            "--no-cold-start" => out.cold_start = false,
            "--keystore" => out.keystore = Some(value()?),
            "--keyed-clients" => out.keyed_clients = Some(value()?),
            "--register" => out.register = true,
            "--help" | "-h" => return Ok(None),
            other => bail!("unknown argument {other}; see --help"),
        }
    }
    if out.requests == 0 || out.concurrency == 0 {
        bail!("--requests and --concurrency must be at least 1");
    }
    if out.register {
        // The registration brings the client's certificate (the new software's).
        anyhow::ensure!(
            out.registrations.cert_header.is_some(),
            "--register needs --cert-header: registration needs mTLS (REG-3)"
        );
        anyhow::ensure!(
            out.registrations.cert_file.is_none() && out.keyed_clients.is_none(),
            "--register brings its own client and certificate: leave out --cert-file"
        );
    } else {
        out.registrations.check()?;
    }
    Ok(Some(out))
}

/// Parses the arguments, runs, exits 1 with the error.
pub fn main() {
    let result = parse_args(std::env::args().skip(1)).and_then(|args| match args {
        None => {
            println!("{HELP}");
            Ok(())
        }
        Some(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("no Tokio runtime")?
            .block_on(run(args)),
    });
    if let Err(e) = result {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(mut args: Args) -> anyhow::Result<()> {
    if let Some(addr) = &args.keyed_clients {
        println!(
            "{}",
            keystore::keyed_clients(&args.registrations.dev_dir, addr)?
        );
        return Ok(());
    }
    let registered = if args.register {
        Some(register::register(&mut args.registrations, &args.host_bin, &args.manifest).await?)
    } else {
        None
    };
    let bench = args.registrations.bench(args.concurrency).await?;
    let served = match &args.keystore {
        Some(addr) => {
            let public = keystore::public_jwk(&bench.client.key, &bench.client.kid);
            Some(keystore::Keystore::start(addr, public).await?)
        }
        None => None,
    };
    let date = report::rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    );
    eprintln!(
        "{} requests per scenario, concurrency {}, issuer {}",
        args.requests, args.concurrency, bench.issuer
    );
    let scenarios = flow::scenarios(&bench, args.requests).await?;
    if let Some(registered) = &registered {
        registered.delete(&args.registrations.base).await?;
    }
    if let Some(served) = &served {
        eprintln!(
            "keystore: the key set was fetched {} times during the scenarios",
            served.hits()
        );
    }

    let (components, components_note) = match cold::sizes(&args.manifest) {
        Err(e) => (Vec::new(), format!("no sizes: {e:#}")),
        Ok(mut table) if args.cold_start && args.host_bin.exists() => {
            eprintln!("first requests on a fresh {}", args.host_bin.display());
            let dev_dir = &args.registrations.dev_dir;
            let note = cold::measure(&args.host_bin, &args.manifest, dev_dir, &mut table)
                .await
                .unwrap_or_else(|e| format!("first requests not measured: {e:#}"));
            (table, note)
        }
        Ok(table) => (
            table,
            format!(
                "sizes only (first requests not measured: {})",
                if args.cold_start {
                    format!("no {}", args.host_bin.display())
                } else {
                    "--no-cold-start".to_string()
                }
            ),
        ),
    };

    let report = report::Report {
        base: args.registrations.base.clone(),
        requests: args.requests,
        concurrency: args.concurrency,
        date,
        scenarios,
        components,
        components_note,
    };
    println!("{}", report::table(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report::json(&report))?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, report::svg(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Option<Args>> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn defaults_drive_the_dev_setup_and_options_override_them() {
        let a = parse(&[]).unwrap().unwrap();
        assert_eq!(
            (
                a.registrations.base.as_str(),
                a.requests,
                a.concurrency,
                a.registrations.client_id.as_str()
            ),
            ("http://127.0.0.1:3000", 2000, 8, "demo-client")
        );
        let a = parse(&["--base", "http://h:1", "--requests", "5", "--no-cold-start"])
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.registrations.base.as_str(), a.requests, a.cold_start),
            ("http://h:1", 5, false)
        );
        assert!(parse(&["--cert-header", "x-cert"]).is_err());
        assert!(parse(&["--requests", "0"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--help"]).unwrap().is_none());
        // --register: the certificate header, without a certificate of one's own.
        assert!(parse(&["--register"]).is_err());
        assert!(
            parse(&["--register", "--cert-header", "x-cert"])
                .unwrap()
                .unwrap()
                .register
        );
        assert!(parse(&["--register", "--cert-header", "x", "--cert-file", "c.pem"]).is_err());
    }
}
