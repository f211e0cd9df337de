//! Boot benchmark of the minik ISO under TCG, all in one run:
//!
//! - ISO size;
//! - boot to `/init` (qemu spawned -> "minik-init: started" on the console)
//!   through SeaBIOS + isolinux (`-cdrom`) and through direct kernel boot
//!   (the driver's default), with the guest's uptime at that point;
//! - the bare floor: the same kernel with an empty init (a 190-byte static
//!   program that only calls reboot(POWER_OFF)), qemu spawned -> exited;
//! - the driver: `QemuDriver::start` to ready and to the payload answering
//!   on the forwarded API port, first boot (mkfs of the data disk) and warm
//!   (second boot), `stop` time, and guest memory in use.
//!
//! `cargo run --release -p minik-vm --example boot_bench [-- ISO]`
//! (default iso/out/minik-<version>.iso; BENCH_RUNS=n repeats, default 3).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use minik_vm::isofs::{isolinux_append, IsoImage};
use minik_vm::{Accel, AgentPayload, QemuDriver, VmSpec};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iso = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
                "../../iso/out/minik-{}.iso",
                env!("CARGO_PKG_VERSION")
            ))
        });
    let iso = iso
        .canonicalize()
        .map_err(|e| format!("{}: {e} (build it with iso/build.sh)", iso.display()))?;
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let work = std::env::temp_dir().join(format!("minik-boot-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;

    let iso_size = std::fs::metadata(&iso)?.len();
    println!(
        "ISO {}: {:.1} MiB ({iso_size} bytes)",
        iso.display(),
        iso_size as f64 / 1048576.0
    );

    let mut img = IsoImage::open(&iso)?;
    let append = isolinux_append(&String::from_utf8_lossy(
        &img.read("isolinux/isolinux.cfg")?,
    ))
    .ok_or("isolinux.cfg has no APPEND line")?;
    let kernel = work.join("vmlinuz");
    let initrd = work.join("initrd");
    img.extract("boot/vmlinuz", &kernel)?;
    img.extract("boot/initrd", &initrd)?;
    let floor_initrd = work.join("floor.cpio");
    write_floor_initramfs(&floor_initrd)?;
    println!(
        "kernel {:.1} MiB, initramfs {:.1} MiB; {runs} runs each, TCG, 1 vCPU, 512 MB",
        size_mib(&kernel),
        size_mib(&initrd)
    );

    let console = work.join("console.log");
    let common = |c: &mut Command| {
        c.args(["-M", "pc", "-accel", "tcg", "-m", "512", "-smp", "1"])
            .args([
                "-display",
                "none",
                "-vga",
                "none",
                "-monitor",
                "none",
                "-nic",
                "none",
                "-no-reboot",
            ])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    };

    let mut cd = Vec::new();
    let mut direct = Vec::new();
    let mut floor = Vec::new();
    for _ in 0..runs {
        let mut c = Command::new("qemu-system-x86_64");
        common(&mut c);
        c.arg("-cdrom").arg(&iso);
        cd.push(time_to_init(c, &console)?);

        let mut c = Command::new("qemu-system-x86_64");
        common(&mut c);
        c.arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initrd)
            .arg("-append")
            .arg(&append);
        direct.push(time_to_init(c, &console)?);

        let mut c = Command::new("qemu-system-x86_64");
        common(&mut c);
        c.arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(&floor_initrd)
            .arg("-append")
            .arg(&append);
        floor.push(time_to_exit(c, &console)?);
    }
    report("boot to /init, ISO via isolinux (-cdrom)", &cd);
    report(
        "boot to /init, direct kernel boot (driver default)",
        &direct,
    );
    report(
        "bare floor: same kernel, empty init, spawn -> poweroff",
        &floor,
    );

    // the driver, with busybox httpd on the agent's port as the payload
    let profile = work.join("profile");
    let d = QemuDriver::new(&profile);
    let mut p = AgentPayload::new([
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        "8443",
        "-h",
        "/run/minik/agent/www",
    ]);
    p.add_bytes("www/index.html", "bench\n", 0o644)?;
    let mut spec = VmSpec::new(&iso, p);
    spec.accel = Accel::Tcg;
    for (label, n) in [
        ("first boot, mkfs of a 20000 MB disk", 0),
        ("warm (second boot)", 1),
    ] {
        let t = Instant::now();
        let info = d.start(&spec).await?;
        let ready = t.elapsed();
        let mut answered = None;
        while t.elapsed() < Duration::from_secs(60) {
            if http_ok(info.api_port) {
                answered = Some(t.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "driver start ({label}, 2 vCPU, 2048 MB): ready {:.2} s, payload answering on 127.0.0.1:{} {}",
            ready.as_secs_f64(),
            info.api_port,
            answered.map(|a| format!("{:.2} s", a.as_secs_f64())).unwrap_or_else(|| "never".into())
        );
        if n == 1 {
            let out = d.ssh_command(&["free -m | sed -n 2p"])?.output()?;
            let f: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if f.len() >= 3 {
                println!("guest memory: {} MB used of {} MB", f[2], f[1]);
            }
        }
        let t = Instant::now();
        let how = d.stop(Duration::from_secs(60)).await?;
        println!("driver stop: {how:?} in {:.2} s", t.elapsed().as_secs_f64());
    }
    d.delete().await?;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}

fn size_mib(p: &Path) -> f64 {
    std::fs::metadata(p)
        .map(|m| m.len() as f64 / 1048576.0)
        .unwrap_or(0.0)
}

struct Sample {
    wall: Duration,
    guest: Option<f64>,
}

fn report(label: &str, s: &[Sample]) {
    let mut w: Vec<f64> = s.iter().map(|x| x.wall.as_secs_f64()).collect();
    w.sort_by(f64::total_cmp);
    let mut g: Vec<f64> = s.iter().filter_map(|x| x.guest).collect();
    g.sort_by(f64::total_cmp);
    let med = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            v[v.len() / 2]
        }
    };
    println!(
        "{label}: median {:.2} s wall (min {:.2}, max {:.2}); guest uptime {:.2} s",
        med(&w),
        w.first().copied().unwrap_or(f64::NAN),
        w.last().copied().unwrap_or(f64::NAN),
        med(&g)
    );
}

