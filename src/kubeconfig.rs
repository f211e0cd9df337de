//! Merging the `minik` cluster, user and context into the user's kubeconfig
//! (`$KUBECONFIG`'s first file or `~/.kube/config`), keeping every other
//! entry, and removing them again on `minik delete`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_yaml::{Mapping, Value};

/// The kubeconfig file kubectl reads first.
pub fn path() -> Result<PathBuf> {
    if let Some(k) = std::env::var_os("KUBECONFIG") {
        if let Some(first) = std::env::split_paths(&k).find(|p| !p.as_os_str().is_empty()) {
            return Ok(first);
        }
    }
    let home = dirs::home_dir().context("cannot find the home directory; set KUBECONFIG")?;
    Ok(home.join(".kube").join("config"))
}

pub struct Entry<'a> {
    pub name: &'a str,
    pub server: &'a str,
    pub ca: &'a Path,
    pub client_cert: &'a Path,
    pub client_key: &'a Path,
}

fn load(path: &Path) -> Result<Value> {
    match fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => serde_yaml::from_str(&text).with_context(|| {
            format!(
                "{} is not valid YAML; fix or move it, then run the command again",
                path.display()
            )
        }),
        _ => Ok(serde_yaml::from_str(
            "apiVersion: v1\nkind: Config\npreferences: {}\nclusters: []\nusers: []\ncontexts: []\n",
        )?),
    }
}

fn save(path: &Path, doc: &Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    crate::profile::write_atomic(path, serde_yaml::to_string(doc)?.as_bytes())
}

/// Replaces the entry named `name` in the list `key` (or appends it).
fn upsert(doc: &mut Value, key: &str, name: &str, body_key: &str, body: Value) {
    let map = doc.as_mapping_mut().expect("kubeconfig root is a mapping");
    let list = map
        .entry(Value::from(key))
        .or_insert_with(|| Value::Sequence(vec![]));
    if !list.is_sequence() {
        *list = Value::Sequence(vec![]);
    }
    let seq = list.as_sequence_mut().expect("checked above");
    seq.retain(|e| e.get("name").and_then(Value::as_str) != Some(name));
    let mut m = Mapping::new();
    m.insert("name".into(), name.into());
    m.insert(body_key.into(), body);
    seq.push(Value::Mapping(m));
}

fn remove(doc: &mut Value, key: &str, name: &str) {
    if let Some(seq) = doc.get_mut(key).and_then(Value::as_sequence_mut) {
        seq.retain(|e| e.get("name").and_then(Value::as_str) != Some(name));
    }
}

/// Adds or refreshes the cluster, user and context `entry.name`, and makes it
/// the current context.
pub fn merge(path: &Path, entry: &Entry) -> Result<()> {
    let mut doc = load(path)?;
    if !doc.is_mapping() {
        doc = load(Path::new("/nonexistent"))?;
    }
    let s = |p: &Path| Value::from(p.display().to_string());
    let mut cluster = Mapping::new();
    cluster.insert("server".into(), entry.server.into());
    cluster.insert("certificate-authority".into(), s(entry.ca));
    upsert(
        &mut doc,
        "clusters",
        entry.name,
        "cluster",
        Value::Mapping(cluster),
    );
    let mut user = Mapping::new();
    user.insert("client-certificate".into(), s(entry.client_cert));
    user.insert("client-key".into(), s(entry.client_key));
    upsert(&mut doc, "users", entry.name, "user", Value::Mapping(user));
    let mut ctx = Mapping::new();
    ctx.insert("cluster".into(), entry.name.into());
    ctx.insert("user".into(), entry.name.into());
    ctx.insert("namespace".into(), "default".into());
    upsert(
        &mut doc,
        "contexts",
        entry.name,
        "context",
        Value::Mapping(ctx),
    );
    if let Some(m) = doc.as_mapping_mut() {
        m.insert("current-context".into(), entry.name.into());
    }
    save(path, &doc)
}

/// Removes the cluster, user and context `name`; clears current-context if it
/// pointed there. A missing file is fine.
pub fn unmerge(path: &Path, name: &str) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mut doc = load(path)?;
    remove(&mut doc, "clusters", name);
    remove(&mut doc, "users", name);
    remove(&mut doc, "contexts", name);
    if doc.get("current-context").and_then(Value::as_str) == Some(name) {
        if let Some(m) = doc.as_mapping_mut() {
            m.insert("current-context".into(), "".into());
        }
    }
    save(path, &doc)
}

/// Whether the context `name` exists and points at `server`.
pub fn is_configured(path: &Path, name: &str, server: &str) -> bool {
    let Ok(doc) = load(path) else { return false };
    let has_ctx = doc
        .get("contexts")
        .and_then(Value::as_sequence)
        .is_some_and(|s| {
            s.iter()
                .any(|e| e.get("name").and_then(Value::as_str) == Some(name))
        });
    let server_ok = doc
        .get("clusters")
        .and_then(Value::as_sequence)
        .and_then(|s| {
            s.iter()
                .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
        })
        .and_then(|c| {
            c.get("cluster")?
                .get("server")?
                .as_str()
                .map(|x| x == server)
        })
        .unwrap_or(false);
    has_ctx && server_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_other_contexts_and_unmerge_removes_ours() {
        let dir = std::env::temp_dir().join(format!("minik-kc-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config");
        fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: 'https://x'}\ncontexts:\n- name: other\n  context: {cluster: other, user: other}\nusers:\n- name: other\n  user: {token: t}\ncurrent-context: other\n",
        )
        .unwrap();
        let e = Entry {
            name: "minik",
            server: "https://127.0.0.1:8443",
            ca: Path::new("/c/ca.crt"),
            client_cert: Path::new("/c/a.crt"),
            client_key: Path::new("/c/a.key"),
        };
        merge(&path, &e).unwrap();
        merge(&path, &e).unwrap();
        let doc = load(&path).unwrap();
        assert_eq!(doc["current-context"].as_str(), Some("minik"));
        assert_eq!(doc["contexts"].as_sequence().unwrap().len(), 2);
        assert!(is_configured(&path, "minik", "https://127.0.0.1:8443"));
        unmerge(&path, "minik").unwrap();
        let doc = load(&path).unwrap();
        assert_eq!(doc["contexts"].as_sequence().unwrap().len(), 1);
        assert_eq!(doc["clusters"][0]["name"].as_str(), Some("other"));
        assert!(!is_configured(&path, "minik", "https://127.0.0.1:8443"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
