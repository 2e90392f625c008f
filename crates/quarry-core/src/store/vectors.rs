//! The vector store: LanceDB tables `chunks` (text, provenance, vector),
//! `pending` (chunks written by the keyword phase of indexing, waiting for
//! their vectors) and `documents` (one row per file, with its state).
//!
//! A chunk is in `pending` or in `chunks`, never meant to be in both: the
//! embedding phase adds a batch to `chunks`, then deletes it from `pending`
//! (two commits, under the embedding journal). Should a crash leave a chunk in
//! both, `chunks` wins ([`VectorStore::settle_pending`]).

use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Int32Array, Int64Array, RecordBatch,
    StringArray, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::table::optimize::Duration;
use lancedb::table::{CompactionOptions, OptimizeAction};
use lancedb::{Connection, DistanceType, Table};

use super::sealed::vector_store::{sealed_session, sealed_uri};
use super::sealed::LibraryKey;
use super::{ChunkRecord, DocState, DocumentRecord, Filter, Hit};
use crate::error::{Error, Result};

const CHUNKS: &str = "chunks";
const PENDING: &str = "pending";

/// Chunks from which the vector column gets an approximate (IVF-PQ) index;
/// below this an exact scan answers in tens of milliseconds.
pub const ANN_MIN_ROWS: usize = 50_000;
/// IVF partitions probed per query (default 64: recall@10 0.95 at 1M chunks).
static ANN_NPROBES: AtomicUsize = AtomicUsize::new(64);
/// Candidates re-ranked with exact distances, as a multiple of the limit (default 20).
static ANN_REFINE: AtomicU32 = AtomicU32::new(20);

/// Tune approximate vector search for this process: partitions probed per
/// query and the exact re-ranking factor (more of either: higher recall,
/// slower). `quarry bench --synthetic` measures the trade.
pub fn set_ann_search(nprobes: usize, refine_factor: u32) {
    ANN_NPROBES.store(nprobes.max(1), Ordering::Relaxed);
    ANN_REFINE.store(refine_factor.max(1), Ordering::Relaxed);
}
const DOCUMENTS: &str = "documents";

/// The columns of a chunk, without its vector.
fn chunk_fields() -> Vec<Field> {
    vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("doc_id", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("ext", DataType::Utf8, false),
        Field::new("idx", DataType::UInt32, false),
        Field::new("title", DataType::Utf8, true),
        Field::new("heading", DataType::Utf8, true),
        Field::new("page", DataType::UInt32, true),
        Field::new("char_start", DataType::UInt64, false),
        Field::new("char_end", DataType::UInt64, false),
        Field::new("text", DataType::Utf8, false),
    ]
}

fn chunk_schema(dim: usize) -> SchemaRef {
    let mut fields = chunk_fields();
    fields.push(Field::new(
        "vector",
        DataType::FixedSizeList(
            Arc::new(Field::new("item", DataType::Float32, true)),
            dim as i32,
        ),
        false,
    ));
    Arc::new(Schema::new(fields))
}

/// Chunks waiting for their vectors.
fn pending_schema() -> SchemaRef {
    Arc::new(Schema::new(chunk_fields()))
}

fn document_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("root", DataType::Utf8, false),
        Field::new("size", DataType::UInt64, false),
        Field::new("mtime_ns", DataType::Int64, false),
        Field::new("hash", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("chunks", DataType::UInt32, false),
        Field::new("text_chars", DataType::UInt64, false),
        Field::new("indexed_at_ms", DataType::Int64, false),
    ]))
}

/// Quote a string for a LanceDB (DataFusion SQL) filter.
pub(crate) fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn in_list(column: &str, values: &[String]) -> String {
    let list: Vec<String> = values.iter().map(|v| sql_str(v)).collect();
    format!("{column} IN ({})", list.join(", "))
}

/// The LanceDB side of a library.
pub struct VectorStore {
    conn: Connection,
    chunks: Table,
    pending: Table,
    documents: Table,
    dim: usize,
}

/// Open table `name`, creating it with `schema` when absent.
async fn open_or_create(
    conn: &Connection,
    names: &[String],
    name: &str,
    schema: SchemaRef,
) -> Result<Table> {
    if names.iter().any(|n| n == name) {
        return Ok(conn.open_table(name).execute().await?);
    }
    match conn.create_empty_table(name, schema).execute().await {
        Ok(t) => Ok(t),
        // Another process created it meanwhile (two searches opening a
        // library written by an older Quarry, which had no `pending` table).
        Err(e) => conn.open_table(name).execute().await.map_err(|_| e.into()),
    }
}

impl VectorStore {
    /// Open (or create) the tables under `dir` — a local folder, or an object
    /// store URI such as `s3://bucket/library`.
    pub async fn open(uri: &str, dim: usize) -> Result<Self> {
        Self::open_with(uri, dim, CHUNKS).await
    }

