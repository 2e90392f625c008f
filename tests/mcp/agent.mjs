// Quarry's MCP server driven by a real agent-side client: the official MCP
// TypeScript SDK (@modelcontextprotocol/sdk), over stdio (`quarry mcp`, the
// way Claude Desktop and Cursor launch it) and over streamable HTTP
// (`quarry serve` at /mcp). On a fixture library indexed by the real binary:
// the tools are listed; search, read_passage, read_document and ask answer;
// resources list and read; files outside the library are refused; a library
// not shared with agents refuses everything; a local-only library's `ask`
// routed to a cloud provider opens no connection (a listening trap counts
// them); the HTTP endpoint needs the token, loopback included; every call is in
// the access log (`quarry audit --mcp`). It also times `search` over MCP
// against the CLI on the same library (artifacts/mcp-latency.json).
//
//   QUARRY_BIN=target/debug/quarry [QUARRY_DESKTOP_BIN=target/debug/quarry-desktop] node tests/mcp/agent.mjs

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const bin = process.env.QUARRY_BIN;
if (!bin) throw new Error("set QUARRY_BIN to the quarry binary (scripts/test.sh does)");

const work = fs.mkdtempSync(path.join(os.tmpdir(), "quarry-mcp-"));
const docs = path.join(work, "docs");
const library = path.join(work, "library");
const config = path.join(work, "config");
fs.cpSync(path.join(repo, "tests/fixtures/corpus"), docs, { recursive: true });
const outside = path.join(work, "not-in-the-library.txt");
fs.writeFileSync(outside, "salary review: confidential, not for any agent\n");
const SECRET = "sk-mcp-test-secret";
const env = {
  ...process.env,
  QUARRY_CONFIG_DIR: config,
  QUARRY_LIBRARY_DIR: library,
  QUARRY_API_KEY: SECRET,
};

