//! The router: for each question, decide whether the local model answers, a
//! frontier provider does, or a cached answer is returned, and say why.
//!
//! The task classifier is a nearest-centroid model over embedded, labelled
//! example questions (`examples.jsonl`: lookups, extractions, classifications
//! and one-document summaries are `local`; multi-step reasoning, comparisons
//! across documents, synthesis and long writing are `frontier`), nudged by a
//! few cue-word rules. The example vectors are computed once per embedder and
//! cached, so a decision costs one query embedding and two dot products.
//! [`decide`] then combines the task with retrieval confidence, how much
//! context the answer needs, the privacy policy and whether a provider exists.

use std::path::Path;
use std::sync::LazyLock;
use std::time::Instant;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::embed::Embedder;
use crate::error::{Error, Result};

/// The built-in labelled examples.
const EXAMPLES: &str = include_str!("examples.jsonl");

/// Which kind of model a question needs.
#[derive(ts_rs::TS, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskLabel {
    /// A small local model can answer it from one or two passages.
    Local,
    /// It needs a frontier model (reasoning, comparison, synthesis, writing).
    Frontier,
}

/// A labelled question.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelledQuestion {
    /// The question.
    pub question: String,
    /// Its label.
    pub label: TaskLabel,
    /// Finer kind (lookup, extraction, comparison, ...).
    #[serde(default)]
    pub kind: String,
}

/// Parse JSON-lines labelled questions.
pub fn parse_labelled(text: &str) -> Result<Vec<LabelledQuestion>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| Error::InvalidInput(format!("labelled question {}: {e}", i + 1)))
        })
        .collect()
}

/// The classifier's verdict on one question.
#[derive(ts_rs::TS, Debug, Clone, Serialize, Deserialize)]
pub struct TaskVerdict {
    /// The label.
    pub label: TaskLabel,
    /// Margin for `frontier` (positive) over `local` (negative).
    pub score: f32,
    /// The cue rule that moved the score, if any.
    pub cue: Option<String>,
    /// Milliseconds the classification took (embedding included).
    pub ms: f64,
}

struct Cue {
    re: Regex,
    weight: f32,
    name: &'static str,
}

/// Cue words: strong hints of what a question asks for. Weights are small
/// next to the centroid margin's range, so they break ties rather than decide.
static CUES: LazyLock<Vec<Cue>> = LazyLock::new(|| {
    let cue = |p: &str, weight: f32, name: &'static str| Cue {
        re: Regex::new(p).expect("cue pattern"),
        weight,
        name,
    };
    vec![
        cue(
            r"(?i)\b(compare|comparison|contrast|versus|vs\.?|differences? between|how do .+ differ)\b",
            0.06,
            "comparison",
        ),
        cue(
            r"(?i)\b(across (all|every|the)|all (the |our )?(documents|files|reports|papers|notes|emails|e-mails|minutes)|every (document|report|file)|recurring|common themes|over time|trends?)\b",
            0.06,
            "across documents",
        ),
        cue(
            r"(?i)\b(why|implications?|recommend|should (we|i)|what if|would (happen|change)|pros and cons|trade-?offs?|assess|evaluate|critique|justify|argue|strategy|plan)\b",
            0.04,
            "reasoning",
        ),
        cue(
            r"(?i)\b(write|draft|compose|prepare) (a|an|the|me)\b|\b(essay|briefing|report on|memo to|outline)\b",
            0.05,
            "writing",
        ),
        cue(
            r"(?i)^\s*(who|when|where|which|what (year|date|day|time|percentage|number|is the name)|how (many|much|long|old|far|tall))\b",
            -0.04,
            "lookup",
        ),
    ]
});

/// Nearest-centroid task classifier over embedded example questions.
pub struct TaskClassifier {
    local: Vec<f32>,
    frontier: Vec<f32>,
}

