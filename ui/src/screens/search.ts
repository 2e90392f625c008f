// The Search screen: search as you type, filters, results, and the document
// preview (which Ask uses too, for its sources).

import { $, el, showError } from "../dom";
import { baseName, readyShare, scanLabel, sentence } from "../format";
import type { Hit, Transport } from "../transport";
import { summarizeButton } from "./summary";

/** What the Search screen needs from the rest of the app. */
export interface SearchDeps {
  /** Extract fields from `paths` (the documents a search for `query` found, best first). */
  extractFrom(query: string, paths: string[]): void;
}

/** Most documents "Extract fields from these documents" hands on. */
const MAX_EXTRACT_FROM_RESULTS = 50;

/** What the Search screen offers the rest of the app. */
export interface Search {
  /** Show `path` in the preview `pane` with `passage` highlighted and scrolled to. */
  showPassage(pane: HTMLElement, path: string, passage: string, page: number | null): Promise<void>;
  /** Say how much of the library meaning search covers (`pending` of `chunks` still lack vectors). */
  showCoverage(chunks: number, pending: number): void;
}

/** A snippet with its highlighted byte ranges (the engine counts UTF-8 bytes). */
function highlighted(snippet: string, ranges: [number, number][]): Node[] {
  const bytes = new TextEncoder().encode(snippet);
  const dec = new TextDecoder();
  const out: Node[] = [];
  let at = 0;
  for (const [s, e] of [...ranges].sort((a, b) => a[0] - b[0])) {
    if (s < at || e > bytes.length) continue;
    out.push(document.createTextNode(dec.decode(bytes.slice(at, s))));
    out.push(el("mark", {}, dec.decode(bytes.slice(s, e))));
    at = e;
  }
  out.push(document.createTextNode(dec.decode(bytes.slice(at))));
  return out;
}

/** Midnight starting a local date (`YYYY-MM-DD`) plus `days`, as ms; none for an empty field. */
function localDay(value: string, days: number): number | undefined {
  if (!value) return undefined;
  const d = new Date(`${value}T00:00:00`);
  d.setDate(d.getDate() + days);
  return Number.isNaN(d.getTime()) ? undefined : d.getTime();
}

