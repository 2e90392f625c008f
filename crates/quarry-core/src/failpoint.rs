//! Crash injection for tests: `QUARRY_FAILPOINT=NAME:N` aborts the process
//! (no destructors, no flushes — like `kill -9`) the N-th time the code passes
//! the point `NAME`. Unset, a point costs one relaxed atomic load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

fn target() -> &'static Option<(String, usize)> {
    static T: OnceLock<Option<(String, usize)>> = OnceLock::new();
    T.get_or_init(|| {
        let v = std::env::var("QUARRY_FAILPOINT").ok()?;
        let (name, n) = v.rsplit_once(':')?;
        Some((name.to_string(), n.parse().ok()?))
    })
}

/// Abort here if the failpoint `name` is armed and this is its N-th pass.
pub(crate) fn hit(name: &str) {
    static PASSES: AtomicUsize = AtomicUsize::new(0);
    if let Some((armed, n)) = target() {
        if armed == name && PASSES.fetch_add(1, Ordering::Relaxed) + 1 == *n {
            eprintln!("failpoint {name}: aborting");
            std::process::abort();
        }
    }
}
