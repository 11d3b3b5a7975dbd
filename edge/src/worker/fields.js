// Header fields across the boundary between the Worker's Rust and the runtime in one call
// each way, as lines "name\nvalue\n" (a line feed can be in neither a field name nor a
// value): a call per field, each copying its strings, cost a hit more than its decisions. A
// field holding a line feed all the same is left out, so that no value can pass for a name.

// Whether a field can cross as lines.
const crosses = (name, value) => !name.includes("\n") && !value.includes("\n");

// Every field of `headers`, as lines.
export function linesOf(headers) {
  let lines = "";
  for (const [name, value] of headers) {
    if (crosses(name, value)) lines += name + "\n" + value + "\n";
  }
  return lines;
}

// The fields `names` (one per line) of `headers` that are present, as lines.
export function selectedLinesOf(headers, names) {
  let lines = "";
  for (const name of names.split("\n")) {
    const value = headers.get(name);
    if (value !== null && crosses(name, value)) lines += name + "\n" + value + "\n";
  }
  return lines;
}

// Headers holding the fields of `lines`.
export function headersOf(lines) {
  return appendLines(new Headers(), lines, false);
}

// A copy of `base` without the fields `removed` (one per line), and with the fields of
// `lines` in place of any of the same name.
export function patchedHeaders(base, removed, lines) {
  const headers = new Headers(base);
  for (const name of removed.split("\n")) if (name) headers.delete(name);
  return appendLines(headers, lines, true);
}

// Appends the fields of `lines` to `headers`; with `replace`, a name's first value replaces
// the old ones (`set`: one call, where delete and append would be two). A value the runtime
// refuses is dropped with a warning rather than failing the response.
function appendLines(headers, lines, replace) {
  const replaced = new Set();
  for (let at = 0; at < lines.length; ) {
    const nameEnd = lines.indexOf("\n", at);
    const valueEnd = lines.indexOf("\n", nameEnd + 1);
    if (nameEnd < 0 || valueEnd < 0) break;
    const name = lines.slice(at, nameEnd);
    const value = lines.slice(nameEnd + 1, valueEnd);
    at = valueEnd + 1;
    try {
      if (replace && !replaced.has(name)) {
        headers.set(name, value);
        replaced.add(name);
      } else {
        headers.append(name, value);
      }
    } catch (err) {
      // The stored value must not stand in for the refused one.
      if (replace && !replaced.has(name)) {
        try {
          headers.delete(name);
        } catch {
          // A name the runtime refuses is not in `headers` either.
        }
        replaced.add(name);
      }
      console.warn(`dropped the header ${name}: ${err}`);
    }
  }
  return headers;
}

// A response from its parts: `body` a stream, bytes or null.
export function responseOf(status, headers, body) {
  return new Response(body, { status, headers });
}
