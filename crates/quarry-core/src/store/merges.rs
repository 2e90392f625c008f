//! How the keyword index merges its segments: tantivy's log merge policy with
//! a cap on the size of what a merge produces.
//!
//! tantivy merges segments of similar size, eight at a time. Its own
//! `max_docs_before_merge` only stops large segments from being merged
//! *again*: eight segments just under it still merge into one eight times
//! larger. Indexing 1 GB of text, the merge that produced a 1.1 M-chunk
//! segment took the process from 0.7 GB to 1.5 GB for its duration. Here a
//! merge never produces more than [`BoundedMerges`]' cap, so the memory it
//! takes is bounded whatever the size of the library; search over a few more
//! segments costs next to nothing.

use std::collections::HashMap;

use tantivy::index::SegmentId;
use tantivy::merge_policy::{LogMergePolicy, MergeCandidate, MergePolicy};
use tantivy::SegmentMeta;

/// Log merges, each producing at most `max_docs` chunks.
#[derive(Debug)]
pub struct BoundedMerges {
    inner: LogMergePolicy,
    max_docs: u32,
}

impl BoundedMerges {
    /// A policy whose merges produce at most `max_docs` chunks. Segments of
    /// more than half that are left alone, so any two segments it may merge
    /// fit under the cap together.
    pub fn new(max_docs: u32) -> Self {
        let mut inner = LogMergePolicy::default();
        inner.set_max_docs_before_merge((max_docs / 2) as usize);
        Self { inner, max_docs }
    }
}

impl MergePolicy for BoundedMerges {
    fn compute_merge_candidates(&self, segments: &[SegmentMeta]) -> Vec<MergeCandidate> {
        let docs: HashMap<SegmentId, u32> =
            segments.iter().map(|s| (s.id(), s.num_docs())).collect();
        self.inner
            .compute_merge_candidates(segments)
            .into_iter()
            .filter_map(|MergeCandidate(ids)| {
                let kept = within_cap(ids, |id| docs.get(id).copied(), self.max_docs);
                (kept.len() >= 2).then_some(MergeCandidate(kept))
            })
            .collect()
    }
}

/// The smallest of `ids` whose chunks add up to at most `cap` (the others
/// wait for a later merge).
fn within_cap<T>(mut ids: Vec<T>, docs: impl Fn(&T) -> Option<u32>, cap: u32) -> Vec<T> {
    ids.sort_by_key(|id| docs(id).unwrap_or(u32::MAX));
    let mut total = 0u32;
    ids.into_iter()
        .take_while(|id| match docs(id) {
            Some(d) if total.saturating_add(d) <= cap => {
                total += d;
                true
            }
            _ => false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::schema::{Schema, TEXT};
    use tantivy::Index;

    #[test]
    fn a_merge_takes_the_smallest_segments_that_fit_under_the_cap() {
        let sizes = [50u32, 10, 40, 30, 20];
        let kept = within_cap((0..sizes.len()).collect(), |&i| sizes.get(i).copied(), 100);
        assert_eq!(kept, vec![1, 4, 3, 2]); // 10 + 20 + 30 + 40 = 100
        assert!(within_cap(vec![0usize], |_| Some(101), 100).is_empty());
        assert!(within_cap(vec![0usize], |_| None, 100).is_empty());
    }

    #[test]
    fn eight_segments_under_the_log_policys_limit_no_longer_merge_into_one_giant() {
        let mut schema = Schema::builder();
        schema.add_text_field("text", TEXT);
        let index = Index::create_in_ram(schema.build());
        let segment = |docs: u32| index.new_segment_meta(SegmentId::generate_random(), docs);
        let cap = 300_000;
        let policy = BoundedMerges::new(cap);

        // Eight segments of 140k chunks: tantivy's policy (with the same
        // limit on what it merges) makes one of 1.12 M; here a merge stays
        // under the cap.
        let eight: Vec<SegmentMeta> = (0..8).map(|_| segment(140_000)).collect();
        let mut log = LogMergePolicy::default();
        log.set_max_docs_before_merge((cap / 2) as usize);
        let unbounded = log.compute_merge_candidates(&eight);
        assert_eq!(unbounded.len(), 1);
        assert_eq!(unbounded[0].0.len(), 8);
        let bounded = policy.compute_merge_candidates(&eight);
        assert_eq!(bounded.len(), 1);
        assert_eq!(bounded[0].0.len(), 2);

        // Many small segments still merge, as many as fit.
        let small: Vec<SegmentMeta> = (0..10).map(|_| segment(2_000)).collect();
        let merged = policy.compute_merge_candidates(&small);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].0.len(), 10);

        // Segments over half the cap are never merged again.
        let large: Vec<SegmentMeta> = (0..8).map(|_| segment(cap / 2 + 1)).collect();
        assert!(policy.compute_merge_candidates(&large).is_empty());
    }
}
