//! Programs real nftables rules and sends real traffic through them.
//!
//! Builds a throw-away "node": a bridge with two network namespaces (pods)
//! on veths, a TCP + UDP server in pod A, then applies the proxy's rules for
//! a ClusterIP + NodePort Service and a Service without endpoints, under a
//! test-only table name. Checks host→127.0.0.1:NodePort, host→ClusterIP,
//! pod B→ClusterIP (TCP and UDP), pod A→its own ClusterIP (hairpin) and the
//! reject of an endpoint-less service, then tears down and checks the table
//! is gone and the sysctls are back. Needs root and `nft`/`ip`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CoreEndpointPort, EndpointSubset, Endpoints, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use minik_proxy::{nft, sysctl, teardown, Proxier, ProxyConfig};

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Everything the test creates; removed on drop, even when an assert fails.
struct TestNet {
    id: u32,
    table: String,
}

impl TestNet {
    fn bridge(&self) -> String {
        format!("mkpt{}", self.id)
    }
    fn ns(&self, which: char) -> String {
        format!("mkpt{}{which}", self.id)
    }
    fn host_veth(&self, which: char) -> String {
        format!("mkpt{}v{which}", self.id)
    }
    fn subnet(&self) -> String {
        format!("10.251.{}", self.id % 250)
    }

    fn create(&self) -> Result<(), String> {
        let br = self.bridge();
        let sub = self.subnet();
        sh(&["ip", "link", "add", &br, "type", "bridge"])?;
        sh(&["ip", "addr", "add", &format!("{sub}.1/24"), "dev", &br])?;
        sh(&["ip", "link", "set", &br, "up"])?;
        for (which, host) in [('a', 2), ('b', 3)] {
            let ns = self.ns(which);
            let veth = self.host_veth(which);
            sh(&["ip", "netns", "add", &ns])?;
            sh(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            sh(&["ip", "link", "set", &veth, "master", &br, "up"])?;
            // What the kubelet does for pod veths: with br_netfilter loaded,
            // pod -> own ClusterIP is bridged back out of the port it came in.
            sh(&[
                "ip",
                "link",
                "set",
                &veth,
                "type",
                "bridge_slave",
                "hairpin",
                "on",
            ])?;
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{sub}.{host}/24"),
                "dev",
                "eth0",
            ])?;
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            sh(&[
                "ip",
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &format!("{sub}.1"),
            ])?;
        }
        Ok(())
    }

    fn config(&self) -> ProxyConfig {
        ProxyConfig {
            node_ip: "127.0.0.1".into(),
            pod_cidr: format!("{}.0/24", self.subnet()),
            bridge: self.bridge(),
            table: self.table.clone(),
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = teardown(&self.config());
        for which in ['a', 'b'] {
            let _ = sh(&["ip", "link", "del", &self.host_veth(which)]);
            let _ = sh(&["ip", "netns", "del", &self.ns(which)]);
        }
        let _ = sh(&["ip", "link", "del", &self.bridge()]);
    }
}

/// Runs `f` on a thread that has joined network namespace `ns`.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

/// TCP server answering "hi from a\n" and a UDP echo server, inside `ns`.
fn start_servers(ns: &str) {
    let (tx, rx) = mpsc::channel();
    in_netns(ns, move || {
        let tcp = TcpListener::bind("0.0.0.0:8080").expect("bind tcp");
        let udp = UdpSocket::bind("0.0.0.0:5353").expect("bind udp");
        tx.send(()).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&buf[..n], from);
            }
        });
        for mut conn in tcp.incoming().flatten() {
            let _ = conn.write_all(b"hi from a\n");
        }
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("servers started");
}

