"use strict";
// The imgsearch page: everything comes from the JSON API; images by catalog id only.
// Every view has its own address (after the #), so a result can be bookmarked or sent:
//   #/photos?page=2                     the collection, one page of it
//   #/photo/123  #/photo/123?method=pca a photo and its nearest photos, by every method or one
//   #/search                            the last uploaded image's results (not kept on reload)
//   #/duplicates?method=pca&page=2      groups of near-duplicates, to review: a page at a time
//                                       (&per=50) in an order (&order=space|size|confidence)
//   #/duplicates/group/123?method=pca   one group, named by its keeper's id
//   #/map?method=pca                    a 2-D map of the collection
const $ = (id) => document.getElementById(id);
const state = { info: null, page: 1, per: 60, gridPage: null, view: "photos", upload: null,
  moveTo: "", seq: 0, hash: null, keepNotice: false };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

async function api(path, options) {
  const res = await fetch(path, options);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ")
      : body.detail;
    throw new Error(detail || `${res.status} ${res.statusText}`);
  }
  return body;
}

function post(body) {
  return { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body) };
}

function showError(err) {
  $("error").textContent = String(err.message || err);
  $("error").hidden = false;
}

function notice(text, ...actions) {
  $("notice").replaceChildren(el("span", {}, text), ...actions,
    el("button", { class: "close", title: "close", onclick: hideNotice }, "×"));
  $("notice").hidden = false;
}

function hideNotice() { $("notice").hidden = true; }

function percent(x) { return `${Math.round(x * 100)}%`; }

function verifiedBadge(hit) {
  if (hit.verified !== true) return null;
  return el("span", { class: "badge verified", "data-testid": "verified",
    title: hit.inliers != null ? `${hit.inliers} matched points agree on one geometric map`
      : "the same picture, checked by geometry" },
  `verified copy${hit.shared != null ? ` · ${percent(hit.shared)} shared` : ""}`);
}

function tile(image, caption, badge = null) {
  return el("figure", { dataset: { id: image.id } },
    el("a", { href: `#/photo/${image.id}` },
      el("img", { src: `/thumb/${image.id}`, alt: image.name || "", loading: "lazy" }), badge),
    el("figcaption", {}, caption));
}

function method() { return $("method").value; }

function withMethod(path) { return `${path}?method=${encodeURIComponent(method())}`; }

async function loadInfo() {
  state.info = await api("/api/info");
  const info = state.info, counts = info.counts;
  $("summary").textContent = `${info.index}: ${counts.indexed} photos` +
    (counts.failed ? `, ${counts.failed} unreadable` : "");
  $("method").replaceChildren(...Object.entries(info.methods).map(([m, s]) => el("option",
    { value: m, ...(m === info.preferred ? { selected: "" } : {}) },
    `${m}${m === info.preferred ? " (best)" : ""}` +
    (s.selfcheck != null ? ` · self-check ${s.selfcheck.toFixed(3)}` +
      (s.selfcheck_se != null ? ` ± ${s.selfcheck_se.toFixed(3)}` : "") : "") +
    (info.preferred_lead && info.preferred_lead.method === m ?
      ` · leads ${info.preferred_lead.over} by ${info.preferred_lead.lead.toFixed(3)} ± ` +
      `${info.preferred_lead.se.toFixed(3)}` : "") +
    (s.training && s.training.capped ?
      ` · training cut short (${s.training.steps} of ${s.training.work} steps)` : ""))));
  $("method").title = info.preferred_because || "";  // why the default is the default
  showTraining(info.training || {});
}

// a model still training: a progress bar each (step of the planned steps, best self-check
// so far), refreshed while it trains; an interrupted one says how to resume it
function showTraining(training) {
  const runs = Object.entries(training);
  $("training").replaceChildren(...runs.map(([m, t]) => el("span", { class: "training" },
    `${m} ${t.state === "training" ? "training" : "interrupted"} `,
    el("progress", { max: t.work || 1, value: t.step || 0,
                     title: `step ${t.step} of ${t.work ?? "?"}` }),
    ` ${t.step}${t.work ? "/" + t.work : ""} steps` +
    (t.best_selfcheck != null ? ` · best self-check ${t.best_selfcheck.toFixed(3)}` : "") +
    (t.state === "training" ? "" : " · `imgsearch index` resumes it"))));
  clearTimeout(state.trainingTimer);
  if (runs.some(([, t]) => t.state === "training"))
    state.trainingTimer = setTimeout(() => api("/api/info").then(
      (info) => showTraining(info.training || {})).catch(() => {}), 3000);
}

