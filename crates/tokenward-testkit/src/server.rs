//! [`FakeServer`], its builder, and the state every endpoint shares.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get, post};
use base64::Engine as _;
use tokio::time::Instant;

use crate::client::InProcessClient;
use crate::counters::Counters;
use crate::fault::{Endpoint, Fault};
use crate::listen::RunningServer;
use crate::record::TokenRequestRecord;

/// The base URL of the in-process server. The host is never resolved: [`InProcessClient`]
/// ignores it and hands the request straight to the router.
pub(crate) const IN_PROCESS_BASE: &str = "http://testkit.invalid";

const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// How long an authorization code can be redeemed (RFC 6749 §4.1.2 recommends at most ten
/// minutes; the fake is stricter by default).
const DEFAULT_CODE_LIFETIME: Duration = Duration::from_secs(60);

/// The subject (`sub`) of the simulated user who approves authorization requests.
pub(crate) const USER_SUBJECT: &str = "testkit-user";

/// How the token endpoint writes `expires_in` in a successful token response.
///
/// Real servers disagree: most send a number, some a string, some nothing at all. Change it at
/// run time with [`FakeServer::set_expires_in_format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ExpiresIn {
    /// `"expires_in": 3600` (RFC 6749; the default).
    #[default]
    Number,
    /// `"expires_in": "3600"`.
    String,
    /// No `expires_in` field. The token still expires after the configured lifetime.
    Omitted,
}

/// Builds a [`FakeServer`]. Start with [`FakeServer::builder`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tokenward_testkit::FakeServer;
///
/// let server = FakeServer::builder()
///     .client("demo-client", "demo-secret")
///     .client("demo-client", "next-secret") // a second valid secret, as during a rotation
///     .public_client("spa")
///     .client_scopes("demo-client", "jobs.read jobs.write")
///     .redirect_uri("demo-client", "https://app.example.com/callback")
///     .redirect_uri("spa", "http://127.0.0.1:8080/callback")
///     .token_lifetime(Duration::from_secs(600))
///     .build();
/// # let _ = server;
/// ```
#[derive(Clone)]
pub struct FakeServerBuilder {
    clients: BTreeMap<String, Client>,
    scopes: BTreeMap<String, Vec<String>>,
    redirect_uris: BTreeMap<String, Vec<String>>,
    grant_types: BTreeMap<String, Vec<String>>,
    code_lifetime: Duration,
    lifetime: Duration,
    rotate: bool,
    refresh_grace: Duration,
    expires_in: ExpiresIn,
    token_type: String,
    issuer_path: String,
}

impl Default for FakeServerBuilder {
    fn default() -> Self {
        FakeServerBuilder {
            clients: BTreeMap::new(),
            scopes: BTreeMap::new(),
            redirect_uris: BTreeMap::new(),
            grant_types: BTreeMap::new(),
            code_lifetime: DEFAULT_CODE_LIFETIME,
            lifetime: DEFAULT_LIFETIME,
            rotate: true,
            refresh_grace: Duration::ZERO,
            expires_in: ExpiresIn::Number,
            token_type: "Bearer".to_owned(),
            issuer_path: String::new(),
        }
    }
}

impl fmt::Debug for FakeServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeServerBuilder")
            .field("clients", &ClientsDebug(&self.clients))
            .field("client_scopes", &self.scopes)
            .field("redirect_uris", &self.redirect_uris)
            .field("client_grant_types", &self.grant_types)
            .field("code_lifetime", &self.code_lifetime)
            .field("token_lifetime", &self.lifetime)
            .field("rotate_refresh_tokens", &self.rotate)
            .field("expires_in", &self.expires_in)
            .field("token_type", &self.token_type)
            .field("issuer_path", &self.issuer_path)
            .finish()
    }
}

impl FakeServerBuilder {
    /// Registers a confidential client with a secret. Calling it again for the same client adds
    /// another secret: every registered secret is accepted (as during a secret rotation).
    pub fn client(mut self, client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        let client = self.clients.entry(client_id.into()).or_default();
        let secret = secret.into();
        if !client.secrets.contains(&secret) {
            client.secrets.push(secret);
        }
        self
    }