    /// Open (or create) the tables, the chunks in table `chunks_table` (a
    /// library switching embedders fills a new one, then switches to it).
    pub async fn open_with(uri: &str, dim: usize, chunks_table: &str) -> Result<Self> {
        Self::connect(lancedb::connect(uri), dim, chunks_table).await
    }

    async fn connect(
        builder: lancedb::connection::ConnectBuilder,
        dim: usize,
        chunks_table: &str,
    ) -> Result<Self> {
        let conn: Connection = builder.execute().await?;
        let names = conn.table_names().execute().await?;
        let chunks = open_or_create(&conn, &names, chunks_table, chunk_schema(dim)).await?;
        let pending = open_or_create(&conn, &names, PENDING, pending_schema()).await?;
        let documents = open_or_create(&conn, &names, DOCUMENTS, document_schema()).await?;
        Ok(VectorStore {
            conn,
            chunks,
            pending,
            documents,
            dim,
        })
    }

    /// Open the store of a local library folder.
    pub async fn open_dir(dir: &Path, dim: usize, chunks_table: &str) -> Result<Self> {
        Self::open_sealed_dir(dir, dim, chunks_table, None).await
    }

    /// Open the store of a local library folder, every file sealed with
    /// `key` when there is one (an encrypted library).
    pub async fn open_sealed_dir(
        dir: &Path,
        dim: usize,
        chunks_table: &str,
        key: Option<&LibraryKey>,
    ) -> Result<Self> {
        fs_err::create_dir_all(dir)?;
        let builder = match key {
            None => lancedb::connect(&dir.to_string_lossy()),
            Some(key) => {
                super::sealed::scratch::use_private_scratch()?;
                lancedb::connect(&sealed_uri(&std::path::absolute(dir)?))
                    .session(sealed_session(key.clone()))
            }
        };
        Self::connect(builder, dim, chunks_table).await
    }

    /// A chunks table of `dim` dimensions beside this store's (created if
    /// absent), for re-embedding into.
    pub async fn sibling_chunks(&self, name: &str, dim: usize) -> Result<VectorStore> {
        let names = self.conn.table_names().execute().await?;
        let chunks = open_or_create(&self.conn, &names, name, chunk_schema(dim)).await?;
        Ok(VectorStore {
            conn: self.conn.clone(),
            chunks,
            pending: self.pending.clone(),
            documents: self.documents.clone(),
            dim,
        })
    }

    /// Names of the chunk tables in the store (the current one and any left
    /// by an embedder switch).
    pub async fn chunk_tables(&self) -> Result<Vec<String>> {
        Ok(self
            .conn
            .table_names()
            .execute()
            .await?
            .into_iter()
            .filter(|n| n != DOCUMENTS && n != PENDING)
            .collect())
    }

    /// Drop a table (a chunks table no longer in use).
    pub async fn drop_table(&self, name: &str) -> Result<()> {
        self.conn.drop_table(name, &[]).await?;
        Ok(())
    }

    /// Delete chunks by id.
    pub async fn delete_chunk_ids(&self, ids: &[String]) -> Result<()> {
        for part in ids.chunks(500) {
            self.chunks.delete(&in_list("id", part)).await?;
        }
        Ok(())
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Add chunks (with their vectors).
    pub async fn add_chunks(&self, chunks: &[ChunkRecord]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let batch = self.chunk_batch(chunks)?;
        self.chunks.add(batch).execute().await?;
        Ok(())
    }

    /// Add chunks that have no vectors yet (their vectors are ignored).
    pub async fn add_pending(&self, chunks: &[ChunkRecord]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let batch = RecordBatch::try_new(pending_schema(), chunk_columns(chunks))?;
        self.pending.add(batch).execute().await?;
        Ok(())
    }

    /// Number of chunks waiting for their vectors.
    pub async fn count_pending(&self) -> Result<usize> {
        Ok(self.pending.count_rows(None).await?)
    }

    /// Up to `limit` chunks waiting for their vectors, oldest first (their
    /// `vector` is empty).
    pub async fn pending_records(&self, limit: Option<usize>) -> Result<Vec<ChunkRecord>> {
        let mut q = self.pending.query();
        if let Some(l) = limit {
            q = q.limit(l);
        }
        let batches: Vec<RecordBatch> = q.execute().await?.try_collect().await?;
        let mut out = Vec::new();
        for b in &batches {
            read_chunks(b, None, &mut out)?;
        }
        Ok(out)
    }

    /// Delete chunks that were waiting for vectors, by id. Each delete
    /// scans the table's ids (two seconds at a million rows in a dev build),
    /// so a whole embedding batch goes in one.
    pub async fn delete_pending_ids(&self, ids: &[String]) -> Result<()> {
        for part in ids.chunks(4096) {
            self.pending.delete(&in_list("id", part)).await?;
        }
        Ok(())
    }

    /// Of `ids`, those in the chunks table (with vectors).
    pub async fn embedded_among(&self, ids: &[String]) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for part in ids.chunks(500) {
            let batches: Vec<RecordBatch> = self
                .chunks
                .query()
                .only_if(in_list("id", part))
                .select(Select::columns(&["id"]))
                .execute()
                .await?
                .try_collect()
                .await?;
            for b in &batches {
                let col = string_col(b, "id")?;
                found.extend((0..b.num_rows()).map(|i| col.value(i).to_string()));
            }
        }
        Ok(found)
    }

