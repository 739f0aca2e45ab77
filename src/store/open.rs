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
    if cfg!(feature = "etcd") {
        forms.push("etcd://host:2379[,host:2379…]");
    }
    forms.join(", ")
}

/// Opens the store at `url` with default [`StoreOptions`]; see [`open_with`].
pub fn open(url: &str) -> Result<Arc<dyn LeaseStore>, StoreError> {
    open_with(url, StoreOptions::default())
}

/// Opens the store at `url`: `memory`, `sqlite://PATH` (or `sqlite:PATH`, `sqlite::memory:`),
/// `postgres://…` (or `postgresql://…`), `mysql://…` (or `mariadb://…`), `redis://host:6379/N`,
/// `etcd://host:2379[,host:2379…]`.
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
                check_sqlite(url)?;
                sql_store(url, options)
            } else {
                Err(needs("sqlite"))
            }
        }
        "postgres" | "postgresql" => {
            if cfg!(feature = "postgres") {
                check_server(url, "postgres://USER:PASSWORD@HOST:5432/DATABASE", "dbname")?;
                sql_store(url, options)
            } else {
                Err(needs("postgres"))
            }
        }
        "mysql" | "mariadb" => {
            if cfg!(feature = "mysql") {
                check_server(url, "mysql://USER:PASSWORD@HOST:3306/DATABASE", "database")?;
                sql_store(url, options)
            } else {
                Err(needs("mysql"))
            }
        }
        "redis" | "rediss" => redis_store(url, options).unwrap_or_else(|| Err(needs("redis"))),
        "etcd" => etcd_store(url, options).unwrap_or_else(|| Err(needs("etcd"))),
        _ => Err(unsupported(format!(
            "the scheme `{scheme}` names no lease store"
        ))),
    }
}

/// An SQLite URL names a file (or `:memory:`): `sqlite:` alone would open a temporary
/// database that no other connection sees.
fn check_sqlite(url: &str) -> Result<(), StoreError> {
    let rest = url.split_once(':').map_or("", |(_, rest)| rest);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    if path.trim().is_empty() {
        return Err(StoreError::invalid(
            "store URL",
            format!(
                "`{}` names no database file; write sqlite://PATH (such as \
                 sqlite://loopjob.db, created if missing) or sqlite::memory: for one process",
                redact(url)
            ),
        ));
    }
    Ok(())
}

/// A server URL names its host and its database: without them the driver would quietly pick
/// the local server and a default database. `database_param` is the query parameter that may
/// name the database instead of the path.
fn check_server(url: &str, form: &str, database_param: &str) -> Result<(), StoreError> {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    let host_and_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    // `host:port`, or `[ipv6]:port`; only whether a host is there matters.
    let host = if host_and_port.starts_with('[') {
        host_and_port
    } else {
        host_and_port.split(':').next().unwrap_or_default()
    };
    let param = |name: &str| {
        query.split('&').any(|pair| {
            pair.split_once('=')
                .is_some_and(|(key, value)| key == name && !value.is_empty())
        })
    };
    let missing = match (
        host.is_empty() && !param("host") && !param("socket"),
        path.trim_matches('/').is_empty() && !param(database_param),
    ) {
        (true, true) => "no host and no database",
        (true, false) => "no host",
        (false, true) => "no database",
        (false, false) => return Ok(()),
    };
    Err(StoreError::invalid(
        "store URL",
        format!("`{}` names {missing}; write {form}", redact(url)),
    ))
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

/// The etcd store at `url`, or `None` when this build lacks the `etcd` feature.
fn etcd_store(url: &str, options: StoreOptions) -> Option<Result<Arc<dyn LeaseStore>, StoreError>> {
    #[cfg(feature = "etcd")]
    {
        // Its connection and watch are Tokio tasks.
        if tokio::runtime::Handle::try_current().is_err() {
            return Some(Err(StoreError::NoRuntime));
        }
        Some(
            super::EtcdStore::connect_lazy(url, options)
                .map(|store| Arc::new(store) as Arc<dyn LeaseStore>),
        )
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = (url, options);
        None
    }
}

/// The URL with every password replaced by `***`, for messages, logs and `Debug` output: the
/// one in `user:password@` (wherever an `@` ends the part before the query, so also in a URL
/// whose scheme is wrong or whose password has a `/`), and the value of every query parameter
/// whose name says it holds a secret (`password`, `sslpassword`, `pass`, `pwd`, `secret`,
/// `token`).
///
/// ```
/// use loopjob::store::redact;
///
/// assert_eq!(redact("postgres://app:s3cret@db/x"), "postgres://app:***@db/x");
/// assert_eq!(redact("mysql://db/x?user=app&password=s3cret"), "mysql://db/x?user=app&password=***");
/// ```
pub fn redact(url: &str) -> String {
    let (main, query) = match url.find(['?', '#']) {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    let mut redacted = redact_userinfo(main);
    redacted.push_str(&redact_query(query));
    redacted
}

/// `scheme://user:password@host/path` → `scheme://user:***@host/path`; also without `//`.
fn redact_userinfo(main: &str) -> String {
    let Some(at) = main.rfind('@') else {
        return main.to_owned();
    };
    let (before, host) = main.split_at(at);
    // The userinfo starts after `scheme://`, else after `scheme:`; with no scheme at all,
    // `user:password@host` reads as a scheme `user`, which redacts the same.
    let start = match before.find("://") {
        Some(slashes) => slashes + 3,
        None => before.find(':').map_or(0, |colon| colon + 1),
    };
    let (scheme, userinfo) = before.split_at(start);
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}{user}:***{host}"),
        None if start > 0 && !before[..start].contains("//") && !userinfo.is_empty() => {
            // `scheme:secret@host`: what follows the colon may be a password.
            format!("{scheme}***{host}")
        }
        None => main.to_owned(),
    }
}

