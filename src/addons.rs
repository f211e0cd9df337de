//! Addons: optional cluster components kept as data. Each addon is a folder
//! `addons/<name>/` of YAML manifests (several documents per file), compiled
//! into the binary through the table below. Enabling one applies every
//! object with server-side apply (field manager `minik`), labelled
//! `addonmanager.minik.io/addon=<name>`; disabling deletes what carries the
//! label. Owns the table, manifest parsing, label injection and the REST
//! paths of addon objects; which addons are on is the profile's `addons`.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;

use crate::api::ApiClient;

/// The label every object of an addon carries.
pub const ADDON_LABEL: &str = "addonmanager.minik.io/addon";
/// The server-side apply field manager.
pub const FIELD_MANAGER: &str = "minik";

/// One addon: its manifests are applied in order, deleted in reverse.
#[derive(Debug)]
pub struct Addon {
    pub name: &'static str,
    pub description: &'static str,
    pub manifests: &'static [&'static str],
    /// Enabled on a new cluster without asking.
    pub default_enabled: bool,
}

pub const ADDONS: &[Addon] = &[Addon {
    name: "dashboard",
    description: "The minik web UI: workloads, logs, scale, YAML (`minik dashboard`)",
    manifests: &[include_str!("../addons/dashboard/dashboard.yaml")],
    default_enabled: false,
}, Addon {
    name: "ingress",
    description: "An ingress controller on the node's ports 80/443 (IngressClass nginx, the default)",
    manifests: &[include_str!("../addons/ingress/ingress.yaml")],
    default_enabled: false,
}, Addon {
    name: "metrics-server",
    description: "Node and pod CPU/memory for `kubectl top` (metrics.k8s.io)",
    manifests: &[include_str!("../addons/metrics-server/metrics-server.yaml")],
    default_enabled: false,
}, Addon {
    name: "registry",
    description: "A Docker registry on the node at localhost:5000 (pods pull `localhost:5000/<image>`)",
    manifests: &[include_str!("../addons/registry/registry.yaml")],
    default_enabled: false,
}, Addon {
    name: "storage-provisioner",
    description: "Makes a hostPath PersistentVolume for every claim (minik.io/hostpath), kept across restarts",
    manifests: &[include_str!("../addons/storage-provisioner/storage-provisioner.yaml")],
    default_enabled: true,
}, Addon {
    name: "default-storageclass",
    description: "StorageClass `standard`, the default for claims that name none",
    manifests: &[include_str!("../addons/default-storageclass/storageclass.yaml")],
    default_enabled: true,
}];

#[derive(Debug, thiserror::Error)]
pub enum AddonError {
    #[error("unknown addon {name:?}: the addons are {known} (see `minik addons list`)")]
    Unknown { name: String, known: String },
    #[error("addon {addon}: a manifest is not valid YAML: {source}")]
    Yaml {
        addon: String,
        source: serde_yaml::Error,
    },
    #[error(
        "addon {addon}: document {index} is not an object with apiVersion, kind and metadata.name"
    )]
    NotAnObject { addon: String, index: usize },
    #[error("addon {addon}: {api_version} {kind} is not a resource this cluster serves")]
    UnknownKind {
        addon: String,
        api_version: String,
        kind: String,
    },
}

/// Looks an addon up by name.
pub fn find(name: &str) -> Result<&'static Addon, AddonError> {
    ADDONS
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| AddonError::Unknown {
            name: name.to_string(),
            known: ADDONS.iter().map(|a| a.name).collect::<Vec<_>>().join(", "),
        })
}

/// The addons a new cluster starts with.
pub fn default_enabled() -> Vec<String> {
    ADDONS
        .iter()
        .filter(|a| a.default_enabled)
        .map(|a| a.name.to_string())
        .collect()
}

/// One object of an addon, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The manifest with the addon label added.
    pub body: Value,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    /// `/api/v1/namespaces/ns/services/name`
    pub path: String,
    /// The collection across all namespaces: `/api/v1/services`.
    pub all_namespaces: String,
}

/// The documents of a multi-document YAML text, empty ones skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, serde_yaml::Error> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Adds `addonmanager.minik.io/addon=<addon>` to an object's labels.
pub fn with_label(mut obj: Value, addon: &str) -> Value {
    if let Some(o) = obj.as_object_mut() {
        let meta = o
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if !meta.is_object() {
            *meta = Value::Object(Default::default());
        }
        let labels = meta
            .as_object_mut()
            .expect("metadata is an object")
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if !labels.is_object() {
            *labels = Value::Object(Default::default());
        }
        labels
            .as_object_mut()
            .expect("labels is an object")
            .insert(ADDON_LABEL.into(), Value::String(addon.into()));
    }
    obj
}

