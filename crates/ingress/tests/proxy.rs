//! The proxy end to end on loopback, without a cluster: real listeners,
//! real upstream HTTP servers, real TLS. The routing table is built from
//! Ingress / Service / EndpointSlice objects as the controller builds it.
//! Covers host and path routing, 404/502/503, headers, streamed bodies,
//! retry on a dead endpoint, Upgrade pass-through, reload on an open
//! connection, SNI certificates and the https redirect.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use minik_ingress::certs::{self, CertSet, Resolver};
use minik_ingress::proxy::{self, State};
use minik_ingress::routes::Table;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that describes each request it gets; `Upgrade: echo`
/// switches to echoing bytes back.
async fn upstream(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(move |mut req: Request<Incoming>| async move {
                    if req.headers().get("upgrade").is_some_and(|u| u == "echo") {
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let mut io = TokioIo::new(on.await.unwrap());
                            let mut buf = [0u8; 1024];
                            loop {
                                let n = io.read(&mut buf).await.unwrap_or(0);
                                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        });
                        let r = Response::builder()
                            .status(101)
                            .header("connection", "upgrade")
                            .header("upgrade", "echo")
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        return Ok::<_, Infallible>(r);
                    }
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_string()
                    };
                    let head = format!(
                        "name={name}\npath={}\nhost={}\nxff={}\nxrealip={}\nxfh={}\nproto={}\nconnection={}\n",
                        req.uri(),
                        h("host"),
                        h("x-forwarded-for"),
                        h("x-real-ip"),
                        h("x-forwarded-host"),
                        h("x-forwarded-proto"),
                        h("connection"),
                    );
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let sum: u64 = body.iter().map(|b| *b as u64).sum();
                    Ok(Response::new(Full::new(Bytes::from(format!(
                        "{head}len={}\nsum={sum}\n",
                        body.len()
                    )))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, accepted)
}

fn service(name: &str) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": name},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        }))
        .unwrap(),
    )
}

fn slice(svc: &str, port: u16, ips: &[&str]) -> Arc<EndpointSlice> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": format!("{svc}-abc"),
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": ips.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>()
        }))
        .unwrap(),
    )
}

fn ingress(hello_root: &str) -> Arc<Ingress> {
    let be = |s: &str| json!({"service": {"name": s, "port": {"number": 80}}});
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {
                "tls": [{"hosts": ["secure.local"], "secretName": "secure-tls"}],
                "rules": [
                {"host": "hello.local", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": be(hello_root)},
                    {"path": "/v2", "pathType": "Prefix", "backend": be("b")}]}},
                {"host": "secure.local", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": be("a")}]}},
                {"host": "empty.local", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": be("empty")}]}},
                {"host": "dead.local", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": be("dead")}]}},
            ]}
        }))
        .unwrap(),
    )
}

struct World {
    a: SocketAddr,
    b: SocketAddr,
    /// Connections A accepted.
    a_conns: Arc<AtomicUsize>,
    /// A port nothing listens on.
    dead_port: u16,
}

impl World {
    async fn new() -> World {
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        let (a, a_conns) = upstream("A").await;
        World {
            a,
            b: upstream("B").await.0,
            a_conns,
            dead_port,
        }
    }

    fn table(&self, hello_root: &str) -> Table {
        let services: Vec<_> = ["a", "b", "empty", "dead"]
            .into_iter()
            .map(service)
            .collect();
        let slices = vec![
            // 127.0.0.2 has nothing on A's port: every request to it must be retried on A.
            slice("a", self.a.port(), &["127.0.0.1", "127.0.0.2"]),
            slice("b", self.b.port(), &["127.0.0.1"]),
            slice("empty", 1, &[]),
            slice("dead", self.dead_port, &["127.0.0.1"]),
        ];
        let rewrite: Arc<Ingress> = Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": "default", "name": "rw", "annotations": {
                    "nginx.ingress.kubernetes.io/rewrite-target": "/$2"}},
                "spec": {"rules": [{"host": "rw.local", "http": {"paths": [
                    {"path": "/api(/|$)(.*)", "pathType": "ImplementationSpecific",
                     "backend": {"service": {"name": "b", "port": {"number": 80}}}}]}}]}
            }))
            .unwrap(),
        );
        // An ExternalName Service: the name is resolved at request time.
        let mut services = services;
        services.push(Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": "default", "name": "ext"},
                "spec": {"type": "ExternalName", "externalName": "localhost"}
            }))
            .unwrap(),
        ));
        let external: Arc<Ingress> = Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": "default", "name": "ext"},
                "spec": {"rules": [{"host": "ext.local", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "ext", "port": {"number": self.b.port()}}}}]}}]}
            }))
            .unwrap(),
        );
        Table::build(
            &[ingress(hello_root), rewrite, external],
            &services,
            &slices,
        )
    }
}

