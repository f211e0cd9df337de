//! Name and label validation with kube's messages (`pkg/util/validation`):
//! DNS-1123 subdomain / label, DNS-1035 label, qualified label keys and label
//! values. Pure functions returning the detail text kube prints.

/// Which name rule a resource uses for `metadata.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// Most resources: `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`, ≤253.
    Subdomain,
    /// Namespaces: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, ≤63.
    Label,
    /// Services: `[a-z]([-a-z0-9]*[a-z0-9])?`, ≤63.
    Dns1035,
    /// RBAC objects (`system:discovery`): any URL path segment.
    PathSegment,
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Problems with a name under a rule; empty when valid.
pub fn validate_name(name: &str, rule: NameRule) -> Vec<String> {
    let mut errs = Vec::new();
    match rule {
        NameRule::Subdomain => {
            if name.len() > 253 {
                errs.push("must be no more than 253 characters".to_string());
            }
            if !name.split('.').all(is_label) {
                errs.push(SUBDOMAIN_MSG.to_string());
            }
        }
        NameRule::Label => {
            if name.len() > 63 {
                errs.push("must be no more than 63 characters".to_string());
            }
            if !is_label(name) {
                errs.push(LABEL_MSG.to_string());
            }
        }
        NameRule::PathSegment => {
            if name == "." || name == ".." {
                errs.push(format!("may not be '{name}'"));
            }
            for bad in ['/', '%'] {
                if name.contains(bad) {
                    errs.push(format!("may not contain '{bad}'"));
                }
            }
        }
        NameRule::Dns1035 => {
            if name.len() > 63 {
                errs.push("must be no more than 63 characters".to_string());
            }
            if !is_label(name) || !name.as_bytes()[0].is_ascii_lowercase() {
                errs.push(DNS1035_MSG.to_string());
            }
        }
    }
    errs
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Problems with a label/annotation key (`prefix/name`).
pub fn validate_qualified_name(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut errs = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            errs.push("prefix part must be non-empty".to_string());
        } else if !validate_name(p, NameRule::Subdomain).is_empty() {
            errs.push(format!("prefix part {SUBDOMAIN_MSG}"));
        }
    }
    if !is_qualified_name_part(name) {
        errs.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string());
    }
    errs
}

/// Problems with a label value (may be empty).
pub fn validate_label_value(v: &str) -> Vec<String> {
    if v.is_empty() || is_qualified_name_part(v) {
        Vec::new()
    } else {
        vec!["a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomain_names() {
        assert!(validate_name("hello", NameRule::Subdomain).is_empty());
        assert!(validate_name("a.b-c.d", NameRule::Subdomain).is_empty());
        assert!(validate_name("Hello", NameRule::Subdomain)[0]
            .starts_with("a lowercase RFC 1123 subdomain"));
        assert!(!validate_name("a_b", NameRule::Subdomain).is_empty());
        assert!(!validate_name("-a", NameRule::Subdomain).is_empty());
        assert!(!validate_name(&"a".repeat(254), NameRule::Subdomain).is_empty());
    }

    #[test]
    fn label_and_1035_names() {
        assert!(validate_name("kube-system", NameRule::Label).is_empty());
        assert!(!validate_name("a.b", NameRule::Label).is_empty());
        assert!(validate_name("123", NameRule::Label).is_empty());
        assert!(validate_name("web", NameRule::Dns1035).is_empty());
        assert!(validate_name("1web", NameRule::Dns1035)[0].starts_with("a DNS-1035 label"));
        assert!(!validate_name(&"a".repeat(64), NameRule::Dns1035).is_empty());
        assert!(validate_name("system:discovery", NameRule::PathSegment).is_empty());
        assert_eq!(
            validate_name("a/b", NameRule::PathSegment),
            vec!["may not contain '/'"]
        );
        assert!(!validate_name("..", NameRule::PathSegment).is_empty());
    }

    #[test]
    fn label_keys_and_values() {
        assert!(validate_qualified_name("app").is_empty());
        assert!(validate_qualified_name("app.kubernetes.io/name").is_empty());
        assert!(!validate_qualified_name("bad key").is_empty());
        assert!(!validate_qualified_name("/x").is_empty());
        assert!(validate_label_value("").is_empty());
        assert!(validate_label_value("v1.2_3").is_empty());
        assert!(!validate_label_value("no spaces").is_empty());
    }
}
