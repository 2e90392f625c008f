//! Plain text, Markdown, CSV and JSON.

use std::path::Path;

use super::{blocks_from_markdown, Block, ExtractError, Extracted};

/// True when the bytes look like binary data rather than text: a NUL byte, or
/// many control characters, in the first 8 KiB (UTF-16 with a BOM is text).
pub fn looks_binary(bytes: &[u8]) -> bool {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return false;
    }
    let head = &bytes[..bytes.len().min(8192)];
    if head.contains(&0) {
        return true;
    }
    let control = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0C | 0x1B))
        .count();
    control * 20 > head.len().max(1)
}

/// Decode text: UTF-8 (with or without BOM), UTF-16 LE/BE with BOM; invalid
/// UTF-8 is decoded lossily unless so much of it is invalid that it is binary.
pub fn decode_text(bytes: &[u8]) -> Result<String, ExtractError> {
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return Ok(String::from_utf8_lossy(rest).into_owned());
    }
    let utf16 = |rest: &[u8], le: bool| {
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| {
                if le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return Ok(utf16(rest, true));
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return Ok(utf16(rest, false));
    }
    if looks_binary(bytes) {
        return Err(ExtractError::Binary);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => {
            let s = String::from_utf8_lossy(bytes);
            let bad = s
                .chars()
                .filter(|&c| c == char::REPLACEMENT_CHARACTER)
                .count();
            if bad * 10 > s.chars().count().max(1) {
                Err(ExtractError::Binary)
            } else {
                Ok(s.into_owned())
            }
        }
    }
}

pub(super) fn plain(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    Ok(one_block(decode_text(bytes)?))
}

/// A document that is one block of text, without pages, headings or title.
fn one_block(text: String) -> Extracted {
    Extracted {
        scanned: Vec::new(),
        truncated: false,
        blocks: vec![Block {
            text,
            page: None,
            heading: None,
        }],
        title: None,
    }
}

pub(super) fn markdown(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let text = decode_text(bytes)?;
    let blocks = blocks_from_markdown(&text, None);
    let title = blocks.iter().find_map(|b| b.heading.clone());
    Ok(Extracted {
        scanned: Vec::new(),
        blocks,
        title,
        truncated: false,
    })
}

/// CSV/TSV: one line per record, `header: value` pairs so each row is
/// self-describing when it lands in a chunk of its own.
pub(super) fn csv(bytes: &[u8], path: &Path) -> Result<Extracted, ExtractError> {
    let text = decode_text(bytes)?;
    let tsv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
    let sep = if tsv { '\t' } else { ',' };
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .map(|h| split_record(h, sep))
        .unwrap_or_default();
    let mut out = String::new();
    out.push_str(&header.join(" | "));
    out.push('\n');
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields = split_record(line, sep);
        let row: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| match header.get(i) {
                Some(h) if !h.is_empty() => format!("{h}: {f}"),
                _ => f.clone(),
            })
            .collect();
        out.push_str(&row.join("; "));
        out.push('\n');
    }
    Ok(Extracted {
        scanned: Vec::new(),
        truncated: false,
        blocks: vec![Block {
            text: out,
            page: None,
            heading: None,
        }],
        title: None,
    })
}

/// Split one CSV record, honouring double quotes (records spanning lines are
/// kept as separate lines: good enough for search).
fn split_record(line: &str, sep: char) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            c if c == sep && !quoted => fields.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    fields.push(cur.trim().to_string());
    fields
}

/// JSON: pretty-printed so keys and values are separate words; JSON Lines and
/// invalid JSON fall back to the raw text.
pub(super) fn json(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let text = decode_text(bytes)?;
    let text = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or(text),
        Err(_) => text,
    };
    Ok(one_block(text))
}

/// RTF: the text runs of the document (rtf-parser), paragraphs kept.
pub(super) fn rtf(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let source = String::from_utf8_lossy(bytes);
    if !source.trim_start().starts_with("{\\rtf") {
        return Err(ExtractError::Corrupt {
            format: "RTF",
            reason: "no {\\rtf header".into(),
        });
    }
    let doc =
        rtf_parser::RtfDocument::try_from(source.as_ref()).map_err(|e| ExtractError::Corrupt {
            format: "RTF",
            reason: e.to_string(),
        })?;
    Ok(Extracted {
        scanned: Vec::new(),
        truncated: false,
        blocks: vec![Block {
            text: doc.get_text(),
            page: None,
            heading: None,
        }],
        title: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_with_bom_decodes() {
        let mut b = vec![0xFF, 0xFE];
        for u in "héllo".encode_utf16() {
            b.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(decode_text(&b).unwrap(), "héllo");
    }

    #[test]
    fn binary_is_detected() {
        assert_eq!(decode_text(b"abc\0\x01\x02"), Err(ExtractError::Binary));
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i * 7919 % 251) as u8 | 0x80)
            .collect();
        assert_eq!(decode_text(&noise), Err(ExtractError::Binary));
    }

    #[test]
    fn mostly_valid_utf8_is_kept() {
        let s = decode_text(b"caf\xe9 au lait and a long sentence of text").unwrap();
        assert!(s.contains("au lait"));
    }

    #[test]
    fn rtf_text_is_extracted() {
        let e = rtf(br"{\rtf1\ansi{\fonttbl\f0\fswiss Helvetica;}\f0\pard Quarterly {\b Zanzibar} report.\par}").unwrap();
        assert!(e.blocks[0].text.contains("Zanzibar"), "{:?}", e.blocks);
        assert!(rtf(b"plain").is_err());
    }

    #[test]
    fn csv_rows_carry_headers() {
        let e = csv(b"name,city\n\"Smith, J\",Oslo\n", Path::new("a.csv")).unwrap();
        assert!(e.blocks[0].text.contains("name: Smith, J; city: Oslo"));
    }
}
