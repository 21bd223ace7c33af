//! Which requests can be sent twice, and how the layer gets its second copy.
//!
//! A resend (by [`Auth`](crate::Auth) after a 401 `invalid_token`, or by a
//! [`ClassifiedRetry`](crate::retry::ClassifiedRetry) after a 429 or 5xx) needs a second copy
//! of the request, made **before** the first send: the inner service consumes the first one.
//! The head (method, URI, version, headers, extensions) is always cloneable; the body may not
//! be. A [`Replay`] strategy decides, per request, whether the body can be copied:
//!
//! | strategy | copies | cost per request |
//! |---|---|---|
//! | [`CloneableBodies`] (default) | bodies that implement [`CloneBody`] and say yes | a copy of the head and a clone of the body |
//! | [`NeverReplay`] | nothing: never resends | nothing (its futures have no room for a copy: [`NoCopy`]) |
//! | a closure `Fn(&B) -> Option<B>` | what it returns | a copy of the head, and the closure |
//!
//! The copy [`Auth`](crate::Auth) keeps takes its header map from a few spare maps kept per
//! thread and gives it back once the response is final, so it allocates nothing once warm
//! (unless the request has extensions: cloning them allocates). A [`ClassifiedRetry`]'s copy
//! is [`try_clone_request`]: a plain clone.
//!
//! [`ClassifiedRetry`]: crate::retry::ClassifiedRetry
//!
//! [`CloneBody`] is implemented for the bodies that are values in memory: [`Full`] and
//! [`Empty`] (a reference-count increment for `Full<Bytes>`), `String`, `Vec<u8>`, [`Bytes`],
//! `&'static str`, `&'static [u8]`, `()`, and [`Either`] of two of them. A **streaming body is
//! never copied**: [`StreamBody`] answers `None`, and so do [`BoxBody`] and [`UnsyncBoxBody`]
//! unless they are known to be empty (`size_hint().exact() == Some(0)`). A request whose body
//! cannot be copied is sent once and never resent, with or without its body.
//!
//! For a body type of another crate (an `axum::body::Body`, a `hyper::body::Incoming`), pass a
//! closure, or [`NeverReplay`]:
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tokenward_tower::replay::{CloneBody, NeverReplay, Replay, try_clone_request};
//!
//! let request = http::Request::post("https://api.example.com/jobs")
//!     .header("content-type", "application/json")
//!     .body(Full::new(Bytes::from_static(b"{\"run\":true}")))
//!     .unwrap();
//! let copy = try_clone_request(&tokenward_tower::replay::CloneableBodies, &request).unwrap();
//! assert_eq!(copy.uri(), request.uri());
//! assert_eq!(copy.headers(), request.headers());
//!
//! // Never resend: no copy is made at all.
//! assert!(try_clone_request(&NeverReplay, &request).is_none());
//!
//! // A body type of your own: a closure decides.
//! #[derive(Debug)]
//! struct MyBody(Option<Bytes>);
//! let replay = |body: &MyBody| body.0.clone().map(|b| MyBody(Some(b)));
//! assert!(replay.try_clone(&MyBody(None)).is_none());
//! # let _ = <Full<Bytes> as CloneBody>::try_clone_body;
//! ```
//!
//! [`Full`]: http_body_util::Full
//! [`Empty`]: http_body_util::Empty
//! [`Either`]: http_body_util::Either
//! [`StreamBody`]: http_body_util::StreamBody
//! [`BoxBody`]: http_body_util::combinators::BoxBody
//! [`UnsyncBoxBody`]: http_body_util::combinators::UnsyncBoxBody

use bytes::{Buf, Bytes};
use http::Request;
use http_body::Body;
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{Either, Empty, Full, StreamBody};

/// A body that can say whether it can be sent again, and give a copy if so.
///
/// Implement it for your own in-memory body types; answer `None` for anything that streams.
pub trait CloneBody: Sized {
    /// A copy of the body that yields the same bytes, or `None` if the body cannot be replayed
    /// (it streams, or has been partly read).
    fn try_clone_body(&self) -> Option<Self>;
}

