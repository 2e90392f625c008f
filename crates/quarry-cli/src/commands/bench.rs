//! `quarry bench`: speed figures (embedding, generation, indexing, synthetic scale).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use quarry_core::eval::Dataset;
use quarry_core::Library;

use crate::context::Context;

use crate::commands::eval::{dataset_library, index_quietly, work_dir};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// BEIR-layout folder whose corpus texts are embedded (default: ../shared/data/squaddev if present).
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Texts to embed per batch-size run.
    #[arg(long, default_value_t = 256)]
    texts: usize,
    /// Also measure local generation: prefill a RAG-sized prompt of about this
    /// many tokens (0 skips) and decode 64 tokens with the default generator.
    #[arg(long, default_value_t = 1500)]
    prompt_tokens: usize,
    /// Generator to measure: a registry id or a .gguf path (default: the registry's default).
    #[arg(long)]
    generator: Option<String>,
    /// Embedder to measure: a registry id (default: the registry's default).
    #[arg(long)]
    embedder: Option<String>,
    /// Skip the embedding runs.
    #[arg(long)]
    no_embed: bool,
    /// Also index the dataset's corpus (written out as files) into a fresh
    /// library: MB/s, chunks/s, peak RSS; then re-index it unchanged.
    #[arg(long)]
    index: bool,
    /// Also build synthetic libraries of these sizes (chunks, comma-separated,
    /// e.g. 100000,1000000) from the dataset's real chunks and time search on
    /// them: exact vs IVF-PQ vector search (with recall), BM25, hybrid.
    #[arg(long, value_delimiter = ',')]
    synthetic: Vec<usize>,
    /// Queries timed per synthetic library.
    #[arg(long, default_value_t = 200)]
    synthetic_queries: usize,
    /// IVF partitions probed per vector query (recall against speed).
    #[arg(long, default_value_t = 64)]
    ann_nprobes: usize,
    /// Exact re-ranking of this many times the requested candidates.
    #[arg(long, default_value_t = 20)]
    ann_refine: u32,
    /// Write the exact templated prompt used for generation to this file, so
    /// peers (bench/llamacpp_gen.py) can run the same prompt.
    #[arg(long)]
    dump_prompt: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn bench(ctx: &Context, args: BenchArgs) -> Result<()> {
    let dataset = args
        .dataset
        .or_else(|| {
            let p = PathBuf::from("../shared/data/squaddev");
            p.exists().then_some(p)
        })
        .context("--dataset DIR is required (a BEIR folder; its corpus texts are embedded)")?;
    let data = Dataset::load(&dataset)?;
    let texts: Vec<String> = data
        .corpus
        .iter()
        .take(args.texts)
        .map(|d| format!("{}\n\n{}", d.title, d.text))
        .collect();
    let mut results = serde_json::Map::new();
    let embedder_id = match &args.embedder {
        Some(id) => id.clone(),
        None => ctx.default_embedder()?,
    };
    let mut embedder = if args.index || !args.no_embed || !args.synthetic.is_empty() {
        Some(ctx.load_embedder(&embedder_id)?)
    } else {
        None
    };
    if let (true, Some(embedder)) = (args.index, &embedder) {
        reset_peak_rss();
        let row = bench_index(ctx, &data, &dataset, embedder, args.json).await?;
        results.insert("index".into(), row);
    }
    if let (false, Some(embedder)) = (args.no_embed, &mut embedder) {
        let tokenizer = embedder.counting_tokenizer();
        let tokens: usize = texts
            .iter()
            .map(|t| {
                tokenizer
                    .encode(t.as_str(), true)
                    .map(|e| e.len().min(embedder.max_tokens()))
                    .unwrap_or(0)
            })
            .sum();
        embedder.embed_documents(&texts[..texts.len().min(8)])?; // warm up
        results.insert(
            "embed_precision".into(),
            embedder.precision().to_string().into(),
        );
        for batch in [1usize, 32] {
            embedder.set_batch_size(batch);
            // Batch 32 here means 32 texts regardless of length, as peers count it.
            embedder.set_max_batch_tokens(if batch == 1 { usize::MAX } else { 32 * 512 });
            let t = Instant::now();
            for part in texts.chunks(batch.max(32)) {
                embedder.embed_documents(part)?;
            }
            let secs = t.elapsed().as_secs_f64();
            let row = serde_json::json!({
                "texts": texts.len(),
                "tokens": tokens,
                "seconds": secs,
                "texts_per_s": texts.len() as f64 / secs,
                "tokens_per_s": tokens as f64 / secs,
            });
            if !args.json {
                println!(
                    "embed {embedder_id} ({}) batch {batch:>2}: {:.1} texts/s, {:.0} tokens/s ({} texts, {:.1} tokens avg, {:.1}s)",
                    embedder.precision(),
                    texts.len() as f64 / secs,
                    tokens as f64 / secs,
                    texts.len(),
                    tokens as f64 / texts.len().max(1) as f64,
                    secs
                );
            }
            results.insert(format!("embed_batch_{batch}"), row);
        }
        // Quarry's default: length-grouped batches capped at 1,024 padded tokens.
        embedder.set_batch_size(32);
        embedder.set_max_batch_tokens(1024);
        let t = Instant::now();
        embedder.embed_documents(&texts)?;
        let secs = t.elapsed().as_secs_f64();
        if !args.json {
            println!(
                "embed {embedder_id} default batching: {:.1} texts/s, {:.0} tokens/s",
                texts.len() as f64 / secs,
                tokens as f64 / secs
            );
        }
        results.insert(
            "embed_default".into(),
            serde_json::json!({"texts": texts.len(), "tokens": tokens, "seconds": secs,
                "texts_per_s": texts.len() as f64 / secs, "tokens_per_s": tokens as f64 / secs}),
        );
    }
    if args.prompt_tokens > 0 {
        let mut model = crate::commands::ask::load_generator(ctx, args.generator.as_deref())?;
        let mut body = String::new();
        for d in &data.corpus {
            if model.count_tokens(&body) >= args.prompt_tokens {
                break;
            }
            body.push_str(&d.text);
            body.push_str("\n\n");
        }
        let prompt = model.render_chat(&[quarry_core::generate::ChatMessage::new(
            "user",
            format!("{body}\nSummarise the passages above."),
        )])?;
        if let Some(path) = &args.dump_prompt {
            std::fs::write(path, &prompt).with_context(|| format!("writing {}", path.display()))?;
        }
        // Token by token first (the figure to hold against llama.cpp's), then
        // with prompt-lookup drafting over the same prompt (its keys and
        // values are reused, so only decoding differs); the text must match.
        let mut rows = serde_json::Map::new();
        let mut plain_text = String::new();
        for lookup in [false, true] {
            // Both runs compute the whole prompt.
            model.forget_prefix();
            let opts = quarry_core::generate::GenerateOptions {
                max_tokens: 64,
                stop: Vec::new(),
                lookup,
                ..Default::default()
            };
            let (text, stats) = model.generate(&prompt, &opts, &mut |_| true)?;
            let row = generation_row(&stats);
            if !args.json {
                println!(
                    "generate {} ({}): prompt {} tokens ({} reused) at {:.1} tok/s (first token {:.2}s), decode {} tokens at {:.1} tok/s{}",
                    model.name(),
                    if lookup { "prompt lookup" } else { "token by token" },
                    stats.prompt_tokens,
                    stats.reused_tokens,
                    row["prefill_tokens_per_s"].as_f64().unwrap_or(0.0),
                    stats.first_token.as_secs_f64(),
                    stats.generated_tokens,
                    row["decode_tokens_per_s"].as_f64().unwrap_or(0.0),
                    if lookup {
                        format!(
                            ", {} of {} drafted tokens accepted, same text: {}",
                            stats.accepted_tokens,
                            stats.drafted_tokens,
                            text == plain_text
                        )
                    } else {
                        String::new()
                    }
                );
            }
            if lookup {
                rows.insert("lookup".into(), row);
                rows.insert("lookup_same_text".into(), (text == plain_text).into());
            } else {
                rows.insert("model".into(), model.name().into());
                rows.extend(row.as_object().cloned().unwrap_or_default());
                plain_text = text;
            }
        }
        results.insert("generate".into(), serde_json::Value::Object(rows));
    }
    quarry_core::store::set_ann_search(args.ann_nprobes, args.ann_refine);
    if let (false, Some(embedder)) = (args.synthetic.is_empty(), &embedder) {
        // The real library of the dataset (what `quarry eval` builds) is the source.
        let work = work_dir(ctx, &dataset, None);
        let (real, _) = dataset_library(&data, &work, embedder).await?;
        let source = real.chunk_records().await?;
        for &n in &args.synthetic {
            reset_peak_rss();
            let row = bench_synthetic(
                &data,
                &work,
                &source,
                embedder,
                n,
                args.synthetic_queries,
                args.json,
            )
            .await?;
            results.insert(format!("synthetic_{n}"), row);
        }
    }
    results.insert(
        "machine".into(),
        serde_json::json!({
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        }),
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Object(results))?
        );
    }
    Ok(())
}

