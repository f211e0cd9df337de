//! minik-apiserver: the Kubernetes API server of minik. Serves discovery,
//! OpenAPI, and one generic REST path over `minik-store` for every resource
//! in `minik_apimachinery::builtin_resources()` and every resource a
//! CustomResourceDefinition defines (`crd`, `crd_schema`; per-resource
//! behaviour in `strategy`), watches, server-side Tables, and the
//! subresources kubectl and the node components use. APIServices with a
//! Service are proxied to their backend (`aggregator`); the `proxy`
//! subresources of nodes, services and pods go to the kubelet, the
//! Service's endpoint or the pod (`resource_proxy`, over `upstream`). It owns HTTP(S) and authentication
//! (client certificates; service-account bearer tokens); it does not touch
//! containers or the network (pod logs, exec, attach and port-forward are
//! proxied to the kubelet).
//!
//! The same `axum::Router` is served over TLS (`serve_tls`) and used
//! in-process by `kube::Client::new(router, ..)` (full access, no auth).
//!
//! Authorization is RBAC (`rbac`) for requests over TLS; `system:masters`
//! (the admin certificate) and in-process clients may do everything.

pub mod admission;
pub mod aggregator;
pub mod alloc;
pub mod convert;
pub mod crd;
pub mod crd_schema;
pub mod discovery;
pub mod error;
pub mod impersonation;
pub mod logs;
pub mod names;
pub mod openapi_v2;
pub mod proxy;
pub mod rbac;
pub mod request;
pub mod resource_proxy;
pub mod rest;
pub mod selector;
pub mod serviceaccount;
pub mod ssa;
pub mod strategy;
pub mod subresources;
pub mod table;
pub mod tls;
pub mod ttl;
pub mod upstream;
pub mod watch;

use crate::error::ApiError;
use crate::request::{output, route_in, Query, ResourcePath, Route};
use crate::rest::{json_response, storage_key, verb_not_allowed, UpdateMode};
use crate::tls::Authn;
use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use minik_apimachinery::resources;
use minik_store::Store;
use serde_json::{json, Value};
use std::sync::Arc;

pub use tls::UserInfo;

/// The reported server version (kubectl's dispatcher picks its build from `minor`).
pub const VERSION_MAJOR: &str = "1";
pub const VERSION_MINOR: &str = "33";
pub const GIT_VERSION: &str = "v1.33.2";

/// kube-apiserver's limit on a request body (3 MiB).
pub const MAX_REQUEST_BODY: usize = 3 * 1024 * 1024;

/// Cluster settings the apiserver needs.
#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    /// Service IP range, `10.96.0.0/12`.
    pub service_cidr: String,
    /// NodePort range, `(30000, 32767)`.
    pub node_port_range: (u16, u16),
    /// The address published in the `kubernetes` Endpoints.
    pub advertise_address: String,
    /// The TLS port published in the `kubernetes` Endpoints.
    pub secure_port: u16,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        ApiServerOptions {
            service_cidr: "10.96.0.0/12".into(),
            node_port_range: (30000, 32767),
            advertise_address: "127.0.0.1".into(),
            secure_port: 8443,
        }
    }
}

/// PEM material for `serve_tls`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_cert_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Shared state of all handlers.
pub struct Inner {
    pub(crate) store: Store,
    pub(crate) opts: ApiServerOptions,
    pub(crate) alloc: alloc::Allocator,
    /// Serialises Service writes so allocations derived from the stored
    /// Services cannot race.
    pub(crate) svc_lock: tokio::sync::Mutex<()>,
    pub(crate) http: HttpClient<HttpConnector, Empty<Bytes>>,
    /// Watches currently streaming (for diagnostics and tests).
    pub(crate) active_watches: Arc<std::sync::atomic::AtomicUsize>,
    /// Watch events decoded and encoded once for all watchers.
    pub(crate) watch_cache: Arc<watch::WatchCache>,
    /// The service-account token signing key (loaded from the store on first use).
    pub(crate) sa_key: std::sync::OnceLock<Vec<u8>>,
    /// The cluster CA, known once `serve_tls` runs; published as `kube-root-ca.crt`.
    pub(crate) root_ca: std::sync::OnceLock<String>,
    /// Wakes the root-CA publisher (a namespace was created).
    pub(crate) ca_notify: Arc<tokio::sync::Notify>,
    /// The resources CustomResourceDefinitions define.
    pub(crate) crds: crd::Registry,
    /// The APIServices served by other API servers.
    pub(crate) apis: aggregator::Registry,
}

