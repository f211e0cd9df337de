//! VM benchmark (issue 3): minikube's time-to-k8s phases with the real CLI,
//! under TCG, plus the floor measured in the same run. Prints, never asserts:
//!   cargo build --release && target/release/examples/bench_vm
//!
//! Phases, cold (ISO fetched from a local HTTP server into an empty cache)
//! and warm (ISO cached, a new cluster):
//!   1. `minik start` command time,
//!   2. until a minik/hello Deployment answers through its NodePort,
//!   3. until in-cluster DNS answers (a pod's nslookup succeeds).
//!
//! Also: ISO size, VM memory in use after start, and the bare floor: the
//! same kernel booting an init that powers off at once.
//! Published totals: minikube v1.36 50.8 s, kind 33.0 s, k3d 19.9 s.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn minik_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MINIK_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("exe");
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("minik"))
        .expect("minik beside examples/")
}

struct Run {
    home: PathBuf,
}

impl Run {
    fn cmd(&self, prog: &Path, args: &[&str]) -> std::process::Output {
        Command::new(prog)
            .args(args)
            .env("MINIK_HOME", self.home.join("minik"))
            .env("KUBECONFIG", self.home.join("kubeconfig"))
            .env("HOME", &self.home)
            .output()
            .expect("run")
    }
    fn minik(&self, args: &[&str]) -> std::process::Output {
        self.cmd(&minik_bin(), args)
    }
    fn kubectl(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.cmd(Path::new("kubectl"), args).stdout).into_owned()
    }
    fn until(&self, timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// (start, +hello via NodePort, +DNS) in seconds from the start command.
    fn time_to_k8s(&self, iso_url: &str, name: &str) -> Option<(f64, f64, f64)> {
        let t0 = Instant::now();
        let out = self.minik(&[
            "start",
            "--driver=qemu",
            "--accel=tcg",
            "--iso-url",
            iso_url,
        ]);
        let start = t0.elapsed().as_secs_f64();
        if !out.status.success() {
            eprintln!(
                "{name}: start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        self.kubectl(&[
            "create",
            "deployment",
            "hello",
            "--image=minik/hello",
            "--port=80",
        ]);
        self.kubectl(&[
            "expose",
            "deployment",
            "hello",
            "--type=NodePort",
            "--port=80",
        ]);
        let url = String::from_utf8_lossy(&self.minik(&["service", "hello", "--url"]).stdout)
            .trim()
            .to_string();
        let served = self.until(Duration::from_secs(180), || {
            Command::new("curl")
                .args(["-sf", "--max-time", "2", &url])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("Hello from minik"))
                .unwrap_or(false)
        });
        let hello = t0.elapsed().as_secs_f64();
        self.kubectl(&[
            "run",
            "dns",
            "--image=minik/busybox",
            "--restart=Never",
            "--",
            "nslookup",
            "hello.default.svc.cluster.local",
        ]);
        let dns_ok = self.until(Duration::from_secs(180), || {
            self.kubectl(&["get", "pod", "dns", "-o", "jsonpath={.status.phase}"]) == "Succeeded"
        });
        let dns = t0.elapsed().as_secs_f64();
        if !served || !dns_ok {
            eprintln!("{name}: hello served {served}, dns {dns_ok}");
        }
        Some((start, hello, dns))
    }

    fn vm_memory_mb(&self) -> f64 {
        let out = self.minik(&["ssh", "--", "cat", "/proc/meminfo"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let get = |k: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        (get("MemTotal:") - get("MemAvailable:")) / 1024.0
    }
}

/// The same kernel with an init that powers off at once: seconds from
/// spawning qemu to its exit.
fn floor(iso: &Path, work: &Path) -> Option<f64> {
    let tree = work.join("floor-tree");
    let _ = std::fs::create_dir_all(tree.join("bin"));
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).ok()?;
    std::fs::write(
        tree.join("init"),
        "#!/bin/busybox sh\n/bin/busybox poweroff -f\n",
    )
    .ok()?;
    Command::new("chmod")
        .args(["+x"])
        .arg(tree.join("init"))
        .status()
        .ok()?;
    let initrd = work.join("floor.cpio.gz");
    let sh = format!(
        "cd {} && find . | cpio -o -H newc 2>/dev/null | gzip > {}",
        tree.display(),
        initrd.display()
    );
    Command::new("sh").args(["-c", &sh]).status().ok()?;
    let kernel = work.join("vmlinuz");
    let ok = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", "/boot/vmlinuz"])
        .arg(&kernel)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    let t = Instant::now();
    let st = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "512",
            "-nographic",
            "-no-reboot",
            "-kernel",
        ])
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    st.success().then(|| t.elapsed().as_secs_f64())
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let iso = root.join(format!("iso/out/minik-{}.iso", env!("CARGO_PKG_VERSION")));
    if !iso.exists() {
        eprintln!("no ISO at {}: build it with iso/build.sh", iso.display());
        std::process::exit(1);
    }
    let work = std::env::temp_dir().join(format!("minik-bench-vm-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    println!("minik VM benchmark (TCG), {}", minik_bin().display());
    println!(
        "ISO size: {:.1} MiB (budget 80 MiB; minikube's ~300 MiB)",
        std::fs::metadata(&iso).unwrap().len() as f64 / 1048576.0
    );

    // A local HTTP server for the cold download.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut http = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(iso.parent().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 http.server");
    std::thread::sleep(Duration::from_millis(500));
    let http_url = format!(
        "http://127.0.0.1:{port}/{}",
        iso.file_name().unwrap().to_string_lossy()
    );

    let run = Run {
        home: work.join("home"),
    };
    let cold = run.time_to_k8s(&http_url, "cold");
    let mem = run.vm_memory_mb();
    let _ = run.minik(&["delete"]);
    // Warm: the ISO is in the cache now; a new cluster.
    let warm = run.time_to_k8s(&http_url, "warm");
    let _ = run.minik(&["delete"]);
    let _ = http.kill();
    let _ = http.wait();
    let floor = floor(&iso, &work);

    let show = |name: &str, r: Option<(f64, f64, f64)>| {
        match r {
        Some((s, h, d)) => println!(
            "{name}: start {s:.1} s, hello via NodePort {h:.1} s, DNS {d:.1} s (total; targets start ≤ 15 s, total ≤ 20 s; minikube 50.8 s → {:.1}x faster)",
            50.8 / d
        ),
        None => println!("{name}: failed"),
    }
    };
    show("cold (ISO over HTTP)", cold);
    show("warm (ISO cached)", warm);
    println!("VM memory in use after start: {mem:.0} MB");
    match floor {
        Some(f) => {
            println!("floor, same kernel + init that powers off: {f:.1} s");
            if let Some((s, _, d)) = warm {
                println!(
                    "warm start / floor: {:.1}x; total / floor: {:.1}x",
                    s / f,
                    d / f
                );
            }
        }
        None => println!("floor: could not be measured"),
    }
    let _ = std::fs::remove_dir_all(&work);
}
