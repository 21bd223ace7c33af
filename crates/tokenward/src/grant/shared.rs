//! An access token shared through a store by the processes using one grant: the rule for
//! adopting one, in one place for every grant.

use std::sync::Mutex;
use std::time::SystemTime;

use secrecy::ExposeSecret;

use super::GrantConfig;
use crate::decay::WallClock;
use crate::store::{SharedToken, TokenStore};
use crate::token::Token;

/// What one process knows about the shared access token: when its own last token was
/// issued (by it, or by the process it adopted the token from).
#[derive(Debug, Default)]
pub(crate) struct Sharing {
    last_issued: Mutex<Option<SystemTime>>,
}

impl Sharing {
    fn last_issued(&self) -> std::sync::MutexGuard<'_, Option<SystemTime>> {
        self.last_issued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shared access token, if another process obtained it since this one's last token,
    /// it has at least half its lifetime left and it has the scopes the grant requires.
    /// A store that cannot be read is logged and taken as sharing nothing.
    pub(crate) async fn adopt(
        &self,
        store: &dyn TokenStore,
        config: &GrantConfig,
        clock: &dyn WallClock,
    ) -> Option<Token> {
        let shared = match store.load_shared_token().await {
            Ok(shared) => shared?,
            Err(error) => {
                tracing::warn!(error = %crate::error::chain(&error), "could not read the shared access token; obtaining one");
                return None;
            }
        };
        let now = clock.now();
        let newer = self
            .last_issued()
            .is_none_or(|last| shared.issued_at > last);
        let lifetime = shared
            .expires_at
            .duration_since(shared.issued_at)
            .unwrap_or_default();
        let left = shared.expires_at.duration_since(now).unwrap_or_default();
        if !newer || lifetime.is_zero() || left < lifetime / 2 {
            return None;
        }
        let age = now.duration_since(shared.issued_at).unwrap_or_default();
        let issued = tokio::time::Instant::now()
            .checked_sub(age)
            .unwrap_or_else(tokio::time::Instant::now);
        let mut builder = Token::builder(shared.access_token.expose_secret().to_owned())
            .issued_at(issued)
            .expires_in(lifetime);
        if let Some(scope) = &shared.scope {
            builder = builder.scope(scope.clone());
        }
        let token = builder.build().ok()?;
        config.check_scopes(token.scope()).ok()?;
        *self.last_issued() = Some(shared.issued_at);
        tracing::debug!("adopted the access token another process obtained");
        Some(token)
    }

    /// Shares `token` through `store` (when it shares access tokens). A failed write is
    /// logged: the other processes then obtain their own.
    pub(crate) async fn share(&self, store: &dyn TokenStore, token: &Token, clock: &dyn WallClock) {
        let now = clock.now();
        let issued_at = now.checked_sub(token.issued_at().elapsed()).unwrap_or(now);
        let expires_at = issued_at.checked_add(token.lifetime()).unwrap_or(issued_at);
        *self.last_issued() = Some(issued_at);
        let shared = SharedToken::new(
            token.access_token().expose_secret().to_owned(),
            issued_at,
            expires_at,
            token.scope().map(str::to_owned),
        );
        if let Err(error) = store.store_shared_token(shared).await {
            tracing::warn!(error = %crate::error::chain(&error), "could not share the access token; the other processes obtain their own");
        }
    }
}