impl Inner {
    /// Every served resource: the built-in table, then the CRD versions.
    pub(crate) fn all_resources(&self) -> Vec<&'static resources::ResourceInfo> {
        let mut all: Vec<&'static resources::ResourceInfo> =
            resources::builtin_resources().iter().collect();
        all.extend(self.crds.all().iter().map(|v| v.info));
        all.extend(self.apis.resources());
        all
    }
}

/// The API server. Cheap to clone.
#[derive(Clone)]
pub struct ApiServer {
    inner: Arc<Inner>,
}

fn info(group: &str, resource: &str) -> anyhow::Result<&'static resources::ResourceInfo> {
    resources::find(group, "v1", resource)
        .with_context(|| format!("built-in resource {resource} is missing from the resource table"))
}

impl ApiServer {
    /// Opens the API over `store` and makes sure the namespaces `default`,
    /// `kube-system`, `kube-public`, `kube-node-lease` and the `kubernetes`
    /// Service, Endpoints and EndpointSlice exist.
    pub async fn new(store: Store, opts: ApiServerOptions) -> anyhow::Result<ApiServer> {
        let alloc = alloc::Allocator::new(&opts.service_cidr, opts.node_port_range)?;
        let http = HttpClient::builder(TokioExecutor::new()).build_http();
        let server = ApiServer {
            inner: Arc::new(Inner {
                store,
                opts,
                alloc,
                svc_lock: tokio::sync::Mutex::new(()),
                http,
                active_watches: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
                watch_cache: Default::default(),
                sa_key: std::sync::OnceLock::new(),
                root_ca: std::sync::OnceLock::new(),
                ca_notify: Arc::new(tokio::sync::Notify::new()),
                crds: crd::Registry::default(),
                apis: aggregator::Registry::default(),
            }),
        };
        server.bootstrap().await?;
        server.inner.reload_crds();
        server.inner.reload_apiservices();
        server.inner.sync_crd_apiservices().await;
        aggregator::spawn_checker(Arc::downgrade(&server.inner));
        // CRDs deleted while the server was down still need their cleanup
        for c in server.inner.stored_crds() {
            if c.pointer("/metadata/deletionTimestamp")
                .is_some_and(|t| !t.is_null())
            {
                if let Some(n) = c.pointer("/metadata/name").and_then(Value::as_str) {
                    server.inner.after_crd_write(n).await;
                }
            }
        }
        ttl::spawn_event_sweeper(Arc::downgrade(&server.inner));
        Ok(server)
    }

