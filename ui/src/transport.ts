// The one place the UI talks to the engine. In a browser it is HTTP + SSE
// against `quarry serve`; the Tauri shell will provide the same interface over
// IPC and channels, and no screen needs to know which one it has.

export interface Progress {
  running: boolean;
  phase: string;
  paths: string[];
  files_found: number;
  files_total: number;
  files_done: number;
  bytes_total: number;
  bytes_done: number;
  chunks: number;
  embed_total: number;
  embed_done: number;
  embed_per_s: number;
  files_per_s: number;
  eta_s: number | null;
  elapsed_s: number;
  report: Record<string, unknown> | null;
  error: { code: string; message: string } | null;
}

export interface FolderStatus {
  path: string;
  documents: number;
  chunks: number;
  failed: number;
  skipped: number;
  last_indexed_ms: number | null;
}

export interface Status {
  library: {
    library: string;
    folders: string[];
    documents: number;
    failed: number;
    skipped: number;
    chunks: number;
    pending_embeddings: number;
    embedder: string;
    size_bytes: number;
    failures: [string, string][];
    per_folder: FolderStatus[];
  };
  indexing: Progress;
  model: string;
}

export interface Hit {
  path: string;
  page: number | null;
  heading: string | null;
  text: string;
  snippet: string;
  highlights: [number, number][];
  score: number;
}

export interface Source {
  n: number;
  path: string;
  page: number | null;
  heading: string | null;
  text: string;
}

export interface Route {
  target: string;
  reason: string;
  model: string | null;
  provider: string | null;
}

export interface Preview {
  provider: string;
  host: string;
  model: string;
  messages: { role: string; content: string }[];
  bytes: number;
  documents: string[];
}

export interface Answer {
  answer: string;
  sources: Source[];
  cited: number[];
  route: Route;
  timings: Record<string, number>;
}

export type AskEvent =
  | { kind: "sources"; sources: Source[] }
  | { kind: "route"; route: Route }
  | { kind: "token"; text: string }
  | { kind: "consent"; preview: Preview }
  | { kind: "sent"; preview: Preview }
  | { kind: "done"; answer: Answer };

export interface AskRequest {
  question: string;
  history?: { role: string; content: string }[];
  route?: string;
  confirm_send?: boolean;
}

export interface Doc {
  path: string;
  title: string | null;
  blocks: { text: string; page: number | null; heading: string | null }[];
}

export interface SearchOptions {
  ext?: string;
  pathPrefix?: string;
  k?: number;
  /** Only files modified at or after this time (ms since the epoch). */
  modifiedAfterMs?: number;
  /** Only files modified before this time (ms since the epoch). */
  modifiedBeforeMs?: number;
}

export interface ModelInfo {
  id: string;
  role: string;
  architecture: string;
  description: string;
  default: boolean;
  installed: boolean;
  in_use: boolean;
  size_bytes: number;
  path: string | null;
  fetchable: boolean;
}

export interface FetchProgress {
  running: boolean;
  id: string | null;
  phase: string;
  source: string | null;
  file: string | null;
  bytes_done: number;
  bytes_total: number;
  error: string | null;
}

export interface Models {
  models_dir: string;
  models: ModelInfo[];
  fetch: FetchProgress;
}

/** An error from the engine: a stable code and a sentence for people. */
export class QuarryError extends Error {
  constructor(public code: string, message: string) {
    super(message);
  }
}

export interface Transport {
  status(): Promise<Status>;
  watchProgress(on: (p: Progress) => void): () => void;
  index(paths: string[]): Promise<void>;
  cancelIndexing(): Promise<boolean>;
  removeFolder(path: string): Promise<number>;
  search(q: string, opts: SearchOptions): Promise<Hit[]>;
  ask(req: AskRequest, on: (e: AskEvent) => void, signal?: AbortSignal): Promise<void>;
  document(path: string): Promise<Doc>;
  settings(): Promise<Record<string, any>>;
  setPrivacy(change: { mode?: string; library?: boolean; never_leaves_device?: boolean }): Promise<Record<string, any>>;
  /** Open an indexed document in the system's viewer (at `page` for PDFs where it can). */
  openDocument(path: string, page: number | null): Promise<{ with: string; page: number | null }>;
  models(): Promise<Models>;
  fetchModel(id: string): Promise<void>;
  importModel(path: string, id?: string): Promise<{ id: string; path: string }>;
  /** The native folder picker (desktop app only). */
  pickFolder?(): Promise<string | null>;
  /** The native file picker for a model file (desktop app only). */
  pickModelFile?(): Promise<string | null>;
}