/// `(group, version)` of an apiVersion: `apps/v1` → (`apps`, `v1`), `v1` → (``, `v1`).
fn group_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// What an addon's manifests may name about the node they run on. A
/// manifest writes `${MINIK_NODE_ROOT}` for the agent's data directory
/// (`/var/lib/minik` in a VM, the profile's `node/` with the none driver),
/// e.g. for a hostPath that must survive `minik stop`/`start`.
#[derive(Debug, Clone, PartialEq)]
pub struct Vars {
    pub node_root: String,
}

impl Default for Vars {
    fn default() -> Self {
        Vars {
            node_root: "/var/lib/minik".to_string(),
        }
    }
}

impl Vars {
    /// The values for a profile: its driver decides where the node root is.
    pub fn for_profile(profile: &crate::profile::Profile, driver: &str) -> Vars {
        if driver == "none" {
            Vars {
                node_root: profile.node_root().display().to_string(),
            }
        } else {
            Vars::default()
        }
    }

    fn expand(&self, text: &str) -> String {
        text.replace("${MINIK_NODE_ROOT}", &self.node_root)
    }
}

/// Every object of an addon, labelled, with its REST paths, in apply order
/// (variables at their defaults: enough for names and paths).
pub fn objects(addon: &Addon) -> Result<Vec<Object>, AddonError> {
    objects_with(addon, &Vars::default())
}

/// Every object of an addon with the node's variables filled in.
pub fn objects_with(addon: &Addon, vars: &Vars) -> Result<Vec<Object>, AddonError> {
    let mut out = Vec::new();
    let mut index = 0;
    for text in addon.manifests {
        let text = vars.expand(text);
        let docs = parse_documents(&text).map_err(|source| AddonError::Yaml {
            addon: addon.name.into(),
            source,
        })?;
        for doc in docs {
            index += 1;
            let s = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
            let (Some(api_version), Some(kind), Some(name)) = (
                s(&doc["apiVersion"]),
                s(&doc["kind"]),
                s(&doc["metadata"]["name"]),
            ) else {
                return Err(AddonError::NotAnObject {
                    addon: addon.name.into(),
                    index,
                });
            };
            let (group, version) = group_version(&api_version);
            let info = minik_apimachinery::resources::find_kind(group, version, &kind).ok_or_else(
                || AddonError::UnknownKind {
                    addon: addon.name.into(),
                    api_version: api_version.clone(),
                    kind: kind.clone(),
                },
            )?;
            let prefix = if group.is_empty() {
                format!("/api/{version}")
            } else {
                format!("/apis/{group}/{version}")
            };
            let namespace = info
                .namespaced
                .then(|| s(&doc["metadata"]["namespace"]).unwrap_or_else(|| "default".to_string()));
            let path = match &namespace {
                Some(ns) => format!("{prefix}/namespaces/{ns}/{}/{name}", info.resource),
                None => format!("{prefix}/{}/{name}", info.resource),
            };
            let mut body = with_label(doc, addon.name);
            if let Some(ns) = &namespace {
                body["metadata"]["namespace"] = Value::String(ns.clone());
            }
            out.push(Object {
                body,
                kind,
                name,
                namespace,
                path,
                all_namespaces: format!("{prefix}/{}", info.resource),
            });
        }
    }
    Ok(out)
}

/// `labelSelector=addonmanager.minik.io%2Faddon%3D<name>`
pub fn label_selector_query(addon: &str) -> String {
    let enc = |s: &str| {
        s.replace('%', "%25")
            .replace('/', "%2F")
            .replace('=', "%3D")
    };
    format!("labelSelector={}", enc(&format!("{ADDON_LABEL}={addon}")))
}

