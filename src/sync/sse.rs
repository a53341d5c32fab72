//! Server-Sent Events, read incrementally: bytes as they arrive in, whole events out. The
//! format of the HTML standard ("event stream interpretation"): `field: value` lines, events
//! ended by a blank line, comments (keep-alives) starting with `:`, any line ending.

/// One event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id:` field, when the event had one.
    pub id: Option<String>,
    /// The `event:` field; `message` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Turns chunks of a stream into events; keeps the partial line between chunks.
#[derive(Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The last byte seen was a `\r`: a `\n` right after it ends the same line.
    after_cr: bool,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

/// Lines longer than this are cut: a server that never ends its line cannot fill memory.
const MAX_LINE: usize = 8 << 20;

impl SseParser {
    /// Takes the next chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.field(&String::from_utf8_lossy(&line), &mut out);
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() < MAX_LINE {
                        self.line.push(b);
                    }
                }
            }
        }
        out
    }

    fn field(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                let event = self.event.take().unwrap_or_else(|| "message".into());
                out.push(SseEvent { id: self.id.clone(), event, data });
            }
            self.event = None;
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        chunks.iter().flat_map(|c| p.push(c)).collect()
    }

    fn ev(id: Option<&str>, event: &str, data: &str) -> SseEvent {
        SseEvent { id: id.map(str::to_owned), event: event.into(), data: data.into() }
    }

    #[test]
    fn events_are_whole_whatever_the_chunks_and_line_endings() {
        let stream =
            b": keep-alive\n\nid: 7\nevent: change\ndata: {\"a\":\ndata: 1}\n\nid:8\r\ndata:x\r\n\r\ndata: no id\n\n";
        let want = vec![
            ev(Some("7"), "change", "{\"a\":\n1}"),
            ev(Some("8"), "message", "x"),
            ev(Some("8"), "message", "no id"),
        ];
        assert_eq!(parse(&[stream]), want);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse(&bytes), want, "one byte at a time");
        let split: Vec<&[u8]> = stream.chunks(5).collect();
        assert_eq!(parse(&split), want);
    }

    #[test]
    fn an_event_without_data_or_not_yet_ended_is_not_sent() {
        assert_eq!(parse(&[b"event: change\n\nid: 3\ndata: half"]), vec![]);
    }

    #[test]
    fn text_split_inside_a_character_is_kept_whole() {
        let s = "data: é\n\n".as_bytes();
        assert_eq!(parse(&[&s[..7], &s[7..]]), vec![ev(None, "message", "é")]);
    }
}
