//! Runs the real server loop on loopback with a hand-filled cache and
//! queries it over UDP and TCP with messages built by hickory-proto.
//! A second server instance plays the upstream resolver for forwarding.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use minik_dns::catalog::{EndpointRecord, NamedPort, ServiceEntry, Target};
use minik_dns::{Cache, Catalog, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

struct Running {
    udp: SocketAddr,
    tcp: SocketAddr,
    cache: Cache,
}

async fn start(domain: &str, upstream: Option<SocketAddr>) -> Running {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (udp_addr, tcp_addr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    let cache = Cache::default();
    let server = Server::new(cache.clone(), domain, upstream);
    tokio::spawn(server.serve(udp, tcp));
    Running {
        udp: udp_addr,
        tcp: tcp_addr,
        cache,
    }
}

fn query(name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

async fn ask_udp(server: SocketAddr, q: &Message) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("udp reply in time")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, q.metadata.id);
    m
}

async fn ask_tcp(server: SocketAddr, q: &Message) -> Message {
    let mut conn = TcpStream::connect(server).await.unwrap();
    let bytes = q.to_vec().unwrap();
    conn.write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    conn.write_all(&bytes).await.unwrap();
    let n = conn.read_u16().await.unwrap();
    let mut buf = vec![0u8; n as usize];
    conn.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn a_ips(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

fn cluster_catalog() -> Catalog {
    let mut c = Catalog::default();
    c.insert(
        "default",
        "hello",
        ServiceEntry {
            target: Target::ClusterIp("10.96.0.20".parse().unwrap()),
            ports: vec![NamedPort {
                name: "http".into(),
                protocol: "tcp".into(),
                port: 80,
            }],
        },
    );
    // big enough that the A answer does not fit 512 bytes of plain UDP
    let many = (1..=60)
        .map(|i| EndpointRecord {
            ip: Ipv4Addr::new(10, 244, 1, i),
            hostname: None,
        })
        .collect();
    c.insert(
        "default",
        "many",
        ServiceEntry {
            target: Target::Headless(many),
            ports: vec![],
        },
    );
    c
}

#[tokio::test]
async fn answers_cluster_names_over_udp_and_tcp() {
    let s = start("cluster.local", None).await;
    // empty cache: the name does not exist yet
    let m = ask_udp(
        s.udp,
        &query("hello.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    s.cache.set(cluster_catalog());
    let m = ask_udp(
        s.udp,
        &query("hello.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(a_ips(&m), vec![Ipv4Addr::new(10, 96, 0, 20)]);

    let m = ask_tcp(
        s.tcp,
        &query("hello.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!(a_ips(&m), vec![Ipv4Addr::new(10, 96, 0, 20)]);

    let m = ask_udp(
        s.udp,
        &query("hello.default.svc.cluster.local.", RecordType::AAAA, true),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(m.edns.is_some(), "EDNS queries get EDNS replies");

    let m = ask_udp(
        s.udp,
        &query(
            "_http._tcp.hello.default.svc.cluster.local.",
            RecordType::SRV,
            false,
        ),
    )
    .await;
    let RData::SRV(srv) = &m.answers[0].data else {
        panic!("no SRV: {m:?}")
    };
    assert_eq!(srv.port, 80);
}

#[tokio::test]
async fn large_answers_are_truncated_on_udp_and_complete_on_tcp() {
    let s = start("cluster.local", None).await;
    s.cache.set(cluster_catalog());
    let q = query("many.default.svc.cluster.local.", RecordType::A, false);
    let m = ask_udp(s.udp, &q).await;
    assert!(m.metadata.truncation, "60 A records do not fit 512 bytes");
    assert!(m.answers.is_empty());
    let m = ask_tcp(s.tcp, &q).await;
    assert!(!m.metadata.truncation);
    assert_eq!(a_ips(&m).len(), 60);
    // with EDNS (1232 bytes) they fit in UDP
    let m = ask_udp(
        s.udp,
        &query("many.default.svc.cluster.local.", RecordType::A, true),
    )
    .await;
    assert_eq!(a_ips(&m).len(), 60);
}

#[tokio::test]
async fn other_names_are_forwarded_upstream_or_refused() {
    // "upstream" is another instance of the server, authoritative for other.test
    let up = start("other.test", None).await;
    let mut c = Catalog::default();
    c.insert(
        "x",
        "far",
        ServiceEntry {
            target: Target::ClusterIp("192.0.2.77".parse().unwrap()),
            ports: vec![],
        },
    );
    up.cache.set(c);

    let s = start("cluster.local", Some(up.udp)).await;
    let m = ask_udp(s.udp, &query("far.x.svc.other.test.", RecordType::A, false)).await;
    assert_eq!(a_ips(&m), vec![Ipv4Addr::new(192, 0, 2, 77)]);

    // an ExternalName service is a CNAME plus the upstream's answer for the target
    let mut c = cluster_catalog();
    c.insert(
        "default",
        "ext",
        ServiceEntry {
            target: Target::ExternalName("far.x.svc.other.test".into()),
            ports: vec![],
        },
    );
    s.cache.set(c);
    let m = ask_udp(
        s.udp,
        &query("ext.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert!(matches!(m.answers[0].data, RData::CNAME(_)), "{m:?}");
    assert_eq!(a_ips(&m), vec![Ipv4Addr::new(192, 0, 2, 77)]);
    let m = ask_udp(
        s.udp,
        &query("hello.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert!(m.metadata.recursion_available);

    // TCP queries are forwarded over TCP: point at the upstream's TCP port
    let s_tcp = start("cluster.local", Some(up.tcp)).await;
    let m = ask_tcp(
        s_tcp.tcp,
        &query("far.x.svc.other.test.", RecordType::A, false),
    )
    .await;
    assert_eq!(a_ips(&m), vec![Ipv4Addr::new(192, 0, 2, 77)]);

    // no upstream: refused at once
    let lone = start("cluster.local", None).await;
    let m = ask_udp(lone.udp, &query("example.com.", RecordType::A, false)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);

    // an upstream that never answers: SERVFAIL after the timeout, not silence
    let black_hole = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dead = start("cluster.local", Some(black_hole.local_addr().unwrap())).await;
    let m = ask_udp(dead.udp, &query("example.com.", RecordType::A, false)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn garbage_gets_formerr_or_silence() {
    let s = start("cluster.local", None).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // a header (id 0x1234, one question) followed by a broken question
    let junk = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
    sock.send_to(&junk, s.udp).await.unwrap();
    let mut buf = vec![0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // the server keeps serving afterwards
    s.cache.set(cluster_catalog());
    let m = ask_udp(
        s.udp,
        &query("hello.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!(a_ips(&m).len(), 1);
}

/// A real stub resolver (busybox nslookup, which sends A and AAAA queries)
/// reads our answers. nslookup only talks to port 53, so this binds
/// a free 127.0.9.x address on port 53 (root needed on Linux).
#[tokio::test]
async fn busybox_nslookup_reads_our_answers() {
    if !std::path::Path::new("/bin/busybox").exists() {
        panic!("this test needs busybox (apt-get install busybox-static)");
    }
    // pick a free loopback address for port 53
    let mut bound = None;
    for last in 60..80u8 {
        let addr = SocketAddr::from(([127, 0, 9, last], 53));
        let (Ok(udp), Ok(tcp)) = (UdpSocket::bind(addr).await, TcpListener::bind(addr).await)
        else {
            continue;
        };
        bound = Some((addr, udp, tcp));
        break;
    }
    let (addr, udp, tcp) = bound.expect("a free 127.0.9.x:53 (run as root)");
    let cache = Cache::default();
    cache.set(cluster_catalog());
    tokio::spawn(Server::new(cache, "cluster.local", None).serve(udp, tcp));

    let out = tokio::process::Command::new("/bin/busybox")
        .args([
            "nslookup",
            "hello.default.svc.cluster.local",
            &addr.ip().to_string(),
        ])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "nslookup failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Address: 10.96.0.20"), "{text}");

    let out = tokio::process::Command::new("/bin/busybox")
        .args([
            "nslookup",
            "nope.default.svc.cluster.local",
            &addr.ip().to_string(),
        ])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NXDOMAIN"), "{text}");
}
