//! `quarry eval`: retrieval and answer quality on a BEIR-layout dataset.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use quarry_core::eval::{abstention, evaluate, Dataset, ModeScores};
use quarry_core::ingest::index::IndexOptions;
use quarry_core::{HybridSearch, Library, SearchMode, SearchOptions};

use crate::context::Context;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// BEIR-layout folder: corpus.jsonl, queries.jsonl, qrels/test.tsv.
    #[arg(long, required_unless_present = "synthetic")]
    dataset: Option<PathBuf>,
    /// Measure the search modes on your own library instead, without labels:
    /// the local model (--model) writes one question for each of N passages
    /// spread over the library, and each mode is scored on finding the
    /// document the question came from (about 10 s a question with a 1.5B
    /// model on a laptop CPU). Prints what the figure can and cannot say.
    #[arg(long, value_name = "N", conflicts_with_all = ["dataset", "answers", "extract"])]
    synthetic: Option<usize>,
    /// The library for --synthetic (default: the usual one).
    #[arg(long)]
    library: Option<PathBuf>,
    /// Comma-separated modes.
    #[arg(long, default_value = "keyword,vector,hybrid", value_delimiter = ',')]
    modes: Vec<SearchMode>,
    /// Evaluate N queries spread evenly over the dataset (all by default).
    #[arg(long, visible_alias = "limit")]
    queries: Option<usize>,
    /// Working folder for the corpus files and the library (kept, so re-runs are incremental).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Embedder for --dataset (a registry id; default: the registry's
    /// default). The working library is per embedder, inside --work.
    #[arg(long)]
    embedder: Option<String>,
    #[command(flatten)]
    fusion: crate::commands::search::FusionArgs,
    /// Also measure the "not in the library" threshold: index half of the
    /// corpus's articles and compare the best similarity of questions whose
    /// paragraph is there with those whose article is absent.
    #[arg(long)]
    abstention: bool,
    /// Evaluate generated answers instead of retrieval: exact match and token
    /// F1 against the queries' gold `answers`, the share of answers citing a
    /// valid source, and the abstention rate (use --limit: each answer runs
    /// the local model).
    #[arg(long)]
    answers: bool,
    /// Evaluate extraction instead: --dataset is a folder with docs/,
    /// schema.json and truth.jsonl (see bench/extract/); per-field accuracy,
    /// unverified share and documents per minute (use --limit).
    #[arg(long, conflicts_with = "answers")]
    extract: bool,
    /// Generator for --answers and --extract: a registry id or a .gguf path.
    #[arg(long)]
    model: Option<String>,
    /// For --answers: sources per question.
    #[arg(long, default_value_t = quarry_core::answer::AnswerOptions::default().sources)]
    sources: usize,
    /// For --answers: the best this-many sources are read twice (0: each once).
    #[arg(long, default_value_t = quarry_core::answer::AnswerOptions::default().reread)]
    reread: usize,
    /// For --answers: characters of each source the model reads around its
    /// best-matching sentences (0: whole passages).
    #[arg(long, default_value_t = quarry_core::answer::evidence::Trim::default().chars)]
    source_chars: usize,
    /// For --answers: most answer tokens.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// For --answers: decode token by token (no prompt-lookup drafting).
    #[arg(long)]
    no_lookup: bool,
    /// For --answers: copy bias, added to the logits of tokens that continue
    /// the answer as the prompt does (0: off, the default; BENCHMARKS.md).
    #[arg(long, default_value_t = 0.0)]
    copy_bias: f32,
    /// Also measure hybrid search with a second stage: this local model
    /// (registry id or .gguf) judges whether each of the first
    /// --rerank-depth candidates is relevant ("Yes" against "No").
    #[arg(long, value_name = "MODEL")]
    rerank: Option<String>,
    /// For --rerank: candidates (chunks) re-scored per query.
    #[arg(long, default_value_t = 10)]
    rerank_depth: usize,
    /// For --rerank: weights of the first stage's order in the blend
    /// (z(model) + w · z(hybrid)); each is one line, the model runs once.
    #[arg(long, default_value = "0,1", value_delimiter = ',')]
    rerank_weights: Vec<f32>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Also write each query's keyword and vector rankings (corpus id, chunk
    /// id, score; 150 chunks each) as JSON lines to this file, to study
    /// fusion offline (bench/retrieval/).
    #[arg(long)]
    dump_runs: Option<PathBuf>,
}

