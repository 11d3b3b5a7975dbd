// Forecastin's analysts' page: browse the hierarchy, search it, and see it change live.
// No dependencies. Every read goes through the edge, and each section shows where its answer
// came from (the edge's Cache-Status); changes arrive over /ws.

const PAGE_SIZE = 50;
const SEARCH_LIMIT = 10;
const SEARCH_DELAY_MS = 250;
/// After a move the page reads again at once and once more later: the CDN may still hold the
/// previous pages until the purge reaches it (seconds at most).
const REREAD_AFTER_MS = 3000;
const RECONNECT_MAX_MS = 4000;
const REMEMBERED_EVENTS = 1000;

const element = (id) => document.getElementById(id);
const ui = {
  live: element("live"),
  search: element("search"),
  searchStatus: element("search-status"),
  results: element("results"),
  breadcrumb: element("breadcrumb"),
  main: element("main"),
  notice: element("notice"),
  name: element("entity-name"),
  kind: element("entity-kind"),
  entitySource: element("entity-source"),
  children: element("children"),
  childrenSource: element("children-source"),
  more: element("more"),
};

/// What is on screen: the entity, its breadcrumb and the cursor of the next children page;
/// `loading` aborts the reads for it (the entity's, and More's) when another is opened.
const view = { id: null, entity: null, ancestors: [], nextCursor: null, loading: null };

/// The latest state of each entity the event stream told us about, with the event's id. It is
/// newer than anything fetched before the event, and than a page the CDN has not purged yet,
/// so it is drawn over fetched data.
const latest = new Map();
let rereadTimer;

class ApiError extends Error {}

/// Where an answer came from, from the edge's `Cache-Status` (RFC 9211).
function sourceOf(response) {
  const field = response.headers.get("cache-status");
  const entry = field
    ?.split(",")
    .map((member) => member.trim())
    .find((member) => member.startsWith("forecastin-edge"));
  if (!entry) return { label: "origin", detail: "no Cache-Status: not served through the edge" };
  const params = entry.split(";").map((param) => param.trim());
  const label = params.includes("hit") ? "edge hit" : "edge miss";
  return { label, detail: `Cache-Status: ${entry}` };
}

/// Reads `path`, revalidating any copy the browser kept (`no-cache`: a 304 from the edge when
/// unchanged), so that a page read again after a change is the edge's current one and its
/// `Cache-Status` says what the edge just did.
async function api(path, signal) {
  const response = await fetch(path, {
    headers: { accept: "application/json" },
    cache: "no-cache",
    signal,
  });
  if (!response.ok) {
    const body = await response.json().catch((error) => {
      if (error.name === "AbortError") throw error;
      return null; // an error without a JSON body
    });
    throw new ApiError(body?.error?.message ?? `${path} answered ${response.status}`);
  }
  return { body: await response.json(), source: sourceOf(response) };
}

function showSource(badge, source) {
  badge.textContent = source.label;
  badge.dataset.from = source.label;
  badge.title = source.detail;
}

const current = (entity) => latest.get(entity.id)?.entity ?? entity;

function entityLink(entity) {
  const link = document.createElement("a");
  link.href = `#${encodeURIComponent(entity.id)}`;
  link.dataset.entityId = entity.id;
  link.textContent = current(entity).name;
  return link;
}

function childRow(child) {
  const row = document.createElement("li");
  row.dataset.rowOf = child.id;
  const kind = document.createElement("span");
  kind.className = "kind";
  kind.textContent = ` ${current(child).kind}`;
  row.append(entityLink(child), kind);
  return row;
}

function drawBreadcrumb() {
  const crumbs = view.ancestors.map((ancestor) => {
    const item = document.createElement("li");
    item.append(entityLink(ancestor));
    return item;
  });
  const here = document.createElement("li");
  here.setAttribute("aria-current", "page");
  here.dataset.entityId = view.entity.id;
  here.textContent = current(view.entity).name;
  ui.breadcrumb.replaceChildren(...crumbs, here);
}

function drawEntity() {
  const entity = current(view.entity);
  ui.name.textContent = entity.name;
  ui.name.dataset.entityId = entity.id;
  ui.kind.textContent = entity.kind;
  document.title = `${entity.name} · Forecastin`;
}

function appendChildren(page) {
  const rows = page.body.items.map(childRow);
  ui.children.append(...rows);
  view.nextCursor = page.body.next_cursor;
  ui.more.hidden = view.nextCursor === null;
  if (ui.children.childElementCount === 0) {
    const none = document.createElement("li");
    none.className = "quiet";
    none.textContent = "No children.";
    ui.children.append(none);
  }
  showSource(ui.childrenSource, page.source);
  return rows;
}

