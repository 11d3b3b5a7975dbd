// The reference for bench/edge-hit.sh: the least a JavaScript Worker does to cache an API
// response with the Cache API (`caches.default.match`, `put`), nothing else. With the var
// TIMING set (as ./scripts/load starts it), it also says how long it took and whether it hit
// (`Server-Timing: edge;dur=`, `Cache-Status`), as the edge does, so that the load test can
// set the two Workers' own times side by side; a hit then copies the stored response, whose
// headers are immutable.
export default {
  async fetch(request, env, ctx) {
    const started = Date.now();
    const url = new URL(request.url);
    const key = url.origin + url.pathname + url.search;
    const cached = await caches.default.match(key);
    if (cached) {
      return env.TIMING ? timed(new Response(cached.body, cached), "hit", started) : cached;
    }
    const fetched = await fetch(env.ORIGIN_URL + url.pathname + url.search);
    const response = new Response(fetched.body, fetched);
    response.headers.set("cache-control", "public, max-age=60");
    ctx.waitUntil(caches.default.put(key, response.clone()));
    return env.TIMING ? timed(response, "fwd=uri-miss", started) : response;
  },
};

function timed(response, verdict, started) {
  response.headers.set("cache-status", `js-cache-worker; ${verdict}`);
  response.headers.set("server-timing", `edge;dur=${Date.now() - started}`);
  return response;
}
