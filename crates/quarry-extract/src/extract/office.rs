//! Office formats: DOCX, PPTX and ODT are zips of XML, read with zip + quick-xml
//! under a decompression cap (so a zip bomb is refused, not inflated);
//! spreadsheets go through calamine.

use std::io::{Cursor, Read};
use std::path::Path;

use quick_xml::events::Event;

use super::{Block, ExtractError, ExtractLimits, Extracted};

fn open_zip<'a>(
    bytes: &'a [u8],
    format: &'static str,
) -> Result<zip::ZipArchive<Cursor<&'a [u8]>>, ExtractError> {
    zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
        let reason = e.to_string();
        if reason.contains("ncrypt") || reason.contains("assword") {
            ExtractError::Encrypted(format)
        } else {
            ExtractError::Corrupt { format, reason }
        }
    })
}

/// Read one member, refusing to inflate more than the limit.
fn read_member(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    format: &'static str,
    limits: &ExtractLimits,
) -> Result<Option<String>, ExtractError> {
    let entry = match zip.by_name(name) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => {
            return Err(ExtractError::Corrupt {
                format,
                reason: e.to_string(),
            })
        }
    };
    let mut buf = Vec::new();
    entry
        .take(limits.max_inflated_bytes + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ExtractError::Corrupt {
            format,
            reason: format!("{name}: {e}"),
        })?;
    if buf.len() as u64 > limits.max_inflated_bytes {
        return Err(ExtractError::TooLarge(format!(
            "{name} inflates past {} MiB (zip bomb?)",
            limits.max_inflated_bytes >> 20
        )));
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// How an XML vocabulary marks paragraphs, headings and text.
struct Vocabulary {
    /// Local names of paragraph elements.
    paragraph: &'static [&'static str],
    /// Local names of elements whose text is content.
    text: &'static [&'static str],
    /// Local names that mean a line break or tab inside a paragraph.
    breaks: &'static [&'static str],
    /// Local names of heading paragraphs (ODT's `text:h`).
    heading_elements: &'static [&'static str],
}

const DOCX: Vocabulary = Vocabulary {
    paragraph: &["p"],
    text: &["t"],
    breaks: &["br", "tab", "cr"],
    heading_elements: &[],
};
const PPTX: Vocabulary = Vocabulary {
    paragraph: &["p"],
    text: &["t"],
    breaks: &["br"],
    heading_elements: &[],
};
const ODT: Vocabulary = Vocabulary {
    paragraph: &["p", "h"],
    text: &["p", "h", "span", "a"],
    breaks: &["line-break", "tab", "s"],
    heading_elements: &["h"],
};

