//! What an etcd store accepts at opening: its URL, `etcd://[user:password@]host:port[,host:port…]`,
//! and its key prefix. Messages show the URL with its password as `***`.

use crate::store::StoreError;
use crate::store::open::redact;

/// The longest key prefix accepted, in bytes.
const MAX_PREFIX_LEN: usize = 64;

/// What the URL says: the endpoints to dial, and the user to authenticate as (no `Debug`: it
/// holds the password).
pub(super) struct Target {
    pub(super) endpoints: Vec<String>,
    pub(super) user: Option<(String, String)>,
}

/// The key prefix, checked: 1 to 64 letters, digits, `_`, `-`, `.`, `:` or `/`.
pub(super) fn key_prefix(prefix: &str) -> Result<&str, StoreError> {
    if prefix.is_empty()
        || prefix.len() > MAX_PREFIX_LEN
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
    {
        return Err(StoreError::invalid(
            "table prefix",
            format!(
                "`{prefix}` cannot prefix etcd keys; give 1 to {MAX_PREFIX_LEN} letters, \
                 digits, `_`, `-`, `.`, `:` or `/`"
            ),
        ));
    }
    Ok(prefix)
}

/// The endpoints and user of `url`, or what is wrong with it.
pub(super) fn target(url: &str) -> Result<Target, StoreError> {
    let refuse = |problem: &str| {
        StoreError::invalid(
            "etcd URL",
            format!(
                "`{}` cannot be used: {problem}; give etcd://[user:password@]host:port\
                 [,host:port…] naming the cluster's client endpoints",
                redact(url)
            ),
        )
    };
    let Some(rest) = url.strip_prefix("etcd://") else {
        return Err(refuse(
            "it does not start with etcd:// (TLS endpoints are not supported)",
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err(refuse(
            "it has a path or query; keys are prefixed by the table prefix",
        ));
    }
    let (user, hosts) = match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (name, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            if name.is_empty() {
                return Err(refuse("its user name is empty"));
            }
            (Some((name.to_owned(), password.to_owned())), hosts)
        }
        None => (None, rest),
    };
    let mut endpoints = Vec::new();
    for host in hosts.split(',') {
        let port = host
            .rsplit_once(':')
            .map(|(name, port)| (name, port.parse::<u16>()));
        match port {
            Some((name, Ok(port))) if !name.is_empty() && port > 0 => {
                endpoints.push(format!("http://{host}"));
            }
            _ => {
                return Err(refuse(&format!(
                    "`{host}` is not host:port (etcd's client port is usually 2379)"
                )));
            }
        }
    }
    Ok(Target { endpoints, user })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_endpoints_and_a_user() {
        let two = target("etcd://10.0.0.1:2379,10.0.0.2:2379").unwrap();
        assert_eq!(
            two.endpoints,
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert!(two.user.is_none());
        let with_user = target("etcd://root:s3cret@[::1]:2379/").unwrap();
        assert_eq!(with_user.endpoints, ["http://[::1]:2379"]);
        assert_eq!(
            with_user.user,
            Some(("root".to_owned(), "s3cret".to_owned()))
        );
    }

    #[test]
    fn bad_urls_say_what_to_write_without_the_password() {
        for url in [
            "etcd://",
            "etcd://host",
            "etcd://host:port",
            "etcd://a:2379,",
            "etcd://a:2379/prefix",
            "etcds://a:2379",
            "etcd://u:hunter2@a",
            "etcd://:pw@a:2379",
        ] {
            // `Target` has no `Debug`, as it holds the password.
            let Err(error) = target(url) else {
                panic!("accepted {url}");
            };
            let error = error.to_string();
            assert!(
                error.contains("etcd://[user:password@]host:port"),
                "{error}"
            );
            assert!(!error.contains("hunter2"), "{error}");
        }
        assert!(key_prefix("loopjob/").is_ok());
        assert!(key_prefix("").is_err());
        assert!(key_prefix("a b").is_err());
    }
}
