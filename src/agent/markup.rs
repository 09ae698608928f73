//! Tool calls a model wrote as text in its own format instead of the API's tool calls — Hermes
//! and Qwen `<tool_call>{…}</tool_call>`, `<tools><function name="…" …/></tools>`, or a bare
//! `{"name": …, "arguments": …}` — are never shown to the learner: [`MarkupFilter`] holds back
//! text that may be such markup while it streams, and hands back the calls it could parse (the
//! engine runs them as tool calls) and nothing of what it could not.

use serde_json::Value;

/// A tool call parsed from text.
#[derive(Debug, Clone, PartialEq)]
pub struct TextCall {
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

/// Opening tags of tool-call markup, with the tag that closes each.
const TAGS: &[(&str, &str)] = &[
    ("<tool_call>", "</tool_call>"),
    ("<tools>", "</tools>"),
    ("<function", "</function>"),
    ("<|tool_call|>", "<|/tool_call|>"),
    ("[TOOL_CALLS]", "\n\n"),
];

/// Filters one model reply as it streams.
#[derive(Debug, Default)]
pub struct MarkupFilter {
    /// Text held back: it may be the start of markup.
    held: String,
    /// Whether any text other than whitespace has been released.
    started: bool,
    /// The reply began with `{` or a code fence: held whole, to be judged at the end.
    json_reply: bool,
    calls: Vec<TextCall>,
    /// Markup seen (parsed or not).
    stripped: usize,
    /// Markup that held no call the filter could read.
    unparsed: usize,
}

/// What the filter found in a whole reply.
#[derive(Debug, Default, PartialEq)]
pub struct Filtered {
    /// The rest of the text, to show.
    pub text: String,
    pub calls: Vec<TextCall>,
    /// Pieces of markup removed (parsed into `calls` or not).
    pub stripped: usize,
    /// Of those, the ones that held no call the filter could read.
    pub unparsed: usize,
}

impl MarkupFilter {
    /// Takes a delta; returns the text that can be shown now.
    pub fn push(&mut self, delta: &str) -> String {
        self.held.push_str(delta);
        if !self.started && !self.json_reply {
            let lead = self.held.trim_start();
            if lead.is_empty() {
                return String::new();
            }
            if lead.starts_with('{') || lead.starts_with("```") {
                self.json_reply = true;
            }
        }
        if self.json_reply {
            return String::new();
        }
        self.release(false)
    }

    /// The end of the reply: the text still held (unless it was markup) and the calls parsed.
    pub fn finish(mut self) -> Filtered {
        let text = if self.json_reply {
            let all = std::mem::take(&mut self.held);
            let (calls, rest) = leading_json_calls(&all);
            if !calls.is_empty() {
                self.calls.extend(calls);
                self.stripped += 1;
            }
            self.held = rest.to_owned();
            let text = self.release(true);
            if looks_like_a_call(&text) {
                // a call the filter could not read: never shown
                self.stripped += 1;
                self.unparsed += 1;
                String::new()
            } else {
                text
            }
        } else {
            self.release(true)
        };
        Filtered { text, calls: self.calls, stripped: self.stripped, unparsed: self.unparsed }
    }

    /// Releases what cannot be markup; strips whole markup blocks. At the end (`last`), an
    /// unterminated block is stripped too.
    fn release(&mut self, last: bool) -> String {
        let mut out = String::new();
        loop {
            let Some(at) = self.held.find(['<', '[']) else {
                out.push_str(&std::mem::take(&mut self.held));
                break;
            };
            out.push_str(&self.held[..at]);
            self.held.drain(..at);
            match TAGS.iter().find(|(open, _)| self.held.starts_with(open)) {
                Some((open, close)) => match self.held[open.len()..].find(close) {
                    Some(end) => {
                        let block: String = self.held.drain(..open.len() + end + close.len()).collect();
                        self.strip(&block);
                    }
                    None if last => {
                        let block = std::mem::take(&mut self.held);
                        self.strip(&block);
                        break;
                    }
                    None => break,
                },
                // could still become an opening tag: wait for more text
                None if !last && TAGS.iter().any(|(open, _)| open.starts_with(self.held.as_str())) => break,
                None => {
                    let c = self.held.remove(0);
                    out.push(c);
                }
            }
        }
        if out.chars().any(|c| !c.is_whitespace()) {
            self.started = true;
        }
        out
    }

