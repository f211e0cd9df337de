//! `minik status`: minikube's four lines. The exit code says what is down:
//! 1 host, 2 kubelet, 4 apiserver (added together), 0 when all run.

use anyhow::Result;

use crate::api::ApiClient;
use crate::certs::CertPaths;
use crate::driver::{self, HostState};
use crate::kubeconfig;
use crate::profile::Profile;

pub async fn run(profile: &Profile) -> Result<i32> {
    let cfg = profile.load()?;
    let state = driver::host_state(profile, &cfg).await?;
    let host = state == HostState::Running;
    let server = crate::driver::api_server_url(&cfg);
    let (mut apiserver, mut kubelet) = (false, false);
    if host {
        let client = ApiClient::new(&CertPaths::in_dir(&profile.certs_dir()), &server)?;
        apiserver = client.ready().await;
        kubelet = apiserver && client.node_ready(&cfg.name).await;
    }
    let kc = kubeconfig::is_configured(&kubeconfig::path()?, &profile.name, &server);
    let word = |b: bool| if b { "Running" } else { "Stopped" };
    println!("{}", profile.name);
    println!("type: Control Plane");
    match &state {
        HostState::Died(tail) => {
            println!("host: Error (the VM died; `minik start` recovers it)");
            eprintln!("last console lines:\n{tail}");
        }
        _ => println!("host: {}", word(host)),
    }
    println!("kubelet: {}", word(kubelet));
    println!("apiserver: {}", word(apiserver));
    println!(
        "kubeconfig: {}",
        if kc { "Configured" } else { "Misconfigured" }
    );
    Ok(i32::from(!host) | (i32::from(!kubelet) << 1) | (i32::from(!apiserver) << 2))
}
