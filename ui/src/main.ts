import "./style.css";
import {
  createTransport,
  QuarryError,
  type Answer,
  type FolderStatus,
  type Hit,
  type ModelInfo,
  type Preview,
  type Progress,
  type Source,
} from "./transport";

const api = await createTransport();
const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

// ---------- small helpers ----------

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

const baseName = (p: string) => p.split(/[\\/]/).pop() ?? p;

function humanBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

/** Errors as sentences people can act on. */
function sentence(e: unknown, doing: string): string {
  if (e instanceof QuarryError) {
    const hints: Record<string, string> = {
      bad_path: "Check that the folder exists and that you typed its full path.",
      locked: "Another indexing run is in progress; wait for it to finish.",
      model_missing: "Fetch it under Settings, Models (or run `quarry models fetch`).",
      outside_library: "Only documents of the library open here.",
      open_remote: "Open it on the machine that runs Quarry.",
      fetch_running: "One model is fetched at a time.",
      privacy_blocked: "Your privacy mode keeps this question on this machine.",
      unauthorized: "This server needs its access token.",
    };
    return `Could not ${doing}: ${e.message}. ${hints[e.code] ?? ""}`.trim();
  }
  if (e instanceof DOMException && e.name === "AbortError") return "";
  const hint = "__TAURI_INTERNALS__" in window ? "" : " Is quarry serve running?";
  return `Could not ${doing}: ${e instanceof Error ? e.message : String(e)}.${hint}`;
}

function showError(message: string) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
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

// ---------- tabs (arrow keys move between them) ----------

const tabs = ["library", "search", "ask", "settings"];
function select(name: string, focus = false) {
  for (const t of tabs) {
    const tab = $(`tab-${t}`);
    const on = t === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(t).hidden = !on;
    if (on && focus) tab.focus();
  }
  if (name === "settings") {
    loadSettings();
    loadModels();
  }
  const first = { library: "folder", search: "query", ask: "question" }[name];
  if (first && !focus) $(first).focus();
}
tabs.forEach((t, i) => {
  const tab = $(`tab-${t}`);
  tab.addEventListener("click", () => select(t));
  tab.addEventListener("keydown", (e) => {
    const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
    if (step) select(tabs[(i + step + tabs.length) % tabs.length], true);
  });
});

// ---------- library ----------

async function refreshStatus() {
  try {
    const s = await api.status();
    const lib = s.library;
    const summary = $("summary");
    summary.replaceChildren(
      ...[
        ["Documents", String(lib.documents)],
        ["Chunks", String(lib.chunks)],
        ...(lib.pending_embeddings > 0
          ? [
              [
                "Meaning search",
                `${readyShare(lib.chunks, lib.pending_embeddings)} of chunks ready; ` +
                  `${lib.pending_embeddings} searchable by keyword until they are embedded`,
              ],
            ]
          : []),
        ["Skipped", String(lib.skipped)],
        ["Failed", String(lib.failed)],
        ["Size on disk", humanBytes(lib.size_bytes)],
        ["Embedder", lib.embedder],
        ["Library", lib.library],
      ].flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]),
    );
    // Search says how much of the library meaning search covers yet.
    const coverage = $("search-coverage");
    coverage.hidden = !lib.pending_embeddings;
    coverage.textContent = lib.pending_embeddings
      ? `Keyword matches cover the whole library; meaning search covers ${readyShare(lib.chunks, lib.pending_embeddings)} ` +
        "of it so far and fills in as indexing embeds the rest."
      : "";
    const stats = new Map(lib.per_folder.map((f) => [f.path, f]));
    $("folders").replaceChildren(
      ...(lib.folders.length
        ? lib.folders.map((f) => folderItem(f, stats.get(f), s.indexing.running))
        : [el("li", {}, "No folders yet: add one above.")]),
    );
    folders = lib.folders;
    $<HTMLButtonElement>("reindex").disabled = !lib.folders.length || s.indexing.running;
    renderReasons(lib.failures.map(([path, reason]) => ({ path, reason })), s.indexing);
    showProgress(s.indexing);
  } catch (e) {
    if (e instanceof QuarryError && e.code === "model_missing") return firstRun(e);
    showError(sentence(e, "read the library's status"));
  }
}

