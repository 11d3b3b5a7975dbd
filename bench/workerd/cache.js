// A stand-in for the Cache API's storage in bare `workerd serve` (bench/workerd/config.py),
// which has none of its own: workerd sends `caches.default` calls to the service named by
// `cacheApiOutbound` (match: GET, put: PUT with the serialised response, delete: PURGE, and
// expects `Cf-Cache-Status: HIT` or `MISS`), as Miniflare's cache does under `wrangler dev`.
// Entries live in this isolate's memory and expire by the stored `s-maxage` or `max-age`.
const entries = new Map();

export default {
  async fetch(request) {
    const key = request.url;
    if (request.method === "PUT") {
      const stored = parse(new Uint8Array(await request.arrayBuffer()));
      if (!stored) return new Response(null, { status: 413 });
      entries.set(key, stored);
      return new Response(null, { status: 204 });
    }
    if (request.method === "PURGE") {
      return new Response(null, { status: entries.delete(key) ? 200 : 404 });
    }
    const stored = entries.get(key);
    if (!stored || stored.expires < Date.now()) {
      entries.delete(key);
      return new Response(null, { status: 504, headers: { "cf-cache-status": "MISS" } });
    }
    const headers = new Headers(stored.headers);
    headers.set("cf-cache-status", "HIT");
    return new Response(stored.body, { status: stored.status, headers });
  },
};

// An HTTP/1.1 response as workerd serialises it: status line, fields, blank line, body
// (chunked when the field says so). Null if it is not one.
function parse(bytes) {
  const text = new TextDecoder("latin1").decode(bytes);
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return null;
  const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
  const status = Number(statusLine.split(" ")[1]);
  const headers = [];
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
  }
  let body = bytes.subarray(end + 4);
  if (headers.some(([n, v]) => n.toLowerCase() === "transfer-encoding" && /chunked/i.test(v))) {
    body = unchunk(body);
  }
  const cacheControl = headers.find(([n]) => n.toLowerCase() === "cache-control")?.[1] ?? "";
  const age = /s-maxage=(\d+)/.exec(cacheControl) ?? /max-age=(\d+)/.exec(cacheControl);
  const expires = age ? Date.now() + Number(age[1]) * 1000 : Infinity;
  return {
    status,
    headers: headers.filter(([n]) => n.toLowerCase() !== "transfer-encoding"),
    body,
    expires,
  };
}

function unchunk(bytes) {
  const parts = [];
  let at = 0;
  const ascii = new TextDecoder("latin1");
  while (at < bytes.length) {
    const lineEnd = ascii.decode(bytes.subarray(at, at + 20)).indexOf("\r\n");
    if (lineEnd < 0) break;
    const size = parseInt(ascii.decode(bytes.subarray(at, at + lineEnd)), 16);
    if (!(size > 0)) break;
    at += lineEnd + 2;
    parts.push(bytes.subarray(at, at + size));
    at += size + 2;
  }
  const body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    body.set(p, offset);
    offset += p.length;
  }
  return body;
}
