//! One request on a borrowed HTTP/1.1 connection, up to its response head:
//! write the head, stream the request body while waiting (the upstream may
//! answer before the body is done), parse the head. The [`Exchange`] then
//! moves into the response body, which keeps streaming both ways.
//!
//! A request that fails on a reused connection is sent once more on a
//! fresh one when that cannot duplicate it: its head was not completely
//! written (so the body was not touched), or the connection closed before
//! any response byte and the request is bodiless and idempotent.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::{Method, Request, Response, Version};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::decode::{parse_head, ResponseHead};
use super::encode::{chunk_prefix, chunked_end, frame_body, write_head, BodyEncoding, BodyShape};
use super::idle::IdleConnections;
use super::response::ResponseBody;
use super::{Connection, MAX_READ};
use crate::http::body::Body;
use crate::upstream::host::Host;
use crate::upstream::UpstreamError;

/// Sends `request` to `host` over a pooled or new HTTP/1.1 connection and
/// waits for the response head. `ready` is called when a connection is
/// ready to carry the request (again if it is replayed on a fresh one).
pub(crate) async fn send(
    host: &Arc<Host>,
    request: Request<Body>,
    ready: &mut (dyn FnMut() + Send),
) -> Result<Response<ResponseBody>, UpstreamError> {
    let (mut parts, body) = request.into_parts();
    let shape = BodyShape {
        empty: body.is_end_stream(),
        exact_length: body.size_hint().exact(),
    };
    let encoding = frame_body(&mut parts, shape);
    let replayable_after_write = encoding == BodyEncoding::None && is_idempotent(&parts.method);
    let mut body = (encoding != BodyEncoding::None).then_some(body);
    let context = host.pool().context();
    let mut head: Option<Bytes> = None;
    let mut may_retry = true;
    loop {
        let reused = if may_retry {
            host.pool().http1.checkout()
        } else {
            None
        };
        let is_reused = reused.is_some();
        let mut connection = match reused {
            Some(connection) => connection,
            // Boxed so the connect state does not bloat (and get moved
            // with) every request's future; connecting is the rare path.
            None => Box::pin(Connection::open(host, context)).await?,
        };
        connection.requests += 1;
        // Written into the connection's own buffer: its allocation is
        // reclaimed for the next request once these bytes are sent.
        let head = head
            .get_or_insert_with(|| {
                write_head(&parts, &mut connection.head_buffer);
                connection.head_buffer.split().freeze()
            })
            .clone();
        ready();
        let mut exchange = Exchange::new(connection, host.clone(), parts.method.clone(), encoding);
        exchange.connection.write_queue.push_back(head);
        exchange.request_body = body.take();
        match poll_fn(|cx| exchange.poll_head(cx)).await {
            Ok(response_head) => {
                let status = response_head.status;
                let mut response = Response::new(ResponseBody::new(
                    exchange,
                    response_head.framing,
                    response_head.keep_alive,
                ));
                *response.status_mut() = status;
                *response.version_mut() = Version::HTTP_11;
                *response.headers_mut() = response_head.headers;
                return Ok(response);
            }
            Err(failure) => {
                let retry = is_reused
                    && may_retry
                    && match failure.kind {
                        FailureKind::HeadUnsent => true,
                        FailureKind::NoResponse => replayable_after_write,
                        FailureKind::Other => false,
                    };
                if !retry {
                    return Err(failure.error);
                }
                body = exchange.request_body.take();
                may_retry = false;
            }
        }
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// How far a failed exchange got, for the replay decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    /// The head was not completely written: the server saw no request.
    HeadUnsent,
    /// The head was written, and the connection closed or reset before
    /// any response byte.
    NoResponse,
    Other,
}

struct Failure {
    error: UpstreamError,
    kind: FailureKind,
}

/// A connection lent to one request; see the module documentation.
pub(crate) struct Exchange {
    pub(super) connection: Connection,
    pub(super) host: Arc<Host>,
    method: Method,
    /// The rest of the request body; `None` once it ended (or failed).
    request_body: Option<Body>,
    encoding: BodyEncoding,
    head_written: bool,
    write_error: Option<io::Error>,
    body_error: Option<String>,
}

impl Exchange {
    fn new(
        connection: Connection,
        host: Arc<Host>,
        method: Method,
        encoding: BodyEncoding,
    ) -> Self {
        Exchange {
            connection,
            host,
            method,
            request_body: None,
            encoding,
            head_written: false,
            write_error: None,
            body_error: None,
        }
    }

    /// The whole request reached the socket without error.
    pub(super) fn request_complete(&self) -> bool {
        self.request_body.is_none()
            && self.connection.write_queue.is_empty()
            && self.write_error.is_none()
            && self.body_error.is_none()
    }

    /// Why the request could not be sent in full, if it failed.
    pub(super) fn request_failure(&self) -> Option<String> {
        self.body_error.clone()
    }

    /// Gives the connection back to the host's idle list.
    pub(super) fn give_back(self) {
        IdleConnections::give_back(&self.host, self.connection);
    }

    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<ResponseHead, Failure>> {
        loop {
            self.poll_send(cx);
            if let Some(error) = &self.body_error {
                return Poll::Ready(Err(Failure {
                    error: UpstreamError::ConnectionTermination(format!(
                        "request body failed: {error}"
                    )),
                    kind: FailureKind::Other,
                }));
            }
            let buffer = &mut self.connection.read_buffer;
            if !buffer.is_empty() {
                match parse_head(buffer, &self.method) {
                    Ok(Some(head)) => return Poll::Ready(Ok(head)),
                    Ok(None) => {}
                    Err(error) => {
                        return Poll::Ready(Err(Failure {
                            error: UpstreamError::Protocol(error.to_string()),
                            kind: FailureKind::Other,
                        }))
                    }
                }
            }
            let had_bytes = !self.connection.read_buffer.is_empty();
            let failed = match ready!(self.poll_fill(cx)) {
                Ok(0) => match &self.write_error {
                    Some(error) => format!("upstream write failed: {error}"),
                    None => "upstream closed the connection before a complete response".into(),
                },
                Ok(_) => continue,
                Err(error) => format!("upstream connection error: {error}"),
            };
            let kind = if !self.head_written {
                FailureKind::HeadUnsent
            } else if !had_bytes {
                FailureKind::NoResponse
            } else {
                FailureKind::Other
            };
            return Poll::Ready(Err(Failure {
                error: UpstreamError::ConnectionTermination(failed),
                kind,
            }));
        }
    }

    /// Writes what it can of the request: queued bytes, then body frames
    /// as the body yields them. Failures are recorded, not returned: the
    /// upstream may still answer (an early 413 before closing, say).
    pub(super) fn poll_send(&mut self, cx: &mut Context<'_>) {
        loop {
            if self.write_error.is_some() {
                return;
            }
            if !self.connection.write_queue.is_empty() {
                match self.poll_write_out(cx) {
                    Poll::Ready(Ok(())) => self.head_written = true,
                    Poll::Ready(Err(error)) => {
                        // The body stays for a replay when the head never made it.
                        self.write_error = Some(error);
                        return;
                    }
                    Poll::Pending => return,
                }
            }
            let Some(body) = self.request_body.as_mut() else {
                return;
            };
            match Pin::new(body).poll_frame(cx) {
                Poll::Pending => return,
                Poll::Ready(None) => {
                    self.request_body = None;
                    match self.encoding {
                        BodyEncoding::Chunked => {
                            self.connection.write_queue.push_back(chunked_end(None))
                        }
                        BodyEncoding::Length(left) if left > 0 => {
                            self.body_error = Some(format!(
                                "request body ended {left} bytes short of its content-length"
                            ));
                            return;
                        }
                        _ => {}
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    self.request_body = None;
                    self.body_error = Some(error.to_string());
                    return;
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => self.queue_data(data),
                    Err(frame) => {
                        if let (BodyEncoding::Chunked, Ok(trailers)) =
                            (self.encoding, frame.into_trailers())
                        {
                            self.connection
                                .write_queue
                                .push_back(chunked_end(Some(&trailers)));
                            self.request_body = None;
                        }
                    }
                },
            }
            if self.body_error.is_some() {
                return;
            }
        }
    }

    fn queue_data(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        match &mut self.encoding {
            BodyEncoding::Length(left) => {
                if data.len() as u64 > *left {
                    self.body_error = Some("request body longer than its content-length".into());
                    self.request_body = None;
                    return;
                }
                *left -= data.len() as u64;
                self.connection.write_queue.push_back(data);
            }
            BodyEncoding::Chunked => {
                self.connection
                    .write_queue
                    .push_back(chunk_prefix(data.len()));
                self.connection.write_queue.push_back(data);
                self.connection
                    .write_queue
                    .push_back(Bytes::from_static(b"\r\n"));
            }
            BodyEncoding::None => {}
        }
    }

    /// Writes the queued bytes (gathered into one `writev`).
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.connection.write_queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); 8];
            let count = self.connection.write_queue.len().min(slices.len());
            for (slice, bytes) in slices.iter_mut().zip(self.connection.write_queue.iter()) {
                *slice = IoSlice::new(bytes);
            }
            let io = Pin::new(&mut self.connection.io);
            let mut written = ready!(io.poll_write_vectored(cx, &slices[..count]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            while written > 0 {
                let front = self
                    .connection
                    .write_queue
                    .front_mut()
                    .expect("written bytes were queued");
                if written >= front.len() {
                    written -= front.len();
                    self.connection.write_queue.pop_front();
                } else {
                    front.advance(written);
                    written = 0;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads more of the response into the connection's buffer; `Ok(0)`
    /// is the end of the stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let connection = &mut self.connection;
        let buffer = &mut connection.read_buffer;
        if buffer.capacity() - buffer.len() < connection.read_size / 2 {
            buffer.reserve(connection.read_size);
        }
        let spare = buffer.spare_capacity_mut();
        let room = spare.len();
        let mut read = ReadBuf::uninit(spare);
        ready!(Pin::new(&mut connection.io).poll_read(cx, &mut read))?;
        let filled = read.filled().len();
        // SAFETY: `poll_read` initialised the first `filled` spare bytes.
        unsafe { buffer.set_len(buffer.len() + filled) };
        if filled == room && connection.read_size < MAX_READ {
            connection.read_size *= 2;
        }
        Poll::Ready(Ok(filled))
    }
}