    /// After a crash between the two commits of an embedding batch (`ids`),
    /// delete from `pending` the chunks that reached the chunks table.
    /// Returns how many there were.
    pub async fn settle_pending(&self, ids: &[String]) -> Result<usize> {
        let embedded = self.embedded_among(ids).await?;
        self.delete_pending_ids(&embedded).await?;
        Ok(embedded.len())
    }

    fn chunk_batch(&self, chunks: &[ChunkRecord]) -> Result<RecordBatch> {
        let mut vectors = FixedSizeListBuilder::with_capacity(
            Float32Builder::with_capacity(chunks.len() * self.dim),
            self.dim as i32,
            chunks.len(),
        )
        .with_field(Arc::new(Field::new("item", DataType::Float32, true)));
        for c in chunks {
            if c.vector.len() != self.dim {
                return Err(Error::Internal(format!(
                    "vector of {} dims for a {}-dim store",
                    c.vector.len(),
                    self.dim
                )));
            }
            vectors.values().append_slice(&c.vector);
            vectors.append(true);
        }
        let vectors: FixedSizeListArray = vectors.finish();
        let mut cols = chunk_columns(chunks);
        cols.push(Arc::new(vectors));
        Ok(RecordBatch::try_new(chunk_schema(self.dim), cols)?)
    }

    /// Delete every chunk of these documents (with vectors or waiting for them).
    pub async fn delete_chunks_of(&self, doc_ids: &[String]) -> Result<()> {
        for part in doc_ids.chunks(500) {
            let cond = in_list("doc_id", part);
            self.chunks.delete(cond.as_str()).await?;
            self.pending.delete(cond.as_str()).await?;
        }
        Ok(())
    }

    /// The chunks of these documents, embedded (with their vectors) or
    /// waiting (without): what forgetting them must remove.
    pub async fn chunks_of(&self, doc_ids: &[String]) -> Result<Vec<ChunkRecord>> {
        let mut out = Vec::new();
        for part in doc_ids.chunks(500) {
            let cond = in_list("doc_id", part);
            for (table, dim) in [(&self.chunks, Some(self.dim)), (&self.pending, None)] {
                let batches: Vec<RecordBatch> = table
                    .query()
                    .only_if(cond.clone())
                    .execute()
                    .await?
                    .try_collect()
                    .await?;
                for b in &batches {
                    read_chunks(b, dim, &mut out)?;
                }
            }
        }
        Ok(out)
    }