    /// Registers a public client: it has no secret and identifies itself with `client_id`
    /// alone. Public clients may use the refresh-token grant but not client credentials
    /// (`unauthorized_client`, as RFC 6749 §4.4 requires).
    pub fn public_client(mut self, client_id: impl Into<String>) -> Self {
        self.clients.entry(client_id.into()).or_default().public = true;
        self
    }

    /// Limits the scopes a client may obtain (space-separated). A request for anything else is
    /// answered `invalid_scope`; a client-credentials request without `scope` gets all of them.
    ///
    /// Without this call a client is granted whatever scope it asks for.
    ///
    /// # Panics
    ///
    /// [`build`](Self::build) panics if the client is not registered with
    /// [`client`](Self::client) or [`public_client`](Self::public_client).
    pub fn client_scopes(mut self, client_id: impl Into<String>, scopes: &str) -> Self {
        self.scopes.insert(client_id.into(), parse_scope(scopes));
        self
    }

    /// Registers a redirection endpoint for a client (RFC 6749 §3.1.2). `/authorize` only
    /// redirects to a registered URI, compared as an exact string, as real servers do; a client
    /// without one cannot use the authorization code flow. Call it again to register more.
    ///
    /// # Panics
    ///
    /// If `uri` has a fragment (RFC 6749 §3.1.2 forbids one). [`build`](Self::build) panics if
    /// the client is not registered.
    ///
    /// A loopback IP redirect URI over http (`http://127.0.0.1/callback`, `http://[::1]/cb`)
    /// matches the same URI with any port, as RFC 8252 §7.3 asks of servers.
    pub fn redirect_uri(mut self, client_id: impl Into<String>, uri: impl Into<String>) -> Self {
        let uri = uri.into();
        assert!(
            !uri.contains('#'),
            "tokenward-testkit: redirect_uri {uri:?} has a fragment, which RFC 6749 §3.1.2 forbids"
        );
        let uris = self.redirect_uris.entry(client_id.into()).or_default();
        if !uris.contains(&uri) {
            uris.push(uri);
        }
        self
    }

    /// Limits the grant types a client may use (space-separated `grant_type` values, e.g.
    /// `"authorization_code refresh_token"`). Others are answered `unauthorized_client`, at
    /// `/token` and, for `authorization_code`, at `/authorize`.
    ///
    /// Without this call a client may use every grant (public clients still cannot use client
    /// credentials).
    ///
    /// # Panics
    ///
    /// [`build`](Self::build) panics if the client is not registered.
    pub fn client_grant_types(mut self, client_id: impl Into<String>, grant_types: &str) -> Self {
        self.grant_types
            .insert(client_id.into(), parse_scope(grant_types));
        self
    }

    /// How long an authorization code may be redeemed (default 60 seconds, tokio time).
    pub fn code_lifetime(mut self, lifetime: Duration) -> Self {
        self.code_lifetime = lifetime;
        self
    }

    /// How long issued access tokens live (default one hour). `expires_in` reports it in whole
    /// seconds.
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Whether every refresh returns a new refresh token and retires the old one (default
    /// `true`). With rotation off, the refresh token stays valid and refresh responses carry no
    /// `refresh_token`.
    pub fn rotate_refresh_tokens(mut self, rotate: bool) -> Self {
        self.rotate = rotate;
        self
    }

    /// For this long after a rotation, the refresh token just rotated out is still accepted
    /// once more — as long as its successor has not been used — instead of counting as reuse
    /// (default zero: no grace). This is Okta's "grace period" and Auth0's "reuse interval":
    /// it lets a client that crashed after the server rotated, but before it stored the new
    /// refresh token, recover with the one it had. Each use is counted in
    /// [`Counters::refresh_grace_used`](crate::Counters::refresh_grace_used); the successor
    /// that was never used is retired.
    pub fn refresh_token_grace(mut self, grace: Duration) -> Self {
        self.refresh_grace = grace;
        self
    }

    /// How `expires_in` is written (default [`ExpiresIn::Number`]).
    pub fn expires_in_format(mut self, format: ExpiresIn) -> Self {
        self.expires_in = format;
        self
    }

    /// The `token_type` sent in token responses (default `"Bearer"`).
    pub fn token_type(mut self, token_type: impl Into<String>) -> Self {
        self.token_type = token_type.into();
        self
    }

    /// Gives the issuer identifier a path, as multi-tenant servers have
    /// (`https://login.example.com/tenant-a`): the issuer becomes the server's base URL
    /// followed by `path` (`"/tenant-a"`), and the metadata is served only where that issuer's
    /// well-known URLs are (RFC 8414 §3.1 inserts the well-known path before `path`; OpenID
    /// Connect appends it). The endpoints themselves stay where they are.
    ///
    /// # Panics
    ///
    /// If `path` does not start with `/`, ends with `/`, or has a query or fragment.
    pub fn issuer_path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        assert!(
            path.starts_with('/') && !path.ends_with('/') && !path.contains(['?', '#']),
            "tokenward-testkit: issuer_path({path:?}) must start with / and have no trailing /, query or fragment"
        );
        self.issuer_path = path;
        self
    }

