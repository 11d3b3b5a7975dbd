// The reference for bench/edge-hit.sh: the least a JavaScript Worker does to cache an API
// response with the Cache API (`caches.default.match`, `put`), nothing else.
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const key = url.origin + url.pathname + url.search;
    const cached = await caches.default.match(key);
    if (cached) {
      return cached;
    }
    const fetched = await fetch(env.ORIGIN_URL + url.pathname + url.search);
    const response = new Response(fetched.body, fetched);
    response.headers.set("cache-control", "public, max-age=60");
    ctx.waitUntil(caches.default.put(key, response.clone()));
    return response;
  },
};
