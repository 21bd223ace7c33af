//! Scope sets: `resource.action` names with trailing wildcards.
//!
//! A [`ScopeSet`] is the parsed form of an OAuth 2.0 `scope` parameter (RFC 6749 §3.3): a
//! space-separated list, kept sorted and without duplicates. Besides exact names it
//! understands two kinds of wildcard in *granted* scopes:
//!
//! * `resource.*` covers every scope under `resource.`: `jobs.*` covers `jobs.read`,
//!   `jobs.write` and `jobs.read.own`, but neither `jobs` itself nor `jobsx.read`;
//! * a lone `*` covers every scope.
//!
//! A *required* scope that is itself a wildcard (`jobs.*`) is covered only by an equal or
//! broader wildcard (`jobs.*` or `*`): a list of concrete scopes never adds up to a
//! wildcard. Any other `*` (as in `jobs*` or `jobs.*.read`) is an ordinary character.
//!
//! Checking the scopes of every token obtained catches *scope drift* (an organisation
//! admin re-granted the application with fewer scopes) before the token is used:
//! [`ScopeSet::require`] turns it into [`Error::InsufficientScope`], naming what is missing.
//!
//! # Example
//!
//! ```
//! use tokenward::ScopeSet;
//!
//! let granted = ScopeSet::parse("jobs.* reports.read");
//! assert!(granted.grants("jobs.write"));
//! assert!(granted.grants("jobs.read.own"));
//! assert!(!granted.grants("jobs"));
//! assert!(!granted.grants("reports.write"));
//!
//! let required = ScopeSet::parse("jobs.read reports.read reports.write");
//! assert!(!granted.covers(&required));
//! assert_eq!(granted.missing(&required).to_string(), "reports.write");
//!
//! let err = granted.require(&required).unwrap_err();
//! assert!(err.to_string().contains("reports.write"));
//! ```

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A set of OAuth 2.0 scopes, sorted and without duplicates.
///
/// Every element is a non-empty string without ASCII whitespace, so [`Display`](fmt::Display)
/// (space-separated, sorted) and [`parse`](ScopeSet::parse) are inverses. Parsing is
/// lenient: a scope with characters outside RFC 6749's `scope-token` set (`"`, `\`,
/// non-ASCII) is kept as it is rather than dropped, because servers do send them and
/// dropping a granted scope would turn into a false "missing scope" error.
///
/// ```
/// use tokenward::ScopeSet;
///
/// let scopes: ScopeSet = "jobs.write  jobs.read\tjobs.read".parse().unwrap();
/// assert_eq!(scopes.len(), 2);
/// assert_eq!(scopes.to_string(), "jobs.read jobs.write");
/// assert_eq!(scopes.iter().collect::<Vec<_>>(), ["jobs.read", "jobs.write"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct ScopeSet {
    scopes: BTreeSet<String>,
}

impl ScopeSet {
    /// The empty set.
    pub fn new() -> ScopeSet {
        ScopeSet::default()
    }

    /// Parses a space-separated scope string. Runs of ASCII whitespace (space, tab, line
    /// breaks) separate scopes; an empty or blank string is the empty set; duplicates are
    /// merged. Never fails, never panics.
    ///
    /// ```
    /// use tokenward::ScopeSet;
    ///
    /// assert!(ScopeSet::parse("   ").is_empty());
    /// assert_eq!(ScopeSet::parse(" b a\n\tb ").to_string(), "a b");
    /// ```
    pub fn parse(s: &str) -> ScopeSet {
        ScopeSet {
            scopes: s.split_ascii_whitespace().map(str::to_owned).collect(),
        }
    }

