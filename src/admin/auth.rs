//! The bearer token: kept out of logs and `Debug`, and compared in constant time.

use std::fmt;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use super::api::ApiError;

/// A bearer token; its `Debug` shows only that it is set.
#[derive(Clone)]
pub(crate) struct Token(Arc<str>);

impl Token {
    pub(crate) fn new(token: String) -> Self {
        Token(token.into())
    }

    /// Whether `offered` is this token, in time that does not depend on where they differ.
    fn matches(&self, offered: &str) -> bool {
        self.0.as_bytes().ct_eq(offered.as_bytes()).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What a request must show to be served.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    pub(crate) token: Option<Token>,
    pub(crate) token_for_reads: bool,
}

impl Access {
    /// Checks a request that changes something: it needs the token, and without a configured
    /// token nothing may change.
    pub(crate) fn check_change(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match &self.token {
            None => Err(ApiError::forbidden(
                "changes are disabled: no admin token is configured; set one with \
                 AdminOptions::token, or `token`/`token_env` in [loopjob.admin]",
            )),
            Some(token) => check_bearer(token, headers),
        }
    }

    /// Checks a request that only reads: it needs the token when the options say so.
    pub(crate) fn check_read(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match (&self.token, self.token_for_reads) {
            (Some(token), true) => check_bearer(token, headers),
            _ => Ok(()),
        }
    }
}

fn check_bearer(token: &Token, headers: &HeaderMap) -> Result<(), ApiError> {
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match offered {
        None => Err(ApiError::unauthorized(
            "this endpoint needs the admin token: send `Authorization: Bearer <token>`",
        )),
        Some(offered) if token.matches(offered.trim()) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("the admin token is wrong")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_same_token() {
        let token = Token::new("abc".into());
        assert!(token.matches("abc"));
        assert!(!token.matches("abd"));
        assert!(!token.matches("ab"));
        assert!(!token.matches(""));
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
    }
}