/** A first run without models: Settings, where they are fetched. */
let waitingForModels = false;
function firstRun(e: QuarryError) {
  waitingForModels = true;
  select("settings");
  showError(
    `Quarry needs its models before it can index or answer (${e.message}). ` +
      "Fetch them below, or import files you already have; they stay on this machine.",
  );
}

let folders: string[] = [];

function folderItem(path: string, stats: FolderStatus | undefined, busy: boolean): HTMLLIElement {
  const remove = el("button", { type: "button", className: "remove" }, "Remove");
  remove.setAttribute("aria-label", `Remove ${path} from the library`);
  remove.addEventListener("click", async () => {
    if (!confirm(`Remove ${path} and its documents from the library? The files themselves stay.`)) return;
    showError("");
    try {
      await api.removeFolder(path);
      await refreshStatus();
    } catch (e) {
      showError(sentence(e, `remove ${path}`));
    }
  });
  const recheck = el("button", { type: "button", className: "recheck", disabled: busy }, "Check for changes");
  recheck.setAttribute("aria-label", `Check ${path} for new and changed files`);
  recheck.addEventListener("click", () => indexFolders([path], `check ${path}`));
  const counts = stats
    ? [
        `${stats.documents} documents, ${stats.chunks} chunks`,
        stats.failed ? `${stats.failed} failed` : "",
        stats.skipped ? `${stats.skipped} skipped` : "",
        stats.last_indexed_ms ? `indexed ${new Date(stats.last_indexed_ms).toLocaleString()}` : "",
      ]
        .filter(Boolean)
        .join(" · ")
    : "";
  return el(
    "li",
    {},
    el("span", { className: "path" }, path),
    " ",
    recheck,
    remove,
    counts ? el("div", { className: "hint" }, counts) : "",
  );
}

async function indexFolders(paths: string[], doing: string) {
  showError("");
  try {
    await api.index(paths);
    watchIndexing();
  } catch (e) {
    showError(sentence(e, doing));
  }
}

function renderReasons(failures: { path: string; reason: string }[], p: Progress | null) {
  const report = p?.report as { skipped?: { path: string; reason: string }[] } | null;
  const all = [...failures, ...(report?.skipped ?? [])];
  $("failures").replaceChildren(
    ...(all.length
      ? all.map((f) => el("li", {}, el("span", { className: "path" }, f.path), " — ", f.reason))
      : [el("li", {}, "None.")]),
  );
}

/** "42%" of chunks that have vectors. */
function readyShare(chunks: number, pending: number): string {
  return `${Math.floor((100 * (chunks - pending)) / Math.max(chunks, 1))}%`;
}

/** "40 s", "12 min", "3 h 20 min". */
function humanDuration(s: number): string {
  if (s < 90) return `${Math.ceil(s)} s`;
  const min = Math.round(s / 60);
  return min < 90 ? `${min} min` : `${Math.floor(min / 60)} h ${min % 60} min`;
}

