//! Evaluation. Here: retrieval on BEIR-layout datasets (corpus.jsonl,
//! queries.jsonl, qrels/test.tsv): nDCG@10, Recall@10, Recall@100, MRR@10 and
//! latency. [`answers`]: answer quality; [`scale`]: synthetic scale runs.

pub mod answers;
pub mod extraction;
pub mod scale;
pub mod synthetic;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::ingest::index::IndexOptions;
use crate::retrieve::search::{HybridSearch, SearchMode, SearchOptions};
use crate::store::library::Library;

/// One corpus entry.
#[derive(Debug, Clone, Deserialize)]
pub struct CorpusDoc {
    /// Id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Title (may be empty).
    #[serde(default)]
    pub title: String,
    /// Text.
    pub text: String,
}

/// One query.
#[derive(Debug, Clone, Deserialize)]
pub struct Query {
    /// Id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Text.
    pub text: String,
    /// Gold answers (SQuAD-style datasets).
    #[serde(default)]
    pub answers: Vec<String>,
}

/// A BEIR dataset in memory.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Corpus.
    pub corpus: Vec<CorpusDoc>,
    /// Queries that have relevance judgements.
    pub queries: Vec<Query>,
    /// query id → relevant corpus ids (with grade).
    pub qrels: HashMap<String, HashMap<String, u32>>,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text = fs_err::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| Error::InvalidInput(format!("{}:{}: {e}", path.display(), i + 1)))
        })
        .collect()
}

impl Dataset {
    /// Load a BEIR folder.
    pub fn load(dir: &Path) -> Result<Self> {
        let corpus: Vec<CorpusDoc> = read_jsonl(&dir.join("corpus.jsonl"))?;
        let queries: Vec<Query> = read_jsonl(&dir.join("queries.jsonl"))?;
        let mut qrels: HashMap<String, HashMap<String, u32>> = HashMap::new();
        let qrels_path = dir.join("qrels/test.tsv");
        for (i, line) in fs_err::read_to_string(&qrels_path)?.lines().enumerate() {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 3 || (i == 0 && cols[2].parse::<u32>().is_err()) {
                continue;
            }
            let grade: u32 = cols[2].trim().parse().unwrap_or(0);
            if grade > 0 {
                qrels
                    .entry(cols[0].to_string())
                    .or_default()
                    .insert(cols[1].to_string(), grade);
            }
        }
        let queries = queries
            .into_iter()
            .filter(|q| qrels.contains_key(&q.id))
            .collect();
        Ok(Dataset {
            corpus,
            queries,
            qrels,
        })
    }

    /// Write each corpus entry as `<id>.txt` (title, blank line, text) under `dir`,
    /// leaving files whose content is already right untouched (so re-runs are
    /// incremental). Returns the folder.
    pub fn write_corpus(&self, dir: &Path) -> Result<PathBuf> {
        fs_err::create_dir_all(dir)?;
        for d in &self.corpus {
            let name: String =
                d.id.chars()
                    .map(|c| {
                        if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
            let path = dir.join(format!("{name}.txt"));
            let body = if d.title.is_empty() {
                d.text.clone()
            } else {
                format!("{}\n\n{}", d.title, d.text)
            };
            if std::fs::read_to_string(&path).ok().as_deref() != Some(body.as_str()) {
                fs_err::write(&path, body)?;
            }
        }
        Ok(dir.to_path_buf())
    }
}

/// Corpus id of a hit's path (the file stem written by [`Dataset::write_corpus`]).
pub fn corpus_id_of(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// nDCG@k with graded relevance (gain 2^rel - 1, log2 discount).
pub fn ndcg_at(ranked: &[String], rel: &HashMap<String, u32>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, id)| {
            let g = rel.get(id).copied().unwrap_or(0);
            (2f64.powi(g as i32) - 1.0) / ((i + 2) as f64).log2()
        })
        .sum();
    let mut ideal: Vec<u32> = rel.values().copied().collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, &g)| (2f64.powi(g as i32) - 1.0) / ((i + 2) as f64).log2())
        .sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