    /// Builds the server. It answers in-process requests at once
    /// ([`FakeServer::http_client`]); [`FakeServer::listen`] also serves it over TCP.
    ///
    /// # Panics
    ///
    /// If [`client_scopes`](Self::client_scopes), [`redirect_uri`](Self::redirect_uri) or
    /// [`client_grant_types`](Self::client_grant_types) names a client that was never
    /// registered.
    pub fn build(self) -> FakeServer {
        let mut clients = self.clients;
        fn registered<'a>(
            clients: &'a mut BTreeMap<String, Client>,
            id: &str,
            method: &str,
        ) -> &'a mut Client {
            match clients.get_mut(id) {
                Some(client) => client,
                None => panic!(
                    "tokenward-testkit: {method}(\"{id}\", ..) names a client that is not \
                     registered; call .client(\"{id}\", secret) or .public_client(\"{id}\") too"
                ),
            }
        }
        for (id, scopes) in self.scopes {
            registered(&mut clients, &id, "client_scopes").scopes = Some(scopes);
        }
        for (id, uris) in self.redirect_uris {
            registered(&mut clients, &id, "redirect_uri").redirect_uris = uris;
        }
        for (id, grant_types) in self.grant_types {
            registered(&mut clients, &id, "client_grant_types").grant_types = Some(grant_types);
        }
        let inner = Inner {
            clients,
            code_lifetime: self.code_lifetime,
            consent: true,
            codes: HashMap::new(),
            introspect_faults: VecDeque::new(),
            revoke_faults: VecDeque::new(),
            metadata_faults: VecDeque::new(),
            issuer_path: self.issuer_path,
            metadata_issuer: None,
            endpoint_prefix: String::new(),
            lifetime: self.lifetime,
            rotate: self.rotate,
            refresh_grace: self.refresh_grace,
            expires_in: self.expires_in,
            token_type: self.token_type,
            access: HashMap::new(),
            refresh: HashMap::new(),
            families: Vec::new(),
            faults: VecDeque::new(),
            persistent_fault: None,
            last_request: None,
            counters: Counters::default(),
        };
        FakeServer {
            shared: Arc::new(Shared {
                inner: Mutex::new(inner),
            }),
        }
    }
}

