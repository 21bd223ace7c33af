//! What reaches `Debug`, `Display` and logs: URLs without their credentials or query values,
//! form parameters without their values, and server text without the secrets a request sent.
//!
//! * [`redact_url`]: `scheme://host[:port]/path` as written; userinfo becomes `[REDACTED]@`,
//!   each query value `[REDACTED]` (names kept), a fragment `#[REDACTED]`.
//! * [`Sent`]: the secrets one request carried (client secrets, refresh tokens, codes, code
//!   verifiers, tokens, every extra parameter value), scrubbed from what the server answers.
//!
//! # Which occurrences are scrubbed
//!
//! A secret of at least [`MIN_SUBSTRING_LEN`] bytes is replaced wherever it occurs. A shorter
//! one (a weak client secret such as `"abc"`) is still a secret, but replacing every
//! occurrence would wreck the text (`"a"` is in `invalid_grant`): it is replaced where it
//! stands as a whole word, not touching a letter, digit, `_` or non-ASCII byte on a side
//! where the secret itself begins or ends with one. That is how a server quotes a value
//! ("Invalid client secret: abc", `secret=abc&`). Each secret's form-urlencoded spelling is
//! scrubbed too, for servers that echo the request body.

use std::borrow::Cow;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::secret::SecretState;

/// What replaces a secret.
pub(crate) const REDACTED: &str = "[REDACTED]";

/// Secrets at least this long are scrubbed wherever they occur; shorter ones as whole words.
pub(crate) const MIN_SUBSTRING_LEN: usize = 8;

/// Form parameters whose values are not secret: they stay in server text, and `scope` stays
/// visible in `Debug`.
const PUBLIC_PARAMS: &[&str] = &[
    "grant_type",
    "scope",
    "redirect_uri",
    "token_type_hint",
    "client_id",
];

/// Whether `authority` is a host with at most a numeric port (`h`, `h:8443`, `[::1]:80`).
fn has_port_only(authority: &str) -> bool {
    let host_end = match authority.strip_prefix('[') {
        Some(rest) => rest.find(']').map_or(authority.len(), |i| i + 2),
        None => 0,
    };
    match authority[host_end..].split_once(':') {
        None => true,
        Some((_, port)) => port.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// `url` as it may be shown: userinfo replaced by `[REDACTED]@`, each query value by
/// `[REDACTED]` (a query item without `=` entirely), a fragment by `#[REDACTED]`; the
/// scheme, host, port and path as written.
pub(crate) fn redact_url(url: &str) -> String {
    let (rest, fragment) = match url.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (url, None),
    };
    let (base, query) = match rest.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (rest, None),
    };
    let mut out = String::with_capacity(url.len() + 16);
    let (scheme, after) = match base.find("://") {
        Some(i) => base.split_at(i + 3),
        None => ("", base),
    };
    out.push_str(scheme);
    let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(REDACTED);
            out.push_str(&authority[at..]);
        }
        // No `@`, but a `:` not followed by a port: a raw password with `/`, `?` or `#` in
        // it ended the authority early (`https://user:p?ss@host`). Show none of it.
        None if !has_port_only(authority) => out.push_str(REDACTED),
        None => out.push_str(authority),
    }
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        for (i, item) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match item.split_once('=') {
                Some((name, _)) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                None if item.is_empty() => {}
                None => out.push_str(REDACTED),
            }
        }
    }
    match fragment {
        Some("") => out.push('#'),
        Some(_) => {
            out.push('#');
            out.push_str(REDACTED);
        }
        None => {}
    }
    out
}

/// A URL for a `Debug` field: redacted, unquoted (as `http::Uri` prints).
pub(crate) struct UrlDebug<'a>(pub(crate) &'a str);

impl fmt::Debug for UrlDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.0))
    }
}

/// Extra form parameters for `Debug`: `name=[REDACTED]`, `scope` shown.
pub(crate) struct ParamsDebug<'a>(pub(crate) &'a [(String, String)]);

impl fmt::Debug for ParamsDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Param<'a>(&'a str, &'a str);
        impl fmt::Debug for Param<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.0 == "scope" {
                    write!(f, "{}={:?}", self.0, self.1)
                } else {
                    write!(f, "{}={REDACTED}", self.0)
                }
            }
        }
        f.debug_list()
            .entries(self.0.iter().map(|(name, value)| Param(name, value)))
            .finish()
    }
}

/// The secrets one request sent, to scrub from the server's answer.
#[derive(Default)]
pub(crate) struct Sent<'a> {
    secrets: Vec<Cow<'a, str>>,
}

