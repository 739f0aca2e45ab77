//! What a Redis store accepts at opening: its URL (as the `redis` crate parses it) and its key
//! prefix. Messages show the URL with its password as `***`.

use crate::store::StoreError;
use crate::store::open::redact;

/// The longest key prefix accepted, in bytes.
const MAX_PREFIX_LEN: usize = 64;

/// The key prefix, checked: 1 to 64 letters, digits, `_`, `-`, `.` or `:`.
pub(super) fn key_prefix(prefix: &str) -> Result<&str, StoreError> {
    if prefix.is_empty()
        || prefix.len() > MAX_PREFIX_LEN
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        return Err(StoreError::invalid(
            "table prefix",
            format!(
                "`{prefix}` cannot prefix Redis keys; give 1 to {MAX_PREFIX_LEN} letters, \
                 digits, `_`, `-`, `.` or `:`"
            ),
        ));
    }
    Ok(prefix)
}

/// A client for `url` (no I/O yet), or what is wrong with the URL.
pub(super) fn client(url: &str) -> Result<redis::Client, StoreError> {
    redis::Client::open(url).map_err(|error| {
        StoreError::invalid(
            "Redis URL",
            format!(
                "`{}` cannot be used ({}); give redis://[user:password@]host[:port][/db] \
                 (rediss:// needs a TLS feature of the `redis` crate in your build)",
                redact(url),
                without_password(&error.to_string(), url),
            ),
        )
    })
}

/// `text` with the password of `url`, if any, replaced by `***`: driver messages never show it.
fn without_password(text: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?', '#']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|password| !password.is_empty());
    match password {
        Some(password) => text.replace(password, "***"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use crate::store::redis::RedisStore;

    #[test]
    fn driver_messages_lose_the_password() {
        let url = "redis://app:s3cret@host/0";
        assert_eq!(
            without_password("cannot use s3cret at host", url),
            "cannot use *** at host"
        );
        assert_eq!(without_password("fine", "redis://host/0"), "fine");
    }

    #[tokio::test]
    async fn bad_urls_say_what_is_wrong_without_the_password() {
        let options = StoreOptions::default;
        let message = RedisStore::connect_lazy("redis://:s3cret@host/notanumber", options())
            .unwrap_err()
            .to_string();
        assert!(message.contains("database"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        let message = RedisStore::connect_lazy("rediss://host/0", options())
            .unwrap_err()
            .to_string();
        assert!(message.contains("TLS"), "{message}");
        let debug = format!(
            "{:?}",
            RedisStore::connect_lazy("redis://u:s3cret@host/0", options()).unwrap()
        );
        assert!(
            debug.contains("u:***@host") && !debug.contains("s3cret"),
            "{debug}"
        );
    }
}
