//! The admin endpoint's section, `[loopjob.admin]`: `bind`, `token` or `token_env`, and
//! `token_for_reads`. The endpoint itself needs the cargo feature `admin`.

use super::Settings;
use super::error::{SettingsProblem, unknown_key_message};
#[cfg(feature = "admin")]
use super::value;

/// The keys of the `[loopjob.admin]` section.
pub const ADMIN_KEYS: [&str; 4] = ["bind", "token", "token_env", "token_for_reads"];

/// The options the section gives, when it is there (each bad value is a problem).
#[cfg(feature = "admin")]
pub(crate) type AdminSection = Option<crate::admin::AdminOptions>;
/// Without the feature the section can only be reported.
#[cfg(not(feature = "admin"))]
pub(crate) type AdminSection = Option<std::convert::Infallible>;

impl Settings {
    /// The `[loopjob.admin]` section, if there is one.
    pub(crate) fn admin_checked(&self, problems: &mut Vec<SettingsProblem>) -> AdminSection {
        let section = self.section("loopjob.admin");
        if !self.section("loopjob").keys().contains(&"admin") {
            return None;
        }
        if !section.exists() {
            let origin = self.section("loopjob").origin("admin");
            let message = "expected a table, [loopjob.admin], with bind and token or token_env";
            problems.push(SettingsProblem::new(origin, "loopjob", "admin", message));
            return None;
        }
        #[cfg(not(feature = "admin"))]
        {
            let message = "the admin endpoint needs loopjob's cargo feature `admin`: enable it, \
                           or remove this section";
            problems.push(SettingsProblem::new(
                self.section("loopjob").origin("admin"),
                "loopjob",
                "admin",
                message,
            ));
            for key in section.keys() {
                if !ADMIN_KEYS.contains(&key) {
                    let message = unknown_key_message(key, ADMIN_KEYS);
                    problems.push(SettingsProblem::new(
                        section.origin(key),
                        "loopjob.admin",
                        key,
                        message,
                    ));
                }
            }
            None
        }
        #[cfg(feature = "admin")]
        {
            let mut options = crate::admin::AdminOptions::default();
            let mut token_env = None;
            for key in section.keys() {
                let Some(found) = section.get(key) else {
                    continue;
                };
                let result = match key {
                    "bind" => value::text(found).and_then(|text| {
                        let address = text.parse().map_err(|_| {
                            format!(
                                "expected an address and port such as \"127.0.0.1:9464\", \
                                 found {}",
                                value::quote(&text)
                            )
                        })?;
                        options.bind = address;
                        Ok(())
                    }),
                    // The value is never shown: it is a secret.
                    "token" => match value::text(found) {
                        Ok(token) if !token.trim().is_empty() => {
                            options = std::mem::take(&mut options).token(token);
                            Ok(())
                        }
                        _ => Err("expected a non-empty string (the value is not shown)".into()),
                    },
                    "token_env" => value::text(found).map(|var| token_env = Some(var)),
                    "token_for_reads" => value::boolean(found)
                        .map(|v| options = std::mem::take(&mut options).token_for_reads(v)),
                    _ => Err(unknown_key_message(key, ADMIN_KEYS)),
                };
                if let Err(message) = result {
                    let origin = section.origin(key);
                    problems.push(SettingsProblem::new(origin, "loopjob.admin", key, message));
                }
            }
            if let Some(var) = token_env {
                match std::env::var(&var) {
                    Ok(token) if !token.trim().is_empty() => {
                        options = options.token(token);
                    }
                    _ => problems.push(SettingsProblem::new(
                        section.origin("token_env"),
                        "loopjob.admin",
                        "token_env",
                        format!(
                            "the environment variable {var} that should hold the admin token \
                             is not set or empty"
                        ),
                    )),
                }
            }
            Some(options)
        }
    }
}
