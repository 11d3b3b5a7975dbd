// Samples the CPU of a Worker in workerd through its inspector (the DevTools protocol): starts
// the profiler, prints "profiling" on stderr, and stops when a line comes on stdin with the
// number of requests answered meanwhile. Writes the profile (open it in Chrome's DevTools)
// and prints where the time went, per request: by kind — our Rust (WASM), the JavaScript glue
// (wasm-bindgen's bindings and worker-build's entry shim), the runtime's built-ins and APIs,
// garbage collection — and by function.
// Usage: node profile.mjs HOST:PORT OUT.cpuprofile
import { writeFileSync } from "node:fs";
import { createInterface } from "node:readline";

const [inspector, out] = process.argv.slice(2);
const targets = await (await fetch(`http://${inspector}/json/list`)).json();
const target = targets.find((t) => t.webSocketDebuggerUrl?.endsWith("/main")) ?? targets[0];
const socket = new WebSocket(target.webSocketDebuggerUrl);
const pending = new Map();
let next = 0;
socket.onmessage = ({ data }) => {
  const message = JSON.parse(data);
  const waiter = pending.get(message.id);
  if (!waiter) return;
  pending.delete(message.id);
  if (message.error) waiter.reject(new Error(JSON.stringify(message.error)));
  else waiter.resolve(message.result);
};
const call = (method, params = {}) =>
  new Promise((resolve, reject) => {
    const id = ++next;
    pending.set(id, { resolve, reject });
    socket.send(JSON.stringify({ id, method, params }));
  });
await new Promise((resolve, reject) => {
  socket.onopen = resolve;
  socket.onerror = reject;
});
await call("Profiler.enable");
await call("Profiler.setSamplingInterval", { interval: 50 });
await call("Profiler.start");
console.error("profiling");
const lines = createInterface({ input: process.stdin });
const requests = Number((await lines[Symbol.asyncIterator]().next()).value);
lines.close();
const { profile } = await call("Profiler.stop");
socket.close();
writeFileSync(out, JSON.stringify(profile));

// Self time per node: the samples that landed in it, each worth the gap to the next sample.
const self = new Map();
profile.samples.forEach((node, i) => {
  self.set(node, (self.get(node) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
});
const kind = ({ functionName, url }) => {
  if (functionName === "(idle)") return "idle";
  if (functionName === "(garbage collector)") return "garbage collection";
  if (functionName === "(program)") return "runtime, outside JavaScript";
  if (url.endsWith(".wasm") || /^\$?wasm-function|^\$/.test(functionName) || url.startsWith("wasm://"))
    return "Rust (WASM)";
  if (url) return "JavaScript of the Worker's modules (for Rust: the glue)";
  return "runtime built-ins and APIs";
};
const byKind = new Map();
const byFunction = new Map();
for (const node of profile.nodes) {
  const us = self.get(node.id) ?? 0;
  const k = kind(node.callFrame);
  byKind.set(k, (byKind.get(k) ?? 0) + us);
  const name = `${node.callFrame.functionName || "(anonymous)"} [${k}]`;
  byFunction.set(name, (byFunction.get(name) ?? 0) + us);
}
const busy = [...byKind].filter(([k]) => k !== "idle").reduce((n, [, us]) => n + us, 0);
const each = (us) => (requests > 0 ? `${(us / 1000 / requests).toFixed(3)} ms per request` : "");
const row = ([name, us]) =>
  `${(us / 1000).toFixed(0).padStart(8)} ms ${((100 * us) / busy).toFixed(1).padStart(5)} %  ${each(us).padEnd(22)} ${name}`;
console.log(`busy ${(busy / 1000).toFixed(0)} ms over ${requests} requests (${each(busy)})`);
console.log("by kind:");
[...byKind].filter(([k]) => k !== "idle").sort((a, b) => b[1] - a[1]).forEach((r) => console.log(row(r)));
console.log("top functions:");
[...byFunction]
  .filter(([name]) => !name.endsWith("[idle]"))
  .sort((a, b) => b[1] - a[1])
  .slice(0, 30)
  .forEach((r) => console.log(row(r)));