fn spawn(mut c: Command, console: &Path) -> Result<(Child, Instant), Box<dyn std::error::Error>> {
    let _ = std::fs::remove_file(console);
    let t = Instant::now();
    let child = c
        .spawn()
        .map_err(|e| format!("qemu-system-x86_64: {e} (apt-get install qemu-system-x86)"))?;
    Ok((child, t))
}

fn time_to_init(c: Command, console: &Path) -> Result<Sample, Box<dyn std::error::Error>> {
    let (mut child, t) = spawn(c, console)?;
    let marker = minik_vm::markers::INIT_STARTED;
    let res = loop {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(marker)) {
            let wall = t.elapsed();
            // "... (uptime 1.38)"
            let guest = line
                .rsplit("uptime ")
                .next()
                .and_then(|r| r.trim_end_matches(')').trim().parse().ok());
            break Ok(Sample { wall, guest });
        }
        if t.elapsed() > Duration::from_secs(60) {
            break Err("no /init marker within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.kill();
    let _ = child.wait();
    res
}

fn time_to_exit(c: Command, console: &Path) -> Result<Sample, Box<dyn std::error::Error>> {
    let (mut child, t) = spawn(c, console)?;
    loop {
        if child.try_wait()?.is_some() {
            let wall = t.elapsed();
            let text = std::fs::read_to_string(console).unwrap_or_default();
            // "[    1.234567] reboot: Power down"
            let guest = text
                .lines()
                .find(|l| l.contains("reboot: Power down"))
                .and_then(|l| l.trim_start_matches('[').split(']').next())
                .and_then(|v| v.trim().parse().ok());
            return Ok(Sample { wall, guest });
        }
        if t.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the floor VM did not power off within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A static x86-64 ELF that calls reboot(MAGIC1, MAGIC2, POWER_OFF, 0).
fn poweroff_elf() -> Vec<u8> {
    let code: [u8; 29] = [
        0xbf, 0xad, 0xde, 0xe1, 0xfe, // mov edi, 0xfee1dead
        0xbe, 0x69, 0x19, 0x12, 0x28, // mov esi, 672274793
        0xba, 0xdc, 0xfe, 0x21, 0x43, // mov edx, 0x4321fedc (POWER_OFF)
        0x45, 0x31, 0xd2, // xor r10d, r10d
        0xb8, 0xa9, 0x00, 0x00, 0x00, // mov eax, 169 (reboot)
        0x0f, 0x05, // syscall
        0xeb, 0xfe, // jmp .
        0x90, 0x90,
    ];
    let base: u64 = 0x400000;
    let entry = base + 64 + 56;
    let total = (64 + 56 + code.len()) as u64;
    let mut e = Vec::new();
    e.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&entry.to_le_bytes());
    e.extend_from_slice(&64u64.to_le_bytes()); // phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // flags
    for v in [64u16, 56, 1, 64, 0, 0] {
        e.extend_from_slice(&v.to_le_bytes()); // ehsize phentsize phnum shentsize shnum shstrndx
    }
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // R+X
    e.extend_from_slice(&0u64.to_le_bytes()); // offset
    e.extend_from_slice(&base.to_le_bytes()); // vaddr
    e.extend_from_slice(&base.to_le_bytes()); // paddr
    e.extend_from_slice(&total.to_le_bytes()); // filesz
    e.extend_from_slice(&total.to_le_bytes()); // memsz
    e.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    e.extend_from_slice(&code);
    e
}

/// An initramfs (newc cpio, uncompressed) holding only /init = poweroff_elf.
fn write_floor_initramfs(path: &Path) -> std::io::Result<()> {
    let mut out = Vec::new();
    let mut entry = |name: &str, mode: u32, data: &[u8], ino: u32| {
        let namesize = name.len() + 1;
        let hdr = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
            0, 0, 1, 0, data.len(), 0, 0, 0, 0, 0
        );
        out.extend_from_slice(hdr.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    entry("init", 0o100755, &poweroff_elf(), 1);
    entry("TRAILER!!!", 0, &[], 0);
    std::fs::File::create(path)?.write_all(&out)
}

fn http_ok(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf.starts_with(b"HTTP/1.") && String::from_utf8_lossy(&buf).contains(" 200 ")
}