    /// The scopes, in sorted order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + DoubleEndedIterator {
        self.scopes.iter().map(String::as_str)
    }

    /// How many scopes the set holds.
    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    /// Whether the set holds no scope.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// Whether `scope` is in the set, by exact name (no wildcard matching; see
    /// [`grants`](Self::grants) for that).
    ///
    /// ```
    /// use tokenward::ScopeSet;
    ///
    /// let s = ScopeSet::parse("jobs.*");
    /// assert!(s.contains("jobs.*"));
    /// assert!(!s.contains("jobs.read"));
    /// assert!(s.grants("jobs.read"));
    /// ```
    pub fn contains(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// Whether some scope in this (granted) set covers the `required` scope: an exact
    /// match, a `prefix.*` wildcard with `required` strictly under `prefix.`, or a lone `*`.
    ///
    /// `required` is one scope. An empty string, or one containing ASCII whitespace, is not
    /// a scope and is never granted; use [`covers`](Self::covers) to check several.
    ///
    /// ```
    /// use tokenward::ScopeSet;
    ///
    /// let granted = ScopeSet::parse("jobs.* admin.users.read");
    /// assert!(granted.grants("jobs.read"));
    /// assert!(granted.grants("jobs.read.own"));
    /// assert!(granted.grants("jobs.*"));
    /// assert!(!granted.grants("jobs"));
    /// assert!(!granted.grants("jobsx.read"));
    /// assert!(!granted.grants("admin.*")); // concrete scopes never add up to a wildcard
    /// assert!(ScopeSet::parse("*").grants("anything.at.all"));
    /// ```
    pub fn grants(&self, required: &str) -> bool {
        if required.is_empty() || required.bytes().any(|b| b.is_ascii_whitespace()) {
            return false;
        }
        self.scopes.contains(required)
            || self.scopes.iter().any(|granted| {
                wildcard_prefix(granted)
                    .is_some_and(|p| required.len() > p.len() && required.starts_with(p))
            })
    }

    /// Whether every scope in `required` is [granted](Self::grants) by this set. The empty
    /// set is covered by any set.
    ///
    /// ```
    /// use tokenward::ScopeSet;
    ///
    /// let granted = ScopeSet::parse("jobs.*");
    /// assert!(granted.covers(&ScopeSet::parse("jobs.read jobs.write")));
    /// assert!(!granted.covers(&ScopeSet::parse("jobs.read users.read")));
    /// ```
    pub fn covers(&self, required: &ScopeSet) -> bool {
        required.iter().all(|r| self.grants(r))
    }

    /// The scopes of `required` that this set does not [grant](Self::grants).
    ///
    /// ```
    /// use tokenward::ScopeSet;
    ///
    /// let granted = ScopeSet::parse("jobs.read");
    /// let missing = granted.missing(&ScopeSet::parse("jobs.read jobs.write users.*"));
    /// assert_eq!(missing.to_string(), "jobs.write users.*");
    /// ```
    pub fn missing(&self, required: &ScopeSet) -> ScopeSet {
        required.iter().filter(|r| !self.grants(r)).collect()
    }

    /// `Ok` if this (granted) set covers `required`; otherwise
    /// [`Error::InsufficientScope`] naming the missing scopes and what was granted.
    ///
    /// ```
    /// use tokenward::{Error, ScopeSet};
    ///
    /// let granted = ScopeSet::parse("jobs.read");
    /// assert!(granted.require(&ScopeSet::parse("jobs.read")).is_ok());
    /// match granted.require(&ScopeSet::parse("jobs.read jobs.write")) {
    ///     Err(Error::InsufficientScope { missing, granted }) => {
    ///         assert_eq!(missing, "jobs.write");
    ///         assert_eq!(granted, "jobs.read");
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn require(&self, required: &ScopeSet) -> Result<(), Error> {
        let missing = self.missing(required);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::InsufficientScope {
                missing: missing.to_string(),
                granted: self.to_string(),
            })
        }
    }

    /// Whether every scope of this set is in `other`, by exact name. Wildcards are not
    /// expanded: for "does `other` grant all of these", use `other.covers(self)`.
    ///
    /// ```
    /// use tokenward::ScopeSet;
    ///
    /// let mine = ScopeSet::parse("jobs.read");
    /// assert!(mine.is_subset_of(&ScopeSet::parse("jobs.read jobs.write")));
    /// assert!(!mine.is_subset_of(&ScopeSet::parse("jobs.*")));
    /// assert!(ScopeSet::parse("jobs.*").covers(&mine));
    /// ```
    pub fn is_subset_of(&self, other: &ScopeSet) -> bool {
        self.scopes.is_subset(&other.scopes)
    }

    /// The scopes in either set.
    ///
    /// ```
    /// use tokenward::ScopeSet;
    ///
    /// let all = ScopeSet::parse("b a").union(&ScopeSet::parse("c a"));
    /// assert_eq!(all.to_string(), "a b c");
    /// ```
    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet {
            scopes: self.scopes.union(&other.scopes).cloned().collect(),
        }
    }
}

/// For a wildcard scope, the prefix it covers: `"jobs."` for `jobs.*`, `""` for `*`.
fn wildcard_prefix(scope: &str) -> Option<&str> {
    if scope == "*" {
        return Some("");
    }
    scope.strip_suffix('*').filter(|p| p.ends_with('.'))
}

