//! A lenient, panic-free parser for `WWW-Authenticate` (RFC 9110 §11.6.1, RFC 6750 §3).
//!
//! The grammar is `#challenge`, where
//!
//! ```text
//! challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param = token BWS "=" BWS ( token / quoted-string )
//! ```
//!
//! Commas separate both challenges and the parameters of one challenge: after a comma,
//! `token BWS "="` continues the current challenge with another parameter, while a bare
//! token starts a new challenge. A token68 (`abc/+.-_~` plus trailing `=`) is only
//! recognised directly after a scheme.
//!
//! The parser works over bytes with checked indexing and never panics. It is lenient
//! where servers are sloppy: empty list elements (`,,`), spaces and tabs around `=`,
//! unterminated quoted strings (taken to the end of the value), unquoted values that are
//! not tokens (`realm=a/b`), and non-UTF-8 bytes in values (replaced lossily). Elements it
//! cannot make sense of are skipped up to the next comma. When a parameter is repeated
//! within one challenge, the first occurrence wins.
//!
//! # Limits
//!
//! The header comes from the server being called, and the integrations parse it on every
//! 4xx they classify, so the work is bounded and linear in the bytes read. The parser reads
//!
//! - at most the first 8 KiB (8,192 bytes) of the value; [`parse_all`] and [`bearer_error`]
//!   read at most 8 KiB of all the `WWW-Authenticate` values together;
//! - at most 16 challenges (in total for [`parse_all`] and [`bearer_error`]);
//! - at most 64 parameters in one challenge, repeated names included.
//!
//! Parsing stops where a limit is reached, and what was parsed before it is returned: the
//! 17th challenge, the 65th parameter of a challenge and everything after them are ignored.
//! An element the length limit cuts through (a value that goes on past it, or a name or
//! scheme that might) is dropped, never returned truncated; the challenge it belongs to
//! keeps what came before it. A `Bearer error="invalid_token"` at the start of an
//! oversized header is still found, and nothing past the limits changes the result.
//!
//! # Example
//!
//! ```
//! use tokenward::classify::www_authenticate::parse;
//!
//! let challenges = parse(br#"Basic realm="api", Bearer error="invalid_token", error_description="the token \"abc\" expired""#);
//! assert_eq!(challenges.len(), 2);
//! assert!(challenges[0].is_scheme("basic"));
//! assert_eq!(challenges[0].param("REALM"), Some("api"));
//! assert_eq!(challenges[1].param("error"), Some("invalid_token"));
//! assert_eq!(challenges[1].param("error_description"), Some(r#"the token "abc" expired"#));
//! ```

use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;

use http::HeaderMap;
use http::header::WWW_AUTHENTICATE;

/// One authentication challenge from a `WWW-Authenticate` header.
///
/// A challenge has a scheme (`Bearer`, `Basic`, `DPoP`, ...) and either a token68 or a
/// list of parameters (or neither).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    token68: Option<String>,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// The authentication scheme, spelled as received.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether the scheme is `s`, compared ASCII case-insensitively.
    pub fn is_scheme(&self, s: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(s)
    }

    /// The token68 that followed the scheme (as in `Negotiate YII=`), if any.
    pub fn token68(&self) -> Option<&str> {
        self.token68.as_deref()
    }

    /// The value of the parameter `name` (compared ASCII case-insensitively), unquoted and
    /// unescaped. If the parameter was repeated, this is the first occurrence.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All parameters as `(name, value)` pairs, in the order received. Names are spelled
    /// as received; values are unquoted and unescaped. Repeated names are dropped (the
    /// first occurrence wins).
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// The RFC 6750 §3 error attributes of a `Bearer` challenge.
///
/// Every attribute is optional: a bare `Bearer realm="api"` challenge (a request without
/// credentials) carries no `error`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BearerError {
    /// The `error` code, e.g. `invalid_token` or `insufficient_scope`.
    pub error: Option<String>,
    /// The human-readable `error_description`.
    pub error_description: Option<String>,
    /// The `scope` needed to access the resource (space-separated).
    pub scope: Option<String>,
    /// The protection `realm`.
    pub realm: Option<String>,
}

impl BearerError {
    /// The error attributes of `challenge`, whatever its scheme.
    pub fn from_challenge(challenge: &Challenge) -> Self {
        let get = |name: &str| challenge.param(name).map(str::to_owned);
        BearerError {
            error: get("error"),
            error_description: get("error_description"),
            scope: get("scope"),
            realm: get("realm"),
        }
    }
}