/// Reset the kernel's peak-RSS mark of this process (Linux; a no-op elsewhere).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size since the last reset, in MB (Linux).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Index the corpus into a fresh library, then again unchanged.
async fn bench_index(
    ctx: &Context,
    data: &Dataset,
    dataset: &std::path::Path,
    embedder: &quarry_core::Embedder,
    json: bool,
) -> Result<serde_json::Value> {
    let work = work_dir(ctx, dataset, None).join("bench-index");
    let corpus_dir = data.write_corpus(&work.join("corpus"))?;
    let lib_dir = work.join("library");
    if lib_dir.exists() {
        std::fs::remove_dir_all(&lib_dir)
            .with_context(|| format!("removing {}", lib_dir.display()))?;
    }
    let mut library = Library::open_or_create(&lib_dir, embedder.id(), embedder.dim()).await?;
    let first = index_quietly(&mut library, &corpus_dir, embedder).await?;
    let peak = peak_rss_mb();
    let again = index_quietly(&mut library, &corpus_dir, embedder).await?;
    let secs = first.elapsed.as_secs_f64().max(1e-9);
    let mb = first.bytes as f64 / 1e6;
    if !json {
        println!(
            "index {} files ({:.1} MB) → {} chunks in {:.1}s: {:.3} MB/s, {:.1} chunks/s, peak RSS {:.0} MB; \
             unchanged re-index {:.2}s",
            first.indexed.len(),
            mb,
            first.chunks,
            secs,
            mb / secs,
            first.chunks as f64 / secs,
            peak.unwrap_or(0.0),
            again.elapsed.as_secs_f64()
        );
    }
    Ok(serde_json::json!({
        "files": first.indexed.len(),
        "mb": mb,
        "chunks": first.chunks,
        "seconds": secs,
        "mb_per_s": mb / secs,
        "chunks_per_s": first.chunks as f64 / secs,
        "peak_rss_mb": peak,
        "reindex_unchanged_s": again.elapsed.as_secs_f64(),
        "reindex_changed_files": again.indexed.len(),
    }))
}

