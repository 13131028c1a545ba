"use strict";
// The imgsearch page: everything comes from the JSON API; images by catalog id only.
const $ = (id) => document.getElementById(id);
const state = { info: null, page: 1, per: 60, view: "photos" };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

async function api(path, options) {
  const res = await fetch(path, options);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.detail || `${res.status} ${res.statusText}`);
  return body;
}

function showError(err) {
  $("error").textContent = String(err.message || err);
  $("error").hidden = false;
}

function tile(image, caption, onclick) {
  return el("figure", { dataset: { id: image.id }, onclick },
    el("img", { src: `/thumb/${image.id}`, alt: image.name || "", loading: "lazy" }),
    el("figcaption", {}, caption));
}

function method() { return $("method").value; }

async function loadInfo() {
  state.info = await api("/api/info");
  const info = state.info, counts = info.counts;
  $("summary").textContent = `${info.index}: ${counts.indexed} photos` +
    (counts.failed ? `, ${counts.failed} unreadable` : "");
  $("method").replaceChildren(...Object.entries(info.methods).map(([m, s]) => el("option",
    { value: m, ...(m === info.preferred ? { selected: "" } : {}) },
    `${m}${m === info.preferred ? " (best)" : ""}` +
    (s.selfcheck != null ? ` · self-check ${s.selfcheck.toFixed(3)}` : ""))));
}

async function loadPage() {
  const data = await api(`/api/images?page=${state.page}&per=${state.per}`);
  const pages = Math.max(1, Math.ceil(data.total / state.per));
  $("page").textContent = `page ${state.page} of ${pages} (${data.total} photos)`;
  $("prev").disabled = state.page <= 1;
  $("next").disabled = state.page >= pages;
  $("grid").replaceChildren(...data.images.map((im) => tile(im, im.name, () => similar(im.id))));
}

function resultRows(results) {
  return Object.entries(results).map(([m, hits]) => el("div",
    { class: "row", dataset: { method: m, testid: "results" } },
    el("h3", {}, `${m}${m === state.info.preferred ? " (best on this collection)" : ""}`),
    el("div", { class: "grid" }, ...hits.map((h) =>
      tile(h, `#${h.rank} d=${h.distance.toFixed(3)} ${h.name || ""}`, () => similar(h.id))))));
}

async function similar(id) {
  const data = await api(`/api/similar/${id}?method=all&k=12`);
  $("detail").replaceChildren(
    el("div", { class: "query" }, el("img", { src: `/thumb/${id}`, alt: data.name }),
      el("div", {}, el("strong", {}, data.name), el("div", { class: "muted" },
        "nearest photos by each method, closest first"))),
    ...resultRows(data.results));
  $("detail").hidden = false;
  window.scrollTo({ top: 0, behavior: "smooth" });
}

async function searchWith(file) {
  const form = new FormData();
  form.append("file", file);
  const data = await api("/api/search?method=all&k=12", { method: "POST", body: form });
  $("detail").replaceChildren(
    el("div", { class: "query" }, el("img", { src: URL.createObjectURL(file), alt: file.name }),
      el("div", {}, el("strong", {}, file.name), el("div", { class: "muted" },
        "uploaded image: nearest photos by each method"))),
    ...resultRows(data.results));
  $("detail").hidden = false;
}

async function loadDuplicates() {
  const data = await api(`/api/duplicates?method=${encodeURIComponent(method())}`);
  const head = el("p", {}, `${data.groups.length} group(s) of near-duplicates among ` +
    `${data.images} photos (${data.method}, threshold ${data.threshold.toFixed(3)}, ` +
    `${data.threshold_from}). The first of each group is the one to keep.`);
  $("duplicates").replaceChildren(head, ...data.groups.map((g, n) => el("div",
    { class: "group", dataset: { testid: "group" } }, el("h3", {}, `group ${n + 1}`),
    el("div", { class: "grid" },
      el("div", { class: "keep" }, tile(g.keeper, `keep: ${g.keeper.name}`,
        () => similar(g.keeper.id))),
      ...g.others.map((m) => tile(m, `d=${m.distance.toFixed(3)} ${m.name}`,
        () => similar(m.id)))))));
}

async function loadMap() {
  $("map").replaceChildren(el("p", { class: "muted" }, "placing photos by similarity…"));
  const data = await api(`/api/map?method=${encodeURIComponent(method())}&n=600`);
  const box = el("div", { id: "mapbox" });
  for (const p of data.points) {
    box.append(el("img", { src: `/thumb/${p.id}`, loading: "lazy",
      style: `left:calc(${(p.x * 96).toFixed(2)}% );top:calc(${(p.y * 96).toFixed(2)}%)`,
      onclick: () => similar(p.id) }));
  }
  $("map").replaceChildren(el("p", { class: "muted" },
    `${data.points.length} photos placed by a 2-D map of their ${data.method} codes`), box);
}

function show(view) {
  state.view = view;
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.view === view);
  for (const v of ["photos", "duplicates", "map"]) $(v).hidden = v !== view;
  const load = { photos: loadPage, duplicates: loadDuplicates, map: loadMap }[view];
  load().catch(showError);
}

function wire() {
  for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => show(b.dataset.view));
  $("prev").addEventListener("click", () => { state.page--; loadPage().catch(showError); });
  $("next").addEventListener("click", () => { state.page++; loadPage().catch(showError); });
  $("method").addEventListener("change", () => { if (state.view !== "photos") show(state.view); });
  $("upload").addEventListener("change", (e) => {
    if (e.target.files[0]) searchWith(e.target.files[0]).catch(showError);
  });
  window.addEventListener("dragover", (e) => { e.preventDefault(); $("drop").hidden = false; });
  $("drop").addEventListener("dragleave", () => { $("drop").hidden = true; });
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    $("drop").hidden = true;
    const file = e.dataTransfer.files[0];
    if (file) searchWith(file).catch(showError);
  });
}

wire();
loadInfo().then(() => show("photos")).catch(showError);
