#!/usr/bin/env python3
"""Fusion experiments over dumped runs (`quarry eval --dump-runs`): score
fusion functions offline, per domain, at the document level like `quarry eval`.

    python3 bench/retrieval/fusion_lab.py NAME=RUNS.jsonl:QRELS.tsv ...
"""
import json
import math
import sys
from collections import defaultdict


def load(runs_path, qrels_path):
    qrels = defaultdict(dict)
    with open(qrels_path) as f:
        next(f)
        for line in f:
            q, d, s = line.rstrip("\n").split("\t")
            if int(s) > 0:
                qrels[q][d] = int(s)
    runs = [json.loads(l) for l in open(runs_path)]
    return runs, qrels


def ndcg10(docs, rel):
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(docs[:10]))
    ideal = sorted(rel.values(), reverse=True)[:10]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall10(docs, rel):
    return len(set(docs[:10]) & set(rel)) / len(rel)


def doc_order(chunks):
    """Chunk ranking [(doc, chunk, score)] best first -> document ids, deduped."""
    seen, out = set(), []
    for d, _, _ in chunks:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def ranked(scores, info):
    order = sorted(scores, key=lambda c: (-scores[c], c))
    return [(info[c], c, scores[c]) for c in order]


def rrf(kw, vec, wv=0.3, k=60.0, depth=50):
    s, info = defaultdict(float), {}
    for lst, w in ((vec, wv), (kw, 1 - wv)):
        for r, (d, c, _) in enumerate(lst[:depth]):
            s[c] += w / (k + r + 1)
            info[c] = d
    return ranked(s, info)


def norm_minmax(lst):
    if not lst:
        return {}, 0.0
    hi, lo = lst[0][2], lst[-1][2]
    span = (hi - lo) or 1.0
    return {c: (x - lo) / span for _, c, x in lst}, 0.0


def norm_max(lst):
    if not lst:
        return {}, 0.0
    hi = lst[0][2] or 1.0
    return {c: x / hi for _, c, x in lst}, lst[-1][2] / hi


def norm_z(lst):
    if len(lst) < 2:
        return {c: 1.0 for _, c, _ in lst}, 0.0
    xs = [x for _, _, x in lst]
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs)) or 1.0
    return {c: (x - m) / sd for _, c, x in lst}, (xs[-1] - m) / sd


def cc(kw, vec, wv=0.3, depth=50, norm=norm_minmax, window=None):
    """Convex combination of normalised scores; with `window`, the norm's
    statistics come from the first `window` hits and hits beyond count as
    absent (as Quarry's score fusion does)."""
    window = window or depth
    nk, kfloor = norm(kw[:window])
    nv, vfloor = norm(vec[:window])
    kw, vec = kw[:depth], vec[:depth]
    info = {c: d for d, c, _ in kw + vec}
    def term(n, floor, c):
        return max(n.get(c, floor), floor)
    s = {c: wv * term(nv, vfloor, c) + (1 - wv) * term(nk, kfloor, c) for c in info}
    return ranked(s, info)


def evaluate(data, fuse):
    out = {}
    for name, (runs, qrels) in data.items():
        n = r = 0.0
        for q in runs:
            docs = doc_order(fuse(q["keyword"], q["vector"]))
            n += ndcg10(docs, qrels[q["id"]])
            r += recall10(docs, qrels[q["id"]])
        out[name] = (n / len(runs), r / len(runs))
    return out


def table(data, methods):
    names = list(data)
    print(f"{'method':<28}" + "".join(f"{n:>12}" for n in names) + f"{'min gain':>10}")
    base = {}
    for label, fuse in methods:
        res = evaluate(data, fuse)
        if label in ("keyword", "vector"):
            base[label] = res
        gain = ""
        if len(base) == 2:
            best = [max(base["keyword"][n][0], base["vector"][n][0]) for n in names]
            gain = f"{min(res[n][0] - b for n, b in zip(names, best)):+10.4f}"
        print(f"{label:<28}" + "".join(f"{res[n][0]:>12.4f}" for n in names) + gain)


def main():
    data = {}
    for arg in sys.argv[1:]:
        name, rest = arg.split("=", 1)
        runs, qrels = rest.split(":")
        data[name] = load(runs, qrels)
    methods = [
        ("keyword", lambda k, v: k),
        ("vector", lambda k, v: v),
        ("rrf 0.3 k60", lambda k, v: rrf(k, v)),
        ("rrf 0.5 k60", lambda k, v: rrf(k, v, 0.5)),
    ]
    for w in (0.3, 0.4, 0.5, 0.6):
        methods.append((f"cc minmax {w}", lambda k, v, w=w: cc(k, v, w)))
        methods.append((f"cc max {w}", lambda k, v, w=w: cc(k, v, w, norm=norm_max)))
        for d in (20, 50, 150):
            methods.append((f"cc z{d} {w}", lambda k, v, w=w, d=d: cc(k, v, w, depth=d, norm=norm_z)))
    table(data, methods)


if __name__ == "__main__":
    main()