    async fn ensure(
        &self,
        info: &'static resources::ResourceInfo,
        ns: Option<&str>,
        obj: Value,
    ) -> anyhow::Result<()> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if self
            .inner
            .store
            .get(&storage_key(info, ns, &name))
            .is_some()
        {
            return Ok(());
        }
        match self.inner.create_object(info, ns, obj, false).await {
            Ok(_) => Ok(()),
            Err(e) if e.reason == "AlreadyExists" => Ok(()),
            Err(e) => Err(anyhow::anyhow!(
                "creating {} {name}: {}",
                info.resource,
                e.message
            )),
        }
    }

    async fn bootstrap(&self) -> anyhow::Result<()> {
        let ns = info("", "namespaces")?;
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            self.ensure(ns, None, json!({"metadata": {"name": name}}))
                .await?;
        }
        let o = &self.inner.opts;
        let ip = self.inner.alloc.cidr.nth(1).to_string();
        self.ensure(
            info("", "services")?,
            Some("default"),
            json!({"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                   "spec": {"type": "ClusterIP", "clusterIP": ip,
                            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": o.secure_port}]}}),
        )
        .await?;
        let subsets = json!([{"addresses": [{"ip": o.advertise_address}], "ports": [{"name": "https", "port": o.secure_port, "protocol": "TCP"}]}]);
        let ep = info("", "endpoints")?;
        self.ensure(
            ep,
            Some("default"),
            json!({"metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}}, "subsets": subsets}),
        )
        .await?;
        // the advertise address may change between runs (VM IP): reconcile
        let subsets2 = subsets.clone();
        self.inner
            .update_with(
                ep,
                Some("default"),
                "kubernetes",
                UpdateMode::Raw,
                false,
                move |old| {
                    let mut new = old.clone();
                    new["subsets"] = subsets2.clone();
                    Ok(new)
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("reconciling the kubernetes Endpoints: {}", e.message))?;
        let slice = json!({
            "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [o.advertise_address], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": o.secure_port, "protocol": "TCP"}],
        });
        let es = resources::find("discovery.k8s.io", "v1", "endpointslices")
            .context("endpointslices missing from the resource table")?;
        self.ensure(es, Some("default"), slice.clone()).await?;
        self.inner
            .update_with(
                es,
                Some("default"),
                "kubernetes",
                UpdateMode::Raw,
                false,
                move |old| {
                    let mut new = old.clone();
                    new["endpoints"] = slice["endpoints"].clone();
                    new["ports"] = slice["ports"].clone();
                    Ok(new)
                },
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!("reconciling the kubernetes EndpointSlice: {}", e.message)
            })?;
        let rbac_group = "rbac.authorization.k8s.io";
        let roles = resources::find(rbac_group, "v1", "clusterroles")
            .context("clusterroles missing from the resource table")?;
        let bindings = resources::find(rbac_group, "v1", "clusterrolebindings")
            .context("clusterrolebindings missing from the resource table")?;
        let labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
        for (name, rules) in rbac::bootstrap_cluster_roles() {
            self.ensure(
                roles,
                None,
                json!({"metadata": {"name": name, "labels": labels}, "rules": rules}),
            )
            .await?;
        }
        for (name, role, groups) in rbac::bootstrap_bindings() {
            let subjects: Vec<Value> = groups
                .iter()
                .map(|g| json!({"apiGroup": rbac_group, "kind": "Group", "name": g}))
                .collect();
            self.ensure(
                bindings,
                None,
                json!({"metadata": {"name": name, "labels": labels},
                       "roleRef": {"apiGroup": rbac_group, "kind": "ClusterRole", "name": role},
                       "subjects": subjects}),
            )
            .await?;
        }
        // Local APIServices for the built-in group-versions, as kube-aggregator
        // registers them (`kubectl get apiservices`)
        let apiservices = resources::find(aggregator::GROUP, "v1", "apiservices")
            .context("apiservices missing from the resource table")?;
        for (i, (group, version)) in aggregator::builtin_group_versions().into_iter().enumerate() {
            self.ensure(
                apiservices,
                None,
                json!({"metadata": {"name": format!("{version}.{group}"), "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
                       "spec": {"group": group, "version": version,
                                "groupPriorityMinimum": 18000 - 100 * i as i64, "versionPriority": 15}}),
            )
            .await?;
        }
        Ok(())
    }

    /// How many watch streams are open right now. A watch ends when its
    /// client goes away, so this returns to 0 once clients disconnect.
    pub fn active_watches(&self) -> usize {
        self.inner
            .active_watches
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The full-access router (no authentication): for in-process clients.
    pub fn router(&self) -> Router {
        Router::new()
            .fallback(dispatch)
            .with_state(self.inner.clone())
    }

    /// Serves the router over TLS on `listener` until the listener fails.
    /// Clients must present a certificate signed by `tls.ca_cert_pem`.
    pub async fn serve_tls(
        &self,
        listener: tokio::net::TcpListener,
        tls: TlsFiles,
    ) -> anyhow::Result<()> {
        let cfg = tls::server_config(&tls.ca_cert_pem, &tls.cert_pem, &tls.key_pem)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        if self.inner.root_ca.set(tls.ca_cert_pem.clone()).is_ok() {
            serviceaccount::spawn_root_ca_publisher(
                Arc::downgrade(&self.inner),
                self.inner.ca_notify.clone(),
            );
        }
        let router = self.router();
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // e.g. EMFILE: back off instead of spinning
                    tracing::warn!("apiserver accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                let stream = match acceptor.accept(tcp).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!("TLS handshake with {peer} failed: {e}");
                        return;
                    }
                };
                let authn = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| tls::user_from_cert(c))
                    .map(Authn::User)
                    .unwrap_or(Authn::Anonymous);
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let mut req = req.map(Body::new);
                        req.extensions_mut().insert(authn.clone());
                        let router = router.clone();
                        async move { tower::ServiceExt::oneshot(router, req).await }
                    },
                );
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(e) = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await
                {
                    tracing::debug!("connection from {peer} ended: {e}");
                }
            });
        }
    }
}

