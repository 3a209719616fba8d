//! Reading an HTTP/1.1 response off the wire: the head (status line and
//! headers, with `httparse`), how its body is delimited (RFC 9112 §6.3:
//! none, `Content-Length`, chunked, or until the connection closes), and the
//! chunked decoder with its trailers. Pure functions over a read buffer; the
//! exchange does the I/O.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};

use crate::http::connection_manager::headers::is_hop_by_hop;

/// Headers a response head may carry; more is a protocol error (Envoy's
/// default `max_headers_count` is 100 too).
pub(crate) const MAX_HEADERS: usize = 100;
/// Bytes a response head may take before it is a protocol error (Envoy's
/// default `max_response_headers_kb` is 60).
pub(crate) const MAX_HEAD_BYTES: usize = 60 * 1024;
/// Bytes a chunk-size line (with its extensions) or the trailer section may take.
const MAX_CHUNK_LINE: usize = 4096;

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("invalid HTTP/1 response head: {0}")]
    Head(String),
    #[error("response head larger than {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} headers")]
    HeadTooLarge,
    #[error("invalid content-length")]
    ContentLength,
    #[error("upstream switched protocols without an upgrade request")]
    UnexpectedSwitch,
    #[error("invalid chunked encoding: {0}")]
    Chunked(&'static str),
}

/// How the body after a response head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 204, 304, or `Content-Length: 0`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The upstream lets the connection carry another request.
    pub keep_alive: bool,
}

/// Parses one response head from the front of `buffer`, consuming it.
/// `Ok(None)`: incomplete, read more. Informational (1xx) responses other
/// than 101 are consumed and skipped, as a proxy that did not ask for them
/// may do; the caller sent no upgrade, so 101 is an error.
pub(crate) fn parse_head(
    buffer: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, DecodeError> {
    loop {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buffer,
            &mut slots,
        );
        let head_len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buffer.len() > MAX_HEAD_BYTES => {
                return Err(DecodeError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(DecodeError::HeadTooLarge),
            Err(error) => return Err(DecodeError::Head(error.to_string())),
        };
        if head_len > MAX_HEAD_BYTES {
            return Err(DecodeError::HeadTooLarge);
        }
        let code = response.code.unwrap_or_default();
        let status =
            StatusCode::from_u16(code).map_err(|_| DecodeError::Head(format!("status {code}")))?;
        let http10 = response.version == Some(0);
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(DecodeError::UnexpectedSwitch);
        }
        if status.is_informational() {
            buffer.advance(head_len);
            continue;
        }
        // Offsets first (the parse borrows the buffer), then header values
        // point into one frozen copy of the head: no copy per value.
        let base = buffer.as_ptr() as usize;
        let count = response.headers.len();
        let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        for (span, h) in spans.iter_mut().zip(response.headers.iter()) {
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            *span = (
                name as u32,
                (name + h.name.len()) as u32,
                value as u32,
                (value + h.value.len()) as u32,
            );
        }
        let head = buffer.split_to(head_len).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        let mut hop = HopByHop::default();
        for &(name_start, name_end, value_start, value_end) in &spans[..count] {
            let name = HeaderName::from_bytes(&head[name_start as usize..name_end as usize])
                .map_err(|_| DecodeError::Head("invalid header name".into()))?;
            let value = HeaderValue::from_maybe_shared(
                head.slice(value_start as usize..value_end as usize),
            )
            .map_err(|_| DecodeError::Head(format!("invalid value of header {name}")))?;
            if is_hop_by_hop(name.as_str()) {
                hop.note(&name, value);
            } else {
                headers.append(name, value);
            }
        }
        for name in &hop.listed {
            headers.remove(name);
        }
        let framing = framing_of(status, method, hop.transfer_encoding.as_ref(), &headers)?;
        let keep_alive = if http10 { hop.keep_alive } else { !hop.close };
        let keep_alive = keep_alive && framing != Framing::UntilClose;
        return Ok(Some(ResponseHead {
            status,
            headers,
            framing,
            keep_alive,
        }));
    }
}