// -- photos, one photo, an upload ---------------------------------------------------------
async function loadPage(token) {
  if (state.gridPage === state.page) return;
  const data = await api(`/api/images?page=${state.page}&per=${state.per}`);
  if (token !== state.seq) return;
  state.gridPage = state.page;
  const pages = Math.max(1, Math.ceil(data.total / state.per));
  $("page").textContent = `page ${state.page} of ${pages} (${data.total} photos)`;
  $("prev").disabled = state.page <= 1;
  $("next").disabled = state.page >= pages;
  $("grid").replaceChildren(...data.images.map((im) => tile(im, im.name)));
}

function resultRows(results, id = null) {
  return Object.entries(results).map(([m, hits]) => el("div",
    { class: "row", dataset: { method: m, testid: "results" } },
    el("h3", {}, id == null ? m : el("a", { href: `#/photo/${id}?method=${m}`,
      title: `only ${m}: an address to send` }, m),
    m === state.info.preferred ? " (best on this collection)" : ""),
    el("div", { class: "grid" }, ...hits.map((h) =>
      tile(h, `#${h.rank} d=${h.distance.toFixed(3)} ${h.name || ""}`, verifiedBadge(h))))));
}

function queryHead(src, name, ...lines) {
  return el("div", { class: "query" }, el("img", { src, alt: name }),
    el("div", {}, el("strong", {}, name), ...lines));
}

async function similar(id, only, token) {
  if ($("detail").dataset.id !== String(id)) {  // never the previous photo meanwhile
    $("detail").replaceChildren(el("p", { class: "muted" }, "finding its nearest photos…"));
  }
  $("detail").dataset.id = id;
  const data = await api(`/api/similar/${id}?method=${encodeURIComponent(only || "all")}&k=12`);
  if (token !== state.seq) return;
  $("detail").replaceChildren(queryHead(`/thumb/${id}`, data.name,
    el("div", { class: "muted" }, `nearest photos by ${only || "each method"}, closest first`),
    only ? el("a", { href: `#/photo/${id}` }, "by every method") : null),
  ...resultRows(data.results, id));
  document.title = `${data.name} · imgsearch`;
  window.scrollTo({ top: 0, behavior: "smooth" });
}

async function searchWith(file) {
  const form = new FormData();
  form.append("file", file);
  const data = await api("/api/search?method=all&k=12", { method: "POST", body: form });
  if (state.upload) URL.revokeObjectURL(state.upload.src);
  state.upload = { name: file.name, src: URL.createObjectURL(file), data };
  go("#/search");
}

function renderSearch() {
  const up = state.upload;
  $("detail").dataset.id = "search";
  if (!up) {
    $("detail").replaceChildren(el("p", { class: "muted" }, "Pick an image (“search with an " +
      "image…”) or drop one on the page to search with it. An uploaded image is not kept: " +
      "this address shows its results until the page is reloaded."));
    return;
  }
  $("detail").replaceChildren(queryHead(up.src, up.name,
    el("div", { class: "muted" }, "uploaded image: nearest photos by each method")),
  ...resultRows(up.data.results));
  document.title = `${up.name} · imgsearch`;
}

// -- duplicates, to review ----------------------------------------------------------------
function fit(w, h, maxW, maxH) {
  if (!w || !h) return [maxH, maxH];
  const s = Math.min(maxW / w, maxH / h);
  return [Math.round(w * s), Math.round(h * s)];
}

function outline(box) {  // corners in the picture's own [0,1] x [0,1] frame
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "region");
  svg.setAttribute("viewBox", "0 0 1 1");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("data-testid", "region");
  const poly = document.createElementNS(ns, "polygon");
  poly.setAttribute("points", box.map(([x, y]) => `${x},${y}`).join(" "));
  poly.setAttribute("vector-effect", "non-scaling-stroke");
  svg.append(poly);
  return svg;
}

