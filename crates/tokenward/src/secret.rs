//! Client secret rotation without downtime.
//!
//! A leaked or expiring client secret must be replaced without dropping traffic. The
//! runbook tokenward supports:
//!
//! 1. **Deploy new.** Register a second secret at the authorization server.
//! 2. **Reload.** Hand the new secret to the running process: [`ClientSecret::rotate`], or
//!    [`ClientSecret::reload_from_file`] from your own hook, or `spawn_reload_on_sighup` (unix,
//!    feature `sighup`).
//!    The next token request uses it. For an overlap window, an `invalid_client` answer to
//!    the new secret falls back to the previous one (with a WARN event), so the order of
//!    steps 1 and 2 does not matter.
//! 3. **Verify.** [`ClientCredentials::verify`](crate::ClientCredentials::verify) obtains a
//!    token with the current secret only — no fallback — and optionally calls a URL with it.
//! 4. **Revoke old** at the authorization server.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tokenward::ClientCredentials;
//!
//! let grant = ClientCredentials::builder("https://auth.example.com/oauth/token", "svc")
//!     .client_secret("old-secret")
//!     .build()
//!     .unwrap();
//! let secret = grant.client_secret(); // a handle; clones share the secret
//! secret.rotate("new-secret", Duration::from_secs(600));
//! assert!(secret.in_overlap());
//! ```

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::error::Error;

/// The client secret of a grant: hot-swappable, with the previous secret kept for an
/// overlap window. Cheap to clone; clones share the secret.
#[derive(Clone)]
pub struct ClientSecret {
    state: Arc<ArcSwap<SecretState>>,
}

#[derive(Default)]
pub(crate) struct SecretState {
    pub(crate) current: Option<SecretString>,
    pub(crate) previous: Option<(SecretString, Instant)>,
    /// How many times the secret was replaced.
    pub(crate) revision: u64,
}

impl ClientSecret {
    pub(crate) fn new(secret: Option<SecretString>) -> Self {
        ClientSecret {
            state: Arc::new(ArcSwap::from_pointee(SecretState {
                current: secret,
                previous: None,
                revision: 0,
            })),
        }
    }

    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<SecretState>> {
        self.state.load()
    }

    /// Whether a secret is configured.
    pub fn is_set(&self) -> bool {
        self.state.load().current.is_some()
    }

    /// Makes `new` the secret for the next token request. The old one stays usable as a
    /// fallback for `overlap` (when the server answers `invalid_client` to the new one).
    pub fn rotate(&self, new: impl Into<String>, overlap: Duration) {
        let new = SecretString::from(new.into());
        self.state.rcu(|old| {
            let previous = old
                .current
                .clone()
                .filter(|c| c.expose_secret() != new.expose_secret())
                .and_then(|c| Instant::now().checked_add(overlap).map(|until| (c, until)));
            SecretState {
                current: Some(new.clone()),
                previous,
                revision: old.revision.wrapping_add(1),
            }
        });
        tracing::info!(overlap_secs = overlap.as_secs(), "client secret rotated");
    }

    /// Ends the overlap at once: only the current secret is used from now on.
    pub fn forget_previous(&self) {
        self.state.rcu(|old| SecretState {
            current: old.current.clone(),
            previous: None,
            revision: old.revision,
        });
    }

    /// Whether the previous secret is still a fallback.
    pub fn in_overlap(&self) -> bool {
        self.previous_in_window().is_some()
    }

    /// Changes with every [`rotate`](Self::rotate) (and reload).
    pub(crate) fn revision(&self) -> u64 {
        self.state.load().revision
    }

    pub(crate) fn previous_in_window(&self) -> Option<SecretString> {
        let state = self.state.load();
        match &state.previous {
            Some((secret, until)) if Instant::now() < *until => Some(secret.clone()),
            _ => None,
        }
    }

    /// Reads the secret from `path` (surrounding whitespace trimmed) and, if it differs from
    /// the current one, rotates to it with `overlap`. Returns whether it changed. An empty,
    /// unreadable or oversized file is an error and changes nothing.
    pub fn reload_from_file(&self, path: &Path, overlap: Duration) -> Result<bool, Error> {
        let read = read_secret_file(path, "client secret")?;
        let secret = read.expose_secret();
        let unchanged = self
            .state
            .load()
            .current
            .as_ref()
            .is_some_and(|c| c.expose_secret() == secret);
        if unchanged {
            return Ok(false);
        }
        self.rotate(secret, overlap);
        Ok(true)
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSecret")
            .field("set", &self.is_set())
            .field("in_overlap", &self.in_overlap())
            .finish()
    }
}

/// On every SIGHUP, reloads `secret` from `path` with `overlap` (unix only, feature
/// `sighup`). The task ends when the returned handle is aborted or dropped with the runtime.
#[cfg(all(unix, feature = "sighup"))]
#[cfg_attr(docsrs, doc(cfg(all(unix, feature = "sighup"))))]
pub fn spawn_reload_on_sighup(
    secret: ClientSecret,
    path: impl Into<std::path::PathBuf>,
    overlap: Duration,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let path = path.into();
    let mut hangups = signal(SignalKind::hangup())
        .map_err(|e| Error::Config(format!("could not listen for SIGHUP: {e}").into()))?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match secret.reload_from_file(&path, overlap) {
                Ok(changed) => {
                    tracing::info!(changed, path = %path.display(), "SIGHUP: client secret reloaded")
                }
                Err(error) => {
                    tracing::error!(error = %crate::error::chain(&error), "SIGHUP: client secret not reloaded")
                }
            }
        }
    }))
}

/// The largest secret file read: a secret is short, and a path pointing at something else
/// (a log, a device) must not be read whole.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Reads a secret from the file `path` as tokenward reads every secret file: surrounding
/// whitespace (and a leading byte order mark) trimmed, at most 64 KiB, UTF-8, not empty.
///
/// ```
/// # let path = std::env::temp_dir().join(format!("tokenward-read-file-{}", std::process::id()));
/// std::fs::write(&path, "s3cr3t\n")?;
/// let secret = tokenward::secret::read_file(&path)?;
/// # use tokenward::ExposeSecret as _;
/// assert_eq!(secret.expose_secret(), "s3cr3t");
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`Error::Config`] naming the file (never its contents): it cannot be read, is larger
/// than 64 KiB, is not UTF-8 or holds only whitespace.
pub fn read_file(path: &Path) -> Result<SecretString, Error> {
    read_secret_file(path, "secret")
}

/// Reads a secret (`what`: "client secret", ...) from `path`, surrounding whitespace
/// trimmed, at most 64 KiB. Errors name the file, never its contents.
pub(crate) fn read_secret_file(path: &Path, what: &str) -> Result<SecretString, Error> {
    use std::io::Read as _;
    let fail =
        |why: String| Error::Config(format!("the {what} file {}: {why}", path.display()).into());
    let file = std::fs::File::open(path).map_err(|e| fail(format!("could not be read: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("could not be read: {e}")))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(fail("is larger than 64 KiB".to_owned()));
    }
    let text = String::from_utf8(bytes).map_err(|_| fail("is not UTF-8".to_owned()))?;
    // A byte order mark, as some editors write, is not part of the secret.
    let secret = text.trim_start_matches('\u{feff}').trim();
    if secret.is_empty() {
        return Err(fail("is empty".to_owned()));
    }
    Ok(SecretString::from(secret.to_owned()))
}
