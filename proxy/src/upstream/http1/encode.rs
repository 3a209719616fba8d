//! Writing an HTTP/1.1 request: the head (request line and headers, in
//! origin-form with the framing header the body needs) and the framing of
//! the body's frames (`Content-Length` as is, or chunked with trailers).

use std::io::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method};

/// How the request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyEncoding {
    /// No body follows the head.
    None,
    /// `Content-Length`: this many bytes are still to be sent.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What the request's body is known to be before it is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyShape {
    /// The body has nothing to send.
    pub empty: bool,
    /// Its exact length, when known (`size_hint`).
    pub exact_length: Option<u64>,
}

/// Says how the request body is framed, setting the framing header: an
/// empty body adds none (a `Content-Length` the client sent is kept), a
/// declared or known length is sent as `Content-Length`, any other body is
/// chunked.
pub(crate) fn frame_body(parts: &mut Parts, body: BodyShape) -> BodyEncoding {
    if body.empty {
        BodyEncoding::None
    } else if let Some(declared) = declared_length(&parts.headers) {
        BodyEncoding::Length(declared)
    } else if let Some(length) = body.exact_length {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        BodyEncoding::Length(length)
    } else {
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        BodyEncoding::Chunked
    }
}

/// Appends the request head (origin-form, or authority-form for CONNECT)
/// to `out`.
pub(crate) fn write_head(parts: &Parts, out: &mut BytesMut) {
    out.reserve(256);
    out.put_slice(parts.method.as_str().as_bytes());
    out.put_u8(b' ');
    if parts.method == Method::CONNECT {
        let authority = parts.uri.authority().map_or("", |a| a.as_str());
        out.put_slice(authority.as_bytes());
    } else {
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        out.put_slice(if target.is_empty() {
            b"/"
        } else {
            target.as_bytes()
        });
    }
    out.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::CONTENT_LENGTH)?;
    std::str::from_utf8(value.as_bytes())
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The bytes around one data frame of a chunked body: its size line before,
/// CRLF after.
pub(crate) fn chunk_prefix(len: usize) -> Bytes {
    let mut prefix = BytesMut::with_capacity(18);
    let _ = write!((&mut prefix).writer(), "{len:X}\r\n");
    prefix.freeze()
}

/// The end of a chunked body: the last chunk, the trailers, the empty line.
pub(crate) fn chunked_end(trailers: Option<&HeaderMap>) -> Bytes {
    let Some(trailers) = trailers.filter(|t| !t.is_empty()) else {
        return Bytes::from_static(b"0\r\n\r\n");
    };
    let mut end = BytesMut::with_capacity(64);
    end.put_slice(b"0\r\n");
    for (name, value) in trailers {
        end.put_slice(name.as_str().as_bytes());
        end.put_slice(b": ");
        end.put_slice(value.as_bytes());
        end.put_slice(b"\r\n");
    }
    end.put_slice(b"\r\n");
    end.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(request: Request<()>) -> Parts {
        request.into_parts().0
    }

    fn encoded(mut parts: Parts, body: BodyShape) -> (String, BodyEncoding) {
        let mut out = BytesMut::new();
        let encoding = frame_body(&mut parts, body);
        write_head(&parts, &mut out);
        (String::from_utf8(out.to_vec()).unwrap(), encoding)
    }

    const EMPTY: BodyShape = BodyShape {
        empty: true,
        exact_length: Some(0),
    };

    #[test]
    fn bodiless_get_has_no_framing_header() {
        let request = Request::get("/a?b=1").header("host", "h").body(()).unwrap();
        let (head, encoding) = encoded(parts(request), EMPTY);
        assert_eq!(head, "GET /a?b=1 HTTP/1.1\r\nhost: h\r\n\r\n");
        assert_eq!(encoding, BodyEncoding::None);
    }

    #[test]
    fn declared_length_is_kept_and_known_length_is_added() {
        let request = Request::post("/")
            .header("content-length", "5")
            .body(())
            .unwrap();
        let shape = BodyShape {
            empty: false,
            exact_length: None,
        };
        let (head, encoding) = encoded(parts(request), shape);
        assert_eq!(head, "POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(encoding, BodyEncoding::Length(5));

        let shape = BodyShape {
            empty: false,
            exact_length: Some(7),
        };
        let (head, encoding) = encoded(parts(Request::put("/x").body(()).unwrap()), shape);
        assert_eq!(head, "PUT /x HTTP/1.1\r\ncontent-length: 7\r\n\r\n");
        assert_eq!(encoding, BodyEncoding::Length(7));
    }

    #[test]
    fn unknown_length_is_chunked() {
        let shape = BodyShape {
            empty: false,
            exact_length: None,
        };
        let (head, encoding) = encoded(parts(Request::post("/up").body(()).unwrap()), shape);
        assert_eq!(
            head,
            "POST /up HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(encoding, BodyEncoding::Chunked);
        assert_eq!(&chunk_prefix(26)[..], b"1A\r\n");
        assert_eq!(&chunked_end(None)[..], b"0\r\n\r\n");
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        assert_eq!(
            &chunked_end(Some(&trailers))[..],
            b"0\r\ngrpc-status: 0\r\n\r\n"
        );
    }

    #[test]
    fn connect_uses_authority_form() {
        let request = Request::connect("example.test:443").body(()).unwrap();
        let (head, _) = encoded(parts(request), EMPTY);
        assert_eq!(head, "CONNECT example.test:443 HTTP/1.1\r\n\r\n");
    }
}
