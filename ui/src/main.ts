// Quarry's UI: the transport to the engine, the tabs, and the five screens.
// Each screen keeps its own state; they reach each other only through the
// functions wired together here.

import "./style.css";
import { showError } from "./dom";
import { initTabs } from "./tabs";
import { initAsk } from "./screens/ask";
import { initExtract } from "./screens/extract";
import { initLibrary } from "./screens/library";
import { initSearch } from "./screens/search";
import { initSettings } from "./screens/settings";
import { createTransport, type QuarryError } from "./transport";

const api = await createTransport();

const tabs = initTabs((name) => {
  if (name === "settings") settings.show();
  if (name === "extract") extract.refreshSaved();
});
const library = initLibrary(api, {
  showCoverage: (chunks, pending) => search.showCoverage(chunks, pending),
  onModelsMissing: firstRun,
});
const search = initSearch(api, {
  extractFrom: (query, paths) => {
    extract.useDocuments(query, paths);
    tabs.select("extract");
  },
});
initAsk(api, { showPassage: search.showPassage });
const extract = initExtract(api, { showPassage: search.showPassage });
const settings = initSettings(api, {
  onModelsReady: () => library.refreshStatus().then(() => extract.refreshSaved()),
  onReembedStarted: () => library.watchIndexing(),
});

/** A first run without models: Settings, where they are fetched. */
function firstRun(e: QuarryError) {
  settings.awaitModels();
  tabs.select("settings");
  showError(
    `Quarry needs its models before it can index or answer (${e.message}). ` +
      "Fetch them below, or import files you already have; they stay on this machine.",
  );
}

// ---------- start ----------

tabs.select("library");
library.refreshStatus().then(() => settings.reload());
api.status().then((s) => s.indexing.running && library.watchIndexing()).catch(() => {});