let lastPhase = "";
let lastRefresh = 0;
function showProgress(p: Progress) {
  const box = $("progress");
  if (p.phase === "idle") {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const embedding = p.phase === "embedding" || (p.phase === "stopping" && p.embed_done > 0);
  const bar = $<HTMLProgressElement>("progress-bar");
  bar.max = Math.max(embedding ? p.embed_total : p.files_total, 1);
  bar.value = p.phase === "done" ? bar.max : embedding ? p.embed_done : p.files_done;
  const eta = p.eta_s != null && p.running ? `, about ${humanDuration(p.eta_s)} left` : "";
  const waiting = Math.max(p.embed_total - p.embed_done, 0);
  const text =
    p.phase === "failed"
      ? `Indexing failed: ${p.error?.message ?? "unknown error"}`
      : p.phase === "stopped"
        ? waiting > 0 && p.files_done >= p.files_total
          ? `Stopped: every file is searchable by keyword; ${waiting} chunks still wait for meaning search. Resume carries on.`
          : `Stopped: ${p.files_done} files done; Resume (or any later check) indexes the rest.`
        : p.phase === "stopping"
          ? "Stopping after the current batch…"
      : p.phase === "done"
        ? `Done: ${p.files_done} files indexed or checked, ${p.chunks} chunks written` +
          (p.embed_done ? `, ${p.embed_done} embedded` : "") +
          ` in ${humanDuration(p.elapsed_s)}.`
        : p.phase === "walking"
          ? "Looking for files…"
          : embedding
            ? `Keyword search is ready. Embedding for meaning search: ${p.embed_done} of ${p.embed_total} chunks, ` +
              `${p.embed_per_s.toFixed(1)} chunks/s${eta}`
            : `Indexing ${p.files_done} of ${p.files_total} files, ${p.chunks} chunks, ${p.files_per_s.toFixed(1)} files/s${eta}`;
  $("progress-text").textContent = text;
  box.dataset.phase = p.phase;
  $("stop-indexing").hidden = !p.running;
  // A stopped job that only embedded has no paths of its own: resuming
  // checks every folder, which carries on with the waiting chunks.
  resumePaths = p.phase === "stopped" ? (p.paths.length ? p.paths : folders) : [];
  $("resume-indexing").hidden = !resumePaths.length;
  // Keyword search covers the new files once embedding starts: show their
  // counts, and meaning search's share as it grows.
  if (p.phase === "embedding" && (lastPhase !== "embedding" || Date.now() - lastRefresh > 30_000)) {
    lastRefresh = Date.now();
    refreshStatus();
  }
  lastPhase = p.phase;
}

let resumePaths: string[] = [];
$("resume-indexing").addEventListener("click", () => indexFolders(resumePaths, "resume indexing"));

let watching: (() => void) | null = null;
function watchIndexing() {
  watching?.();
  watching = api.watchProgress((p) => {
    showProgress(p);
    if (!p.running && ["done", "failed", "stopped"].includes(p.phase)) {
      watching?.();
      watching = null;
      refreshStatus();
    }
  });
}

$("add-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $<HTMLInputElement>("folder");
  const path = input.value.trim();
  if (path) await addFolder(path);
});

async function addFolder(path: string) {
  showError("");
  try {
    await api.index([path]);
    $<HTMLInputElement>("folder").value = "";
    watchIndexing();
  } catch (err) {
    showError(sentence(err, `add ${path}`));
  }
}

if (api.pickFolder) {
  const pick = $<HTMLButtonElement>("pick-folder");
  pick.hidden = false;
  pick.addEventListener("click", async () => {
    try {
      const folder = await api.pickFolder!();
      if (folder) await addFolder(folder);
    } catch (e) {
      showError(sentence(e, "choose a folder"));
    }
  });
}

$("stop-indexing").addEventListener("click", () => api.cancelIndexing().catch((e) => showError(sentence(e, "stop indexing"))));
$("reindex").addEventListener("click", () => indexFolders(folders, "check the folders"));

// ---------- search ----------

let searchSeq = 0;
let searchTimer: number | undefined;
async function runSearch() {
  const q = $<HTMLInputElement>("query").value.trim();
  const seq = ++searchSeq;
  const list = $("results");
  if (!q) {
    list.replaceChildren();
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
  } catch (e) {
    if (seq === searchSeq) showError(sentence(e, "search"));
  }
}
function resultItem(h: Hit): HTMLLIElement {
  const where = [h.page ? `page ${h.page}` : "", h.heading ?? ""].filter(Boolean).join(", ");
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

/** Midnight starting a local date (`YYYY-MM-DD`) plus `days`, as ms; none for an empty field. */
function localDay(value: string, days: number): number | undefined {
  if (!value) return undefined;
  const d = new Date(`${value}T00:00:00`);
  d.setDate(d.getDate() + days);
  return Number.isNaN(d.getTime()) ? undefined : d.getTime();
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
for (const id of ["query", "prefix"]) {
  $(id).addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = window.setTimeout(runSearch, 150);
  });
}
for (const id of ["ext", "after", "before"]) $(id).addEventListener("change", runSearch);

