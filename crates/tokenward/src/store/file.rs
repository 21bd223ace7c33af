//! A grant in a JSON file, replaced atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{
    CasOutcome, ExchangeLock, SharedToken, StoreError, StoreFuture, StoredGrant, TokenStore,
    matches_expected,
};

/// Files larger than this are not a grant.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
const FORMAT_VERSION: u32 = 1;

/// A [`TokenStore`] in one JSON file.
///
/// Every write goes to a temporary file in the same folder (mode 0600), is flushed to disk,
/// renamed over the old file, and the folder is flushed too: after a crash the file holds
/// either the old grant or the new one, never a torn mix. Compare-and-swap holds an
/// exclusive OS lock on `<file>.lock`, so processes sharing the file never overwrite each
/// other's rotation. A corrupt or unreadable file is a typed error and is never overwritten
/// or treated as empty; a missing file means "nothing stored yet".
///
/// # Processes sharing one grant
///
/// Several processes on one host may use the same file. A refresh holds an exclusive OS lock
/// on `<file>.exchange-lock` across load → exchange → persist, so two processes never send
/// the same refresh token (which a server with reuse detection answers by revoking the
/// grant); the OS releases it when a holder dies, even by SIGKILL. With
/// [`share_access_token`](FileStore::share_access_token), the access token is shared too,
/// through `<file>.access` (mode 0600): a process that takes the lock after another one
/// refreshed adopts its token and makes no call, so N processes make one token call per
/// refresh period.
///
/// ```
/// use tokenward::store::{FileStore, StoredGrant, TokenStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tokenward::store::StoreError> {
/// let dir = std::env::temp_dir().join(format!("tokenward-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let store = FileStore::new(dir.join("grant.json"));
/// assert!(store.load().await?.is_none());
/// store.compare_and_swap(None, StoredGrant::new("rt-1")).await?;
/// assert!(store.load().await?.is_some());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FileStore {
    path: Arc<PathBuf>,
    share: bool,
}

impl FileStore {
    /// A store in `path` (created on the first write; its folder must exist).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore {
            path: Arc::new(path.into()),
            share: false,
        }
    }

    /// Shares the access token between the processes using this file, through
    /// `<file>.access` (mode 0600, replaced atomically). Off by default: the access token
    /// then never touches the disk.
    pub fn share_access_token(mut self, share: bool) -> Self {
        self.share = share;
        self
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl TokenStore for FileStore {
    fn load(&self) -> StoreFuture<'_, Option<StoredGrant>> {
        let path = Arc::clone(&self.path);
        Box::pin(async move { blocking(move || read_grant(&path)).await })
    }

    fn compare_and_swap<'a>(
        &'a self,
        expected: Option<&'a SecretString>,
        new: StoredGrant,
    ) -> StoreFuture<'a, CasOutcome> {
        let path = Arc::clone(&self.path);
        let expected = expected.cloned();
        Box::pin(async move { blocking(move || cas(&path, expected.as_ref(), &new)).await })
    }

    /// The file's modification time, size and inode, folded into a number (`0` when it
    /// cannot be read): every replacement of the file changes it.
    fn revision(&self) -> u64 {
        let Ok(meta) = fs::metadata(&*self.path) else {
            return 0;
        };
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        modified ^ meta.len().rotate_left(48) ^ inode.rotate_left(24)
    }

    /// Waits for the OS lock on `<file>.exchange-lock`, polling (5 ms doubling to 100 ms)
    /// so that a dropped future stops waiting.
    fn lock_exchange(&self) -> StoreFuture<'_, Option<ExchangeLock>> {
        let lock_path = sibling(&self.path, ".exchange-lock");
        Box::pin(async move {
            let write_err = |path: &Path, e: io::Error| StoreError::Write {
                path: path.to_owned(),
                source: Arc::new(e),
            };
            let file = {
                let path = lock_path.clone();
                blocking(move || open_private(&path, false).map_err(|e| write_err(&path, e)))
                    .await?
            };
            let mut pause = Duration::from_millis(5);
            loop {
                match file.try_lock() {
                    Ok(()) => return Ok(Some(ExchangeLock::new(file))),
                    Err(fs::TryLockError::WouldBlock) => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(100));
                    }
                    Err(fs::TryLockError::Error(e)) => return Err(write_err(&lock_path, e)),
                }
            }
        })
    }

    fn shares_access_token(&self) -> bool {
        self.share
    }

    fn load_shared_token(&self) -> StoreFuture<'_, Option<SharedToken>> {
        let share = self.share;
        let path = sibling(&self.path, ".access");
        Box::pin(async move {
            if !share {
                return Ok(None);
            }
            blocking(move || read_shared(&path)).await
        })
    }

    fn store_shared_token(&self, token: SharedToken) -> StoreFuture<'_, ()> {
        let share = self.share;
        let path = sibling(&self.path, ".access");
        Box::pin(async move {
            if !share {
                return Ok(());
            }
            blocking(move || {
                let format = SharedFormat {
                    version: FORMAT_VERSION,
                    access_token: token.access_token.expose_secret().to_owned(),
                    issued_at_ms: to_unix_ms(token.issued_at),
                    expires_at_ms: to_unix_ms(token.expires_at),
                    scope: token.scope,
                };
                let bytes = serde_json::to_vec(&format).map_err(|e| StoreError::Write {
                    path: path.clone(),
                    source: Arc::new(io::Error::other(e)),
                })?;
                write_bytes_atomic(&path, &bytes)
            })
            .await
        })
    }
}

