//! A JSON-RPC client for the real `marginalia lsp` binary over stdio: what an editor does, in a
//! test. Requests the server sends (progress, lens refresh) are answered the way an editor
//! would; notifications are kept for the test to look at.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

pub struct Lsp {
    child: Child,
    stdin: ChildStdin,
    incoming: Receiver<Value>,
    next_id: i64,
    /// Notifications from the server, oldest first.
    pub notifications: Vec<Value>,
    /// Requests from the server (each already answered with `null`), oldest first.
    pub server_requests: Vec<Value>,
}

impl Lsp {
    /// Starts the server with its store in `data_dir`, in folder `cwd`.
    pub fn start(cwd: &Path, data_dir: &Path) -> Lsp {
        Lsp::start_with(cwd, data_dir, &[])
    }

    /// [`Lsp::start`] with more environment (a team server and its token, say).
    pub fn start_with(cwd: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Lsp {
        let mut child = Command::new(env!("CARGO_BIN_EXE_marginalia"))
            .arg("lsp")
            .current_dir(cwd)
            .envs(env.iter().copied())
            .env("MARGINALIA_DATA_DIR", data_dir)
            .env("MARGINALIA_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the marginalia binary starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = None;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; len.expect("a Content-Length header")];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                let msg: Value = serde_json::from_slice(&body).expect("the server writes JSON");
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
        Lsp { child, stdin, incoming: rx, next_id: 1, notifications: Vec::new(), server_requests: Vec::new() }
    }

    fn send(&mut self, msg: &Value) {
        let body = serde_json::to_vec(msg).unwrap();
        write!(self.stdin, "Content-Length: {}\r\n\r\n", body.len()).unwrap();
        self.stdin.write_all(&body).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Sends a request and waits for its answer: `Ok(result)` or `Err(error)`.
    pub fn request(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let deadline = Instant::now() + WAIT;
        loop {
            let mut msg = self.receive(deadline).unwrap_or_else(|| panic!("no answer to {method} within {WAIT:?}"));
            if msg.get("method").is_none() && msg["id"] == json!(id) {
                // Taken, not copied: a thousand code lenses are tens of thousands of values.
                return match msg.get_mut("error") {
                    Some(e) => Err(e.take()),
                    None => Ok(msg.get_mut("result").map(Value::take).unwrap_or(Value::Null)),
                };
            }
        }
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The next message, answering the server's own requests on the way; notifications are
    /// recorded. `None` at the deadline.
    fn receive(&mut self, deadline: Instant) -> Option<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = match self.incoming.recv_timeout(left) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => panic!("the server closed its output"),
        };
        if let Some(method) = msg.get("method") {
            if let Some(id) = msg.get("id") {
                // A question for the user: the first action is taken, as a user who agrees would,
                // and the question is kept with the notifications for the test to read.
                let result = if method == "window/showMessageRequest" {
                    self.notifications.push(msg.clone());
                    msg["params"]["actions"].get(0).cloned().unwrap_or(Value::Null)
                } else {
                    Value::Null
                };
                self.send(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
                self.server_requests.push(msg.clone());
            } else {
                self.notifications.push(msg.clone());
            }
        }
        Some(msg)
    }

    /// Waits for a notification matching `pick`, looking first at those already received
    /// (which are then forgotten, up to and including the match).
    pub fn wait_for(&mut self, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.notifications.iter().position(&pick) {
                let found = self.notifications[i].clone();
                self.notifications.drain(..=i);
                return found;
            }
            if self.receive(deadline).is_none() {
                panic!("no {what} within {WAIT:?}; got {:#?}", self.notifications);
            }
        }
    }

    /// Waits for a request from the server (`workspace/codeLens/refresh`, ...) by method,
    /// looking first at those already received (which are then forgotten, up to the match).
    pub fn wait_for_request(&mut self, method: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.server_requests.iter().position(|r| r["method"] == method) {
                let found = self.server_requests[i].clone();
                self.server_requests.drain(..=i);
                return found;
            }
            if self.receive(deadline).is_none() {
                panic!("no {method} request within {WAIT:?}; got {:#?}", self.server_requests);
            }
        }
    }

    /// Reads whatever arrives during `d`.
    pub fn settle(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while self.receive(deadline).is_some() {}
    }

    /// `initialize` + `initialized` for one workspace folder, UTF-16 unless `utf8`.
    pub fn initialize(&mut self, folder: &Path, utf8: bool, options: Value) -> Value {
        let encodings = if utf8 { json!(["utf-8", "utf-16"]) } else { json!(["utf-16"]) };
        let result = self
            .request(
                "initialize",
                json!({
                    "processId": null,
                    "rootUri": uri(folder),
                    "workspaceFolders": [{"uri": uri(folder), "name": "ws"}],
                    "initializationOptions": options,
                    "capabilities": {
                        "general": {"positionEncodings": encodings},
                        "window": {"workDoneProgress": true},
                        "workspace": {"codeLens": {"refreshSupport": true}},
                    },
                }),
            )
            .expect("initialize succeeds");
        self.notify("initialized", json!({}));
        result
    }

    pub fn open(&mut self, uri: &str, version: i32, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "rust", "version": version, "text": text}}),
        );
    }

    /// One incremental change: replace `(l1,c1)-(l2,c2)` by `text`.
    pub fn change(&mut self, uri: &str, version: i32, range: [u32; 4], text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"range": range_json(range), "text": text}],
            }),
        );
    }

    /// The document's codemarks as `marginalia/codemarks` gives them.
    pub fn codemarks(&mut self, uri: &str) -> Vec<Value> {
        let r = self.request("marginalia/codemarks", json!({"textDocument": {"uri": uri}})).expect("codemarks");
        r["codemarks"].as_array().cloned().unwrap_or_default()
    }

    pub fn command(&mut self, command: &str, arg: Value) -> Result<Value, Value> {
        self.request("workspace/executeCommand", json!({"command": command, "arguments": [arg]}))
    }

    /// The server's resident memory in KiB (Linux).
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    /// A `/proc/PID/status` figure in KiB: `VmRSS:`, or its parts `RssAnon:` (the process's
    /// own memory) and `RssFile:` (pages of files it maps, its executable's code above all,
    /// shared with the page cache).
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// `shutdown` then `exit`, and waits for the process to end.
    pub fn stop(mut self) {
        self.request("shutdown", Value::Null).expect("shutdown");
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "the server exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the server did not exit after shutdown and exit");
    }
}

impl Drop for Lsp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn uri(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    format!("file://{}", path.display())
}

pub fn range_json([l1, c1, l2, c2]: [u32; 4]) -> Value {
    json!({"start": {"line": l1, "character": c1}, "end": {"line": l2, "character": c2}})
}

/// (start line, end line) of a codemark's `range`.
pub fn lines_of(codemark: &Value) -> (u64, u64) {
    (codemark["range"]["start"]["line"].as_u64().unwrap(), codemark["range"]["end"]["line"].as_u64().unwrap())
}
