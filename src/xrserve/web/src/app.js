// app.js: the page's entry point. One XR session (a WebSocket) serves every view; the views
// (world, AR, operations, chat) are sections switched by the URL's #hash, each set up the
// first time it is shown. The API key is entered once and kept in local storage.

import { XrServeClient } from "../xrsession.js";
import { setUpChat } from "./chat.js";

const $ = (id) => document.getElementById(id);
const keyInput = $("key");
keyInput.value = localStorage.getItem("xrserve-key") || "";
const key = () => keyInput.value.trim() || null;

export const app = {
  session: null,
  headers: () => (key() ? { Authorization: `Bearer ${key()}` } : {}),

  /** A REST call with the key; JSON in and out (`raw` gives the Response). Throws the server's message. */
  async request(path, { method = "GET", body, raw = false } = {}) {
    const headers = app.headers();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (!response.ok) {
      const error = await response.json().catch(() => ({}));
      // /v1 routes answer {"error": {"message"}} (OpenAI's shape), OIP routes {"error": "..."}
      throw new Error(error.error?.message || error.error || `${response.status} ${response.statusText}`);
    }
    return raw ? response : response.json();
  },
};
window.xrserve = app; // for the browser tests and the console

async function connect() {
  const status = $("status");
  try {
    app.session = await XrServeClient.connect({ key: key() });
    const { rttMs } = await app.session.ping();
    status.dataset.state = "connected";
    status.textContent = `session ${app.session.hello.session} · ${rttMs.toFixed(1)} ms round trip`;
    app.session.addEventListener("close", () => {
      status.dataset.state = "error";
      status.textContent = "disconnected";
    });
  } catch (error) {
    app.session = null;
    status.dataset.state = "error";
    status.textContent = `not connected: ${error.message}`;
  }
}

// the views, loaded on first show: the world view's three.js scene starts only when looked at
const views = {
  world: async () => new (await import("./world.js")).WorldView(app, $),
  ar: async () => (await import("./ar.js")).setUp(app, $),
  ops: async () => (await import("./ops.js")).setUp(app, $),
  chat: async () => setUpChat({ form: $("chat-form"), input: $("chat-input"), log: $("chat-log"), app }),
};
const started = {};

function show() {
  const name = location.hash.slice(1) in views ? location.hash.slice(1) : "world";
  for (const view of Object.keys(views)) $(`view-${view}`).hidden = view !== name;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("current", link.dataset.view === name);
  started[name] ||= views[name]().catch((error) => console.warn(`view ${name}:`, error));
  return started[name];
}

$("key-form").addEventListener("submit", (event) => event.preventDefault());
keyInput.addEventListener("change", () => {
  // a new key: start again with it, so every view's streams and requests use it
  if (key() === (localStorage.getItem("xrserve-key") || null)) return;
  localStorage.setItem("xrserve-key", keyInput.value.trim());
  location.reload();
});

await connect();
addEventListener("hashchange", show);
const first = await show();
if (first?.generate && app.session) first.generate($("scene-prompt").value.trim()); // the default world