/// The shared access token file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedFormat {
    version: u32,
    access_token: String,
    issued_at_ms: u64,
    expires_at_ms: u64,
    #[serde(default)]
    scope: Option<String>,
}

fn to_unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

fn read_shared(path: &Path) -> Result<Option<SharedToken>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(StoreError::Read {
                path: path.to_owned(),
                source: Arc::new(e),
            });
        }
    };
    // Never quote serde's message: it can contain the token.
    let format: SharedFormat = serde_json::from_slice(&bytes)
        .map_err(|_| corrupt(path, "not a tokenward shared access token file"))?;
    if format.version != FORMAT_VERSION || format.access_token.is_empty() {
        return Err(corrupt(path, "not a tokenward shared access token file"));
    }
    Ok(Some(SharedToken {
        access_token: SecretString::from(format.access_token),
        issued_at: from_unix_ms(format.issued_at_ms),
        expires_at: from_unix_ms(format.expires_at_ms),
        scope: format.scope,
    }))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::Backend(Arc::new(e))),
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    version: u32,
    refresh_token: String,
    #[serde(default)]
    scope: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    last_used: Option<u64>,
    /// Unix seconds.
    #[serde(default)]
    stored_at: Option<u64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    generation: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn to_unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH)
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Parses the contents of a [`FileStore`] grant file (for tools that inspect one). `path`
/// only names the file in errors.
pub fn parse_grant_file(path: &Path, bytes: &[u8]) -> Result<StoredGrant, StoreError> {
    parse(path, bytes)
}

pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<StoredGrant, StoreError> {
    if bytes.is_empty() {
        return Err(corrupt(path, "the file is empty"));
    }
    // Never quote serde's message: it can contain the file's contents.
    let format: FileFormat = serde_json::from_slice(bytes).map_err(|e| {
        corrupt(
            path,
            format!(
                "not a tokenward grant file (JSON error at line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    if format.version != FORMAT_VERSION {
        return Err(corrupt(
            path,
            format!("unsupported format version {}", format.version),
        ));
    }
    if format.refresh_token.is_empty() {
        return Err(corrupt(path, "the refresh token is empty"));
    }
    Ok(StoredGrant {
        refresh_token: SecretString::from(format.refresh_token),
        scope: format.scope,
        last_used: format.last_used.map(from_unix),
        stored_at: format.stored_at.map(from_unix),
        generation: format.generation,
    })
}

fn read_grant(path: &Path) -> Result<Option<StoredGrant>, StoreError> {
    let read_err = |e: io::Error| StoreError::Read {
        path: path.to_owned(),
        source: Arc::new(e),
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let meta = file.metadata().map_err(read_err)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(corrupt(path, "the file is larger than 1 MiB"));
    }
    warn_if_readable_by_others(path, &meta);
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    io::Read::read_to_end(&mut io::Read::take(file, MAX_FILE_BYTES + 1), &mut bytes)
        .map_err(read_err)?;
    parse(path, &bytes).map(Some)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path, meta: &fs::Metadata) {
    use std::os::unix::fs::PermissionsExt as _;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            "the grant file is readable by other users; tokenward writes it with mode 0600"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path, _meta: &fs::Metadata) {}

fn cas(
    path: &Path,
    expected: Option<&SecretString>,
    new: &StoredGrant,
) -> Result<CasOutcome, StoreError> {
    let lock_path = sibling(path, ".lock");
    let lock = open_private(&lock_path, false).map_err(|e| StoreError::Write {
        path: lock_path.clone(),
        source: Arc::new(e),
    })?;
    lock.lock().map_err(|e| StoreError::Write {
        path: lock_path,
        source: Arc::new(e),
    })?;
    // Under the lock no other writer is mid-write: temporary files still here were left by
    // writers that crashed (SIGKILL between create and rename). Clear them.
    remove_leftover_temp_files(path);
    // Under the lock: read what is stored now, compare, replace.
    let current = read_grant(path)?;
    if !matches_expected(current.as_ref(), expected) {
        return Ok(CasOutcome::Conflict { current });
    }
    write_atomic(path, new)?;
    Ok(CasOutcome::Swapped)
    // The lock is released when `lock` is dropped.
}

fn temp_prefix(path: &Path) -> String {
    format!(
        ".{}.tmp-",
        path.file_name().unwrap_or_default().to_string_lossy()
    )
}

fn remove_leftover_temp_files(path: &Path) {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let prefix = temp_prefix(path);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn open_private(path: &Path, create_new: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(false);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn write_atomic(path: &Path, grant: &StoredGrant) -> Result<(), StoreError> {
    let write_err = |e: io::Error| StoreError::Write {
        path: path.to_owned(),
        source: Arc::new(e),
    };
    let format = FileFormat {
        version: FORMAT_VERSION,
        refresh_token: grant.refresh_token.expose_secret().to_owned(),
        scope: grant.scope.clone(),
        last_used: grant.last_used.map(to_unix),
        stored_at: grant.stored_at.map(to_unix),
        generation: grant.generation,
    };
    let bytes = serde_json::to_vec_pretty(&format).map_err(|e| write_err(io::Error::other(e)))?;
    write_bytes_atomic(path, &bytes)
}

/// Replaces `path` with `bytes`: a temporary file (mode 0600), flushed, renamed over it, and
/// the folder flushed.
fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let write_err = |e: io::Error| StoreError::Write {
        path: path.to_owned(),
        source: Arc::new(e),
    };
    // A hidden temporary file in the same folder, so the rename stays on one filesystem.
    let tmp = path.with_file_name(format!(
        "{}{}-{:016x}",
        temp_prefix(path),
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut file = open_private(&tmp, true)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

#[cfg(unix)]
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_path: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tokenward-filestore-{name}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_exchange_lock_has_one_holder_at_a_time() {
        let dir = temp_dir("exchange-lock");
        let store = FileStore::new(dir.join("grant.json"));
        let held = store.lock_exchange().await.unwrap().expect("a file lock");
        // A second handle (as another process would) waits while it is held.
        let other = FileStore::new(dir.join("grant.json"));
        let waiting = tokio::time::timeout(Duration::from_millis(200), other.lock_exchange());
        assert!(waiting.await.is_err(), "taken twice");
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(5), other.lock_exchange()).await;
        assert!(matches!(again, Ok(Ok(Some(_)))), "released on drop");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_access_token_is_shared_only_when_asked_and_in_a_private_file() {
        let dir = temp_dir("shared-token");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let token = SharedToken::new("at-1", t, t + Duration::from_secs(600), Some("a b".into()));
        let private = FileStore::new(dir.join("grant.json"));
        private.store_shared_token(token.clone()).await.unwrap();
        assert!(private.load_shared_token().await.unwrap().is_none());
        assert!(!dir.join("grant.json.access").exists(), "nothing on disk");

        let shared = FileStore::new(dir.join("grant.json")).share_access_token(true);
        shared.store_shared_token(token).await.unwrap();
        let loaded = shared.load_shared_token().await.unwrap().unwrap();
        assert_eq!(loaded.access_token.expose_secret(), "at-1");
        assert_eq!(loaded.issued_at, t);
        assert_eq!(loaded.expires_at, t + Duration::from_secs(600));
        assert_eq!(loaded.scope.as_deref(), Some("a b"));
        assert!(!format!("{loaded:?}").contains("at-1"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(dir.join("grant.json.access"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::write(dir.join("grant.json.access"), "at-1 garbage").unwrap();
        let err = shared.load_shared_token().await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(!err.to_string().contains("at-1"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn round_trip_with_mode_0600_and_no_leftovers() {
        let dir = temp_dir("roundtrip");
        let store = FileStore::new(dir.join("grant.json"));
        assert!(store.load().await.unwrap().is_none());
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let grant = StoredGrant::new("rt-1")
            .with_scope(Some("jobs.read".into()))
            .with_last_used(Some(t))
            .with_stored_at(Some(t));
        assert!(matches!(
            store.compare_and_swap(None, grant).await.unwrap(),
            CasOutcome::Swapped
        ));
        let loaded = store.load().await.unwrap().unwrap();
        assert_eq!(loaded.refresh_token.expose_secret(), "rt-1");
        assert_eq!(loaded.scope.as_deref(), Some("jobs.read"));
        assert_eq!(loaded.last_used, Some(t));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(store.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains(".tmp-")),
            "no temp file left: {names:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn compare_and_swap_never_overwrites_a_newer_rotation() {
        let dir = temp_dir("cas");
        let a = FileStore::new(dir.join("grant.json"));
        let b = FileStore::new(dir.join("grant.json"));
        a.compare_and_swap(None, StoredGrant::new("rt-1"))
            .await
            .unwrap();
        let rt1 = SecretString::from("rt-1");
        assert!(matches!(
            a.compare_and_swap(Some(&rt1), StoredGrant::new("rt-2"))
                .await
                .unwrap(),
            CasOutcome::Swapped
        ));
        // b still believes rt-1 is current.
        match b
            .compare_and_swap(Some(&rt1), StoredGrant::new("rt-2b"))
            .await
            .unwrap()
        {
            CasOutcome::Conflict { current } => {
                assert_eq!(current.unwrap().refresh_token.expose_secret(), "rt-2")
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(
            a.load()
                .await
                .unwrap()
                .unwrap()
                .refresh_token
                .expose_secret(),
            "rt-2"
        );
        // Creating when something is stored is a conflict too.
        assert!(matches!(
            b.compare_and_swap(None, StoredGrant::new("x"))
                .await
                .unwrap(),
            CasOutcome::Conflict { .. }
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn corrupt_files_are_typed_errors_and_left_untouched() {
        let dir = temp_dir("corrupt");
        let path = dir.join("grant.json");
        let cases: Vec<(&[u8], &str)> = vec![
            (b"", "empty"),
            (b"{not json", "not a tokenward grant file"),
            (b"\xff\xfe\x00garbage", "not a tokenward grant file"),
            (
                br#"{"version":2,"refresh_token":"rt-secret"}"#,
                "unsupported format version 2",
            ),
            (
                br#"{"version":1,"refresh_token":""}"#,
                "refresh token is empty",
            ),
            (
                br#"{"version":1,"refresh_token":"rt-secret","extra":1}"#,
                "not a tokenward grant file",
            ),
            (br#"{"version":1}"#, "not a tokenward grant file"),
            (br#"[]"#, "not a tokenward grant file"),
        ];
        let store = FileStore::new(&path);
        for (bytes, expect) in cases {
            fs::write(&path, bytes).unwrap();
            let err = store.load().await.unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
            assert!(text.contains(expect), "{text}");
            assert!(
                !text.contains("rt-secret"),
                "no file contents in errors: {text}"
            );
            assert!(!err.is_retryable());
            // A write does not paper over it either.
            let err = store
                .compare_and_swap(None, StoredGrant::new("new"))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }));
            assert_eq!(fs::read(&path).unwrap(), bytes, "left untouched");
        }
        // Oversized.
        fs::write(&path, vec![b' '; (MAX_FILE_BYTES + 10) as usize]).unwrap();
        assert!(matches!(
            store.load().await.unwrap_err(),
            StoreError::Corrupt { .. }
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn temp_files_left_by_a_crashed_writer_are_cleared_on_the_next_write() {
        let dir = temp_dir("leftover");
        let path = dir.join("grant.json");
        let leftover = dir.join(".grant.json.tmp-999999-00000000deadbeef");
        fs::write(&leftover, b"{\"version\":1,\"refresh_token\":\"half-writ").unwrap();
        let unrelated = dir.join("other.json");
        fs::write(&unrelated, b"{}").unwrap();
        let store = FileStore::new(&path);
        store
            .compare_and_swap(None, StoredGrant::new("rt"))
            .await
            .unwrap();
        assert!(!leftover.exists());
        assert!(unrelated.exists(), "only our temporary files are removed");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn unwritable_folder_is_a_write_error_and_keeps_the_old_grant() {
        let dir = temp_dir("missing");
        let store = FileStore::new(dir.join("no-such-folder").join("grant.json"));
        let err = store
            .compare_and_swap(None, StoredGrant::new("rt"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Write { .. }), "{err:?}");
        assert!(err.is_retryable());
        fs::remove_dir_all(&dir).unwrap();
    }
}