/// Paragraphs of an XML part: (text, is_heading).
fn paragraphs(
    xml: &str,
    vocab: &Vocabulary,
    format: &'static str,
) -> Result<Vec<(String, bool)>, ExtractError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut heading = false;
    let mut text_depth = 0usize;
    let corrupt = |e: &dyn std::fmt::Display| ExtractError::Corrupt {
        format,
        reason: e.to_string(),
    };
    loop {
        match reader.read_event().map_err(|e| corrupt(&e))? {
            Event::Start(e) => {
                let name = e.local_name();
                let name = std::str::from_utf8(name.as_ref()).unwrap_or("");
                if vocab.text.contains(&name) {
                    text_depth += 1;
                }
                if vocab.heading_elements.contains(&name) {
                    heading = true;
                }
                if name == "pStyle" {
                    heading |= is_heading_style(&e);
                }
            }
            Event::Empty(e) => {
                let name = e.local_name();
                let name = std::str::from_utf8(name.as_ref()).unwrap_or("");
                if vocab.breaks.contains(&name) {
                    cur.push(if name == "tab" {
                        '\t'
                    } else if name == "s" {
                        ' '
                    } else {
                        '\n'
                    });
                } else if name == "pStyle" {
                    heading |= is_heading_style(&e);
                }
            }
            Event::End(e) => {
                let name = e.local_name();
                let name = std::str::from_utf8(name.as_ref()).unwrap_or("");
                if vocab.text.contains(&name) {
                    text_depth = text_depth.saturating_sub(1);
                }
                if vocab.paragraph.contains(&name) {
                    let t = cur.trim().to_string();
                    if !t.is_empty() {
                        out.push((t, heading));
                    }
                    cur.clear();
                    heading = false;
                }
            }
            Event::Text(t) if text_depth > 0 => {
                cur.push_str(&t.decode().map_err(|e| corrupt(&e))?);
            }
            Event::GeneralRef(r) if text_depth > 0 => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    cur.push(c);
                } else {
                    let name = r.decode().map_err(|e| corrupt(&e))?;
                    if let Some(s) = quick_xml::escape::resolve_predefined_entity(&name) {
                        cur.push_str(s);
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

fn is_heading_style(e: &quick_xml::events::BytesStart<'_>) -> bool {
    e.attributes().flatten().any(|a| {
        a.key.local_name().as_ref() == b"val" && {
            let v = String::from_utf8_lossy(&a.value).to_lowercase();
            v.starts_with("heading") || v == "title"
        }
    })
}

/// Group paragraphs into blocks that start at headings.
fn blocks_from_paragraphs(paras: Vec<(String, bool)>, page: Option<u32>, blocks: &mut Vec<Block>) {
    let mut heading: Option<String> = None;
    let mut cur = String::new();
    for (text, is_heading) in paras {
        if is_heading {
            if !cur.trim().is_empty() {
                blocks.push(Block {
                    text: std::mem::take(&mut cur),
                    page,
                    heading: heading.clone(),
                });
            }
            cur.clear();
            heading = Some(text.clone());
        }
        cur.push_str(&text);
        cur.push_str("\n\n");
    }
    if !cur.trim().is_empty() {
        blocks.push(Block {
            text: cur,
            page,
            heading,
        });
    }
}

pub(super) fn docx(bytes: &[u8], limits: &ExtractLimits) -> Result<Extracted, ExtractError> {
    single_document(bytes, limits, "DOCX", "word/document.xml", &DOCX)
}

pub(super) fn pptx(bytes: &[u8], limits: &ExtractLimits) -> Result<Extracted, ExtractError> {
    let mut zip = open_zip(bytes, "PPTX")?;
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.to_string()))
        .collect();
    let mut slides: Vec<(u32, String)> = names
        .iter()
        .filter_map(|n| {
            let num = n.strip_prefix("ppt/slides/slide")?.strip_suffix(".xml")?;
            Some((num.parse().ok()?, n.to_string()))
        })
        .collect();
    slides.sort();
    let mut blocks = Vec::new();
    for (num, name) in slides {
        let name: String = name;
        if let Some(xml) = read_member(&mut zip, &name, "PPTX", limits)? {
            let mut paras = paragraphs(&xml, &PPTX, "PPTX")?;
            // The first paragraph of a slide is its title.
            if let Some(first) = paras.first_mut() {
                first.1 = true;
            }
            blocks_from_paragraphs(paras, Some(num), &mut blocks);
        }
    }
    Ok(Extracted {
        scanned: Vec::new(),
        truncated: false,
        blocks,
        title: None,
    })
}

pub(super) fn odt(bytes: &[u8], limits: &ExtractLimits) -> Result<Extracted, ExtractError> {
    single_document(bytes, limits, "ODT", "content.xml", &ODT)
}

/// A zipped word-processing document whose text is one XML member: its
/// paragraphs, the first heading as the title.
fn single_document(
    bytes: &[u8],
    limits: &ExtractLimits,
    format: &'static str,
    member: &str,
    tags: &Vocabulary,
) -> Result<Extracted, ExtractError> {
    let mut zip = open_zip(bytes, format)?;
    let xml =
        read_member(&mut zip, member, format, limits)?.ok_or_else(|| ExtractError::Corrupt {
            format,
            reason: format!("no {member}"),
        })?;
    let paras = paragraphs(&xml, tags, format)?;
    let title = paras.iter().find(|(_, h)| *h).map(|(t, _)| t.clone());
    let mut blocks = Vec::new();
    blocks_from_paragraphs(paras, None, &mut blocks);
    Ok(Extracted {
        scanned: Vec::new(),
        blocks,
        title,
        truncated: false,
    })
}

/// Spreadsheets: each sheet is a page whose heading is the sheet's name; rows
/// become `header: value` lines like CSV.
pub(super) fn sheet(bytes: &[u8], _path: &Path) -> Result<Extracted, ExtractError> {
    use calamine::Reader;
    let mut book =
        calamine::open_workbook_auto_from_rs(Cursor::new(bytes.to_vec())).map_err(|e| {
            let reason = e.to_string();
            if reason.to_lowercase().contains("password")
                || reason.to_lowercase().contains("encrypt")
            {
                ExtractError::Encrypted("spreadsheet")
            } else {
                ExtractError::Corrupt {
                    format: "spreadsheet",
                    reason,
                }
            }
        })?;
    let mut blocks = Vec::new();
    for (i, name) in book.sheet_names().to_vec().into_iter().enumerate() {
        let Ok(range) = book.worksheet_range(&name) else {
            continue;
        };
        let mut rows = range.rows();
        let header: Vec<String> = rows
            .next()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default();
        let mut text = format!("{}\n", header.join(" | "));
        for row in rows {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.to_string().is_empty())
                .map(|(j, c)| match header.get(j) {
                    Some(h) if !h.is_empty() => format!("{h}: {c}"),
                    _ => c.to_string(),
                })
                .collect();
            if !cells.is_empty() {
                text.push_str(&cells.join("; "));
                text.push('\n');
            }
        }
        blocks.push(Block {
            text,
            page: Some(i as u32 + 1),
            heading: Some(name),
        });
    }
    Ok(Extracted {
        scanned: Vec::new(),
        truncated: false,
        blocks,
        title: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_with(files: &[(&str, &str)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, body) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(body.as_bytes()).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn docx_paragraphs_and_headings() {
        let xml = r#"<w:document xmlns:w="x"><w:body>
            <w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Scope</w:t></w:r></w:p>
            <w:p><w:r><w:t>Fish &amp; chips</w:t></w:r><w:r><w:tab/><w:t>tab</w:t></w:r></w:p>
            </w:body></w:document>"#;
        let bytes = zip_with(&[("word/document.xml", xml)]);
        let e = docx(&bytes, &ExtractLimits::default()).unwrap();
        assert_eq!(e.blocks.len(), 1);
        assert_eq!(e.blocks[0].heading.as_deref(), Some("Scope"));
        assert!(e.blocks[0].text.contains("Fish & chips\ttab"));
    }

    #[test]
    fn zip_bomb_is_refused() {
        let big = "a".repeat(2 << 20);
        let bytes = zip_with(&[("word/document.xml", &big)]);
        let limits = ExtractLimits {
            max_inflated_bytes: 1 << 20,
            ..Default::default()
        };
        assert!(matches!(
            docx(&bytes, &limits),
            Err(ExtractError::TooLarge(_))
        ));
    }

    #[test]
    fn not_a_zip_is_corrupt() {
        assert!(matches!(
            docx(b"nope", &ExtractLimits::default()),
            Err(ExtractError::Corrupt { .. })
        ));
    }
}