    fn strip(&mut self, block: &str) {
        self.stripped += 1;
        let parsed = parse_block(block);
        if parsed.is_empty() {
            self.unparsed += 1;
            tracing::warn!(markup = %block.chars().take(200).collect::<String>(), "stripped tool-call markup the tutor could not parse");
        }
        self.calls.extend(parsed);
    }
}

/// The tool calls a reply begins with (JSON objects or lists of them, one after another, in a
/// code fence or not), and the text after them.
fn leading_json_calls(text: &str) -> (Vec<TextCall>, &str) {
    let t = text.trim_start();
    let fenced = t.strip_prefix("```json").or_else(|| t.strip_prefix("```"));
    let body = fenced.unwrap_or(t);
    let mut calls = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(body).into_iter::<Value>();
    let mut end = 0;
    while let Some(Ok(v)) = stream.next() {
        let items = match v {
            Value::Array(a) => a,
            other => vec![other],
        };
        let parsed: Option<Vec<TextCall>> = items.iter().map(one_call).collect();
        match parsed {
            Some(p) if !p.is_empty() => calls.extend(p),
            _ => break,
        }
        end = stream.byte_offset();
    }
    if calls.is_empty() {
        return (calls, text);
    }
    let mut rest = body[end..].trim_start();
    if fenced.is_some() {
        rest = rest.strip_prefix("```").unwrap_or(rest);
    }
    (calls, rest)
}

/// Whether text still reads as a tool call in JSON.
fn looks_like_a_call(text: &str) -> bool {
    let t = text.trim_start().trim_start_matches("```json").trim_start_matches("```").trim_start();
    (t.starts_with('{') || t.starts_with('['))
        && t.contains("\"name\"")
        && (t.contains("\"arguments\"") || t.contains("\"parameters\""))
}

/// The calls in one markup block.
fn parse_block(block: &str) -> Vec<TextCall> {
    // the JSON between the block's tags
    let inner = TAGS
        .iter()
        .find(|(open, _)| block.starts_with(open))
        .map_or(block, |(open, close)| block[open.len()..].trim_end().trim_end_matches(close));
    if let Some(calls) = parse_json_calls(inner_json(inner)) {
        return calls;
    }
    // <function name="x" arguments='{…}'/> or <function name="x" skill="…" level="…"/>
    let mut out = Vec::new();
    for tag in block.split("<function").skip(1) {
        let head = tag.split(['>']).next().unwrap_or_default();
        let attrs = attributes(head.trim_end_matches('/'));
        let Some(name) = attrs.iter().find(|(k, _)| k == "name").map(|(_, v)| v.clone()) else { continue };
        let body = tag.split_once('>').map(|(_, b)| b.split("</function>").next().unwrap_or_default()).unwrap_or("");
        let arguments = match attrs.iter().find(|(k, _)| k == "arguments" || k == "args") {
            Some((_, v)) => v.clone(),
            None if body.trim().starts_with('{') => body.trim().to_owned(),
            None => {
                let map: serde_json::Map<String, Value> = attrs
                    .iter()
                    .filter(|(k, _)| k != "name")
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                Value::Object(map).to_string()
            }
        };
        out.push(TextCall { name, arguments });
    }
    out
}

/// The JSON inside a block's tags.
fn inner_json(block: &str) -> &str {
    let start = block.find(['{', '[']).unwrap_or(block.len());
    let end = block.rfind(['}', ']']).map_or(block.len(), |e| e + 1);
    if start < end { &block[start..end] } else { "" }
}

/// `{"name": …, "arguments": …}` (or `parameters`, or `{"function": {…}}`), or a list of
/// them; `None` when the text is not tool calls.
fn parse_json_calls(text: &str) -> Option<Vec<TextCall>> {
    let t = text.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
    let v: Value = serde_json::from_str(t).ok()?;
    let items = match v {
        Value::Array(a) => a,
        other => vec![other],
    };
    let calls: Option<Vec<TextCall>> = items.iter().map(one_call).collect();
    calls.filter(|c| !c.is_empty())
}

fn one_call(v: &Value) -> Option<TextCall> {
    let v = v.get("function").filter(|f| f.is_object()).unwrap_or(v);
    let name = v.get("name")?.as_str()?.to_owned();
    let args = v.get("arguments").or_else(|| v.get("parameters")).cloned().unwrap_or(Value::Object(Default::default()));
    let arguments = match args {
        Value::String(s) => s,
        other => other.to_string(),
    };
    Some(TextCall { name, arguments })
}

/// `key="value"` and `key='value'` pairs of a tag.
fn attributes(head: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = head;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().rsplit(char::is_whitespace).next().unwrap_or_default().to_owned();
        let after = rest[eq + 1..].trim_start();
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else { break };
        let Some(end) = after[1..].find(quote) else { break };
        out.push((key, after[1..1 + end].to_owned()));
        rest = &after[end + 2..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&str]) -> (String, Filtered) {
        let mut f = MarkupFilter::default();
        let mut shown = String::new();
        for p in pieces {
            shown.push_str(&f.push(p));
        }
        let done = f.finish();
        shown.push_str(&done.text);
        (shown, done)
    }

