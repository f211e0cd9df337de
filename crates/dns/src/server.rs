//! The DNS server loop on tokio UDP + TCP.
//!
//! Owns the sockets, the wire format (via hickory-proto), UDP truncation and
//! forwarding of names outside the cluster zone to the upstream resolver.
//! Answers come from [`crate::resolve`] over the shared [`Cache`].

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::catalog::Catalog;
use crate::resolve::{self, Outcome, Zone};

/// How long an upstream gets to answer.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// An idle TCP client is dropped after this.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The name→answer cache shared between the watch loop and the server.
#[derive(Clone, Default)]
pub struct Cache(Arc<RwLock<Arc<Catalog>>>);

impl Cache {
    pub fn get(&self) -> Arc<Catalog> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set(&self, catalog: Catalog) {
        let catalog = Arc::new(catalog);
        match self.0.write() {
            Ok(mut g) => *g = catalog,
            Err(poisoned) => *poisoned.into_inner() = catalog,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// Shared state of the UDP and TCP loops.
pub struct Server {
    cache: Cache,
    zone: Zone,
    upstream: Option<SocketAddr>,
}

impl Server {
    pub fn new(cache: Cache, cluster_domain: &str, upstream: Option<SocketAddr>) -> Arc<Self> {
        Arc::new(Server {
            cache,
            zone: Zone::new(cluster_domain),
            upstream,
        })
    }

    /// Serves UDP and TCP until one of the sockets fails.
    pub async fn serve(self: Arc<Self>, udp: UdpSocket, tcp: TcpListener) -> std::io::Result<()> {
        tokio::select! {
            r = self.clone().serve_udp(udp) => r,
            r = self.serve_tcp(tcp) => r,
        }
    }

    pub async fn serve_udp(self: Arc<Self>, sock: UdpSocket) -> std::io::Result<()> {
        let sock = Arc::new(sock);
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, peer) = match sock.recv_from(&mut buf).await {
                Ok(x) => x,
                // ICMP errors from earlier replies surface here on Linux; keep serving.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            let query = buf[..n].to_vec();
            let (server, sock) = (self.clone(), sock.clone());
            tokio::spawn(async move {
                if let Some(reply) = server.handle(&query, Transport::Udp).await {
                    let _ = sock.send_to(&reply, peer).await;
                }
            });
        }
    }

    pub async fn serve_tcp(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (conn, _) = listener.accept().await?;
            let server = self.clone();
            tokio::spawn(async move {
                let _ = server.tcp_conn(conn).await;
            });
        }
    }

    async fn tcp_conn(&self, mut conn: TcpStream) -> std::io::Result<()> {
        loop {
            let Ok(len) = tokio::time::timeout(TCP_IDLE, conn.read_u16()).await else {
                return Ok(());
            };
            let mut query = vec![0u8; usize::from(len?)];
            tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut query))
                .await
                .map_err(|_| std::io::ErrorKind::TimedOut)??;
            let Some(reply) = self.handle(&query, Transport::Tcp).await else {
                return Ok(());
            };
            let Ok(len) = u16::try_from(reply.len()) else {
                return Ok(());
            };
            let mut out = Vec::with_capacity(reply.len() + 2);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&reply);
            conn.write_all(&out).await?;
        }
    }

    /// One query in, at most one reply out (malformed junk gets nothing).
    async fn handle(&self, raw: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let req = match Message::from_vec(raw) {
            Ok(m) => m,
            Err(_) => {
                // Answer FORMERR when there is at least a header to echo.
                let id = u16::from_be_bytes([*raw.first()?, *raw.get(1)?]);
                if raw.len() < 12 {
                    return None;
                }
                return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                    .to_vec()
                    .ok();
            }
        };
        if req.metadata.message_type != hickory_proto::op::MessageType::Query {
            return None;
        }
        let catalog = self.cache.get();
        match resolve::answer(&catalog, &self.zone, &req, self.upstream.is_some()) {
            Outcome::Reply(mut msg) => {
                self.chase_external_name(&mut msg, transport).await;
                encode(&msg, &req, transport)
            }
            Outcome::Forward => match self.upstream {
                None => refusal(&req, ResponseCode::Refused),
                Some(up) => match forward(raw, up, transport).await {
                    Ok(reply) => Some(reply),
                    Err(e) => {
                        tracing::debug!(error = %e, upstream = %up, "dns forward failed");
                        refusal(&req, ResponseCode::ServFail)
                    }
                },
            },
        }
    }
}