pub(crate) fn work_dir(ctx: &Context, dataset: &std::path::Path, work: Option<PathBuf>) -> PathBuf {
    work.unwrap_or_else(|| {
        let name = dataset
            .canonicalize()
            .unwrap_or_else(|_| dataset.to_path_buf())
            .to_string_lossy()
            .replace(['/', '\\', ':'], "_");
        ctx.dirs
            .library
            .parent()
            .unwrap_or(&ctx.dirs.library)
            .join("eval")
            .join(name)
    })
}

pub async fn eval(ctx: &Context, args: EvalArgs) -> Result<()> {
    if let Some(n) = args.synthetic {
        return eval_synthetic(ctx, &args, n).await;
    }
    if args.extract {
        return eval_extraction(ctx, args).await;
    }
    let dataset = args.dataset.clone().context("--dataset is required")?;
    let data = Dataset::load(&dataset).with_context(|| format!("reading {}", dataset.display()))?;
    let work = work_dir(ctx, &dataset, args.work.clone());
    let embedder_id = match &args.embedder {
        Some(id) => id.clone(),
        None => ctx.default_embedder()?,
    };
    let embedder = ctx.load_embedder(&embedder_id)?;
    let (library, report) = dataset_library(&data, &work, &embedder).await?;
    if !args.json {
        eprintln!(
            "corpus: {} documents ({} indexed now in {:.1}s, {} chunks); {} queries",
            data.corpus.len(),
            report.indexed.len(),
            report.elapsed.as_secs_f64(),
            report.chunks,
            data.queries.len()
        );
    }
    // A sample spread evenly over the dataset (queries are grouped by article).
    let wanted = args
        .queries
        .unwrap_or(data.queries.len())
        .min(data.queries.len())
        .max(1);
    let stride = (data.queries.len() / wanted).max(1);
    let sample: Vec<quarry_core::eval::Query> = data
        .queries
        .iter()
        .step_by(stride)
        .take(wanted)
        .cloned()
        .collect();
    let queries = &sample[..];
    let fusion = args.fusion.config()?;
    let search = HybridSearch::new(&library, Some(&embedder))?
        .with_history(quarry_core::retrieve::search::HistoryUse::Session);
    let mut out = serde_json::Map::new();
    if args.answers {
        // Answers search through the pipeline a user's questions take, which
        // learns the fusion weight in the library: start this run from none.
        quarry_core::retrieve::history::FusionHistory::default().save(&library)?;
        // The same for the relevance floor; its baseline is measured now,
        // not in the first question's time.
        let mut floor = quarry_core::answer::floor::LibraryFloor::default();
        floor.refresh(&library, &embedder).await?;
        floor.save(&library)?;
        let mut model = crate::commands::ask::load_generator(ctx, args.model.as_deref())?;
        let mut opts = quarry_core::answer::AnswerOptions {
            sources: args.sources,
            reread: args.reread,
            ..Default::default()
        };
        opts.trim.chars = args.source_chars;
        opts.generate.max_tokens = args.max_tokens;
        opts.generate.lookup = !args.no_lookup;
        opts.generate.copy_bias = args.copy_bias;
        let quiet = args.json;
        let mut n = 0;
        let scores = quarry_core::eval::answers::evaluate_answers(
            &library,
            &embedder,
            &mut model,
            queries,
            &opts,
            &mut |q, a| {
                n += 1;
                if !quiet {
                    eprintln!(
                        "[{n}/{}] {} → {} (gold: {}) [first token {:.0} ms, prompt {} tokens, {} unsupported]",
                        queries.len(),
                        q.text,
                        a.answer.replace('\n', " "),
                        q.answers.join(" | "),
                        a.timings.first_token_ms,
                        a.timings.prompt_tokens,
                        a.support.unsupported.len()
                    );
                }
            },
        )
        .await?;
        if !args.json {
            println!(
                "answers ({} questions, {}): exact match {:.3}  F1 {:.3}  contains gold {:.3}  \
                 cited {:.1}%  supported sentences {:.1}% of {}  abstained {:.1}% ({:.1}% before the model)",
                scores.questions,
                model.name(),
                scores.exact_match,
                scores.f1,
                scores.contains_answer,
                scores.cited * 100.0,
                scores.supported_sentences * 100.0,
                scores.cited_sentences,
                scores.abstained * 100.0,
                scores.abstained_before_model * 100.0,
            );
            println!(
                "  a gold answer was in the retrieved passages for {:.1}% of questions, in what the model read of them for {:.1}%",
                scores.gold_in_passages * 100.0,
                scores.gold_in_prompt * 100.0,
            );
            println!(
                "  evidence p50 {:.0} ms  first token p10/p50/p90 {:.0}/{:.0}/{:.0} ms  total p50 {:.0} ms  \
                 prompt p50 {:.0} tokens  decode p50 {:.1} tok/s  drafted {:.0}% of answer tokens",
                scores.evidence_ms_p50,
                scores.first_token_ms_p10,
                scores.first_token_ms_p50,
                scores.first_token_ms_p90,
                scores.total_ms_p50,
                scores.prompt_tokens_p50,
                scores.decode_tokens_per_s_p50,
                scores.drafted_share * 100.0
            );
        }
        let mut v = serde_json::to_value(&scores)?;
        v["model"] = model.name().into();
        out.insert("answers".into(), v);
    }
    if let Some(path) = &args.dump_runs {
        dump_runs(&search, queries, path).await?;
    }
    let modes: &[SearchMode] = if args.answers { &[] } else { &args.modes };
    for mode in modes {
        let opts = SearchOptions {
            mode: *mode,
            fusion,
            ..Default::default()
        };
        let scores: ModeScores = evaluate(&search, queries, &data.qrels, &opts).await?;
        let name = serde_json::to_value(mode)?
            .as_str()
            .unwrap_or("?")
            .to_string();
        if !args.json {
            println!(
                "{name:<8} nDCG@10 {:.4}  R@10 {:.4}  R@100 {:.4}  MRR@10 {:.4}  p50 {:.1} ms  p95 {:.1} ms  ({} queries)",
                scores.ndcg10, scores.recall10, scores.recall100, scores.mrr10, scores.p50_ms, scores.p95_ms, scores.queries
            );
        }
        let mut v = serde_json::to_value(scores)?;
        if *mode == SearchMode::Hybrid && fusion.adaptive {
            let h = search.fusion_history();
            if !args.json {
                println!(
                    "         the vector weight, learned query by query from {:.2}, ended at {:.2} (keyword lead {:+.2} over {} queries)",
                    quarry_core::retrieve::history::FusionHistory::default().vector_weight(),
                    h.vector_weight(),
                    h.lead,
                    h.questions
                );
            }
            v["vector_weight_learned"] = h.vector_weight().into();
        }
        out.insert(name, v);
    }
    if let Some(model) = &args.rerank {
        let scores = eval_rerank(ctx, &args, model, &library, &embedder, queries, &data).await?;
        out.insert("rerank".into(), scores);
    }
    if args.abstention {
        let a = abstention(&data, queries, &work, &embedder).await?;
        if !args.json {
            println!(
                "abstention: best threshold {:.2} (keeps {:.1}% of answerable, declines {:.1}% of unanswerable); \
                 threshold keeping 95% of answerable {:.2} (declines {:.1}%)",
                a.threshold,
                a.answerable_kept * 100.0,
                a.unanswerable_declined * 100.0,
                a.threshold_95,
                a.declined_at_95 * 100.0,
            );
            println!(
                "  the default rule (similarity or keyword evidence) keeps {:.1}%, declines {:.1}% \
                 at the library's floor {:.2} (the registry's {:.2}: keeps {:.1}%, declines {:.1}%)",
                a.default_answerable_kept * 100.0,
                a.default_unanswerable_declined * 100.0,
                a.library_floor,
                a.registry_floor,
                a.registry_answerable_kept * 100.0,
                a.registry_unanswerable_declined * 100.0,
            );
            if let Some(b) = &a.baseline {
                println!(
                    "  questions about nothing in the library: median similarity {:.2}, 90th percentile {:.2}",
                    b.median, b.p90
                );
            }
        }
        let a = serde_json::to_value(a)?;
        out.insert("abstention".into(), a);
    }
    out.insert(
        "indexing".into(),
        serde_json::json!({
            "documents": report.indexed.len(),
            "chunks": report.chunks,
            "seconds": report.elapsed.as_secs_f64(),
            "chunks_per_s": report.chunks as f64 / report.elapsed.as_secs_f64().max(1e-9),
        }),
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Object(out))?
        );
    }
    Ok(())
}