impl fmt::Display for BearerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.error.as_deref().unwrap_or("no error code"))?;
        if let Some(description) = &self.error_description {
            write!(f, ": {description}")?;
        }
        if let Some(scope) = &self.scope {
            write!(f, " (scope: {scope})")?;
        }
        Ok(())
    }
}

/// The most bytes read: of the value given to [`parse`], of all the values together for
/// [`parse_all`] and [`bearer_error`].
const MAX_LEN: usize = 8 * 1024;

/// The most challenges returned, counted the same way as [`MAX_LEN`].
const MAX_CHALLENGES: usize = 16;

/// The most parameters read in one challenge, repeated names included.
const MAX_PARAMS: usize = 64;

/// Parses one `WWW-Authenticate` header value, which may hold several challenges.
///
/// Never panics; elements that cannot be parsed are skipped. Reads at most 8 KiB, 16
/// challenges and 64 parameters a challenge, and returns what it parsed up to there (see
/// [Limits](self#limits)).
pub fn parse(value: &[u8]) -> Vec<Challenge> {
    let mut out = Vec::new();
    let _ = parse_into(value, &mut Budget::default(), &mut out);
    out
}

/// Parses every `WWW-Authenticate` header in `headers`, in order, into one list.
///
/// The [limits](self#limits) hold for all the values together: 8 KiB and 16 challenges in
/// total. A value the limits stop in is the last one read.
pub fn parse_all(headers: &HeaderMap) -> Vec<Challenge> {
    let mut budget = Budget::default();
    let mut out = Vec::new();
    for value in headers.get_all(WWW_AUTHENTICATE) {
        if parse_into(value.as_bytes(), &mut budget, &mut out).is_break() {
            break;
        }
    }
    out
}

/// The error attributes of the first `Bearer` challenge in `headers`.
///
/// `None` when no `Bearer` challenge was sent (within the [limits](self#limits) of
/// [`parse_all`]); `Some` with every field `None` for a bare `Bearer` challenge.
pub fn bearer_error(headers: &HeaderMap) -> Option<BearerError> {
    parse_all(headers)
        .iter()
        .find(|challenge| challenge.is_scheme("Bearer"))
        .map(BearerError::from_challenge)
}

/// What is left of the limits, shared by the values of one header map.
struct Budget {
    bytes: usize,
    challenges: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            bytes: MAX_LEN,
            challenges: MAX_CHALLENGES,
        }
    }
}

/// Parses `value` within `budget`, pushing its challenges onto `out`. Breaks when a limit
/// stopped it: nothing after it may be read.
fn parse_into(value: &[u8], budget: &mut Budget, out: &mut Vec<Challenge>) -> ControlFlow<()> {
    let len = value.len().min(budget.bytes);
    budget.bytes -= len;
    let mut c = Cursor {
        bytes: value.get(..len).unwrap_or_default(),
        pos: 0,
        cut: len < value.len(),
    };
    c.challenges(&mut budget.challenges, out)?;
    if c.cut {
        ControlFlow::Break(())
    } else {
        ControlFlow::Continue(())
    }
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// The characters of a token68 before its trailing `=`s (RFC 9110 §11.2).
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

/// A parameter name, hashed and compared ASCII case-insensitively: the set of the names a
/// challenge has seen finds a repeat in constant time.
struct Name<'a>(&'a str);

impl PartialEq for Name<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(other.0)
    }
}

impl Eq for Name<'_> {}

impl Hash for Name<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

