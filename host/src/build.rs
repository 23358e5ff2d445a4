//! `spin build`: runs each component's `[component.<id>.build] command` with a shell, in its
//! `workdir` (relative to the manifest).

use anyhow::{Context, bail};

use crate::manifest::Manifest;

/// Builds every component that has a build section, in manifest order.
pub fn build_all(manifest: &Manifest) -> anyhow::Result<()> {
    for (id, component) in &manifest.component {
        let Some(build) = &component.build else {
            continue;
        };
        let dir = match &build.workdir {
            Some(w) => manifest.dir.join(w),
            None => manifest.dir.clone(),
        };
        for command in build.command.all() {
            eprintln!("Building component {id} with `{command}`");
            let status = std::process::Command::new("sh")
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
