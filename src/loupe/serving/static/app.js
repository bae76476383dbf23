// Loupe web page: pick or drop an image, see its tiles (POST /v1/loupe/plan) and chat with streaming answers
// (POST /v1/chat/completions with stream: true, read as server-sent events through fetch + ReadableStream).
// Plain JavaScript, no build step, no external resources.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const state = { image: null, width: 0, height: 0, model: null, history: [], plan: null, controller: null,
                planSeq: 0 };

function showError(msg) {
  const e = $("error");
  e.textContent = msg;
  e.hidden = !msg;
  if (msg) setTimeout(() => { if (e.textContent === msg) e.hidden = true; }, 8000);
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function api(path, body) {
  const r = await fetch(path, body === undefined ? { headers: headers() }
                                                 : { method: "POST", headers: headers(), body: JSON.stringify(body) });
  let data = null;
  try { data = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) throw new Error((data && data.error && data.error.message) || `${path}: HTTP ${r.status}`);
  return data;
}

async function loadModel() {
  try {
    const d = await api("/v1/models");
    state.model = d.data[0].id;
    $("model").textContent = "model: " + state.model;
  } catch (e) { showError("cannot list models: " + e.message); }
}

// --- budget -----------------------------------------------------------------------------------------------------
function budget() {
  const b = {};
  const detail = $("detail").value;
  if (detail !== "auto") b.detail = detail;
  const n = parseInt($("max-tokens").value, 10);
  if (Number.isFinite(n)) b.max_image_tokens = n;
  return b;
}

// --- image ------------------------------------------------------------------------------------------------------
function readFile(file) {
  if (!file || !file.type.startsWith("image/")) { showError("not an image: " + (file ? file.name : "nothing")); return; }
  const reader = new FileReader();
  reader.onload = () => {
    const url = reader.result;
    const probe = new Image();
    probe.onload = () => {
      state.image = url; state.width = probe.naturalWidth; state.height = probe.naturalHeight;
      state.history = []; $("log").textContent = "";
      $("drop").classList.add("has-image");
      plan();
    };
    probe.onerror = () => showError("the browser cannot read " + file.name);
    probe.src = url;
  };
  reader.readAsDataURL(file);
}

async function plan() {
  if (!state.image) return;
  const seq = ++state.planSeq;
  $("plan-summary").textContent = "planning…";
  try {
    const p = await api("/v1/loupe/plan", Object.assign({ image: state.image }, budget()));
    if (seq !== state.planSeq) return;  // a newer plan is on its way
    state.plan = p;
    draw(p);
  } catch (e) {
    if (seq !== state.planSeq) return;
    state.plan = null;
    draw(null);
    $("plan-summary").textContent = "plan failed: " + e.message;
    $("plan-summary").dataset.total = "";
    showError(e.message);
  }
}

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function draw(p) {
  const svg = $("overlay");
  svg.textContent = "";
  svg.hidden = !state.image;
  if (!state.image) return;
  const W = state.width, H = state.height;
  const boxes = p ? p.tiles.map((t) => t.box).filter(Boolean) : [];
  const x0 = Math.min(0, ...boxes.map((b) => b[0])), y0 = Math.min(0, ...boxes.map((b) => b[1]));
  const x1 = Math.max(W, ...boxes.map((b) => b[2])), y1 = Math.max(H, ...boxes.map((b) => b[3]));
  const m = Math.max(2, 0.01 * Math.max(x1 - x0, y1 - y0));
  svg.setAttribute("viewBox", `${x0 - m} ${y0 - m} ${x1 - x0 + 2 * m} ${y1 - y0 + 2 * m}`);
  // padding (canvas outside the image) shaded, then the image, then the tiles
  if (x0 < 0 || y0 < 0 || x1 > W || y1 > H) el("rect", { class: "pad", x: x0, y: y0, width: x1 - x0, height: y1 - y0 }, svg);
  el("image", { href: state.image, x: 0, y: 0, width: W, height: H, preserveAspectRatio: "none" }, svg);
  const tbody = $("tiles-table").querySelector("tbody");
  tbody.textContent = "";
  if (!p) { $("tiles-table").hidden = true; svg.dataset.tiles = "0"; return; }
  const scale = (x1 - x0) / 600;  // labels about 12 screen px at 600 px wide
  let nested = 0;
  p.tiles.forEach((t) => {
    const tr = document.createElement("tr");
    const box = t.box ? t.box.map((v) => Math.round(v)).join(", ") : "—";
    tr.innerHTML = `<td>${t.index}</td><td>${t.role}</td><td>${t.size.join("×")}</td><td>${box}</td>` +
                   `<td>${t.tokens === null ? "shared" : t.tokens}</td>`;
    tbody.appendChild(tr);
  });
  // local tiles first, so the whole-image tiles (overview, global) are drawn on top of them
  const order = p.tiles.filter((t) => t.role === "local").concat(p.tiles.filter((t) => t.role !== "local"));
  order.forEach((t) => {
    if (!t.box) return;
    const g = el("g", { class: `tile role-${t.role}`, "data-index": t.index, "data-tokens": t.tokens === null ? "" : t.tokens }, svg);
    const inset = t.role === "local" ? 0 : (3 + 3 * (nested++ % 6)) * scale;
    const [bx0, by0, bx1, by1] = t.box;
    el("rect", { x: bx0 + inset, y: by0 + inset, width: Math.max(1, bx1 - bx0 - 2 * inset),
                 height: Math.max(1, by1 - by0 - 2 * inset) }, g);
    const label = el("text", { x: bx0 + inset + 3 * scale, y: by0 + inset + 13 * scale,
                               style: `font-size:${12 * scale}px;stroke-width:${3 * scale}px` }, g);
    label.textContent = `${t.index} ${t.role}` + (t.tokens === null ? "" : ` ${t.tokens}t`);
  });
  svg.dataset.tiles = String(p.tiles.length);
  svg.classList.toggle("hide-tiles", !$("show-tiles").checked);
  $("tiles-table").hidden = false;
  const shared = p.other_tokens ? ` (${p.other_tokens} shared between tiles)` : "";
  const s = $("plan-summary");
  s.textContent = `${p.tiles.length} tiles, ${p.total_tokens} visual tokens${shared}; image ${p.image_size.join("×")}` +
                  (p.canvas_size ? `, canvas ${p.canvas_size.join("×")}` : "");
  s.dataset.total = String(p.total_tokens);
  s.dataset.tiles = String(p.tiles.length);
}

// --- chat -------------------------------------------------------------------------------------------------------
function addMessage(role, text) {
  const d = document.createElement("div");
  d.className = "msg " + role;
  d.textContent = text;
  $("log").appendChild(d);
  $("log").scrollTop = $("log").scrollHeight;
  return d;
}

async function ask(ev) {
  ev.preventDefault();
  const q = $("question").value.trim();
  if (!q) return;
  if (!state.model) await loadModel();
  const content = [];
  if (state.image && state.history.length === 0) {
    content.push({ type: "image_url", image_url: Object.assign({ url: state.image }, budget()) });
  }
  content.push({ type: "text", text: q });
  const messages = state.history.concat([{ role: "user", content }]);
  addMessage("user", q);
  $("question").value = "";
  const out = addMessage("assistant", "");
  out.classList.add("streaming");
  const body = { model: state.model, messages, stream: true, stream_options: { include_usage: true } };
  const mx = parseInt($("max-new").value, 10);
  if (Number.isFinite(mx)) body.max_tokens = mx;
  const t = parseFloat($("temperature").value);
  if (Number.isFinite(t)) body.temperature = t;
  state.controller = new AbortController();
  $("send").disabled = true; $("stop").disabled = false;
  let text = "";
  try {
    const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body),
                                                    signal: state.controller.signal });
    if (!r.ok) {
      let msg = `HTTP ${r.status}`;
      try { msg = (await r.json()).error.message; } catch (_) { /* keep the status */ }
      throw new Error(msg);
    }
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          for (const c of chunk.choices || []) {
            if (c.delta && c.delta.content) { text += c.delta.content; out.textContent = text; }
          }
          if (chunk.usage) {
            const u = chunk.usage;
            $("usage").textContent = `prompt ${u.prompt_tokens} tokens (${u.prompt_tokens_details.image_tokens} visual),` +
                                     ` answer ${u.completion_tokens}`;
          }
        }
      }
    }
    state.history = messages.concat([{ role: "assistant", content: text }]);
  } catch (e) {
    if (e.name !== "AbortError") { showError(e.message); out.classList.add("failed"); }
  } finally {
    out.classList.remove("streaming");
    out.classList.add("done");
    $("send").disabled = false; $("stop").disabled = true;
    state.controller = null;
  }
}

// --- wiring -----------------------------------------------------------------------------------------------------
function init() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => readFile(e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files.length) readFile(e.dataTransfer.files[0]);
  });
  drop.addEventListener("click", (e) => { if (!state.image && e.target === drop) $("file").click(); });
  $("detail").addEventListener("change", plan);
  $("max-tokens").addEventListener("change", plan);
  $("show-tiles").addEventListener("change", () => $("overlay").classList.toggle("hide-tiles", !$("show-tiles").checked));
  $("ask").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask").requestSubmit(); }
  });
  $("stop").addEventListener("click", () => { if (state.controller) state.controller.abort(); });
  loadModel();
}

init();
