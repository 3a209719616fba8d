//! Response heads, framing and the chunked decoder, on byte strings.

use super::*;

fn parse(text: &str, method: Method) -> Result<Option<ResponseHead>, DecodeError> {
    let mut buffer = BytesMut::from(text);
    parse_head(&mut buffer, &method)
}

fn complete(text: &str) -> ResponseHead {
    parse(text, Method::GET).unwrap().expect("a complete head")
}

#[test]
fn head_with_length_leaves_the_body_in_the_buffer() {
    let mut buffer = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
    let head = parse_head(&mut buffer, &Method::GET).unwrap().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.framing, Framing::Length(5));
    assert!(head.keep_alive);
    assert_eq!(head.headers["x-a"], "b");
    assert_eq!(head.headers["content-length"], "5");
    assert_eq!(&buffer[..], b"hello");
}

#[test]
fn partial_head_asks_for_more() {
    assert!(parse("HTTP/1.1 200 OK\r\nContent-Le", Method::GET)
        .unwrap()
        .is_none());
}

#[test]
fn bodiless_responses() {
    assert_eq!(
        parse("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", Method::HEAD)
            .unwrap()
            .unwrap()
            .framing,
        Framing::Empty
    );
    assert_eq!(
        complete("HTTP/1.1 204 No Content\r\n\r\n").framing,
        Framing::Empty
    );
    assert_eq!(
        complete("HTTP/1.1 304 Not Modified\r\n\r\n").framing,
        Framing::Empty
    );
    assert_eq!(
        complete("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").framing,
        Framing::Empty
    );
}

#[test]
fn chunked_wins_over_content_length_and_other_codings_read_until_close() {
    let head = complete(
        "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
    );
    assert_eq!(head.framing, Framing::Chunked);
    let head = complete("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
    assert_eq!(head.framing, Framing::UntilClose);
    assert!(!head.keep_alive);
}

#[test]
fn no_length_reads_until_close_and_is_not_kept_alive() {
    let head = complete("HTTP/1.1 200 OK\r\n\r\nbody");
    assert_eq!(head.framing, Framing::UntilClose);
    assert!(!head.keep_alive);
}

#[test]
fn keep_alive_per_version_and_connection_header() {
    assert!(
        !complete("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n").keep_alive
    );
    assert!(!complete("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n").keep_alive);
    assert!(
        complete("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 1\r\n\r\n")
            .keep_alive
    );
}

#[test]
fn informational_responses_are_skipped_and_101_is_refused() {
    let head = complete("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(head.status, 201);
    assert!(!head.headers.contains_key("link"));
    assert_eq!(
        parse("HTTP/1.1 101 Switching Protocols\r\n\r\n", Method::GET).unwrap_err(),
        DecodeError::UnexpectedSwitch
    );
}

#[test]
fn bad_heads_are_errors() {
    for bad in [
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        "SMTP ready\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
    ] {
        assert!(parse(bad, Method::GET).is_err(), "{bad:?} was accepted");
    }
    // Agreeing repeated lengths are one length.
    assert_eq!(
        complete("HTTP/1.1 200 OK\r\ncontent-length: 4\r\ncontent-length: 4\r\n\r\n").framing,
        Framing::Length(4)
    );
}

#[test]
fn oversized_heads_are_refused() {
    let mut many = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..=MAX_HEADERS {
        many.push_str(&format!("x-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(
        parse(&many, Method::GET).unwrap_err(),
        DecodeError::HeadTooLarge
    );
    let endless = format!(
        "HTTP/1.1 200 OK\r\nx-big: {}",
        "a".repeat(MAX_HEAD_BYTES + 1)
    );
    assert_eq!(
        parse(&endless, Method::GET).unwrap_err(),
        DecodeError::HeadTooLarge
    );
}

fn decode_all(input: &[u8], pieces: usize) -> Result<(Vec<u8>, HeaderMap), DecodeError> {
    let mut decoder = ChunkedDecoder::default();
    let mut buffer = BytesMut::new();
    let mut body = Vec::new();
    let step = input.len().div_ceil(pieces);
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buffer)? {
            Chunk::Data(data) => body.extend_from_slice(&data),
            Chunk::End(trailers) => return Ok((body, trailers)),
            Chunk::NeedMore => {
                assert!(fed < input.len(), "decoder wants more than the input");
                let next = (fed + step).min(input.len());
                buffer.extend_from_slice(&input[fed..next]);
                fed = next;
            }
        }
    }
}

#[test]
fn chunked_body_in_any_split() {
    let input = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\ngrpc-status: 0\r\n\r\n";
    for pieces in [1, 2, 7, input.len()] {
        let (body, trailers) = decode_all(input, pieces).unwrap();
        assert_eq!(body, b"hello0123456789");
        assert_eq!(trailers["grpc-status"], "0");
    }
    let (body, trailers) = decode_all(b"0\r\n\r\n", 1).unwrap();
    assert!(body.is_empty() && trailers.is_empty());
}

#[test]
fn bad_chunked_bodies_are_errors() {
    for bad in [
        &b"zz\r\nhello\r\n0\r\n\r\n"[..],
        b"5\r\nhelloXX0\r\n\r\n",
        b"fffffffffffffffff\r\n",
        b"5 x\r\nhello\r\n0\r\n\r\n",
    ] {
        assert!(decode_all(bad, 1).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn hop_by_hop_headers_and_those_connection_lists_are_left_out() {
    let head = complete(
        "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nKeep-Alive: timeout=5\r\nx-private: secret\r\nx-public: shown\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    assert_eq!(head.framing, Framing::Chunked);
    assert!(head.keep_alive);
    let names: Vec<&str> = head.headers.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["x-public"]);
}