/// A fake OAuth 2.0 authorization server with a protected resource, for tests.
///
/// It serves `GET /authorize` (the authorization code flow with PKCE, approved at once by a
/// simulated user), `POST /token` (authorization code, client credentials and refresh-token
/// grants, with refresh-token rotation and reuse detection), `POST /introspect` (RFC 7662),
/// `POST /revoke` (RFC 7009), `/resource` and `/resource/{scope}` (a protected resource that
/// answers with RFC 6750 `WWW-Authenticate` challenges), and scripted [`Fault`]s, all counted in
/// [`Counters`].
///
/// Reach it in-process with [`http_client`](Self::http_client) (no sockets, works with paused
/// tokio time) or over TCP with [`listen`](Self::listen). Cloning is cheap: clones share one
/// state, so a test can keep one clone for assertions and hand another to the code under test.
/// Every expiry uses [`tokio::time::Instant`], so `tokio::time::advance` expires tokens.
///
/// # Example
///
/// ```
/// use tokenward_testkit::{Fault, FakeServer};
///
/// let server = FakeServer::builder().client("demo-client", "demo-secret").build();
/// server.push_faults(Fault::Status(503), 2); // the next two token requests fail
/// let refresh_token = server.issue_refresh_token("demo-client", "jobs.read");
/// assert_eq!(server.token_calls(), 0);
/// # let _ = refresh_token;
/// ```
#[derive(Clone)]
pub struct FakeServer {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.shared.lock();
        f.debug_struct("FakeServer")
            .field("clients", &ClientsDebug(&inner.clients))
            .field("token_lifetime", &inner.lifetime)
            .field("rotate_refresh_tokens", &inner.rotate)
            .field("expires_in", &inner.expires_in)
            .field("token_type", &inner.token_type)
            .field("access_tokens", &inner.access.len())
            .field("refresh_tokens", &inner.refresh.len())
            .field("grants", &inner.families.len())
            .field("authorization_codes", &inner.codes.len())
            .field("consent", &inner.consent)
            .field("queued_faults", &inner.faults)
            .field("queued_introspect_faults", &inner.introspect_faults)
            .field("queued_revoke_faults", &inner.revoke_faults)
            .field("fault", &inner.persistent_fault)
            .field("counters", &inner.counters)
            .finish_non_exhaustive()
    }
}

impl FakeServer {
    /// Starts configuring a server.
    pub fn builder() -> FakeServerBuilder {
        FakeServerBuilder::default()
    }

    /// An [`HttpClient`](tokenward::HttpClient) that hands requests straight to this server's
    /// router: no sockets, no real time, so it works under `#[tokio::test(start_paused = true)]`.
    /// The URL's scheme and host are ignored; only the path and query matter.
    pub fn http_client(&self) -> InProcessClient {
        InProcessClient::new(self.router())
    }