    /// Whether any chunk, embedded or waiting, contains `text` (which must
    /// hold no `LIKE` wildcard, `%` or `_`).
    pub async fn contains_text(&self, text: &str) -> Result<bool> {
        let cond = format!("text LIKE {}", sql_str(&format!("%{text}%")));
        for table in [&self.chunks, &self.pending] {
            if table.count_rows(Some(cond.clone())).await? > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The embedded chunks whose text is exactly `text`.
    pub async fn chunks_with_text(&self, text: &str) -> Result<Vec<ChunkRecord>> {
        self.read_chunk_rows(Some(format!("text = {}", sql_str(text))), None)
            .await
    }

    /// Rewrite every fragment that still holds deleted rows, drop every old
    /// version now and rebuild the indexes over what is left: after this,
    /// deleted rows are not on disk (LanceDB otherwise keeps them in old
    /// versions and in fragments under 10% deleted). Only under the
    /// library's write lock.
    pub async fn purge(&self) -> Result<()> {
        let default_rows = CompactionOptions::default().target_rows_per_fragment;
        for (table, rows) in [
            (&self.chunks, FRAGMENT_ROWS),
            (&self.pending, FRAGMENT_ROWS),
            (&self.documents, default_rows),
        ] {
            table
                .optimize(OptimizeAction::Compact {
                    options: CompactionOptions {
                        target_rows_per_fragment: rows,
                        materialize_deletions_threshold: 0.0,
                        ..Default::default()
                    },
                    remap_options: None,
                })
                .await?;
            table
                .optimize(OptimizeAction::Prune {
                    older_than: Some(Duration::zero()),
                    delete_unverified: Some(true),
                    error_if_tagged_old_versions: None,
                })
                .await?;
        }
        self.chunks
            .optimize(OptimizeAction::Index(Default::default()))
            .await?;
        Ok(())
    }

    /// Insert or replace document rows.
    pub async fn upsert_documents(&self, docs: &[DocumentRecord]) -> Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = docs.iter().map(|d| d.doc_id.clone()).collect();
        self.delete_documents(&ids).await?;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                docs.iter().map(|d| &d.doc_id),
            )),
            Arc::new(StringArray::from_iter_values(docs.iter().map(|d| &d.path))),
            Arc::new(StringArray::from_iter_values(docs.iter().map(|d| &d.root))),
            Arc::new(UInt64Array::from_iter_values(docs.iter().map(|d| d.size))),
            Arc::new(Int64Array::from_iter_values(
                docs.iter().map(|d| d.mtime_ns),
            )),
            Arc::new(StringArray::from_iter_values(docs.iter().map(|d| &d.hash))),
            Arc::new(StringArray::from_iter_values(
                docs.iter().map(|d| d.state.as_str()),
            )),
            Arc::new(StringArray::from_iter(
                docs.iter().map(|d| d.error.as_deref()),
            )),
            Arc::new(UInt32Array::from_iter_values(docs.iter().map(|d| d.chunks))),
            Arc::new(UInt64Array::from_iter_values(
                docs.iter().map(|d| d.text_chars),
            )),
            Arc::new(Int64Array::from_iter_values(
                docs.iter().map(|d| d.indexed_at_ms),
            )),
        ];
        let batch = RecordBatch::try_new(document_schema(), cols)?;
        self.documents.add(batch).execute().await?;
        Ok(())
    }

    /// Delete document rows (not their chunks).
    pub async fn delete_documents(&self, doc_ids: &[String]) -> Result<()> {
        for part in doc_ids.chunks(500) {
            self.documents
                .delete(in_list("doc_id", part).as_str())
                .await?;
        }
        Ok(())
    }

    /// Every document row.
    pub async fn documents(&self) -> Result<Vec<DocumentRecord>> {
        let batches: Vec<RecordBatch> = self
            .documents
            .query()
            .execute()
            .await?
            .try_collect()
            .await?;
        let mut out = Vec::new();
        for b in &batches {
            let s = |n: &str| string_col(b, n);
            let (doc_id, path, root, hash, state, error) = (
                s("doc_id")?,
                s("path")?,
                s("root")?,
                s("hash")?,
                s("state")?,
                s("error")?,
            );
            let size = col::<UInt64Array>(b, "size")?;
            let mtime = col::<Int64Array>(b, "mtime_ns")?;
            let chunks = col::<UInt32Array>(b, "chunks")?;
            let chars = col::<UInt64Array>(b, "text_chars")?;
            let at = col::<Int64Array>(b, "indexed_at_ms")?;
            for i in 0..b.num_rows() {
                out.push(DocumentRecord {
                    doc_id: doc_id.value(i).to_string(),
                    path: path.value(i).to_string(),
                    root: root.value(i).to_string(),
                    size: size.value(i),
                    mtime_ns: mtime.value(i),
                    hash: hash.value(i).to_string(),
                    state: DocState::parse(state.value(i)),
                    error: (!error.is_null(i)).then(|| error.value(i).to_string()),
                    chunks: chunks.value(i),
                    text_chars: chars.value(i),
                    indexed_at_ms: at.value(i),
                });
            }
        }
        Ok(out)
    }

    /// Number of chunks with vectors.
    pub async fn count_chunks(&self) -> Result<usize> {
        Ok(self.chunks.count_rows(None).await?)
    }

    /// The tables' versions: they change with every write, so together they
    /// identify the library's content (the answer cache keys on them).
    pub async fn versions(&self) -> Result<(u64, u64)> {
        Ok((
            self.chunks.version().await?,
            self.documents.version().await?,
        ))
    }

    /// Compact small fragments left by many small writes and drop old versions.
    /// Only under the library's write lock ([`crate::Library::lock_for_writing`]).
    pub async fn optimize(&self) -> Result<()> {
        // Small fragments of chunks are merged into fragments of about
        // FRAGMENT_ROWS, which are then left alone: LanceDB's default target
        // (a million rows) rewrote the whole growing table at each
        // compaction, ten times over on the way to a million chunks.
        compact_and_prune(&self.chunks, FRAGMENT_ROWS).await?;
        // Pending chunks are read oldest first and deleted as they are
        // embedded: compacting them into large fragments would make each read
        // skip ever more deleted rows, while fragments left as written are
        // dropped whole once embedded. Old versions only hold text that has
        // moved to the chunks table and nothing searches this table, so they
        // go after ten minutes.
        self.pending
            .optimize(OptimizeAction::Prune {
                older_than: Duration::try_minutes(10),
                // As in compact_and_prune: this writer holds the write lock.
                delete_unverified: Some(true),
                error_if_tagged_old_versions: None,
            })
            .await?;
        compact_and_prune(
            &self.documents,
            CompactionOptions::default().target_rows_per_fragment,
        )
        .await?;
        Ok(())
    }

    /// Whether the vector column has an approximate index.
    pub async fn has_vector_index(&self) -> Result<bool> {
        Ok(self
            .chunks
            .list_indices()
            .await?
            .iter()
            .any(|i| i.columns.iter().any(|c| c == "vector")))
    }

    /// Build the approximate vector index once the table holds
    /// [`ANN_MIN_ROWS`] chunks (IVF-PQ: √n partitions, 8-dimension
    /// sub-vectors, cosine), and train it again once the table has grown to
    /// four times the `trained_rows` it was last trained on (partitions sized
    /// for 50,000 chunks would make every probe of a million-chunk table scan
    /// twenty times the vectors). Later additions are folded in by
    /// [`Self::optimize`] and searched exactly until then; a retrain replaces
    /// the index in one commit, searches use the old one meanwhile. Returns
    /// the rows it trained on, when it (re)built the index.
    pub async fn ensure_vector_index(&self, trained_rows: Option<usize>) -> Result<Option<usize>> {
        let rows = self.count_chunks().await?;
        if rows < ANN_MIN_ROWS || !ann_due(rows, self.has_vector_index().await?, trained_rows) {
            return Ok(None);
        }
        self.build_vector_index(rows).await?;
        Ok(Some(rows))
    }

    /// Build (or replace) the IVF-PQ index for a table of `rows` chunks.
    async fn build_vector_index(&self, rows: usize) -> Result<()> {
        let partitions = ((rows as f64).sqrt() as u32).clamp(64, 4096);
        let sub_vectors = [8usize, 4, 2, 1]
            .iter()
            .map(|w| self.dim / w)
            .find(|s| *s > 0 && self.dim.is_multiple_of(*s))
            .unwrap_or(1) as u32;
        self.chunks
            .create_index(
                &["vector"],
                lancedb::index::Index::IvfPq(
                    lancedb::index::vector::IvfPqIndexBuilder::default()
                        .distance_type(DistanceType::Cosine)
                        .num_partitions(partitions)
                        .num_sub_vectors(sub_vectors),
                ),
            )
            .replace(true)
            .execute()
            .await?;
        Ok(())
    }

    /// Distinct chunks per document id, with vectors or waiting for them (a
    /// chunk a crash left in both tables counts once).
    pub async fn chunk_counts(&self) -> Result<std::collections::HashMap<String, usize>> {
        let mut ids = std::collections::HashSet::new();
        let mut counts = std::collections::HashMap::new();
        for table in [&self.chunks, &self.pending] {
            let batches: Vec<RecordBatch> = table
                .query()
                .select(Select::columns(&["id", "doc_id"]))
                .execute()
                .await?
                .try_collect()
                .await?;
            for b in &batches {
                let (id, doc) = (string_col(b, "id")?, string_col(b, "doc_id")?);
                for i in 0..b.num_rows() {
                    if ids.insert(id.value(i).to_string()) {
                        *counts.entry(doc.value(i).to_string()).or_insert(0) += 1;
                    }
                }
            }
        }
        Ok(counts)
    }

    /// Every chunk with its vector (for benchmarks and re-embedding).
    pub async fn chunk_records(&self, limit: Option<usize>) -> Result<Vec<ChunkRecord>> {
        self.read_chunk_rows(None, limit).await
    }

    /// Embedded chunks matching `filter` (SQL), at most `limit`.
    async fn read_chunk_rows(
        &self,
        filter: Option<String>,
        limit: Option<usize>,
    ) -> Result<Vec<ChunkRecord>> {
        let mut q = self.chunks.query();
        if let Some(f) = filter {
            q = q.only_if(f);
        }
        if let Some(l) = limit {
            q = q.limit(l);
        }
        let batches: Vec<RecordBatch> = q.execute().await?.try_collect().await?;
        let mut out = Vec::new();
        for b in &batches {
            read_chunks(b, Some(self.dim), &mut out)?;
        }
        Ok(out)
    }

    /// Nearest chunks to `vector` by cosine similarity (approximate when the
    /// table has a vector index, with exact re-ranking of the candidates).
    pub async fn search(&self, vector: &[f32], limit: usize, filter: &Filter) -> Result<Vec<Hit>> {
        self.search_with(vector, limit, filter, false).await
    }

    /// The best cosine similarity in the library for each of `queries`
    /// (`None` for an empty library), in one batched search: a flat scan
    /// reads the table once for all of them.
    pub async fn best_similarities(&self, queries: &[Vec<f32>]) -> Result<Vec<Option<f32>>> {
        let mut best = vec![None; queries.len()];
        let Some((first, rest)) = queries.split_first() else {
            return Ok(best);
        };
        let mut q = self.chunks.vector_search(first.clone())?;
        for v in rest {
            q = q.add_query_vector(v.clone())?;
        }
        let q = q
            .column("vector")
            .distance_type(DistanceType::Cosine)
            .limit(1)
            .nprobes(ANN_NPROBES.load(Ordering::Relaxed))?
            .refine_factor(ANN_REFINE.load(Ordering::Relaxed))
            .select(Select::columns(&["id", "_distance"]));
        let batches: Vec<RecordBatch> = q.execute().await?.try_collect().await?;
        for b in &batches {
            let dist = col::<Float32Array>(b, "_distance")?;
            // One query has no `query_index` column.
            let index = b
                .column_by_name("query_index")
                .and_then(|c| c.as_any().downcast_ref::<Int32Array>());
            for i in 0..b.num_rows() {
                let n = index.map_or(0, |ix| ix.value(i) as usize);
                let s = 1.0 - dist.value(i);
                if let Some(slot) = best.get_mut(n) {
                    *slot = Some(slot.map_or(s, |old: f32| old.max(s)));
                }
            }
        }
        Ok(best)
    }

    /// [`Self::search`], or an exact scan that ignores any index when `exact`.
    pub async fn search_with(
        &self,
        vector: &[f32],
        limit: usize,
        filter: &Filter,
        exact: bool,
    ) -> Result<Vec<Hit>> {
        let mut q = self
            .chunks
            .vector_search(vector.to_vec())?
            .column("vector")
            .distance_type(DistanceType::Cosine)
            .limit(limit.max(1))
            .nprobes(ANN_NPROBES.load(Ordering::Relaxed))?
            .refine_factor(ANN_REFINE.load(Ordering::Relaxed));
        if exact {
            q = q.bypass_vector_index();
        }
        let mut q = q.select(Select::columns(&[
            "id",
            "path",
            "page",
            "heading",
            "char_start",
            "char_end",
            "text",
            "_distance",
        ]));
        let mut conds = Vec::new();
        if let Some(p) = &filter.path_prefix {
            conds.push(format!("starts_with(path, {})", sql_str(p)));
        }
        if !filter.extensions.is_empty() {
            let exts: Vec<String> = filter.extensions.iter().map(|e| e.to_lowercase()).collect();
            conds.push(in_list("ext", &exts));
        }
        if let Some(paths) = &filter.paths {
            conds.push(if paths.is_empty() {
                "false".to_string()
            } else {
                in_list("path", paths)
            });
        }
        if !conds.is_empty() {
            q = q.only_if(conds.join(" AND "));
        }
        let batches: Vec<RecordBatch> = q.execute().await?.try_collect().await?;
        let mut hits = Vec::new();
        for b in &batches {
            let id = string_col(b, "id")?;
            let path = string_col(b, "path")?;
            let heading = string_col(b, "heading")?;
            let text = string_col(b, "text")?;
            let page = col::<UInt32Array>(b, "page")?;
            let cs = col::<UInt64Array>(b, "char_start")?;
            let ce = col::<UInt64Array>(b, "char_end")?;
            let dist = col::<Float32Array>(b, "_distance")?;
            for i in 0..b.num_rows() {
                hits.push(Hit {
                    chunk_id: id.value(i).to_string(),
                    path: path.value(i).to_string(),
                    page: (!page.is_null(i)).then(|| page.value(i)),
                    heading: (!heading.is_null(i)).then(|| heading.value(i).to_string()),
                    char_start: cs.value(i),
                    char_end: ce.value(i),
                    text: text.value(i).to_string(),
                    snippet: None,
                    score: 1.0 - dist.value(i),
                    ocr_confidence: None,
                });
            }
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(hits)
    }
}