/// One HTTP/1.1 connection to the proxy.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn plain(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).await.unwrap();
        Conn::over(TokioIo::new(s)).await
    }

    async fn over<T>(io: T) -> Conn
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        Conn { sender }
    }

    async fn send(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        body: Vec<u8>,
    ) -> (StatusCode, http::HeaderMap, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("x-forwarded-for", "6.6.6.6")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        // the previous exchange may still be finishing on the connection task
        self.sender.ready().await.unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(&mut self, host: &str, path: &str) -> (StatusCode, String) {
        let (s, _, b) = self.send("GET", host, path, Vec::new()).await;
        (s, b)
    }
}

fn field<'a>(body: &'a str, key: &str) -> &'a str {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {body:?}"))
}

async fn start_http(state: Arc<State>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(proxy::serve(l, state, None));
    addr
}

#[tokio::test]
async fn routing_errors_headers_bodies_and_retries() {
    let w = World::new().await;
    let state = Arc::new(State::new(w.table("a")));
    let addr = start_http(state).await;
    let mut c = Conn::plain(addr).await;

    let (s, body) = c.get("hello.local", "/").await;
    assert_eq!(s, 200);
    assert_eq!(field(&body, "name"), "A");
    // Host kept, client X-Forwarded-For replaced, the rest added
    assert_eq!(field(&body, "host"), "hello.local");
    assert_eq!(field(&body, "xff"), "127.0.0.1");
    assert_eq!(field(&body, "xrealip"), "127.0.0.1");
    assert_eq!(field(&body, "xfh"), "hello.local");
    assert_eq!(field(&body, "proto"), "http");

    let (s, body) = c.get("hello.local", "/v2/x?q=1").await;
    assert_eq!(s, 200);
    assert_eq!(field(&body, "name"), "B");
    assert_eq!(field(&body, "path"), "/v2/x?q=1");
    assert_eq!(field(&c.get("hello.local", "/v20").await.1, "name"), "A");

    // rewrite-target: the backend sees the rewritten path, query kept
    let (s, body) = c.get("rw.local", "/api/v1/users?x=1").await;
    assert_eq!(s, 200);
    assert_eq!(field(&body, "name"), "B");
    assert_eq!(field(&body, "path"), "/v1/users?x=1");
    assert_eq!(c.get("rw.local", "/apix").await.0, 404);

    // ExternalName: localhost at B's port
    let (s, body) = c.get("ext.local", "/x").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(field(&body, "name"), "B");
    assert_eq!(field(&body, "host"), "ext.local");

    // Unknown host: 404 from the default backend
    let (s, body) = c.get("unknown.local", "/").await;
    assert_eq!(s, 404);
    assert!(body.contains("404 Not Found"), "{body}");
    // A Service without ready endpoints: 503
    let (s, body) = c.get("empty.local", "/").await;
    assert_eq!(s, 503);
    assert!(
        body.contains("no ready endpoint for default/empty:80"),
        "{body}"
    );
    // Every endpoint refuses: 502
    let (s, body) = c.get("dead.local", "/").await;
    assert_eq!(s, 502);
    assert!(body.contains("default/dead:80"), "{body}");

    // One of A's two endpoints is dead: round robin hits it every other
    // request, and the retry on the other endpoint hides it. The live one
    // is reached over kept-alive connections, not one per request.
    let before = w.a_conns.load(Ordering::SeqCst);
    for _ in 0..20 {
        let (s, body) = c.get("hello.local", "/").await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(field(&body, "name"), "A");
    }
    let opened = w.a_conns.load(Ordering::SeqCst) - before;
    assert!(
        opened <= 2,
        "20 requests opened {opened} upstream connections"
    );

    // A 4 MiB body streams through both ways intact.
    let big: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let want_sum: u64 = big.iter().map(|b| *b as u64).sum();
    let (s, _, body) = c.send("POST", "hello.local", "/upload", big).await;
    assert_eq!(s, 200);
    assert_eq!(field(&body, "len"), (4 * 1024 * 1024).to_string());
    assert_eq!(field(&body, "sum"), want_sum.to_string());
}

#[tokio::test]
async fn reload_keeps_open_connections_and_upgrades() {
    let w = World::new().await;
    let state = Arc::new(State::new(w.table("a")));
    let addr = start_http(state.clone()).await;

    // An upgraded (WebSocket-like) connection through the proxy.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(
        b"GET /ws HTTP/1.1\r\nHost: hello.local\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            raw.read(&mut byte).await.unwrap(),
            1,
            "closed: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    raw.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    raw.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");

    // A keep-alive connection, then a reload that moves hello.local/ to B.
    let mut c = Conn::plain(addr).await;
    assert_eq!(field(&c.get("hello.local", "/").await.1, "name"), "A");
    state.replace(w.table("b"));
    assert_eq!(
        field(&c.get("hello.local", "/").await.1, "name"),
        "B",
        "the same connection follows the new table"
    );
    // The upgraded stream is untouched by the reload.
    raw.write_all(b"pong").await.unwrap();
    raw.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
}