    /// The axum [`Router`] that serves every endpoint, to mount in your own server or call with
    /// `tower::ServiceExt::oneshot`.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .route("/authorize", get(crate::authorize::authorize_endpoint))
            .route("/token", post(crate::token::token_endpoint))
            .route("/introspect", post(crate::introspect::introspect_endpoint))
            .route("/revoke", post(crate::introspect::revoke_endpoint))
            .route("/resource", any(crate::resource::resource_root))
            .route("/resource/{scope}", any(crate::resource::resource_scoped))
            .fallback(crate::discovery::metadata_endpoint)
            .with_state(self.shared.clone());
        let shared = self.shared.clone();
        Router::new().fallback_service(
            tower::ServiceBuilder::new()
                .map_request(move |request| crate::discovery::relocate(&shared, request))
                .service(routes),
        )
    }

    /// The issuer identifier for the in-process client: `http://testkit.invalid` followed by
    /// the [issuer path](FakeServerBuilder::issuer_path), if any. Discover it with
    /// `tokenward::AuthorizationServer` and [`http_client`](Self::http_client).
    pub fn issuer(&self) -> String {
        format!("{IN_PROCESS_BASE}{}", self.shared.lock().issuer_path)
    }

    /// Makes the metadata name `issuer` instead of the real one (`None` to stop), as a
    /// misconfigured or impersonating server would: a client must refuse it (RFC 8414 §3.3).
    pub fn set_metadata_issuer(&self, issuer: Option<&str>) {
        self.shared.lock().metadata_issuer = issuer.map(str::to_owned);
    }

    /// Moves every endpoint (`/authorize`, `/token`, `/introspect`, `/revoke`) under
    /// `prefix` (`"/v2"`; `""` moves them back), as a server migration does: the metadata
    /// names the new URLs at once, and the old ones answer 404 Not Found.
    ///
    /// # Panics
    ///
    /// If `prefix` is neither empty nor starts with `/`, or ends with `/`.
    pub fn move_endpoints(&self, prefix: &str) {
        assert!(
            prefix.is_empty() || (prefix.starts_with('/') && !prefix.ends_with('/')),
            "tokenward-testkit: move_endpoints({prefix:?}) takes \"\" or a path such as \"/v2\""
        );
        self.shared.lock().endpoint_prefix = prefix.to_owned();
    }

    /// `http://testkit.invalid{path}`: a URL for the in-process client.
    pub fn url(&self, path: &str) -> String {
        join_url(IN_PROCESS_BASE, path)
    }

    /// The token endpoint for the in-process client: `http://testkit.invalid/token`.
    pub fn token_url(&self) -> String {
        self.url("/token")
    }

    /// The protected resource for the in-process client: `http://testkit.invalid/resource`.
    pub fn resource_url(&self) -> String {
        self.url("/resource")
    }

    /// The authorization endpoint for the in-process client: `http://testkit.invalid/authorize`.
    /// Run its step in-process with [`approve`](Self::approve).
    pub fn authorize_url(&self) -> String {
        self.url("/authorize")
    }

    /// The introspection endpoint (RFC 7662) for the in-process client:
    /// `http://testkit.invalid/introspect`.
    pub fn introspect_url(&self) -> String {
        self.url("/introspect")
    }

    /// The revocation endpoint (RFC 7009) for the in-process client:
    /// `http://testkit.invalid/revoke`.
    pub fn revoke_url(&self) -> String {
        self.url("/revoke")
    }

    /// Plays the browser and the user at the authorization endpoint, in-process: takes the
    /// authorization request URL a client built (only its query matters) and returns the query
    /// of the redirect the server answers with, `code=..&state=..`, or `error=..&state=..`
    /// when it refuses the request by redirect (RFC 6749 §4.1.2.1). Counts as a request to
    /// `/authorize`.
    ///
    /// # Errors
    ///
    /// The error page's message when the server does not redirect at all: an unknown or missing
    /// `client_id`, or a `redirect_uri` that is not registered.
    ///
    /// # Example
    ///
    /// ```
    /// use tokenward_testkit::FakeServer;
    ///
    /// let server = FakeServer::builder()
    ///     .client("web", "web-secret")
    ///     .redirect_uri("web", "https://app.example.com/cb")
    ///     .build();
    /// let url = format!(
    ///     "{}?response_type=code&client_id=web&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&state=xyz",
    ///     server.authorize_url()
    /// );
    /// let callback = server.approve(&url).unwrap();
    /// assert!(callback.starts_with("code="));
    /// assert!(callback.ends_with("&state=xyz"));
    ///
    /// let unregistered = url.replace("app.example.com", "evil.example.com");
    /// assert!(server.approve(&unregistered).is_err());
    /// ```
    pub fn approve(&self, authorize_url: &str) -> Result<String, String> {
        let query = authorize_url
            .split_once('#')
            .map_or(authorize_url, |(url, _)| url)
            .split_once('?')
            .map_or("", |(_, query)| query);
        match crate::authorize::authorize(&self.shared, query) {
            crate::authorize::Outcome::Redirect { query, .. } => Ok(query),
            crate::authorize::Outcome::Page(message) => Err(message),
        }
    }

    /// Whether the simulated user approves authorization requests (default `true`). When not,
    /// `/authorize` redirects with `error=access_denied`.
    pub fn set_consent(&self, approve: bool) {
        self.shared.lock().consent = approve;
    }
    /// Serves the same router on `127.0.0.1` (an ephemeral port) in a spawned task, sharing
    /// this server's state. The listener stops when the [`RunningServer`] is dropped or shut
    /// down.
    ///
    /// # Errors
    ///
    /// If the port cannot be bound.
    pub async fn listen(&self) -> std::io::Result<RunningServer> {
        crate::listen::listen(self.clone()).await
    }

    // ---------------------------------------------------------------------------------------
    // Observations

    /// What the last request to `/token` carried (including faulted ones), or `None` before
    /// the first.
    pub fn last_token_request(&self) -> Option<TokenRequestRecord> {
        self.shared.lock().last_request.clone()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters.clone()
    }

    /// How many requests reached `/token`, faulted ones included (`counters().token_requests`).
    pub fn token_calls(&self) -> u64 {
        self.shared.lock().counters.token_requests
    }

    /// Sets every counter back to zero.
    pub fn reset_counters(&self) {
        self.shared.lock().counters = Counters::default();
    }

    // ---------------------------------------------------------------------------------------
    // Seeding and administration

    /// Starts a grant as if `client_id` had exchanged an authorization code for `scope`
    /// (space-separated), and returns its refresh token (without any request or counter). The client need not be registered
    /// for the token to exist, but only a registered client can redeem it.
    pub fn issue_refresh_token(&self, client_id: &str, scope: &str) -> String {
        let mut inner = self.shared.lock();
        let family = inner.new_family(client_id, parse_scope(scope));
        inner.new_refresh_token(family)
    }

    /// Issues an access token directly (no grant, no counters), valid for the current token
    /// lifetime, to test a resource or a middleware without the token endpoint.
    pub fn issue_access_token(&self, client_id: &str, scope: &str) -> String {
        let mut inner = self.shared.lock();
        inner.new_access_token(client_id, parse_scope(scope), None)
    }

    /// Revokes one access token. Returns whether it was known.
    pub fn revoke_access_token(&self, access_token: &str) -> bool {
        match self.shared.lock().access.get_mut(access_token) {
            Some(record) => {
                record.revoked = true;
                true
            }
            None => false,
        }
    }

    /// Revokes every access token issued so far. Refresh tokens stay valid.
    pub fn revoke_all_access_tokens(&self) {
        for record in self.shared.lock().access.values_mut() {
            record.revoked = true;
        }
    }

    /// Revokes the whole grant a refresh token belongs to: every refresh token and access token
    /// of it, as when a user withdraws consent. Returns whether the refresh token was known.
    pub fn revoke_grant_of(&self, refresh_token: &str) -> bool {
        let mut inner = self.shared.lock();
        match inner.refresh.get(refresh_token).map(|r| r.family) {
            Some(family) => {
                inner.families[family].revoked = true;
                true
            }
            None => false,
        }
    }

    /// Adds a secret to a client (registering a confidential client if it is unknown). The old
    /// secrets stay valid until removed.
    pub fn add_client_secret(&self, client_id: &str, secret: &str) {
        let mut inner = self.shared.lock();
        let client = inner.clients.entry(client_id.to_owned()).or_default();
        if !client.secrets.iter().any(|s| s == secret) {
            client.secrets.push(secret.to_owned());
        }
    }

    /// Removes a secret from a client. Returns whether it was there.
    pub fn remove_client_secret(&self, client_id: &str, secret: &str) -> bool {
        let mut inner = self.shared.lock();
        let Some(client) = inner.clients.get_mut(client_id) else {
            return false;
        };
        let before = client.secrets.len();
        client.secrets.retain(|s| s != secret);
        client.secrets.len() != before
    }

    /// Changes the lifetime of access tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.lock().lifetime = lifetime;
    }

    /// Changes how `expires_in` is written from now on.
    pub fn set_expires_in_format(&self, format: ExpiresIn) {
        self.shared.lock().expires_in = format;
    }

    /// Changes the `token_type` of token responses from now on, e.g. `"bearer"` to test that a
    /// client compares it case-insensitively.
    pub fn set_token_type(&self, token_type: &str) {
        self.shared.lock().token_type = token_type.to_owned();
    }

    /// Turns refresh-token rotation on or off from now on.
    pub fn set_rotate_refresh_tokens(&self, rotate: bool) {
        self.shared.lock().rotate = rotate;
    }

    // ---------------------------------------------------------------------------------------
    // Faults

    /// Queues a fault for the next request to `/token`. Each request takes one queued fault, in
    /// order; the queue goes before any [`set_fault`](Self::set_fault) fault.
    ///
    /// # Panics
    ///
    /// For [`Fault::Status`] with a code outside `100..=999`, and for
    /// [`Fault::RateLimited`] with a `retry_after` that is not a valid header value.
    pub fn push_fault(&self, fault: Fault) {
        fault.validate();
        self.shared.lock().faults.push_back(fault);
    }

    /// Queues a fault for the next request to another endpoint: [`Endpoint::Token`] (the same
    /// as [`push_fault`](Self::push_fault)), [`Endpoint::Introspect`] or [`Endpoint::Revoke`].
    ///
    /// # Panics
    ///
    /// As [`push_fault`](Self::push_fault).
    pub fn push_fault_at(&self, endpoint: Endpoint, fault: Fault) {
        fault.validate();
        self.shared.lock().queue(endpoint).push_back(fault);
    }

    /// Queues the same fault for the next `times` requests to `/token`.
    ///
    /// # Panics
    ///
    /// As [`push_fault`](Self::push_fault).
    pub fn push_faults(&self, fault: Fault, times: usize) {
        fault.validate();
        let mut inner = self.shared.lock();
        inner.faults.extend(std::iter::repeat_n(fault, times));
    }

    /// Sets (or with `None` clears) a fault that hits every request to `/token` once the queue
    /// is empty.
    ///
    /// # Panics
    ///
    /// As [`push_fault`](Self::push_fault).
    pub fn set_fault(&self, fault: Option<Fault>) {
        if let Some(fault) = &fault {
            fault.validate();
        }
        self.shared.lock().persistent_fault = fault;
    }

    /// Empties every fault queue and clears the persistent fault.
    pub fn clear_faults(&self) {
        let mut inner = self.shared.lock();
        inner.faults.clear();
        inner.introspect_faults.clear();
        inner.revoke_faults.clear();
        inner.metadata_faults.clear();
        inner.persistent_fault = None;
    }
}