/// How long the table versions a write replaces stay on disk. LanceDB's
/// default is a week: 100,000 notes then kept 656 MB of data files for
/// about 170 MB of rows. A reader in another process holds a version for at most a
/// few minutes ([`crate::SNAPSHOT_MAX_AGE`]), so an hour
/// leaves it a wide margin.
pub const OLD_VERSIONS_KEPT_MINUTES: i64 = 60;

/// Compact `table` into fragments of about `target_rows`, drop the versions
/// older than [`OLD_VERSIONS_KEPT_MINUTES`] and bring its indexes up to date.
async fn compact_and_prune(table: &Table, target_rows: usize) -> Result<()> {
    table
        .optimize(OptimizeAction::Compact {
            options: CompactionOptions {
                target_rows_per_fragment: target_rows,
                ..Default::default()
            },
            remap_options: None,
        })
        .await?;
    table
        .optimize(OptimizeAction::Prune {
            older_than: Duration::try_minutes(OLD_VERSIONS_KEPT_MINUTES),
            // Files no kept version refers to would otherwise stay a week, in
            // case a transaction still in progress wrote them. Every writer
            // holds the library's write lock, which this writer holds now, so
            // there is none.
            delete_unverified: Some(true),
            error_if_tagged_old_versions: None,
        })
        .await?;
    table
        .optimize(OptimizeAction::Index(Default::default()))
        .await?;
    Ok(())
}