impl<'a> Sent<'a> {
    /// The values of the form parameters sent, but for the public ones (`grant_type`,
    /// `scope`, `redirect_uri`, `token_type_hint`, `client_id`).
    pub(crate) fn form(params: &[(&'a str, &'a str)]) -> Self {
        let mut sent = Sent::default();
        for (name, value) in params {
            if !PUBLIC_PARAMS.contains(name) {
                sent.secret(value);
            }
        }
        sent
    }

    /// Also the values of these extra parameters (`scope` excepted).
    pub(crate) fn params(&mut self, params: &'a [(String, String)]) -> &mut Self {
        for (name, value) in params {
            if !PUBLIC_PARAMS.contains(&name.as_str()) {
                self.secret(value);
            }
        }
        self
    }

    /// Also the client secret sent, if any.
    pub(crate) fn client_secret(&mut self, secret: Option<&'a SecretString>) -> &mut Self {
        if let Some(secret) = secret {
            self.secret(secret.expose_secret());
        }
        self
    }

    /// Also the grant's client secrets, current and previous.
    pub(crate) fn client_secrets(&mut self, state: &'a SecretState) -> &mut Self {
        self.client_secret(state.current.as_ref());
        self.client_secret(state.previous.as_ref().map(|(secret, _)| secret))
    }

    /// Also this secret (and its form-urlencoded spelling). Empty ones are ignored.
    pub(crate) fn secret(&mut self, secret: &'a str) -> &mut Self {
        if secret.is_empty() {
            return self;
        }
        let encoded: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        if encoded != secret {
            self.secrets.push(Cow::Owned(encoded));
        }
        self.secrets.push(Cow::Borrowed(secret));
        self
    }

    /// `text` with every occurrence of a sent secret replaced by `[REDACTED]` (see the
    /// [module docs](self) for short secrets); borrowed when there was none.
    pub(crate) fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if self.secrets.is_empty() {
            return Cow::Borrowed(text);
        }
        let bytes = text.as_bytes();
        let mut out: Option<String> = None;
        // `copied`: where the text not yet copied to `out` begins.
        let (mut i, mut copied) = (0, 0);
        while i < bytes.len() {
            let longest = self
                .secrets
                .iter()
                .filter(|s| matches_at(bytes, i, s.as_bytes()))
                .map(|s| s.len())
                .max();
            match longest {
                Some(len) => {
                    let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                    out.push_str(&text[copied..i]);
                    out.push_str(REDACTED);
                    i += len;
                    copied = i;
                }
                None => i += 1,
            }
        }
        match out {
            Some(mut out) => {
                out.push_str(&text[copied..]);
                Cow::Owned(out)
            }
            None => Cow::Borrowed(text),
        }
    }

    /// Whether `text` holds a sent secret.
    pub(crate) fn found_in(&self, text: &str) -> bool {
        matches!(self.scrub(text), Cow::Owned(_))
    }
}

/// Whether `secret` occurs in `text` at byte `at`, as a whole word when it is short.
fn matches_at(text: &[u8], at: usize, secret: &[u8]) -> bool {
    if !text[at..].starts_with(secret) {
        return false;
    }
    if secret.len() >= MIN_SUBSTRING_LEN {
        return true;
    }
    let end = at + secret.len();
    let open_before = at == 0 || !is_word(secret[0]) || !is_word(text[at - 1]);
    let open_after = end == text.len() || !is_word(secret[secret.len() - 1]) || !is_word(text[end]);
    open_before && open_after
}

