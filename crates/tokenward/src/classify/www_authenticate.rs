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

use std::fmt;

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

/// Parses one `WWW-Authenticate` header value, which may hold several challenges.
///
/// Never panics; elements that cannot be parsed are skipped.
pub fn parse(value: &[u8]) -> Vec<Challenge> {
    let mut c = Cursor {
        bytes: value,
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        c.skip_ws_and_commas();
        let Some(b) = c.peek() else { break };
        if !is_tchar(b) {
            c.skip_element();
            continue;
        }
        let Some(scheme) = c.token() else {
            // Unreachable: `b` is a tchar. Skip defensively rather than loop.
            c.skip_element();
            continue;
        };
        let after_scheme = c.pos;

        // `name = value` with no challenge to belong to: drop it.
        c.skip_ws();
        if c.peek() == Some(b'=') {
            c.bump();
            c.skip_ws();
            let _ = c.value();
            continue;
        }
        c.pos = after_scheme;

        let mut challenge = Challenge {
            scheme: scheme.to_owned(),
            token68: None,
            params: Vec::new(),
        };
        match c.peek() {
            None | Some(b',') => {}
            Some(b) if is_ws(b) => {
                c.skip_ws();
                if let Some(token68) = c.token68() {
                    challenge.token68 = Some(token68.to_owned());
                    out.push(challenge);
                    continue;
                }
            }
            Some(_) => {
                // Garbage glued to the scheme (`Bearer"x"`, `Bearer;`): not a challenge.
                c.skip_element();
                continue;
            }
        }
        c.params(&mut challenge);
        out.push(challenge);
    }
    out
}

/// Parses every `WWW-Authenticate` header in `headers`, in order, into one list.
pub fn parse_all(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .flat_map(|value| parse(value.as_bytes()))
        .collect()
}

/// The error attributes of the first `Bearer` challenge in `headers`.
///
/// `None` when no `Bearer` challenge was sent; `Some` with every field `None` for a bare
/// `Bearer` challenge.
pub fn bearer_error(headers: &HeaderMap) -> Option<BearerError> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .flat_map(|value| parse(value.as_bytes()))
        .find(|challenge| challenge.is_scheme("Bearer"))
        .map(|challenge| BearerError::from_challenge(&challenge))
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

/// A position in the header value. Invariant: `pos <= bytes.len()`; every read is checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn byte_at(&self, pos: usize) -> Option<u8> {
        self.bytes.get(pos).copied()
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

    /// A token68 at the cursor, if one stands alone up to the next comma or the end.
    /// Leaves the cursor untouched otherwise.
    fn token68(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let mut end = start;
        while self.byte_at(end).is_some_and(is_token68_char) {
            end += 1;
        }
        if end == start {
            return None;
        }
        while self.byte_at(end) == Some(b'=') {
            end += 1;
        }
        let mut after = end;
        while self.byte_at(after).is_some_and(is_ws) {
            after += 1;
        }
        if !matches!(self.byte_at(after), None | Some(b',')) {
            return None;
        }
        let token68 = std::str::from_utf8(self.bytes.get(start..end)?).ok()?;
        self.pos = end;
        Some(token68)
    }

    /// A parameter value: a quoted string, or anything up to a comma or whitespace.
    fn value(&mut self) -> String {
        if self.peek() == Some(b'"') {
            return self.quoted();
        }
        let start = self.pos;
        while self.peek().is_some_and(|b| b != b',' && !is_ws(b)) {
            self.bump();
        }
        into_string(self.bytes.get(start..self.pos).unwrap_or_default().to_vec())
    }

    /// A quoted string, the cursor on its opening quote. Unterminated: up to the end.
    fn quoted(&mut self) -> String {
        self.bump();
        let mut buf = Vec::new();
        while let Some(b) = self.peek() {
            self.bump();
            match b {
                b'"' => break,
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
        into_string(buf)
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
    fn params(&mut self, challenge: &mut Challenge) {
        loop {
            self.skip_ws_and_commas();
            let Some(b) = self.peek() else { return };
            if !is_tchar(b) {
                self.skip_element();
                continue;
            }
            let start = self.pos;
            let Some(name) = self.token() else { return };
            self.skip_ws();
            if self.peek() != Some(b'=') {
                // A bare token: the next challenge's scheme.
                self.pos = start;
                return;
            }
            self.bump();
            self.skip_ws();
            let value = self.value();
            if challenge.param(name).is_none() {
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
        let parsed = parse(input);
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
}