/// The rows of a compacted fragment of `chunks`.
const FRAGMENT_ROWS: usize = 64 * 1024;

/// Whether a table of `rows` chunks (at least [`ANN_MIN_ROWS`]) needs its
/// approximate index built, or trained again: none yet, or the table has grown
/// to four times the rows it was trained on (unknown for libraries indexed
/// before this was recorded: left as they are).
fn ann_due(rows: usize, has_index: bool, trained_rows: Option<usize>) -> bool {
    !has_index || trained_rows.is_some_and(|t| rows >= t.saturating_mul(4))
}

/// The columns of `chunks` other than the vector, in [`chunk_fields`] order.
fn chunk_columns(chunks: &[ChunkRecord]) -> Vec<ArrayRef> {
    vec![
        Arc::new(StringArray::from_iter_values(chunks.iter().map(|c| &c.id))),
        Arc::new(StringArray::from_iter_values(
            chunks.iter().map(|c| &c.doc_id),
        )),
        Arc::new(StringArray::from_iter_values(
            chunks.iter().map(|c| &c.path),
        )),
        Arc::new(StringArray::from_iter_values(chunks.iter().map(|c| &c.ext))),
        Arc::new(UInt32Array::from_iter_values(
            chunks.iter().map(|c| c.index),
        )),
        Arc::new(StringArray::from_iter(
            chunks.iter().map(|c| c.title.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            chunks.iter().map(|c| c.heading.as_deref()),
        )),
        Arc::new(UInt32Array::from_iter(chunks.iter().map(|c| c.page))),
        Arc::new(UInt64Array::from_iter_values(
            chunks.iter().map(|c| c.char_start),
        )),
        Arc::new(UInt64Array::from_iter_values(
            chunks.iter().map(|c| c.char_end),
        )),
        Arc::new(StringArray::from_iter_values(
            chunks.iter().map(|c| &c.text),
        )),
    ]
}

/// Append the chunks of a batch to `out`, with their vectors when the batch
/// has a vector column of `dim` dimensions (`None`: no vectors).
fn read_chunks(b: &RecordBatch, dim: Option<usize>, out: &mut Vec<ChunkRecord>) -> Result<()> {
    let s = |n: &str| string_col(b, n);
    let (id, doc_id, path, ext, title, heading, text) = (
        s("id")?,
        s("doc_id")?,
        s("path")?,
        s("ext")?,
        s("title")?,
        s("heading")?,
        s("text")?,
    );
    let idx = col::<UInt32Array>(b, "idx")?;
    let page = col::<UInt32Array>(b, "page")?;
    let cs = col::<UInt64Array>(b, "char_start")?;
    let ce = col::<UInt64Array>(b, "char_end")?;
    let vectors = match dim {
        Some(dim) => {
            let list = col::<FixedSizeListArray>(b, "vector")?;
            let values = list
                .values()
                .as_any()
                .downcast_ref::<Float32Array>()
                .ok_or_else(|| Error::Internal("vector values are not f32".into()))?;
            Some((list, values, dim))
        }
        None => None,
    };
    for i in 0..b.num_rows() {
        let vector = match &vectors {
            Some((list, values, dim)) => {
                let at = list.value_offset(i) as usize;
                values.values()[at..at + dim].to_vec()
            }
            None => Vec::new(),
        };
        out.push(ChunkRecord {
            id: id.value(i).to_string(),
            doc_id: doc_id.value(i).to_string(),
            path: path.value(i).to_string(),
            ext: ext.value(i).to_string(),
            index: idx.value(i),
            title: (!title.is_null(i)).then(|| title.value(i).to_string()),
            heading: (!heading.is_null(i)).then(|| heading.value(i).to_string()),
            page: (!page.is_null(i)).then(|| page.value(i)),
            char_start: cs.value(i),
            char_end: ce.value(i),
            text: text.value(i).to_string(),
            vector,
        });
    }
    Ok(())
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| Error::Internal(format!("column {name} missing or of the wrong type")))
}