#[derive(Serialize, Deserialize)]
struct CentroidCache {
    embedder: String,
    examples_sha256: String,
    local: Vec<f32>,
    frontier: Vec<f32>,
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl TaskClassifier {
    /// Build from labelled examples embedded with `embedder`.
    pub fn train(embedder: &Embedder, examples: &[LabelledQuestion]) -> Result<Self> {
        let texts: Vec<String> = examples.iter().map(|e| e.question.clone()).collect();
        let vectors = embedder.embed_raw(&texts)?;
        let dim = embedder.dim();
        let mut local = vec![0f32; dim];
        let mut frontier = vec![0f32; dim];
        for (e, v) in examples.iter().zip(&vectors) {
            let c = match e.label {
                TaskLabel::Local => &mut local,
                TaskLabel::Frontier => &mut frontier,
            };
            c.iter_mut().zip(v).for_each(|(a, b)| *a += b);
        }
        if local.iter().all(|x| *x == 0.0) || frontier.iter().all(|x| *x == 0.0) {
            return Err(Error::InvalidInput(
                "the router needs examples of both labels".into(),
            ));
        }
        normalize(&mut local);
        normalize(&mut frontier);
        Ok(TaskClassifier { local, frontier })
    }

    /// The built-in classifier for `embedder`, its centroids cached under
    /// `cache_dir` (computed on first use, about 120 short embeddings).
    pub fn builtin(embedder: &Embedder, cache_dir: &Path) -> Result<Self> {
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(EXAMPLES.as_bytes()));
        let path = cache_dir.join(format!("router-{}.json", embedder.id()));
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(c) = serde_json::from_str::<CentroidCache>(&text) {
                if c.embedder == embedder.id()
                    && c.examples_sha256 == sha
                    && c.local.len() == embedder.dim()
                {
                    return Ok(TaskClassifier {
                        local: c.local,
                        frontier: c.frontier,
                    });
                }
            }
        }
        let classifier = Self::train(embedder, &parse_labelled(EXAMPLES)?)?;
        let cache = CentroidCache {
            embedder: embedder.id().to_string(),
            examples_sha256: sha,
            local: classifier.local.clone(),
            frontier: classifier.frontier.clone(),
        };
        // A cache that cannot be written only costs time next run.
        if fs_err::create_dir_all(cache_dir).is_ok() {
            let _ = crate::fsio::write_atomically(&path, &serde_json::to_vec(&cache)?);
        }
        Ok(classifier)
    }

    /// Classify a question given its embedding.
    pub fn classify_vector(&self, question: &str, vector: &[f32]) -> TaskVerdict {
        let mut score = dot(vector, &self.frontier) - dot(vector, &self.local);
        let mut cue = None;
        let mut strongest = 0f32;
        for c in CUES.iter() {
            if c.re.is_match(question) {
                score += c.weight;
                if c.weight.abs() > strongest {
                    strongest = c.weight.abs();
                    cue = Some(c.name.to_string());
                }
            }
        }
        TaskVerdict {
            label: if score > 0.0 {
                TaskLabel::Frontier
            } else {
                TaskLabel::Local
            },
            score,
            cue,
            ms: 0.0,
        }
    }

    /// Classify a question (embeds it).
    pub fn classify(&self, embedder: &Embedder, question: &str) -> Result<TaskVerdict> {
        let started = Instant::now();
        let v = embedder.embed_raw(&[question.to_string()])?;
        let mut verdict = self.classify_vector(question, &v[0]);
        verdict.ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(verdict)
    }
}

/// A per-question override of the router.
#[derive(ts_rs::TS, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteOverride {
    /// Let the router decide.
    #[default]
    Auto,
    /// Always the local model.
    Local,
    /// The provider, if the privacy policy allows it.
    Cloud,
}

impl std::str::FromStr for RouteOverride {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(RouteOverride::Auto),
            "local" => Ok(RouteOverride::Local),
            "cloud" => Ok(RouteOverride::Cloud),
            o => Err(Error::InvalidInput(format!(
                "unknown route '{o}' (use local, cloud or auto)"
            ))),
        }
    }
}

/// Where a question goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The local model.
    Local,
    /// The configured provider.
    Cloud,
}

/// What [`decide`] looks at.
#[derive(Debug, Clone)]
pub struct RouteInputs<'a> {
    /// The per-question override.
    pub requested: RouteOverride,
    /// The task classifier's verdict (absent when no classifier ran).
    pub verdict: Option<&'a TaskVerdict>,
    /// Best vector similarity of the retrieved passages.
    pub best_similarity: f32,
    /// Retrieved sources that did not fit the local model's prompt budget.
    pub sources_left_out: usize,
    /// Whether the privacy policy lets text leave (and why not, if not).
    pub egress: std::result::Result<(), String>,
    /// The provider's name, when one is configured.
    pub provider: Option<&'a str>,
}

/// Below this best similarity, retrieval is uncertain enough that a stronger
/// model's judgement is worth asking for (above the relevance floor).
pub const LOW_CONFIDENCE: f32 = 0.5;

