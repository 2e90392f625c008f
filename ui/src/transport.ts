// The one place the UI talks to the engine. In a browser it is HTTP + SSE
// against `quarry serve`; the Tauri shell will provide the same interface over
// IPC and channels, and no screen needs to know which one it has.

import type { Answer } from "./bindings/Answer";
import type { AskEvent as WireAskEvent } from "./bindings/AskEvent";
import type { AskRequest as WireAskRequest } from "./bindings/AskRequest";
import type { DocumentView } from "./bindings/DocumentView";
import type { Evidence } from "./bindings/Evidence";
import type { ExtractRequest as WireExtractRequest } from "./bindings/ExtractRequest";
import type { ExtractUpdate } from "./bindings/ExtractUpdate";
import type { FetchProgress } from "./bindings/FetchProgress";
import type { FolderStatus } from "./bindings/FolderStatus";
import type { HitView } from "./bindings/HitView";
import type { HttpEndpoint } from "./bindings/HttpEndpoint";
import type { ImportedView } from "./bindings/ImportedView";
import type { IndexProgress } from "./bindings/IndexProgress";
import type { ModelView } from "./bindings/ModelView";
import type { ModelsView } from "./bindings/ModelsView";
import type { OpenedView } from "./bindings/OpenedView";
import type { Preview } from "./bindings/Preview";
import type { PrivacyRequest } from "./bindings/PrivacyRequest";
import type { RemovedView } from "./bindings/RemovedView";
import type { Route } from "./bindings/Route";
import type { SavedSchema } from "./bindings/SavedSchema";
import type { SettingsView } from "./bindings/SettingsView";
import type { AgentsView } from "./bindings/AgentsView";
import type { Source } from "./bindings/Source";
import type { StatusView } from "./bindings/StatusView";
import type { SummarizeRequest as WireSummarizeRequest } from "./bindings/SummarizeRequest";
import type { SummaryUpdate } from "./bindings/SummaryUpdate";

// The engine's views, generated from the Rust types (quarry-app's views):
// a change there that the UI does not follow fails this type check.
export type Progress = IndexProgress;
export type Status = StatusView;
export type Hit = HitView;
export type Doc = DocumentView;
export type ModelInfo = ModelView;
export type Models = ModelsView;
export type Settings = SettingsView;
export type { WireAskEvent };
export type { Answer, Evidence, FetchProgress, HttpEndpoint, RemovedView, FolderStatus, ImportedView, OpenedView, Preview, Route, SavedSchema, Source };

export type AskEvent =
  | { kind: "evidence"; evidence: Evidence[] }
  | { kind: "sources"; sources: Source[] }
  | { kind: "route"; route: Route }
  | { kind: "token"; text: string }
  | { kind: "thinking"; tokens: number }
  | { kind: "consent"; preview: Preview }
  | { kind: "sent"; preview: Preview }
  | { kind: "reading"; done: number; total: number }
  | { kind: "waiting"; busy: string }
  | { kind: "done"; answer: Answer };

export type { ExtractUpdate, SummaryUpdate };

/** A summary: the document's path, `redo` optional. */
export type SummarizeRequest = Partial<WireSummarizeRequest> & { path: string };

/** An extraction: the wire request, every field but the schema optional. */
export type ExtractRequest = Partial<WireExtractRequest> & { schema: unknown };

/** A table of kept results, ready to save. */
export interface TableFile {
  name: string;
  bytes: Blob;
}

/** A question: the wire request, every field but the question optional. */
export type AskRequest = Partial<WireAskRequest> & { question: string };


export interface SearchOptions {
  ext?: string;
  pathPrefix?: string;
  k?: number;
  /** Only files modified at or after this time (ms since the epoch). */
  modifiedAfterMs?: number;
  /** Only files modified before this time (ms since the epoch). */
  modifiedBeforeMs?: number;
}