/// Space-separated, in sorted order: the form an OAuth `scope` parameter takes.
impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut scopes = self.iter();
        if let Some(first) = scopes.next() {
            f.write_str(first)?;
            for scope in scopes {
                f.write_str(" ")?;
                f.write_str(scope)?;
            }
        }
        Ok(())
    }
}

/// Same as [`ScopeSet::parse`]; never fails.
impl FromStr for ScopeSet {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ScopeSet::parse(s))
    }
}

/// Same as [`ScopeSet::parse`].
impl From<&str> for ScopeSet {
    fn from(s: &str) -> Self {
        ScopeSet::parse(s)
    }
}

/// Same as [`ScopeSet::parse`].
impl From<String> for ScopeSet {
    fn from(s: String) -> Self {
        ScopeSet::parse(&s)
    }
}

/// Same as [`ScopeSet::parse`].
impl From<&String> for ScopeSet {
    fn from(s: &String) -> Self {
        ScopeSet::parse(s)
    }
}

/// Each item parsed like [`ScopeSet::parse`].
impl From<&[&str]> for ScopeSet {
    fn from(scopes: &[&str]) -> Self {
        scopes.iter().copied().collect()
    }
}

/// Each item parsed like [`ScopeSet::parse`].
///
/// ```
/// use tokenward::ScopeSet;
///
/// assert_eq!(ScopeSet::from(["jobs.write", "jobs.read"]), ScopeSet::parse("jobs.read jobs.write"));
/// ```
impl<const N: usize> From<[&str; N]> for ScopeSet {
    fn from(scopes: [&str; N]) -> Self {
        scopes.into_iter().collect()
    }
}

/// Each item parsed like [`ScopeSet::parse`] (scopes read from a configuration file).
impl From<Vec<String>> for ScopeSet {
    fn from(scopes: Vec<String>) -> Self {
        scopes.into_iter().collect()
    }
}

/// Itself.
impl From<&ScopeSet> for ScopeSet {
    fn from(scopes: &ScopeSet) -> Self {
        scopes.clone()
    }
}

/// Collects scopes. Each item is parsed like [`ScopeSet::parse`]: an item holding spaces
/// adds several scopes, a blank one adds none.
///
/// ```
/// use tokenward::ScopeSet;
///
/// let s: ScopeSet = vec!["jobs.read".to_string(), "a b".to_string(), String::new()]
///     .into_iter()
///     .collect();
/// assert_eq!(s.to_string(), "a b jobs.read");
/// ```
impl FromIterator<String> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        let mut scopes = BTreeSet::new();
        for item in iter {
            if !item.is_empty() && !item.bytes().any(|b| b.is_ascii_whitespace()) {
                scopes.insert(item);
            } else {
                scopes.extend(item.split_ascii_whitespace().map(str::to_owned));
            }
        }
        ScopeSet { scopes }
    }
}

/// Collects scopes, each item parsed like [`ScopeSet::parse`].
impl<'a> FromIterator<&'a str> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        ScopeSet {
            scopes: iter
                .into_iter()
                .flat_map(str::split_ascii_whitespace)
                .map(str::to_owned)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(s: &str) -> ScopeSet {
        ScopeSet::parse(s)
    }

