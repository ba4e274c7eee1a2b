//! The `gc` admin command: removes abandoned job containers and volumes.

use anyhow::bail;

use crate::docker::Docker;
use crate::gc::{self, GcPolicy};

/// Runs one collection and fails when any removal failed.
pub async fn run(policy: GcPolicy) -> anyhow::Result<()> {
    let docker = Docker::connect().await?;
    let report = gc::collect(&docker, policy, &mut |line| println!("{line}")).await?;
    if report.containers.is_empty() && report.volumes.is_empty() {
        println!("Nothing to remove");
    }
    if !report.errors.is_empty() {
        bail!("some removals failed: {}", report.errors.join("; "));
    }
    Ok(())
}
