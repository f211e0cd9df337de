//! Service-account credentials: the `serviceaccounts/<name>/token`
//! subresource (TokenRequest, what the kubelet calls for projected token
//! volumes), verification of those tokens as `Authorization: Bearer`
//! credentials, and publishing the cluster CA as the `kube-root-ca.crt`
//! ConfigMap in every namespace (kube-controller-manager's root-ca
//! publisher; only the apiserver holds the CA here).
//!
//! Tokens are JWTs signed with HMAC-SHA256 by a random key kept in the
//! store (so they stay valid across restarts). Only the apiserver verifies
//! them, as in kube. The JWT and HMAC code is pure and unit-tested.

use crate::error::ApiError;
use crate::request::{body_type, decode_object, ResourcePath};
use crate::rest::{content_type, json_response, now_rfc3339, storage_key};
use crate::tls::UserInfo;
use crate::Inner;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The issuer and default audience of service-account tokens.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Where the signing key lives in the store.
pub const KEY_PATH: &str = "/registry/minik/serviceaccount-signing-key";
/// The name of the CA ConfigMap in every namespace.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

/// Why a bearer token was refused (answered 401; the reason is logged).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("the token is not a JWT")]
    Malformed,
    #[error("the token signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not meant for the API server (audience)")]
    WrongAudience,
    #[error("the service account of the token no longer exists")]
    Revoked,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer.finalize());
    out
}

/// Signs claims into a compact JWT.
pub fn sign(key: &[u8], claims: &Value) -> String {
    let header = b64(br#"{"alg":"HS256","typ":"JWT","kid":"minik"}"#);
    let body = b64(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{body}");
    let sig = b64(&hmac_sha256(key, signing_input.as_bytes()));
    format!("{signing_input}.{sig}")
}

/// Verifies signature, time and audience; returns the claims.
pub fn verify(key: &[u8], token: &str, now: i64) -> Result<Value, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(b), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed)?;
    let want = hmac_sha256(key, format!("{h}.{b}").as_bytes());
    // constant time: the comparison must not leak how many bytes matched
    if sig.len() != want.len()
        || sig
            .iter()
            .zip(want.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
    {
        return Err(TokenError::BadSignature);
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b)
        .map_err(|_| TokenError::Malformed)?;
    let claims: Value = serde_json::from_slice(&raw).map_err(|_| TokenError::Malformed)?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(TokenError::Malformed)?;
    if now >= exp {
        return Err(TokenError::Expired);
    }
    if claims
        .get("nbf")
        .and_then(Value::as_i64)
        .is_some_and(|nbf| now < nbf)
    {
        return Err(TokenError::Expired);
    }
    let aud_ok = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == ISSUER));
    if !aud_ok {
        return Err(TokenError::WrongAudience);
    }
    Ok(claims)
}

/// The claims of a token for a service account (kube's layout).
pub fn claims(
    ns: &str,
    sa: &str,
    sa_uid: &str,
    audiences: &[String],
    iat: i64,
    exp: i64,
    pod: Option<(&str, &str)>,
) -> Value {
    let aud: Vec<String> = if audiences.is_empty() {
        vec![ISSUER.to_string()]
    } else {
        audiences.to_vec()
    };
    let mut k8s = json!({"namespace": ns, "serviceaccount": {"name": sa, "uid": sa_uid}});
    if let Some((name, uid)) = pod {
        k8s["pod"] = json!({"name": name, "uid": uid});
    }
    json!({
        "aud": aud, "exp": exp, "iat": iat, "nbf": iat, "iss": ISSUER,
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
        "kubernetes.io": k8s,
    })
}

/// The user a verified token stands for.
pub fn user_of(claims: &Value) -> Option<UserInfo> {
    let ns = claims.pointer("/kubernetes.io/namespace")?.as_str()?;
    let sa = claims
        .pointer("/kubernetes.io/serviceaccount/name")?
        .as_str()?;
    Some(UserInfo {
        name: format!("system:serviceaccount:{ns}:{sa}"),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
        ],
    })
}

fn random_key() -> Vec<u8> {
    use rand::RngCore;
    let mut k = vec![0u8; 32];
    rand::rng().fill_bytes(&mut k);
    k
}

