//! The library as MCP resources: each indexed document is
//! `quarry://document/<its absolute path, percent-encoded>` and each passage
//! `quarry://passage/<id>` (the `id` of a search hit), so a client can list
//! the documents and attach a cited passage to a conversation. Only
//! documents indexed in the library's folders can be read.

use std::path::{Path, PathBuf};

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use quarry_app::calls::{self, DocumentQuery};
use quarry_app::Engine;
use quarry_core::store::{DocState, Hit};
use rmcp::model::{
    ErrorData, ListResourcesResult, ReadResourceResult, Resource, ResourceContents,
    ResourceTemplate,
};

use crate::{Failure, Served};

const DOCUMENT: &str = "quarry://document";
const PASSAGE: &str = "quarry://passage/";

/// Documents listed per page of `resources/list`.
const PAGE: usize = 200;

/// The most characters of a document one read returns.
pub const MAX_DOCUMENT_CHARS: usize = 100_000;

/// What a path component may not carry unencoded (`/` stays: it separates).
const ENCODED: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b':');

/// The URI of the document at `path`.
pub fn document_uri(path: &str) -> String {
    let sep = if path.starts_with('/') { "" } else { "/" };
    format!("{DOCUMENT}{sep}{}", utf8_percent_encode(path, ENCODED))
}

/// The URI of the passage `id`.
pub fn passage_uri(id: &str) -> String {
    format!("{PASSAGE}{id}")
}

/// What a `quarry://` URI names.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// A document, by absolute path.
    Document(PathBuf),
    /// A passage, by id.
    Passage(String),
}

/// The document or passage `uri` names, or why it names neither.
pub fn parse(uri: &str) -> Result<Target, Failure> {
    if let Some(id) = uri.strip_prefix(PASSAGE) {
        if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(Target::Passage(id.to_string()));
        }
    } else if let Some(rest) = uri.strip_prefix(DOCUMENT).filter(|r| r.starts_with('/')) {
        let decoded = percent_decode_str(rest)
            .decode_utf8()
            .map_err(|_| Failure::Failed(format!("{uri} is not valid UTF-8 once decoded")))?;
        // On Windows `quarry://document/C:\…` names `C:\…`: drop the separator.
        let path = match decoded.strip_prefix('/') {
            Some(p) if cfg!(windows) => p.to_string(),
            _ => decoded.into_owned(),
        };
        return Ok(Target::Document(PathBuf::from(path)));
    }
    Err(Failure::Failed(format!(
        "{uri} is not a Quarry resource (quarry://document/PATH or quarry://passage/ID)"
    )))
}

/// The templates a client can fill in.
pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(format!("{DOCUMENT}/{{path}}"), "document")
            .with_title("A document of the library")
            .with_description(
                "The text of an indexed document, by its absolute path (percent-encoded)",
            )
            .with_mime_type("text/plain"),
        ResourceTemplate::new(format!("{PASSAGE}{{id}}"), "passage")
            .with_title("A passage of the library")
            .with_description("One passage, by the id a search hit or a citation gives")
            .with_mime_type("text/plain"),
    ]
}

/// One page of the library's indexed documents, from `cursor` (an offset).
pub async fn list(
    engine: &Engine,
    cursor: Option<String>,
) -> Result<Served<ListResourcesResult>, Failure> {
    let start = match cursor.as_deref() {
        None => 0,
        Some(c) => c
            .parse::<usize>()
            .map_err(|_| Failure::Failed(format!("'{c}' is not a cursor this server gave")))?,
    };
    let mut docs = engine.library().documents().await?;
    docs.retain(|d| d.state == DocState::Indexed);
    docs.sort_by(|a, b| a.path.cmp(&b.path));
    let page: Vec<Resource> = docs
        .iter()
        .skip(start)
        .take(PAGE)
        .map(|d| {
            let name = Path::new(&d.path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| d.path.clone());
            Resource::new(document_uri(&d.path), name)
                .with_description(d.path.clone())
                .with_mime_type("text/plain")
                .with_size(d.text_chars)
        })
        .collect();
    let mut result = ListResourcesResult::with_all_items(page);
    if start + PAGE < docs.len() {
        result.next_cursor = Some((start + PAGE).to_string());
    }
    let bytes = serde_json::to_string(&result).map(|s| s.len()).unwrap_or(0);
    Ok(Served {
        value: result,
        bytes,
        documents: Vec::new(),
    })
}