/// Fraction of relevant ids found in the first k.
pub fn recall_at(ranked: &[String], rel: &HashMap<String, u32>, k: usize) -> f64 {
    if rel.is_empty() {
        return 0.0;
    }
    let found = ranked
        .iter()
        .take(k)
        .filter(|id| rel.contains_key(*id))
        .count();
    found as f64 / rel.len() as f64
}

/// Reciprocal rank of the first relevant id within the first k.
pub fn mrr_at(ranked: &[String], rel: &HashMap<String, u32>, k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|id| rel.contains_key(id))
        .map(|p| 1.0 / (p + 1) as f64)
        .unwrap_or(0.0)
}

/// Scores of one mode.
#[derive(Debug, Clone, Serialize)]
pub struct ModeScores {
    /// nDCG@10.
    #[serde(rename = "ndcg@10")]
    pub ndcg10: f64,
    /// Recall@10.
    #[serde(rename = "recall@10")]
    pub recall10: f64,
    /// Recall@100.
    #[serde(rename = "recall@100")]
    pub recall100: f64,
    /// MRR@10.
    #[serde(rename = "mrr@10")]
    pub mrr10: f64,
    /// Median query latency, ms.
    pub p50_ms: f64,
    /// 95th percentile query latency, ms.
    pub p95_ms: f64,
    /// Queries run.
    pub queries: usize,
}

/// Percentile of durations in ms (nearest rank).
pub fn percentile_ms(d: &mut [Duration], p: f64) -> f64 {
    if d.is_empty() {
        return 0.0;
    }
    d.sort_unstable();
    let idx = ((p / 100.0) * d.len() as f64).ceil() as usize;
    d[idx.clamp(1, d.len()) - 1].as_secs_f64() * 1000.0
}

/// Run `queries` in `opts.mode` and score the document rankings.
pub async fn evaluate(
    search: &HybridSearch<'_>,
    queries: &[Query],
    qrels: &HashMap<String, HashMap<String, u32>>,
    opts: &SearchOptions,
) -> Result<ModeScores> {
    evaluate_by(search, queries, qrels, opts, corpus_id_of).await
}

/// [`evaluate`] with documents named by `id_of(path)` in `qrels`.
pub async fn evaluate_by(
    search: &HybridSearch<'_>,
    queries: &[Query],
    qrels: &HashMap<String, HashMap<String, u32>>,
    opts: &SearchOptions,
    id_of: impl Fn(&str) -> String,
) -> Result<ModeScores> {
    let mut sums = [0f64; 4];
    let mut latencies = Vec::with_capacity(queries.len());
    let mut opts = opts.clone();
    // Chunks, not documents, come back: ask for enough to fill 100 documents.
    opts.k = opts.k.max(150);
    if opts.mode == SearchMode::Hybrid {
        opts.fusion.depth = opts.fusion.depth.max(opts.k);
    }
    for q in queries {
        let t = Instant::now();
        let results = search.search(&q.text, &opts).await?;
        latencies.push(t.elapsed());
        let mut seen = HashSet::new();
        let ranked: Vec<String> = results
            .hits
            .iter()
            .map(|h| id_of(&h.path))
            .filter(|id| seen.insert(id.clone()))
            .take(100)
            .collect();
        let rel = &qrels[&q.id];
        sums[0] += ndcg_at(&ranked, rel, 10);
        sums[1] += recall_at(&ranked, rel, 10);
        sums[2] += recall_at(&ranked, rel, 100);
        sums[3] += mrr_at(&ranked, rel, 10);
    }
    let n = queries.len().max(1) as f64;
    Ok(ModeScores {
        ndcg10: sums[0] / n,
        recall10: sums[1] / n,
        recall100: sums[2] / n,
        mrr10: sums[3] / n,
        p50_ms: percentile_ms(&mut latencies, 50.0),
        p95_ms: percentile_ms(&mut latencies, 95.0),
        queries: queries.len(),
    })
}