fn string_col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    col::<StringArray>(b, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn chunk(i: u32) -> ChunkRecord {
        ChunkRecord {
            id: format!("c{i}"),
            doc_id: format!("d{}", i % 3),
            path: format!("/private/claims/claim-{}.txt", i % 3),
            ext: "txt".into(),
            index: i,
            title: None,
            heading: Some("Settlement".into()),
            page: Some(1),
            char_start: 0,
            char_end: 60,
            text: format!("claimant Marguerite Oyelaran settled for amount {i} francs"),
            vector: (0..8).map(|d| ((i + d) % 5) as f32).collect(),
        }
    }

    /// Every file under `dir` as text, for a scan for plain text.
    fn all_bytes(dir: &Path) -> String {
        let mut text = String::new();
        for entry in walkdir(dir) {
            text.push_str(&String::from_utf8_lossy(&std::fs::read(entry).unwrap()));
        }
        text
    }

    fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                files.extend(walkdir(&p));
            } else {
                files.push(p);
            }
        }
        files
    }

    #[tokio::test]
    async fn a_sealed_store_writes_searches_compacts_and_reopens_with_no_plain_text_on_disk() {
        let lib = tempfile::tempdir().unwrap();
        let key = LibraryKey::create(lib.path(), &SecretString::from("a long passphrase")).unwrap();
        let dir = lib.path().join("lance");
        let store = VectorStore::open_sealed_dir(&dir, 8, CHUNKS, Some(&key))
            .await
            .unwrap();
        for batch in 0..4 {
            let chunks: Vec<_> = (batch * 10..batch * 10 + 10).map(chunk).collect();
            store.add_chunks(&chunks).await.unwrap();
        }
        store.delete_chunks_of(&["d1".into()]).await.unwrap();
        store.optimize().await.unwrap();
        let text = all_bytes(&dir);
        assert!(!walkdir(&dir).is_empty());
        for needle in ["Oyelaran", "Marguerite", "claim-0", "Settlement"] {
            assert!(!text.contains(needle), "'{needle}' in plain text on disk");
        }
        drop(store);
        let store = VectorStore::open_sealed_dir(&dir, 8, CHUNKS, Some(&key))
            .await
            .unwrap();
        assert_eq!(store.count_chunks().await.unwrap(), 27);
        let hits = store
            .search(&chunk(4).vector, 3, &Filter::default())
            .await
            .unwrap();
        assert_eq!(hits.len(), 3);
        assert!(hits.iter().all(|h| !h.path.ends_with("claim-1.txt")));
        assert!(hits[0].text.contains("Oyelaran"));
    }

    #[tokio::test]
    async fn a_batched_search_gives_each_query_its_own_best_similarity() {
        let lib = tempfile::tempdir().unwrap();
        let store = VectorStore::open_sealed_dir(&lib.path().join("lance"), 8, CHUNKS, None)
            .await
            .unwrap();
        assert_eq!(
            store.best_similarities(&[vec![1.0; 8]]).await.unwrap(),
            vec![None],
            "an empty library"
        );
        let chunks: Vec<_> = (0..30).map(chunk).collect();
        store.add_chunks(&chunks).await.unwrap();
        let queries = vec![
            chunk(4).vector,
            vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            vec![4.0, 0.0, 1.0, 0.0, 3.0, 0.0, 2.0, 0.0],
        ];
        let batched = store.best_similarities(&queries).await.unwrap();
        assert_eq!(batched.len(), 3);
        for (q, got) in queries.iter().zip(&batched) {
            let one = store.search(q, 1, &Filter::default()).await.unwrap();
            let want = one[0].score;
            assert!((got.unwrap() - want).abs() < 1e-5, "{got:?} vs {want}");
        }
        assert!(
            (batched[0].unwrap() - 1.0).abs() < 1e-5,
            "a stored vector finds itself"
        );
        assert!(batched[1] != batched[2], "each query its own");
        assert_eq!(store.best_similarities(&[]).await.unwrap(), vec![]);
    }

    #[tokio::test]
    async fn a_sealed_stores_index_build_shuffles_in_the_private_scratch_folder() {
        let lib = tempfile::tempdir().unwrap();
        let key = LibraryKey::create(lib.path(), &SecretString::from("a long passphrase")).unwrap();
        let dir = lib.path().join("lance");
        let store = VectorStore::open_sealed_dir(&dir, 16, CHUNKS, Some(&key))
            .await
            .unwrap();
        let mut seed = 7u64;
        let chunks: Vec<_> = (0..600)
            .map(|i| {
                let mut c = chunk(i);
                c.vector = (0..16)
                    .map(|_| {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                    })
                    .collect();
                c
            })
            .collect();
        store.add_chunks(&chunks).await.unwrap();
        // Opening the sealed store made the process's temp folder private.
        let scratch = &tempfile::env::temp_dir();
        let name = scratch.file_name().unwrap().to_string_lossy().to_string();
        assert!(name.starts_with("quarry-scratch-"), "{scratch:?}");

        // Watch the scratch folder while lance builds: its shuffle goes there.
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (done, scratch) = (done.clone(), scratch.to_path_buf());
            std::thread::spawn(move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if shuffle_files(&scratch) > 0 {
                        return true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                false
            })
        };
        store.build_vector_index(600).await.unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(watcher.join().unwrap(), "no shuffle seen in {scratch:?}");
        assert!(store.has_vector_index().await.unwrap());
        assert_eq!(shuffle_files(scratch), 0, "lance left its shuffle behind");
    }

    /// lance's shuffle files anywhere under `dir` (folders may vanish meanwhile).
    fn shuffle_files(dir: &Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => shuffle_files(&e.path()),
                _ => usize::from(e.file_name().to_string_lossy().starts_with("shuffle_")),
            })
            .sum()
    }

    #[test]
    fn the_approximate_index_is_retrained_as_the_table_grows() {
        assert!(ann_due(50_000, false, None));
        assert!(!ann_due(60_000, true, Some(50_000)));
        assert!(!ann_due(199_999, true, Some(50_000)));
        assert!(ann_due(200_000, true, Some(50_000)));
        assert!(!ann_due(10_000_000, true, None));
    }
}