impl<D: Clone> CloneBody for Full<D> {
    #[inline]
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D> CloneBody for Empty<D> {
    #[inline]
    fn try_clone_body(&self) -> Option<Self> {
        Some(Empty::new())
    }
}

/// Copies the string: an allocation per request. Prefer `Full<Bytes>`.
impl CloneBody for String {
    #[inline]
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

/// Copies the vector: an allocation per request. Prefer `Full<Bytes>`.
impl CloneBody for Vec<u8> {
    #[inline]
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl CloneBody for Bytes {
    #[inline]
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl CloneBody for &'static str {
    #[inline]
    fn try_clone_body(&self) -> Option<Self> {
        Some(self)
    }
}

impl CloneBody for &'static [u8] {
    #[inline]
    fn try_clone_body(&self) -> Option<Self> {
        Some(self)
    }
}

impl CloneBody for () {
    #[inline]
    fn try_clone_body(&self) -> Option<Self> {
        Some(())
    }
}

impl<L: CloneBody, R: CloneBody> CloneBody for Either<L, R> {
    fn try_clone_body(&self) -> Option<Self> {
        match self {
            Either::Left(l) => l.try_clone_body().map(Either::Left),
            Either::Right(r) => r.try_clone_body().map(Either::Right),
        }
    }
}

/// Never: a stream can be read only once.
impl<S> CloneBody for StreamBody<S> {
    #[inline]
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

/// Only when known to be empty: a boxed body may stream.
impl<D: Buf + 'static, E> CloneBody for BoxBody<D, E> {
    fn try_clone_body(&self) -> Option<Self> {
        (self.size_hint().exact() == Some(0)).then(BoxBody::default)
    }
}

/// Only when known to be empty: a boxed body may stream.
impl<D: Buf + 'static, E> CloneBody for UnsyncBoxBody<D, E> {
    fn try_clone_body(&self) -> Option<Self> {
        (self.size_hint().exact() == Some(0)).then(UnsyncBoxBody::default)
    }
}

/// Decides whether a request body of type `B` can be copied, so that the request can be
/// resent. See the [module docs](self).
///
/// ```
/// use tokenward_tower::replay::Replay;
///
/// /// Bodies are `Option<Vec<u8>>`: `None` stands for a stream.
/// struct Buffered;
///
/// impl Replay<Option<Vec<u8>>> for Buffered {
///     type Kept = Option<http::Request<Option<Vec<u8>>>>;
///
///     fn try_clone(&self, body: &Option<Vec<u8>>) -> Option<Option<Vec<u8>>> {
///         body.as_ref().map(|bytes| Some(bytes.clone()))
///     }
/// }
/// # assert!(Buffered.try_clone(&None).is_none());
/// ```
pub trait Replay<B> {
    /// Where [`Auth`](crate::Auth)'s response future keeps the copy for a resend:
    /// `Option<Request<B>>` for a strategy that copies, [`NoCopy`] for one that never does
    /// (its futures then carry no room for a copy at all).
    type Kept: Kept<B>;

    /// A copy of `body`, or `None` if this request must not be resent.
    fn try_clone(&self, body: &B) -> Option<B>;
}

/// Where a response future keeps the copy of its request for a resend: `Option<Request<B>>`,
/// or [`NoCopy`]. Chosen by [`Replay::Kept`]; sealed.
pub trait Kept<B>: sealed::Sealed {
    /// Whether requests are copied at all (`false` for [`NoCopy`]: the copy is skipped at
    /// compile time).
    #[doc(hidden)]
    const COPIES: bool;
    #[doc(hidden)]
    fn keep(copy: Option<Request<B>>) -> Self;
    #[doc(hidden)]
    fn take(&mut self) -> Option<Request<B>>;
    #[doc(hidden)]
    fn is_kept(&self) -> bool;
}

mod sealed {
    pub trait Sealed {}
    impl<B> Sealed for Option<http::Request<B>> {}
    impl Sealed for super::NoCopy {}
}

impl<B> Kept<B> for Option<Request<B>> {
    const COPIES: bool = true;

    #[inline]
    fn keep(copy: Option<Request<B>>) -> Self {
        copy
    }

    #[inline]
    fn take(&mut self) -> Option<Request<B>> {
        Option::take(self)
    }

    #[inline]
    fn is_kept(&self) -> bool {
        self.is_some()
    }
}

/// The [`Kept`] of strategies that never resend: nothing, not even room for a copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCopy;

impl<B> Kept<B> for NoCopy {
    const COPIES: bool = false;

    #[inline]
    fn keep(_copy: Option<Request<B>>) -> Self {
        NoCopy
    }

    #[inline]
    fn take(&mut self) -> Option<Request<B>> {
        None
    }

    #[inline]
    fn is_kept(&self) -> bool {
        false
    }
}

/// The default [`Replay`]: copies bodies that implement [`CloneBody`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneableBodies;

impl<B: CloneBody> Replay<B> for CloneableBodies {
    type Kept = Option<Request<B>>;