/// How well the best-hit similarity separates answerable questions from
/// questions whose article is not in the library.
#[derive(Debug, Clone, Serialize)]
pub struct Abstention {
    /// Questions whose paragraph is in the library.
    pub answerable_questions: usize,
    /// Questions whose article is absent.
    pub unanswerable_questions: usize,
    /// Threshold maximising kept + declined rates.
    pub threshold: f32,
    /// Share of answerable questions at or above `threshold`.
    pub answerable_kept: f64,
    /// Share of unanswerable questions below `threshold`.
    pub unanswerable_declined: f64,
    /// Highest threshold that keeps 95% of answerable questions.
    pub threshold_95: f32,
    /// Share of unanswerable questions declined at `threshold_95`.
    pub declined_at_95: f64,
    /// Share of answerable questions the default rule answers (similarity
    /// at the library's floor, or keyword evidence at its default).
    pub default_answerable_kept: f64,
    /// Share of unanswerable questions the default rule declines.
    pub default_unanswerable_declined: f64,
    /// The half library's floor (see [`crate::answer::floor`]).
    pub library_floor: f32,
    /// The registry's floor for the embedder.
    pub registry_floor: f32,
    /// The half library's baseline.
    pub baseline: Option<crate::answer::floor::Baseline>,
    /// The same two shares at the registry's floor for the embedder.
    pub registry_answerable_kept: f64,
    /// Share of unanswerable questions declined at the registry's floor.
    pub registry_unanswerable_declined: f64,
}

/// How `--abstention` halves a corpus: the key that groups a document with
/// the others of its article (its title; its id when the documents share
/// one title or none), and the keys of the half that is indexed.
fn halves(
    corpus: &[CorpusDoc],
) -> (
    impl Fn(&CorpusDoc) -> String,
    std::collections::BTreeSet<String>,
) {
    use std::collections::BTreeSet;
    let titles: BTreeSet<&str> = corpus.iter().map(|d| d.title.as_str()).collect();
    let by_title = titles.len() > 1;
    let group = move |d: &CorpusDoc| -> String {
        if by_title {
            d.title.clone()
        } else {
            d.id.clone()
        }
    };
    let groups: BTreeSet<String> = corpus.iter().map(&group).collect();
    let kept = groups.into_iter().step_by(2).collect();
    (group, kept)
}