/** Show a document in a preview pane with `passage` highlighted and scrolled to. */
const previewSeq = new WeakMap<HTMLElement, number>();
async function showPassage(pane: HTMLElement, path: string, passage: string, page: number | null) {
  const seq = (previewSeq.get(pane) ?? 0) + 1;
  previewSeq.set(pane, seq);
  pane.replaceChildren(
    el("h2", {}, baseName(path), " ", openButton(path, page)),
    el("p", { className: "path" }, path + (page ? `, page ${page}` : "")),
  );
  try {
    const doc = await api.document(path);
    if (previewSeq.get(pane) !== seq) return; // another passage was opened meanwhile
    let target: HTMLElement | null = null;
    const needle = passage.trim().slice(0, 80);
    for (const b of doc.blocks) {
      const p = el("p", {});
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

// ---------- ask ----------

let lastAnswer: Answer | null = null;
/** The conversation so far (follow-up questions see the last two turns). */
let history: { role: string; content: string }[] = [];
let pendingQuestion: string | null = null;
let abort: AbortController | null = null;

function renderAnswerText(text: string, sources: Source[]) {
  const box = $("answer");
  const parts = text.split(/(\[\d+\])/);
  box.replaceChildren(
    ...parts.map((part) => {
      const m = /^\[(\d+)\]$/.exec(part);
      const src = m ? sources.find((s) => s.n === Number(m[1])) : undefined;
      if (!src) return document.createTextNode(part);
      const b = el("button", { type: "button", className: "cite", title: baseName(src.path) }, part);
      b.setAttribute("aria-label", `Source ${src.n}: ${baseName(src.path)}`);
      b.addEventListener("click", () => showPassage($("source-preview"), src.path, src.text, src.page));
      return b;
    }),
  );
}

function renderSources(sources: Source[], cited: number[] = []) {
  $("sources").replaceChildren(
    ...sources.map((s) => {
      const b = el(
        "button",
        { type: "button", className: "source" + (cited.includes(s.n) ? " cited" : "") },
        `[${s.n}] ${baseName(s.path)}${s.page ? `, page ${s.page}` : ""}${s.heading ? `, ${s.heading}` : ""}`,
      );
      b.addEventListener("click", () => showPassage($("source-preview"), s.path, s.text, s.page));
      return el("li", {}, b);
    }),
  );
}

function previewText(p: Preview): string {
  return `${p.provider} (${p.host}), model ${p.model}, ${p.bytes} bytes\n\n` +
    p.messages.map((m) => `— ${m.role} —\n${m.content}`).join("\n\n");
}

async function ask(question: string, confirmSend = false) {
  abort?.abort();
  const mine = new AbortController();
  abort = mine;
  let consentAsked = false;
  showError("");
  let text = "";
  let sources: Source[] = [];
  lastAnswer = null;
  $<HTMLButtonElement>("copy-md").disabled = true;
  $<HTMLButtonElement>("stop-button").disabled = false;
  $("consent").hidden = true;
  $("sent").hidden = true;
  $("answer").replaceChildren(el("span", { className: "hint" }, "Searching your documents…"));
  $("route-badge").replaceChildren();
  try {
    await api.ask(
      { question, history: history.slice(-4), route: $<HTMLSelectElement>("route").value, confirm_send: confirmSend },
      (e) => {
        switch (e.kind) {
          case "sources":
            sources = e.sources;
            renderSources(sources);
            break;
          case "route": {
            text = ""; // a second route (fallback) restarts the answer
            const badge = $("route-badge");
            badge.dataset.target = e.route.target;
            badge.replaceChildren(
              el("span", { className: `badge route-${e.route.target}` }, e.route.target),
              " ",
              e.route.reason,
            );
            break;
          }
          case "token":
            text += e.text;
            renderAnswerText(text, sources);
            break;
          case "consent":
            pendingQuestion = question;
            consentAsked = true;
            $("consent-provider").textContent = `${e.preview.provider} (${e.preview.host})`;
            $("consent-text").textContent = previewText(e.preview);
            $("consent").hidden = false;
            break;
          case "sent":
            $("sent-text").textContent = previewText(e.preview);
            $("sent").hidden = false;
            break;
          case "done":
            lastAnswer = e.answer;
            renderAnswerText(e.answer.answer, e.answer.sources);
            renderSources(e.answer.sources, e.answer.cited);
            $<HTMLButtonElement>("copy-md").disabled = false;
            // A local answer given while consent is pending stays out of the
            // conversation, so "Send it" sends exactly what was shown.
            if (!consentAsked) {
              history.push({ role: "user", content: question }, { role: "assistant", content: e.answer.answer });
            }
            $("answer").dataset.done = "true";
            break;
        }
      },
      mine.signal,
    );
  } catch (e) {
    const s = sentence(e, "answer");
    if (s) showError(s);
  } finally {
    if (abort === mine) $<HTMLButtonElement>("stop-button").disabled = true;
  }
}

$("ask-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $<HTMLInputElement>("question").value.trim();
  if (q) {
    delete $("answer").dataset.done;
    ask(q);
  }
});
$("stop-button").addEventListener("click", () => abort?.abort());
$("new-chat").addEventListener("click", () => {
  history = [];
  lastAnswer = null;
  $("answer").replaceChildren();
  $("sources").replaceChildren();
  $("route-badge").replaceChildren();
  $<HTMLInputElement>("question").value = "";
  $("question").focus();
});
$("consent-send").addEventListener("click", () => pendingQuestion && ask(pendingQuestion, true));
$("copy-md").addEventListener("click", async () => {
  if (!lastAnswer) return;
  const md =
    `${lastAnswer.answer}\n\n**Sources**\n\n` +
    lastAnswer.sources
      .filter((s) => lastAnswer!.cited.includes(s.n))
      .map((s) => `${s.n}. ${s.path}${s.page ? `, page ${s.page}` : ""}`)
      .join("\n") +
    `\n\n_Answered by ${lastAnswer.route.target}${lastAnswer.route.model ? ` (${lastAnswer.route.model})` : ""}._\n`;
  try {
    await navigator.clipboard.writeText(md);
  } catch {
    showError("The browser did not allow copying; select the answer and copy it by hand.");
  }
});

// ---------- settings ----------

async function loadSettings(given?: Record<string, any>) {
  try {
    const s = given ?? (await api.settings());
    $<HTMLSelectElement>("privacy-mode").value = s.privacy.global;
    $<HTMLInputElement>("never-leaves").checked = !!s.privacy.library?.never_leaves_device;
    const inForce = s.privacy.in_force;
    $("privacy-badge").textContent = `privacy: ${inForce.mode}`;
    $("privacy-badge").title = inForce.why;
    $("settings-list").replaceChildren(
      ...[
        ["Privacy mode in force", `${inForce.mode} (${inForce.why})`],
        ["Never leaves this device", s.privacy.library?.never_leaves_device ? "yes" : "no"],
        ["Library", s.library],
        ["Embedder", s.embedder],
        ["Local model", s.generator],
        ["Default provider", s.default_provider ?? "the first one listed"],
      ].flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]),
    );
    $("providers").replaceChildren(
      ...(s.providers.length
        ? s.providers.map((p: any) =>
            el("li", {}, `${p.name}: ${p.model} at ${p.base_url}; key from ${p.key}${p.redact ? "; redacts personal data" : ""}`),
          )
        : [el("li", {}, "None configured: answers always come from this machine.")]),
    );
  } catch (e) {
    if (e instanceof QuarryError && e.code === "model_missing") return;
    showError(sentence(e, "read the settings"));
  }
}