/// `?user=a&password=b` → `?user=a&password=***`.
fn redact_query(query: &str) -> String {
    const SECRET_NAMES: [&str; 5] = ["pass", "pwd", "secret", "token", "key"];
    let mut out = String::with_capacity(query.len());
    for (index, param) in query.split('&').enumerate() {
        if index > 0 {
            out.push('&');
        }
        match param.split_once('=') {
            Some((name, _value))
                if SECRET_NAMES
                    .iter()
                    .any(|secret| name.to_ascii_lowercase().contains(secret)) =>
            {
                out.push_str(name);
                out.push_str("=***");
            }
            _ => out.push_str(param),
        }
    }
    out
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
        // A password with a `/` (not percent-encoded) still ends at the last `@`.
        assert_eq!(
            redact("postgres://app:pa/ss@db/x"),
            "postgres://app:***@db/x"
        );
        // A wrong scheme, or none.
        assert_eq!(redact("postgress:/app:pw@db"), "postgress:/app:***@db");
        assert_eq!(redact("app:pw@db/x"), "app:***@db/x");
        assert_eq!(redact("redis:pw@db"), "redis:***@db");
        // Passwords in the query string.
        assert_eq!(
            redact("postgres://db/x?user=app&password=pw&sslmode=require"),
            "postgres://db/x?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact("mysql://u:pw@db/x?sslkey=/k&PWD=pw"),
            "mysql://u:***@db/x?sslkey=***&PWD=***"
        );
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

    #[cfg(all(feature = "sqlite", feature = "postgres", feature = "mysql"))]
    #[test]
    fn urls_without_a_file_host_or_database_are_refused() {
        let refused = |url: &str| match open(url) {
            Err(StoreError::InvalidInput { problem, .. }) => problem,
            other => panic!("{url}: expected InvalidInput, got {other:?}"),
        };
        for url in ["sqlite:", "sqlite://", " sqlite:// ", "sqlite://?mode=rwc"] {
            let problem = refused(url);
            assert!(problem.contains("names no database file"), "{problem}");
            assert!(problem.contains("write sqlite://PATH"), "{problem}");
        }
        for (url, missing) in [
            ("postgres://", "no host and no database"),
            ("postgresql://app:pw@/x", "no host"),
            ("postgres://db:5432", "no database"),
            ("postgres://app:pw@db:5432/", "no database"),
            ("mysql://", "no host and no database"),
            ("mariadb://root@:3306/test", "no host"),
            ("mysql://root@db", "no database"),
        ] {
            let problem = refused(url);
            assert!(problem.contains(&format!("names {missing};")), "{problem}");
            assert!(problem.contains("write "), "{problem}");
            assert!(problem.contains("USER:PASSWORD@HOST"), "{problem}");
            assert!(!problem.contains(":pw@"), "{problem}");
        }
        // A socket path or a `dbname` parameter is a host and a database too (these fail
        // only for want of a runtime, after the check).
        for url in [
            "postgres://app@/x?host=/var/run/postgresql",
            "postgres://db?dbname=x",
            "mysql://root@db/x",
        ] {
            assert!(matches!(open(url), Err(StoreError::NoRuntime)), "{url}");
        }
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