/// The contents `uri` names.
pub async fn read(engine: &Engine, uri: &str) -> Result<Served<ReadResourceResult>, Failure> {
    let (text, path) = match parse(uri)? {
        Target::Document(path) => {
            let doc = document_text(engine, &path).await?;
            let shown: String = doc.text.chars().take(MAX_DOCUMENT_CHARS).collect();
            let left = doc.chars - shown.chars().count();
            let text = if left > 0 {
                format!("{shown}\n\n[… {left} more characters: read them with the read_document tool and an offset]")
            } else {
                shown
            };
            (text, doc.path)
        }
        Target::Passage(id) => {
            let p = passage(engine, &id).await?;
            (p.hit.text, p.hit.path)
        }
    };
    let bytes = text.len();
    Ok(Served {
        value: ReadResourceResult::new(vec![ResourceContents::text(text, uri)]),
        bytes,
        documents: vec![path],
    })
}

/// A failure as the protocol error a resource request answers with.
pub fn protocol_error(f: Failure) -> ErrorData {
    match f {
        Failure::Refused(why) => ErrorData::invalid_request(format!("refused: {why}"), None),
        Failure::Failed(why) => ErrorData::resource_not_found(why, None),
    }
}

/// A document's text, pages marked, as an agent reads it.
pub struct DocumentText {
    /// The document's absolute path.
    pub path: String,
    /// Its title, when it has one.
    pub title: Option<String>,
    /// The text: blocks separated by blank lines, `[page N]` where a page starts.
    pub text: String,
    /// Characters in `text`.
    pub chars: usize,
}

/// The text of the indexed document at `path` (refused outside the library).
pub async fn document_text(engine: &Engine, path: &Path) -> Result<DocumentText, Failure> {
    let view = calls::document(
        engine,
        DocumentQuery {
            path: path.to_path_buf(),
        },
    )
    .await?;
    let mut text = String::new();
    let mut page = None;
    for block in &view.blocks {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        if block.page.is_some() && block.page != page {
            page = block.page;
            text.push_str(&format!("[page {}]\n", block.page.unwrap_or_default()));
        }
        text.push_str(&block.text);
    }
    Ok(DocumentText {
        path: view.path.to_string_lossy().into_owned(),
        title: view.title,
        chars: text.chars().count(),
        text,
    })
}

/// A passage, where it sits in its document, and its neighbours.
pub struct Passage {
    /// The passage as indexed.
    pub hit: Hit,
    /// Its number in the document, from 1.
    pub number: usize,
    /// Passages in the document.
    pub of: usize,
    /// The passage before it.
    pub previous: Option<String>,
    /// The passage after it.
    pub next: Option<String>,
}

/// The passage `id`, when its document is still indexed in the library.
pub async fn passage(engine: &Engine, id: &str) -> Result<Passage, Failure> {
    let lib = engine.library();
    let hit = lib
        .passage(id)?
        .ok_or_else(|| Failure::Failed(format!("no passage '{id}' in this library")))?;
    calls::library_document(engine, Path::new(&hit.path)).await?;
    let all = lib.passages_of(&hit.path)?;
    let at = all
        .iter()
        .position(|h| h.chunk_id == hit.chunk_id)
        .unwrap_or(0);
    Ok(Passage {
        number: at + 1,
        of: all.len(),
        previous: at.checked_sub(1).map(|i| all[i].chunk_id.clone()),
        next: all.get(at + 1).map(|h| h.chunk_id.clone()),
        hit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_uris_name_their_path_again() {
        let windows = ["C:\\Users\\Ana\\Documents\\contract.docx"];
        let unix = [
            "/home/ana/Reports 2026/q3 #final?.pdf",
            "/tmp/a:b/100%.txt",
            "/srv/日本語/メモ.md",
        ];
        let paths: &[&str] = if cfg!(windows) { &windows } else { &unix };
        for &path in paths {
            let uri = document_uri(path);
            assert!(uri.starts_with("quarry://document/"), "{uri}");
            assert!(!uri.contains(' ') && !uri.contains('#'), "{uri}");
            assert_eq!(parse(&uri).unwrap(), Target::Document(PathBuf::from(path)));
        }
    }

    #[test]
    fn passage_uris_and_strangers() {
        assert_eq!(
            parse(&passage_uri("0a1b2c")).unwrap(),
            Target::Passage("0a1b2c".into())
        );
        for bad in [
            "file:///etc/passwd",
            "quarry://passage/../../etc",
            "quarry://passage/",
            "quarry://documentary/x",
            "quarry://document",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