/// The groups of a user as kube reports them (plus `system:authenticated`).
pub(crate) fn user_groups(user: &UserInfo) -> Vec<String> {
    let mut g = user.groups.clone();
    if !g.iter().any(|x| x == "system:authenticated") {
        g.push("system:authenticated".into());
    }
    g
}

/// Answers a SelfSubjectAccessReview with the RBAC authorizer.
fn access_review(inner: &Inner, mut review: Value, user: &UserInfo) -> Value {
    let s = |p: &str| {
        review
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let attrs = if review.pointer("/spec/resourceAttributes").is_some() {
        rbac::Attributes {
            verb: s("/spec/resourceAttributes/verb"),
            resource_request: true,
            api_group: s("/spec/resourceAttributes/group"),
            resource: s("/spec/resourceAttributes/resource"),
            subresource: s("/spec/resourceAttributes/subresource"),
            namespace: s("/spec/resourceAttributes/namespace"),
            name: s("/spec/resourceAttributes/name"),
            path: String::new(),
        }
    } else {
        rbac::Attributes {
            verb: s("/spec/nonResourceAttributes/verb"),
            path: s("/spec/nonResourceAttributes/path"),
            ..Default::default()
        }
    };
    let allowed = inner.authorize(user, &attrs);
    let status = if user.is_admin() {
        json!({"allowed": true, "reason": "the user is in the system:masters group"})
    } else if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed by a role binding"})
    } else {
        json!({"allowed": false})
    };
    if let Some(m) = review.as_object_mut() {
        m.insert("apiVersion".into(), json!("authorization.k8s.io/v1"));
        m.insert("kind".into(), json!("SelfSubjectAccessReview"));
        m.entry("metadata").or_insert_with(|| json!({}));
        m.insert("status".into(), status);
    }
    review
}

/// What a request asks to do, for the authorizer.
fn request_attributes(method: &Method, r: &Route, path: &str, query: &Query) -> rbac::Attributes {
    match r {
        Route::Resource(p) => {
            let watch = p.watch_prefix || query.flag("watch");
            let sub = p.subresource.clone().unwrap_or_default();
            let verb = match (method.as_str(), p.name.is_some()) {
                _ if matches!(sub.as_str(), "exec" | "attach" | "portforward") => "create",
                ("GET" | "HEAD", _) if watch => "watch",
                ("GET" | "HEAD", true) => "get",
                ("GET" | "HEAD", false) => "list",
                ("POST", _) => "create",
                ("PUT", _) => "update",
                ("PATCH", _) => "patch",
                ("DELETE", true) => "delete",
                ("DELETE", false) => "deletecollection",
                (m, _) => {
                    return rbac::Attributes {
                        verb: m.to_lowercase(),
                        path: path.into(),
                        ..Default::default()
                    }
                }
            };
            rbac::Attributes {
                verb: verb.into(),
                resource_request: true,
                api_group: p.info.group.into(),
                resource: p.info.resource.into(),
                subresource: sub,
                namespace: p.namespace.clone().unwrap_or_default(),
                name: p.name.clone().unwrap_or_default(),
                path: String::new(),
            }
        }
        Route::SelfSubjectAccessReview => rbac::Attributes {
            verb: "create".into(),
            resource_request: true,
            api_group: "authorization.k8s.io".into(),
            resource: "selfsubjectaccessreviews".into(),
            ..Default::default()
        },
        Route::SelfSubjectReview => rbac::Attributes {
            verb: "create".into(),
            resource_request: true,
            api_group: "authentication.k8s.io".into(),
            resource: "selfsubjectreviews".into(),
            ..Default::default()
        },
        _ => rbac::Attributes {
            verb: method.as_str().to_lowercase().replace("head", "get"),
            path: path.into(),
            ..Default::default()
        },
    }
}

