// The desktop app's smoke test: the real Tauri binary in a real WebKitGTK
// window on a virtual X display (Xvfb), driven over W3C WebDriver by Debian's
// WebKitWebDriver (what tauri-driver wraps on Linux). The app opens a library
// indexed beforehand and must, over Tauri IPC: render, show the library's
// counts, search, answer with the local model over a channel, extract a
// table over another, list the models, serve an agent over MCP, and encrypt
// the library in place (then open encrypted libraries with a passphrase). It reports the window's time to first paint and saves screenshots
// (the webview's own and the whole X screen, to show the window itself).
//
//   xvfb-run -a -s "-screen 0 1280x800x24" \
//     QUARRY_BIN=… QUARRY_DESKTOP_BIN=… node ui/tests/desktop.mjs
//
// Env: QUARRY_BIN and QUARRY_DESKTOP_BIN (required), QUARRY_MODELS_DIR (as for
// the Rust tests), WEBKIT_WEBDRIVER (default WebKitWebDriver on PATH),
// QUARRY_SCREENSHOTS (default ../artifacts/screenshots).

import { execFileSync, spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import assert from "node:assert/strict";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const quarry = process.env.QUARRY_BIN;
const desktop = process.env.QUARRY_DESKTOP_BIN;
assert.ok(quarry && desktop, "set QUARRY_BIN and QUARRY_DESKTOP_BIN");
assert.ok(process.env.DISPLAY, "run under an X display (xvfb-run)");
const shots = resolve(process.env.QUARRY_SCREENSHOTS ?? join(repo, "artifacts/screenshots"));
mkdirSync(shots, { recursive: true });

// A library indexed beforehand with the CLI (the same engine the app opens).
const tmp = mkdtempSync(join(tmpdir(), "quarry-desktop-"));
const docs = join(tmp, "docs");
cpSync(join(repo, "tests/fixtures/corpus"), docs, { recursive: true });
const env = {
  ...process.env,
  QUARRY_LIBRARY_DIR: join(tmp, "library"),
  QUARRY_CONFIG_DIR: join(tmp, "config"),
  // The webview accepts WebDriver automation only when this is set.
  TAURI_WEBVIEW_AUTOMATION: "true",
  // Software rendering: Xvfb has no GPU.
  WEBKIT_DISABLE_COMPOSITING_MODE: "1",
  LIBGL_ALWAYS_SOFTWARE: "1",
};
// The app's own MCP endpoint, on a port nothing else holds.
env.QUARRY_AGENTS_PORT = String(await freePort());
execFileSync(quarry, ["index", docs, "--library", env.QUARRY_LIBRARY_DIR], { env, stdio: "inherit" });

async function freePort() {
  return new Promise((ok) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const p = srv.address().port;
      srv.close(() => ok(p));
    });
  });
}