pub(crate) fn join_url(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    }
}

// ------------------------------------------------------------------------------------------
// State

/// The state behind every clone of a [`FakeServer`] and every handler.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
}

impl Shared {
    /// Locks the state. Handlers never hold the lock across an `.await`.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Clone, Default)]
pub(crate) struct Client {
    pub(crate) secrets: Vec<String>,
    pub(crate) public: bool,
    /// `None`: any scope is granted.
    pub(crate) scopes: Option<Vec<String>>,
    /// Where `/authorize` may redirect to.
    pub(crate) redirect_uris: Vec<String>,
    /// `None`: every grant type.
    pub(crate) grant_types: Option<Vec<String>>,
}

impl Client {
    /// A public client: no secret to authenticate with.
    pub(crate) fn is_public(&self) -> bool {
        self.public && self.secrets.is_empty()
    }

    /// Whether the client may use `grant_type`.
    pub(crate) fn may_use(&self, grant_type: &str) -> bool {
        self.grant_types
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|g| g == grant_type))
    }
}

/// Prints client ids and how many secrets each has, never the secrets.
struct ClientsDebug<'a>(&'a BTreeMap<String, Client>);

impl fmt::Debug for ClientsDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (id, client) in self.0 {
            if client.public {
                map.entry(id, &"public");
            } else {
                map.entry(
                    id,
                    &format_args!("{} secret(s) [REDACTED]", client.secrets.len()),
                );
            }
        }
        map.finish()
    }
}

