//! HTML to text, keeping headings (html2text renders them as `#` lines).

use super::{blocks_from_markdown, decode_text, ExtractError, Extracted};

pub(super) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let html = decode_text(bytes)?;
    let title = find_title(&html);
    let text = html2text::config::plain()
        .string_from_read(html.as_bytes(), 10_000)
        .map_err(|e| ExtractError::Corrupt {
            format: "HTML",
            reason: e.to_string(),
        })?;
    let blocks = blocks_from_markdown(&text, None);
    Ok(Extracted {
        scanned: Vec::new(),
        blocks,
        title,
        truncated: false,
    })
}

fn find_title(html: &str) -> Option<String> {
    let lower = html.get(..html.len().min(65536))?.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let open_end = lower[start..].find('>')? + start + 1;
    let end = lower[open_end..].find("</title")? + open_end;
    let t = html.get(open_end..end)?.trim();
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_and_title() {
        let e = extract(b"<html><head><title>T</title><script>var x=1;</script></head><body><h1>Alpha</h1><p>first para</p><h2>Beta</h2><p>second</p></body></html>").unwrap();
        assert_eq!(e.title.as_deref(), Some("T"));
        let all: String = e.blocks.iter().map(|b| b.text.clone()).collect();
        assert!(all.contains("first para"));
        assert!(!all.contains("var x"));
        assert!(e
            .blocks
            .iter()
            .any(|b| b.heading.as_deref() == Some("Beta") && b.text.contains("second")));
    }
}