async function until(what, probe, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Start WebKitWebDriver with the app's environment, then the app in a
 * session; returns WebDriver helpers and the launch time. */
async function launch(appEnv) {
  const port = await freePort();
  const driver = spawn(process.env.WEBKIT_WEBDRIVER ?? "WebKitWebDriver", [`--port=${port}`], {
    env: appEnv,
    stdio: ["ignore", "inherit", "inherit"],
  });
  const base = `http://127.0.0.1:${port}`;
  const wd = async (method, path, body, timeoutMs = 60_000) => {
    const r = await fetch(`${base}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const json = await r.json();
    if (!r.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value ?? json)}`);
    return json.value;
  };
  await until("WebKitWebDriver", () => wd("GET", "/status"), 15_000);
  const launched = Date.now();
  const created = await wd("POST", "/session", {
    capabilities: { alwaysMatch: { "webkitgtk:browserOptions": { binary: desktop, args: [] } } },
  });
  const session = created.sessionId;
  const s = (path) => `/session/${session}${path}`;
  const app = {
    launched,
    js: (script, args = []) => wd("POST", s("/execute/sync"), { script, args }),
    find: async (css) => {
      const found = await wd("POST", s("/element"), { using: "css selector", value: css });
      // W3C's element key (WebKitWebDriver may also send the legacy one).
      return found["element-6066-11e4-a52e-4f926ccd2d5e"] ?? found.ELEMENT ?? Object.values(found)[0];
    },
    click: async (css) => wd("POST", s(`/element/${await app.find(css)}/click`), {}),
    type: async (css, text) => wd("POST", s(`/element/${await app.find(css)}/value`), { text }),
    // The webview's own screenshot; if WebKit does not deliver one, the X
    // screen's (which shows the window all the same).
    shot: async (name) => {
      try {
        const png = await wd("GET", s("/screenshot"), undefined, 20_000);
        writeFileSync(join(shots, name), Buffer.from(png, "base64"));
      } catch (e) {
        console.log(`desktop: webview screenshot ${name} failed (${e.message}); taking the X screen`);
        execFileSync("import", ["-window", "root", join(shots, name)]);
      }
    },
    close: async () => {
      await wd("DELETE", `/session/${session}`).catch(() => {});
      driver.kill();
    },
  };
  return app;
}

let app = null;
let failed = false;
try {
  app = await launch(env);
  const { js, click, type, shot, launched } = app;

  // The window paints; then the library's counts arrive over IPC.
  await until("the Library screen", () => js("return document.querySelector('#tab-library[aria-selected=true]') !== null"));
  const paint = await js(
    "const p = performance.getEntriesByName('first-contentful-paint')[0] || performance.getEntriesByType('paint')[0];" +
      "return { origin: performance.timeOrigin, paint: p ? p.startTime : null, tauri: '__TAURI_INTERNALS__' in window };",
  );
  assert.ok(paint.tauri, "the UI runs inside Tauri (IPC transport)");
  const docsShown = await until("the document count", () =>
    js("const dd = [...document.querySelectorAll('#summary dt')].find(d => d.textContent === 'Documents'); return dd ? Number(dd.nextElementSibling.textContent) : 0;"),
  );
  assert.ok(docsShown > 0, "the app shows the indexed documents");
  const firstPaintMs = paint.paint != null ? Math.round(paint.origin + paint.paint - launched) : null;
  console.log(
    `desktop: window first paint ${firstPaintMs ?? "n/a"} ms after launch` +
      ` (page's own first paint ${paint.paint != null ? Math.round(paint.paint) : "n/a"} ms); ${docsShown} documents shown`,
  );
  await shot("desktop-library.png");
  try {
    execFileSync("import", ["-window", "root", join(shots, "desktop-window.png")]);
  } catch (e) {
    console.log(`desktop: no X screenshot (${e.message.split("\n")[0]})`);
  }

  // Search over IPC.
  await click("#tab-search");
  await type("#query", "Morteratsch glacier");
  const hits = await until("search results", () =>
    js("return document.querySelectorAll('#results .hit').length"),
  );
  assert.ok(hits > 0, "search finds something");
  await shot("desktop-search.png");

  // Ask: answer tokens come over a Tauri channel, with citations.
  await click("#tab-ask");
  await type("#question", "How much length did the Morteratsch glacier lose?");
  await click("#ask-button");
  await until("the answer", () => js("return document.querySelector('#answer').dataset.done === 'true'"), 180_000);
  const answer = await js("return { text: document.querySelector('#answer').textContent, badge: document.querySelector('#route-badge').textContent, sources: document.querySelectorAll('#sources li').length }");
  assert.ok(answer.text.trim().length > 0, "an answer was written");
  assert.ok(answer.sources > 0, "the answer lists its sources");
  assert.match(answer.badge, /local|cache|none/, "the badge says where the answer came from");
  console.log(`desktop: answered (${answer.badge.split(" ")[0]}): ${answer.text.slice(0, 80)}…`);
  // A citation opens its passage in the preview pane.
  await click("#answer .cite, #sources .source");
  await until("the cited passage", () => js("return document.querySelector('#source-preview mark.passage, #source-preview blockquote.passage') !== null"));
  await shot("desktop-ask.png");
  // Summarize the document in the preview over a channel.
  await click("#source-preview .summarize");
  await until("the summary", () => js("return document.querySelector('#source-preview .summary')?.dataset.done === 'true'"), 180_000);
  const summary = await js("return document.querySelector('#source-preview .summary-text').textContent");
  assert.ok(summary.trim().length > 20, `a summary, not a word: ${summary}`);
  await shot("desktop-summary.png");

  // Extract over IPC and a channel: a field over one document fills the table.
  await click("#tab-extract");
  await type("#fields .field-row .field-name", "sender");
  await type("#fields .field-row .field-description", "who sent the message");
  await type("#extract-folder", join(docs, "invite.eml"));
  await click("#extract-button");
  await until("the extracted table", () => js("return document.querySelector('#extract-table').dataset.done === 'true'"), 180_000);
  const table = await js("return { rows: document.querySelectorAll('#extract-rows tr').length, head: [...document.querySelectorAll('#extract-head th')].map((h) => h.textContent), status: document.querySelector('#extract-status').textContent }");
  assert.equal(table.rows, 1, JSON.stringify(table));
  assert.deepEqual(table.head, ["Document", "sender"]);
  assert.match(table.status, /1 extracted/);
  await shot("desktop-extract.png");
  // Saved with the library over IPC, listed, then deleted.
  await type("#schema-name", "Senders");
  await click("#schema-save");
  await until("the saved schema", () => js("return document.querySelector('#schema-saved').value === 'Senders'"));
  assert.match(await js("return document.querySelector('#extract-status').textContent"), /Saved the schema “Senders” with the library \(1 field\)/);
  await click("#schema-delete");
  await until("the schema deleted", () => js("return !document.querySelector(\"#schema-saved option[value='Senders']\")"));

  // Settings: the models, from the same store the CLI uses.
  await click("#tab-settings");
  const inUse = await until("the models", () =>
    js("return [...document.querySelectorAll('#models tr')].filter(r => r.textContent.includes('in use')).length"),
  );
  assert.ok(inUse >= 1, "the embedder in use is listed");
  // The machine is probed through the app's own command and the answer
  // models show their speed on it; choosing one switches the app to it.
  await click("#probe-machine");
  await until("the machine's probe", () => js("return /^This machine: .*threads/.test(document.querySelector('#machine').textContent)"));
  await until("a speed on this machine", () =>
    js("return [...document.querySelectorAll('#models tr')].some(r => /this machine: ~\\d+ tok\\/s reading/.test(r.textContent))"),
  );
  await click('#models button[aria-label="Use gemma3-270m-q4_k_m for answers"]');
  await until("the chosen model in use", () =>
    js("return [...document.querySelectorAll('#models tr')].some(r => r.textContent.includes('gemma3-270m-q4_k_m') && r.textContent.includes('installed, in use'))"),
  );
  // Agents: the app serves MCP over HTTP on demand; a real client (the
  // official SDK) searches through it, and stopping it closes the port.
  await click("#agents-http");
  const [url, token] = await until("the agents' endpoint", () =>
    js("const m = document.querySelector('#agents-http-state').textContent.match(/(http:\\/\\/\\S+\\/mcp).*Bearer (\\S+)/); return m ? [m[1], m[2]] : null"),
  );
  // Locked like `quarry serve`: without the token the endpoint refuses.
  const bare = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
  assert.equal(bare.status, 401, "the agents' endpoint needs its token");
  const sdk = (p) => import(pathToFileURL(join(repo, "tests/mcp/node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href);
  const { Client } = await sdk("client/index.js");
  const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");
  const agent = new Client({ name: "quarry-desktop-test", version: "1.0.0" });
  await agent.connect(
    new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }),
  );
  const found = await agent.callTool({ name: "search", arguments: { query: "Morteratsch glacier", k: 2 } });
  assert.ok(!found.isError && found.structuredContent.hits.length > 0, JSON.stringify(found));
  await agent.close();
  await click("#agents-http");
  await until("the endpoint to stop", () => js("return document.querySelector('#agents-http-state').textContent === ''"));
  await assert.rejects(fetch(url, { method: "POST" }), "the stopped endpoint refuses connections");
  // Settings lists the call in what agents read.
  await click("#tab-library");
  await click("#tab-settings");
  await until("the agent's call in the log", () => js("return /quarry-desktop-test/.test(document.querySelector('#agents-log').textContent)"));
  await shot("desktop-settings.png");

  const error = await js("const e = document.querySelector('#error'); return e.hidden ? '' : e.textContent");
  assert.equal(error, "", "no error shown");

  // Encrypting the library from the app: the engine closes, every file is
  // rewritten sealed, and the library opens again with the same documents.
  await click("#tab-library");
  const stateText = () => js("return document.querySelector('#encryption-state').textContent");
  assert.match(await stateText(), /^Not encrypted/, "a plain library says so");
  await js("document.querySelector('#encrypt-section').open = true; window.confirm = () => true;");
  const appPassphrase = "typed in the desktop app";
  await type("#encrypt-passphrase", appPassphrase);
  await type("#encrypt-again", appPassphrase);
  await click("#encrypt-button");
  await until("the library encrypted", async () => /^Encrypted/.test(await stateText()), 120_000);
  const sealedDocs = await until("the encrypted library's counts", () =>
    js("const dd = [...document.querySelectorAll('#summary dt')].find(d => d.textContent === 'Documents'); return dd ? Number(dd.nextElementSibling.textContent) : 0;"),
  );
  assert.equal(sealedDocs, docsShown, "the same documents after encryption");
  assert.equal(await js("return document.querySelector('#encrypt-section').hidden"), true, "no offer to encrypt again");
  const checked = JSON.parse(
    execFileSync(quarry, ["check", "--json"], { env: { ...env, QUARRY_LIBRARY_PASSPHRASE: appPassphrase } }).toString(),
  );
  assert.equal(checked.consistent, true, JSON.stringify(checked));
  assert.deepEqual(checked.encryption.plain, [], "no file left plain");
  assert.ok(checked.encryption.sealed > 10, JSON.stringify(checked.encryption));
  await shot("desktop-encrypted.png");

  // A new passphrase (and key): a wrong current one is refused; the right
  // one reseals every file, and the old passphrase no longer opens it.
  assert.equal(await js("return document.querySelector('#rekey-section').hidden"), false, "a key change is offered");
  await js("document.querySelector('#rekey-section').open = true;");
  const newPassphrase = "changed in the desktop app";
  await type("#rekey-current", "not the passphrase");
  await type("#rekey-passphrase", newPassphrase);
  await type("#rekey-again", newPassphrase);
  await click("#rekey-button");
  await until("the wrong current passphrase refused", () =>
    js("return document.querySelector('#error').textContent.includes('does not open')"),
  );
  await type("#rekey-current", appPassphrase);
  await type("#rekey-passphrase", newPassphrase);
  await type("#rekey-again", newPassphrase);
  await click("#rekey-button");
  await until("the new key", () => js("return document.querySelector('#encryption-note').textContent.includes('new key')"), 120_000);
  const rechecked = JSON.parse(
    execFileSync(quarry, ["check", "--json"], { env: { ...env, QUARRY_LIBRARY_PASSPHRASE: newPassphrase } }).toString(),
  );
  assert.deepEqual(rechecked.encryption.plain, [], "no file left plain");
  assert.deepEqual(rechecked.encryption.damaged, [], "every file opens with the new key");
  assert.throws(
    () => execFileSync(quarry, ["status"], { env: { ...env, QUARRY_LIBRARY_PASSPHRASE: appPassphrase }, stdio: "pipe" }),
    "the old passphrase no longer opens the library",
  );
  await click("#tab-search");
  await js("document.querySelector('#query').value = ''; document.querySelectorAll('#results .hit').forEach((h) => h.remove());");
  await type("#query", "Morteratsch glacier");
  const sealedHits = await until("search results from the encrypted library", () =>
    js("return document.querySelectorAll('#results .hit').length"),
  );
  assert.ok(sealedHits > 0, "the encrypted library is searched");
  console.log(
    `desktop: the library was encrypted from the app (${checked.encryption.sealed} files sealed, ${sealedDocs} documents), then given a new passphrase and key`,
  );
  await app.close();

  // A first run with no models: the app opens on Settings and says what it
  // needs; importing the embedder from a folder on this machine opens the
  // (new, empty) library.
  const models = process.env.QUARRY_MODELS_DIR;
  assert.ok(models, "set QUARRY_MODELS_DIR");
  app = await launch({
    ...env,
    QUARRY_MODELS_DIR: join(tmp, "no-models"),
    QUARRY_LIBRARY_DIR: join(tmp, "first-library"),
  });
  let seen = "";
  await until(
    "the first-run message",
    async () => {
      seen = await app.js(
        "return `settings ${document.querySelector('#settings').hidden ? 'hidden' : 'shown'}; error: ${document.querySelector('#error').textContent}`",
      );
      return seen.startsWith("settings shown") && seen.includes("needs its models");
    },
    60_000,
  ).catch((e) => {
    throw new Error(`${e.message} (last seen: ${seen})`);
  });
  const missing = await until("the models list", () =>
    app.js("return [...document.querySelectorAll('#models tr')].filter(r => r.textContent.includes('not installed')).length"),
  );
  assert.ok(missing >= 2, "the embedder and the generator are listed as not installed");
  await app.shot("desktop-first-run.png");
  const embedder = readdirSync(models).find((d) => d.startsWith("all-minilm"));
  assert.ok(embedder, `no all-minilm model in ${models}`);
  await app.type("#import-path", join(models, embedder));
  await app.click("#import-button");
  await until(
    "the imported embedder",
    () => app.js(`return [...document.querySelectorAll('#models tr')].some(r => r.textContent.includes('${embedder}') && r.textContent.includes('installed, in use'))`),
    120_000,
  );
  await app.click("#tab-library");
  const empty = await until("the new library", () =>
    app.js("const dd = [...document.querySelectorAll('#summary dt')].find(d => d.textContent === 'Documents'); return dd ? dd.nextElementSibling.textContent : null;"),
  );
  assert.equal(empty, "0", "a new, empty library");
  const after = await app.js("const e = document.querySelector('#error'); return e.hidden ? '' : e.textContent");
  assert.equal(after, "", "the first-run message is gone");
  console.log(`desktop: first run imported ${embedder} and opened a new library`);

  // An encrypted library (made with the CLI): the app asks for its
  // passphrase, refuses a wrong one, and opens the library with the right one.
  const sealedLibrary = join(tmp, "sealed-library");
  const passphrase = "desktop test passphrase";
  const sealedEnv = { ...env, QUARRY_LIBRARY_DIR: sealedLibrary, QUARRY_LIBRARY_PASSPHRASE: passphrase };
  execFileSync(quarry, ["init", "--encrypt"], { env: sealedEnv, stdio: "inherit" });
  execFileSync(quarry, ["index", docs], { env: sealedEnv, stdio: "inherit" });
  await app.close();
  app = await launch({ ...env, QUARRY_LIBRARY_DIR: sealedLibrary, QUARRY_LIBRARY_PASSPHRASE: "" });
  await until("the passphrase form", () => app.js("return !document.querySelector('#unlock-form').hidden"));
  await app.shot("desktop-locked.png");
  await app.type("#unlock-passphrase", "not the passphrase");
  await app.click("#unlock-button");
  await until("the wrong passphrase refused", () =>
    app.js("return document.querySelector('#error').textContent.includes('does not open')"),
  );
  await app.type("#unlock-passphrase", passphrase);
  await app.click("#unlock-button");
  const unlocked = await until("the unlocked library", () =>
    app.js("const dd = [...document.querySelectorAll('#summary dt')].find(d => d.textContent === 'Documents'); return dd ? dd.nextElementSibling.textContent : null;"),
  );
  assert.ok(Number(unlocked) > 0, `the encrypted library's documents are listed (${unlocked})`);
  assert.equal(await app.js("return document.querySelector('#unlock-form').hidden"), true, "the form is gone");
  console.log(`desktop: an encrypted library opened with its passphrase (${unlocked} documents)`);

  // Removing a folder from an encrypted library offers to replace its key
  // (copies made before, outside the library's files, then cannot be read).
  await until("a folder to remove", () => app.js("return document.querySelectorAll('#folders .remove').length"));
  await app.js("window.confirm = () => true;");
  await app.click("#folders .remove");
  await until("the offer of a new key", () => app.js("return !!document.querySelector('#removed-rekey')"), 120_000);
  const removedNote = await app.js("return document.querySelector('#removed').textContent");
  assert.match(removedNote, /Removed .* and its \d+ documents\./, removedNote);
  await app.click("#removed-rekey");
  assert.equal(await app.js("return document.querySelector('#rekey-section').open"), true, "the key change opens");
  assert.equal(await app.js("return document.querySelector('#rekey-current-row').hidden"), false, "it asks for the passphrase");
  console.log(`desktop: removal from the encrypted library offered a new key (${removedNote.slice(0, 80)}…)`);
  console.log(`desktop: screenshots in ${shots}`);
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await app?.close();
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