pub(crate) struct AccessRecord {
    pub(crate) client_id: String,
    pub(crate) scope: Vec<String>,
    pub(crate) issued_at: Instant,
    pub(crate) expires_at: Instant,
    pub(crate) family: Option<usize>,
    pub(crate) revoked: bool,
}

pub(crate) struct RefreshRecord {
    pub(crate) family: usize,
    pub(crate) rotated: bool,
    pub(crate) issued_at: Instant,
    /// When it was rotated out, and the refresh token that replaced it.
    pub(crate) rotated_to: Option<(Instant, String)>,
}

/// One grant: the refresh tokens that descend from one authorization, and their access tokens.
pub(crate) struct Family {
    pub(crate) client_id: String,
    pub(crate) scope: Vec<String>,
    pub(crate) revoked: bool,
}

/// An authorization code issued by `/authorize`.
pub(crate) struct CodeRecord {
    pub(crate) client_id: String,
    /// The redirect URI the code was issued for.
    pub(crate) redirect_uri: String,
    /// Whether the authorization request named it (then the token request must, too).
    pub(crate) redirect_uri_sent: bool,
    pub(crate) scope: Vec<String>,
    /// The S256 `code_challenge`, when the request used PKCE.
    pub(crate) challenge: Option<String>,
    pub(crate) expires_at: Instant,
    pub(crate) used: bool,
    /// The grant its redemption started, revoked if the code is presented again.
    pub(crate) family: Option<usize>,
}