const childrenPath = (id, cursor) =>
  `/api/v1/entities/${encodeURIComponent(id)}/children?limit=${PAGE_SIZE}` +
  (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");

/// Shows entity `id`; `focus` moves keyboard focus to it (after the reader chose it).
async function show(id, { focus = false } = {}) {
  view.loading?.abort();
  if (id !== view.id) clearTimeout(rereadTimer);
  const loading = new AbortController();
  view.loading = loading;
  ui.main.setAttribute("aria-busy", "true");
  const hadFocus = ui.main.contains(document.activeElement) && document.activeElement !== ui.main;
  const path = `/api/v1/entities/${encodeURIComponent(id)}`;
  try {
    const [entity, ancestors, children] = await Promise.all([
      api(path, loading.signal),
      api(`${path}/ancestors`, loading.signal),
      api(childrenPath(id), loading.signal),
    ]);
    Object.assign(view, { id, entity: entity.body, ancestors: ancestors.body.items });
    ui.notice.textContent = "";
    drawEntity();
    drawBreadcrumb();
    showSource(ui.entitySource, entity.source);
    ui.children.replaceChildren();
    appendChildren(children);
    // Redrawn under the reader's focus (a refresh): keep it in the entity rather than lose it.
    if (focus || (hadFocus && !ui.main.contains(document.activeElement))) ui.main.focus();
  } catch (error) {
    if (error.name === "AbortError") return;
    ui.notice.textContent = error instanceof ApiError ? error.message : `Could not load ${id}: ${error.message}`;
  } finally {
    if (view.loading === loading) ui.main.removeAttribute("aria-busy");
  }
}

async function showMore() {
  if (view.nextCursor === null || view.loading === null) return;
  // The entity's reads: opening another aborts this one too, so no page of children lands
  // in another entity's list.
  const { signal } = view.loading;
  ui.more.disabled = true;
  try {
    const rows = appendChildren(await api(childrenPath(view.id, view.nextCursor), signal));
    // The button may be gone: keep keyboard users where the new rows start.
    if (ui.more.hidden) (rows[0]?.querySelector("a") ?? ui.main).focus();
  } catch (error) {
    if (error.name !== "AbortError") ui.notice.textContent = error.message;
  } finally {
    ui.more.disabled = false;
  }
}

/// The entity the address names (`#FR`), else the world.
function openedId() {
  try {
    return decodeURIComponent(location.hash.slice(1)) || "world";
  } catch {
    return "world"; // a malformed escape such as `#%`
  }
}

// --- Search as you type ---

let searchTimer;
let searching = null;

async function search(query) {
  searching?.abort();
  searching = new AbortController();
  try {
    const path = `/api/v1/search?q=${encodeURIComponent(query)}&limit=${SEARCH_LIMIT}`;
    const page = await api(path, searching.signal);
    const rows = page.body.items.map((entity) => {
      const row = document.createElement("li");
      row.dataset.rowOf = entity.id;
      const link = entityLink(entity);
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = ` ${current(entity).kind}`;
      link.append(kind);
      row.append(link);
      return row;
    });
    ui.results.replaceChildren(...rows);
    ui.results.hidden = rows.length === 0;
    const count = rows.length === 0 ? "No match" : `${rows.length}${page.body.next_cursor ? "+" : ""} found`;
    ui.searchStatus.textContent = `${count} (${page.source.label})`;
  } catch (error) {
    if (error.name !== "AbortError") ui.searchStatus.textContent = error.message;
  }
}

function closeSearch() {
  searching?.abort();
  clearTimeout(searchTimer);
  ui.results.hidden = true;
  ui.searchStatus.textContent = "";
}

ui.search.addEventListener("input", () => {
  clearTimeout(searchTimer);
  const query = ui.search.value.trim();
  if (query === "") return closeSearch();
  searchTimer = setTimeout(() => search(query), SEARCH_DELAY_MS);
});

/// Enter opens the first result for what is in the box now, not for an earlier query.
element("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearTimeout(searchTimer);
  const query = ui.search.value.trim();
  if (query === "") return;
  await search(query);
  if (!ui.results.hidden && ui.search.value.trim() === query) ui.results.querySelector("a")?.click();
});

/// Arrow keys move between the box and the results; Escape closes them.
function moveThroughResults(event) {
  const links = [...ui.results.querySelectorAll("a")];
  const at = links.indexOf(document.activeElement);
  if (event.key === "Escape") {
    closeSearch();
    ui.search.focus();
  } else if (event.key === "ArrowDown" && links.length > 0) {
    links[Math.min(at + 1, links.length - 1)].focus();
  } else if (event.key === "ArrowUp" && at >= 0) {
    (at === 0 ? ui.search : links[at - 1]).focus();
  } else {
    return;
  }
  event.preventDefault();
}
ui.search.addEventListener("keydown", moveThroughResults);
ui.results.addEventListener("keydown", moveThroughResults);
ui.results.addEventListener("click", (event) => {
  if (event.target.closest("a")) closeSearch();
});