    #[inline]
    fn try_clone(&self, body: &B) -> Option<B> {
        body.try_clone_body()
    }
}

/// A [`Replay`] that never copies: nothing is ever resent, and no copy is made (no work and
/// no allocation per request; the response future has no room for a copy). After a 401
/// `invalid_token` the layer still drops the rejected token, so the next request carries a
/// fresh one. Works with any body type.
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverReplay;

impl<B> Replay<B> for NeverReplay {
    type Kept = NoCopy;

    #[inline]
    fn try_clone(&self, _body: &B) -> Option<B> {
        None
    }
}

impl<B, F> Replay<B> for F
where
    F: Fn(&B) -> Option<B>,
{
    type Kept = Option<Request<B>>;

    #[inline]
    fn try_clone(&self, body: &B) -> Option<B> {
        self(body)
    }
}

/// A full copy of `request` (method, URI, version, headers, extensions and body) if `replay`
/// can copy its body; `None` otherwise.
///
/// Each copy gets its own clone of the extensions: nothing one attempt adds leaks into the
/// next. Cloning a non-empty header map allocates; so does cloning non-empty extensions.
pub fn try_clone_request<B, R>(replay: &R, request: &Request<B>) -> Option<Request<B>>
where
    R: Replay<B> + ?Sized,
{
    let body = replay.try_clone(request.body())?;
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}

/// The copy [`Auth`](crate::Auth) keeps for a resend: [`try_clone_request`], with the header
/// map taken from this thread's spare maps when it has one (see [`recycle`]). In the steady
/// state the copy of a request without extensions allocates nothing.
pub(crate) fn copy_for_resend<B, R>(replay: &R, request: &Request<B>) -> Option<Request<B>>
where
    R: Replay<B> + ?Sized,
{
    let body = replay.try_clone(request.body())?;
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = spare::copy(request.headers());
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}

/// A copy that was not needed (the response came and was not a 401 `invalid_token`): its
/// header map goes back to this thread's spare maps.
pub(crate) fn recycle<B>(mut copy: Request<B>) {
    spare::give(std::mem::take(copy.headers_mut()));
}

/// Per-thread spare header maps: a few, small, emptied.
mod spare {
    use std::cell::RefCell;

    use http::HeaderMap;

    /// At most this many spare maps per thread (as many as copies in flight at once on it).
    const MAPS: usize = 8;
    /// A map that held more headers than this, names or values (a request with many headers)
    /// is freed rather than kept: a thread keeps at most a few kilobytes.
    const CAPACITY: usize = 32;

    thread_local! {
        static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    }

    /// A copy of `headers` (the same names, values, order and sensitivity as a clone).
    pub(super) fn copy(headers: &HeaderMap) -> HeaderMap {
        if headers.is_empty() {
            return HeaderMap::new();
        }
        let spare = SPARE
            .try_with(|spare| spare.borrow_mut().pop())
            .ok()
            .flatten();
        match spare {
            Some(mut map) => {
                for (name, value) in headers {
                    map.append(name.clone(), value.clone());
                }
                map
            }
            None => headers.clone(),
        }
    }

