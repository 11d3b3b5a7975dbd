#!/usr/bin/env python3
"""Writes a `workerd serve` config for a Worker from its wrangler.toml, so that benchmarks can
run it in bare workerd, without wrangler's proxy in front: the Worker's modules (the main
module and the files beside it), its [vars] with --var overrides, the secrets it requires from
the environment, its Durable Objects on disk beside OUT, the Cache API's storage in
bench/workerd/cache.js, and the internet (for the origin) as the global outbound.

Usage: config.py WRANGLER_TOML PORT OUT [--var NAME:VALUE ...]
"""
import argparse
import os
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))


def text(value):
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    args = argparse.ArgumentParser()
    args.add_argument("wrangler")
    args.add_argument("port", type=int)
    args.add_argument("out")
    args.add_argument("--var", action="append", default=[])
    args = args.parse_args()
    with open(args.wrangler, "rb") as f:
        wrangler = tomllib.load(f)
    root = os.path.dirname(os.path.abspath(args.wrangler))
    out_dir = os.path.dirname(os.path.abspath(args.out))
    embed = lambda path: f"embed {text(os.path.relpath(path, out_dir))}"

    main_path = os.path.join(root, wrangler["main"])
    modules = [f"(name = {text(os.path.basename(main_path))}, esModule = {embed(main_path)})"]
    for name in sorted(os.listdir(os.path.dirname(main_path))):
        path = os.path.join(os.path.dirname(main_path), name)
        if path == main_path:
            continue
        if name.endswith(".wasm"):
            modules.append(f"(name = {text(name)}, wasm = {embed(path)})")
        elif name.endswith(".js"):
            modules.append(f"(name = {text(name)}, esModule = {embed(path)})")

    values = dict(wrangler.get("vars", {}))
    for override in args.var:
        name, _, value = override.partition(":")
        values[name] = value
    # As `wrangler dev` does: a secret the environment does not set stays unset.
    for name in wrangler.get("secrets", {}).get("required", []):
        if name in os.environ:
            values[name] = os.environ[name]
    bindings = [f"(name = {text(n)}, text = {text(v)})" for n, v in values.items()]
    objects = []
    for binding in wrangler.get("durable_objects", {}).get("bindings", []):
        bindings.append(
            f"(name = {text(binding['name'])}, durableObjectNamespace = {text(binding['class_name'])})"
        )
        objects.append(
            f"(className = {text(binding['class_name'])}, uniqueKey = {text(binding['class_name'])}, enableSql = true)"
        )
    # The index's objects keep SQLite storage, which in workerd lives on a disk service.
    storage = 'durableObjectStorage = (localDisk = "objects"),' if objects else ""
    objects_dir = os.path.join(out_dir, "objects")
    os.makedirs(objects_dir, exist_ok=True)
    config = f"""using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "cache", worker = .cache),
    (name = "internet", network = (allow = ["public", "private"])),
    (name = "objects", disk = (path = {text(objects_dir)}, writable = true)),
  ],
  sockets = [(name = "http", address = "127.0.0.1:{args.port}", http = (), service = "main")],
);
const worker :Workerd.Worker = (
  modules = [{", ".join(modules)}],
  compatibilityDate = {text(wrangler["compatibility_date"])},
  bindings = [{", ".join(bindings)}],
  durableObjectNamespaces = [{", ".join(objects)}],
  {storage}
  cacheApiOutbound = "cache",
);
const cache :Workerd.Worker = (
  modules = [(name = "cache.js", esModule = {embed(os.path.join(HERE, "cache.js"))})],
  compatibilityDate = {text(wrangler["compatibility_date"])},
);
"""
    with open(args.out, "w") as f:
        f.write(config)


if __name__ == "__main__":
    main()