/// `--rerank MODEL`: hybrid search with the model's relevance check on the
/// first candidates, one line per first-stage weight; the model judges each
/// (query, passage) once.
async fn eval_rerank(
    ctx: &Context,
    args: &EvalArgs,
    model: &str,
    library: &Library,
    embedder: &quarry_core::embed::Embedder,
    queries: &[quarry_core::eval::Query],
    data: &Dataset,
) -> Result<serde_json::Value> {
    use quarry_core::answer::rerank::ModelReranker;
    let generator = crate::commands::ask::load_generator(ctx, Some(model))?;
    let name = generator.name().to_string();
    let mut reranker = ModelReranker::new(generator, args.rerank_depth, 0.0)?;
    let opts = SearchOptions {
        mode: SearchMode::Hybrid,
        fusion: args.fusion.config()?,
        ..Default::default()
    };
    let mut lines = serde_json::Map::new();
    for &w in &args.rerank_weights {
        reranker.set_first_stage_weight(w);
        let search = HybridSearch::new(library, Some(embedder))?
            .with_history(quarry_core::retrieve::search::HistoryUse::Session)
            .with_reranker(&reranker);
        let scores = evaluate(&search, queries, &data.qrels, &opts).await?;
        let (spent, judged) = reranker.spent();
        if !args.json {
            println!(
                "rerank  nDCG@10 {:.4}  R@10 {:.4}  MRR@10 {:.4}  first-stage weight {w}  \
                 ({name}, top {} chunks; {:.0} ms per passage, {:.1} s per query so far)",
                scores.ndcg10,
                scores.recall10,
                scores.mrr10,
                args.rerank_depth,
                spent.as_secs_f64() * 1e3 / judged.max(1) as f64,
                spent.as_secs_f64() / queries.len().max(1) as f64,
            );
        }
        let mut v = serde_json::to_value(&scores)?;
        v["model"] = name.clone().into();
        v["depth"] = args.rerank_depth.into();
        v["model_seconds_per_query"] = (spent.as_secs_f64() / queries.len().max(1) as f64).into();
        lines.insert(format!("weight {w}"), v);
    }
    Ok(serde_json::Value::Object(lines))
}

