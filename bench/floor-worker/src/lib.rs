//! The floor for a Rust Worker's hit: what `bench/js-cache-worker` does (`caches.default.match`;
//! on a miss `fetch`, `put`), nothing else, through the same workers-rs entry glue and the same
//! build as the edge (its lean entry too, `scripts/lean-entry`), but with wasm-bindgen-futures'
//! own scheduling, which the edge replaces (`edge/src/worker/schedule.rs`). But for that, the
//! edge cannot answer a hit for less than this Worker does, so `bench/edge-hit.sh` reads the
//! edge against it and it against the JavaScript Worker: the first ratio is the edge's own work
//! (less the scheduling it saves), the second the price of Rust/WASM in workerd.
#![cfg(target_arch = "wasm32")]

use worker::{
    event, js_sys,
    wasm_bindgen::JsCast,
    wasm_bindgen_futures::JsFuture,
    web_sys::{self, Cache, Response, WorkerGlobalScope},
    worker_sys::ext::CacheStorageExt,
    Context, Env, Result,
};

fn cache() -> Result<Cache> {
    let global: WorkerGlobalScope = js_sys::global().unchecked_into();
    Ok(global.caches()?.default())
}

#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> Result<Response> {
    // The runtime hands over an absolute URL without a fragment: the key as it is, and the
    // path (with the query) after the authority for the origin.
    let key = req.url();
    let path = key
        .split("://")
        .nth(1)
        .and_then(|rest| rest.find('/').map(|at| rest[at..].to_owned()))
        .unwrap_or_else(|| "/".to_owned());
    let cache = cache()?;
    if let Ok(stored) = JsFuture::from(cache.match_with_str(&key))
        .await?
        .dyn_into::<Response>()
    {
        return Ok(stored);
    }
    let origin = env.var("ORIGIN_URL")?.to_string();
    let global: WorkerGlobalScope = js_sys::global().unchecked_into();
    let fetched: Response = JsFuture::from(global.fetch_with_str(&format!("{origin}{path}")))
        .await?
        .dyn_into()?;
    let response = Response::new_with_opt_readable_stream_and_init(fetched.body().as_ref(), &{
        let init = web_sys::ResponseInit::new();
        init.set_status(fetched.status());
        init.set_headers(&fetched.headers());
        init
    })?;
    response
        .headers()
        .set("cache-control", "public, max-age=60")?;
    let stored = response.clone()?;
    ctx.wait_until(async move {
        if let Err(err) = JsFuture::from(cache.put_with_str(&key, &stored)).await {
            worker::console_error!("put failed: {err:?}");
        }
    });
    Ok(response)
}