/// RFC 9112 §6.3, for a response to `method`.
fn framing_of(
    status: StatusCode,
    method: &Method,
    transfer_encoding: Option<&HeaderValue>,
    headers: &HeaderMap,
) -> Result<Framing, DecodeError> {
    if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    if let Some(last) = transfer_encoding {
        // Transfer-Encoding overrides Content-Length; a final coding other
        // than chunked runs until the connection closes.
        let chunked = last
            .as_bytes()
            .rsplit(|b| *b == b',')
            .next()
            .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        return Ok(if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length: Option<u64> = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        // Repeated (or comma-listed) values must all agree.
        for part in value.as_bytes().split(|b| *b == b',') {
            let parsed = parse_decimal(part.trim_ascii()).ok_or(DecodeError::ContentLength)?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(DecodeError::ContentLength);
            }
            length = Some(parsed);
        }
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// What a response's hop-by-hop headers said. They describe the upstream
/// connection only, so they are left out of the header map that goes
/// downstream (with the headers `Connection` names).
#[derive(Default)]
struct HopByHop {
    /// `Connection: close`: HTTP/1.1 is persistent unless it says so.
    close: bool,
    /// `Connection: keep-alive`: HTTP/1.0 is persistent only if it says so.
    keep_alive: bool,
    /// The last `Transfer-Encoding` value (its last coding frames the body).
    transfer_encoding: Option<HeaderValue>,
    /// Other headers `Connection` lists.
    listed: Vec<HeaderName>,
}

impl HopByHop {
    fn note(&mut self, name: &HeaderName, value: HeaderValue) {
        if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = Some(value);
        } else if name == header::CONNECTION {
            for token in value
                .as_bytes()
                .split(|b| *b == b',')
                .map(<[u8]>::trim_ascii)
            {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if let Ok(listed) = HeaderName::from_bytes(token) {
                    self.listed.push(listed);
                }
            }
        }
    }
}

/// What the chunked decoder found next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Chunk {
    Data(Bytes),
    /// The last chunk and its trailers (empty when there were none).
    End(HeaderMap),
    /// More bytes are needed.
    NeedMore,
}

/// Decodes `Transfer-Encoding: chunked` incrementally from a read buffer.
#[derive(Debug, Default)]
pub(crate) struct ChunkedDecoder {
    /// Data bytes left in the current chunk, then its CRLF.
    remaining: u64,
    in_data: bool,
}

impl ChunkedDecoder {
    /// Takes the next piece of the body from the front of `buffer`.
    pub(crate) fn decode(&mut self, buffer: &mut BytesMut) -> Result<Chunk, DecodeError> {
        loop {
            if self.in_data {
                if self.remaining > 0 {
                    if buffer.is_empty() {
                        return Ok(Chunk::NeedMore);
                    }
                    let take = (buffer.len() as u64).min(self.remaining) as usize;
                    self.remaining -= take as u64;
                    return Ok(Chunk::Data(buffer.split_to(take).freeze()));
                }
                if buffer.len() < 2 {
                    return Ok(Chunk::NeedMore);
                }
                if &buffer[..2] != b"\r\n" {
                    return Err(DecodeError::Chunked("chunk data not followed by CRLF"));
                }
                buffer.advance(2);
                self.in_data = false;
            }
            let (line_len, size) = match httparse::parse_chunk_size(buffer) {
                Ok(httparse::Status::Complete(parsed)) => parsed,
                Ok(httparse::Status::Partial) if buffer.len() > MAX_CHUNK_LINE => {
                    return Err(DecodeError::Chunked("chunk size line too long"))
                }
                Ok(httparse::Status::Partial) => return Ok(Chunk::NeedMore),
                Err(_) => return Err(DecodeError::Chunked("bad chunk size")),
            };
            if size == 0 {
                return match parse_trailers(&buffer[line_len..])? {
                    Some((used, trailers)) => {
                        buffer.advance(line_len + used);
                        Ok(Chunk::End(trailers))
                    }
                    None => Ok(Chunk::NeedMore),
                };
            }
            buffer.advance(line_len);
            self.remaining = size;
            self.in_data = true;
        }
    }
}

/// The trailer section after the last chunk, up to its empty line:
/// `Some((bytes used, trailers))`, or `None` when incomplete.
fn parse_trailers(section: &[u8]) -> Result<Option<(usize, HeaderMap)>, DecodeError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(section, &mut slots) {
        Ok(httparse::Status::Complete((used, parsed))) => {
            let mut trailers = HeaderMap::new();
            for h in parsed {
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| DecodeError::Chunked("bad trailer name"))?;
                let value = HeaderValue::from_bytes(h.value)
                    .map_err(|_| DecodeError::Chunked("bad trailer value"))?;
                trailers.append(name, value);
            }
            Ok(Some((used, trailers)))
        }
        Ok(httparse::Status::Partial) if section.len() > MAX_CHUNK_LINE * 4 => {
            Err(DecodeError::Chunked("trailer section too long"))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(DecodeError::Chunked("bad trailer section")),
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