function quarry(...args) {
  return execFileSync(bin, args, { env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function text(result) {
  return result.content.map((c) => c.text ?? "").join("");
}

async function call(client, name, args = {}) {
  const result = await client.callTool({ name, arguments: args });
  return { result, value: result.structuredContent, error: result.isError ? text(result) : null };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

// A listener that counts the connections a provider request would open.
function trap() {
  let hits = 0;
  const server = net.createServer((sock) => {
    hits += 1;
    sock.destroy();
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({ port: server.address().port, hits: () => hits, close: () => server.close() }),
    ),
  );
}

function startServe(args) {
  const child = spawn(bin, ["serve", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`quarry serve did not start: ${stderr}`)), 120_000);
    child.stdout.on("data", (d) => {
      out += d;
      // The address, then the link with the kept token (locked by default;
      // a token given with --token is not printed).
      const m = out.match(/at (http:\/\/\S+)\n(.*)\n/);
      if (m) {
        clearTimeout(timer);
        resolve({ base: m[1], token: m[2].match(/#token=([0-9a-f]{64})/)?.[1], child });
      }
    });
    child.on("exit", (code) => reject(new Error(`quarry serve exited ${code}: ${stderr}`)));
  });
}

const clientInfo = { name: "quarry-mcp-test", version: "1.0.0" };

async function stdioClient(command = bin) {
  const transport = new StdioClientTransport({
    command,
    args: ["mcp", "--library", library],
    env,
    stderr: "pipe",
  });
  const client = new Client(clientInfo);
  await client.connect(transport);
  return client;
}

async function checkTools(client) {
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name).sort();
  for (const want of ["ask", "list_folders", "read_document", "read_passage", "search", "status", "summarize", "extract"]) {
    assert.ok(names.includes(want), `tool ${want} listed: ${names}`);
  }
  const search = tools.find((t) => t.name === "search");
  assert.ok(search.inputSchema.properties.query, "search takes a query");
  assert.deepEqual(search.inputSchema.required, ["query"]);
}

// search → read_passage → read_document, and the refusals.
async function checkReading(client) {
  const { value: found, error } = await call(client, "search", { query: "glaciers retreat in hotter summers", k: 3 });
  assert.equal(error, null);
  assert.ok(found.hits.length >= 1 && found.hits.length <= 3, JSON.stringify(found));
  const top = found.hits[0];
  assert.equal(path.basename(top.path), "glaciers.pdf", JSON.stringify(top));
  assert.ok(top.path.startsWith(docs) && top.snippet.length > 0 && top.id && top.uri.startsWith("quarry://passage/"));

  const { value: passage } = await call(client, "read_passage", { id: top.id });
  assert.equal(passage.path, top.path);
  assert.ok(passage.passage >= 1 && passage.passage <= passage.of, JSON.stringify(passage));
  assert.match(passage.text, /glacier/i);

  const { value: doc } = await call(client, "read_document", { path: top.path, max_chars: 200 });
  assert.ok(doc.text.length <= 200 && doc.total_chars > 0, JSON.stringify(doc));
  if (doc.total_chars > 200) assert.equal(doc.next_offset, 200);
  const { value: rest } = await call(client, "read_document", { path: top.path, offset: doc.next_offset ?? 0 });
  assert.equal(rest.offset, doc.next_offset ?? 0);

  const refusedOutside = await call(client, "read_document", { path: outside });
  assert.match(refusedOutside.error ?? "", /refused: .*not a document of this library/, "a file outside the library");
  const refusedSystem = await call(client, "read_document", { path: "/etc/passwd" });
  assert.match(refusedSystem.error ?? "", /refused/);
  const missing = await call(client, "read_passage", { id: "0000deadbeef" });
  assert.match(missing.error ?? "", /no passage/);

  const { value: folders } = await call(client, "list_folders");
  assert.equal(folders.folders.length, 1);
  assert.ok(folders.folders[0].documents >= 5, JSON.stringify(folders));
  const { value: status } = await call(client, "status");
  assert.equal(status.privacy.mode, "local-only");
  assert.ok(status.documents >= 5);
  return top;
}

async function checkResources(client, top) {
  const { resources } = await client.listResources();
  const glaciers = resources.find((r) => r.name === "glaciers.pdf");
  assert.ok(glaciers && glaciers.uri.startsWith("quarry://document/"), JSON.stringify(resources));
  assert.ok(!resources.some((r) => r.description === outside), "only indexed documents are listed");
  const read = await client.readResource({ uri: glaciers.uri });
  assert.match(read.contents[0].text, /glacier/i);
  const passage = await client.readResource({ uri: top.uri });
  assert.match(passage.contents[0].text, /glacier/i);
  const { resourceTemplates } = await client.listResourceTemplates();
  assert.deepEqual(resourceTemplates.map((t) => t.name).sort(), ["document", "passage"]);
  await assert.rejects(
    client.readResource({ uri: "quarry://document" + encodeURI(outside) }),
    /refused/,
    "a resource outside the library",
  );
}

// The desktop app's binary serves MCP too (`quarry-desktop mcp`), no window.
async function checkDesktopBinary() {
  const desktop = process.env.QUARRY_DESKTOP_BIN;
  if (!desktop) {
    console.log("QUARRY_DESKTOP_BIN not set: `quarry-desktop mcp` not checked");
    return;
  }
  const client = await stdioClient(desktop);
  await checkTools(client);
  const { value, error } = await call(client, "search", { query: "glaciers", k: 2 });
  assert.equal(error, null);
  assert.equal(path.basename(value.hits[0].path), "glaciers.pdf");
  await client.close();
}

// A local-only library: `ask` routed to the cloud stays local and opens no connection.
async function checkAskStaysLocal(client) {
  const t = await trap();
  quarry("provider", "add", "trap", "--base-url", `http://127.0.0.1:${t.port}/v1`, "--model", "m");
  const { value: a, error } = await call(client, "ask", {
    question: "How do glaciers change when summers get hotter?",
    route: "cloud",
    max_tokens: 24,
  });
  assert.equal(error, null);
  assert.equal(a.route.target, "local", JSON.stringify(a.route));
  assert.match(a.route.reason, /local-only/);
  assert.equal(typeof a.answer, "string");
  assert.ok(Array.isArray(a.citations));
  for (const c of a.citations) assert.ok(c.path.startsWith(docs) && c.n >= 1, JSON.stringify(c));
  assert.equal(t.hits(), 0, "a local-only library opened a connection to the provider");
  // The control: with egress allowed, the same call does reach the listener.
  quarry("privacy", "auto");
  const { value: b } = await call(client, "ask", {
    question: "How do glaciers change when summers get hotter?",
    route: "cloud",
    max_tokens: 8,
  });
  assert.ok(t.hits() >= 1, "the allowed request reached the trap, so the zero above means something");
  assert.equal(b.route.target, "local", "the failed provider falls back to the local model");
  quarry("privacy", "local-only");
  t.close();
}

// extract: a row per document, every value cited and checked; progress
// reported as documents finish; capped, with the rest named; kept for next time.
async function checkExtract(client) {
  const args = {
    schema: { fields: [{ name: "subject", type: "string", description: "what the document is about, in a few words" }] },
    ext: "pdf,eml",
    max_documents: 1,
  };
  const seen = [];
  const result = await client.callTool({ name: "extract", arguments: args }, undefined, {
    onprogress: (p) => seen.push(p),
    timeout: 600_000,
  });
  assert.ok(!result.isError, text(result));
  const v = result.structuredContent;
  assert.equal(v.documents.length, 1, JSON.stringify(v));
  const row = v.documents[0];
  assert.equal(path.basename(row.path), "glaciers.pdf", "documents are taken in path order");
  assert.ok(v.left_out.some((p) => p.endsWith("invite.eml")), JSON.stringify(v.left_out));
  assert.equal(v.left_out_count, v.left_out.length);
  assert.equal(v.extracted + v.kept_from_before, 1);
  const subject = row.fields.subject;
  assert.ok(subject && typeof subject.verified === "boolean", JSON.stringify(row));
  if (subject.value !== null) assert.equal(subject.citation.path, row.path, JSON.stringify(subject));
  assert.deepEqual(seen.map((p) => [p.progress, p.total]), [[1, 1]], JSON.stringify(seen));
  const again = await call(client, "extract", args);
  assert.equal(again.value.kept_from_before, 1, "the kept row is reused");
  assert.deepEqual(again.value.documents, v.documents);
  const none = await call(client, "extract", { schema: args.schema, paths: [outside] });
  assert.match(none.error ?? "", /no indexed documents match/);
  // A schema the user saved, by name, over the documents a search finds
  // (best first, not path order); the call is logged with its query.
  const file = path.join(work, "subjects.json");
  fs.writeFileSync(file, JSON.stringify(args.schema));
  quarry("schemas", "--library", library, "--save", "Subjects", "--file", file);
  const found = await call(client, "extract", { schema: "subjects", query: "Orchid migration kickoff", max_documents: 1 });
  assert.ok(!found.error, found.error);
  assert.equal(path.basename(found.value.documents[0].path), "invite.eml", JSON.stringify(found.value));
  assert.ok(found.value.left_out_count >= 1, "the other matches are named for a next call");
  const unknown = await call(client, "extract", { schema: "invoices", query: "Orchid" });
  assert.match(unknown.error ?? "", /no schema is saved as "invoices"; saved: Subjects/);
}

async function checkNotShared(client) {
  quarry("privacy", "--library", library, "--agents", "off");
  const refused = await call(client, "search", { query: "glaciers" });
  assert.match(refused.error ?? "", /refused: this library is not shared with agents/);
  await assert.rejects(client.listResources(), /not shared with agents/);
  quarry("privacy", "--library", library, "--agents", "on");
  const again = await call(client, "search", { query: "glaciers" });
  assert.equal(again.error, null, "shared again");
}

// Nothing is served that is not on record: with the access log unwritable
// (a folder where the file should be), calls are refused.
async function checkLogFailsClosed(client) {
  const log = path.join(library, "agent-access.jsonl");
  fs.renameSync(log, `${log}.kept`);
  fs.mkdirSync(log);
  try {
    const refused = await call(client, "search", { query: "glaciers" });
    assert.match(refused.error ?? "", /refused: the access log cannot be written/);
  } finally {
    fs.rmdirSync(log);
    fs.renameSync(`${log}.kept`, log);
  }
  assert.equal((await call(client, "search", { query: "glaciers" })).error, null);
}

async function timeSearches(client, n) {
  const ms = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const { error } = await call(client, "search", { query: `glacier melt summer ${i}`, k: 5 });
    ms.push(performance.now() - t0);
    assert.equal(error, null);
  }
  return median(ms);
}

function timeCli(n) {
  const wall = [];
  const inside = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const out = quarry("search", `glacier melt summer ${i}`, "-k", "5");
    wall.push(performance.now() - t0);
    const m = out.match(/\((\d+) results in (\d+) ms\)/);
    assert.ok(m, out);
    inside.push(Number(m[2]));
  }
  return { wall: median(wall), inside: median(inside) };
}

function lanAddress() {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return "127.0.0.1";
}

async function checkHttp() {
  const { base, token, child } = await startServe(["--addr", "127.0.0.1:0", "--library", library]);
  try {
    // Locked on loopback too: the kept token, which the server printed.
    const without = new Client(clientInfo);
    await assert.rejects(without.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`))), /401|nauthorized/);
    const client = new Client(clientInfo);
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }),
    );
    await checkTools(client);
    const top = await checkReading(client);
    const passage = await client.readResource({ uri: top.uri });
    assert.match(passage.contents[0].text, /glacier/i);
    const http = await timeSearches(client, 10);
    await client.close();
    return http;
  } finally {
    child.kill();
  }
}

async function checkToken() {
  const token = "mcp-test-token";
  const { base, child } = await startServe(["--addr", "0.0.0.0:0", "--token", token, "--library", library]);
  try {
    const port = new URL(base).port;
    const url = new URL(`http://${lanAddress()}:${port}/mcp`);
    const without = new Client(clientInfo);
    await assert.rejects(without.connect(new StreamableHTTPClientTransport(url)), /401|Unauthorized|unauthorized/);
    const withToken = new Client(clientInfo);
    await withToken.connect(
      new StreamableHTTPClientTransport(url, { requestInit: { headers: { Authorization: `Bearer ${token}` } } }),
    );
    const { value, error } = await call(withToken, "search", { query: "glaciers", k: 1 });
    assert.equal(error, null);
    assert.equal(value.hits.length, 1);
    const refused = await call(withToken, "read_document", { path: outside });
    assert.match(refused.error ?? "", /refused/);
    await withToken.close();
  } finally {
    child.kill();
  }
}

function checkAccessLog() {
  const log = JSON.parse(quarry("audit", "--mcp", "--json", "--library", library));
  const mine = log.filter((e) => e.client === "quarry-mcp-test 1.0.0");
  assert.ok(mine.length >= 10, `calls logged: ${log.length}`);
  const search = mine.find((e) => e.tool === "search" && e.transport === "stdio" && e.outcome === "served");
  assert.ok(search && search.bytes_returned > 0 && search.documents.some((d) => d.endsWith("glaciers.pdf")), JSON.stringify(search));
  assert.ok(mine.some((e) => e.tool === "read_document" && e.outcome === "refused" && e.arguments.includes("not-in-the-library")));
  assert.ok(mine.some((e) => e.tool === "search" && e.outcome === "refused" && /not shared/.test(e.reason)));
  assert.ok(mine.some((e) => e.tool === "ask" && e.outcome === "served"));
  assert.ok(mine.some((e) => e.tool === "extract" && e.outcome === "served" && e.documents.length === 1));
  assert.ok(mine.some((e) => e.transport === "http" && e.tool === "read_passage"));
  const human = quarry("audit", "--mcp", "--library", library);
  assert.match(human, /calls by agents, \d+ refused/);
  return log.length;
}

const t0 = performance.now();
quarry("index", docs);
const client = await stdioClient();
assert.equal(client.getServerVersion().name, "quarry");
await checkTools(client);
const top = await checkReading(client);
await checkResources(client, top);
await checkExtract(client);
await checkNotShared(client);
await checkLogFailsClosed(client);
await checkAskStaysLocal(client);
const stdio = await timeSearches(client, 10);
await client.close();
await checkDesktopBinary();
const http = await checkHttp();
await checkToken();
const cli = timeCli(3);
const calls = checkAccessLog();
const latency = {
  library_documents: fs.readdirSync(docs).length,
  mcp_stdio_search_ms: Math.round(stdio * 10) / 10,
  mcp_http_search_ms: Math.round(http * 10) / 10,
  cli_search_wall_ms: Math.round(cli.wall),
  cli_search_inside_ms: Math.round(cli.inside * 10) / 10,
};
fs.mkdirSync(path.join(repo, "artifacts"), { recursive: true });
fs.writeFileSync(path.join(repo, "artifacts/mcp-latency.json"), JSON.stringify(latency, null, 2) + "\n");
console.log(`MCP: ${calls} calls logged; search median: stdio ${latency.mcp_stdio_search_ms} ms, HTTP ${latency.mcp_http_search_ms} ms; CLI ${latency.cli_search_wall_ms} ms a run (${latency.cli_search_inside_ms} ms of it searching)`);
console.log(`MCP test passed in ${Math.round((performance.now() - t0) / 1000)} s`);
fs.rmSync(work, { recursive: true, force: true });
