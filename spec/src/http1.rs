//! HTTP/1.x message heads and chunked bodies, parsed with `httparse`: the one parser shared by the
//! test client (`testkit::http`), the recording test server (`testkit::gateway::TestServer`), the
//! stand-in host's callout reader (`host::dispatch`) and the tests that speak HTTP on a raw socket.
//! Servers that send broken bytes on purpose write them by hand; only their reading is here.

use httparse::{Status, EMPTY_HEADER};
use std::io::Read;

/// Header names in lower case, values as sent less surrounding whitespace.
pub type Headers = Vec<(String, Vec<u8>)>;

/// Most header lines a head may have (httparse needs a slot for each; an 8 KB head fits about
/// 2700 one-letter headers).
const MAX_HEADERS: usize = 16 * 1024;

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Headers,
    /// Bytes of the head, the blank line included.
    pub len: usize,
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    /// The request target as sent (`/path?query`).
    pub target: String,
    pub headers: Headers,
    /// Bytes of the head, the blank line included.
    pub len: usize,
}

/// The first value of header `name` (lower case), lossily as text.
pub fn header(headers: &Headers, name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// `headers` as text (values lossily).
pub fn text_headers(headers: Headers) -> Vec<(String, String)> {
    headers
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// The first value of header `name` (any case) among lower-cased text headers.
pub fn text_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether `Transfer-Encoding` names `chunked`.
pub fn is_chunked(headers: &Headers) -> bool {
    header(headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

/// Whether a response to this request with this status has no body (RFC 9112 section 6.3).
pub fn bodiless(status: u16, head_only: bool) -> bool {
    head_only || status == 204 || status == 304 || (100..200).contains(&status)
}

/// Runs `parse` with room for more and more header lines until it has enough.
fn with_headers<'b, T>(
    mut parse: impl FnMut(&mut [httparse::Header<'b>]) -> Result<T, httparse::Error>,
) -> Result<T, httparse::Error> {
    let mut room = 64;
    loop {
        let mut headers = vec![EMPTY_HEADER; room];
        match parse(&mut headers) {
            Err(httparse::Error::TooManyHeaders) if room < MAX_HEADERS => room *= 4,
            other => return other,
        }
    }
}

fn own(headers: &[httparse::Header<'_>]) -> Headers {
    headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect()
}

/// Parses a response head at the start of `buf`: `Ok(None)` while it is incomplete.
pub fn parse_response(buf: &[u8]) -> Result<Option<ResponseHead>, httparse::Error> {
    with_headers(|slots| {
        let mut res = httparse::Response::new(slots);
        Ok(match res.parse(buf)? {
            Status::Partial => None,
            Status::Complete(len) => Some(ResponseHead {
                status: res.code.unwrap_or_default(),
                headers: own(res.headers),
                len,
            }),
        })
    })
}

/// The status code of a response whose status line `buf` holds, complete head or not.
pub fn status_code(buf: &[u8]) -> Option<u16> {
    let mut slots = [EMPTY_HEADER; 1];
    let mut res = httparse::Response::new(&mut slots);
    // An error after the status line (a bad or one-too-many header) still leaves the code set.
    let _ = res.parse(buf);
    res.code
}

/// Parses a request head at the start of `buf`: `Ok(None)` while it is incomplete.
pub fn parse_request(buf: &[u8]) -> Result<Option<RequestHead>, httparse::Error> {
    with_headers(|slots| {
        let mut req = httparse::Request::new(slots);
        Ok(match req.parse(buf)? {
            Status::Partial => None,
            Status::Complete(len) => Some(RequestHead {
                method: req.method.unwrap_or_default().to_string(),
                target: req.path.unwrap_or_default().to_string(),
                headers: own(req.headers),
                len,
            }),
        })
    })
}

/// Why a blocking head read failed.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    /// The peer closed after this many bytes, before the head ended.
    Closed(usize),
    /// The head grew past the limit.
    TooLarge,
    Parse(httparse::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Closed(n) => write!(f, "EOF after {n} bytes of head"),
            ReadError::TooLarge => write!(f, "head too large"),
            ReadError::Parse(e) => write!(f, "bad head: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads from `r` until `parse` finds a whole head of at most `max` bytes; returns the head and
/// the bytes read after it.
pub fn read_head<T>(
    r: &mut impl Read,
    max: usize,
    parse: impl Fn(&[u8]) -> Result<Option<T>, httparse::Error>,
    len: impl Fn(&T) -> usize,
) -> Result<(T, Vec<u8>), ReadError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(head) = parse(&buf).map_err(ReadError::Parse)? {
            let rest = buf.get(len(&head)..).unwrap_or_default().to_vec();
            return Ok((head, rest));
        }
        if buf.len() > max {
            return Err(ReadError::TooLarge);
        }
        let n = r.read(&mut chunk).map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Closed(buf.len()));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// Reads a response head from `r` (see [`read_head`]).
pub fn read_response_head(
    r: &mut impl Read,
    max: usize,
) -> Result<(ResponseHead, Vec<u8>), ReadError> {
    read_head(r, max, parse_response, |h| h.len)
}

/// Reads a request head from `r` (see [`read_head`]).
pub fn read_request_head(
    r: &mut impl Read,
    max: usize,
) -> Result<(RequestHead, Vec<u8>), ReadError> {
    read_head(r, max, parse_request, |h| h.len)
}

/// A chunked body decoded from a buffer that grows as its bytes arrive (trailers are not read).
#[derive(Debug, Default)]
pub struct Chunked {
    /// Where the next chunk starts in the buffer.
    at: usize,
    body: Vec<u8>,
}

impl Chunked {
    /// Decodes the chunks `raw` (every byte after the head so far) holds from where the last call
    /// stopped: `Ok(Some(body))` once the last chunk is read, `Ok(None)` when more bytes are needed.
    pub fn decode(&mut self, raw: &[u8]) -> Result<Option<Vec<u8>>, httparse::InvalidChunkSize> {
        loop {
            let rest = raw.get(self.at..).unwrap_or_default();
            let (size_len, size) = match httparse::parse_chunk_size(rest)? {
                Status::Partial => return Ok(None),
                Status::Complete(found) => found,
            };
            if size == 0 {
                self.at += size_len;
                return Ok(Some(std::mem::take(&mut self.body)));
            }
            let size = usize::try_from(size).map_err(|_| httparse::InvalidChunkSize)?;
            // The chunk's data, then the CRLF that ends it.
            let end = size_len.saturating_add(size);
            match rest.get(size_len..end) {
                Some(data) if rest.len() >= end.saturating_add(2) => {
                    self.body.extend_from_slice(data);
                    self.at += end + 2;
                }
                _ => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads_in_pieces() {
        let raw = b"HTTP/1.1 200 OK\r\nX-A:  one \r\nContent-Length: 2\r\n\r\nok";
        assert!(parse_response(&raw[..20]).unwrap().is_none());
        let head = parse_response(raw).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(header(&head.headers, "x-a").as_deref(), Some("one"));
        assert_eq!(&raw[head.len..], b"ok");
        assert_eq!(status_code(&raw[..20]), Some(200));
        assert!(parse_response(b"ICY 200 OK\r\n\r\n").is_err());
        let req = parse_request(b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((req.method.as_str(), req.target.as_str()), ("GET", "/a?b"));
    }

    #[test]
    fn parses_many_headers() {
        let mut raw = String::from("HTTP/1.1 204 No Content\r\n");
        for i in 0..500 {
            raw.push_str(&format!("x-{i}: {i}\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(
            parse_response(raw.as_bytes())
                .unwrap()
                .unwrap()
                .headers
                .len(),
            500
        );
    }

    #[test]
    fn decodes_chunks_as_they_arrive() {
        let raw = b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let mut chunked = Chunked::default();
        for end in 0..raw.len() - 4 {
            assert_eq!(chunked.decode(&raw[..end]).unwrap(), None, "{end}");
        }
        assert_eq!(chunked.decode(raw).unwrap().unwrap(), b"abcde");
        assert!(Chunked::default().decode(b"zz\r\n").is_err());
    }
}