fn tcp_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn udp_echo(addr: SocketAddr) -> std::io::Result<String> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.send_to(b"ping", addr)?;
    let mut buf = [0u8; 64];
    let (n, _) = s.recv_from(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn service(name: &str, ip: &str, node_port: Option<i32>) -> Service {
    Service {
        metadata: meta("default", name),
        spec: Some(ServiceSpec {
            type_: Some(
                if node_port.is_some() {
                    "NodePort"
                } else {
                    "ClusterIP"
                }
                .into(),
            ),
            cluster_ip: Some(ip.into()),
            ports: Some(vec![
                ServicePort {
                    name: Some("http".into()),
                    protocol: Some("TCP".into()),
                    port: 80,
                    node_port,
                    ..Default::default()
                },
                ServicePort {
                    name: Some("echo".into()),
                    protocol: Some("UDP".into()),
                    port: 53,
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice(svc: &str, ip: &str) -> EndpointSlice {
    let mut m = meta("default", &format!("{svc}-x1"));
    m.labels = Some([("kubernetes.io/service-name".to_string(), svc.to_string())].into());
    EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ports: Some(vec![
            EndpointPort {
                name: Some("http".into()),
                protocol: Some("TCP".into()),
                port: Some(8080),
                ..Default::default()
            },
            EndpointPort {
                name: Some("echo".into()),
                protocol: Some("UDP".into()),
                port: Some(5353),
                ..Default::default()
            },
        ]),
    }
}

fn manual_endpoints(svc: &str, ip: Ipv4Addr, port: u16) -> Endpoints {
    Endpoints {
        metadata: meta("default", svc),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: ip.to_string(),
                ..Default::default()
            }]),
            ports: Some(vec![
                CoreEndpointPort {
                    name: Some("http".into()),
                    protocol: Some("TCP".into()),
                    port: i32::from(port),
                    ..Default::default()
                },
                CoreEndpointPort {
                    name: Some("echo".into()),
                    protocol: Some("UDP".into()),
                    port: i32::from(port),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }]),
    }
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

#[test]
fn cluster_ip_node_port_hairpin_and_reject_through_real_nftables() {
    assert!(
        is_root(),
        "this test programs nftables and network namespaces: run it as root"
    );
    let id = std::process::id() % 100_000;
    let net = TestNet {
        id,
        table: format!("mkpt_test_{id}"),
    };
    let before = sysctl::current().expect("read sysctls");
    net.create().expect("create test network");
    start_servers(&net.ns('a'));
    let pod_a: Ipv4Addr = format!("{}.2", net.subnet()).parse().unwrap();
    let cluster_ip: Ipv4Addr = "10.96.251.1".parse().unwrap();
    let dead_ip: Ipv4Addr = "10.96.251.2".parse().unwrap();
    let dns_ip: Ipv4Addr = "10.96.251.3".parse().unwrap();
    // like kube-dns: a selector-less service whose endpoint is a listener on
    // the node's own bridge address (manual Endpoints, no slice)
    let bridge_ip: Ipv4Addr = format!("{}.1", net.subnet()).parse().unwrap();
    let host_udp = UdpSocket::bind((bridge_ip, 0)).expect("bind on the bridge address");
    let host_udp_port = host_udp.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = host_udp.recv_from(&mut buf) {
            let _ = host_udp.send_to(&buf[..n], from);
        }
    });
    let node_port = 30000 + (id % 2700) as u16;

    let mut proxier = Proxier::new(&net.config()).expect("proxier");
    let comment = nft::table_comment(&net.table)
        .unwrap()
        .expect("table exists after new()");
    assert!(
        sysctl::Saved::from_comment(&comment).is_some_and(|s| s.0.len() == 2),
        "original sysctls recorded before changing them: {comment}"
    );
    let services = [
        service("web", &cluster_ip.to_string(), Some(node_port as i32)),
        service("dead", &dead_ip.to_string(), None),
        service("dns", &dns_ip.to_string(), None),
    ];
    let slices = [slice("web", &pod_a.to_string())];
    let dns_eps = [manual_endpoints("dns", bridge_ip, host_udp_port)];
    assert!(proxier
        .sync(&services, &slices, &dns_eps)
        .expect("apply rules"));
    assert!(
        !proxier.sync(&services, &slices, &dns_eps).unwrap(),
        "unchanged model must not rewrite"
    );
    assert_eq!(sysctl::read("net.ipv4.ip_forward").unwrap(), "1");
    assert_eq!(
        sysctl::read("net.ipv4.conf.all.route_localnet").unwrap(),
        "1"
    );

    // host -> 127.0.0.1:NodePort (output hook, route_localnet + masquerade)
    let got = tcp_get(SocketAddr::from(([127, 0, 0, 1], node_port))).expect("127.0.0.1:nodePort");
    assert_eq!(got, "hi from a\n");
    // host -> ClusterIP
    let got = tcp_get(SocketAddr::from((cluster_ip, 80))).expect("host -> ClusterIP");
    assert_eq!(got, "hi from a\n");
    // host -> ClusterIP whose endpoint is the host itself
    let got = udp_echo(SocketAddr::from((dns_ip, 53))).expect("host -> host-local endpoint");
    assert_eq!(got, "ping");

    // pod B -> ClusterIP over TCP and UDP, pod B -> node's bridge address
    // NodePort, pod B -> a ClusterIP served by the node (kube-dns's case)
    let results = in_netns(&net.ns('b'), move || {
        (
            tcp_get(SocketAddr::from((cluster_ip, 80))).map_err(|e| e.to_string()),
            udp_echo(SocketAddr::from((cluster_ip, 53))).map_err(|e| e.to_string()),
            tcp_get(SocketAddr::from((bridge_ip, node_port))).map_err(|e| e.to_string()),
            udp_echo(SocketAddr::from((dns_ip, 53))).map_err(|e| e.to_string()),
        )
    })
    .join()
    .unwrap();
    assert_eq!(
        results.0.as_deref(),
        Ok("hi from a\n"),
        "pod -> ClusterIP tcp"
    );
    assert_eq!(results.1.as_deref(), Ok("ping"), "pod -> ClusterIP udp");
    assert_eq!(
        results.2.as_deref(),
        Ok("hi from a\n"),
        "pod -> nodeIP:NodePort"
    );
    assert_eq!(
        results.3.as_deref(),
        Ok("ping"),
        "pod -> ClusterIP served by the node"
    );

    // pod A -> its own service (hairpin)
    let hairpin = in_netns(&net.ns('a'), move || {
        tcp_get(SocketAddr::from((cluster_ip, 80))).map_err(|e| e.to_string())
    })
    .join()
    .unwrap();
    assert_eq!(hairpin.as_deref(), Ok("hi from a\n"), "hairpin");

    // a service without endpoints is refused at once, not left to time out
    let refused = in_netns(&net.ns('b'), move || {
        let start = Instant::now();
        let r =
            TcpStream::connect_timeout(&SocketAddr::from((dead_ip, 80)), Duration::from_secs(3));
        (r.err().map(|e| e.kind()), start.elapsed())
    })
    .join()
    .unwrap();
    assert_eq!(refused.0, Some(ErrorKind::ConnectionRefused));
    assert!(refused.1 < Duration::from_secs(2));
    let host_refused =
        TcpStream::connect_timeout(&SocketAddr::from((dead_ip, 80)), Duration::from_secs(3));
    assert_eq!(
        host_refused.err().map(|e| e.kind()),
        Some(ErrorKind::ConnectionRefused)
    );

    // endpoints go away -> the ClusterIP now rejects
    let empty: [EndpointSlice; 0] = [];
    assert!(proxier.sync(&services, &empty, &dns_eps).unwrap());
    let gone =
        TcpStream::connect_timeout(&SocketAddr::from((cluster_ip, 80)), Duration::from_secs(3));
    assert_eq!(
        gone.err().map(|e| e.kind()),
        Some(ErrorKind::ConnectionRefused)
    );

    teardown(&net.config()).expect("teardown");
    assert_eq!(
        nft::table_comment(&net.table).unwrap(),
        None,
        "table removed"
    );
    assert_eq!(sysctl::current().unwrap(), before, "sysctls restored");
    teardown(&net.config()).expect("teardown is idempotent");
}

/// A large, varied model renders to a script the kernel accepts
/// (`nft -c`: validated by the kernel, then discarded).
#[test]
fn large_varied_script_is_accepted_by_nft_check() {
    assert!(is_root(), "nft -c needs root");
    use minik_proxy::model::{Backend, Protocol, ServicePort as Port};
    let mut ports = Vec::new();
    for i in 0..300u32 {
        let protocol = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp][(i % 3) as usize];
        let backends = (0..(i % 5))
            .map(|j| Backend {
                ip: Ipv4Addr::new(10, 244, (i / 200) as u8, (i % 200) as u8 + j as u8),
                port: 8000 + j as u16,
            })
            .collect();
        ports.push(Port {
            namespace: format!("ns-{}", i % 7),
            name: format!("svc-{i}.x"),
            port_name: String::new(),
            protocol,
            ips: vec![Ipv4Addr::new(10, 96, (i / 250) as u8, (i % 250) as u8 + 1)],
            port: 80 + (i % 3) as u16,
            node_port: (i % 2 == 0).then_some(30000 + i as u16),
            backends,
        });
    }
    let params =
        minik_proxy::Params::new("mkpt_check", "10.244.0.0/16", "minik0", "check").unwrap();
    let script = minik_proxy::render::render(&params, &ports);
    let mut child = Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run nft");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft -c rejected the script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        nft::table_comment("mkpt_check").unwrap(),
        None,
        "check mode must not create the table"
    );
}