/// Best-hit similarity of questions asked against a library that has their
/// article vs one that lacks it, and the threshold that separates them best.
pub async fn abstention(
    data: &Dataset,
    queries: &[Query],
    work: &std::path::Path,
    embedder: &Embedder,
) -> Result<Abstention> {
    let (group, kept) = halves(&data.corpus);
    let half = Dataset {
        corpus: data
            .corpus
            .iter()
            .filter(|d| kept.contains(&group(d)))
            .cloned()
            .collect(),
        queries: Vec::new(),
        qrels: HashMap::new(),
    };
    let dir = half.write_corpus(&work.join("half-corpus"))?;
    let mut library =
        Library::open_or_create(&work.join("half-library"), embedder.id(), embedder.dim()).await?;
    crate::ingest::index(
        &mut library,
        &[dir],
        embedder,
        &IndexOptions::default(),
        &mut |_| {},
    )
    .await?;
    let group_of: HashMap<&str, String> = data
        .corpus
        .iter()
        .map(|d| (d.id.as_str(), group(d)))
        .collect();
    let search = HybridSearch::new(&library, Some(embedder))?
        .with_history(crate::retrieve::search::HistoryUse::Session);
    let opts = SearchOptions {
        mode: SearchMode::Hybrid,
        k: 1,
        ..Default::default()
    };
    // Per question: the best similarity, and whether the default rule
    // answers, with the library's floor and with the registry's.
    let rule = crate::answer::AnswerOptions::default();
    let registry = crate::answer::similarity_floor(&rule, embedder);
    let mut own = crate::answer::floor::LibraryFloor::default();
    own.refresh(&library, embedder).await?;
    let floor = own.floor(registry);
    let (mut has, mut lacks) = (Vec::new(), Vec::new());
    let (mut has_answered, mut lacks_answered) = (0usize, 0usize);
    let (mut has_registry, mut lacks_registry) = (0usize, 0usize);
    for q in queries {
        let Some(doc) = data.qrels.get(&q.id).and_then(|r| r.keys().next()) else {
            continue;
        };
        let Some(group) = group_of.get(doc.as_str()) else {
            continue;
        };
        let results = search.search(&q.text, &opts).await?;
        let sim = results.best_similarity.unwrap_or(0.0);
        let evidence = results.keyword_evidence.unwrap_or(0.0);
        let answered = crate::answer::about_the_library(sim, floor, evidence, &rule);
        let by_registry = crate::answer::about_the_library(sim, registry, evidence, &rule);
        if kept.contains(group) {
            has.push(sim);
            has_answered += usize::from(answered);
            has_registry += usize::from(by_registry);
        } else {
            lacks.push(sim);
            lacks_answered += usize::from(answered);
            lacks_registry += usize::from(by_registry);
        }
    }
    let rate = |v: &[f32], t: f32, above: bool| {
        v.iter().filter(|&&s| (s >= t) == above).count() as f64 / v.len().max(1) as f64
    };
    let mut best = (0.0f32, -1.0f64);
    let mut t95 = 0.0f32;
    for i in 0..=100 {
        let t = i as f32 / 100.0;
        let j = rate(&has, t, true) + rate(&lacks, t, false);
        if j > best.1 {
            best = (t, j);
        }
        if rate(&has, t, true) >= 0.95 {
            t95 = t;
        }
    }
    Ok(Abstention {
        answerable_questions: has.len(),
        unanswerable_questions: lacks.len(),
        threshold: best.0,
        answerable_kept: rate(&has, best.0, true),
        unanswerable_declined: rate(&lacks, best.0, false),
        threshold_95: t95,
        declined_at_95: rate(&lacks, t95, false),
        default_answerable_kept: has_answered as f64 / has.len().max(1) as f64,
        default_unanswerable_declined: 1.0 - lacks_answered as f64 / lacks.len().max(1) as f64,
        library_floor: floor,
        registry_floor: registry,
        baseline: own.baseline,
        registry_answerable_kept: has_registry as f64 / has.len().max(1) as f64,
        registry_unanswerable_declined: 1.0 - lacks_registry as f64 / lacks.len().max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn abstention_halves_by_article_or_by_document() {
        let doc = |id: &str, title: &str| CorpusDoc {
            id: id.into(),
            title: title.into(),
            text: String::new(),
        };
        let titled = vec![doc("1", "A"), doc("2", "A"), doc("3", "B"), doc("4", "C")];
        let (group, kept) = halves(&titled);
        assert_eq!(group(&titled[1]), "A");
        assert_eq!(kept.into_iter().collect::<Vec<_>>(), vec!["A", "C"]);
        // One shared (empty) title: halved by document, not "all kept".
        let untitled = vec![doc("1", ""), doc("2", ""), doc("3", ""), doc("4", "")];
        let (group, kept) = halves(&untitled);
        assert_eq!(group(&untitled[2]), "3");
        assert_eq!(kept.into_iter().collect::<Vec<_>>(), vec!["1", "3"]);
    }

    #[test]
    fn metrics_match_a_hand_computed_case() {
        // Relevant: b (grade 1) and d (grade 1). Ranking: a b c d.
        let rel: HashMap<String, u32> = [("b".to_string(), 1), ("d".to_string(), 1)].into();
        let r = ids(&["a", "b", "c", "d"]);
        // DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068 = 1.06161
        // IDCG = 1/log2(2) + 1/log2(3) = 1 + 0.63093 = 1.63093
        assert!((ndcg_at(&r, &rel, 10) - 1.06161 / 1.63093).abs() < 1e-4);
        assert!((ndcg_at(&r, &rel, 2) - 0.63093 / 1.63093).abs() < 1e-4);
        assert_eq!(recall_at(&r, &rel, 2), 0.5);
        assert_eq!(recall_at(&r, &rel, 10), 1.0);
        assert_eq!(mrr_at(&r, &rel, 10), 0.5);
        assert_eq!(mrr_at(&r, &rel, 1), 0.0);
        assert_eq!(ndcg_at(&ids(&["b", "d"]), &rel, 10), 1.0);
    }

    #[test]
    fn percentiles() {
        let mut d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&mut d, 50.0), 50.0);
        assert_eq!(percentile_ms(&mut d, 95.0), 95.0);
    }
}
