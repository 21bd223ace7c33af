//! [`AuthError`]: the concrete error behind the layer's `BoxError`.

use tokenward::Error;

/// Why [`Auth`](crate::Auth) failed a request itself. The service's error type is
/// [`BoxError`](crate::BoxError), tower's convention; `downcast_ref::<AuthError>()` finds this.
/// Errors of the inner service pass through unchanged (downcast to their own type).
///
/// In every case below the request was **not sent** (or, after a 401 `invalid_token`, not
/// resent).
///
/// # Example
///
/// ```
/// use tokenward_tower::{AuthError, BoxError};
///
/// fn explain(error: &BoxError) -> String {
///     match error.downcast_ref::<AuthError>() {
///         Some(AuthError::Token(e)) if e.is_reauthorization_required() => {
///             "ask the user or an org admin to authorize again".into()
///         }
///         Some(AuthError::Token(e)) if e.is_retryable() => format!("try later: {e}"),
///         Some(AuthError::UnknownTenant { tenant }) => format!("no credentials for {tenant}"),
///         Some(other) => other.to_string(),
///         None => format!("the request failed on the way: {error}"),
///     }
/// }
/// let error: BoxError = AuthError::MissingTenant.into();
/// assert!(explain(&error).contains("tenant"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No access token could be obtained (token endpoint down, rate-limited, credentials or
    /// grant rejected, ...). The core error says which and what to do.
    #[error("no access token could be obtained, so the request was not sent")]
    Token(#[source] Error),
    /// The layer serves several tenants and the request named none (no
    /// [`Tenant`](tokenward::Tenant) extension, or the extractor found none).
    #[error(
        "the request names no tenant, so no credentials apply and it was not sent; add a \
         tokenward::Tenant extension (or fix the tenant extractor)"
    )]
    MissingTenant,
    /// The request named a tenant that has no credentials. Never served with another
    /// tenant's token.
    #[error(
        "unknown tenant {tenant:?}: no credentials are configured for it (no fallback is used); \
         the request was not sent"
    )]
    UnknownTenant {
        /// The tenant key, as given.
        tenant: String,
    },
}

impl AuthError {
    /// The core error, when a token could not be obtained.
    pub fn token_error(&self) -> Option<&Error> {
        match self {
            AuthError::Token(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the same request may succeed later: delegates to
    /// [`tokenward::Error::is_retryable`]; `false` for tenant errors.
    pub fn is_retryable(&self) -> bool {
        self.token_error().is_some_and(Error::is_retryable)
    }
}

impl From<Error> for AuthError {
    fn from(error: Error) -> Self {
        match error {
            Error::UnknownTenant { tenant } => AuthError::UnknownTenant { tenant },
            Error::MissingTenant => AuthError::MissingTenant,
            other => AuthError::Token(other),
        }
    }
}
