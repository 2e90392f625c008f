// Shared formatting: file names, sizes, durations, shares, and errors as sentences.

import { QuarryError } from "./transport";

/** The last component of a path (either separator). */
export const baseName = (p: string) => p.split(/[\\/]/).pop() ?? p;

/** "512 B", "1.5 KiB", "3.2 GiB". */
export function humanBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

/** "40 s", "12 min", "3 h 20 min". */
export function humanDuration(s: number): string {
  if (s < 90) return `${Math.ceil(s)} s`;
  const min = Math.round(s / 60);
  return min < 90 ? `${min} min` : `${Math.floor(min / 60)} h ${min % 60} min`;
}

/** "42%" of chunks that have vectors. */
export function readyShare(chunks: number, pending: number): string {
  return `${Math.floor((100 * (chunks - pending)) / Math.max(chunks, 1))}%`;
}

/** Errors as sentences people can act on ("" for an aborted request). */
export function sentence(e: unknown, doing: string): string {
  if (e instanceof QuarryError) {
    const hints: Record<string, string> = {
      bad_path: "Check that the folder exists and that you typed its full path.",
      locked: "Another indexing run is in progress; wait for it to finish.",
      key_needed: "Type its passphrase under Library.",
      wrong_key: "Check the passphrase and try again.",
      key_change_unfinished: "Run the same `quarry encrypt` or `quarry rekey` again in a terminal to finish it.",
      model_missing: "Fetch it under Settings, Models (or run `quarry models fetch`).",
      outside_library: "Only documents of the library open here.",
      open_remote: "Open it on the machine that runs Quarry.",
      fetch_running: "One model is fetched at a time.",
      privacy_blocked: "Your privacy mode keeps this question on this machine.",
      unauthorized: "Open the link `quarry serve` printed: it carries the token, and this browser keeps it.",
    };
    return `Could not ${doing}: ${e.message}. ${hints[e.code] ?? ""}`.trim();
  }
  if (e instanceof DOMException && e.name === "AbortError") return "";
  const hint = "__TAURI_INTERNALS__" in window ? "" : " Is quarry serve running?";
  return `Could not ${doing}: ${e instanceof Error ? e.message : String(e)}.${hint}`;
}

/** "scanned page, OCR 87%" for a passage read by OCR (confidence 0–100), else "". */
export function scanLabel(ocrConfidence: number | undefined | null): string {
  return ocrConfidence == null ? "" : `scanned page, OCR ${Math.round(ocrConfidence)}%`;
}