    #[test]
    fn parse_splits_on_whitespace_runs_and_dedups() {
        assert!(set("").is_empty());
        assert!(set(" \t\r\n ").is_empty());
        let s = set("  jobs.write\tjobs.read \n jobs.read\r\nusers.read  ");
        assert_eq!(s.len(), 3);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            ["jobs.read", "jobs.write", "users.read"]
        );
        assert_eq!(s.to_string(), "jobs.read jobs.write users.read");
        assert_eq!(set("x").to_string(), "x");
        assert_eq!(set("").to_string(), "");
    }

    #[test]
    fn parse_keeps_tokens_outside_the_rfc_charset() {
        // Lenient: a server that grants an odd scope name still granted it.
        let s = set("a\"b c\\d jobs.réad");
        assert_eq!(s.len(), 3);
        assert!(s.contains("a\"b") && s.contains("c\\d") && s.contains("jobs.réad"));
        // Non-ASCII whitespace is not a separator.
        assert_eq!(set("a\u{a0}b").len(), 1);
    }

    #[test]
    fn from_str_from_and_collect_agree_with_parse() {
        let parsed: ScopeSet = "b a".parse().unwrap();
        assert_eq!(parsed, set("a b"));
        assert_eq!(ScopeSet::from("b a b"), set("a b"));
        let owned: ScopeSet = ["b".to_string(), "a c".to_string(), " ".to_string()]
            .into_iter()
            .collect();
        assert_eq!(owned, set("a b c"));
        let borrowed: ScopeSet = ["b", "a  c", ""].into_iter().collect();
        assert_eq!(borrowed, set("a b c"));
        assert_eq!(ScopeSet::new(), ScopeSet::default());
    }

    #[test]
    fn contains_is_exact() {
        let s = set("jobs.* admin");
        assert!(s.contains("jobs.*"));
        assert!(s.contains("admin"));
        assert!(!s.contains("jobs.read"));
        assert!(!s.contains("admi"));
    }

    #[test]
    fn exact_match_grants() {
        let s = set("jobs.read users");
        assert!(s.grants("jobs.read"));
        assert!(s.grants("users"));
        assert!(!s.grants("jobs.write"));
        assert!(!s.grants("jobs"));
        assert!(!s.grants("users.read"), "a plain scope is not a wildcard");
    }

    #[test]
    fn resource_wildcard_covers_everything_under_it() {
        let s = set("jobs.*");
        assert!(s.grants("jobs.read"));
        assert!(s.grants("jobs.write"));
        assert!(s.grants("jobs.read.own"));
        assert!(s.grants("jobs.*"));
        assert!(s.grants("jobs.read.*"), "a narrower wildcard is covered");
        assert!(!s.grants("jobs"), "not the resource itself");
        assert!(
            !s.grants("jobs."),
            "nothing after the dot is not a scope under it"
        );
        assert!(!s.grants("jobsx.read"));
        assert!(!s.grants("job.read"));
        assert!(!s.grants("users.read"));
        assert!(!s.grants("*"));
        assert!(!s.grants("x.jobs.read"));

        let admin = set("admin.*");
        assert!(admin.grants("admin.users.delete"));
        assert!(admin.grants("admin.x"));
        assert!(!admin.grants("administrator.x"));
    }

    #[test]
    fn deeper_wildcards() {
        let s = set("jobs.read.*");
        assert!(s.grants("jobs.read.own"));
        assert!(!s.grants("jobs.read"));
        assert!(!s.grants("jobs.write.own"));
        assert!(
            !s.grants("jobs.*"),
            "a narrower wildcard does not cover a broader one"
        );
    }

    #[test]
    fn lone_star_covers_everything() {
        let s = set("*");
        for r in ["a", "jobs.read", "jobs.*", "*", "admin.users.delete", "x*y"] {
            assert!(s.grants(r), "{r}");
        }
        assert!(s.covers(&set("a b.c d.*")));
    }

    #[test]
    fn other_stars_are_ordinary_characters() {
        let s = set("jobs* a.*.read");
        assert!(!s.grants("jobsx"));
        assert!(!s.grants("jobs.read"));
        assert!(s.grants("jobs*"));
        assert!(!s.grants("a.b.read"));
        assert!(s.grants("a.*.read"));
    }

    #[test]
    fn a_wildcard_requirement_needs_an_equal_or_broader_wildcard() {
        let concrete = set("jobs.read jobs.write jobs.delete jobs.admin");
        assert!(!concrete.grants("jobs.*"));
        assert!(set("jobs.*").grants("jobs.*"));
        assert!(set("*").grants("jobs.*"));
        assert!(!set("jobs.read.*").grants("jobs.*"));
        assert!(!set("jobsx.*").grants("jobs.*"));
    }

    #[test]
    fn blank_or_multi_word_requirements_are_never_granted() {
        let s = set("* a b");
        assert!(!s.grants(""));
        assert!(!s.grants("a b"));
        assert!(!s.grants(" a"));
        assert!(!s.grants("a\n"));
    }

    #[test]
    fn covers_missing_and_require() {
        let granted = set("jobs.* reports.read");
        let ok = set("jobs.read jobs.write.own reports.read");
        let bad = set("jobs.read reports.write users.*");
        assert!(granted.covers(&ok));
        assert!(granted.missing(&ok).is_empty());
        assert!(granted.require(&ok).is_ok());
        assert!(!granted.covers(&bad));
        assert_eq!(granted.missing(&bad), set("reports.write users.*"));
        assert!(granted.covers(&ScopeSet::new()));
        assert!(ScopeSet::new().covers(&ScopeSet::new()));
        assert!(!ScopeSet::new().covers(&set("a")));

        let err = granted.require(&bad).unwrap_err();
        match &err {
            Error::InsufficientScope { missing, granted } => {
                assert_eq!(missing, "reports.write users.*");
                assert_eq!(granted, "jobs.* reports.read");
            }
            other => panic!("{other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("reports.write") && text.contains("re-grant"),
            "{text}"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn subset_is_exact_and_union_merges() {
        assert!(set("a").is_subset_of(&set("a b")));
        assert!(set("").is_subset_of(&set("")));
        assert!(!set("a c").is_subset_of(&set("a b")));
        assert!(!set("jobs.read").is_subset_of(&set("jobs.*")));
        let u = set("b a").union(&set("c b"));
        assert_eq!(u, set("a b c"));
        assert_eq!(u.union(&ScopeSet::new()), u);
    }

    // ---- properties ----------------------------------------------------------------------

    /// An RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E.
    fn rfc_token() -> impl Strategy<Value = String> {
        "[!#-\\[\\]-~]{1,12}"
    }

    /// Dotted names from a small vocabulary, so that wildcards and prefixes collide often.
    fn dotted() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "jobs", "job", "jobsx", "admin", "read", "write", "*", "",
            ]),
            1..4,
        )
        .prop_map(|parts| parts.join("."))
        .prop_filter("a scope is not empty", |s| !s.is_empty())
    }

    fn scope() -> impl Strategy<Value = String> {
        prop_oneof![3 => dotted(), 1 => rfc_token()]
    }

    fn scopes() -> impl Strategy<Value = ScopeSet> {
        prop::collection::vec(scope(), 0..6).prop_map(ScopeSet::from_iter)
    }

    /// A resource prefix without wildcards, e.g. `jobs` or `admin.users`.
    fn prefix() -> impl Strategy<Value = String> {
        "[a-z]{1,5}(\\.[a-z]{1,5}){0,2}"
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(s in scopes()) {
            prop_assert_eq!(ScopeSet::parse(&s.to_string()), s);
        }

        #[test]
        fn parse_then_display_is_a_fixed_point(input in any::<String>()) {
            let once = ScopeSet::parse(&input);
            let shown = once.to_string();
            prop_assert_eq!(ScopeSet::parse(&shown).to_string(), shown);
        }

        #[test]
        fn covers_iff_nothing_is_missing(granted in scopes(), required in scopes()) {
            let missing = granted.missing(&required);
            prop_assert_eq!(granted.covers(&required), missing.is_empty());
            prop_assert!(missing.is_subset_of(&required));
            for r in required.iter() {
                prop_assert_eq!(missing.contains(r), !granted.grants(r));
            }
            prop_assert_eq!(granted.require(&required).is_ok(), missing.is_empty());
        }

        #[test]
        fn a_wildcard_covers_its_subtree_and_nothing_else(
            p in prefix(),
            x in rfc_token(),
            other in any::<String>(),
        ) {
            let granted = ScopeSet::parse(&format!("{p}.*"));
            let under = format!("{p}.{x}");
            prop_assert!(granted.grants(&under), "{} should grant {}", granted, under);
            if !other.starts_with(&format!("{p}.")) {
                prop_assert!(!granted.grants(&other), "{} should not grant {:?}", granted, other);
            }
            prop_assert!(!granted.grants(&p));
        }

        #[test]
        fn granting_is_monotone(granted in scopes(), extra in scopes(), r in scope()) {
            if granted.grants(&r) {
                prop_assert!(granted.union(&extra).grants(&r));
            }
        }

        #[test]
        fn a_union_covers_both_sides(a in scopes(), b in scopes()) {
            let u = a.union(&b);
            prop_assert!(u.covers(&a) && u.covers(&b));
            prop_assert!(a.is_subset_of(&u) && b.is_subset_of(&u));
        }

        #[test]
        fn every_set_covers_itself(s in scopes()) {
            prop_assert!(s.covers(&s));
        }

        #[test]
        fn arbitrary_input_never_panics(a in any::<String>(), b in any::<String>()) {
            let sa = ScopeSet::parse(&a);
            let sb: ScopeSet = b.parse().unwrap();
            let _ = sa.grants(&b);
            let _ = sa.covers(&sb);
            let _ = sa.missing(&sb);
            let _ = sa.require(&sb);
            let _ = sa.union(&sb).to_string();
            let _ = ScopeSet::from_iter([a, b]);
        }
    }
}
