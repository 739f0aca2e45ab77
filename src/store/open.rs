//! Opening a lease store from the `store` URL in the settings.

use std::sync::Arc;

use super::{LeaseStore, MemoryStore, StoreError, StoreOptions};

/// The store URL forms this build accepts, for messages and `--help` texts, such as
/// `"memory, sqlite://PATH, postgres://…"`.
pub fn supported_urls() -> String {
    let mut forms = vec!["memory"];
    if cfg!(feature = "sqlite") {
        forms.push("sqlite://PATH");
    }
    if cfg!(feature = "postgres") {
        forms.push("postgres://…");
    }
    if cfg!(feature = "mysql") {
        forms.push("mysql://… (or mariadb://…)");
    }
    if cfg!(feature = "redis") {
        forms.push("redis://host:6379/N");
    }
    forms.join(", ")
}

/// Opens the store at `url` with default [`StoreOptions`]; see [`open_with`].
pub fn open(url: &str) -> Result<Arc<dyn LeaseStore>, StoreError> {
    open_with(url, StoreOptions::default())
}

/// Opens the store at `url`: `memory`, `sqlite://PATH` (or `sqlite:PATH`, `sqlite::memory:`),
/// `postgres://…` (or `postgresql://…`), `mysql://…` (or `mariadb://…`), `redis://host:6379/N`.
///
/// No I/O happens here: SQL stores connect on their first call, so call
/// [`LeaseStore::initialise`] next to find out whether the database is reachable. An unknown
/// scheme, or one whose cargo feature this build lacks, is a [`StoreError::UnsupportedUrl`]
/// listing what the build supports. SQL stores must be opened within a Tokio runtime.
///
/// ```
/// let err = loopjob::store::open("zookeeper://localhost").unwrap_err();
/// assert!(err.to_string().contains("this build supports memory"));
/// ```
pub fn open_with(url: &str, options: StoreOptions) -> Result<Arc<dyn LeaseStore>, StoreError> {
    let url = url.trim();
    let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
    let unsupported = |problem: String| StoreError::UnsupportedUrl {
        url: redact(url),
        problem,
        supported: supported_urls(),
    };
    let needs = |feature: &str| {
        unsupported(format!(
            "it needs loopjob's cargo feature `{feature}`, which this build was compiled without"
        ))
    };
    match scheme.to_ascii_lowercase().as_str() {
        "memory" if matches!(url, "memory" | "memory:" | "memory://") => {
            Ok(Arc::new(MemoryStore::new()))
        }
        "sqlite" => {
            if cfg!(feature = "sqlite") {
                sql_store(url, options)
            } else {
                Err(needs("sqlite"))
            }
        }
        "postgres" | "postgresql" => {
            if cfg!(feature = "postgres") {
                sql_store(url, options)
            } else {
                Err(needs("postgres"))
            }
        }
        "mysql" | "mariadb" => {
            if cfg!(feature = "mysql") {
                sql_store(url, options)
            } else {
                Err(needs("mysql"))
            }
        }
        "redis" | "rediss" => redis_store(url, options).unwrap_or_else(|| Err(needs("redis"))),
        _ => Err(unsupported(format!(
            "the scheme `{scheme}` names no lease store"
        ))),
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
fn sql_store(url: &str, options: StoreOptions) -> Result<Arc<dyn LeaseStore>, StoreError> {
    // The pools start a maintenance task: without a runtime sqlx would panic.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(StoreError::NoRuntime);
    }
    // Driver messages may quote the URL: give them the redacted one.
    let invalid = |error: StoreError| match error {
        StoreError::InvalidInput { what, problem } => StoreError::InvalidInput {
            what,
            problem: format!("{problem} (in `{}`)", redact(url)),
        },
        other => other,
    };
    let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
    let store: Arc<dyn LeaseStore> = match scheme.to_ascii_lowercase().as_str() {
        #[cfg(feature = "sqlite")]
        "sqlite" => Arc::new(super::SqliteStore::connect_lazy(url, options).map_err(invalid)?),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            Arc::new(super::PostgresStore::connect_lazy(url, options).map_err(invalid)?)
        }
        #[cfg(feature = "mysql")]
        "mysql" | "mariadb" => {
            Arc::new(super::MySqlStore::connect_lazy(url, options).map_err(invalid)?)
        }
        _ => Arc::new(MemoryStore::new()),
    };
    Ok(store)
}

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
fn sql_store(url: &str, _options: StoreOptions) -> Result<Arc<dyn LeaseStore>, StoreError> {
    Err(StoreError::UnsupportedUrl {
        url: redact(url),
        problem: "this build has no SQL backend".to_owned(),
        supported: supported_urls(),
    })
}

/// The Redis store at `url`, or `None` when this build lacks the `redis` feature.
fn redis_store(
    url: &str,
    options: StoreOptions,
) -> Option<Result<Arc<dyn LeaseStore>, StoreError>> {
    #[cfg(feature = "redis")]
    {
        // Its connection and listener are Tokio tasks.
        if tokio::runtime::Handle::try_current().is_err() {
            return Some(Err(StoreError::NoRuntime));
        }
        Some(
            super::RedisStore::connect_lazy(url, options)
                .map(|store| Arc::new(store) as Arc<dyn LeaseStore>),
        )
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = (url, options);
        None
    }
}

/// The URL with the password, if any, replaced by `***`, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cr%40t@db:5432/x?sslmode=require"),
            "postgres://app:***@db:5432/x?sslmode=require"
        );
        assert_eq!(redact("mysql://root@db/test"), "mysql://root@db/test");
        assert_eq!(redact("sqlite://a.db"), "sqlite://a.db");
        assert_eq!(redact("memory"), "memory");
    }

    #[test]
    fn unknown_schemes_list_what_is_supported() {
        let err = open("zookeeper://u:pw@host").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("`zookeeper`"), "{message}");
        assert!(message.contains("memory"), "{message}");
        assert!(!message.contains("pw"), "{message}");
        assert!(matches!(
            open("memoryx"),
            Err(StoreError::UnsupportedUrl { .. })
        ));
    }

    #[test]
    fn memory_needs_no_runtime() {
        assert_eq!(open("memory").unwrap().backend(), "memory");
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sql_stores_outside_a_runtime_are_an_error() {
        assert!(matches!(
            open("sqlite::memory:"),
            Err(StoreError::NoRuntime)
        ));
    }

    #[cfg(not(feature = "mysql"))]
    #[test]
    fn missing_features_are_named() {
        let message = open("mysql://root@db/test").unwrap_err().to_string();
        assert!(message.contains("cargo feature `mysql`"), "{message}");
    }
}
