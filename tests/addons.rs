//! The addon system and the in-cluster dashboard, end to end with the real
//! binary and the real kubectl: `addons list|enable|disable`, `minik
//! dashboard --url` answering through the pod's ServiceAccount token under
//! its RBAC, enable/disable/enable, `--addons` at start and the addons
//! remembered across stop/start. One none-driver cluster for the whole file
//! (the none driver owns host-wide resources), steps in order.

mod common;

use std::time::{Duration, Instant};

use common::{assert_no_cluster_running, curl, host_snapshot, minik_process_rss_kib, text, Env};

const NS: &str = "minik-dashboard";

/// The `addons list` row of `name`: its ENABLED column.
fn listed(env: &Env, name: &str) -> String {
    let out = env.m(&["addons", "list"]);
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("ENABLED") && header.contains("DESCRIPTION"),
        "{out}"
    );
    let row = lines
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} row in:\n{out}"));
    row.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// The dashboard pod's name once it is Running and Ready.
fn wait_dashboard_running(env: &Env) -> String {
    env.wait_pods_ready(&["-n", NS], 1, Duration::from_secs(120))
        .remove(0)
}

fn http_status(url: &str) -> String {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            url,
        ])
        .output()
        .expect("curl");
    text(&out.stdout)
}

#[test]
fn addons_and_the_in_cluster_dashboard() {
    // Refuse before any profile exists, so nothing is torn down.
    assert_no_cluster_running();
    let env = Env::new("addons");
    let before = host_snapshot();

    // Unknown names are refused before anything starts.
    let bad = env.minik(&["start", "--driver=none", "--addons=nope"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("unknown addon \"nope\"")
            && text(&bad.stderr).contains("dashboard"),
        "{}",
        text(&bad.stderr)
    );
    assert!(!env.dir.join("minik/profiles/minik/agent.pid").exists());

    let t0 = Instant::now();
    env.start_none();
    eprintln!("minik start: {:?}", t0.elapsed());

    // --- list: disabled; unknown addon ---------------------------------------
    assert_eq!(listed(&env, "dashboard"), "disabled");
    let unknown = env.minik(&["addons", "enable", "nope"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("the addons are dashboard"),
        "{}",
        text(&unknown.stderr)
    );

    // --- enable, twice --------------------------------------------------------
    let t0 = Instant::now();
    let out = env.minik(&["addons", "enable", "dashboard"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("🌟  The 'dashboard' addon is enabled"),
        "{}",
        text(&out.stderr)
    );
    let pod = wait_dashboard_running(&env);
    eprintln!("addons enable dashboard → pod Ready: {:?}", t0.elapsed());
    let node_port = env.k(&[
        "get",
        "svc",
        "-n",
        NS,
        "minik-dashboard",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let out = env.minik(&["addons", "enable", "dashboard"]);
    assert!(out.status.success(), "second enable: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("addon is enabled"));
    assert_eq!(
        wait_dashboard_running(&env),
        pod,
        "re-enabling must not replace the pod"
    );
    assert_eq!(
        env.k(&[
            "get",
            "svc",
            "-n",
            NS,
            "minik-dashboard",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}"
        ]),
        node_port,
        "re-enabling must keep the NodePort"
    );
    let labelled = env.k(&[
        "get",
        "deploy,svc,sa",
        "-n",
        NS,
        "-l",
        "addonmanager.minik.io/addon=dashboard",
        "-o",
        "name",
    ]);
    assert_eq!(labelled.lines().count(), 3, "{labelled}");
    env.k(&["get", "clusterrole,clusterrolebinding", "minik-dashboard"]);
    assert_eq!(listed(&env, "dashboard"), "enabled");

    // --- minik dashboard --url: the app, through the pod's token ------------
    env.k(&["run", "addons-probe", "--image=minik/hello"]);
    let url = env.m(&["dashboard", "--url"]).trim().to_string();
    assert_eq!(url, format!("http://127.0.0.1:{node_port}/"));
    let page = curl(&url).expect("the dashboard page");
    assert!(page.contains("<title>minik dashboard</title>"), "{page}");
    let pods = curl(&format!("{url}k8s/api/v1/namespaces/default/pods"))
        .expect("pods through the dashboard");
    assert!(pods.contains("\"name\":\"addons-probe\""), "{pods}");
    // Outside its ClusterRole: the API server says who asked.
    let denied = curl(&format!(
        "{url}k8s/apis/rbac.authorization.k8s.io/v1/clusterroles"
    ))
    .unwrap_or_default();
    assert!(
        denied.contains("Forbidden")
            && denied.contains("system:serviceaccount:minik-dashboard:minik-dashboard"),
        "RBAC should refuse the dashboard's ServiceAccount: {denied}"
    );
    assert_eq!(http_status(&format!("{url}healthz")), "200");
    if let Some(kib) = minik_process_rss_kib("dashboard-server") {
        eprintln!("dashboard pod memory (RSS): {} MiB", kib / 1024);
    }

    // --- disable: the objects are gone --------------------------------------
    let out = env.minik(&["addons", "disable", "dashboard"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("The 'dashboard' addon is disabled"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !env.kubectl(&["get", "ns", NS]).status.success(),
        "namespace still there"
    );
    assert!(!env
        .kubectl(&["get", "clusterrole", "minik-dashboard"])
        .status
        .success());
    assert!(!env
        .kubectl(&["get", "clusterrolebinding", "minik-dashboard"])
        .status
        .success());
    let left = env.k(&["get", "deploy,rs,pods,svc", "-n", NS, "--no-headers"]);
    assert!(left.trim().is_empty(), "left behind: {left}");
    assert_eq!(listed(&env, "dashboard"), "disabled");
    assert!(
        env.minik(&["addons", "disable", "dashboard"])
            .status
            .success(),
        "disable is idempotent"
    );
    assert_eq!(
        http_status(&url),
        "000",
        "nothing answers on the old NodePort"
    );

    // --- enable / disable / enable -------------------------------------------
    env.m(&["addons", "enable", "dashboard"]);
    wait_dashboard_running(&env);
    env.m(&["addons", "disable", "dashboard"]);
    assert_eq!(listed(&env, "dashboard"), "disabled");
    // `minik dashboard` enables it when needed.
    let url = env.m(&["dashboard", "--url"]).trim().to_string();
    assert!(curl(&url).unwrap_or_default().contains("minik dashboard"));
    assert_eq!(listed(&env, "dashboard"), "enabled");

    // --- remembered across stop/start; --addons at start ---------------------
    env.m(&["stop"]);
    assert_eq!(
        listed(&env, "dashboard"),
        "enabled",
        "the recorded state while stopped"
    );
    env.m(&["start", "--driver=none"]);
    wait_dashboard_running(&env);
    assert_eq!(listed(&env, "dashboard"), "enabled");
    env.m(&["addons", "disable", "dashboard"]);
    env.m(&["stop"]);
    let out = env.minik(&["start", "--driver=none", "--addons=dashboard"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("The 'dashboard' addon is enabled"),
        "{}",
        text(&out.stderr)
    );
    wait_dashboard_running(&env);
    assert_eq!(listed(&env, "dashboard"), "enabled");
    let cfg = std::fs::read_to_string(env.dir.join("minik/profiles/minik/config.json")).unwrap();
    assert!(cfg.contains("\"dashboard\""), "{cfg}");

    // --- delete: the host is left as it was found ---------------------------
    env.delete_and_check_host(&before);
}
