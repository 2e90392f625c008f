//! The "not in your documents" floor of one library: the cosine similarity
//! under which a question is taken to be about something the library does
//! not hold, and answered so without calling a model.
//!
//! The registry gives each embedder a floor chosen on labelled sets (0.40
//! for all-MiniLM-L6-v2, 0.80 for multilingual-e5). An embedder the registry
//! gives none, or a library on which the registry's floor sits under what
//! unrelated questions score, would answer questions about nothing in it.
//! So each library gets a [`Baseline`]: the best similarity it gives
//! [`PROBES`], questions about everyday things a document library is not
//! about. Where the registry's floor is under the baseline's median (it
//! would let most unrelated questions through: the embedder is on another
//! scale), the baseline's 90th percentile is the floor instead. The
//! baseline is measured at the library's first question, again when the
//! library grows or shrinks by a quarter or its embedder changes.
//!
//! The library also keeps the best similarities of its last [`MEMORY`]
//! questions, so `quarry status` can say how many fell under the floor. A
//! floor *learned* from them, lowered where a library's answerable questions
//! sit low (mailing-list mail), was measured and not kept: questions about
//! neighbouring subjects the library does not hold pull it down with them
//! (BENCHMARKS.md, issue 22). The file holds numbers only, no text, and is
//! sealed like the rest of an encrypted library.

use serde::{Deserialize, Serialize};

use crate::embed::Embedder;
use crate::store::library::Library;

/// The file in the library folder.
pub const FILE: &str = "relevance-floor.json";

/// Best similarities of this many recent questions are kept.
pub const MEMORY: usize = 100;

/// Questions about everyday things, which a library of documents is not
/// about; their best similarities are the library's baseline. Some may match
/// a library that is about them: the baseline uses the median and the 90th
/// percentile, which a few such matches do not move far.
pub const PROBES: [&str; 64] = [
    "How long should I boil an egg for a soft yolk?",
    "What is the best way to train a puppy to sit?",
    "Who won the football World Cup in 1998?",
    "What is the capital of Australia?",
    "How many calories are in a banana?",
    "What are the early symptoms of the flu?",
    "How do I get red wine out of a carpet?",
    "When is the best time to plant tomatoes?",
    "How tall is Mount Kilimanjaro?",
    "What is a good recipe for chocolate chip cookies?",
    "Which planet has the most moons?",
    "How do I change a flat tire on a bicycle?",
    "What year did the Berlin Wall fall?",
    "How often should I water a cactus?",
    "Who painted the ceiling of the Sistine Chapel?",
    "What is the speed of a cheetah?",
    "How can I improve my sleep at night?",
    "What is the plot of the novel Moby-Dick?",
    "How do you make sourdough starter?",
    "Which countries border Switzerland?",
    "What should I pack for a beach holiday?",
    "How many players are on a basketball team?",
    "Why is the sky blue?",
    "What is the difference between a crocodile and an alligator?",
    "How do I knit a scarf for beginners?",
    "Who was the first person to walk on the moon?",
    "What temperature should a steak be cooked to for medium rare?",
    "How do hummingbirds fly backwards?",
    "What are the rules of chess castling?",
    "Where do monarch butterflies migrate in winter?",
    "How much does an adult elephant weigh?",
    "What is the tallest building in the world?",
    "How do I remove rust from a cast iron pan?",
    "Which vitamins are found in oranges?",
    "What is the origin of the Olympic Games?",
    "How do I tune a guitar by ear?",
    "What causes thunder during a storm?",
    "How long does it take to fly from London to Tokyo?",
    "What are the ingredients of a margherita pizza?",
    "How do I stop my cat from scratching furniture?",
    "Who wrote the opera The Magic Flute?",
    "What is the population of Brazil?",
    "How do bees make honey?",
    "What is a good stretching routine after running?",
    "When did the Titanic sink?",
    "How do I make my houseplants grow faster?",
    "What is the deepest lake in the world?",
    "How many bones are in the human body?",
    "What are good names for a goldfish?",
    "How do I fold a paper airplane that flies far?",
    "Which team has won the most Tour de France titles?",
    "What is the recipe for French onion soup?",
    "How do volcanoes form?",
    "What is the best way to learn to swim as an adult?",
    "Who discovered penicillin?",
    "How do I clean a dishwasher filter?",
    "What do pandas eat in the wild?",
    "How far away is the moon from the earth?",
    "What are the lyrics of Happy Birthday in Spanish?",
    "How do I choose a ripe avocado?",
    "What is the longest river in Africa?",
    "How should I store fresh basil?",
    "What is the history of the croissant?",
    "How many hearts does an octopus have?",
];

/// Where questions about nothing in the library fall, for one embedder and
/// about one size of library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The embedder it was measured with.
    pub embedder: String,
    /// Chunks with their vectors when it was measured.
    pub chunks: u64,
    /// Median best similarity of [`PROBES`].
    pub median: f32,
    /// Their 90th percentile.
    pub p90: f32,
}

impl Baseline {
    /// Ask the library [`PROBES`] (by meaning only, in one batched search).
    /// `chunks`: how many chunks have their vectors now.
    pub async fn measure(
        library: &Library,
        embedder: &Embedder,
        chunks: usize,
    ) -> crate::Result<Baseline> {
        let vectors = embedder.embed_queries(&PROBES)?;
        let mut best: Vec<f32> = library
            .vectors
            .best_similarities(&vectors)
            .await?
            .into_iter()
            .flatten()
            .collect();
        best.sort_by(f32::total_cmp);
        Ok(Baseline {
            embedder: embedder.id().to_string(),
            chunks: chunks as u64,
            median: quantile(&best, 0.5),
            p90: quantile(&best, 0.9),
        })
    }