/// What the resource makes of a presented access token.
pub(crate) enum AccessStatus<'a> {
    Valid(&'a AccessRecord),
    Unknown,
    Expired,
    Revoked,
}

pub(crate) struct Inner {
    pub(crate) clients: BTreeMap<String, Client>,
    pub(crate) lifetime: Duration,
    pub(crate) rotate: bool,
    pub(crate) refresh_grace: Duration,
    pub(crate) expires_in: ExpiresIn,
    pub(crate) token_type: String,
    pub(crate) access: HashMap<String, AccessRecord>,
    pub(crate) refresh: HashMap<String, RefreshRecord>,
    pub(crate) families: Vec<Family>,
    pub(crate) codes: HashMap<String, CodeRecord>,
    pub(crate) code_lifetime: Duration,
    pub(crate) consent: bool,
    pub(crate) faults: VecDeque<Fault>,
    pub(crate) introspect_faults: VecDeque<Fault>,
    pub(crate) revoke_faults: VecDeque<Fault>,
    pub(crate) metadata_faults: VecDeque<Fault>,
    pub(crate) issuer_path: String,
    pub(crate) metadata_issuer: Option<String>,
    pub(crate) endpoint_prefix: String,
    pub(crate) persistent_fault: Option<Fault>,
    pub(crate) last_request: Option<TokenRequestRecord>,
    pub(crate) counters: Counters,
}

impl Inner {
    /// The next fault for `endpoint`: its queue first; for `/token`, then the persistent one.
    pub(crate) fn next_fault(&mut self, endpoint: Endpoint) -> Option<Fault> {
        match endpoint {
            Endpoint::Token => self
                .faults
                .pop_front()
                .or_else(|| self.persistent_fault.clone()),
            other => self.queue(other).pop_front(),
        }
    }

    pub(crate) fn queue(&mut self, endpoint: Endpoint) -> &mut VecDeque<Fault> {
        match endpoint {
            Endpoint::Token => &mut self.faults,
            Endpoint::Introspect => &mut self.introspect_faults,
            Endpoint::Revoke => &mut self.revoke_faults,
            Endpoint::Metadata => &mut self.metadata_faults,
        }
    }

    pub(crate) fn new_family(&mut self, client_id: &str, scope: Vec<String>) -> usize {
        self.families.push(Family {
            client_id: client_id.to_owned(),
            scope,
            revoked: false,
        });
        self.families.len() - 1
    }

    pub(crate) fn new_refresh_token(&mut self, family: usize) -> String {
        let token = random_token("rt_");
        self.refresh.insert(
            token.clone(),
            RefreshRecord {
                family,
                rotated: false,
                issued_at: Instant::now(),
                rotated_to: None,
            },
        );
        token
    }

    pub(crate) fn new_access_token(
        &mut self,
        client_id: &str,
        scope: Vec<String>,
        family: Option<usize>,
    ) -> String {
        let token = random_token("at_");
        self.access.insert(
            token.clone(),
            AccessRecord {
                client_id: client_id.to_owned(),
                scope,
                issued_at: Instant::now(),
                expires_at: Instant::now() + self.lifetime,
                family,
                revoked: false,
            },
        );
        token
    }

    pub(crate) fn access_status(&self, token: &str) -> AccessStatus<'_> {
        let Some(record) = self.access.get(token) else {
            return AccessStatus::Unknown;
        };
        let family_revoked = record.family.is_some_and(|f| self.families[f].revoked);
        if record.revoked || family_revoked {
            AccessStatus::Revoked
        } else if Instant::now() >= record.expires_at {
            AccessStatus::Expired
        } else {
            AccessStatus::Valid(record)
        }
    }
}

/// A random, URL-safe token: a short prefix and 256 random bits.
pub(crate) fn random_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    let mut token = String::with_capacity(prefix.len() + 43);
    token.push_str(prefix);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(bytes, &mut token);
    token
}

/// Splits a space-separated scope string, dropping empty items and duplicates (order kept).
pub(crate) fn parse_scope(scope: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in scope.split(' ').filter(|s| !s.is_empty()) {
        if !out.iter().any(|s| s == item) {
            out.push(item.to_owned());
        }
    }
    out
}