// --- Live updates ---

/// Keeps `entity` as event `eventId` left it; false when a later event is known already
/// (events may arrive out of order).
function remember(entity, eventId) {
  if ((latest.get(entity.id)?.eventId ?? -1) > eventId) return false;
  latest.delete(entity.id);
  latest.set(entity.id, { entity, eventId });
  if (latest.size > REMEMBERED_EVENTS) latest.delete(latest.keys().next().value);
  return true;
}

function rename(entity) {
  for (const shown of document.querySelectorAll(`[data-entity-id="${CSS.escape(entity.id)}"]`)) {
    const kind = shown.querySelector(".kind");
    shown.textContent = entity.name;
    if (kind) shown.append(kind);
  }
  for (const kind of document.querySelectorAll(`[data-row-of="${CSS.escape(entity.id)}"] .kind`)) {
    kind.textContent = ` ${entity.kind}`;
  }
  if (entity.id === view.id) drawEntity();
}

/// Reads the entity the address names again (the one on screen, or the one being opened).
const refresh = () => show(openedId());

function reread() {
  refresh();
  clearTimeout(rereadTimer);
  rereadTimer = setTimeout(refresh, REREAD_AFTER_MS);
}

function apply(event) {
  const { id: eventId, change, entity_id: id, path, entity } = event;
  if (entity) {
    if (!remember(entity, eventId)) return;
    rename(entity);
  } else if (change === "deleted") {
    latest.delete(id);
  } else {
    // An event from an instance that does not send the entity yet (during a deploy).
    return reread();
  }
  const onScreen = id === view.id || view.ancestors.some((ancestor) => ancestor.id === id);
  if (change === "deleted" && onScreen) {
    ui.notice.textContent = "This entity has just been deleted.";
  } else if (change === "moved" && onScreen) {
    reread();
  } else {
    // A child renamed takes its place in name order, one created or moved here appears, one
    // deleted or moved away leaves.
    ui.children.querySelector(`[data-row-of="${CSS.escape(id)}"]`)?.remove();
    if (entity && path.at(-2) === view.id) insertChild(entity);
    if (change === "deleted") {
      ui.results.querySelector(`[data-row-of="${CSS.escape(id)}"]`)?.remove();
    }
  }
}

/// Puts a new child in name order, unless it sorts after the last row while more pages follow
/// (the "More" button will bring it).
function insertChild(entity) {
  const rows = [...ui.children.querySelectorAll("li[data-row-of]")];
  const after = (row) => {
    const name = row.querySelector("a").textContent;
    return name > entity.name || (name === entity.name && row.dataset.rowOf > entity.id);
  };
  const next = rows.find(after);
  if (!next && view.nextCursor !== null) return;
  ui.children.querySelector("li:not([data-row-of])")?.remove();
  ui.children.insertBefore(childRow(entity), next ?? null);
}

let lastEventId = null;
let failures = 0;
/// A connection that lasts this long counts as a success: the backoff starts over.
const STABLE_AFTER_MS = 10_000;
/// The close code of an instance that is stopping: another takes over at once.
const GOING_AWAY = 1001;

function setLive(state, text) {
  ui.live.dataset.state = state;
  ui.live.textContent = text;
}

function connect() {
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (lastEventId !== null) url.searchParams.set("last_event_id", lastEventId);
  const socket = new WebSocket(url);
  let openedAt = null;
  socket.addEventListener("open", () => {
    openedAt = Date.now();
    setLive("live", "Live");
    // Changes made while no socket was open may not be replayed (an instance that restarted
    // has none to replay), and the first reads may have raced the first connection.
    if (view.id !== null) reread();
  });
  socket.addEventListener("message", (message) => {
    let parsed;
    try {
      parsed = JSON.parse(message.data);
    } catch {
      return;
    }
    if (parsed.type === "event") {
      lastEventId = parsed.id;
      apply(parsed);
    } else if (parsed.type === "reset") {
      // Events were lost: what is on screen may be out of date, and so may the CDN's copy
      // for a moment yet.
      latest.clear();
      reread();
    }
  });
  socket.addEventListener("close", (closed) => {
    // A server that accepts and then closes at once is retried ever more slowly too; one that
    // says it is stopping is not a failure.
    const stable = openedAt !== null && Date.now() - openedAt > STABLE_AFTER_MS;
    if (stable || closed.code === GOING_AWAY) failures = 0;
    const backoff = Math.min(RECONNECT_MAX_MS, 500 * 2 ** failures);
    failures += 1;
    setLive("reconnecting", "Reconnecting…");
    setTimeout(connect, backoff / 2 + Math.random() * (backoff / 2));
  });
}

ui.more.addEventListener("click", showMore);
window.addEventListener("hashchange", () => {
  closeSearch();
  show(openedId(), { focus: true });
});
connect();
show(openedId());
