//! The body of an HTTP/1.1 response, read straight off the connection by
//! whoever polls it (the downstream connection's task). It keeps sending
//! the rest of the request body meanwhile, and when the response's last
//! byte is read the connection goes back to the idle list — if the
//! upstream keeps it alive, the whole request was sent and nothing unasked
//! follows. Otherwise (and when the body is dropped early) it closes.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::decode::{Chunk, ChunkedDecoder, Framing};
use super::exchange::Exchange;
use crate::upstream::UpstreamError;

/// See the module documentation.
pub(crate) struct ResponseBody {
    /// The connection, until the body ended.
    exchange: Option<Exchange>,
    /// How the body ends; a `Length` counts down as bytes are handed out.
    framing: Framing,
    chunked: ChunkedDecoder,
    keep_alive: bool,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("framing", &self.framing)
            .field("open", &self.exchange.is_some())
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    pub(super) fn new(exchange: Exchange, framing: Framing, keep_alive: bool) -> ResponseBody {
        let mut body = ResponseBody {
            exchange: Some(exchange),
            framing,
            chunked: ChunkedDecoder::default(),
            keep_alive,
        };
        if framing == Framing::Empty {
            body.finish();
        }
        body
    }

    /// The response ended: the connection goes back to the pool if it can
    /// carry another request, else it closes.
    fn finish(&mut self) {
        self.framing = Framing::Empty;
        if let Some(exchange) = self.exchange.take() {
            if self.keep_alive
                && exchange.request_complete()
                && exchange.connection.read_buffer.is_empty()
            {
                exchange.give_back();
            }
        }
    }

    /// Ends the body with `error`, closing the connection.
    fn fail(&mut self, error: UpstreamError) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        self.exchange = None;
        self.framing = Framing::Empty;
        Poll::Ready(Some(Err(error)))
    }

    /// The next frame of the body, without reading from the socket.
    fn next_buffered(&mut self) -> Result<Option<Frame<Bytes>>, UpstreamError> {
        let Some(exchange) = self.exchange.as_mut() else {
            return Ok(None);
        };
        let buffer = &mut exchange.connection.read_buffer;
        let (frame, ended) = match &mut self.framing {
            Framing::Empty => (None, true),
            Framing::Length(_) | Framing::UntilClose if buffer.is_empty() => (None, false),
            Framing::Length(left) => {
                let take = (buffer.len() as u64).min(*left) as usize;
                *left -= take as u64;
                (
                    Some(Frame::data(buffer.split_to(take).freeze())),
                    *left == 0,
                )
            }
            Framing::UntilClose => (Some(Frame::data(buffer.split().freeze())), false),
            Framing::Chunked => match self.chunked.decode(buffer) {
                Ok(Chunk::Data(data)) => (Some(Frame::data(data)), false),
                Ok(Chunk::End(trailers)) => (
                    (!trailers.is_empty()).then(|| Frame::trailers(trailers)),
                    true,
                ),
                Ok(Chunk::NeedMore) => (None, false),
                Err(error) => return Err(UpstreamError::Protocol(error.to_string())),
            },
        };
        if ended {
            self.finish();
        }
        Ok(frame)
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = &mut *self;
        loop {
            let Some(exchange) = this.exchange.as_mut() else {
                return Poll::Ready(None);
            };
            exchange.poll_send(cx);
            if let Some(error) = exchange.request_failure() {
                return this.fail(UpstreamError::ConnectionTermination(format!(
                    "request body failed: {error}"
                )));
            }
            match this.next_buffered() {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) if this.exchange.is_none() => return Poll::Ready(None),
                Ok(None) => {}
                Err(error) => return this.fail(error),
            }
            let exchange = this.exchange.as_mut().expect("checked above");
            match ready!(exchange.poll_fill(cx)) {
                Ok(0) if this.framing == Framing::UntilClose => {
                    this.exchange = None;
                    this.framing = Framing::Empty;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return this.fail(UpstreamError::ConnectionTermination(
                        "upstream closed the connection before the response body ended".into(),
                    ))
                }
                Ok(_) => {}
                Err(error) => {
                    return this.fail(UpstreamError::ConnectionTermination(format!(
                        "upstream connection error: {error}"
                    )))
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Empty || self.framing == Framing::Length(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(left) => SizeHint::with_exact(left),
            Framing::Chunked | Framing::UntilClose => SizeHint::default(),
        }
    }
}