/// `--synthetic N`: the modes on the user's own library, with questions the
/// local model writes from N of its passages.
async fn eval_synthetic(ctx: &Context, args: &EvalArgs, n: usize) -> Result<()> {
    use quarry_core::eval::synthetic::{sample_passages, score_modes, write_questions, CAVEAT};
    if n == 0 {
        anyhow::bail!("--synthetic needs at least one question");
    }
    let dir = ctx.library_dir(args.library.clone());
    let library = Library::open(&dir).await?;
    let embedder = ctx.load_embedder(&library.meta().embedder)?;
    let passages = sample_passages(&library, n).await?;
    if passages.is_empty() {
        anyhow::bail!(
            "the library at {} has no passage of 200 characters or more to write a question from: index some documents first",
            dir.display()
        );
    }
    let mut model = crate::commands::ask::load_generator(ctx, args.model.as_deref())?;
    let started = std::time::Instant::now();
    let quiet = args.json;
    let total = passages.len();
    let questions = write_questions(&mut model, &passages, &mut |i, q| {
        if !quiet {
            match q {
                Some(q) => eprintln!("[{}/{total}] {q}", i + 1),
                None => eprintln!("[{}/{total}] (no usable question; left out)", i + 1),
            }
        }
    })?;
    let seconds = started.elapsed().as_secs_f64();
    if questions.is_empty() {
        anyhow::bail!("the model wrote no usable question from {total} passages");
    }
    let search = HybridSearch::new(&library, Some(&embedder))?
        .with_history(quarry_core::retrieve::search::HistoryUse::Session);
    let template = SearchOptions {
        fusion: args.fusion.config()?,
        ..Default::default()
    };
    let scores = score_modes(&search, &questions, &args.modes, &template).await?;
    if args.json {
        let mut modes = serde_json::Map::new();
        for (mode, s) in &scores {
            modes.insert(
                serde_json::to_value(mode)?.as_str().unwrap_or("?").into(),
                serde_json::to_value(s)?,
            );
        }
        let out = serde_json::json!({
            "questions": questions,
            "passages": total,
            "model": model.name(),
            "writing_seconds": seconds,
            "modes": modes,
            "caveat": CAVEAT,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{} questions written by {} from {total} passages of {total} documents in {seconds:.0} s",
        questions.len(),
        model.name()
    );
    for (mode, s) in &scores {
        let name = serde_json::to_value(mode)?
            .as_str()
            .unwrap_or("?")
            .to_string();
        println!(
            "{name:<8} nDCG@10 {:.3}  R@10 {:.3}  MRR@10 {:.3}  p50 {:.1} ms",
            s.ndcg10, s.recall10, s.mrr10, s.p50_ms
        );
    }
    println!("\n{}", textwrap_plain(CAVEAT, 78));
    Ok(())
}

/// `text` wrapped at `width` columns on spaces.
fn textwrap_plain(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        if line > 0 && line + 1 + word.len() > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.len();
    }
    out
}

/// Write each query's keyword and vector rankings to `path` as JSON lines.
async fn dump_runs(
    search: &HybridSearch<'_>,
    queries: &[quarry_core::eval::Query],
    path: &std::path::Path,
) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for q in queries {
        let mut line = serde_json::json!({"id": q.id, "query": q.text});
        for (name, mode) in [
            ("keyword", SearchMode::Keyword),
            ("vector", SearchMode::Vector),
        ] {
            let opts = SearchOptions {
                mode,
                k: 150,
                ..Default::default()
            };
            let hits = search.search(&q.text, &opts).await?.hits;
            line[name] = hits
                .iter()
                .map(|h| {
                    let doc = quarry_core::eval::corpus_id_of(&h.path);
                    serde_json::json!([doc, h.chunk_id, h.score])
                })
                .collect();
        }
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

/// The library of a dataset's corpus under `work` (written out as files and
/// indexed incrementally, so re-runs are quick), with the index report.
pub(crate) async fn dataset_library(
    data: &Dataset,
    work: &std::path::Path,
    embedder: &quarry_core::Embedder,
) -> Result<(Library, quarry_core::IndexReport)> {
    let corpus_dir = data.write_corpus(&work.join("corpus"))?;
    // One library per embedder, so comparing embedders on a dataset keeps both.
    let lib_dir = work.join(format!("library-{}", embedder.id()));
    let mut library = Library::open_or_create(&lib_dir, embedder.id(), embedder.dim()).await?;
    let report = index_quietly(&mut library, &corpus_dir, embedder).await?;
    Ok((library, report))
}

/// Index a dataset's corpus folder without progress output.
pub(crate) async fn index_quietly(
    library: &mut Library,
    corpus_dir: &std::path::Path,
    embedder: &quarry_core::Embedder,
) -> Result<quarry_core::IndexReport> {
    Ok(quarry_core::ingest::index(
        library,
        &[corpus_dir.to_path_buf()],
        embedder,
        &IndexOptions::default(),
        &mut |_| {},
    )
    .await?)
}

/// `--extract`: fill the set's schema from its documents and score each field.
async fn eval_extraction(ctx: &Context, args: EvalArgs) -> Result<()> {
    use quarry_core::eval::extraction::{score, ExtractionSet};
    use quarry_core::tasks::extract::ExtractOptions;
    use quarry_core::tasks::results::ResultStore;

    let dataset = args.dataset.clone().context("--dataset is required")?;
    let set =
        ExtractionSet::load(&dataset).with_context(|| format!("reading {}", dataset.display()))?;
    let work = work_dir(ctx, &dataset, args.work.clone());
    let embedder = ctx.load_embedder(&ctx.default_embedder()?)?;
    let mut library =
        Library::open_or_create(&work.join("library"), embedder.id(), embedder.dim()).await?;
    let docs_dir = set.dir.join("docs").canonicalize()?;
    index_quietly(&mut library, &docs_dir, &embedder).await?;
    let wanted: Vec<String> = set
        .labelled
        .iter()
        .take(args.queries.unwrap_or(usize::MAX))
        .map(|l| set.doc_path(l).to_string_lossy().to_string())
        .collect();
    let docs: Vec<_> = quarry_core::tasks::select_documents(&library, &Default::default(), &[])
        .await?
        .into_iter()
        .filter(|d| wanted.contains(&d.path))
        .collect();
    let mut model = crate::commands::ask::load_generator(ctx, args.model.as_deref())?;
    let model_key = ctx.store.generator_name(args.model.as_deref())?;
    let mut store = ResultStore::open(library.dir(), &set.schema, &model_key)?;
    let search = HybridSearch::new(&library, Some(&embedder))?
        .with_history(quarry_core::retrieve::search::HistoryUse::Read);
    let never = std::sync::atomic::AtomicBool::new(false);
    let quiet = args.json;
    let (rows, summary) = quarry_core::tasks::extract_all(
        &search,
        &mut model,
        &set.schema,
        &docs,
        &mut store,
        &ExtractOptions::default(),
        &never,
        &mut |e| {
            if let quarry_core::tasks::ExtractEvent::Document(d) = e {
                if !quiet {
                    eprintln!(
                        "[{}/{}] {} ({} ms)",
                        d.done, d.total, d.fields.path, d.fields.ms
                    );
                }
            }
        },
    )
    .await?;
    let scores = score(&set, &rows);
    let fresh: Vec<_> = rows
        .iter()
        .filter(|r| r.error.is_none() && r.ms > 0)
        .collect();
    let ms: u64 = fresh.iter().map(|r| r.ms).sum();
    let docs_per_min = if ms == 0 {
        0.0
    } else {
        fresh.len() as f64 * 60_000.0 / ms as f64
    };
    let prompt_p50 = {
        let mut p: Vec<usize> = fresh.iter().map(|r| r.prompt_tokens).collect();
        p.sort_unstable();
        p.get(p.len() / 2).copied().unwrap_or(0)
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "model": model.name(),
                "documents": rows.len(),
                "failed": summary.failed,
                "documents_per_minute": docs_per_min,
                "prompt_tokens_p50": prompt_p50,
                "fields": scores,
            }))?
        );
        return Ok(());
    }
    println!(
        "extraction ({} documents, {}): {:.2} documents/min, prompt p50 {prompt_p50} tokens, {} failed",
        rows.len(),
        model.name(),
        docs_per_min,
        summary.failed
    );
    println!(
        "{:<20} {:>8} {:>8} {:>10} {:>10} {:>10}",
        "field", "accuracy", "overlap", "precision", "unverified", "verif.prec"
    );
    for s in &scores {
        println!(
            "{:<20} {:>8.3} {:>8.3} {:>10.3} {:>10.3} {:>10.3}",
            s.field, s.accuracy, s.overlap, s.precision, s.unverified_share, s.verified_precision
        );
    }
    Ok(())
}