    /// How many spare maps this thread holds (then drops them all, if `clear`).
    #[cfg(test)]
    pub(super) fn count(clear: bool) -> usize {
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            let len = spare.len();
            if clear {
                spare.clear();
            }
            len
        })
    }

    pub(super) fn give(mut map: HeaderMap) {
        // `len` counts every value (`capacity` only the names): a map that held many values
        // for one name keeps their room after `clear`, so it is freed, not kept.
        if map.capacity() == 0 || map.capacity() > CAPACITY || map.len() > CAPACITY {
            return;
        }
        map.clear();
        // During thread teardown the spare maps may be gone already: then the map is freed.
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < MAPS {
                spare.push(map);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http_body_util::BodyExt;

    #[test]
    fn in_memory_bodies_are_copied_streams_are_not() {
        assert!(
            Full::new(Bytes::from_static(b"x"))
                .try_clone_body()
                .is_some()
        );
        assert!(Empty::<Bytes>::new().try_clone_body().is_some());
        assert!(String::from("x").try_clone_body().is_some());
        let stream = StreamBody::new(futures_util::stream::empty::<
            Result<http_body::Frame<Bytes>, std::io::Error>,
        >());
        assert!(stream.try_clone_body().is_none());
        let empty: BoxBody<Bytes, std::io::Error> = BoxBody::default();
        assert!(empty.try_clone_body().is_some());
        let full: UnsyncBoxBody<Bytes, std::convert::Infallible> =
            Full::new(Bytes::from_static(b"abc")).boxed_unsync();
        assert!(full.try_clone_body().is_none(), "a boxed body may stream");
        let either: Either<Full<Bytes>, StreamBody<futures_util::stream::Empty<_>>> =
            Either::Right(StreamBody::new(futures_util::stream::empty::<
                Result<http_body::Frame<Bytes>, std::io::Error>,
            >()));
        assert!(either.try_clone_body().is_none());
    }

    #[test]
    fn a_copy_for_a_resend_equals_a_clone_with_or_without_a_spare_map() {
        let mut request = Request::post("http://h/p")
            .header("x-multi", "1")
            .header("content-type", "application/json")
            .header("x-multi", "2")
            .header("x-custom-header-name", "v")
            .body(Full::new(Bytes::from_static(b"body")))
            .unwrap();
        let mut secret = HeaderValue::from_static("s3cr3t");
        secret.set_sensitive(true);
        request.headers_mut().insert("x-api-key", secret);
        let clone = try_clone_request(&CloneableBodies, &request).unwrap();
        for round in 0..3 {
            let copy = copy_for_resend(&CloneableBodies, &request).unwrap();
            assert_eq!(copy.headers(), clone.headers(), "round {round}");
            let order = |r: &Request<Full<Bytes>>| {
                r.headers()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone(), v.is_sensitive()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(order(&copy), order(&clone), "same order and sensitivity");
            assert_eq!(copy.method(), clone.method());
            assert_eq!(copy.uri(), clone.uri());
            recycle(copy);
        }
        // The spare map a recycled copy leaves behind is reused, and emptied first.
        let other = Request::get("http://h/").header("a", "b").body(()).unwrap();
        let copy = copy_for_resend(&CloneableBodies, &other).unwrap();
        assert_eq!(copy.headers().len(), 1);
        assert_eq!(copy.headers()["a"], "b");
        // A request without headers copies to an empty map.
        let bare = Request::get("http://h/").body(()).unwrap();
        assert!(
            copy_for_resend(&CloneableBodies, &bare)
                .unwrap()
                .headers()
                .is_empty()
        );
        assert!(copy_for_resend(&NeverReplay, &bare).is_none());
    }

    #[test]
    fn only_small_maps_are_kept_and_only_a_few() {
        spare::count(true);
        let small = Request::get("http://h/").header("a", "b").body(()).unwrap();
        recycle(copy_for_resend(&CloneableBodies, &small).unwrap());
        assert_eq!(spare::count(false), 1, "a small map is kept");

        // Many values under one name: few names (a small `capacity`), but room for every
        // value, which `clear` keeps. Not kept.
        let mut many_values = Request::get("http://h/").body(()).unwrap();
        for i in 0..1_000 {
            many_values
                .headers_mut()
                .append("x-forwarded-for", HeaderValue::from(i));
        }
        let copy = copy_for_resend(&CloneableBodies, &many_values).unwrap();
        assert_eq!(copy.headers().len(), 1_000);
        assert!(copy.headers().capacity() <= 32, "few names");
        recycle(copy);
        assert_eq!(
            spare::count(false),
            0,
            "the copy took the small map, and was not kept"
        );
        // Many names: not kept either.
        let mut many_names = Request::get("http://h/").body(()).unwrap();
        for i in 0..100 {
            let name = http::HeaderName::try_from(format!("x-h{i}")).unwrap();
            many_names.headers_mut().insert(name, HeaderValue::from(i));
        }
        recycle(copy_for_resend(&CloneableBodies, &many_names).unwrap());
        assert_eq!(
            spare::count(false),
            0,
            "the first copy took the small map; none kept"
        );

        // At most 8 per thread.
        let copies: Vec<_> = (0..20)
            .map(|_| copy_for_resend(&CloneableBodies, &small).unwrap())
            .collect();
        copies.into_iter().for_each(recycle);
        assert_eq!(spare::count(true), 8);
    }

    #[test]
    fn copies_have_their_own_extensions() {
        #[derive(Clone, Debug, PartialEq)]
        struct Mark(u8);
        let mut request = Request::put("http://h/p?q=1")
            .header("x-a", "1")
            .version(http::Version::HTTP_2)
            .body(Full::new(Bytes::from_static(b"body")))
            .unwrap();
        request.extensions_mut().insert(Mark(1));
        let mut copy = try_clone_request(&CloneableBodies, &request).unwrap();
        assert_eq!(copy.method(), http::Method::PUT);
        assert_eq!(copy.uri(), "http://h/p?q=1");
        assert_eq!(copy.version(), http::Version::HTTP_2);
        assert_eq!(copy.headers()["x-a"], "1");
        copy.extensions_mut().insert(Mark(2));
        assert_eq!(request.extensions().get::<Mark>(), Some(&Mark(1)));
    }
}
