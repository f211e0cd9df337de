//! User impersonation (`kubectl --as=<user> --as-group=<group>`): the
//! `Impersonate-User` / `Impersonate-Group` / `Impersonate-Uid` headers
//! replace the request's identity, once the real user is allowed the
//! `impersonate` verb on `users` (or `serviceaccounts` for
//! `system:serviceaccount:<ns>:<name>`), `groups` and `uids`, as kube's
//! impersonation filter does. `system:masters` may impersonate anyone.

use crate::error::ApiError;
use crate::rbac::Attributes;
use crate::tls::UserInfo;
use crate::Inner;
use axum::http::HeaderMap;

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// The attributes a user needs to impersonate `user`.
fn user_attributes(user: &str) -> Attributes {
    let mut a = Attributes {
        verb: "impersonate".into(),
        resource_request: true,
        ..Default::default()
    };
    match user
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        Some((ns, name)) => {
            a.resource = "serviceaccounts".into();
            a.namespace = ns.into();
            a.name = name.into();
        }
        None => {
            a.resource = "users".into();
            a.name = user.into();
        }
    }
    a
}

/// The groups an impersonated user has when none are named: a service
/// account's groups, and `system:authenticated` for everyone.
fn default_groups(user: &str, named: &[&str]) -> Vec<String> {
    let mut groups: Vec<String> = named.iter().map(|g| g.to_string()).collect();
    if named.is_empty() {
        if let Some((ns, _)) = user
            .strip_prefix("system:serviceaccount:")
            .and_then(|r| r.split_once(':'))
        {
            groups.push("system:serviceaccounts".into());
            groups.push(format!("system:serviceaccounts:{ns}"));
        }
    }
    if user != "system:anonymous" && !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    groups
}

impl Inner {
    /// The identity the request acts as: `user`, or whom it impersonates.
    pub(crate) fn impersonate(
        &self,
        user: UserInfo,
        headers: &HeaderMap,
    ) -> Result<UserInfo, ApiError> {
        let as_user = values(headers, "impersonate-user");
        let as_groups = values(headers, "impersonate-group");
        let as_uid = values(headers, "impersonate-uid");
        if as_user.is_empty() {
            if !as_groups.is_empty() || !as_uid.is_empty() {
                return Err(ApiError::new(
                    500,
                    "InternalError",
                    "Internal error occurred: requested impersonation of groups or a uid without impersonating a user: add --as=<user>",
                ));
            }
            return Ok(user);
        }
        let target = as_user[0];
        let mut checks = vec![user_attributes(target)];
        for g in &as_groups {
            checks.push(Attributes {
                verb: "impersonate".into(),
                resource_request: true,
                resource: "groups".into(),
                name: g.to_string(),
                ..Default::default()
            });
        }
        for u in &as_uid {
            checks.push(Attributes {
                verb: "impersonate".into(),
                resource_request: true,
                api_group: "authentication.k8s.io".into(),
                resource: "uids".into(),
                name: u.to_string(),
                ..Default::default()
            });
        }
        for a in &checks {
            if !self.authorize(&user, a) {
                let what = if a.resource == "serviceaccounts" {
                    format!("serviceaccounts \"{}\"", a.name)
                } else {
                    format!("{} \"{}\"", a.resource, a.name)
                };
                let scope = if a.namespace.is_empty() {
                    "at the cluster scope".to_string()
                } else {
                    format!("in the namespace \"{}\"", a.namespace)
                };
                return Err(ApiError::forbidden(format!(
                    "{what} is forbidden: User \"{}\" cannot impersonate resource \"{}\" in API group \"{}\" {scope}",
                    user.name, a.resource, a.api_group
                )));
            }
        }
        Ok(UserInfo {
            name: target.to_string(),
            groups: default_groups(target, &as_groups),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_accounts_are_impersonated_through_their_resource() {
        let a = user_attributes("system:serviceaccount:team:robot");
        assert_eq!(
            (a.resource.as_str(), a.namespace.as_str(), a.name.as_str()),
            ("serviceaccounts", "team", "robot")
        );
        let a = user_attributes("jane");
        assert_eq!((a.resource.as_str(), a.name.as_str()), ("users", "jane"));
    }

    #[test]
    fn groups_default_as_kube_does() {
        assert_eq!(
            default_groups("system:serviceaccount:team:robot", &[]),
            vec![
                "system:serviceaccounts",
                "system:serviceaccounts:team",
                "system:authenticated"
            ]
        );
        assert_eq!(
            default_groups("jane", &["devs"]),
            vec!["devs", "system:authenticated"]
        );
        assert_eq!(
            default_groups("system:anonymous", &[]),
            Vec::<String>::new()
        );
    }

    #[tokio::test]
    async fn only_allowed_users_impersonate() {
        let dir = tempfile::tempdir().unwrap();
        let store = minik_store::Store::open(&dir.path().join("store")).unwrap();
        let server = crate::ApiServer::new(store, crate::ApiServerOptions::default())
            .await
            .unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "impersonate-user",
            "system:serviceaccount:team:robot".parse().unwrap(),
        );
        let admin = UserInfo {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
        };
        let u = server.inner.impersonate(admin, &h).unwrap();
        assert_eq!(u.name, "system:serviceaccount:team:robot");
        assert!(!u.is_admin());
        let nobody = UserInfo {
            name: "bob".into(),
            groups: vec!["system:authenticated".into()],
        };
        let e = server.inner.impersonate(nobody.clone(), &h).unwrap_err();
        assert_eq!(e.code, 403);
        assert!(
            e.message
                .contains("cannot impersonate resource \"serviceaccounts\""),
            "{}",
            e.message
        );
        assert_eq!(
            server
                .inner
                .impersonate(nobody.clone(), &HeaderMap::new())
                .unwrap(),
            nobody
        );
    }
}