async function json<T>(r: Response): Promise<T> {
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const e = body?.error;
    throw new QuarryError(e?.code ?? `http_${r.status}`, e?.message ?? r.statusText);
  }
  return body as T;
}

/** Split a stream of server-sent events into (event, data) pairs. */
async function readSse(
  body: ReadableStream<Uint8Array>,
  on: (event: string, data: string) => void,
): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut: number;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) on(event, data.join("\n"));
    }
  }
}

export class HttpTransport implements Transport {
  constructor(private base = "") {}

  status(): Promise<Status> {
    return fetch(`${this.base}/api/status`).then((r) => json<Status>(r));
  }

  watchProgress(on: (p: Progress) => void): () => void {
    const source = new EventSource(`${this.base}/api/status/stream`);
    source.addEventListener("progress", (e) => on(JSON.parse((e as MessageEvent).data)));
    return () => source.close();
  }

  async index(paths: string[]): Promise<void> {
    await json(
      await fetch(`${this.base}/api/index`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ paths }),
      }),
    );
  }

  async cancelIndexing(): Promise<boolean> {
    const r = await json<{ stopping: boolean }>(
      await fetch(`${this.base}/api/index/cancel`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" }),
    );
    return r.stopping;
  }

  async removeFolder(path: string): Promise<number> {
    const r = await json<{ removed_documents: number }>(
      await fetch(`${this.base}/api/folders/remove`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ path }),
      }),
    );
    return r.removed_documents;
  }

  async search(q: string, opts: SearchOptions): Promise<Hit[]> {
    const p = new URLSearchParams({ q, k: String(opts.k ?? 20) });
    if (opts.ext) p.set("ext", opts.ext);
    if (opts.pathPrefix) p.set("path_prefix", opts.pathPrefix);
    if (opts.modifiedAfterMs != null) p.set("modified_after_ms", String(opts.modifiedAfterMs));
    if (opts.modifiedBeforeMs != null) p.set("modified_before_ms", String(opts.modifiedBeforeMs));
    const r = await json<{ hits: Hit[] }>(await fetch(`${this.base}/api/search?${p}`));
    return r.hits;
  }

  async ask(req: AskRequest, on: (e: AskEvent) => void, signal?: AbortSignal): Promise<void> {
    const r = await fetch(`${this.base}/api/ask`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(req),
      signal,
    });
    if (!r.ok || !r.body) await json(r);
    let failure: QuarryError | null = null;
    await readSse(r.body!, (event, data) => {
      const d = JSON.parse(data);
      switch (event) {
        case "sources": return on({ kind: "sources", sources: d });
        case "route": return on({ kind: "route", route: d });
        case "token": return on({ kind: "token", text: d.text });
        case "consent": return on({ kind: "consent", preview: d });
        case "sent": return on({ kind: "sent", preview: d });
        case "done": return on({ kind: "done", answer: d });
        case "error": failure = new QuarryError(d.code, d.message);
      }
    });
    if (failure) throw failure;
  }

  async document(path: string): Promise<Doc> {
    return json<Doc>(await fetch(`${this.base}/api/document?${new URLSearchParams({ path })}`));
  }

  async settings(): Promise<Record<string, any>> {
    return json(await fetch(`${this.base}/api/settings`));
  }

  async setPrivacy(change: { mode?: string; library?: boolean; never_leaves_device?: boolean }): Promise<Record<string, any>> {
    return this.post("/api/settings/privacy", change);
  }

  openDocument(path: string, page: number | null): Promise<{ with: string; page: number | null }> {
    return this.post("/api/open", { path, page });
  }

  async models(): Promise<Models> {
    return json(await fetch(`${this.base}/api/models`));
  }

  async fetchModel(id: string): Promise<void> {
    await this.post("/api/models/fetch", { id });
  }

  importModel(path: string, id?: string): Promise<{ id: string; path: string }> {
    return this.post("/api/models/import", { path, id: id || null });
  }

  async post<T>(path: string, body: unknown): Promise<T> {
    return json<T>(
      await fetch(`${this.base}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      }),
    );
  }
}

/** The transport for where the UI runs: Tauri IPC in the desktop app, HTTP otherwise. */
export async function createTransport(): Promise<Transport> {
  if ("__TAURI_INTERNALS__" in window) {
    const { TauriTransport } = await import("./tauri");
    return new TauriTransport();
  }
  return new HttpTransport();
}