async function changePrivacy(change: { mode?: string; never_leaves_device?: boolean }) {
  showError("");
  try {
    await loadSettings(await api.setPrivacy(change));
  } catch (e) {
    showError(sentence(e, "change the privacy settings"));
    loadSettings();
  }
}
$("privacy-mode").addEventListener("change", () =>
  changePrivacy({ mode: $<HTMLSelectElement>("privacy-mode").value }),
);
$("never-leaves").addEventListener("change", () =>
  changePrivacy({ never_leaves_device: $<HTMLInputElement>("never-leaves").checked }),
);

// ---------- models ----------

let fetchTimer: number | undefined;
async function loadModels() {
  try {
    const m = await api.models();
    $("models-dir").textContent = `Models are kept in ${m.models_dir}.`;
    $("models").replaceChildren(...m.models.map((x) => modelRow(x, m.fetch.running)));
    const p = m.fetch;
    const box = $("fetch-progress");
    box.hidden = p.phase === "idle";
    const bar = $<HTMLProgressElement>("fetch-bar");
    bar.max = Math.max(p.bytes_total, 1);
    bar.value = p.phase === "done" ? bar.max : Math.min(p.bytes_done, bar.max);
    $("fetch-text").textContent =
      p.phase === "failed"
        ? `Could not fetch ${p.id}: ${p.error}`
        : p.phase === "done"
          ? `${p.id} is installed.`
          : p.phase === "verifying"
            ? `Checking ${p.id}'s files…`
            : p.phase === "downloading"
              ? `Fetching ${p.id}: ${p.file}, ${humanBytes(p.bytes_done)}${p.bytes_total ? ` of ${humanBytes(p.bytes_total)}` : ""}`
              : `Fetching ${p.id} from ${p.source ?? "its source"}…`;
    box.dataset.phase = p.phase;
    clearTimeout(fetchTimer);
    if (p.running) fetchTimer = window.setTimeout(loadModels, 500);
    // The first run's models are in: open the library.
    if (waitingForModels && m.models.some((x) => x.role === "embedder" && x.default && x.installed)) {
      waitingForModels = false;
      showError("");
      refreshStatus().then(() => {
        loadSettings();
        loadModels();
      });
    }
  } catch (e) {
    showError(sentence(e, "list the models"));
  }
}

