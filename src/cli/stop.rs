//! `minik stop`: stop the agent (its containers get their grace period, the
//! store is flushed); the cluster's state stays for the next `start`.

use std::time::Duration;

use anyhow::Result;

use crate::driver::none;
use crate::profile::Profile;
use crate::ui;

pub async fn run(profile: &Profile) -> Result<()> {
    profile.load()?;
    let spin = ui::spinner("✋", format!("Stopping \"{}\" ...", profile.name));
    let was_running = none::stop_agent(profile, Duration::from_secs(90)).await?;
    spin.finish();
    if was_running {
        ui::step("🛑", "1 node stopped.");
    } else {
        ui::info(format!("\"{}\" is not running", profile.name));
    }
    Ok(())
}