function fileSize(n) {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1e3))} kB`;
}

function member(m, keeper) {
  const [w, h] = fit(m.width, m.height, 260, 190);
  const facts = keeper ? [] : [
    m.shared != null ? `${percent(m.shared)} shared` : null,
    m.inliers != null ? `${m.inliers} inliers` : null,
    `code distance ${m.distance.toFixed(3)}`].filter((f) => f != null);
  return el("figure", { class: keeper ? "member keeper" : "member", style: `width:${w}px`,
    dataset: { id: m.id, testid: "member" } },
  el("a", { class: "pic", href: `#/photo/${m.id}`, style: `height:${h}px`,
    title: "this photo and its nearest photos" },
  el("img", { src: `/thumb/${m.id}`, alt: m.name, loading: "lazy" }),
  Array.isArray(m.box) && m.box.length >= 3 ? outline(m.box) : null,
  keeper ? el("span", { class: "badge keep", "data-testid": "keep" }, "keep") : null),
  el("figcaption", {},
    el("div", { class: "name", title: m.name }, m.name),
    el("div", { class: "muted" }, (m.width && m.height ? `${m.width}×${m.height} · ` : "") +
      fileSize(m.size)),
    facts.length ? el("div", { class: "facts", title: "shared: the share of this picture " +
      "that the keeper's picture explains; inliers: matched points that agree on one map" },
    facts.join(" · ")) : null));
}

function groupCard(g, n, data) {
  const members = [g.keeper, ...g.others];
  const status = el("span", { class: "status", "data-testid": "status" });
  const card = el("article", { class: "group", dataset: { testid: "group", keeper: g.keeper.id } });
  const act = (run) => async () => {
    for (const b of card.querySelectorAll("button")) b.disabled = true;
    status.textContent = "";
    try {
      await run();
    } catch (err) {
      status.textContent = String(err.message || err);
      for (const b of card.querySelectorAll("button")) b.disabled = false;
    }
  };
  const moveAway = act(async () => {
    const r = await api("/api/duplicates/move", post({ ids: g.others.map((m) => m.id),
      to: state.moveTo, method: data.method }));
    notice(`Moved ${r.moved} file(s) into ${r.to} (listed in ${r.log}). Run \`imgsearch ` +
      "index` to update the index.", el("button", { "data-testid": "undo",
      onclick: () => undoMove(r.log) }, "Undo"));
    reviewed();
  });
  const dismiss = act(async () => {
    await api("/api/duplicates/dismiss", post({ ids: members.map((m) => m.id) }));
    notice(`Marked the ${members.length} pictures of group ${n} as not duplicates; they are ` +
      "not shown as a group again.");
    reviewed();
  });
  card.append(
    el("div", { class: "group-head" },
      el("a", { class: "title", href: `#/duplicates/group/${g.keeper.id}?method=` +
        encodeURIComponent(data.method), title: "this group's own address" }, `group ${n}`),
      el("span", { class: "muted" }, `${members.length} pictures`),
      g.keeper_reason ? el("span", { class: "reason", "data-testid": "reason" },
        `keeper: ${g.keeper_reason}`) : null,
      el("span", { class: "actions" },
        el("button", { class: "primary", "data-testid": "move", onclick: moveAway,
          title: "move every picture but the keeper into the folder above" },
        "Move the others away"),
        el("button", { "data-testid": "dismiss", onclick: dismiss,
          title: "these are different pictures: stop showing them as a group" },
        "Not duplicates"))),
    status,
    el("div", { class: "members" }, member(g.keeper, true),
      ...g.others.map((m) => member(m, false))));
  return card;
}

function reviewed() {  // after a move or a dismissal: the groups as they are now
  state.keepNotice = true;
  go(withMethod("#/duplicates"));
}

async function undoMove(log) {
  try {
    const r = await api("/api/duplicates/undo", post({ log }));
    notice(`Put back ${r.restored} file(s) listed in ${r.log}.`);
    if (state.view === "duplicates") route();
  } catch (err) {
    showError(err);
  }
}

const ORDERS = { space: "space freed", size: "most pictures", confidence: "most certain" };

