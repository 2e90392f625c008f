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
    #[arg(long)]
    dataset: PathBuf,
    /// Comma-separated modes.
    #[arg(long, default_value = "keyword,vector,hybrid", value_delimiter = ',')]
    modes: Vec<SearchMode>,
    /// Evaluate N queries spread evenly over the dataset (all by default).
    #[arg(long, visible_alias = "limit")]
    queries: Option<usize>,
    /// Working folder for the corpus files and the library (kept, so re-runs are incremental).
    #[arg(long)]
    work: Option<PathBuf>,
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
    #[arg(long, default_value_t = 5)]
    sources: usize,
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
    /// Print JSON.
    #[arg(long)]
    json: bool,
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
    if args.extract {
        return eval_extraction(ctx, args).await;
    }
    let data = Dataset::load(&args.dataset)
        .with_context(|| format!("reading {}", args.dataset.display()))?;
    let work = work_dir(ctx, &args.dataset, args.work);
    let embedder = ctx.load_embedder(&ctx.default_embedder()?)?;
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
    let search = HybridSearch::new(&library, Some(&embedder))?;
    let mut out = serde_json::Map::new();
    if args.answers {
        let mut model = crate::commands::ask::load_generator(ctx, args.model.as_deref())?;
        let mut opts = quarry_core::answer::AnswerOptions {
            sources: args.sources,
            ..Default::default()
        };
        opts.trim.chars = args.source_chars;
        opts.generate.max_tokens = args.max_tokens;
        opts.generate.lookup = !args.no_lookup;
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
        out.insert(name, serde_json::to_value(scores)?);
    }
    if args.abstention {
        let a = serde_json::to_value(abstention(&data, queries, &work, &embedder).await?)?;
        if !args.json {
            println!(
                "abstention: best threshold {:.2} (keeps {:.1}% of answerable, declines {:.1}% of unanswerable); \
                 threshold keeping 95% of answerable {:.2} (declines {:.1}%)",
                a["threshold"].as_f64().unwrap_or(0.0),
                a["answerable_kept"].as_f64().unwrap_or(0.0) * 100.0,
                a["unanswerable_declined"].as_f64().unwrap_or(0.0) * 100.0,
                a["threshold_95"].as_f64().unwrap_or(0.0),
                a["declined_at_95"].as_f64().unwrap_or(0.0) * 100.0,
            );
        }
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

/// The library of a dataset's corpus under `work` (written out as files and
/// indexed incrementally, so re-runs are quick), with the index report.
pub(crate) async fn dataset_library(
    data: &Dataset,
    work: &std::path::Path,
    embedder: &quarry_core::Embedder,
) -> Result<(Library, quarry_core::IndexReport)> {
    let corpus_dir = data.write_corpus(&work.join("corpus"))?;
    let mut library =
        Library::open_or_create(&work.join("library"), embedder.id(), embedder.dim()).await?;
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

    let set = ExtractionSet::load(&args.dataset)
        .with_context(|| format!("reading {}", args.dataset.display()))?;
    let work = work_dir(ctx, &args.dataset, args.work.clone());
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
    let search = HybridSearch::new(&library, Some(&embedder))?;
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
