//! A stand-in code host: a real HTTP/1.1 server on loopback, in the test process, that answers
//! from a script of routes and records every request it gets (method, path, query, headers,
//! body) for the test to check as strictly as the provider would.
//!
//! Routes match on method and path (as sent, percent-encoding and all) and, when given, the
//! query's decoded pairs in any order. A route's replies are given in turn; the last one repeats.
//! `{base}` in a reply's body or headers becomes this server's address (for `Link` headers and
//! `next` URLs). A request no route matches gets a 404 and is recorded like any other.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (timeouts).
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json; charset=utf-8".into())],
            body: body.into().into_bytes(),
            delay: Duration::ZERO,
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.into().into_bytes(),
            delay: Duration::ZERO,
        }
    }

    /// A payload from `fixtures/providers/`.
    pub fn fixture(status: u16, path: &str) -> Reply {
        Reply::json(status, fixture(path))
    }

    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply { status, headers: vec![("location".into(), location.into())], body: Vec::new(), delay: Duration::ZERO }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

/// The text of `fixtures/providers/<path>`.
pub fn fixture(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/providers").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("fixture {}: {e}", full.display()))
}

/// A fixture parsed.
pub fn fixture_json(path: &str) -> Value {
    serde_json::from_str(&fixture(path)).unwrap()
}

/// One request the host got.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// As sent, percent-encoding kept.
    pub path: String,
    /// As sent, without the `?`.
    pub query: String,
    /// Names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} {} body is not JSON: {e}", self.method, self.path))
    }

    /// The query's pairs, decoded, sorted.
    pub fn pairs(&self) -> Vec<(String, String)> {
        pairs(&self.query)
    }
}

fn pairs(query: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    v.sort();
    v
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Route {
    method: String,
    path: String,
    query: Option<Vec<(String, String)>>,
    replies: VecDeque<Reply>,
    /// The one reply left has been given (it repeats); a reply added now replaces it.
    spent: bool,
}

#[derive(Default)]
struct State {
    routes: Vec<Route>,
    requests: Vec<Request>,
}

pub struct FakeHost {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl FakeHost {
    pub fn start() -> FakeHost {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let (st, b) = (state.clone(), base.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (st, b) = (st.clone(), b.clone());
                std::thread::spawn(move || serve(conn, &st, &b));
            }
        });
        FakeHost { base, state }
    }

    /// Answers `method` `target` (a path, with `?query` to match the query too) with `reply`;
    /// called again for the same route, the replies are given in turn, the last repeating; a
    /// reply added after the last was given replaces it.
    pub fn on(&self, method: &str, target: &str, reply: Reply) -> &FakeHost {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(pairs(q))),
            None => (target.to_owned(), None),
        };
        let mut st = self.state.lock().unwrap();
        match st.routes.iter_mut().find(|r| r.method == method && r.path == path && r.query == query) {
            Some(r) if r.spent => {
                r.replies = VecDeque::from([reply]);
                r.spent = false;
            }
            Some(r) => r.replies.push_back(reply),
            None => st.routes.push(Route {
                method: method.into(),
                path,
                query,
                replies: VecDeque::from([reply]),
                spent: false,
            }),
        }
        self
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests for one method and path.
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.method == method && r.path == path).collect()
    }

    pub fn clear(&self) {
        self.state.lock().unwrap().requests.clear();
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>, base: &str) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.clone(), String::new()),
    };
    let reply = {
        let mut st = state.lock().unwrap();
        let got = pairs(&query);
        st.requests.push(Request { method: method.clone(), path: path.clone(), query, headers, body });
        let same = |r: &Route| r.method == method && r.path == path;
        let at = st
            .routes
            .iter()
            .position(|r| same(r) && r.query.as_ref() == Some(&got))
            .or_else(|| st.routes.iter().position(|r| same(r) && r.query.is_none()));
        match at {
            Some(i) => {
                let r = &mut st.routes[i];
                if r.replies.len() > 1 {
                    r.replies.pop_front().unwrap()
                } else {
                    r.spent = true;
                    r.replies[0].clone()
                }
            }
            None => Reply::json(
                404,
                format!(r#"{{"message":"Not Found (the fake host has no route for {method} {path})"}}"#),
            ),
        }
    };
    if !reply.delay.is_zero() {
        std::thread::sleep(reply.delay);
    }
    let body = String::from_utf8_lossy(&reply.body).replace("{base}", base).into_bytes();
    let mut out = conn;
    let mut head = format!("HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n", reply.status, body.len());
    for (n, v) in &reply.headers {
        head.push_str(&format!("{n}: {}\r\n", v.replace("{base}", base)));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(&body);
    let _ = out.flush();
}