#[tokio::test]
async fn tls_by_sni_and_https_redirect() {
    let w = World::new().await;
    let table = w.table("a");

    // A CA and a certificate for secure.local signed by it: the "Secret".
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["secure.local".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let (set, warnings) = CertSet::build(&table, |ns, name| {
        assert_eq!((ns, name), ("default", "secure-tls"));
        Some((
            leaf.pem().into_bytes(),
            leaf_key.serialize_pem().into_bytes(),
        ))
    });
    assert!(warnings.is_empty(), "{warnings:?}");
    let resolver = Arc::new(Resolver::new(certs::default_certificate().unwrap()));
    resolver.replace(set);
    let acceptor =
        tokio_rustls::TlsAcceptor::from(Arc::new(certs::server_config(resolver).unwrap()));
    let state = Arc::new(State::new(table));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = l.local_addr().unwrap();
    tokio::spawn(proxy::serve(l, state.clone(), Some(acceptor)));
    let http = start_http(state).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let client_cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(certs::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let connector = tokio_rustls::TlsConnector::from(client_cfg);
    let tls = |name: &'static str| {
        let connector = connector.clone();
        async move {
            let s = TcpStream::connect(https).await.unwrap();
            connector
                .connect(rustls::pki_types::ServerName::try_from(name).unwrap(), s)
                .await
        }
    };

    // secure.local: the Secret's certificate verifies against its CA.
    let s = tls("secure.local")
        .await
        .expect("the secret's certificate for secure.local");
    let mut c = Conn::over(TokioIo::new(s)).await;
    let (status, body) = c.get("secure.local", "/").await;
    assert_eq!(status, 200);
    assert_eq!(field(&body, "name"), "A");
    assert_eq!(field(&body, "proto"), "https");

    // Any other name gets the self-signed default certificate, which the
    // CA did not sign (the connection still works with `curl -k`).
    let e = tls("hello.local")
        .await
        .expect_err("the default certificate is not the CA's");
    assert!(
        e.to_string().contains("UnknownIssuer") || e.to_string().contains("issuer"),
        "{e}"
    );

    // Plain HTTP to a TLS host: 308 to https, path and query kept.
    let mut c = Conn::plain(http).await;
    let (status, headers, _) = c.send("GET", "secure.local", "/a?b=c", Vec::new()).await;
    assert_eq!(status, 308);
    assert_eq!(headers["location"], "https://secure.local/a?b=c");
    // A host without TLS is not redirected.
    assert_eq!(c.get("hello.local", "/").await.0, 200);
}

/// An upstream speaking HTTPS with a self-signed certificate.
async fn tls_upstream() -> SocketAddr {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["backend.internal".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let ck = certs::certified_key(
        "test",
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let resolver = Arc::new(Resolver::new(ck));
    let acceptor =
        tokio_rustls::TlsAcceptor::from(Arc::new(certs::server_config(resolver).unwrap()));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(s) = acceptor.accept(s).await else {
                    return;
                };
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let body = format!("name=TLS\npath={}\n", req.uri());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn https_backends_with_backend_protocol() {
    let up = tls_upstream().await;
    let services = vec![service("secure-app")];
    let slices = vec![slice("secure-app", up.port(), &["127.0.0.1"])];
    let mk = |name: &str, host: &str, protocol: Option<&str>| -> Arc<Ingress> {
        let mut anns = serde_json::Map::new();
        if let Some(p) = protocol {
            anns.insert(
                "nginx.ingress.kubernetes.io/backend-protocol".into(),
                p.into(),
            );
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": "default", "name": name, "annotations": anns},
                "spec": {"rules": [{"host": host, "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "secure-app", "port": {"number": 80}}}}]}}]}
            }))
            .unwrap(),
        )
    };
    let table = Table::build(
        &[
            mk("tls", "tls.local", Some("HTTPS")),
            mk("plain", "plain.local", None),
        ],
        &services,
        &slices,
    );
    let addr = start_http(Arc::new(State::new(table))).await;
    let mut c = Conn::plain(addr).await;
    for _ in 0..3 {
        let (s, body) = c.get("tls.local", "/inside?x=1").await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(field(&body, "name"), "TLS");
        assert_eq!(field(&body, "path"), "/inside?x=1");
    }
    // The same Service without the annotation is spoken to in plain HTTP,
    // which the TLS server cannot answer: 502.
    let (s, _) = c.get("plain.local", "/").await;
    assert_eq!(s, 502);
}