    /// Whether it still describes a library of `chunks` chunks with vectors
    /// searched with `embedder` (an id): the same embedder, and within a
    /// quarter of the chunks (so a baseline taken while indexing was
    /// embedding is taken again after).
    pub fn describes(&self, chunks: usize, embedder: &str) -> bool {
        let (now, then) = (chunks as f64, self.chunks as f64);
        self.embedder == embedder && (now - then).abs() <= 0.25 * then.max(1.0)
    }
}

/// A library's baseline and its recent questions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LibraryFloor {
    /// Measured at the first question (none before).
    pub baseline: Option<Baseline>,
    /// Best similarities of the last [`MEMORY`] questions, oldest first.
    pub recent: Vec<f32>,
}

impl LibraryFloor {
    /// The one saved in `library` (an empty one when there is none, or it
    /// cannot be read: it only moves a floor).
    pub fn load(library: &Library) -> LibraryFloor {
        let path = library.dir().join(FILE);
        match library.files().read(&path) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Ok(None) => LibraryFloor::default(),
            Err(e) => {
                tracing::debug!("{}: {e}; starting the floor afresh", path.display());
                LibraryFloor::default()
            }
        }
    }

    /// Save it in `library` (sealed when the library is encrypted).
    pub fn save(&self, library: &Library) -> crate::Result<()> {
        library
            .files()
            .write(&library.dir().join(FILE), &serde_json::to_vec(self)?)
    }

    /// Measure the baseline again unless it still describes the library.
    /// Returns whether it was measured.
    pub async fn refresh(&mut self, library: &Library, embedder: &Embedder) -> crate::Result<bool> {
        let chunks = with_vectors(library).await?;
        let current = self
            .baseline
            .as_ref()
            .is_some_and(|b| b.describes(chunks, embedder.id()));
        if current || chunks == 0 {
            return Ok(false);
        }
        self.baseline = Some(Baseline::measure(library, embedder, chunks).await?);
        Ok(true)
    }

    /// Count one more question's best similarity.
    pub fn observe(&mut self, best_similarity: f32) {
        if !best_similarity.is_finite() {
            return;
        }
        self.recent.push(best_similarity);
        if self.recent.len() > MEMORY {
            let extra = self.recent.len() - MEMORY;
            self.recent.drain(..extra);
        }
    }

    /// The floor for the next question, given the registry's (or the
    /// default) `registry` floor: that one, unless it is under the
    /// baseline's median, then the baseline's 90th percentile.
    pub fn floor(&self, registry: f32) -> f32 {
        match &self.baseline {
            Some(b) if registry < b.median => b.p90,
            _ => registry,
        }
    }

    /// How many of the recent questions scored under `floor`.
    pub fn under(&self, floor: f32) -> usize {
        self.recent.iter().filter(|&&s| s < floor).count()
    }
}

/// Chunks of `library` that have their vectors (the others wait for the
/// embedding phase).
async fn with_vectors(library: &Library) -> crate::Result<usize> {
    let all = library.vectors.count_chunks().await?;
    Ok(all.saturating_sub(library.vectors.count_pending().await?))
}

/// The `q` quantile of sorted `xs`, interpolated (0 for none).
fn quantile(xs: &[f32], q: f64) -> f32 {
    if xs.is_empty() {
        return 0.0;
    }
    let pos = q * (xs.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let frac = (pos - lo as f64) as f32;
    xs[lo] + (xs[hi] - xs[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline(median: f32, p90: f32) -> Baseline {
        Baseline {
            embedder: "e".into(),
            chunks: 100,
            median,
            p90,
        }
    }

    #[test]
    fn the_registry_floor_holds_on_its_own_scale() {
        let mut f = LibraryFloor::default();
        assert_eq!(f.floor(0.40), 0.40, "no baseline yet");
        f.baseline = Some(baseline(0.30, 0.42));
        assert_eq!(f.floor(0.40), 0.40);
    }

    #[test]
    fn an_embedder_on_another_scale_gets_the_baselines_floor() {
        // Similarities around 0.8 for everything: 0.40 would decline nothing.
        let f = LibraryFloor {
            baseline: Some(baseline(0.78, 0.82)),
            recent: Vec::new(),
        };
        assert_eq!(f.floor(0.40), 0.82);
        assert_eq!(f.floor(0.80), 0.80, "a registry floor on its scale holds");
    }

    #[test]
    fn recent_questions_are_bounded_and_counted() {
        let mut f = LibraryFloor::default();
        for i in 0..(MEMORY + 50) {
            f.observe(if i % 4 == 0 { 0.2 } else { 0.6 });
        }
        f.observe(f32::NAN);
        assert_eq!(f.recent.len(), MEMORY);
        assert_eq!(f.under(0.40), MEMORY / 4);
    }

    #[test]
    fn a_baseline_describes_its_embedder_within_a_quarter_of_its_size() {
        let b = baseline(0.3, 0.4);
        assert!(b.describes(100, "e"));
        assert!(b.describes(125, "e") && b.describes(75, "e"));
        assert!(!b.describes(126, "e") && !b.describes(74, "e"));
        assert!(!b.describes(100, "other"));
    }

    #[test]
    fn quantiles_interpolate() {
        let xs = [0.1, 0.2, 0.3, 0.4, 0.5];
        assert!((quantile(&xs, 0.5) - 0.3).abs() < 1e-6);
        assert!((quantile(&xs, 0.9) - 0.46).abs() < 1e-6);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
