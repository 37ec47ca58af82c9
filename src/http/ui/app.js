// SPDX-License-Identifier: MIT
// Profile explorer: reads one profile through this server's Profile API and shows it.
// Every value goes into the page as text (textContent), never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "profiled.token";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ""));
  return e;
}

function table(headers, rows) {
  if (rows.length === 0) return el("p", { class: "empty" }, "None.");
  const t = el("table");
  t.append(el("tr", {}, ...headers.map((h) => el("th", {}, h))));
  for (const r of rows)
    t.append(el("tr", {}, ...r.map((c) => (c instanceof Node ? el("td", {}, c) : el("td", { class: "value" }, c)))));
  return t;
}

function setStatus(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function api(base, resource, query) {
  const token = $("token").value.trim();
  const url = base + "/" + resource + (query ? "?" + query : "");
  const r = await fetch(url, { headers: { Authorization: "Basic " + btoa(token + ":") } });
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const msg = body && body.error ? body.error.message : r.status + " " + r.statusText;
    throw new Error(msg);
  }
  return body;
}

function json(v) {
  return typeof v === "string" ? v : JSON.stringify(v);
}

function showIdentities(data) {
  $("identities").replaceChildren(table(
    ["type", "value", "first seen", "source", "first message"],
    data.data.map((x) => [x.type, x.id, x.first_seen || x.created_at || "", x.source_id || "", x.first_message_id || ""])));
}

function showTraits(data) {
  const rows = Object.entries(data.traits).map(([k, t]) => [k, json(t.value), t.source_id || "", t.updated_at || ""]);
  $("traits").replaceChildren(table(["trait", "value", "source", "updated at"], rows));
  if (data.cursor && data.cursor.has_more) $("traits").append(el("p", { class: "empty" }, "More traits than shown (first 200)."));
}

function showEvents(data) {
  const rows = data.data.map((e) => {
    const ids = (e.external_ids || []).map((x) => x.type + ":" + x.id).join("\n");
    const raw = el("details", {}, el("summary", {}, "payload"), el("pre", {}, JSON.stringify(e, null, 2)));
    return [e.timestamp || "", e.type || "", e.event || "", ids, raw];
  });
  $("events").replaceChildren(table(["timestamp", "type", "event", "identifiers", "raw"], rows));
}

function showLinks(data) {
  const rows = data.data.map((l) => [l.to_collection, (l.external_ids || []).map((x) => x.type + ":" + x.id).join("\n")]);
  $("links").replaceChildren(table(["collection", "identifiers"], rows));
}

// The merge history as a small picture: every merged profile with an arrow to the profile it
// merged into, labelled with when and by which message; the canonical profile on the right.
function showMerges(data) {
  const NS = "http://www.w3.org/2000/svg";
  const svgEl = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const panel = $("merges");
  const merged = data.data;
  if (merged.length === 0) {
    panel.replaceChildren(el("p", { class: "empty" }, "Nothing merged into this profile."));
    return;
  }
  const rowH = 46, boxW = 250, boxH = 26, gap = 250;
  const ids = [data.segment_id, ...merged.map((m) => m.segment_id)];
  const depth = new Map([[data.segment_id, 0]]);
  const into = new Map(merged.map((m) => [m.segment_id, m.merged_into]));
  const level = (id, seen = 0) => {
    if (depth.has(id)) return depth.get(id);
    if (seen > ids.length) return 1;
    const d = level(into.get(id), seen + 1) + 1;
    depth.set(id, d);
    return d;
  };
  ids.forEach((id) => level(id));
  const maxDepth = Math.max(...depth.values());
  const byDepth = new Map();
  ids.forEach((id) => byDepth.set(depth.get(id), [...(byDepth.get(depth.get(id)) || []), id]));
  const pos = new Map();
  let rows = 0;
  for (const [d, list] of byDepth) {
    list.forEach((id, i) => pos.set(id, { x: 10 + (maxDepth - d) * (boxW + gap), y: 10 + i * rowH }));
    rows = Math.max(rows, list.length);
  }
  const width = 20 + (maxDepth + 1) * boxW + maxDepth * gap, height = 20 + rows * rowH;
  const svg = svgEl("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  svg.append(svgEl("title", {}, "Profiles merged into " + data.segment_id));
  const defs = svgEl("defs", {});
  const marker = svgEl("marker", { id: "arrow", markerWidth: 8, markerHeight: 8, refX: 7, refY: 4, orient: "auto" });
  marker.append(svgEl("path", { d: "M0,0 L8,4 L0,8 z", class: "head" }));
  defs.append(marker);
  svg.append(defs);
  for (const m of merged) {
    const a = pos.get(m.segment_id), b = pos.get(m.merged_into);
    if (!a || !b) continue;
    const x1 = a.x + boxW, y1 = a.y + boxH / 2, x2 = b.x, y2 = b.y + boxH / 2;
    svg.append(svgEl("path", { d: `M${x1},${y1} C${x1 + 60},${y1} ${x2 - 60},${y2} ${x2},${y2}` }));
    svg.append(svgEl("text", { x: x1 + 8, y: y1 - 6 }, m.merged_at));
    svg.append(svgEl("text", { x: x1 + 8, y: y1 + 12 }, "by " + m.message_id));
  }
  for (const id of ids) {
    const p = pos.get(id);
    const g = svgEl("g", { class: id === data.segment_id ? "node canonical" : "node" });
    g.append(svgEl("rect", { x: p.x, y: p.y, width: boxW, height: boxH, rx: 4 }));
    g.append(svgEl("text", { x: p.x + 8, y: p.y + 17 }, id));
    svg.append(g);
  }
  panel.replaceChildren(svg, table(["profile", "merged into", "at", "by message"],
    merged.map((m) => [m.segment_id, m.merged_into, m.merged_at, m.message_id])));
}

function selectTab(name) {
  for (const b of document.querySelectorAll("#tabs button"))
    b.setAttribute("aria-selected", String(b.dataset.tab === name));
  for (const p of document.querySelectorAll(".panel")) p.hidden = p.id !== name;
}

async function lookup(ev) {
  ev.preventDefault();
  const space = $("space").value.trim(), coll = $("collection").value, ident = $("ident").value.trim();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  const base = "/v1/spaces/" + encodeURIComponent(space) + "/collections/" + encodeURIComponent(coll) +
    "/profiles/" + encodeURIComponent(ident);
  setStatus("Looking up " + ident + "…");
  try {
    const [meta, ids, traits, events, links, merges] = await Promise.all([
      api(base, "metadata"), api(base, "external_ids", "limit=100"), api(base, "traits", "verbose=true&limit=200"),
      api(base, "events", "limit=50"), api(base, "links"), api(base, "merges")]);
    $("summary").replaceChildren(
      el("strong", {}, "Profile "), el("code", { id: "segment-id" }, merges.segment_id),
      " created " + meta.metadata.created_at + ", updated " + meta.metadata.updated_at +
      " (first message " + meta.metadata.first_message_id + ", last " + meta.metadata.last_message_id + ")");
    showIdentities(ids);
    showTraits(traits);
    showEvents(events);
    showLinks(links);
    showMerges(merges);
    $("profile").hidden = false;
    setStatus("Found " + ident + ".");
  } catch (e) {
    $("profile").hidden = true;
    setStatus(e.message, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("lookup").addEventListener("submit", lookup);
  for (const b of document.querySelectorAll("#tabs button"))
    b.addEventListener("click", () => selectTab(b.dataset.tab));
});
