// Forecastin hierarchy browser: walks the API the edge caches.
const main = document.querySelector("main");
const crumbs = document.querySelector("nav");

async function api(path) {
  const response = await fetch(path, { headers: { accept: "application/json" } });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function link(entity) {
  const a = document.createElement("a");
  a.href = `#${entity.id}`;
  a.textContent = entity.name;
  return a;
}

async function show(id) {
  const [entity, ancestors, children] = await Promise.all([
    api(`/api/v1/entities/${id}`),
    api(`/api/v1/entities/${id}/ancestors`),
    api(`/api/v1/entities/${id}/children?limit=500`),
  ]);
  crumbs.replaceChildren(...ancestors.items.flatMap((a) => [link(a), " › "]), entity.name);
  const list = document.createElement("ul");
  for (const child of children.items) {
    const item = document.createElement("li");
    item.append(link(child), ` (${child.kind})`);
    list.append(item);
  }
  main.replaceChildren(list);
}

window.addEventListener("hashchange", () => show(location.hash.slice(1) || "world"));
show(location.hash.slice(1) || "world");
