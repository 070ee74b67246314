//! A tiny HTTP/1.1 server on 127.0.0.1 for tests: fixed responses per path, conditional GET,
//! request counting, and raw handlers for hostile behaviours (slow drip, endless body, resets).
//!
//! Blocking std threads, one per connection, so it works from sync and async tests alike.
//! Every connection is closed after one response (`Connection: close`).

// Each test module uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    /// When the request line arrived.
    pub received: std::time::Instant,
    /// Wall-clock time of arrival, to compare with times the daemon stores.
    pub received_wall: std::time::SystemTime,
    /// The body, when the request had a Content-Length.
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Custom behaviour: write whatever you like to the stream.
pub type Handler = Arc<dyn Fn(&Request, &mut TcpStream) + Send + Sync>;

/// What a path answers.
#[derive(Clone)]
pub enum Route {
    /// A fixed response. If `etag` is set, a matching If-None-Match gets 304; if
    /// `last_modified` is set, a matching If-Modified-Since gets 304.
    Fixed {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    Custom(Handler),
}

impl Route {
    /// 200 with a body and content type.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Route {
        Route::Fixed {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
            etag: None,
            last_modified: None,
        }
    }

    /// 200 with validators, answering 304 to matching conditional requests.
    pub fn cached(
        content_type: &str,
        body: impl Into<Vec<u8>>,
        etag: &str,
        last_modified: &str,
    ) -> Route {
        Route::Fixed {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
            etag: Some(etag.into()),
            last_modified: Some(last_modified.into()),
        }
    }

    pub fn status(status: u16, headers: Vec<(&str, &str)>, body: impl Into<Vec<u8>>) -> Route {
        Route::Fixed {
            status,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
            etag: None,
            last_modified: None,
        }
    }

    pub fn custom(f: impl Fn(&Request, &mut TcpStream) + Send + Sync + 'static) -> Route {
        Route::Custom(Arc::new(f))
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    log: Vec<Request>,
}

/// The server. Stops accepting when dropped.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    pub fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(stream, st));
            }
        });
        TestServer { addr, state, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn route(&self, path: &str, route: Route) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_string(), route);
    }

    /// Number of requests seen for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Every request seen for `path`, oldest first.
    pub fn requests(&self, path: &str) -> Vec<Request> {
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = Vec::new();
    if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n <= 1 << 20)
    {
        body.resize(n, 0);
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            body.clear();
        }
    }
    let req = Request {
        method,
        path: path.clone(),
        headers,
        received: std::time::Instant::now(),
        received_wall: std::time::SystemTime::now(),
        body,
    };
    let route = {
        let mut st = state.lock().unwrap();
        st.log.push(req.clone());
        st.routes.get(&path).cloned()
    };
    let mut stream = stream;
    match route {
        None => write_response(
            &mut stream,
            404,
            &[("Content-Type".into(), "text/plain".into())],
            b"not found",
        ),
        Some(Route::Custom(f)) => f(&req, &mut stream),
        Some(Route::Fixed {
            status,
            headers,
            body,
            etag,
            last_modified,
        }) => {
            let mut hs = headers.clone();
            if let Some(e) = &etag {
                hs.push(("ETag".into(), e.clone()));
            }
            if let Some(lm) = &last_modified {
                hs.push(("Last-Modified".into(), lm.clone()));
            }
            let not_modified = match (&etag, req.header("if-none-match")) {
                (Some(e), Some(inm)) => inm == e,
                _ => match (&last_modified, req.header("if-modified-since")) {
                    (Some(lm), Some(ims)) => ims == lm,
                    _ => false,
                },
            };
            if not_modified {
                hs.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
                write_response(&mut stream, 304, &hs, b"");
            } else {
                write_response(&mut stream, status, &hs, &body);
            }
        }
    }
    let _ = stream.flush();
}

/// Write a complete response with Content-Length and `Connection: close`.
pub fn write_response(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if status != 304 {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let _ = stream.write_all(head.as_bytes());
    if status != 304 {
        let _ = stream.write_all(body);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Write a response head with `Connection: close` and no Content-Length (unless given in
/// `headers`): the body then runs until the connection closes. For custom handlers.
pub fn write_head(stream: &mut TcpStream, status: u16, headers: &[(&str, &str)]) -> bool {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).is_ok()
}

/// Make the connection end with a TCP reset (RST) instead of an orderly close when it is
/// dropped: SO_LINGER with a zero timeout.
pub fn reset_on_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}
