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
//! | [`NeverReplay`] | nothing: never resends | nothing |
//! | a closure `Fn(&B) -> Option<B>` | what it returns | a copy of the head, and the closure |
//!
//! The copy is [`try_clone_request`], for [`Auth`](crate::Auth) and for a
//! [`ClassifiedRetry`] alike: a plain clone of the head (a non-empty header map or non-empty
//! extensions allocate) and the body's [`Replay::clone_body`].
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
//! assert!(replay.clone_body(&MyBody(None)).is_none());
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
///     fn clone_body(&self, body: &Option<Vec<u8>>) -> Option<Option<Vec<u8>>> {
///         body.as_ref().map(|bytes| Some(bytes.clone()))
///     }
/// }
/// # assert!(Buffered.clone_body(&None).is_none());
/// ```
pub trait Replay<B> {
    /// A copy of `body`, or `None` if this request must not be resent.
    fn clone_body(&self, body: &B) -> Option<B>;
}

/// The default [`Replay`]: copies bodies that implement [`CloneBody`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneableBodies;

impl<B: CloneBody> Replay<B> for CloneableBodies {
    #[inline]
    fn clone_body(&self, body: &B) -> Option<B> {
        body.try_clone_body()
    }
}

/// A [`Replay`] that never copies: nothing is ever resent, and no copy is made. After a 401
/// `invalid_token` the layer still drops the rejected token, so the next request carries a
/// fresh one. Works with any body type.
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverReplay;

impl<B> Replay<B> for NeverReplay {
    #[inline]
    fn clone_body(&self, _body: &B) -> Option<B> {
        None
    }
}

impl<B, F> Replay<B> for F
where
    F: Fn(&B) -> Option<B>,
{
    #[inline]
    fn clone_body(&self, body: &B) -> Option<B> {
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
    let body = replay.clone_body(request.body())?;
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}

#[cfg(test)]
mod tests {
    use super::*;
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