fn text(code: StatusCode, body: &'static str) -> Response {
    let mut r = (code, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn version_json() -> Value {
    json!({
        "major": VERSION_MAJOR, "minor": VERSION_MINOR,
        "emulationMajor": VERSION_MAJOR, "emulationMinor": VERSION_MINOR,
        "minCompatibilityMajor": "1", "minCompatibilityMinor": "32",
        "gitVersion": GIT_VERSION, "gitCommit": "minik", "gitTreeState": "clean",
        "buildDate": "2025-06-17T00:00:00Z", "goVersion": "go1.24.4", "compiler": "gc", "platform": "linux/amd64",
    })
}

async fn dispatch(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let r = route_in(parts.uri.path(), &|g, v, res| inner.crds.find(g, v, res));
    let user = match parts.extensions.get::<Authn>() {
        Some(Authn::User(u)) => u.clone(),
        Some(Authn::Anonymous) => match inner.authenticate_bearer(&parts.headers).await {
            Some(u) => u,
            None if matches!(r, Route::Version | Route::Health) => UserInfo {
                name: "system:anonymous".into(),
                groups: vec!["system:unauthenticated".into()],
            },
            None => return ApiError::unauthorized().into_response(),
        },
        // in-process clients are the node's own components: full access
        None => UserInfo {
            name: "system:admin".into(),
            groups: vec!["system:masters".into()],
        },
    };
    let user = match inner.impersonate(user, &parts.headers) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let q = Query::parse(parts.uri.query());
    // an aggregated group-version: authorize here, then the backend serves it
    let segs: Vec<&str> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    if let ["apis", g, v, rest @ ..] = segs.as_slice() {
        if let Some(remote) = inner.apis.remote_for(g, v) {
            if !user.is_admin() {
                let attrs = aggregator::attributes(&parts.method, g, rest, &q, parts.uri.path());
                if !inner.authorize(&user, &attrs) {
                    return ApiError::forbidden(rbac::forbidden_message(&user, &attrs))
                        .into_response();
                }
            }
            let pq = parts
                .uri
                .path_and_query()
                .map(|pq| pq.as_str().to_string())
                .unwrap_or_else(|| parts.uri.path().to_string());
            return match inner
                .proxy_aggregated(&remote, parts.method, &pq, &parts.headers, body, &user)
                .await
            {
                Ok(r) => r,
                Err(e) => e.into_response(),
            };
        }
    }
    if !user.is_admin() && !matches!(r, Route::Version | Route::Health) {
        let attrs = request_attributes(&parts.method, &r, parts.uri.path(), &q);
        if !inner.authorize(&user, &attrs) {
            let mut e = ApiError::forbidden(rbac::forbidden_message(&user, &attrs));
            if attrs.resource_request {
                e = e.with_details(
                    json!({"name": attrs.name, "group": attrs.api_group, "kind": attrs.resource}),
                );
            }
            return e.into_response();
        }
    }
    if let Route::Resource(p) = &r {
        if p.subresource.as_deref() == Some("proxy") && p.name.is_some() {
            return match inner
                .resource_proxy(
                    p,
                    parts.method.clone(),
                    parts.uri.path(),
                    parts.uri.query(),
                    &parts.headers,
                    body,
                )
                .await
            {
                Ok(r) => r,
                Err(e) => e.into_response(),
            };
        }
        if p.info.group.is_empty()
            && p.info.resource == "pods"
            && p.name.is_some()
            && matches!(
                p.subresource.as_deref(),
                Some("exec" | "attach" | "portforward")
            )
        {
            let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
            return match inner
                .stream_proxy(
                    p,
                    &q,
                    parts.uri.query(),
                    &parts.method,
                    &parts.headers,
                    on_upgrade,
                )
                .await
            {
                Ok(r) => r,
                Err(e) => e.into_response(),
            };
        }
    }
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
        Ok(b) => b,
        Err(e) => {
            let inner_err = e.into_inner();
            if inner_err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    format!("Request entity too large: limit is {MAX_REQUEST_BODY}"),
                )
                .into_response();
            }
            return ApiError::bad_request(format!("reading the request body failed: {inner_err}"))
                .into_response();
        }
    };
    let res = handle(
        inner,
        parts.method,
        r,
        parts.uri.query(),
        &parts.headers,
        &body,
        &user,
    )
    .await;
    match res {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    inner: Arc<Inner>,
    method: Method,
    r: Route,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    user: &UserInfo,
) -> Result<Response, ApiError> {
    let q = Query::parse(query);
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let get_only = |m: &Method| -> Result<(), ApiError> {
        if m == Method::GET || m == Method::HEAD {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(
                "only GET is allowed on this path",
            ))
        }
    };
    match r {
        Route::Version => {
            get_only(&method)?;
            Ok(json_response(StatusCode::OK, &version_json()))
        }
        Route::Health => Ok(text(StatusCode::OK, "ok")),
        Route::ApiRoot | Route::ApisRoot => {
            get_only(&method)?;
            let core = r == Route::ApiRoot;
            if let Some(v) = discovery::wants_aggregated(accept) {
                let all = inner.all_resources();
                let mut resp = json_response(StatusCode::OK, &discovery::aggregated(core, v, &all));
                let ct = if v == "v2" {
                    discovery::AGG_V2
                } else {
                    discovery::AGG_V2BETA1
                };
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
                resp.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("Accept"));
                return Ok(resp);
            }
            let body = if core {
                discovery::api_versions(&format!(
                    "{}:{}",
                    inner.opts.advertise_address, inner.opts.secure_port
                ))
            } else {
                discovery::api_group_list(&inner.all_resources())
            };
            let mut resp = json_response(StatusCode::OK, &body);
            resp.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("Accept"));
            Ok(resp)
        }
        Route::Group(g) => {
            get_only(&method)?;
            discovery::api_group(&g, &inner.all_resources())
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or_else(ApiError::path_not_found)
        }
        Route::GroupVersion(g, v) => {
            get_only(&method)?;
            discovery::resource_list(&g, &v, &inner.all_resources())
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or_else(ApiError::path_not_found)
        }
        Route::OpenApiV3Index => {
            get_only(&method)?;
            let mut index = minik_apimachinery::openapi::v3_index();
            for (path, _, hash) in inner.crd_openapi_docs() {
                index["paths"][path.as_str()] =
                    json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")});
            }
            Ok(json_response(StatusCode::OK, &index))
        }
        Route::OpenApiV3(gv) => {
            get_only(&method)?;
            let (doc, current) = match minik_apimachinery::openapi::v3_group_version(&gv) {
                Some(doc) => (
                    doc,
                    minik_apimachinery::openapi::v3_hash(&gv)
                        .unwrap_or_default()
                        .to_string(),
                ),
                None => inner
                    .crd_openapi_docs()
                    .into_iter()
                    .find(|(p, _, _)| *p == gv)
                    .map(|(_, d, h)| (Arc::new(d), h))
                    .ok_or_else(ApiError::path_not_found)?,
            };
            let current = current.as_str();
            match q.get("hash") {
                // a stale hash: send the client to the current document, as kube does
                Some(h) if !current.is_empty() && h != current => {
                    let location = format!("/openapi/v3/{gv}?hash={current}");
                    let mut resp = StatusCode::MOVED_PERMANENTLY.into_response();
                    if let Ok(v) = HeaderValue::from_str(&location) {
                        resp.headers_mut().insert(header::LOCATION, v);
                    }
                    Ok(resp)
                }
                hash => {
                    let mut resp = json_response(StatusCode::OK, &doc);
                    // a matching hash pins the content: cacheable forever
                    let cache = if hash.is_some() {
                        "public, immutable"
                    } else {
                        "no-cache, private"
                    };
                    resp.headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
                    if let Ok(v) = HeaderValue::from_str(&format!("\"{current}\"")) {
                        resp.headers_mut().insert(header::ETAG, v);
                    }
                    Ok(resp)
                }
            }
        }
        Route::SelfSubjectAccessReview | Route::SelfSubjectReview => {
            if method != Method::POST {
                return Err(ApiError::method_not_allowed(
                    "only POST (create) is allowed on this review resource",
                ));
            }
            let ty = request::body_type(rest::content_type(headers))?;
            let review = request::decode_object(body, ty)?;
            let answer = if r == Route::SelfSubjectAccessReview {
                access_review(&inner, review, user)
            } else {
                json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                       "metadata": {"creationTimestamp": rest::now_rfc3339()},
                       "status": {"userInfo": {"username": user.name, "groups": user_groups(user)}}})
            };
            Ok(json_response(StatusCode::CREATED, &answer))
        }
        Route::OpenApiV2 => openapi_v2::serve(&method, headers, &inner.crd_openapi_docs()),
        Route::NotFound => Err(ApiError::path_not_found()),
        Route::Resource(p) => {
            let write = method != Method::GET && method != Method::HEAD;
            let fut = resource(inner.clone(), method, &p, &q, headers, body, output(accept));
            let res = ssa::with_writer(&p, &q, headers, fut).await;
            if write && aggregator::is_apiservice_resource(p.info) {
                inner.reload_apiservices();
            }
            if write
                && p.info.group.is_empty()
                && matches!(p.info.resource, "services" | "endpoints")
                || write && p.info.resource == "endpointslices"
            {
                inner.apis.wake.notify_one();
            }
            let mut res = res;
            if write && crd::is_crd_resource(p.info) {
                match &p.name {
                    Some(n) => inner.after_crd_write(n).await,
                    None => {
                        for c in inner.stored_crds() {
                            if let Some(n) = c.pointer("/metadata/name").and_then(Value::as_str) {
                                inner.after_crd_write(n).await;
                            }
                        }
                    }
                }
                // CEL rules are accepted but not evaluated: say so, as a warning
                if let Ok(r) = &mut res {
                    if r.status().is_success()
                        && body.windows(24).any(|w| w == b"x-kubernetes-validations")
                    {
                        r.headers_mut().append(
                            "Warning",
                            HeaderValue::from_static("299 - \"x-kubernetes-validations (CEL) rules are stored but not enforced by the minik API server\""),
                        );
                    }
                }
            }
            res
        }
    }
}

