//! The queue that runs the Worker's futures, made when the module starts so that it schedules
//! its turns with promises rather than with workerd's `queueMicrotask` (see `schedule.js`).

use worker::{
    wasm_bindgen::{self, closure::Closure, prelude::wasm_bindgen, JsValue},
    wasm_bindgen_futures::spawn_local,
};

#[wasm_bindgen(module = "/src/worker/schedule.js")]
extern "C" {
    #[wasm_bindgen(js_name = withoutQueueMicrotask, catch)]
    fn without_queue_microtask(make: &Closure<dyn FnMut()>) -> Result<(), JsValue>;
}

// Private: not exported, so no entry offers it as a handler.
#[wasm_bindgen(start, private)]
fn start() {
    // Spawning is what makes the queue; the empty future runs on the first turn.
    let make = Closure::<dyn FnMut()>::new(|| spawn_local(async {}));
    if let Err(err) = without_queue_microtask(&make) {
        // Then the queue is made on the first request, with `queueMicrotask`: slower, not wrong.
        worker::console_warn!("the futures' queue could not be made at start: {err:?}");
    }
}