function modelRow(m: ModelInfo, fetching: boolean): HTMLTableRowElement {
  const state = m.installed ? (m.in_use ? "installed, in use" : "installed") : "not installed";
  let action: Node | string = "";
  if (!m.installed && m.fetchable) {
    const b = el("button", { type: "button", disabled: fetching }, "Fetch");
    b.setAttribute("aria-label", `Fetch ${m.id}`);
    b.addEventListener("click", async () => {
      showError("");
      try {
        await api.fetchModel(m.id);
        loadModels();
      } catch (e) {
        showError(sentence(e, `fetch ${m.id}`));
      }
    });
    action = b;
  }
  const name = el("td", {}, el("strong", {}, m.id), m.default ? " (default)" : "", el("div", { className: "hint" }, m.description));
  return el(
    "tr",
    {},
    name,
    el("td", {}, m.role),
    el("td", {}, state),
    el("td", {}, m.installed ? humanBytes(m.size_bytes) : "—"),
    el("td", {}, action),
  );
}

$("import-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $<HTMLInputElement>("import-path");
  const path = input.value.trim();
  if (!path) return;
  showError("");
  const button = $<HTMLButtonElement>("import-button");
  button.disabled = true;
  try {
    const r = await api.importModel(path);
    input.value = "";
    $("fetch-progress").hidden = false;
    $("fetch-text").textContent = `Imported ${r.id}.`;
    await loadModels();
  } catch (err) {
    showError(sentence(err, `import ${path}`));
  } finally {
    button.disabled = false;
  }
});
if (api.pickModelFile) {
  const pick = $<HTMLButtonElement>("pick-model");
  pick.hidden = false;
  pick.addEventListener("click", async () => {
    const file = await api.pickModelFile!().catch(() => null);
    if (file) $<HTMLInputElement>("import-path").value = file;
  });
}

// ---------- start ----------

select("library");
refreshStatus().then(() => loadSettings());
api.status().then((s) => s.indexing.running && watchIndexing()).catch(() => {});
