//! `spin build`: runs each component's `[component.<id>.build] command` with a shell, in its
//! `workdir` (relative to the manifest).
//!
//! A fresh Rust install has no `wasm32-wasip2` standard library, and rustup adds a missing
//! target only on `rustup toolchain install`, never when `cargo` runs. So before a command
//! that builds for a `--target`, the target is checked and, when missing, added through
//! rustup, saying so: the README's two commands are the whole set-up.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::manifest::Manifest;

/// Builds every component that has a build section, in manifest order.
pub fn build_all(manifest: &Manifest) -> anyhow::Result<()> {
    let mut checked: Vec<String> = Vec::new();
    for (id, component) in &manifest.component {
        let Some(build) = &component.build else {
            continue;
        };
        let dir = match &build.workdir {
            Some(w) => manifest.dir.join(w),
            None => manifest.dir.clone(),
        };
        for command in build.command.all() {
            if let Some(target) = target_of(command)
                && !checked.contains(&target)
            {
                ensure_target(&target)?;
                checked.push(target);
            }
            eprintln!("Building component {id} with `{command}`");
            let status = Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(&dir)
                .status()
                .with_context(|| format!("component {id}: cannot run its build command"))?;
            if !status.success() {
                bail!("component {id}: build command failed ({status})");
            }
        }
    }
    Ok(())
}

/// The `--target` a `cargo build` command names, if any.
fn target_of(command: &str) -> Option<String> {
    let mut words = command.split_whitespace();
    if !command.contains("cargo") {
        return None;
    }
    while let Some(word) = words.next() {
        if word == "--target" {
            return words.next().map(str::to_string);
        }
        if let Some(t) = word.strip_prefix("--target=") {
            return Some(t.to_string());
        }
    }
    None
}

/// Whether the active toolchain has the standard library of `target`.
pub fn target_installed(target: &str) -> anyhow::Result<bool> {
    let output = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .context("cannot run rustc: is Rust installed?")?;
    if !output.status.success() {
        // rustc does not know the target at all.
        return Ok(false);
    }
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let has_std = std::fs::read_dir(Path::new(&dir))
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("libstd-") && name.ends_with(".rlib")
            })
        })
        .unwrap_or(false);
    Ok(has_std)
}

/// Adds `target` through rustup when the toolchain lacks it.
pub fn ensure_target(target: &str) -> anyhow::Result<()> {
    if target_installed(target)? {
        return Ok(());
    }
    let rustup = Command::new("rustup").arg("--version").output();
    if !rustup.is_ok_and(|o| o.status.success()) {
        bail!(
            "the Rust standard library for {target} is not installed, and rustup is not \
             there to add it: install it with the tool that installed Rust (for rustup: \
             `rustup target add {target}`; for a distribution's Rust, its package of the \
             {target} standard library), then run this again"
        );
    }
    eprintln!(
        "The components are built for {target}, which this Rust toolchain does not have yet: \
         adding it with `rustup target add {target}` (once)."
    );
    let status = Command::new("rustup")
        .args(["target", "add", target])
        .status()
        .context("cannot run rustup")?;
    if !status.success() {
        bail!("`rustup target add {target}` failed ({status}): run it by hand, then try again");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_of_a_build_command_is_read() {
        assert_eq!(
            target_of("cargo build --target wasm32-wasip2 --profile component -p token"),
            Some("wasm32-wasip2".into())
        );
        assert_eq!(
            target_of("cargo build --target=wasm32-wasip2"),
            Some("wasm32-wasip2".into())
        );
        assert_eq!(target_of("make all"), None);
    }

    #[test]
    fn an_installed_target_is_seen_and_a_missing_one_is_not() {
        let host = std::env::consts::ARCH.to_string() + "-unknown-linux-gnu";
        if cfg!(target_os = "linux") && cfg!(target_env = "gnu") {
            assert!(target_installed(&host).unwrap());
        }
        assert!(!target_installed("no-such-target-anywhere").unwrap());
    }
}
