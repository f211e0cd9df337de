//! The dashboard addon against a whole cluster, in real headless Chromium:
//! `minik start --driver=none`, a `hello` Deployment of real runc pods made
//! with kubectl, `minik addons enable dashboard`, then the in-cluster
//! dashboard at its NodePort: the Deployment is listed, a pod's log line is
//! shown, scaling to 3 through the UI makes three pods appear without a
//! reload, a pod deleted through the UI is replaced by a new one. A
//! screenshot of each main page lands in `target/dashboard-screenshots/`
//! (prefix `cluster-`).

#[path = "../crates/dashboard/tests/common/chrome.rs"]
mod chrome;
mod common;

use chrome::Chrome;
use common::{text, wait_for, Env};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// Names of the Running pods of `app=hello`.
fn running_hello_pods(env: &Env) -> Vec<String> {
    let out = env.k(&[
        "get",
        "pods",
        "-l",
        "app=hello",
        "--field-selector=status.phase=Running",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}",
    ]);
    out.lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Scrolls every scrolled element back to its left edge (a click scrolls
/// its target into the middle), so screenshots show whole tables.
async fn shot(ch: &Chrome, name: &str) {
    ch.eval("document.querySelectorAll('*').forEach(e => { if (e.scrollLeft) e.scrollLeft = 0; })")
        .await;
    ch.screenshot(name).await;
}

fn row(id: &str) -> String {
    format!("!!document.querySelector('[data-testid=\"{id}\"]')")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_drives_a_real_cluster_in_chromium() {
    let env = Env::new("dash-cluster");
    env.start_none();
    env.k(&["create", "deployment", "hello", "--image=minik/hello"]);
    env.k(&[
        "wait",
        "--for=condition=Available",
        "deployment/hello",
        "--timeout=60s",
    ]);
    let first = running_hello_pods(&env);
    assert_eq!(first.len(), 1, "{first:?}");
    let pod = first[0].clone();

    let out = env.minik(&["addons", "enable", "dashboard"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // `minik dashboard --url` waits until the pod is healthy, prints the
    // NodePort URL and returns (the none driver needs no forward).
    let url = env
        .m(&["dashboard", "--url"])
        .trim()
        .trim_end_matches('/')
        .to_string();
    assert!(url.starts_with("http://"), "{url}");

    let ch = Chrome::launch(1280, 800).await;
    ch.navigate(&format!("{url}/#/deployments")).await;
    ch.wait_for(&row("deployment-row-default-hello"), T).await;
    ch.wait_for(
        "document.querySelector('[data-testid=\"deployment-ready-default-hello\"]').innerText.includes('1/1')",
        T,
    )
    .await;
    shot(&ch, "cluster-deployments").await;

    // A pod's log: the line minik/hello prints when it starts ("serving /www on port 80").
    ch.navigate(&format!("{url}/#/pods")).await;
    ch.wait_for(&row(&format!("pod-row-default-{pod}")), T)
        .await;
    shot(&ch, "cluster-pods").await;
    ch.click(&format!("pod-row-default-{pod}")).await;
    ch.wait_testid("pod-detail").await;
    ch.wait_for(
        "document.querySelector('[data-testid=\"log-view\"]').innerText.includes('serving /www on port 80')",
        T,
    )
    .await;
    shot(&ch, "cluster-pod-logs").await;

    // Scale to 3 through the UI: three pods on the pod list, no reload.
    ch.navigate(&format!("{url}/#/deployments")).await;
    ch.eval("window.__noReload = true").await;
    ch.type_into("scale-input-default-hello", "3").await;
    ch.click("scale-btn-default-hello").await;
    ch.wait_for(
        "document.querySelector('[data-testid=\"deployment-ready-default-hello\"]').innerText.includes('3/3')",
        T,
    )
    .await;
    let pods = wait_for("three Running hello pods", T, || {
        let p = running_hello_pods(&env);
        if p.len() == 3 {
            Ok(p)
        } else {
            Err(format!("{p:?}"))
        }
    });
    ch.click("nav-pods").await;
    for p in &pods {
        ch.wait_for(&row(&format!("pod-row-default-{p}")), T).await;
    }
    assert_eq!(
        ch.eval("window.__noReload === true").await,
        serde_json::Value::Bool(true),
        "the page reloaded"
    );
    shot(&ch, "cluster-pods-scaled").await;

    // Delete one through the UI (with its confirmation): it goes, and the
    // ReplicaSet's replacement shows up on the same page.
    let victim = &pods[0];
    ch.click(&format!("delete-pod-default-{victim}")).await;
    ch.wait_testid("confirm-dialog").await;
    ch.click("confirm-ok").await;
    let after = wait_for("a replacement pod Running", T, || {
        let p = running_hello_pods(&env);
        if p.len() == 3 && !p.contains(victim) {
            Ok(p)
        } else {
            Err(format!("{p:?}"))
        }
    });
    ch.wait_for(
        &format!("!document.querySelector('[data-testid=\"pod-row-default-{victim}\"]')"),
        T,
    )
    .await;
    for p in &after {
        ch.wait_for(&row(&format!("pod-row-default-{p}")), T).await;
    }
    assert_eq!(
        ch.eval("window.__noReload === true").await,
        serde_json::Value::Bool(true)
    );
    shot(&ch, "cluster-pod-replaced").await;

    // The other main pages render against the real cluster.
    for (page, id) in [
        ("", "node-card-minik"),
        ("services", "service-row-default-kubernetes"),
        ("nodes", "node-row-minik"),
        ("events", "nav-events"),
    ] {
        ch.navigate(&format!("{url}/#/{page}")).await;
        ch.wait_for(&row(id), T).await;
        let name = if page.is_empty() { "overview" } else { page };
        shot(&ch, &format!("cluster-{name}")).await;
    }
    ch.close().await;
    env.m(&["delete"]);
}