impl Server {
    /// An ExternalName answer is a lone CNAME; stub resolvers (glibc, musl)
    /// do not chase it themselves, so — as CoreDNS does — ask the upstream
    /// for the target and append its records. Without an upstream (or on
    /// failure) the CNAME alone is returned.
    async fn chase_external_name(&self, msg: &mut Message, transport: Transport) {
        let Some(up) = self.upstream else { return };
        let Some(qtype) = msg.queries.first().map(|q| q.query_type()) else {
            return;
        };
        if matches!(qtype, RecordType::CNAME) || msg.answers.len() != 1 {
            return;
        }
        let target = match &msg.answers[0].data {
            RData::CNAME(c) => c.0.clone(),
            _ => return,
        };
        let mut q = Message::query();
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(target, qtype));
        let Ok(raw) = q.to_vec() else { return };
        match forward(&raw, up, transport)
            .await
            .map(|r| Message::from_vec(&r))
        {
            Ok(Ok(reply)) => {
                msg.add_answers(reply.answers);
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "dns: bad upstream reply for ExternalName"),
            Err(e) => tracing::debug!(error = %e, "dns: upstream failed for ExternalName"),
        }
    }
}

fn refusal(req: &Message, code: ResponseCode) -> Option<Vec<u8>> {
    let mut m = Message::error_msg(req.metadata.id, req.metadata.op_code, code);
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.add_queries(req.queries.iter().cloned());
    m.to_vec().ok()
}

/// Serialises a reply, truncating it (TC bit, no records) when it does not
/// fit the client's UDP buffer so the client retries over TCP.
fn encode(msg: &Message, req: &Message, transport: Transport) -> Option<Vec<u8>> {
    let bytes = msg.to_vec().ok()?;
    if transport == Transport::Tcp {
        return Some(bytes);
    }
    let limit = req
        .edns
        .as_ref()
        .map(|e| e.max_payload().clamp(512, resolve::EDNS_PAYLOAD))
        .unwrap_or(512);
    if bytes.len() <= usize::from(limit) {
        return Some(bytes);
    }
    msg.truncate().to_vec().ok()
}

/// Sends the raw query to the upstream over the same transport and returns
/// its raw reply.
async fn forward(
    raw: &[u8],
    upstream: SocketAddr,
    transport: Transport,
) -> std::io::Result<Vec<u8>> {
    let id = [raw[0], raw[1]];
    let fut = async {
        match transport {
            Transport::Udp => {
                let bind: SocketAddr = if upstream.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                let sock = UdpSocket::bind(bind).await?;
                sock.connect(upstream).await?;
                sock.send(raw).await?;
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = sock.recv(&mut buf).await?;
                    if n >= 12 && buf[..2] == id {
                        buf.truncate(n);
                        return Ok(buf);
                    }
                }
            }
            Transport::Tcp => {
                let mut conn = TcpStream::connect(upstream).await?;
                let len = u16::try_from(raw.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
                let mut out = len.to_be_bytes().to_vec();
                out.extend_from_slice(raw);
                conn.write_all(&out).await?;
                let n = conn.read_u16().await?;
                let mut buf = vec![0u8; usize::from(n)];
                conn.read_exact(&mut buf).await?;
                Ok(buf)
            }
        }
    };
    tokio::time::timeout(UPSTREAM_TIMEOUT, fut)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Binds UDP and TCP on `addr`, retrying while the address does not exist
/// yet (the pod bridge is created by the kubelet, maybe after we start).
pub async fn bind_with_retry(addr: SocketAddr) -> (UdpSocket, TcpListener) {
    let mut warned = false;
    loop {
        match bind(addr).await {
            Ok(socks) => {
                if warned {
                    tracing::info!(%addr, "dns listening");
                }
                return socks;
            }
            Err(e) => {
                if !warned {
                    tracing::info!(%addr, error = %e, "dns cannot listen yet; retrying until the address exists");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(addr).await?;
    let tcp = TcpListener::bind(addr).await?;
    Ok((udp, tcp))
}
