#!/usr/bin/env python3
"""The "not in your documents" rule per domain, from dumped rankings
(`quarry eval --dump-runs`): for each question, the best cosine similarity
and the keyword evidence (best BM25 score over ln(1 + chunks)) of the library
as it is (answerable) and of the library without the question's relevant
documents (its best non-relevant hits: as if they were absent).

    python3 bench/retrieval/abstention.py NAME=RUNS.jsonl:QRELS.tsv:CHUNKS ... \
        [--threshold 0.40] [--keywords 1.95] [--search]

CHUNKS is the library's chunk count (`quarry status`), the N of BM25's IDF.
A question is declined when its similarity is under --threshold and its
keyword evidence under --keywords. --search lists the pairs that keep at
least as many answerable questions as the similarity floor 0.39 alone on
every set, best total of declined unanswerable first.

The last column counts only the questions whose relevant document is among
the SOURCES passages an answer reads (hybrid search, score fusion at the
starting weight 0.55): what the rule costs in answers the model could have given. A
question whose passage search does not find loses nothing by being declined.
"""
import math
import sys

from fusion_lab import cc, load, norm_z

# Passages an answer reads (`ask`'s default sources).
SOURCES = 3


def features(runs, qrels, chunks):
    """(similarity, keyword evidence) per question, with and without its
    documents; and whether a relevant document is among the passages read."""
    norm = math.log1p(chunks)
    have, absent, found = [], [], []
    for q in runs:
        rel = qrels[q["id"]]
        vec, kw = q["vector"], q["keyword"]
        have.append((vec[0][2] if vec else 0.0, kw[0][2] / norm if kw else 0.0))
        read = cc(kw, vec, 0.55, norm=norm_z)[:SOURCES]
        found.append(any(d in rel for d, _, _ in read))
        vec = [s for d, _, s in vec if d not in rel]
        kw = [s for d, _, s in kw if d not in rel]
        absent.append((vec[0] if vec else 0.0, kw[0] / norm if kw else 0.0))
    return have, absent, found


def declined(f, t, k):
    return f[0] < t and f[1] < k


def rates(have, absent, t, k):
    kept = sum(not declined(f, t, k) for f in have) / len(have)
    return kept, sum(declined(f, t, k) for f in absent) / len(absent)


def kept_where_found(have, found, t, k):
    """Share kept of the answerable questions whose passage is read, and how many those are."""
    read = [f for f, ok in zip(have, found) if ok]
    return sum(not declined(f, t, k) for f in read) / len(read), len(read)


def main():
    args = sys.argv[1:]
    opts = {"--threshold": 0.40, "--keywords": 1.95}
    for name in list(opts):
        if name in args:
            i = args.index(name)
            opts[name] = float(args[i + 1])
            del args[i : i + 2]
    search = "--search" in args
    args = [a for a in args if a != "--search"]
    sets = {}
    for arg in args:
        name, rest = arg.split("=", 1)
        runs, qrels, chunks = rest.split(":")
        sets[name] = features(*load(runs, qrels), int(chunks))
    t, k = opts["--threshold"], opts["--keywords"]
    print(
        f"| set | similarity 0.39 alone: kept / declined | similarity {t} or keywords {k}: kept / declined"
        f" | kept where the passage is among the {SOURCES} read |"
    )
    print("|---|---|---|---|")
    for name, (have, absent, found) in sets.items():
        a, b = rates(have, absent, 0.39, math.inf), rates(have, absent, t, k)
        share, n = kept_where_found(have, found, t, k)
        print(
            f"| {name} | {a[0]:.1%} / {a[1]:.1%} | {b[0]:.1%} / {b[1]:.1%}"
            f" | {share:.1%} of {n} ({n / len(have):.0%} of the questions) |"
        )
    if search:
        base = {n: rates(h, a, 0.39, math.inf) for n, (h, a, _) in sets.items()}
        found = []
        for t in [x / 100 for x in range(36, 56)]:
            for k in [x / 20 for x in range(20, 60)]:
                r = {n: rates(h, a, t, k) for n, (h, a, _) in sets.items()}
                if all(r[n][0] >= base[n][0] for n in r):
                    found.append((sum(r[n][1] - base[n][1] for n in r), t, k))
        for gain, t, k in sorted(found, reverse=True)[:5]:
            print(f"similarity {t:.2f}, keywords {k:.2f}: declined +{gain:.3f} in total")


if __name__ == "__main__":
    main()
