//! Text from a fetched document: `text/plain` and `text/markdown` as they are, `text/html` reduced
//! to its readable text. Hand-written rather than a full HTML parser (html5ever and its tree would
//! be the largest dependency of the workspace for this one use): the text only feeds the
//! full-text index and tool answers as data — it is never rendered as HTML — so a lossy reading
//! of malformed markup costs a worse snippet, never a vulnerability. Scripts, styles and comments
//! are dropped, block elements become line breaks, character references are decoded.

/// What a document's `Content-Type` says it is, if it is one we take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    Plain,
    Markdown,
    Html,
}

/// The kind of a `Content-Type` value (parameters ignored), or `None` for any other type.
pub fn kind_of(content_type: &str) -> Option<TextKind> {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "text/plain" => Some(TextKind::Plain),
        "text/markdown" | "text/x-markdown" => Some(TextKind::Markdown),
        "text/html" => Some(TextKind::Html),
        _ => None,
    }
}

/// The text of a body of `kind`, and a title when the document names one (HTML `<title>`).
pub fn text_of(kind: TextKind, body: &[u8]) -> (String, Option<String>) {
    let raw = String::from_utf8_lossy(body);
    match kind {
        TextKind::Plain | TextKind::Markdown => (raw.replace("\r\n", "\n"), None),
        TextKind::Html => html_to_text(&raw),
    }
}

/// Elements whose content is not text a reader sees.
const SKIPPED: &[&str] = &["script", "style", "noscript", "template", "svg", "head", "iframe", "object"];
/// Elements that start a new line.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "main",
    "pre",
    "blockquote",
    "hr",
    "dt",
    "dd",
    "dl",
    "figure",
    "figcaption",
    "form",
    "td",
    "th",
    "title",
];

/// Readable text and `<title>` of an HTML document.
pub fn html_to_text(html: &str) -> (String, Option<String>) {
    let mut out = String::with_capacity(html.len() / 2);
    // The title lives in `<head>`, which is skipped as text.
    let title = find_ci(html, "<title").and_then(|start| {
        let after = &html[start..];
        let open = after.find('>')? + 1;
        let end = find_ci(&after[open..], "</title").unwrap_or(after.len() - open);
        Some(collapse(&decode_entities(&after[open..open + end]))).filter(|t| !t.is_empty())
    });
    let mut rest = html;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            out.push_str(&decode_entities(rest));
            break;
        };
        out.push_str(&decode_entities(&rest[..lt]));
        rest = &rest[lt..];
        // A `<` not followed by a tag name, `/` or `!` is text (`3 < 4`).
        if !rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!') {
            out.push('<');
            rest = &rest[1..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else {
            // A `<` that opens no tag is text.
            out.push_str(&decode_entities(rest));
            break;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        if !closing && SKIPPED.contains(&name.as_str()) && !tag.ends_with('/') {
            // Everything up to the matching end tag goes (scripts hold `<` freely).
            let close = format!("</{name}");
            rest = match find_ci(rest, &close) {
                Some(i) => rest[i..].find('>').map_or("", |g| &rest[i + g + 1..]),
                None => "",
            };
            continue;
        }
        if BLOCKS.contains(&name.as_str()) {
            out.push('\n');
        } else {
            out.push(' ');
        }
    }
    (tidy(&out), title)
}

/// Case-insensitive find of an ASCII needle.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// Spaces collapsed within lines, lines trimmed, empty lines dropped.
fn tidy(text: &str) -> String {
    text.lines().map(collapse).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decodes the character references that matter for text: numeric ones and the common named ones
/// (others are left as written).
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest.char_indices().take(12).find(|&(_, c)| c == ';').map(|(i, _)| i);
        let decoded = end.and_then(|e| {
            let body = &rest[1..e];
            let c = match body {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                "mdash" => Some('—'),
                "ndash" => Some('–'),
                "hellip" => Some('…'),
                "copy" => Some('©'),
                _ => body
                    .strip_prefix("#x")
                    .or_else(|| body.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| body.strip_prefix('#').and_then(|d| d.parse::<u32>().ok()))
                    .and_then(char::from_u32)
                    .filter(|c| !c.is_control() || c.is_whitespace()),
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_its_readable_text() {
        let html = "<!doctype html><html><head><title>The &amp; Title</title><style>p{color:red}</style>\
            <script>if (a < b) { alert('<p>no</p>') }</script></head><body><h1>Heading</h1>\
            <p>First&nbsp;para with <b>bold</b> and &#x41;&#66;.</p><!-- hidden --><ul><li>one</li><li>two</li></ul>\
            <SCRIPT type=x>gone()</SCRIPT>tail &unknown; 3 < 4</body></html>";
        let (text, title) = html_to_text(html);
        assert_eq!(title.as_deref(), Some("The & Title"));
        assert_eq!(text, "Heading\nFirst para with bold and AB.\none\ntwo\ntail &unknown; 3 < 4");
        assert!(!text.contains("alert") && !text.contains("color") && !text.contains("hidden"));
    }

    #[test]
    fn only_text_types_are_taken() {
        assert_eq!(kind_of("text/html; charset=utf-8"), Some(TextKind::Html));
        assert_eq!(kind_of("Text/Markdown"), Some(TextKind::Markdown));
        assert_eq!(kind_of("text/plain"), Some(TextKind::Plain));
        for t in ["application/json", "image/png", "application/octet-stream", ""] {
            assert_eq!(kind_of(t), None, "{t}");
        }
    }
}
