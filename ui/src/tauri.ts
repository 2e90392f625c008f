// The desktop transport: the same interface as HttpTransport, over Tauri IPC
// (commands), events (indexing progress) and channels (answer, extraction and summary events).

import { Channel, invoke } from "@tauri-apps/api/core";
import { listen } from "@tauri-apps/api/event";
import {
  dispatchAskEvent,
  QuarryError,
  type AskEvent,
  type AskRequest,
  type Doc,
  type ExtractRequest,
  type ExtractUpdate,
  type Hit,
  type ImportedView,
  type Models,
  type OpenedView,
  type Progress,
  type SearchOptions,
  type Settings,
  type Status,
  type SummarizeRequest,
  type SummaryUpdate,
  type Transport,
  type WireAskEvent,
} from "./transport";
import type { HttpEndpoint } from "./bindings/HttpEndpoint";
import type { RemovedView } from "./bindings/RemovedView";
import type { PrivacyRequest } from "./bindings/PrivacyRequest";
import type { AgentsView } from "./bindings/AgentsView";
import type { SearchView } from "./bindings/SearchView";
import type { SavedSchema } from "./bindings/SavedSchema";

async function call<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(cmd, args);
  } catch (e) {
    const err = e as { code?: string; message?: string };
    throw new QuarryError(err?.code ?? "internal", err?.message ?? String(e));
  }
}

let nextAsk = 1;

export class TauriTransport implements Transport {
  status(): Promise<Status> {
    return call("status");
  }

  watchProgress(on: (p: Progress) => void): () => void {
    let stop: (() => void) | null = null;
    let stopped = false;
    listen<Progress>("progress", (e) => on(e.payload)).then((un) => {
      if (stopped) un();
      else stop = un;
    });
    // The current state first, like the server's stream.
    this.status().then((s) => on(s.indexing)).catch(() => {});
    return () => {
      stopped = true;
      stop?.();
    };
  }

  async index(paths: string[]): Promise<void> {
    await call("index", { paths });
  }

  cancelIndexing(): Promise<boolean> {
    return call("cancel_indexing");
  }

  removeFolder(path: string): Promise<RemovedView> {
    return call("remove_folder", { path });
  }

  unlockLibrary(passphrase: string): Promise<void> {
    return call("unlock_library", { passphrase });
  }

  encryptLibrary(passphrase: string | null): Promise<void> {
    return call("encrypt_library", { passphrase });
  }

  rekeyLibrary(current: string | null, next: string | null): Promise<void> {
    return call("rekey_library", { current, new: next });
  }

  async search(q: string, opts: SearchOptions): Promise<Hit[]> {
    const r = await call<SearchView>("search", {
      query: {
        q,
        k: opts.k ?? 20,
        ext: opts.ext || null,
        path_prefix: opts.pathPrefix || null,
        modified_after_ms: opts.modifiedAfterMs ?? null,
        modified_before_ms: opts.modifiedBeforeMs ?? null,
      },
    });
    return r.hits;
  }

  async ask(req: AskRequest, on: (e: AskEvent) => void, signal?: AbortSignal): Promise<void> {
    let failure: QuarryError | null = null;
    let aborted = false;
    const askId = nextAsk++;
    signal?.addEventListener("abort", () => {
      aborted = true;
      call("cancel_ask", { askId }).catch(() => {});
    });
    const channel = new Channel<WireAskEvent>();
    channel.onmessage = (e) => {
      if (!aborted) failure = dispatchAskEvent(e, on) ?? failure;
    };
    await call("ask", { request: req, askId, onEvent: channel });
    if (failure) throw failure;
  }

  document(path: string): Promise<Doc> {
    return call("document", { path });
  }

  extract(req: ExtractRequest, on: (u: ExtractUpdate) => void, signal?: AbortSignal): Promise<void> {
    return this.run("extract", req, on, signal);
  }

  summarize(req: SummarizeRequest, on: (u: SummaryUpdate) => void, signal?: AbortSignal): Promise<void> {
    return this.run("summarize", req, on, signal);
  }

  /** A streamed task command: its updates to `on`, an error update thrown at the end; aborting stops it. */
  private async run<U extends { event: string; data: unknown }>(
    command: string,
    request: unknown,
    on: (u: U) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    let failure: QuarryError | null = null;
    let aborted = false;
    const runId = nextAsk++;
    signal?.addEventListener("abort", () => {
      aborted = true;
      call("cancel_ask", { askId: runId }).catch(() => {});
    });
    const channel = new Channel<U>();
    channel.onmessage = (u) => {
      if (aborted) return;
      if (u.event === "error") {
        const e = u.data as { code: string; message: string };
        failure = new QuarryError(e.code, e.message);
      } else on(u);
    };
    await call(command, { request, runId, onEvent: channel });
    if (failure) throw failure;
  }

  async exportTable(req: ExtractRequest, format: "csv" | "xlsx" | "json"): Promise<string> {
    return (await call<string | null>("export_table", { request: { ...req, format } })) ?? "";
  }

  schemas(): Promise<SavedSchema[]> {
    return call("schemas");
  }

  saveSchema(name: string, schema: unknown): Promise<SavedSchema> {
    return call("save_schema", { request: { name, schema } });
  }

  deleteSchema(name: string): Promise<void> {
    return call("delete_schema", { name });
  }

  settings(): Promise<Settings> {
    return call("settings");
  }

  setPrivacy(change: Partial<PrivacyRequest>): Promise<Settings> {
    return call("set_privacy", { change });
  }

  agents(): Promise<AgentsView> {
    return call("agents");
  }

  serveAgents(on: boolean): Promise<HttpEndpoint | null> {
    return call("serve_agents", { on });
  }

  openDocument(path: string, page: number | null): Promise<OpenedView> {
    return call("open_document", { path, page });
  }

  models(): Promise<Models> {
    return call("models");
  }

  async fetchModel(id: string): Promise<void> {
    await call("fetch_model", { id });
  }

  probeMachine(): Promise<Models> {
    return call("probe_models");
  }

  useModel(id: string | null): Promise<Models> {
    return call("use_model", { id });
  }

  async switchEmbedder(embedder: string): Promise<void> {
    await call("switch_embedder", { embedder });
  }

  importModel(path: string, id?: string): Promise<ImportedView> {
    return call("import_model", { path, id: id || null });
  }

  pickFolder(): Promise<string | null> {
    return call("pick_folder");
  }

  pickModelFile(): Promise<string | null> {
    return call("pick_model_file");
  }
}