/// Applies every object of the addon (idempotent: server-side apply).
pub async fn apply(client: &ApiClient, addon: &Addon, vars: &Vars) -> Result<()> {
    let objs = objects_with(addon, vars)?;
    // A namespace that is still being deleted (a disable just before)
    // refuses new objects: wait for it to be gone first.
    for o in objs.iter().filter(|o| o.kind == "Namespace") {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(ns) = client.get(&o.path).await? {
            if ns["metadata"]["deletionTimestamp"].is_null() {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "namespace {} is still being deleted after 60 s; try again when `kubectl get ns {}` no longer shows it",
                    o.name,
                    o.name
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for o in &objs {
        client.apply(&o.path, &o.body, FIELD_MANAGER).await?;
    }
    Ok(())
}

/// Deletes every object carrying the addon's label (of the kinds its
/// manifests use), namespaced ones first, then waits until they are gone.
/// Returns how many objects were deleted.
pub async fn delete(client: &ApiClient, addon: &Addon) -> Result<usize> {
    let objs = objects(addon)?;
    let mut collections: Vec<&Object> = Vec::new();
    for o in objs.iter().rev() {
        if !collections
            .iter()
            .any(|c| c.all_namespaces == o.all_namespaces)
        {
            collections.push(o);
        }
    }
    // Namespaces last: deleting one deletes what is in it anyway, but the
    // explicit deletes say what went away.
    collections.sort_by_key(|o| o.kind == "Namespace");
    // Workloads first, in the foreground (a Deployment is gone only once its
    // pods are), so their pods still have their ServiceAccount, RBAC and
    // config while they shut down (an ingress controller clears the
    // addresses it published, for instance).
    let (workloads, rest): (Vec<&Object>, Vec<&Object>) = collections
        .into_iter()
        .partition(|o| WORKLOAD_KINDS.contains(&o.kind.as_str()));
    let selector = label_selector_query(addon.name);
    let mut deleted = delete_labelled(client, &workloads, &selector, "Foreground").await?;
    wait_gone(client, &deleted).await?;
    let more = delete_labelled(client, &rest, &selector, "Background").await?;
    wait_gone(client, &more).await?;
    deleted.extend(more);
    // Also the manifest's own names, should a label have been removed by hand.
    let mut strays = Vec::new();
    for o in objs.iter().rev() {
        if !deleted.contains(&o.path) && client.delete(&o.path).await? {
            strays.push(o.path.clone());
        }
    }
    wait_gone(client, &strays).await?;
    Ok(deleted.len() + strays.len())
}

/// Kinds whose objects run pods: deleted (and gone) before the rest.
const WORKLOAD_KINDS: &[&str] = &[
    "Deployment",
    "DaemonSet",
    "StatefulSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "Pod",
];

/// Deletes every object of these collections that carries the selector's
/// label; returns the paths deleted.
async fn delete_labelled(
    client: &ApiClient,
    collections: &[&Object],
    selector: &str,
    propagation: &str,
) -> Result<Vec<String>> {
    let mut deleted = Vec::new();
    for c in collections {
        for item in client
            .list(&format!("{}?{selector}", c.all_namespaces))
            .await?
        {
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            if name.is_empty() {
                continue;
            }
            let prefix = c
                .all_namespaces
                .rsplit_once('/')
                .map(|(p, _)| p)
                .unwrap_or("");
            let resource = c.all_namespaces.rsplit('/').next().unwrap_or("");
            let path = match item["metadata"]["namespace"].as_str() {
                Some(ns) if c.namespace.is_some() => {
                    format!("{prefix}/namespaces/{ns}/{resource}/{name}")
                }
                _ => format!("{}/{name}", c.all_namespaces),
            };
            if client.delete_with(&path, propagation).await? {
                deleted.push(path);
            }
        }
    }
    Ok(deleted)
}

/// Waits (at most 90 s) until none of these paths exists any more.
async fn wait_gone(client: &ApiClient, paths: &[String]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    for path in paths {
        while client.get(path).await?.is_some() {
            if Instant::now() > deadline {
                anyhow::bail!("{path} is still there 90 s after it was deleted; see `minik logs`");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Whether every object of the addon exists (and is not being deleted).
pub async fn present(client: &ApiClient, addon: &Addon) -> Result<bool> {
    for o in objects(addon)? {
        match client.get(&o.path).await? {
            Some(obj) if obj["metadata"]["deletionTimestamp"].is_null() => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_root_is_filled_in_before_parsing() {
        let a = Addon {
            name: "t",
            description: "",
            manifests: &["apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  root: ${MINIK_NODE_ROOT}/volumes\n"],
            default_enabled: false,
        };
        let vars = Vars {
            node_root: "/tmp/p/node".into(),
        };
        let objs = objects_with(&a, &vars).unwrap();
        assert_eq!(objs[0].body["data"]["root"], "/tmp/p/node/volumes");
        let objs = objects(&a).unwrap();
        assert_eq!(objs[0].body["data"]["root"], "/var/lib/minik/volumes");
    }

    #[test]
    fn multi_document_yaml() {
        let docs = parse_documents(
            "# c\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata: {k: v}\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["data"]["k"], "v");
        assert!(parse_documents("a: [").is_err());
    }

    #[test]
    fn label_is_added_and_kept() {
        let o = with_label(
            serde_json::json!({"kind":"X","metadata":{"name":"n","labels":{"app":"x"}}}),
            "dash",
        );
        assert_eq!(o["metadata"]["labels"]["app"], "x");
        assert_eq!(o["metadata"]["labels"][ADDON_LABEL], "dash");
        let o = with_label(serde_json::json!({"kind":"X"}), "d");
        assert_eq!(o["metadata"]["labels"][ADDON_LABEL], "d");
    }

    #[test]
    fn every_addon_parses_and_maps_to_paths() {
        for a in ADDONS {
            let objs = objects(a).unwrap();
            assert!(!objs.is_empty(), "{}", a.name);
            for o in &objs {
                assert_eq!(o.body["metadata"]["labels"][ADDON_LABEL], a.name);
                assert!(o.path.ends_with(&format!("/{}", o.name)));
            }
        }
        let objs = objects(find("dashboard").unwrap()).unwrap();
        let paths: Vec<&str> = objs.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/api/v1/namespaces/minik-dashboard",
                "/api/v1/namespaces/minik-dashboard/serviceaccounts/minik-dashboard",
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/minik-dashboard",
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/minik-dashboard",
                "/apis/apps/v1/namespaces/minik-dashboard/deployments/minik-dashboard",
                "/api/v1/namespaces/minik-dashboard/services/minik-dashboard",
            ]
        );
        let deploy = &objs[4];
        assert_eq!(deploy.all_namespaces, "/apis/apps/v1/deployments");
        let c = &deploy.body["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "minik/dashboard");
        assert_eq!(c["command"][1], "dashboard-server");
    }

    #[test]
    fn storage_addons_are_on_by_default_and_use_node_paths() {
        let on = default_enabled();
        assert!(on.contains(&"storage-provisioner".to_string()), "{on:?}");
        assert!(on.contains(&"default-storageclass".to_string()), "{on:?}");
        let vars = Vars {
            node_root: "/srv/node".into(),
        };
        let objs = objects_with(find("storage-provisioner").unwrap(), &vars).unwrap();
        let deploy = objs.iter().find(|o| o.kind == "Deployment").unwrap();
        let pod = &deploy.body["spec"]["template"]["spec"];
        assert_eq!(pod["containers"][0]["image"], "minik/minik");
        assert_eq!(
            pod["containers"][0]["args"],
            serde_json::json!(["storage-provisioner", "--root", "/srv/node/volumes"])
        );
        assert_eq!(
            pod["containers"][0]["volumeMounts"][0]["mountPath"],
            "/srv/node/volumes"
        );
        assert_eq!(pod["volumes"][0]["hostPath"]["path"], "/srv/node/volumes");
        let sc = objects(find("default-storageclass").unwrap()).unwrap();
        assert_eq!(
            sc[0].path,
            "/apis/storage.k8s.io/v1/storageclasses/standard"
        );
        assert_eq!(
            sc[0].body["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
            "true"
        );
        assert_eq!(sc[0].body["provisioner"], "minik.io/hostpath");
    }

    #[test]
    fn bad_manifests_are_refused() {
        let a = Addon {
            name: "x",
            description: "",
            manifests: &["kind: Foo\n"],
            default_enabled: false,
        };
        assert!(matches!(objects(&a), Err(AddonError::NotAnObject { .. })));
        let a = Addon {
            name: "x",
            description: "",
            manifests: &["apiVersion: v9\nkind: Foo\nmetadata: {name: a}\n"],
            default_enabled: false,
        };
        assert!(matches!(objects(&a), Err(AddonError::UnknownKind { .. })));
    }

    #[test]
    fn unknown_addon_lists_the_known_ones() {
        let e = find("nope").unwrap_err().to_string();
        assert!(e.contains("dashboard"), "{e}");
        assert_eq!(
            label_selector_query("dashboard"),
            "labelSelector=addonmanager.minik.io%2Faddon%3Ddashboard"
        );
    }
}