/// Decide local or cloud, with the reason in words.
pub fn decide(i: &RouteInputs) -> (Target, String) {
    let wants_cloud: Option<String> = match i.requested {
        RouteOverride::Local => return (Target::Local, "--route local".into()),
        RouteOverride::Cloud => Some("--route cloud".into()),
        RouteOverride::Auto => {
            let mut why = Vec::new();
            if let Some(v) = i.verdict.filter(|v| v.label == TaskLabel::Frontier) {
                why.push(format!(
                    "the question needs a frontier model (task score {:+.2}{})",
                    v.score,
                    v.cue
                        .as_ref()
                        .map(|c| format!(", cue: {c}"))
                        .unwrap_or_default()
                ));
            }
            if i.sources_left_out > 0 {
                why.push(format!(
                    "{} relevant passages do not fit the local model's window",
                    i.sources_left_out
                ));
            }
            if i.best_similarity < LOW_CONFIDENCE && i.verdict.is_some() && !why.is_empty() {
                why.push(format!(
                    "retrieval confidence is low ({:.2})",
                    i.best_similarity
                ));
            }
            (!why.is_empty()).then(|| why.join("; "))
        }
    };
    let Some(why) = wants_cloud else {
        let task = i
            .verdict
            .map(|v| format!("a local task (score {:+.2})", v.score))
            .unwrap_or_else(|| "no classifier".into());
        return (
            Target::Local,
            format!("{task}; the sources fit the local model"),
        );
    };
    match (&i.egress, i.provider) {
        (Ok(()), Some(p)) => (Target::Cloud, format!("{why}; sent to provider '{p}'")),
        (Err(blocked), _) => (
            Target::Local,
            format!("{why}, but {blocked}; answered on this machine"),
        ),
        (Ok(()), None) => (
            Target::Local,
            format!("{why}, but no provider is configured; answered on this machine"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(label: TaskLabel, score: f32) -> TaskVerdict {
        TaskVerdict {
            label,
            score,
            cue: None,
            ms: 0.1,
        }
    }

    fn inputs<'a>(v: &'a TaskVerdict) -> RouteInputs<'a> {
        RouteInputs {
            requested: RouteOverride::Auto,
            verdict: Some(v),
            best_similarity: 0.7,
            sources_left_out: 0,
            egress: Ok(()),
            provider: Some("work"),
        }
    }

    #[test]
    fn frontier_tasks_go_to_the_provider_only_when_allowed() {
        let f = verdict(TaskLabel::Frontier, 0.08);
        let (t, why) = decide(&inputs(&f));
        assert_eq!(t, Target::Cloud);
        assert!(why.contains("frontier") && why.contains("work"), "{why}");
        let blocked = RouteInputs {
            egress: Err("privacy mode is local-only".into()),
            ..inputs(&f)
        };
        let (t, why) = decide(&blocked);
        assert_eq!(t, Target::Local);
        assert!(why.contains("local-only"), "{why}");
        let none = RouteInputs {
            provider: None,
            ..inputs(&f)
        };
        assert_eq!(decide(&none).0, Target::Local);
    }

    #[test]
    fn lookups_stay_local_unless_their_context_does_not_fit_or_cloud_is_forced() {
        let l = verdict(TaskLabel::Local, -0.1);
        assert_eq!(decide(&inputs(&l)).0, Target::Local);
        let big = RouteInputs {
            sources_left_out: 3,
            ..inputs(&l)
        };
        let (t, why) = decide(&big);
        assert_eq!(t, Target::Cloud);
        assert!(why.contains("do not fit"), "{why}");
        let forced = RouteInputs {
            requested: RouteOverride::Cloud,
            ..inputs(&l)
        };
        assert_eq!(decide(&forced).0, Target::Cloud);
        let f = verdict(TaskLabel::Frontier, 0.2);
        let local = RouteInputs {
            requested: RouteOverride::Local,
            ..inputs(&f)
        };
        assert_eq!(decide(&local), (Target::Local, "--route local".to_string()));
    }

    #[test]
    fn the_builtin_examples_parse_and_cover_both_labels() {
        let ex = parse_labelled(EXAMPLES).unwrap();
        assert!(ex.len() >= 100);
        assert!(ex.iter().any(|e| e.label == TaskLabel::Local));
        assert!(ex.iter().any(|e| e.label == TaskLabel::Frontier));
    }

    #[test]
    fn cues_nudge_the_score() {
        let c = TaskClassifier {
            local: vec![1.0, 0.0],
            frontier: vec![0.0, 1.0],
        };
        let v = [std::f32::consts::FRAC_1_SQRT_2; 2];
        assert_eq!(
            c.classify_vector("Compare the 2021 and 2023 budgets", &v)
                .label,
            TaskLabel::Frontier
        );
        assert_eq!(
            c.classify_vector("How many staff signed it?", &v).label,
            TaskLabel::Local
        );
    }
}
