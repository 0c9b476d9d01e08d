// app.js: wires the page to the server. Each capability is its own small module.

import { XrServeClient } from "./xrsession.js";
import { setUpChat } from "./chat.js";

const $ = (id) => document.getElementById(id);
const keyInput = $("key");
keyInput.value = localStorage.getItem("xrserve-key") || "";
const key = () => keyInput.value.trim() || null;
const headers = () => (key() ? { Authorization: `Bearer ${key()}` } : {});

export const app = { session: null };
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
    status.dataset.state = "error";
    status.textContent = `not connected: ${error.message}`;
  }
}

async function listModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  const list = $("models");
  list.replaceChildren();
  if (!response.ok) {
    list.textContent = (await response.json()).error?.message || response.statusText;
    return;
  }
  for (const model of (await response.json()).data) {
    const item = document.createElement("li");
    item.textContent = model.id;
    list.append(item);
  }
}

$("key-form").addEventListener("submit", (event) => event.preventDefault());
let keyInUse = key();
keyInput.addEventListener("change", () => {
  // "change" fires again on blur; reconnect (ending the streams) only for a different key
  if (key() === keyInUse) return;
  keyInUse = key();
  localStorage.setItem("xrserve-key", keyInput.value.trim());
  app.session?.close();
  connect();
  listModels();
});

setUpChat({ form: $("chat-form"), input: $("chat-input"), log: $("chat-log"), headers });
await connect();
await listModels();
for (const module of ["./camera.js", "./voice.js"]) {
  // the camera and voice panels load only where their modules exist in this build
  import(module).then((m) => m.setUp(app, $)).catch((error) => console.warn(`${module}:`, error));
}