impl Inner {
    /// The token signing key, made on first use and kept in the store.
    pub async fn signing_key(&self) -> Result<Vec<u8>, ApiError> {
        if let Some(k) = self.sa_key.get() {
            return Ok(k.clone());
        }
        let key = match self.store.get(KEY_PATH) {
            Some(kv) => hex::decode(&kv.value[..])
                .map_err(|_| ApiError::internal(format!("{KEY_PATH} is not hex")))?,
            None => {
                let k = random_key();
                match self
                    .store
                    .create(KEY_PATH, hex::encode(&k).into_bytes())
                    .await
                {
                    Ok(_) => k,
                    // another request made it first: use theirs
                    Err(minik_store::StoreError::AlreadyExists { .. }) => {
                        let kv = self
                            .store
                            .get(KEY_PATH)
                            .ok_or_else(|| ApiError::internal("signing key vanished"))?;
                        hex::decode(&kv.value[..])
                            .map_err(|_| ApiError::internal(format!("{KEY_PATH} is not hex")))?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let _ = self.sa_key.set(key.clone());
        Ok(key)
    }

    /// `POST serviceaccounts/<name>/token`.
    pub async fn token_request(
        &self,
        p: &ResourcePath,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let ns = p.namespace.clone().unwrap_or_default();
        let name = p.name.clone().unwrap_or_default();
        let (sa, _) = self.read(p.info, Some(&ns), &name)?;
        let req = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            decode_object(body, body_type(content_type(headers))?)?
        };
        let audiences: Vec<String> = req
            .pointer("/spec/audiences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let secs = req
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(3600);
        if secs < 600 {
            return Err(ApiError::new(422, "Invalid", format!(
                "TokenRequest.authentication.k8s.io \"{name}\" is invalid: spec.expirationSeconds: Invalid value: {secs}: may not specify a duration less than 10 minutes"
            )));
        }
        let secs = secs.min(48 * 3600);
        let mut pod = None;
        if let Some(r) = req.pointer("/spec/boundObjectRef") {
            let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
            let pname = r
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if kind == "Pod" && !pname.is_empty() {
                let pods = minik_apimachinery::resources::find("", "v1", "pods")
                    .ok_or_else(|| ApiError::internal("pods resource missing"))?;
                let (pobj, _) = self.read(pods, Some(&ns), &pname)?;
                let uid = pobj
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                pod = Some((pname, uid));
            }
        }
        let now = Utc::now().timestamp();
        let exp = now + secs;
        let sa_uid = sa
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        let c = claims(
            &ns,
            &name,
            sa_uid,
            &audiences,
            now,
            exp,
            pod.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
        );
        let token = sign(&self.signing_key().await?, &c);
        let exp_ts = DateTime::from_timestamp(exp, 0)
            .unwrap_or_else(Utc::now)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut out = req.clone();
        out["apiVersion"] = json!("authentication.k8s.io/v1");
        out["kind"] = json!("TokenRequest");
        out["metadata"] =
            json!({"name": name, "namespace": ns, "creationTimestamp": now_rfc3339()});
        out["spec"]["audiences"] = json!(if audiences.is_empty() {
            vec![ISSUER.to_string()]
        } else {
            audiences
        });
        out["spec"]["expirationSeconds"] = json!(secs);
        out["status"] = json!({"token": token, "expirationTimestamp": exp_ts});
        Ok(json_response(StatusCode::CREATED, &out))
    }

    /// Authenticates `Authorization: Bearer <token>`; None when refused.
    pub async fn authenticate_bearer(&self, headers: &HeaderMap) -> Option<UserInfo> {
        let token = headers
            .get(axum::http::header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim()
            .to_string();
        let key = self.signing_key().await.ok()?;
        let claims = match verify(&key, &token, Utc::now().timestamp()) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("bearer token refused: {e}");
                return None;
            }
        };
        // the service account (and a bound pod) must still exist, same uid
        let ns = claims.pointer("/kubernetes.io/namespace")?.as_str()?;
        let sa = claims
            .pointer("/kubernetes.io/serviceaccount/name")?
            .as_str()?;
        let sa_uid = claims
            .pointer("/kubernetes.io/serviceaccount/uid")?
            .as_str()?;
        let sas = minik_apimachinery::resources::find("", "v1", "serviceaccounts")?;
        let (obj, _) = self.read(sas, Some(ns), sa).ok()?;
        if obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(sa_uid) {
            tracing::debug!("bearer token refused: {}", TokenError::Revoked);
            return None;
        }
        if let (Some(pname), Some(puid)) = (
            claims
                .pointer("/kubernetes.io/pod/name")
                .and_then(Value::as_str),
            claims
                .pointer("/kubernetes.io/pod/uid")
                .and_then(Value::as_str),
        ) {
            let pods = minik_apimachinery::resources::find("", "v1", "pods")?;
            let (p, _) = self.read(pods, Some(ns), pname).ok()?;
            if p.pointer("/metadata/uid").and_then(Value::as_str) != Some(puid) {
                return None;
            }
        }
        user_of(&claims)
    }

    /// Makes sure `kube-root-ca.crt` holds the CA in every live namespace.
    pub async fn publish_root_ca(&self) {
        let Some(ca) = self.root_ca.get().cloned() else {
            return;
        };
        let (Some(nss), Some(cms)) = (
            minik_apimachinery::resources::find("", "v1", "namespaces"),
            minik_apimachinery::resources::find("", "v1", "configmaps"),
        ) else {
            return;
        };
        let (items, _, _) = match self.list_objects(nss, None, &Default::default(), 0, None) {
            Ok(l) => l,
            Err(_) => return,
        };
        for ns in items {
            let name = ns
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if ns
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null())
            {
                continue;
            }
            match self
                .store
                .get(&storage_key(cms, Some(&name), ROOT_CA_CONFIGMAP))
            {
                Some(kv) => {
                    let current: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
                    if current.pointer("/data/ca.crt").and_then(Value::as_str) != Some(ca.as_str())
                    {
                        let ca2 = ca.clone();
                        let _ = self
                            .update_with(
                                cms,
                                Some(&name),
                                ROOT_CA_CONFIGMAP,
                                crate::rest::UpdateMode::Raw,
                                false,
                                move |old| {
                                    let mut new = old.clone();
                                    new["data"] = json!({"ca.crt": ca2});
                                    Ok(new)
                                },
                            )
                            .await;
                    }
                }
                None => {
                    let cm = json!({"metadata": {"name": ROOT_CA_CONFIGMAP, "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}}, "data": {"ca.crt": ca}});
                    if let Err(e) = self.create_object(cms, Some(&name), cm, false).await {
                        if e.reason != "AlreadyExists" && e.reason != "Forbidden" {
                            tracing::warn!(
                                "publishing {ROOT_CA_CONFIGMAP} in {name}: {}",
                                e.message
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Keeps `kube-root-ca.crt` published until the apiserver is dropped:
/// every 30 seconds and whenever `wake` fires (a namespace was created).
pub fn spawn_root_ca_publisher(
    inner: std::sync::Weak<Inner>,
    wake: std::sync::Arc<tokio::sync::Notify>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            match inner.upgrade() {
                Some(strong) => strong.publish_root_ca().await,
                None => return,
            }
            // wait without holding the apiserver alive
            tokio::select! {
                _ = tick.tick() => {}
                _ = wake.notified() => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tokens_verify_and_expire() {
        let key = b"0123456789abcdef0123456789abcdef";
        let c = claims(
            "default",
            "robot",
            "uid-1",
            &[],
            1000,
            5000,
            Some(("p", "puid")),
        );
        let t = sign(key, &c);
        let got = verify(key, &t, 2000).unwrap();
        assert_eq!(got["sub"], "system:serviceaccount:default:robot");
        let u = user_of(&got).unwrap();
        assert_eq!(u.name, "system:serviceaccount:default:robot");
        assert!(u
            .groups
            .contains(&"system:serviceaccounts:default".to_string()));
        assert_eq!(verify(key, &t, 6000), Err(TokenError::Expired));
        assert_eq!(
            verify(b"another key", &t, 2000),
            Err(TokenError::BadSignature)
        );
        let mut forged = t.clone();
        forged.push('x');
        assert!(verify(key, &forged, 2000).is_err());
        assert_eq!(verify(key, "nope", 2000), Err(TokenError::Malformed));
        let vault = sign(
            key,
            &claims(
                "default",
                "robot",
                "uid-1",
                &["vault".into()],
                1000,
                5000,
                None,
            ),
        );
        assert_eq!(verify(key, &vault, 2000), Err(TokenError::WrongAudience));
    }
}