/** Pass one answer event off the wire on in the UI's form; an error event is
 * returned instead, for the caller to throw once the stream has ended. */
export function dispatchAskEvent(e: WireAskEvent, on: (e: AskEvent) => void): QuarryError | null {
  switch (e.event) {
    case "evidence": on({ kind: "evidence", evidence: e.data }); break;
    case "sources": on({ kind: "sources", sources: e.data }); break;
    case "route": on({ kind: "route", route: e.data }); break;
    case "token": on({ kind: "token", text: e.data.text }); break;
    case "thinking": on({ kind: "thinking", tokens: e.data.tokens }); break;
    case "consent": on({ kind: "consent", preview: e.data }); break;
    case "sent": on({ kind: "sent", preview: e.data }); break;
    case "reading": on({ kind: "reading", done: e.data.done, total: e.data.total }); break;
    case "waiting": on({ kind: "waiting", busy: e.data.busy }); break;
    case "done": on({ kind: "done", answer: e.data }); break;
    case "error": return new QuarryError(e.data.code, e.data.message);
  }
  return null;
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
  /** Remove a folder and its documents provably: how many, and the check that no copy is left. */
  removeFolder(path: string): Promise<RemovedView>;
  /** Unlock an encrypted library with its passphrase (the desktop app; a server's library is unlocked where it runs). */
  unlockLibrary(passphrase: string): Promise<void>;
  /** Encrypt the library in place under `passphrase`, or a key in the OS keychain when `null` (the desktop app; a server's library is encrypted where it runs). */
  encryptLibrary(passphrase: string | null): Promise<void>;
  /** Replace the encrypted library's key (the old one destroyed): `current` opens it; the new key is under `next`, or in the OS keychain when `null` (the desktop app). */
  rekeyLibrary(current: string | null, next: string | null): Promise<void>;
  search(q: string, opts: SearchOptions): Promise<Hit[]>;
  ask(req: AskRequest, on: (e: AskEvent) => void, signal?: AbortSignal): Promise<void>;
  document(path: string): Promise<Doc>;
  /** Run an extraction: updates as each document is done; aborting stops it (what is done is kept). */
  extract(req: ExtractRequest, on: (u: ExtractUpdate) => void, signal?: AbortSignal): Promise<void>;
  /** Summarise a document from every passage: progress, then the text as it is written, then the summary with its cited passages; aborting stops it. */
  summarize(req: SummarizeRequest, on: (u: SummaryUpdate) => void, signal?: AbortSignal): Promise<void>;
  /** Save the kept results of `req` as a `format` table; where it went (a path, or the downloaded file's name). */
  exportTable(req: ExtractRequest, format: "csv" | "xlsx" | "json"): Promise<string>;
  /** The extraction schemas saved with the library, by name. */
  schemas(): Promise<SavedSchema[]>;
  /** Save a schema with the library under `name` (replacing one of that name, in any case). */
  saveSchema(name: string, schema: unknown): Promise<SavedSchema>;
  /** Delete the schema saved as `name`. */
  deleteSchema(name: string): Promise<void>;
  settings(): Promise<Settings>;
  setPrivacy(change: Partial<PrivacyRequest>): Promise<Settings>;
  /** Whether agents may read the library, how to connect one, and what they read. */
  agents(): Promise<AgentsView>;
  /** The desktop app's own MCP-over-HTTP endpoint: start (true) or stop it; its address while it runs. */
  serveAgents?(on: boolean): Promise<HttpEndpoint | null>;
  /** Open an indexed document in the system's viewer (at `page` for PDFs where it can). */
  openDocument(path: string, page: number | null): Promise<OpenedView>;
  models(): Promise<Models>;
  fetchModel(id: string): Promise<void>;
  /** Measure this machine (a few seconds): the models with their speed here and the recommended answer model. */
  probeMachine(): Promise<Models>;
  /** The answer model from the next start (`null`: the registry's default). */
  useModel(id: string | null): Promise<Models>;
  /** Switch meaning search to another installed embedder (a background job; follow it with `watchProgress`). */
  switchEmbedder(embedder: string): Promise<void>;
  importModel(path: string, id?: string): Promise<ImportedView>;
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

const TOKEN_KEY = "quarry.token";

/** The server's token: from the link `quarry serve` prints (`#token=…`, then
 * taken out of the address bar and kept for this origin), else the one kept
 * from before; null when there is none. */
export function pageToken(): string | null {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    const token = decodeURIComponent(m[1]);
    try {
      localStorage.setItem(TOKEN_KEY, token);
    } catch {
      // Storage refused (private window): the token lasts for this page.
    }
    history.replaceState(null, "", location.pathname + location.search);
    return token;
  }
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export class HttpTransport implements Transport {
  constructor(
    private base = "",
    private token: string | null = null,
  ) {}

  /** `fetch` on the server, with the token. */
  private fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.token) headers.set("authorization", `Bearer ${this.token}`);
    return fetch(`${this.base}${path}`, { ...init, headers });
  }

  status(): Promise<Status> {
    return this.fetch("/api/status").then((r) => json<Status>(r));
  }

  watchProgress(on: (p: Progress) => void): () => void {
    // EventSource cannot send the token, so the stream is read with fetch,
    // and opened again after a dropped connection.
    const stop = new AbortController();
    const follow = async () => {
      while (!stop.signal.aborted) {
        try {
          const r = await this.fetch("/api/status/stream", { signal: stop.signal });
          if (!r.ok || !r.body) await json(r);
          await readSse(r.body!, (event, data) => {
            if (event === "progress") on(JSON.parse(data));
          });
        } catch {
          // Dropped, refused or stopped: try again shortly unless stopped.
        }
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    };
    void follow();
    return () => stop.abort();
  }

  async index(paths: string[]): Promise<void> {
    await json(
      await this.fetch(`/api/index`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ paths }),
      }),
    );
  }

  async cancelIndexing(): Promise<boolean> {
    const r = await json<{ stopping: boolean }>(
      await this.fetch(`/api/index/cancel`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" }),
    );
    return r.stopping;
  }

  async removeFolder(path: string): Promise<RemovedView> {
    return this.post("/api/folders/remove", { path });
  }

  async unlockLibrary(): Promise<void> {
    throw new QuarryError(
      "unavailable",
      "a server's library is unlocked where quarry serve runs (QUARRY_LIBRARY_PASSPHRASE, or typed when it starts)",
    );
  }

  async encryptLibrary(): Promise<void> {
    throw new QuarryError(
      "unavailable",
      "a server's library is encrypted where quarry serve runs: stop it and run `quarry encrypt` there",
    );
  }

  async rekeyLibrary(): Promise<void> {
    throw new QuarryError(
      "unavailable",
      "a server's library gets a new key where quarry serve runs: stop it and run `quarry rekey` there",
    );
  }

  async search(q: string, opts: SearchOptions): Promise<Hit[]> {
    const p = new URLSearchParams({ q, k: String(opts.k ?? 20) });
    if (opts.ext) p.set("ext", opts.ext);
    if (opts.pathPrefix) p.set("path_prefix", opts.pathPrefix);
    if (opts.modifiedAfterMs != null) p.set("modified_after_ms", String(opts.modifiedAfterMs));
    if (opts.modifiedBeforeMs != null) p.set("modified_before_ms", String(opts.modifiedBeforeMs));
    const r = await json<{ hits: Hit[] }>(await this.fetch(`/api/search?${p}`));
    return r.hits;
  }

  async ask(req: AskRequest, on: (e: AskEvent) => void, signal?: AbortSignal): Promise<void> {
    let failure: QuarryError | null = null;
    await this.postEvents("/api/ask", req, signal, (event, data) => {
      failure = dispatchAskEvent({ event, data } as WireAskEvent, on) ?? failure;
    });
    if (failure) throw failure;
  }

  /** POST `body` to `path` and pass on each server-sent event of the reply, its data parsed. */
  private async postEvents(
    path: string,
    body: unknown,
    signal: AbortSignal | undefined,
    on: (event: string, data: unknown) => void,
  ): Promise<void> {
    const r = await this.fetch(`${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal,
    });
    if (!r.ok || !r.body) await json(r);
    await readSse(r.body!, (event, data) => on(event, JSON.parse(data)));
  }

  async document(path: string): Promise<Doc> {
    return json<Doc>(await this.fetch(`/api/document?${new URLSearchParams({ path })}`));
  }

  extract(req: ExtractRequest, on: (u: ExtractUpdate) => void, signal?: AbortSignal): Promise<void> {
    return this.postTask("/api/extract", req, on, signal);
  }

  summarize(req: SummarizeRequest, on: (u: SummaryUpdate) => void, signal?: AbortSignal): Promise<void> {
    return this.postTask("/api/summarize", req, on, signal);
  }

  /** A task's server-sent updates to `on`; an error update is thrown once the stream has ended. */
  private async postTask<U extends { event: string; data: unknown }>(
    path: string,
    req: unknown,
    on: (u: U) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    let failure: QuarryError | null = null;
    await this.postEvents(path, req, signal, (event, data) => {
      const u = { event, data } as U;
      if (u.event === "error") {
        const e = u.data as { code: string; message: string };
        failure = new QuarryError(e.code, e.message);
      } else on(u);
    });
    if (failure) throw failure;
  }

  async exportTable(req: ExtractRequest, format: "csv" | "xlsx" | "json"): Promise<string> {
    const r = await this.fetch(`/api/extract/table`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...req, format }),
    });
    if (!r.ok) await json(r);
    const name = `extraction.${format}`;
    const link = Object.assign(document.createElement("a"), {
      href: URL.createObjectURL(await r.blob()),
      download: name,
    });
    link.click();
    URL.revokeObjectURL(link.href);
    return name;
  }

  async schemas(): Promise<SavedSchema[]> {
    return json(await this.fetch(`/api/schemas`));
  }

  async saveSchema(name: string, schema: unknown): Promise<SavedSchema> {
    return json(
      await this.fetch(`/api/schemas`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name, schema }),
      }),
    );
  }

  async deleteSchema(name: string): Promise<void> {
    const r = await this.fetch(`/api/schemas?name=${encodeURIComponent(name)}`, { method: "DELETE" });
    if (!r.ok) await json(r);
  }

  async agents(): Promise<AgentsView> {
    return json(await this.fetch(`/api/agents`));
  }

  async settings(): Promise<Settings> {
    return json(await this.fetch(`/api/settings`));
  }

  async setPrivacy(change: Partial<PrivacyRequest>): Promise<Settings> {
    return this.post("/api/settings/privacy", change);
  }

  openDocument(path: string, page: number | null): Promise<OpenedView> {
    return this.post("/api/open", { path, page });
  }

  async models(): Promise<Models> {
    return json(await this.fetch(`/api/models`));
  }

  async fetchModel(id: string): Promise<void> {
    await this.post("/api/models/fetch", { id });
  }

  probeMachine(): Promise<Models> {
    return this.post("/api/models/probe", {});
  }

  useModel(id: string | null): Promise<Models> {
    return this.post("/api/models/use", { id });
  }

  async switchEmbedder(embedder: string): Promise<void> {
    await this.post("/api/embedder", { embedder });
  }

  importModel(path: string, id?: string): Promise<ImportedView> {
    return this.post("/api/models/import", { path, id: id || null });
  }

  async post<T>(path: string, body: unknown): Promise<T> {
    return json<T>(
      await this.fetch(`${path}`, {
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
  return new HttpTransport("", pageToken());
}
