// How the Rust futures' wake-ups are scheduled. wasm-bindgen-futures runs them from one queue,
// scheduled once per turn of the microtask loop: with the global `queueMicrotask` where there
// is one, else with `then` on a resolved promise. workerd's `queueMicrotask` is a call into C++
// that wraps the callback for its async context where there is one (a tenth of a cached hit's
// time); a promise reaction carries that context by itself. The queue looks for the global once, when it is
// made, so it is made while the global is hidden.

// Runs `make` with `queueMicrotask` hidden from it.
export function withoutQueueMicrotask(make) {
  const queueMicrotask = globalThis.queueMicrotask;
  globalThis.queueMicrotask = undefined;
  try {
    make();
  } finally {
    globalThis.queueMicrotask = queueMicrotask;
  }
}
