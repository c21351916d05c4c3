//! Who is asking: a ServiceAccount token checked with the Kubernetes
//! TokenReview API for the audience `identity.l5d.io`, turned into the
//! ServiceAccount it belongs to.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::Api;
use kube::api::PostParams;

/// The ServiceAccount a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was sent.
    #[error("the request carries no token")]
    Empty,
    /// The token has expired.
    #[error("the token has expired ({0})")]
    Expired(String),
    /// The token is for another audience.
    #[error("the token is not valid for the audience {audience:?} ({detail})")]
    WrongAudience {
        /// The audience required.
        audience: String,
        /// The API server's words.
        detail: String,
    },
    /// The token is not a JSON Web Token at all (never sent to the API
    /// server).
    #[error("the token is not valid: {0}")]
    Malformed(String),
    /// The API server does not accept the token.
    #[error("the token is not valid: {0}")]
    Invalid(String),
    /// The token authenticates someone who is not a ServiceAccount.
    #[error("the token belongs to {0:?}, which is not a ServiceAccount")]
    NotServiceAccount(String),
    /// The API server could not be asked.
    #[error("the token could not be reviewed: {0}")]
    Unavailable(String),
}

impl TokenError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Empty => "token_missing",
            TokenError::Expired(_) => "token_expired",
            TokenError::WrongAudience { .. } => "token_audience",
            TokenError::Malformed(_) => "token_malformed",
            TokenError::Invalid(_) => "token_invalid",
            TokenError::NotServiceAccount(_) => "token_not_service_account",
            TokenError::Unavailable(_) => "token_review_unavailable",
        }
    }
}

/// Reviews tokens with the API server.
#[derive(Clone)]
pub struct TokenReviewer {
    api: Api<TokenReview>,
    audience: String,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenReviewer {
    /// Reviews tokens for `audience` through `client`.
    pub fn new(client: kube::Client, audience: impl Into<String>) -> Self {
        Self {
            api: Api::all(client),
            audience: audience.into(),
        }
    }

    /// The ServiceAccount `token` authenticates, if it is valid for the
    /// audience. Check its shape first ([`check_shape`]): that costs the
    /// API server nothing.
    pub async fn review(&self, token: &[u8]) -> Result<ServiceAccountRef, TokenError> {
        let token = check_shape(token)?;
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let status = self
            .api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| TokenError::Unavailable(e.to_string()))?
            .status
            .ok_or_else(|| TokenError::Unavailable("the TokenReview has no status".into()))?;
        if status.authenticated != Some(true) {
            let detail = status.error.unwrap_or_else(|| "not authenticated".into());
            return Err(classify(&detail, &self.audience));
        }
        if let Some(audiences) = &status.audiences
            && !audiences.iter().any(|a| a == &self.audience)
        {
            return Err(TokenError::WrongAudience {
                audience: self.audience.clone(),
                detail: format!("the token is for {audiences:?}"),
            });
        }
        let username = status.user.and_then(|u| u.username).unwrap_or_default();
        parse_username(&username).ok_or(TokenError::NotServiceAccount(username))
    }
}

/// The longest token looked at: ServiceAccount tokens are about a
/// kilobyte.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The token, trimmed, if it has the shape of a ServiceAccount token (a
/// JSON Web Token in compact form: three base64url parts joined by dots,
/// at most [`MAX_TOKEN_BYTES`]); what is wrong with it otherwise. A
/// garbage token is refused here, never sent to the API server.
pub fn check_shape(token: &[u8]) -> Result<&str, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed(format!(
            "{} bytes, more than the {MAX_TOKEN_BYTES} a ServiceAccount token takes",
            token.len()
        )));
    }
    let token = std::str::from_utf8(token)
        .map_err(|_| TokenError::Malformed("not UTF-8".into()))?
        .trim();
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    let base64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || !parts.iter().all(|p| base64url(p)) {
        return Err(TokenError::Malformed(
            "not a JSON Web Token (three base64url parts joined by dots)".into(),
        ));
    }
    Ok(token)
}

/// Sorts the API server's refusal into a reason.
fn classify(detail: &str, audience: &str) -> TokenError {
    let lower = detail.to_ascii_lowercase();
    if lower.contains("expired") {
        TokenError::Expired(detail.to_owned())
    } else if lower.contains("audience") {
        TokenError::WrongAudience {
            audience: audience.to_owned(),
            detail: detail.to_owned(),
        }
    } else {
        TokenError::Invalid(detail.to_owned())
    }
}

/// `system:serviceaccount:<ns>:<name>` → the ServiceAccount.
fn parse_username(username: &str) -> Option<ServiceAccountRef> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then(|| ServiceAccountRef {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_usernames_parse() {
        assert_eq!(
            parse_username("system:serviceaccount:shop:web"),
            Some(ServiceAccountRef {
                namespace: "shop".into(),
                name: "web".into()
            })
        );
        assert_eq!(parse_username("system:admin"), None);
        assert_eq!(parse_username("system:serviceaccount:shop"), None);
    }

    #[test]
    fn only_a_token_shaped_like_a_jwt_goes_to_the_api_server() {
        assert_eq!(
            check_shape(b" eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n"),
            Ok("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
        );
        assert_eq!(check_shape(b"  "), Err(TokenError::Empty));
        for garbage in [
            b"not-a-jwt".to_vec(),
            b"a.b".to_vec(),
            b"a..c".to_vec(),
            b"a.b.c.d".to_vec(),
            b"a.b+/.c".to_vec(),
            vec![0xff, b'.', b'a', b'.', b'b'],
            "a.".repeat(MAX_TOKEN_BYTES).into_bytes(),
        ] {
            assert!(
                matches!(check_shape(&garbage), Err(TokenError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(&garbage[..garbage.len().min(40)])
            );
        }
    }

    #[test]
    fn refusals_are_told_apart() {
        let aud = "identity.l5d.io";
        assert!(matches!(
            classify(
                "[invalid bearer token, service account token has expired]",
                aud
            ),
            TokenError::Expired(_)
        ));
        assert!(matches!(
            classify(
                r#"token audiences ["api"] is invalid for the target audiences ["identity.l5d.io"]"#,
                aud
            ),
            TokenError::WrongAudience { .. }
        ));
        assert!(matches!(
            classify("invalid bearer token", aud),
            TokenError::Invalid(_)
        ));
    }
}