function duplicatesHash(page, order, per) {
  return withMethod("#/duplicates") + (page > 1 ? `&page=${page}` : "") +
    (order !== "space" ? `&order=${order}` : "") + (per !== 50 ? `&per=${per}` : "");
}

async function loadDuplicates(only, token, params) {
  const per = Math.min(1000, Math.max(1, Number(params.get("per")) || 50));
  const page = Math.max(1, Number(params.get("page")) || 1);
  const order = params.get("order") in ORDERS ? params.get("order") : "space";
  const query = `/api/duplicates?method=${encodeURIComponent(method())}&order=${order}` +
    (only == null ? `&offset=${(page - 1) * per}&limit=${per}` : `&keeper=${only}`);
  const data = await api(query);
  if (token !== state.seq) return;
  if (data.finding) {  // an `imgsearch index` is finding them: its progress, asked again soon
    const f = data.finding;
    $("duplicates").replaceChildren(el("p", { "data-testid": "finding" },
      `Finding duplicates (${f.method}): ${f.phase}` +
      (f.total ? ` ${f.done.toLocaleString()} of ${f.total.toLocaleString()}` : "") +
      "… the groups appear here when the index is done."));
    setTimeout(() => { if (token === state.seq) route(); }, 2000);
    return;
  }
  const all = withMethod("#/duplicates");
  const shown = data.groups.map((g, n) => [g, data.numbers[n]]);
  const dest = el("label", { class: "dest" }, "Move the others into ",
    el("input", { type: "text", value: state.moveTo, spellcheck: "false",
      "data-testid": "move-to", placeholder: "a folder outside the indexed one, full path",
      oninput: (e) => { state.moveTo = e.target.value; } }),
    el("span", { class: "muted" }, " files are moved, never deleted; Undo puts them back"));
  const status = el("span", { class: "status", "data-testid": "move-all-status" });
  const moveAll = async (e) => {
    e.target.disabled = true;
    status.textContent = "";
    try {
      const r = await api("/api/duplicates/move-all", post({ groups: data.total,
        to: state.moveTo, method: data.method }));
      notice(`Moved the others of ${r.groups} groups, ${r.moved} file(s), into ${r.to} ` +
        `(listed in ${r.log}). Run \`imgsearch index\` to update the index.`,
      el("button", { "data-testid": "undo", onclick: () => undoMove(r.log) }, "Undo"));
      reviewed();
    } catch (err) {
      status.textContent = String(err.message || err);
      e.target.disabled = false;
    }
  };
  const pages = Math.max(1, Math.ceil(data.total / per));
  const pager = only == null && data.total ? el("div", { class: "pager",
    "data-testid": "pager" },
    el("span", {}, `groups ${data.offset + 1}–${data.offset + data.groups.length} of ` +
      `${data.total.toLocaleString()}, by `),
    el("select", { "data-testid": "order",
      onchange: (e) => go(duplicatesHash(1, e.target.value, per)) },
      ...Object.entries(ORDERS).map(([k, label]) => {
        const o = el("option", { value: k }, label);
        o.selected = k === order;
        return o;
      })),
    el("button", { "data-testid": "prev-groups", ...(page > 1 ? {} : { disabled: "" }),
      onclick: () => go(duplicatesHash(page - 1, order, per)) }, "‹ previous"),
    el("button", { "data-testid": "next-groups", ...(page < pages ? {} : { disabled: "" }),
      onclick: () => go(duplicatesHash(page + 1, order, per)) }, "next ›"),
    el("button", { class: "primary", "data-testid": "move-all", onclick: moveAll,
      title: "move every picture but its keeper, of every group, into the folder above; " +
        "one Undo puts them all back" },
    `Move the others of all ${data.total.toLocaleString()} groups ` +
      `(${data.others.toLocaleString()} files, ${fileSize(data.freed)})`), status) : null;
  const head = only == null
    ? el("p", {}, `${data.total.toLocaleString()} group(s) of near-duplicates among ` +
      `${data.images} photos (${data.method}, threshold ${data.threshold.toFixed(3)}, ` +
      `${data.threshold_from}). Each group keeps one picture, marked keep` +
      (data.groups.some((g) => g.others.some((m) => m.box)) ? "; an outline is the part of " +
        "a picture that the keeper's picture covers." : "."))
    : el("p", {}, el("a", { href: all }, "‹ all groups"), shown.length ? ""
      : " · this group is not among the duplicates now (moved away, dismissed, or the " +
        "index changed)");
  $("duplicates").replaceChildren(head, dest, ...(pager ? [pager] : []),
    ...shown.map(([g, n]) => groupCard(g, n, data)));
  document.title = "duplicates · imgsearch";
}

