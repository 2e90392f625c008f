//! The keyword (BM25) index: tantivy, over the same chunk ids as the vectors.

use std::path::Path;
use std::sync::Arc;

use tantivy::collector::TopDocs;
use tantivy::query::{
    BooleanQuery, Occur, Query, QueryParser, RegexQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value,
    STORED, STRING,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use super::merges::BoundedMerges;
use super::sealed::keyword_dir::SealedDirectory;
use super::sealed::LibraryKey;
use super::tokenize::{analyzer, ANALYZER};
use super::{ChunkRecord, Filter, Hit};
use crate::error::{Error, Result};

struct Fields {
    id: Field,
    doc_id: Field,
    path: Field,
    ext: Field,
    title: Field,
    heading: Field,
    text: Field,
    page: Field,
    char_start: Field,
    char_end: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text_opts = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let num = NumericOptions::default().set_stored();
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        doc_id: b.add_text_field("doc_id", STRING),
        path: b.add_text_field("path", STRING | STORED),
        ext: b.add_text_field("ext", STRING),
        title: b.add_text_field("title", text_opts.clone()),
        heading: b.add_text_field("heading", text_opts.clone()),
        text: b.add_text_field("text", text_opts),
        page: b.add_u64_field("page", num.clone()),
        char_start: b.add_u64_field("char_start", num.clone()),
        char_end: b.add_u64_field("char_end", num),
    };
    (b.build(), fields)
}

/// The most chunks a segment merge produces (see [`BoundedMerges`]).
const MAX_MERGED_CHUNKS: u32 = 300_000;

/// A new index's builder: zstd keeps the stored chunk text at about half
/// its size (lz4, tantivy's default, about 70%); existing indexes keep theirs.
fn index_builder(schema: tantivy::schema::Schema) -> tantivy::IndexBuilder {
    let settings = tantivy::IndexSettings {
        docstore_compression: tantivy::store::Compressor::Zstd(tantivy::store::ZstdCompressor {
            compression_level: Some(3),
        }),
        docstore_blocksize: 32 << 10,
        ..Default::default()
    };
    Index::builder().schema(schema).settings(settings)
}

/// The keyword index of a library.
pub struct KeywordIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