/// Build (or reuse) a synthetic library of `n` chunks and time search on it.
async fn bench_synthetic(
    data: &Dataset,
    work: &std::path::Path,
    source: &[quarry_core::store::ChunkRecord],
    embedder: &quarry_core::Embedder,
    n: usize,
    queries: usize,
    json: bool,
) -> Result<serde_json::Value> {
    let dir = work.join(format!("synthetic-{n}"));
    let t = Instant::now();
    let bar = indicatif::ProgressBar::new(n as u64);
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let library = quarry_core::eval::scale::build_synthetic(
        &dir,
        source,
        n,
        embedder.id(),
        embedder.dim(),
        &mut |done| bar.set_position(done as u64),
    )
    .await?;
    bar.finish_and_clear();
    let build_s = t.elapsed().as_secs_f64();
    let stride = (data.queries.len() / queries.max(1)).max(1);
    let texts: Vec<String> = data
        .queries
        .iter()
        .step_by(stride)
        .take(queries)
        .map(|q| q.text.clone())
        .collect();
    let report = quarry_core::eval::scale::measure(&library, embedder, &texts).await?;
    let peak = peak_rss_mb();
    if !json {
        println!(
            "synthetic {} chunks ({:.0} MB on disk, written in {:.0}s): vector exact p50 {:.1} / p95 {:.1} ms; \
             IVF-PQ (built in {:.0}s) p50 {:.1} / p95 {:.1} ms, recall@10 vs exact {:.3}; \
             keyword p50 {:.1} / p95 {:.1} ms; hybrid p50 {:.1} / p95 {:.1} ms; peak RSS {:.0} MB",
            report.chunks,
            report.disk_mb,
            build_s,
            report.vector_exact.p50_ms,
            report.vector_exact.p95_ms,
            report.index_build_s,
            report.vector_ann.p50_ms,
            report.vector_ann.p95_ms,
            report.ann_recall_at_10,
            report.keyword.p50_ms,
            report.keyword.p95_ms,
            report.hybrid.p50_ms,
            report.hybrid.p95_ms,
            peak.unwrap_or(0.0)
        );
    }
    let mut v = serde_json::to_value(&report)?;
    v["build_s"] = build_s.into();
    v["peak_rss_mb"] = peak.into();
    Ok(v)
}

/// One generation's figures, as `quarry bench --json` reports them.
fn generation_row(stats: &quarry_core::generate::GenerationStats) -> serde_json::Value {
    let prefill = stats.prompt_tokens.saturating_sub(stats.reused_tokens);
    serde_json::json!({
        "prompt_tokens": stats.prompt_tokens,
        "reused_tokens": stats.reused_tokens,
        "prefill_tokens_per_s": prefill as f64 / stats.prefill.as_secs_f64().max(1e-9),
        "first_token_s": stats.first_token.as_secs_f64(),
        "generated_tokens": stats.generated_tokens,
        "decode_tokens_per_s":
            stats.generated_tokens.saturating_sub(1) as f64 / stats.decode.as_secs_f64().max(1e-9),
        "drafted_tokens": stats.drafted_tokens,
        "accepted_tokens": stats.accepted_tokens,
    })
}