/// A position in the part of the header value within the length limit. Invariant:
/// `pos <= bytes.len()`; every read is checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// The value went on past `bytes`: an element that runs into the end of `bytes` is cut,
    /// not complete.
    cut: bool,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn byte_at(&self, pos: usize) -> Option<u8> {
        self.bytes.get(pos).copied()
    }

    /// Whether the cursor stands at the length limit: what it was reading may go on.
    fn at_cut(&self) -> bool {
        self.cut && self.pos >= self.bytes.len()
    }

    /// Advances by one byte; only called after `peek` returned `Some`.
    fn bump(&mut self) {
        if self.pos < self.bytes.len() {
            self.pos += 1;
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.bump();
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while self.peek().is_some_and(|b| is_ws(b) || b == b',') {
            self.bump();
        }
    }

    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.bump();
        }
        if self.pos == start {
            return None;
        }
        // tchars are ASCII, so this never fails.
        std::str::from_utf8(self.bytes.get(start..self.pos)?).ok()
    }

    /// The challenges up to the end, pushed onto `out`; `left` is how many more may be.
    /// Breaks when a limit stopped them.
    fn challenges(&mut self, left: &mut usize, out: &mut Vec<Challenge>) -> ControlFlow<()> {
        loop {
            self.skip_ws_and_commas();
            let Some(b) = self.peek() else {
                return ControlFlow::Continue(());
            };
            if !is_tchar(b) {
                self.skip_element();
                continue;
            }
            let Some(scheme) = self.token() else {
                // Unreachable: `b` is a tchar. Skip defensively rather than loop.
                self.skip_element();
                continue;
            };
            let after_scheme = self.pos;

            self.skip_ws();
            if self.at_cut() {
                // A scheme, or the name of a parameter? The rest is past the limit.
                return ControlFlow::Break(());
            }
            // `name = value` with no challenge to belong to: drop it.
            if self.peek() == Some(b'=') {
                self.bump();
                self.skip_ws();
                let _ = self.value();
                continue;
            }
            if *left == 0 {
                return ControlFlow::Break(());
            }
            self.pos = after_scheme;

            let mut challenge = Challenge {
                scheme: scheme.to_owned(),
                token68: None,
                params: Vec::new(),
            };
            let flow = match self.peek() {
                Some(b) if is_ws(b) => {
                    self.skip_ws();
                    match self.token68() {
                        ControlFlow::Continue(Some(token68)) => {
                            challenge.token68 = Some(token68.to_owned());
                            ControlFlow::Continue(())
                        }
                        ControlFlow::Continue(None) => self.params(&mut challenge),
                        ControlFlow::Break(()) => ControlFlow::Break(()),
                    }
                }
                None | Some(b',') => self.params(&mut challenge),
                Some(_) => {
                    // Garbage glued to the scheme (`Bearer"x"`, `Bearer;`): not a challenge.
                    self.skip_element();
                    continue;
                }
            };
            *left -= 1;
            out.push(challenge);
            flow?;
        }
    }

    /// A token68 at the cursor, if one stands alone up to the next comma or the end.
    /// Leaves the cursor untouched otherwise. Breaks when the length limit comes before
    /// the answer.
    fn token68(&mut self) -> ControlFlow<(), Option<&'a str>> {
        let start = self.pos;
        let mut end = start;
        while self.byte_at(end).is_some_and(is_token68_char) {
            end += 1;
        }
        if end == start {
            return ControlFlow::Continue(None);
        }
        while self.byte_at(end) == Some(b'=') {
            end += 1;
        }
        let mut after = end;
        while self.byte_at(after).is_some_and(is_ws) {
            after += 1;
        }
        if self.cut && after >= self.bytes.len() {
            return ControlFlow::Break(());
        }
        if !matches!(self.byte_at(after), None | Some(b',')) {
            return ControlFlow::Continue(None);
        }
        let Some(token68) = self
            .bytes
            .get(start..end)
            .and_then(|b| std::str::from_utf8(b).ok())
        else {
            return ControlFlow::Continue(None);
        };
        self.pos = end;
        ControlFlow::Continue(Some(token68))
    }

    /// A parameter value: a quoted string, or anything up to a comma or whitespace. `None`
    /// when the length limit cuts it.
    fn value(&mut self) -> Option<String> {
        if self.peek() == Some(b'"') {
            return self.quoted();
        }
        let start = self.pos;
        while self.peek().is_some_and(|b| b != b',' && !is_ws(b)) {
            self.bump();
        }
        if self.at_cut() {
            return None;
        }
        Some(into_string(
            self.bytes.get(start..self.pos).unwrap_or_default().to_vec(),
        ))
    }

    /// A quoted string, the cursor on its opening quote. Unterminated: up to the end, or
    /// `None` when that end is the length limit.
    fn quoted(&mut self) -> Option<String> {
        self.bump();
        let mut buf = Vec::new();
        while let Some(b) = self.peek() {
            self.bump();
            match b {
                b'"' => return Some(into_string(buf)),
                b'\\' => {
                    // quoted-pair; a backslash at the very end is dropped.
                    if let Some(escaped) = self.peek() {
                        self.bump();
                        buf.push(escaped);
                    }
                }
                _ => buf.push(b),
            }
        }
        (!self.cut).then(|| into_string(buf))
    }

    /// Skips an unparseable element up to (not including) the next comma outside quotes.
    /// Consumes at least one byte when the cursor is not on a comma.
    fn skip_element(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b',' => return,
                b'"' => {
                    let _ = self.quoted();
                }
                _ => self.bump(),
            }
        }
    }

    /// The parameters of `challenge`, up to the end or the start of the next challenge.
    /// Breaks when a limit stopped them: the 65th parameter, or one the length limit cuts.
    fn params(&mut self, challenge: &mut Challenge) -> ControlFlow<()> {
        let mut seen = HashSet::new();
        let mut read = 0;
        loop {
            self.skip_ws_and_commas();
            let Some(b) = self.peek() else {
                return ControlFlow::Continue(());
            };
            if !is_tchar(b) {
                self.skip_element();
                continue;
            }
            let start = self.pos;
            let Some(name) = self.token() else {
                return ControlFlow::Continue(());
            };
            self.skip_ws();
            if self.at_cut() {
                return ControlFlow::Break(());
            }
            if self.peek() != Some(b'=') {
                // A bare token: the next challenge's scheme.
                self.pos = start;
                return ControlFlow::Continue(());
            }
            if read == MAX_PARAMS {
                return ControlFlow::Break(());
            }
            read += 1;
            self.bump();
            self.skip_ws();
            let Some(value) = self.value() else {
                return ControlFlow::Break(());
            };
            // The first occurrence of a name wins.
            if seen.insert(Name(name)) {
                challenge.params.push((name.to_owned(), value));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    /// (scheme, token68, params) for compact expectations.
    type Expected<'a> = (&'a str, Option<&'a str>, Vec<(&'a str, &'a str)>);

    fn check(input: &[u8], expected: &[Expected<'_>]) {
        check_parsed(input, &parse(input), expected);
    }

    fn check_parsed(input: &[u8], parsed: &[Challenge], expected: &[Expected<'_>]) {
        let got: Vec<Expected<'_>> = parsed
            .iter()
            .map(|c| (c.scheme(), c.token68(), c.params().collect()))
            .collect();
        assert_eq!(got, expected, "input: {:?}", String::from_utf8_lossy(input));
    }

    #[test]
    fn single_bearer_with_params() {
        check(
            br#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
            &[(
                "Bearer",
                None,
                vec![
                    ("realm", "example"),
                    ("error", "invalid_token"),
                    ("error_description", "The access token expired"),
                ],
            )],
        );
    }

    #[test]
    fn several_challenges_in_one_value() {
        check(
            br#"Basic realm="a", Bearer error="invalid_token""#,
            &[
                ("Basic", None, vec![("realm", "a")]),
                ("Bearer", None, vec![("error", "invalid_token")]),
            ],
        );
    }

    #[test]
    fn bare_schemes_and_empty_elements() {
        check(
            b",, Basic ,,, Bearer,,Negotiate ,",
            &[
                ("Basic", None, vec![]),
                ("Bearer", None, vec![]),
                ("Negotiate", None, vec![]),
            ],
        );
        check(b"", &[]);
        check(b" ,\t, ", &[]);
    }

    #[test]
    fn odd_spacing_and_tabs() {
        check(
            b"Bearer   error = \"x\" ,scope=\"a b\"\t,\trealm\t=\tapi",
            &[(
                "Bearer",
                None,
                vec![("error", "x"), ("scope", "a b"), ("realm", "api")],
            )],
        );
    }

    #[test]
    fn case_insensitive_scheme_and_names() {
        let parsed = parse(br#"bEaReR ERROR="invalid_token", Scope="jobs.read""#);
        assert_eq!(parsed.len(), 1);
        let c = &parsed[0];
        assert_eq!(c.scheme(), "bEaReR");
        assert!(c.is_scheme("Bearer"));
        assert!(!c.is_scheme("Basic"));
        assert_eq!(c.param("error"), Some("invalid_token"));
        assert_eq!(c.param("SCOPE"), Some("jobs.read"));
        assert_eq!(c.param("realm"), None);
    }

    #[test]
    fn escapes_in_quoted_strings() {
        check(
            br#"Bearer error_description="a\"b", realm="c\\d", x="\e\f""#,
            &[(
                "Bearer",
                None,
                vec![
                    ("error_description", "a\"b"),
                    ("realm", "c\\d"),
                    ("x", "ef"),
                ],
            )],
        );
        // Commas and `=` inside quotes do not split anything.
        check(
            br#"Bearer realm="a, Basic b=c", scope="x""#,
            &[(
                "Bearer",
                None,
                vec![("realm", "a, Basic b=c"), ("scope", "x")],
            )],
        );
    }

    #[test]
    fn unterminated_quote_takes_the_rest() {
        check(
            br#"Bearer error="invalid_token", error_description="oops, Basic realm=x"#,
            &[(
                "Bearer",
                None,
                vec![
                    ("error", "invalid_token"),
                    ("error_description", "oops, Basic realm=x"),
                ],
            )],
        );
        // A backslash at the very end is dropped.
        check(br#"Bearer a="b\"#, &[("Bearer", None, vec![("a", "b")])]);
    }

    #[test]
    fn token68_only_after_scheme() {
        check(
            b"Negotiate YIIabc+/.-_~==, Basic realm=x, Newauth",
            &[
                ("Negotiate", Some("YIIabc+/.-_~=="), vec![]),
                ("Basic", None, vec![("realm", "x")]),
                ("Newauth", None, vec![]),
            ],
        );
        // `abc=` after a comma is a parameter with an empty value, not a token68.
        check(
            b"Basic realm=x, abc=",
            &[("Basic", None, vec![("realm", "x"), ("abc", "")])],
        );
        // `realm=x` after the scheme is a parameter, not a token68.
        check(b"Basic realm=x", &[("Basic", None, vec![("realm", "x")])]);
    }

    #[test]
    fn rfc9110_example_with_new_scheme_after_params() {
        // RFC 9110 §11.6.1's example.
        check(
            br#"Basic realm="simple", Newauth realm="apps", type=1, title="Login to \"apps\"""#,
            &[
                ("Basic", None, vec![("realm", "simple")]),
                (
                    "Newauth",
                    None,
                    vec![
                        ("realm", "apps"),
                        ("type", "1"),
                        ("title", "Login to \"apps\""),
                    ],
                ),
            ],
        );
    }

    #[test]
    fn duplicated_params_first_wins() {
        check(
            br#"Bearer error="first", ERROR="second", scope=a, error=third"#,
            &[("Bearer", None, vec![("error", "first"), ("scope", "a")])],
        );
    }

    #[test]
    fn non_utf8_is_replaced_not_fatal() {
        let parsed = parse(b"Bearer realm=\"caf\xe9\", error=\xff\xfe, scope=\"ok\"");
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].param("realm"), Some("caf\u{fffd}"));
        assert_eq!(parsed[0].param("error"), Some("\u{fffd}\u{fffd}"));
        assert_eq!(parsed[0].param("scope"), Some("ok"));
        // A non-token byte where a scheme should be: that element is skipped.
        check(b"\xe9toile, Bearer", &[("Bearer", None, vec![])]);
    }

    #[test]
    fn garbage_is_skipped_up_to_the_next_comma() {
        check(
            br#"@@@ "quoted, stuff", Bearer error="x" (junk), scope="s", ;;; , Basic"#,
            &[
                ("Bearer", None, vec![("error", "x"), ("scope", "s")]),
                ("Basic", None, vec![]),
            ],
        );
        // Garbage glued to a scheme makes that element garbage.
        check(
            br#"Bearer"x", Basic realm=y"#,
            &[("Basic", None, vec![("realm", "y")])],
        );
        // Parameters with no challenge before them are dropped.
        check(br#"realm="x", Bearer"#, &[("Bearer", None, vec![])]);
        check(b"=, ==, \"\", \\", &[]);
    }

    #[test]
    fn unquoted_non_token_values_are_kept() {
        check(
            b"Bearer realm=https://api.example.com/v1, scope=jobs.read",
            &[(
                "Bearer",
                None,
                vec![
                    ("realm", "https://api.example.com/v1"),
                    ("scope", "jobs.read"),
                ],
            )],
        );
    }

    #[test]
    fn missing_commas_between_params_are_tolerated() {
        check(
            br#"Bearer error="invalid_token" scope="a""#,
            &[(
                "Bearer",
                None,
                vec![("error", "invalid_token"), ("scope", "a")],
            )],
        );
    }

    #[test]
    fn parse_all_and_bearer_error_over_several_header_lines() {
        let mut headers = HeaderMap::new();
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="a""#),
        );
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(
                r#"Bearer realm="api", error="insufficient_scope", scope="jobs.write", error_description="needs write""#,
            ),
        );
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="second""#),
        );
        let all = parse_all(&headers);
        let schemes: Vec<&str> = all.iter().map(Challenge::scheme).collect();
        assert_eq!(schemes, ["Basic", "Bearer", "Bearer"]);

        let err = bearer_error(&headers).unwrap();
        assert_eq!(err.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(err.error_description.as_deref(), Some("needs write"));
        assert_eq!(err.scope.as_deref(), Some("jobs.write"));
        assert_eq!(err.realm.as_deref(), Some("api"));
        assert_eq!(
            err.to_string(),
            "insufficient_scope: needs write (scope: jobs.write)"
        );
    }

    #[test]
    fn bearer_error_absent_or_bare() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_error(&headers), None);
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="a""#),
        );
        assert_eq!(bearer_error(&headers), None);
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="b""#),
        );
        assert_eq!(
            bearer_error(&headers),
            Some(BearerError {
                realm: Some("b".into()),
                ..BearerError::default()
            })
        );
    }

    /// `parse` with a length limit of `bytes` instead of 8 KiB.
    fn parse_within(value: &[u8], bytes: usize) -> Vec<Challenge> {
        let mut budget = Budget {
            bytes,
            ..Budget::default()
        };
        let mut out = Vec::new();
        let _ = parse_into(value, &mut budget, &mut out);
        out
    }

    /// `n` challenges `C0, C1, ...`, each with `params` parameters `p0=v, p1=v, ...`.
    fn challenges(n: usize, params: usize) -> String {
        (0..n)
            .map(|i| {
                let params: Vec<String> = (0..params).map(|j| format!("p{j}=v")).collect();
                format!("C{i} {}", params.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(WWW_AUTHENTICATE, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn the_seventeenth_challenge_and_what_follows_are_ignored() {
        let sixteen = challenges(MAX_CHALLENGES, 1);
        assert_eq!(parse(sixteen.as_bytes()).len(), MAX_CHALLENGES);

        let header = format!("{sixteen}, Bearer error=\"invalid_token\", Basic");
        let parsed = parse(header.as_bytes());
        assert_eq!(parsed.len(), MAX_CHALLENGES);
        assert_eq!(parsed.last().unwrap().scheme(), "C15");
        assert_eq!(bearer_error(&headers(&[&header])), None);
    }

    #[test]
    fn the_sixty_fifth_parameter_stops_parsing() {
        let full = challenges(1, MAX_PARAMS);
        let parsed = parse(format!("{full}, Bearer").as_bytes());
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].params().count(), MAX_PARAMS);

        let over = challenges(1, MAX_PARAMS + 1);
        let parsed = parse(format!("{over}, Bearer error=x").as_bytes());
        assert_eq!(parsed.len(), 1, "the challenge after the limit is not read");
        assert_eq!(parsed[0].params().count(), MAX_PARAMS);
        assert_eq!(parsed[0].param("p63"), Some("v"));
        assert_eq!(parsed[0].param("p64"), None);
    }

    #[test]
    fn repeated_parameters_count_towards_the_limit() {
        let header = format!("Basic {}, Bearer", vec!["A=1"; MAX_PARAMS + 1].join(", "));
        let parsed = parse(header.as_bytes());
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].params().collect::<Vec<_>>(), [("A", "1")]);
    }

    #[test]
    fn a_long_value_is_read_up_to_eight_kib() {
        let head = r#"Bearer error="invalid_token", error_description=""#;
        let fits = format!("{head}{}\"", "x".repeat(MAX_LEN - head.len() - 1));
        assert_eq!(fits.len(), MAX_LEN);
        let parsed = parse(fits.as_bytes());
        assert_eq!(
            parsed[0].param("error_description").unwrap().len(),
            MAX_LEN - head.len() - 1
        );

        // One byte longer: the description runs past the limit and is dropped, not cut.
        let over = format!("{head}{}\"", "x".repeat(MAX_LEN - head.len()));
        check(
            over.as_bytes(),
            &[("Bearer", None, vec![("error", "invalid_token")])],
        );
        // Likewise for an unquoted value that ends exactly at the limit.
        let unquoted = format!("Bearer realm={}", "a".repeat(MAX_LEN - 13));
        assert_eq!(unquoted.len(), MAX_LEN);
        assert_eq!(parse(unquoted.as_bytes())[0].params().count(), 1);
        check(
            format!("{unquoted}b").as_bytes(),
            &[("Bearer", None, vec![])],
        );
    }

    #[test]
    fn an_early_bearer_error_is_found_and_garbage_past_the_limit_ignored() {
        let header = format!(
            r#"Bearer error="invalid_token", {}, Basic realm="x""#,
            "@".repeat(100_000)
        );
        check(
            header.as_bytes(),
            &[("Bearer", None, vec![("error", "invalid_token")])],
        );
        let err = bearer_error(&headers(&[&header])).unwrap();
        assert_eq!(err.error.as_deref(), Some("invalid_token"));
    }

    #[test]
    fn elements_the_length_limit_cuts_are_dropped() {
        // (input, limit, expected)
        let cases: &[(&[u8], usize, &[Expected<'_>])] = &[
            // A scheme, or a parameter name `Bearer = x`: unknown.
            (b"Basic, Bearer error=x", 12, &[("Basic", None, vec![])]),
            (b"Basic, Bearer error=x", 13, &[("Basic", None, vec![])]),
            // The scheme is known (a token follows), its token68 is not.
            (b"Negotiate YII=, Basic", 14, &[("Negotiate", None, vec![])]),
            (
                b"Negotiate YII= , Basic",
                15,
                &[("Negotiate", None, vec![])],
            ),
            (
                b"Negotiate YII=, Basic",
                15,
                &[("Negotiate", Some("YII="), vec![])],
            ),
            // A quoted value ends at its closing quote, an unquoted one at a comma or space.
            (
                br#"Bearer a="1", b="2""#,
                12,
                &[("Bearer", None, vec![("a", "1")])],
            ),
            (br#"Bearer a="1", b="2""#, 11, &[("Bearer", None, vec![])]),
            (b"Bearer a=1 b=2", 11, &[("Bearer", None, vec![("a", "1")])]),
            (b"Bearer a=1 b=2", 10, &[("Bearer", None, vec![])]),
            // A name that could still be followed by `=`.
            (
                b"Bearer a=1, b =2",
                14,
                &[("Bearer", None, vec![("a", "1")])],
            ),
        ];
        for (input, limit, expected) in cases {
            check_parsed(input, &parse_within(input, *limit), expected);
        }
    }

    #[test]
    fn parse_all_limits_hold_for_all_values_together() {
        // Ten challenges in each of two values: sixteen in all.
        let ten = challenges(10, 1);
        assert_eq!(parse_all(&headers(&[&ten, &ten])).len(), MAX_CHALLENGES);

        // The first value leaves 20 bytes of the 8 KiB: the Bearer challenge is cut.
        let long = format!("Basic realm=\"{}\"", "x".repeat(MAX_LEN - 20 - 14));
        assert_eq!(long.len(), MAX_LEN - 20);
        let within = r#"Bearer error="x""#;
        assert_eq!(
            bearer_error(&headers(&[&long, within]))
                .unwrap()
                .error
                .as_deref(),
            Some("x")
        );
        let cut = r#"Bearer error="invalid_token""#;
        assert_eq!(
            bearer_error(&headers(&[&long, cut])),
            Some(BearerError::default())
        );
        // 15 more bytes leave 5: `Beare` may go on.
        assert_eq!(
            bearer_error(&headers(&[&long, "Basic realm=abc", cut])),
            None
        );

        // A value a limit stopped in is the last one read.
        let over = challenges(1, MAX_PARAMS + 1);
        assert_eq!(bearer_error(&headers(&[&over, cut])), None);
        assert_eq!(parse_all(&headers(&[&over, cut])).len(), 1);
    }

    /// Serialises challenges as `Scheme name="escaped", ...` joined with `, `.
    fn serialise(challenges: &[(String, Vec<(String, String)>)]) -> String {
        challenges
            .iter()
            .map(|(scheme, params)| {
                let params: Vec<String> = params
                    .iter()
                    .map(|(n, v)| {
                        let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
                        format!("{n}=\"{escaped}\"")
                    })
                    .collect();
                if params.is_empty() {
                    scheme.clone()
                } else {
                    format!("{scheme} {}", params.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    const TOKEN: &str = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}";

    /// Header-like text: short tokens and the bytes the grammar turns on.
    fn header_like(pieces: std::ops::Range<usize>) -> impl Strategy<Value = String> {
        let piece = proptest::sample::select(
            &[
                "a", "Bc", "xyz", "Q9", "a", "Bc", " ", " ", "=", "=", ",", ",", "\"", "\\", "/",
            ][..],
        );
        proptest::collection::vec(piece, pieces).prop_map(|pieces| pieces.concat())
    }

    /// Whether `cut` is what parsing `whole`'s input could have returned up to some point:
    /// `whole`'s first challenges, the last one possibly with fewer of its parts.
    fn is_prefix(cut: &[Challenge], whole: &[Challenge]) -> bool {
        let Some((last, rest)) = cut.split_last() else {
            return true;
        };
        let Some(same) = whole.get(rest.len()) else {
            return false;
        };
        whole.starts_with(rest)
            && last.scheme == same.scheme
            && (last.token68.is_none() || last.token68 == same.token68)
            && same.params.starts_with(&last.params)
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_on_grammar_alphabet(s in "[A-Za-z0-9 =,\"\\\\\t!#/+.~_-]{0,200}") {
            for c in parse(s.as_bytes()) {
                // Whatever it found is well-formed: a non-empty token scheme.
                prop_assert!(!c.scheme().is_empty());
                prop_assert!(c.scheme().bytes().all(is_tchar));
            }
        }

        #[test]
        fn a_cut_header_parses_to_a_prefix_of_its_cut_part(
            s in header_like(0..40),
            limit in 0usize..130,
            tail in "[ -~]{1,20}",
        ) {
            let bytes = s.as_bytes();
            let limit = limit.min(bytes.len());
            let cut = parse_within(bytes, limit);
            let whole = parse(&bytes[..limit]);
            if limit == bytes.len() {
                prop_assert_eq!(&cut, &whole);
            } else {
                prop_assert!(is_prefix(&cut, &whole), "{:?} within {}: {:?} vs {:?}", s, limit, cut, whole);
                // Nothing past the limit changes the result.
                let mut other = bytes[..limit].to_vec();
                other.extend_from_slice(tail.as_bytes());
                prop_assert_eq!(parse_within(&other, limit), cut);
            }
        }

        #[test]
        fn garbage_past_eight_kib_is_ignored(
            challenges in proptest::collection::vec(
                (TOKEN, proptest::collection::vec((TOKEN, "[ -~]{0,30}"), 0..5)),
                1..5,
            ),
            tail in proptest::collection::vec(any::<u8>(), 1..200),
        ) {
            let header = serialise(&challenges);
            let mut padded = format!("{header},").into_bytes();
            padded.resize(MAX_LEN, b' ');
            padded.extend_from_slice(&tail);
            prop_assert_eq!(parse(&padded), parse(header.as_bytes()));
        }

        #[test]
        fn counts_past_the_limits_are_ignored(counts in proptest::collection::vec(0usize..70, 0..20)) {
            let header = counts
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let params: Vec<String> = (0..n).map(|j| format!("p{j}=v")).collect();
                    format!("C{i} {}", params.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let mut expected = Vec::new();
            for (i, &n) in counts.iter().enumerate().take(MAX_CHALLENGES) {
                expected.push((format!("C{i}"), n.min(MAX_PARAMS)));
                if n > MAX_PARAMS {
                    break;
                }
            }
            let got: Vec<(String, usize)> = parse_within(header.as_bytes(), usize::MAX)
                .iter()
                .map(|c| (c.scheme().to_owned(), c.params().count()))
                .collect();
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn serialised_challenges_round_trip(
            challenges in proptest::collection::vec(
                (TOKEN, proptest::collection::vec((TOKEN, "[ -~]{0,30}"), 0..5)),
                1..5,
            )
        ) {
            let header = serialise(&challenges);
            let parsed = parse(header.as_bytes());
            prop_assert_eq!(parsed.len(), challenges.len(), "header: {}", header);
            for (got, (scheme, params)) in parsed.iter().zip(&challenges) {
                prop_assert_eq!(got.scheme(), scheme.as_str());
                prop_assert_eq!(got.token68(), None);
                // First occurrence of each (case-insensitive) name wins.
                let mut expected: Vec<(&str, &str)> = Vec::new();
                for (n, v) in params {
                    if !expected.iter().any(|(e, _)| e.eq_ignore_ascii_case(n)) {
                        expected.push((n.as_str(), v.as_str()));
                    }
                }
                prop_assert_eq!(got.params().collect::<Vec<_>>(), expected, "header: {}", header);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn never_panics_on_inputs_around_the_limit(
            bytes in proptest::collection::vec(any::<u8>(), MAX_LEN - 64..MAX_LEN + 64),
        ) {
            let parsed = parse(&bytes);
            prop_assert!(parsed.len() <= MAX_CHALLENGES);
        }

        #[test]
        fn never_panics_on_long_header_like_values(s in header_like(3_000..6_000)) {
            for c in parse(s.as_bytes()) {
                prop_assert!(c.params().count() <= MAX_PARAMS);
            }
        }
    }
}