/** Wire the Search screen's query and filters to `api`. */
export function initSearch(api: Transport, deps: SearchDeps): Search {
  /** The latest query's number: answers to older ones are dropped. */
  let searchSeq = 0;
  let searchTimer: number | undefined;
  /** Per preview pane, the latest passage opened in it. */
  const previewSeq = new WeakMap<HTMLElement, number>();

  async function runSearch() {
    const q = $<HTMLInputElement>("query").value.trim();
    const seq = ++searchSeq;
    const list = $("results");
    const toExtract = $<HTMLButtonElement>("extract-from-results");
    if (!q) {
      list.replaceChildren();
      toExtract.hidden = true;
      return;
    }
    try {
      const hits = await api.search(q, {
        ext: $<HTMLSelectElement>("ext").value,
        pathPrefix: $<HTMLInputElement>("prefix").value.trim(),
        modifiedAfterMs: localDay($<HTMLInputElement>("after").value, 0),
        modifiedBeforeMs: localDay($<HTMLInputElement>("before").value, 1),
      });
      if (seq !== searchSeq) return; // a newer query is on its way
      showError("");
      list.replaceChildren(
        ...(hits.length ? hits.map(resultItem) : [el("li", { className: "empty" }, "Nothing found.")]),
      );
      const paths = [...new Set(hits.map((h) => h.path))].slice(0, MAX_EXTRACT_FROM_RESULTS);
      toExtract.hidden = !paths.length;
      toExtract.textContent = `Extract fields from ${paths.length === 1 ? "this document" : `these ${paths.length} documents`}`;
      toExtract.onclick = () => deps.extractFrom(q, paths);
    } catch (e) {
      if (seq === searchSeq) showError(sentence(e, "search"));
    }
  }

  function resultItem(h: Hit): HTMLLIElement {
    const where = [h.page ? `page ${h.page}` : "", scanLabel(h.ocr_confidence), h.heading ?? ""].filter(Boolean).join(", ");
    const button = el(
      "button",
      { className: "hit", type: "button", title: h.path },
      el("span", { className: "file" }, baseName(h.path)),
      where ? el("span", { className: "where" }, where) : "",
      el("span", { className: "snippet" }, ...highlighted(h.snippet, h.highlights)),
    );
    button.addEventListener("click", () => showPassage($("preview"), h.path, h.text, h.page));
    return el("li", { className: "hit-row" }, button, openButton(h.path, h.page));
  }

  /** A button that opens the document in the system's viewer (at the page for PDFs where it can). */
  function openButton(path: string, page: number | null): HTMLButtonElement {
    const b = el("button", { type: "button", className: "open" }, "Open");
    b.setAttribute("aria-label", `Open ${baseName(path)}${page ? ` at page ${page}` : ""} in its application`);
    b.addEventListener("click", async () => {
      showError("");
      try {
        const r = await api.openDocument(path, page);
        b.title = `Opened with ${r.with}${r.page ? ` at page ${r.page}` : ""}`;
        b.dataset.opened = "true";
      } catch (e) {
        showError(sentence(e, `open ${baseName(path)}`));
      }
    });
    return b;
  }

  async function showPassage(pane: HTMLElement, path: string, passage: string, page: number | null) {
    const seq = (previewSeq.get(pane) ?? 0) + 1;
    previewSeq.set(pane, seq);
    const where = el("p", { className: "path" }, path + (page ? `, page ${page}` : ""));
    pane.replaceChildren(
      el("h2", {}, baseName(path), " ", openButton(path, page), " ", summarizeButton(api, pane, where, path)),
      where,
    );
    try {
      const doc = await api.document(path);
      if (previewSeq.get(pane) !== seq) return; // another passage was opened meanwhile
      let target: HTMLElement | null = null;
      const needle = passage.trim().slice(0, 80);
      let page: number | null = null;
      for (const b of doc.blocks) {
        // A scanned page says so, with how sure OCR was of its words.
        if (b.ocr_confidence != null && b.page !== page) {
          pane.append(el("p", { className: "hint scan" }, `Page ${b.page}: ${scanLabel(b.ocr_confidence)}`));
        }
        page = b.page;
        const p = el("p", { className: "doc-block" });
        const at = needle ? b.text.indexOf(needle) : -1;
        if (at >= 0 && !target) {
          const end = Math.min(b.text.length, at + passage.trim().length);
          target = el("mark", { className: "passage" }, b.text.slice(at, end));
          p.append(b.text.slice(0, at), target, b.text.slice(end));
        } else {
          p.textContent = b.text;
        }
        pane.append(p);
      }
      if (!target) pane.append(el("blockquote", { className: "passage" }, passage));
      (target ?? pane).scrollIntoView({ block: "center" });
    } catch (e) {
      if (previewSeq.get(pane) !== seq) return;
      pane.append(el("blockquote", { className: "passage" }, passage));
      pane.append(el("p", { className: "hint" }, sentence(e, "open the document")));
    }
    pane.focus();
  }

  function showCoverage(chunks: number, pending: number) {
    const coverage = $("search-coverage");
    coverage.hidden = !pending;
    coverage.textContent = pending
      ? `Keyword matches cover the whole library; meaning search covers ${readyShare(chunks, pending)} ` +
        "of it so far and fills in as indexing embeds the rest."
      : "";
  }

  for (const id of ["query", "prefix"]) {
    $(id).addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = window.setTimeout(runSearch, 150);
    });
  }
  for (const id of ["ext", "after", "before"]) $(id).addEventListener("change", runSearch);

  return { showPassage, showCoverage };
}