    #[test]
    fn hermes_tool_calls_split_across_deltas_are_parsed_and_never_shown() {
        let (shown, done) = run(&[
            "Let me look. <tool",
            "_call>\n{\"name\": \"retrieve_components\", \"arguments\": {\"query\": \"div",
            "ide\"}}\n</tool_call> Done.",
        ]);
        assert_eq!(shown, "Let me look.  Done.");
        assert_eq!(
            done.calls,
            vec![TextCall { name: "retrieve_components".into(), arguments: r#"{"query":"divide"}"#.into() }]
        );
    }

    #[test]
    fn function_tags_with_attributes_become_calls() {
        let (shown, done) = run(&[
            r#"<tools><function name="render_format" skill="fractions.divide" level="intro" format="scenario"/></tools>"#,
        ]);
        assert_eq!(shown, "");
        assert_eq!(done.calls.len(), 1);
        assert_eq!(done.calls[0].name, "render_format");
        let args: Value = serde_json::from_str(&done.calls[0].arguments).unwrap();
        assert_eq!(args["level"], "intro");
    }

    #[test]
    fn a_reply_that_is_a_json_call_is_a_call_and_ordinary_text_passes() {
        let (shown, done) = run(&["{\"name\": \"lookup_mastery\", ", "\"arguments\": {}}"]);
        assert_eq!((shown.as_str(), done.calls.len()), ("", 1));
        let (shown, done) = run(&["{\"note\": 1} is just JSON"]);
        assert_eq!((shown.as_str(), done.calls.len()), ("{\"note\": 1} is just JSON", 0));
        // two calls, and a call then text
        let (shown, done) = run(&[
            "{\"name\": \"lookup_mastery\", \"arguments\": {}}\n{\"name\": \"retrieve_components\", \"arguments\": {\"query\": \"x\"}}",
        ]);
        assert_eq!((shown.as_str(), done.calls.len()), ("", 2));
        let (shown, done) = run(&["```json\n{\"name\": \"lookup_mastery\", \"arguments\": {}}\n```\nLet me check."]);
        assert_eq!((shown.trim(), done.calls.len()), ("Let me check.", 1));
        // a call that does not parse is still not shown
        let (shown, done) = run(&["{\"name\": \"lookup_mastery\", \"arguments\": {oops}}"]);
        assert_eq!((shown.as_str(), done.calls.len(), done.unparsed), ("", 0, 1));
        // Mistral's format
        let (shown, done) = run(&["[TOOL_CALLS] [{\"name\": \"lookup_mastery\", \"arguments\": {}}]\n\nThen text."]);
        assert_eq!((shown.as_str(), done.calls.len()), ("Then text.", 1));
        let (shown, _) = run(&["3 < 4 and [fractions-divide-", "explain-intro] say so; a <b> tag stays"]);
        assert_eq!(shown, "3 < 4 and [fractions-divide-explain-intro] say so; a <b> tag stays");
    }

    #[test]
    fn unterminated_or_unparseable_markup_is_stripped() {
        let (shown, done) = run(&["Answer first. <tool_call>{\"oops\": "]);
        assert_eq!((shown.as_str(), done.calls.len(), done.stripped, done.unparsed), ("Answer first. ", 0, 1, 1));
    }
}