impl KeywordIndex {
    /// Open or create the index in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_sealed(dir, None)
    }

    /// Open or create the index in `dir`, every file sealed with `key` when
    /// there is one (an encrypted library).
    pub fn open_sealed(dir: &Path, key: Option<&LibraryKey>) -> Result<Self> {
        fs_err::create_dir_all(dir)?;
        let (schema, fields) = schema();
        let exists = dir.join("meta.json").exists();
        let index = match key {
            None if exists => Index::open_in_dir(dir)?,
            None => index_builder(schema).create_in_dir(dir)?,
            Some(key) => {
                let sealed = SealedDirectory::open(dir, key.clone())
                    .map_err(|e| Error::Keywords(Arc::new(e.into())))?;
                if exists {
                    Index::open(sealed)?
                } else {
                    index_builder(schema).open_or_create(sealed)?
                }
            }
        };
        index.tokenizers().register(ANALYZER, analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(KeywordIndex {
            index,
            reader,
            fields,
        })
    }

    /// A writer (tantivy allows one per index; it also takes a lock file).
    pub fn writer(&self) -> Result<IndexWriter> {
        let writer = self.index.writer(64 << 20)?;
        writer.set_merge_policy(Box::new(BoundedMerges::new(MAX_MERGED_CHUNKS)));
        Ok(writer)
    }

    /// Queue the deletion of every chunk of a document.
    pub fn delete_document(&self, writer: &IndexWriter, doc_id: &str) {
        writer.delete_term(Term::from_field_text(self.fields.doc_id, doc_id));
    }

    /// Queue chunks for addition.
    pub fn add(&self, writer: &IndexWriter, chunks: &[ChunkRecord]) -> Result<()> {
        let f = &self.fields;
        for c in chunks {
            let mut d = doc!(
                f.id => c.id.as_str(),
                f.doc_id => c.doc_id.as_str(),
                f.path => c.path.as_str(),
                f.ext => c.ext.as_str(),
                f.text => c.text.as_str(),
                f.char_start => c.char_start,
                f.char_end => c.char_end,
            );
            if let Some(t) = &c.title {
                d.add_text(f.title, t);
            }
            if let Some(h) = &c.heading {
                d.add_text(f.heading, h);
            }
            if let Some(p) = c.page {
                d.add_u64(f.page, p as u64);
            }
            writer.add_document(d)?;
        }
        Ok(())
    }

    /// Rewrite every segment into one that holds only live chunks, and delete
    /// the files no segment uses any more: after this, deleted chunks are not
    /// on disk (tantivy otherwise keeps them, marked deleted, until a merge).
    /// Only under the library's write lock.
    pub fn purge(&self) -> Result<()> {
        let mut writer = self.writer()?;
        let segments = self.index.searchable_segment_ids()?;
        if !segments.is_empty() {
            writer.merge(&segments).wait()?;
        }
        writer.garbage_collect_files().wait()?;
        writer.wait_merging_threads()?;
        self.reload()
    }

    /// Make the reader see the last commit.
    pub fn reload(&self) -> Result<()> {
        Ok(self.reader.reload()?)
    }

    /// Number of chunks searchable now.
    pub fn num_chunks(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Chunks searchable now in total, and per document of `doc_ids` (one
    /// snapshot for all counts).
    pub fn counts_of(&self, doc_ids: &[&str]) -> Result<(usize, Vec<usize>)> {
        let searcher = self.reader.searcher();
        let mut counts = Vec::with_capacity(doc_ids.len());
        for id in doc_ids {
            let q = tantivy::query::TermQuery::new(
                Term::from_field_text(self.fields.doc_id, id),
                tantivy::schema::IndexRecordOption::Basic,
            );
            counts.push(searcher.search(&q, &tantivy::collector::Count)?);
        }
        Ok((searcher.num_docs() as usize, counts))
    }

    fn parsed_query(&self, query: &str) -> Box<dyn Query> {
        let f = &self.fields;
        let mut parser = QueryParser::for_index(&self.index, vec![f.text, f.heading, f.title]);
        parser.set_field_boost(f.heading, 1.5);
        parser.set_field_boost(f.title, 1.5);
        // Lenient: an unbalanced quote in a question is not an error.
        parser.parse_query_lenient(&plain_query(query)).0
    }

    /// BM25 top-`limit` chunks for `query`, with highlighted snippets.
    pub fn search(&self, query: &str, limit: usize, filter: &Filter) -> Result<Vec<Hit>> {
        let f = &self.fields;
        let user_query = self.parsed_query(query);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, user_query.box_clone())];
        if let Some(prefix) = &filter.path_prefix {
            let pattern = format!("{}.*", regex_escape(prefix));
            clauses.push((
                Occur::Must,
                Box::new(RegexQuery::from_pattern(&pattern, f.path)?),
            ));
        }
        if !filter.extensions.is_empty() {
            let exts: Vec<(Occur, Box<dyn Query>)> = filter
                .extensions
                .iter()
                .map(|e| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_text(f.ext, &e.to_lowercase()),
                        IndexRecordOption::Basic,
                    ));
                    (Occur::Should, q)
                })
                .collect();
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(exts))));
        }
        if let Some(paths) = &filter.paths {
            let terms = paths.iter().map(|p| Term::from_field_text(f.path, p));
            clauses.push((Occur::Must, Box::new(TermSetQuery::new(terms))));
        }
        let full = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher.search(&full, &TopDocs::with_limit(limit.max(1)).order_by_score())?;
        let mut snippets = SnippetGenerator::create(&searcher, &*user_query, f.text)?;
        snippets.set_max_num_chars(240);
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let mut hit = self.stored_hit(&searcher.doc(address)?);
            let snippet = snippets.snippet(&hit.text);
            hit.snippet = Some((
                snippet.fragment().to_string(),
                snippet.highlighted().to_vec(),
            ));
            hit.score = score;
            hits.push(hit);
        }
        Ok(hits)
    }

    /// Every chunk of the document at `path`, in reading order (whole-document
    /// tasks: summaries, "list every…" questions).
    pub fn chunks_in_order(&self, path: &str) -> Result<Vec<Hit>> {
        let mut hits = self.stored_hits(self.fields.path, path)?;
        hits.sort_by_key(|h| (h.char_start, h.char_end));
        Ok(hits)
    }

    /// The chunk with id `id`, when the index has it.
    pub fn chunk_by_id(&self, id: &str) -> Result<Option<Hit>> {
        Ok(self.stored_hits(self.fields.id, id)?.into_iter().next())
    }

    /// Every chunk whose `field` is exactly `value`, as stored (no score).
    fn stored_hits(&self, field: Field, value: &str) -> Result<Vec<Hit>> {
        let searcher = self.reader.searcher();
        let q = TermQuery::new(
            Term::from_field_text(field, value),
            IndexRecordOption::Basic,
        );
        let addresses = searcher.search(&q, &tantivy::collector::DocSetCollector)?;
        addresses
            .into_iter()
            .map(|a| Ok(self.stored_hit(&searcher.doc(a)?)))
            .collect()
    }

    /// A chunk as stored (no snippet, no score).
    fn stored_hit(&self, d: &TantivyDocument) -> Hit {
        let f = &self.fields;
        let text_of = |field| {
            d.get_first(field)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let num_of = |field| d.get_first(field).and_then(|v| v.as_u64());
        Hit {
            chunk_id: text_of(f.id).unwrap_or_default(),
            path: text_of(f.path).unwrap_or_default(),
            page: num_of(f.page).map(|p| p as u32),
            heading: text_of(f.heading),
            char_start: num_of(f.char_start).unwrap_or(0),
            char_end: num_of(f.char_end).unwrap_or(0),
            text: text_of(f.text).unwrap_or_default(),
            snippet: None,
            score: 0.0,
            ocr_confidence: None,
        }
    }

    /// Highlighted snippet of `text` for `query` (for hits found by vector search).
    pub fn snippet_for(
        &self,
        query: &str,
        text: &str,
    ) -> Result<(String, Vec<std::ops::Range<usize>>)> {
        let searcher = self.reader.searcher();
        let q = self.parsed_query(query);
        let mut g = SnippetGenerator::create(&searcher, &*q, self.fields.text)?;
        g.set_max_num_chars(240);
        let s = g.snippet(text);
        Ok((s.fragment().to_string(), s.highlighted().to_vec()))
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~\"".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What a user typed as words and quoted phrases only: tantivy's query
/// syntax (`field:`, `*`, `^2`, `~`, ranges, a leading `-` or `+`) would
/// otherwise turn "the Files: * section" into a query on a field that does
/// not exist, or "title:x" into a search of titles only.
fn plain_query(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut prev = ' ';
    for c in query.chars() {
        let syntax = matches!(
            c,
            ':' | '*' | '?' | '^' | '~' | '\\' | '/' | '(' | ')' | '[' | ']' | '{' | '}' | '!'
        );
        // `prev` is what was written, so `--flag` loses both signs.
        let operator = matches!(c, '-' | '+') && (prev.is_whitespace() || prev == '"');
        let kept = if syntax || operator { ' ' } else { c };
        out.push(kept);
        prev = kept;
    }
    // The parser's operators in capitals are words here ("Do NOT copy").
    out.split(' ')
        .map(|w| match w {
            "AND" | "OR" | "NOT" | "IN" => w.to_lowercase(),
            _ => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_syntax_is_read_as_plain_words() {
        assert_eq!(plain_query("the Files: * section"), "the Files    section");
        assert_eq!(plain_query("title:x"), "title x");
        assert_eq!(plain_query("GPL-2+ -only"), "GPL-2+  only");
        assert_eq!(plain_query("\"exact phrase\""), "\"exact phrase\"");
        assert_eq!(
            plain_query("spamd --allowed-ips=1"),
            "spamd   allowed-ips=1"
        );
        assert_eq!(
            plain_query("Do NOT \"copy\" IN OR"),
            "Do not \"copy\" in or"
        );
    }

    /// Mail subjects once panicked inside tantivy: a phrase excluded with
    /// `--flag` or `NOT "…"` (its exclusion scorer cannot seek a phrase).
    #[test]
    fn queries_that_read_as_exclusions_search_as_words() {
        let dir = tempfile::tempdir().unwrap();
        let index = KeywordIndex::open(dir.path()).unwrap();
        let mut writer = index.writer().unwrap();
        let chunks: Vec<ChunkRecord> = [
            "spamd must be first in the allowed ips list",
            "allowed ips are checked by spamd",
            "do not copy this file",
        ]
        .iter()
        .enumerate()
        .map(|(i, text)| ChunkRecord {
            id: format!("c{i}"),
            doc_id: format!("d{i}"),
            path: format!("/docs/{i}.txt"),
            ext: "txt".into(),
            index: 0,
            title: None,
            heading: None,
            page: None,
            char_start: 0,
            char_end: text.len() as u64,
            text: text.to_string(),
            vector: Vec::new(),
        })
        .collect();
        index.add(&writer, &chunks).unwrap();
        writer.commit().unwrap();
        index.reload().unwrap();
        let filter = Filter::default();
        for q in [
            "BUG: spamd --allowed-ips=[127.0.0.1 must be first]",
            "Do NOT \"copy this\"",
            "-\"allowed ips\" spamd",
        ] {
            let hits = index.search(q, 10, &filter).unwrap();
            assert!(!hits.is_empty(), "{q}: no hits");
        }
        let hits = index.search("Do NOT \"copy this\"", 10, &filter).unwrap();
        assert_eq!(
            hits[0].chunk_id, "c2",
            "the phrase is searched for, not excluded"
        );
    }
}