async function loadMap(token) {
  $("map").replaceChildren(el("p", { class: "muted" }, "placing photos by similarity…"));
  const data = await api(`/api/map?method=${encodeURIComponent(method())}&n=600`);
  if (token !== state.seq) return;
  const box = el("div", { id: "mapbox" });
  for (const p of data.points) {
    box.append(el("img", { src: `/thumb/${p.id}`, loading: "lazy",
      style: `left:calc(${(p.x * 96).toFixed(2)}% );top:calc(${(p.y * 96).toFixed(2)}%)`,
      onclick: () => go(`#/photo/${p.id}`) }));
  }
  $("map").replaceChildren(el("p", { class: "muted" },
    `${data.points.length} photos placed by a 2-D map of their ${data.method} codes`), box);
  document.title = "map · imgsearch";
}

// -- the address is the state ---------------------------------------------------------------
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const q = raw.indexOf("?");
  return { parts: (q < 0 ? raw : raw.slice(0, q)).split("/").filter(Boolean),
    params: new URLSearchParams(q < 0 ? "" : raw.slice(q + 1)) };
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;  // hashchange routes
}

function show(view, detail = false) {  // one view; the photo panel only where asked for
  state.view = view;
  for (const b of document.querySelectorAll(".tab")) {
    b.classList.toggle("active", b.dataset.view === view);
  }
  for (const v of ["photos", "duplicates", "map"]) $(v).hidden = v !== view;
  $("detail").hidden = !detail;
}

async function route() {
  if (!state.info) return;
  const token = ++state.seq;
  if (location.hash !== state.hash && !state.keepNotice) hideNotice();
  state.hash = location.hash;
  state.keepNotice = false;
  $("error").hidden = true;
  const { parts, params } = parseHash();
  const [what = "photos", arg, id] = parts;
  const only = params.get("method");
  if (only && only in state.info.methods) $("method").value = only;
  const number = (s) => (/^\d+$/.test(s || "") ? Number(s) : null);
  try {
    if (what === "photos" && arg == null) {
      state.page = Math.max(1, number(params.get("page")) || 1);
      document.title = "imgsearch";
      show("photos");
      await loadPage(token);
    } else if (what === "photo" && number(arg) != null && id == null) {
      show("photos", true);
      await Promise.all([similar(number(arg), only, token), loadPage(token)]);
    } else if (what === "search" && arg == null) {
      show("photos", true);
      renderSearch();
      await loadPage(token);
    } else if (what === "duplicates" && (arg == null || (arg === "group" && number(id) != null))) {
      show("duplicates");
      await loadDuplicates(arg == null ? null : number(id), token, params);
    } else if (what === "map" && arg == null) {
      show("map");
      await loadMap(token);
    } else {
      show("photos");
      await loadPage(token);
      throw new Error(`nothing at ${location.hash}; the photos are shown instead`);
    }
  } catch (err) {
    if (token === state.seq) showError(err);
  }
}

function wire() {
  for (const b of document.querySelectorAll(".tab")) {
    b.addEventListener("click", () => go(b.dataset.view === "photos"
      ? (state.page > 1 ? `#/photos?page=${state.page}` : "#/photos")
      : withMethod(`#/${b.dataset.view}`)));
  }
  $("prev").addEventListener("click", () => go(`#/photos?page=${state.page - 1}`));
  $("next").addEventListener("click", () => go(`#/photos?page=${state.page + 1}`));
  $("method").addEventListener("change", () => {
    if (state.view !== "photos") go(withMethod(`#/${state.view}`));
  });
  $("upload").addEventListener("change", (e) => {
    const file = e.target.files[0];
    e.target.value = "";  // the same file again is a new search
    if (file) searchWith(file).catch(showError);
  });
  window.addEventListener("hashchange", route);  // back, forward, links, an edited address
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
loadInfo().then(route).catch(showError);
