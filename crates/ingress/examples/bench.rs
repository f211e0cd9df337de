//! What the ingress proxy costs per request, on loopback: one keep-alive
//! client sends N small GETs straight to an upstream HTTP server, then the
//! same N through the proxy (routing table lookup, a new upstream
//! connection per request, X-Forwarded-* headers), and prints both rates
//! and their ratio. `cargo run -p minik-ingress --example bench [N]`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use minik_ingress::proxy::{self, State};
use minik_ingress::routes::Table;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

async fn upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"Hello from minik!\n",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// Requests per second for `n` GETs over one keep-alive connection.
async fn rate(addr: SocketAddr, n: usize) -> f64 {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let t0 = Instant::now();
    for _ in 0..n {
        let req = Request::builder()
            .uri("/")
            .header("host", "hello.local")
            .body(Full::new(Bytes::new()))
            .unwrap();
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let up = upstream().await;
    let services = vec![Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "hello"},
            "spec": {"ports": [{"port": 80}]}
        }))
        .unwrap(),
    )];
    let slices = vec![Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "hello-1",
                         "labels": {"kubernetes.io/service-name": "hello"}},
            "addressType": "IPv4",
            "ports": [{"port": up.port()}],
            "endpoints": [{"addresses": ["127.0.0.1"]}]
        }))
        .unwrap(),
    )];
    let ingress = Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "hello"},
            "spec": {"rules": [{"host": "hello.local", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "hello", "port": {"number": 80}}}}]}}]}
        }))
        .unwrap(),
    );
    let state = Arc::new(State::new(Table::build(&[ingress], &services, &slices)));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let via = l.local_addr().unwrap();
    tokio::spawn(proxy::serve(l, state, None));

    // warm up both paths
    rate(up, 200).await;
    rate(via, 200).await;
    let direct = rate(up, n).await;
    let proxied = rate(via, n).await;
    println!("{n} sequential GETs over one keep-alive connection, loopback, debug build unless --release:");
    println!(
        "  direct to the upstream: {direct:8.0} req/s ({:.1} µs/req)",
        1e6 / direct
    );
    println!(
        "  through the ingress:    {proxied:8.0} req/s ({:.1} µs/req)",
        1e6 / proxied
    );
    println!("  ratio (ingress/direct): {:.2}", proxied / direct);
}
