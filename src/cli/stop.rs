//! `minik stop`: stop the cluster (containers get their grace period, the
//! store is flushed, the VM powers off); its state stays for the next `start`.

use anyhow::Result;

use crate::driver;
use crate::profile::Profile;
use crate::ui;

pub async fn run(profile: &Profile) -> Result<()> {
    let cfg = profile.load()?;
    let spin = ui::spinner("✋", format!("Stopping \"{}\" ...", profile.name));
    let was_running = driver::stop(profile, &cfg).await?;
    spin.finish();
    if was_running {
        ui::step("🛑", "1 node stopped.");
    } else {
        ui::info(format!("\"{}\" is not running", profile.name));
    }
    Ok(())
}