impl Inner {
    /// The OpenAPI v3 documents of the CRD group-versions: (path, doc, hash).
    fn crd_openapi_docs(&self) -> Vec<(String, Value, String)> {
        use sha2::Digest;
        let all = self.crds.all();
        let mut gvs: Vec<(&str, &str)> = Vec::new();
        for v in &all {
            if !gvs.contains(&(v.info.group, v.info.version)) {
                gvs.push((v.info.group, v.info.version));
            }
        }
        gvs.into_iter()
            .map(|(g, ver)| {
                let these: Vec<Arc<crd::CrdVersion>> = all
                    .iter()
                    .filter(|v| v.info.group == g && v.info.version == ver)
                    .cloned()
                    .collect();
                let doc = crd::openapi_doc(&these);
                let hash = hex::encode_upper(sha2::Sha512::digest(
                    serde_json::to_vec(&doc).unwrap_or_default(),
                ));
                (minik_apimachinery::openapi::gv_path(g, ver), doc, hash)
            })
            .collect()
    }
}

async fn resource(
    inner: Arc<Inner>,
    method: Method,
    p: &ResourcePath,
    q: &Query,
    headers: &HeaderMap,
    body: &[u8],
    out: request::Output,
) -> Result<Response, ApiError> {
    let is_watch = p.watch_prefix || q.flag("watch");
    let out = match out {
        request::Output::Table(_) => {
            request::Output::Table(request::Include::parse(q.get("includeObject"))?)
        }
        other => other,
    };
    let name = p.name.as_deref();
    let sub = p.subresource.as_deref();
    if p.info.namespaced && name.is_some() && p.namespace.is_none() {
        return Err(ApiError::path_not_found());
    }
    match (&method, name, sub) {
        (&Method::GET, _, None) if is_watch => watch::watch(inner.clone(), p, q, out).await,
        (&Method::GET, None, None) => inner.list(p, q, out).await,
        (&Method::GET, Some(_), None) | (&Method::GET, Some(_), Some("status")) => {
            inner.get(p, out).await
        }
        (&Method::GET, Some(_), Some("scale")) => inner.scale_get(p).await,
        (&Method::GET, Some(_), Some("log")) if p.info.resource == "pods" => {
            inner.pod_log(p, q).await
        }
        (&Method::POST, None, None) => inner.create(p, q, headers, body).await,
        (&Method::POST, Some(_), Some("binding")) if p.info.resource == "pods" => {
            inner.bind(p, q, body).await
        }
        (&Method::POST, Some(_), Some("token")) if p.info.resource == "serviceaccounts" => {
            inner.token_request(p, headers, body).await
        }
        (&Method::POST, Some(_), Some("eviction")) if p.info.resource == "pods" => {
            inner.evict(p, body).await
        }
        (&Method::PUT, Some(_), _) => inner.update(p, q, headers, body).await,
        (&Method::PATCH, Some(_), _) => inner.patch(p, q, headers, body).await,
        (&Method::DELETE, Some(_), None) => inner.delete(p, q, body).await,
        (&Method::DELETE, None, None) => inner.delete_collection(p, q, body).await,
        _ => Err(verb_not_allowed(method.as_str(), p.info)),
    }
}
