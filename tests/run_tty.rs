//! `tty: true` end to end with the real kubectl in a pty (`script`):
//! `kubectl run -it --rm` gets a shell on the container's own terminal and
//! the pod is gone afterwards; `kubectl attach -it` types into a running tty
//! pod, whose terminal output is also its log.

mod common;

use common::{host_snapshot, text, wait_for, Env};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_of(env: &Env, cmd: &mut Command) {
    cmd.env("HOME", env.dir.join("home"))
        .env("MINIK_HOME", env.dir.join("minik"))
        .env("KUBECONFIG", env.kubeconfig())
        .env_remove("MINIK_PROFILE");
}

/// Runs `kubectl_cmd` on a terminal (`script`); once `ready` holds, types
/// `input`. Returns everything the terminal showed. Fails after 120 s.
fn on_terminal(env: &Env, kubectl_cmd: &str, ready: impl Fn() -> bool, input: &str) -> String {
    let mut cmd = Command::new("script");
    cmd.args(["-qec", kubectl_cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    env_of(env, &mut cmd);
    let mut child = cmd.spawn().expect("script (util-linux) must be installed");
    let mut stdin = child.stdin.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        assert!(Instant::now() < deadline, "{kubectl_cmd}: never ready");
        std::thread::sleep(Duration::from_millis(250));
    }
    // kubectl attaches right after the pod runs; input typed earlier waits in the pty.
    std::thread::sleep(Duration::from_secs(2));
    stdin.write_all(input.as_bytes()).unwrap();
    stdin.flush().unwrap();
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{kubectl_cmd} did not end: {}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
    eprintln!("--- {kubectl_cmd}:\n{shown}");
    shown
}

fn phase(env: &Env, pod: &str) -> String {
    env.try_k(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"])
        .unwrap_or_default()
}

#[test]
fn run_and_attach_with_a_tty() {
    let env = Env::new("run-tty");
    let before = host_snapshot();
    env.start_none();
    wait_for(
        "the default service account",
        Duration::from_secs(60),
        || env.try_k(&["get", "serviceaccount", "default"]),
    );

    // kubectl run -it --rm: a shell on the container's terminal, then the pod is deleted.
    let o = on_terminal(
        &env,
        "kubectl run -it --rm x --image=minik/busybox -- sh",
        || phase(&env, "x") == "Running",
        "tty; echo hello-$((6*7)); exit\n",
    );
    assert!(
        o.contains("/dev/pts/"),
        "not a terminal in the container: {o}"
    );
    assert!(o.contains("hello-42"), "{o}");
    wait_for(
        "pod x deleted by --rm",
        Duration::from_secs(60),
        || match env.try_k(&["get", "pod", "x", "--ignore-not-found", "-o", "name"]) {
            Ok(s) if s.trim().is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // kubectl attach -it to a running tty pod.
    env.apply(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: tp\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: sh\n    image: minik/busybox\n    command: [sh]\n    stdin: true\n    tty: true\n",
    );
    wait_for("pod tp running", Duration::from_secs(90), || {
        let p = phase(&env, "tp");
        (p == "Running").then_some(()).ok_or(p)
    });
    let o = on_terminal(
        &env,
        "kubectl attach -it tp",
        || true,
        "tty; echo attached-$((7*6)); exit 3\n",
    );
    assert!(o.contains("/dev/pts/"), "{o}");
    assert!(o.contains("attached-42"), "{o}");
    wait_for("pod tp failed with exit 3", Duration::from_secs(60), || {
        let code = env
            .try_k(&[
                "get",
                "pod",
                "tp",
                "-o",
                "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}",
            ])
            .unwrap_or_default();
        (code == "3").then_some(()).ok_or(code)
    });
    // The terminal's output is the container's log.
    let logs = env.k(&["logs", "tp"]);
    assert!(logs.contains("attached-42"), "{logs}");
    env.k(&["delete", "pod", "tp", "--wait=false"]);

    env.delete_and_check_host(&before);
}