/// Letters, digits, `_` and the bytes of non-ASCII characters.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || !b.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_scheme_host_port_and_path_only() {
        let cases = [
            (
                "https://user:p4ssw0rd@auth.example.com:8443/oauth/token?api_key=k3y&x=1",
                "https://[REDACTED]@auth.example.com:8443/oauth/token?api_key=[REDACTED]&x=[REDACTED]",
            ),
            (
                "https://auth.example.com/token",
                "https://auth.example.com/token",
            ),
            (
                "https://a.example/t?sekrit&&k=&=v#frag",
                "https://a.example/t?[REDACTED]&&k=[REDACTED]&=[REDACTED]#[REDACTED]",
            ),
            ("https://u@h", "https://[REDACTED]@h"),
            // An `@` in the path is not userinfo; the last `@` of the authority is.
            ("http://h/p@q", "http://h/p@q"),
            ("http://a@b@h/p", "http://[REDACTED]@h/p"),
            ("user:pw@host/path", "[REDACTED]@host/path"),
            // A raw `?` in the password ends the authority early: none of it is shown.
            ("https://user:p?ss@host/t", "https://[REDACTED]?[REDACTED]"),
            ("http://[::1]:8080/t", "http://[::1]:8080/t"),
            (
                "com.example.app:/cb?code=1",
                "com.example.app:/cb?code=[REDACTED]",
            ),
            ("", ""),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn params_show_names_and_the_scope() {
        let params = vec![
            ("client_assertion".to_owned(), "eyJhbGciOi.x.y".to_owned()),
            ("scope".to_owned(), "jobs.read".to_owned()),
        ];
        assert_eq!(
            format!("{:?}", ParamsDebug(&params)),
            r#"[client_assertion=[REDACTED], scope="jobs.read"]"#
        );
    }

    #[test]
    fn long_secrets_are_scrubbed_everywhere_longest_first() {
        let mut sent = Sent::form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "rt-0123456789"),
            ("client_assertion", "rt-0123456789-and-more"),
        ]);
        sent.secret("");
        assert_eq!(
            sent.scrub("bad rt-0123456789-and-more, bad xrt-0123456789x; grant refresh_token"),
            "bad [REDACTED], bad x[REDACTED]x; grant refresh_token"
        );
        assert!(matches!(sent.scrub("nothing here"), Cow::Borrowed(_)));
        assert!(!sent.found_in(""));
    }

    #[test]
    fn short_secrets_are_scrubbed_as_whole_words() {
        let mut sent = Sent::default();
        sent.secret("a").secret("abc").secret("-x-");
        assert_eq!(
            sent.scrub("invalid_grant: Invalid client secret: abc (a); abcd z-x-b"),
            "invalid_grant: Invalid client secret: [REDACTED] ([REDACTED]); abcd z[REDACTED]b"
        );
        assert_eq!(sent.scrub("a"), "[REDACTED]");
        assert_eq!(sent.scrub("é a é"), "é [REDACTED] é");
        assert_eq!(sent.scrub("éaé"), "éaé");
    }

    #[test]
    fn the_form_encoded_spelling_is_scrubbed_too() {
        let mut sent = Sent::default();
        sent.secret("s3c+r/t:= %&long");
        assert_eq!(
            sent.scrub("body: client_secret=s3c%2Br%2Ft%3A%3D+%25%26long&x; raw s3c+r/t:= %&long"),
            "body: client_secret=[REDACTED]&x; raw [REDACTED]"
        );
    }

    #[test]
    fn public_parameters_are_not_secrets() {
        let sent = Sent::form(&[
            ("grant_type", "authorization_code"),
            ("redirect_uri", "https://app.example/cb"),
            ("scope", "jobs.read"),
            ("code", "the-code-value"),
        ]);
        assert_eq!(
            sent.scrub("authorization_code https://app.example/cb jobs.read the-code-value"),
            "authorization_code https://app.example/cb jobs.read [REDACTED]"
        );
    }

    #[test]
    fn an_error_response_is_redacted_before_the_error_is_built() {
        use bytes::Bytes;
        use http::{HeaderMap, HeaderValue, StatusCode};

        use crate::endpoint::{RawResponse, error_from_response};

        let mut headers = HeaderMap::new();
        let echo = HeaderValue::from_static("refresh_token=rt-0123456789");
        headers.insert("x-debug", echo.clone());
        headers.insert("x-request-id", HeaderValue::from_static("req-1"));
        let response = RawResponse {
            status: StatusCode::BAD_REQUEST,
            headers,
            body: Bytes::from_static(
                br#"{"error":"invalid_grant","error_description":"Invalid refresh token: rt-0123456789"}"#,
            ),
            assertion: None,
        };
        let sent = Sent::form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "rt-0123456789"),
        ]);
        let err = error_from_response(response, &sent);
        assert!(err.is_reauthorization_required(), "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(!text.contains("rt-0123456789"), "{text}");
        assert!(text.contains("Invalid refresh token: [REDACTED]"), "{text}");
        assert!(text.contains("req-1"), "other headers still show: {text}");
        let endpoint = err.endpoint_error().unwrap();
        // A header that quotes a secret is kept, but marked sensitive: `Debug` hides it.
        assert_eq!(endpoint.headers["x-debug"], echo);
        assert!(endpoint.headers["x-debug"].is_sensitive());
        assert!(!endpoint.headers["x-request-id"].is_sensitive());
        let oauth = endpoint.oauth.as_ref().unwrap();
        assert_eq!(
            oauth.unredacted_description(),
            Some("Invalid refresh token: rt-0123456789")
        );
        assert_eq!(oauth.unredacted_error(), "invalid_grant");
        assert_eq!(oauth.unredacted_uri(), None);
    }
}
