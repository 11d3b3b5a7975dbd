"""The global model: what the analyst mix at a global request rate costs the origin, the
purge API and the Worker, over Cloudflare's locations, each with a cache of its own.

Run it with `bench/global.sh` (the 1,000,000-entity hierarchy, 300 locations, in full) or
`python load/model.py --tree DB.sqlite3 …` (see `--help`); `--validate slo_report.json`
checks it against a run of `PRELOAD=0 ./scripts/load` instead (one location, the run's own
rates; with preloading off, the local edge drops what a purge names, as Cloudflare's purge API
does), or of `./scripts/load` with `--refreshed-in-place` (preloading on, the local edge
refreshes purged pages in place instead).

How it counts:
- **Pages and their rates.** Every run of every workflow of the analyst mix (`mix.py`, the
  same functions the Locust analysts run) is listed with its probability (`mix.expand`), which
  gives each page its exact share of all page reads. A page is read at `rps × share`; location `l` gets the fraction
  `weight(l)` of the traffic, `weight(l) ∝ 1 / (l + 1) ** skew`.
- **Purges.** Editor changes (`mix.edit`, at `--writes-per-minute`) are drawn the same way;
  each one's purged tags follow `shared/src/tags.rs` (`purged_by` below mirrors
  `invalidated_by` for renames and moves, `page_tags` mirrors `for_response`). A page's
  purge rate is the sum of its tags' purge rates.
- **One cache.** Reads of a page at a location arrive as a Poisson stream (rate λ); a stored
  copy lives until its `s-maxage` T runs out or a purge (rate μ) removes it, whichever comes
  first, so a copy lives E[L] = (1 − e^(−μT)) / μ on average, and the cache fetches the page
  1 / (E[L] + 1/λ) times a second (renewal: each copy is followed by a wait for the next
  read). A copy that ran out is served stale while it is refetched when a read comes within
  `stale-while-revalidate`; a purged one is not.
- **Tiered cache.** With `--upper-tiers U` (the deployment's `cloudflare_tiered_cache` is on:
  Smart Tiered Cache has one upper tier), each location's fetches go to an upper tier. A
  location's copy keeps the age of the upper tier's and is purged with it, so the upper tier
  fetches as one cache read by all its locations would (the same formula over the sum of
  their read rates). The locations' own fetches are counted with a whole lifetime each, which
  slightly overstates their hit ratio for pages read about once per lifetime there.
- **Origin.** Its L2 (Redis, `L2_TTL_SECS`, purged with the CDN) is one cache for everything
  that reaches the origin; what misses it is rendered from the database,
  `--db-reads-per-render` queries each (measured by the load test:
  `origin.db_public_reads` over `origin.l2.misses`).
- **Costs.** Workers requests and CPU (per hit and per miss, as measured by
  `bench/edge-cpu.sh` in BENCHMARKS.md), Durable Object calls (the purge index, off in
  production), purge API calls against the plan's rate.

Steady state, averages: it says nothing of bursts (the autoscaler's part, `deploy/hpa_sim.py`)
and assumes each cache keeps what it stored until it expires or is purged (no eviction).
"""

import argparse
import collections
import functools
import json
import math
import random
import re
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

import mix

ROOT = Path(__file__).resolve().parent.parent
# Cloudflare's purge API (developers.cloudflare.com/cache/how-to/purge-cache): tags per call
# on every plan (Enterprise allows 50 calls a second, CLOUDFLARE_PURGE_PER_MINUTE's default).
PURGE_TAGS_PER_CALL = 100
SECONDS_PER_MONTH = 30 * 24 * 3600
# Workers Paid (developers.cloudflare.com/workers/platform/pricing): $5 a month with 10M
# requests and 30M CPU ms, then $0.30 per million requests and $0.02 per million CPU ms;
# Durable Objects: 1M requests included, then $0.15 per million.
WORKERS_BASE_USD = 5.0
WORKERS_INCLUDED_REQUESTS = 10e6
WORKERS_USD_PER_MILLION_REQUESTS = 0.30
WORKERS_INCLUDED_CPU_MS = 30e6
WORKERS_USD_PER_MILLION_CPU_MS = 0.02
DO_INCLUDED_REQUESTS = 1e6
DO_USD_PER_MILLION_REQUESTS = 0.15


# --- the hierarchy -------------------------------------------------------------------------

class Tree:
    """The hierarchy, read from an origin's SQLite database (`forecastin-origin generate`)."""

    def __init__(self, database):
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        rows = connection.execute(
            "SELECT id, parent_id, kind, name, path FROM entities ORDER BY name, id")
        self.parent, self.kind, self.name, self.path = {}, {}, {}, {}
        self.children = collections.defaultdict(list)  # in the API's order: (name, id)
        for entity, parent, kind, name, path in rows:
            self.parent[entity], self.kind[entity], self.name[entity] = parent, kind, name
            self.path[entity] = path
            if parent is not None:
                self.children[parent].append(entity)
        connection.close()

    def children_of(self, parent):
        return ((c, self.name[c], self.kind[c]) for c in self.children.get(parent, ()))

    def chain(self, entity):
        """The ids from the root down to `entity`'s parent."""
        chain, parent = [], self.parent.get(entity)
        while parent is not None:
            chain.append(parent)
            parent = self.parent.get(parent)
        return chain[::-1]

    def descendants(self, root, count):
        """The first `count` descendants of `root` in the API's order: level by level, each
        level in path order."""
        found, level = [], [root]
        while level and len(found) < count:
            level = sorted((c for p in level for c in self.children.get(p, ())),
                           key=self.path.get)
            found.extend(level)
        return found[:count]


# --- tags (shared/src/tags.rs) ---------------------------------------------------------------

def search_keys(name):
    """`q:` tags of every query that can match `name`: its substrings of up to 3 characters."""
    chars = name.lower()
    return {f"q:{chars[start:end]}" for start in range(len(chars))
            for end in range(start + 1, min(start + 3, len(chars)) + 1)}


def page_tags(tree, page, items=()):
    """The tags a page carries (`for_response`, `for_descendants_page`)."""
    kind, subject = page
    if kind == "search":
        return ["search", f"q:{subject.lower()[:3]}"]
    chain = tree.chain(subject)
    primary, below = {"entity": ("e", "t"), "ancestors": ("e", "s"), "children": ("c", "t"),
                      "descendants": ("d", "s")}[kind]
    tags = [f"{primary}:{subject}"] + [f"{below}:{a}" for a in chain]
    return tags + [f"e:{item}" for item in items]


def purged_by(tree, change):
    """The tags a change purges (`invalidated_by`): a rename or a move of one entity."""
    entity, kind, value = change
    chain = tree.chain(entity)
    name = tree.name[entity]
    if kind == "rename":
        tags = {f"e:{entity}", f"s:{entity}", f"c:{chain[-1]}"}
        tags |= {f"n:{a}" for a in chain}
        return tags | search_keys(name) | search_keys(value)
    new_chain = tree.chain(value) + [value]
    tags = {f"e:{entity}", f"s:{entity}", f"d:{entity}"}
    for lists in (chain, new_chain):
        tags |= {f"c:{lists[-1]}"} | {f"d:{a}" for a in lists}
    if len(chain) != len(new_chain):
        # A leaf moved to another depth: its own depth shows on its pages and children.
        tags |= {f"t:{entity}", f"c:{entity}"}
    return tags | search_keys(name)


# --- the model ---------------------------------------------------------------------------

def page_reads(catalogue, tree):
    """Each page's share of all page reads, exactly: every run of every workflow of the mix
    with its probability; a page of descendants is `("descendants", (root, page number))`."""
    reads = collections.defaultdict(float)
    pages_of = {}
    total_weight = sum(mix.WORKFLOWS.values())
    for workflow, weight in mix.WORKFLOWS.items():
        for probability, steps in mix.expand(workflow, catalogue):
            chance = probability * weight / total_weight
            for step in steps:
                if step is mix.THINK:
                    continue
                page = step[1]
                if page[0] != "descendants":
                    reads[page] += chance
                    continue
                root = page[1]
                if root not in pages_of:
                    listed = len(tree.descendants(root, mix.DESCENDANT_PAGES
                                                  * mix.DESCENDANT_PAGE_SIZE))
                    pages_of[root] = max(1, math.ceil(listed / mix.DESCENDANT_PAGE_SIZE))
                for number in range(min(pages_of[root], mix.DESCENDANT_PAGES)):
                    reads[("descendants", (root, number))] += chance
    total = sum(reads.values())
    return {page: read / total for page, read in reads.items()}


def purge_rates(catalogue, tree, writes_per_second, samples, rng):
    """Each tag's purges per second, and the purge API calls per second (a call per
    `PURGE_TAGS_PER_CALL` tags of a change, none merged: an upper bound)."""
    counts, calls = collections.Counter(), 0
    for number in range(samples):
        tags = purged_by(tree, mix.edit(catalogue, number, rng))
        counts.update(tags)
        calls += math.ceil(len(tags) / PURGE_TAGS_PER_CALL)
    scale = writes_per_second / samples if samples else 0.0
    return {tag: count * scale for tag, count in counts.items()}, calls * scale


def tags_of(tree, page):
    kind, subject = page
    if kind != "descendants":
        return page_tags(tree, page)
    root, number = subject
    listed = tree.descendants(root, (number + 1) * mix.DESCENDANT_PAGE_SIZE)
    return page_tags(tree, (kind, root), listed[number * mix.DESCENDANT_PAGE_SIZE:])


def lifetime(mu, ttl):
    """E[L]: how long a stored copy lives, purged at rate `mu` or expired after `ttl`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mu > 0, -np.expm1(-mu * ttl) / np.where(mu > 0, mu, 1.0), ttl)


def fetches(rate, life):
    """A cache's fetches per second of a page read `rate` times a second (renewal)."""
    with np.errstate(divide="ignore"):
        return np.where(rate > 0, rate / (1.0 + rate * life), 0.0)


def location_weights(count, skew):
    weights = 1.0 / np.arange(1, count + 1) ** skew
    return weights / weights.sum()


def steady_state(shares, mu, args):
    """The long-run rates at `args.rps` over `args.locations` locations."""
    rate = shares * args.rps
    life = lifetime(mu, args.s_maxage)
    expired = np.exp(-mu * args.s_maxage)  # a copy's chance to end by expiry, not a purge
    weights = location_weights(args.locations, args.location_skew)
    tiers = max(args.upper_tiers, 0)
    upper = np.zeros((max(tiers, 1), len(rate)))  # reads of each upper tier's locations
    edge_fetches = np.zeros(len(rate))
    misses = 0.0
    for location, weight in enumerate(weights):
        local = rate * weight
        fetched = fetches(local, life)
        edge_fetches += fetched
        # A read that finds its copy expired within stale-while-revalidate is a (stale) hit.
        misses += (fetched * (1 - expired * -np.expm1(-local * args.stale_while_revalidate))).sum()
        upper[location % max(tiers, 1)] += local
    # A location's copy filled from an upper tier keeps the upper copy's age and is purged with
    # it, so it never outlives it: the upper tier fetches once per copy of its own, as one
    # cache read by all its locations would.
    origin = sum(fetches(reads, life) for reads in upper) if tiers else edge_fetches
    # The origin's L2 is one cache for every request that reaches the origin: it saves a
    # render when another location or tier asks within its TTL, never for a single tier,
    # whose copy outlives the L2's.
    renders = np.minimum(origin, fetches(rate, lifetime(mu, args.l2_ttl)))
    return {
        "edge_hit_ratio": 1 - misses / args.rps,
        "edge_fetches_per_s": float(edge_fetches.sum()),
        "origin_rps": float(origin.sum()),
        "db_renders_per_s": float(renders.sum()),
        "db_queries_per_s": float(renders.sum() * args.db_reads_per_render),
        "origin_pods": pods_for(float(origin.sum())),
    }


def warm_window(shares, mu, warmed, rps, seconds):
    """Expected misses of one location over `seconds` after a warm-up stored the `warmed`
    pages, before anything expires (a run shorter than `s-maxage`): each page is a two-state
    chain, stored -> (purge, rate μ) -> empty -> (a read, rate λ: a miss) -> stored."""
    rate = shares * rps
    total = rate + mu
    with np.errstate(divide="ignore", invalid="ignore"):
        settled = np.where(total > 0, mu / np.where(total > 0, total, 1.0), 0.0)
        start = np.where(warmed, 0.0, 1.0)  # chance that the page is empty at the start
        decay = np.where(total > 0, -np.expm1(-total * seconds) / np.where(total > 0, total, 1.0),
                         seconds)
    return float((rate * (settled * seconds + (start - settled) * decay)).sum())


def costs(rps, hit_ratio, fills_per_s, purge_calls_per_s, args):
    """A month of the Worker at `rps`: requests, CPU and Durable Object calls."""
    requests = rps * SECONDS_PER_MONTH
    cpu_ms = requests * (hit_ratio * args.cpu_ms_hit + (1 - hit_ratio) * args.cpu_ms_miss)
    durable = fills_per_s * SECONDS_PER_MONTH if args.purge_index else 0.0
    usd = (WORKERS_BASE_USD
           + max(requests - WORKERS_INCLUDED_REQUESTS, 0) / 1e6 * WORKERS_USD_PER_MILLION_REQUESTS
           + max(cpu_ms - WORKERS_INCLUDED_CPU_MS, 0) / 1e6 * WORKERS_USD_PER_MILLION_CPU_MS
           + max(durable - DO_INCLUDED_REQUESTS, 0) / 1e6 * DO_USD_PER_MILLION_REQUESTS)
    return {"rps": rps, "worker_requests_per_month": requests, "worker_cpu_ms_per_month": cpu_ms,
            "durable_object_calls_per_month": durable,
            "purge_api_calls_per_s": purge_calls_per_s, "usd_per_month": round(usd, 2)}


# --- the command -------------------------------------------------------------------------

@functools.cache
def origin_manifest():
    """deploy/k8s/origin.yaml, the origin as deployed."""
    return (ROOT / "deploy/k8s/origin.yaml").read_text(encoding="utf-8")


def deployed(name, default):
    """A setting of the origin's ConfigMap in deploy/k8s/origin.yaml."""
    match = re.search(rf'^\s+{name}: "([^"]+)"', origin_manifest(), re.MULTILINE)
    return type(default)(match.group(1)) if match else default


def pods_for(origin_rps):
    """The origin pods the HPA keeps for `origin_rps`: its per-pod request-rate target and its
    floor, from deploy/k8s/origin.yaml."""
    text = origin_manifest()
    target = float(re.search(r'forecastin_http_requests_per_second\s+target: \{type: '
                             r'AverageValue, averageValue: "(\d+)"', text).group(1))
    floor = int(re.search(r"minReplicas: (\d+)", text).group(1))
    return max(floor, math.ceil(origin_rps / target))


def arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", required=True,
                        help="an origin's SQLite database (forecastin-origin generate)")
    parser.add_argument("--rps", type=float, default=100_000, help="global page reads a second")
    parser.add_argument("--locations", type=int, default=300)
    parser.add_argument("--location-skew", type=float, default=0.8,
                        help="Zipf exponent of the traffic over the locations")
    parser.add_argument("--upper-tiers", type=int, default=1,
                        help="upper tiers of tiered cache (0: off; Smart Tiered Cache: 1)")
    parser.add_argument("--expand", default="all",
                        help="kinds whose children analysts browse, comma-separated, or `all` "
                             "(the Locust analysts: region,country)")
    parser.add_argument("--zipf-exponent", type=float, default=1.1)
    parser.add_argument("--writes-per-minute", type=float, default=12)
    parser.add_argument("--write-samples", type=int, default=20_000)
    parser.add_argument("--s-maxage", type=float, default=deployed("CACHE_S_MAXAGE", 60.0))
    parser.add_argument("--stale-while-revalidate", type=float,
                        default=deployed("CACHE_STALE_WHILE_REVALIDATE", 30.0))
    parser.add_argument("--l2-ttl", type=float, default=deployed("L2_TTL_SECS", 300.0))
    # ./scripts/load on 2026-12-07: 1,193 database reads for 604 L2 misses.
    parser.add_argument("--db-reads-per-render", type=float, default=2.0)
    parser.add_argument("--cpu-ms-hit", type=float, default=1.81,
                        help="Worker CPU per hit (bench/edge-cpu.sh, without the purge index)")
    parser.add_argument("--cpu-ms-miss", type=float, default=5.65,
                        help="Worker CPU per read that reaches the origin (same run)")
    parser.add_argument("--purge-index", action="store_true",
                        help="the edge's purge index on (a Durable Object call per fill)")
    parser.add_argument("--cost-at", default="10000,100000", help="rates to price, req/s")
    parser.add_argument("--validate", help="a load run's slo_report.json: model that run")
    parser.add_argument("--margin", type=float, default=0.002,
                        help="largest edge hit ratio difference --validate accepts")
    parser.add_argument("--refreshed-in-place", action="store_true",
                        help="with --validate: the run's purges refreshed pages in place "
                             "(./scripts/load with preloading on) rather than dropping them")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", help="write the result here as JSON")
    return parser.parse_args(argv)


def model(args):
    if args.validate:
        # The run's own mix: its analysts' catalogue (they descend into regions and countries
        # only), popularity and edit rate, at one location.
        run = json.loads(Path(args.validate).read_text(encoding="utf-8"))["settings"]
        args.expand, args.locations, args.upper_tiers = "region,country", 1, 0
        args.zipf_exponent = run["zipf_exponent"]
        args.writes_per_minute = run["edits_per_minute"]
    rng = random.Random(args.seed)
    started = time.time()
    tree = Tree(args.tree)
    expand = None if args.expand == "all" else tuple(args.expand.split(","))
    catalogue = mix.Catalogue(*mix.breadth_first(tree.children_of, expand), args.zipf_exponent)
    shares = page_reads(catalogue, tree)
    tag_rates, calls_per_s = purge_rates(catalogue, tree, args.writes_per_minute / 60,
                                         args.write_samples, rng)
    pages = list(shares)
    share = np.array([shares[p] for p in pages])
    mu = np.array([sum(tag_rates.get(tag, 0.0) for tag in tags_of(tree, p)) for p in pages])
    result = {"entities": len(tree.name), "catalogue": len(catalogue.entities),
              "pages": len(pages),
              "purged_pages_share": float((mu > 0).mean()),
              "purge_api_calls_per_s": calls_per_s,
              "settings": {k: v for k, v in vars(args).items() if k not in ("out",)}}
    if args.validate:
        result["validation"] = validate(args, catalogue, pages, share, mu)
    else:
        # Fewer reads a second find fewer copies alive: each rate has its own hit ratio.
        rates = [args.rps, *map(float, args.cost_at.split(","))]
        states = {rps: steady_state(share, mu, argparse.Namespace(**{**vars(args), "rps": rps}))
                  for rps in dict.fromkeys(rates)}
        result["steady"] = states[args.rps]
        result["costs"] = [{**costs(rps, states[rps]["edge_hit_ratio"],
                                    states[rps]["edge_fetches_per_s"], calls_per_s, args),
                            **states[rps]}
                           for rps in dict.fromkeys(rates[1:])]
    result["seconds"] = round(time.time() - started, 1)
    return result


def validate(args, catalogue, pages, share, mu):
    """The model of a load run against what it measured: one location, the run's read rate,
    duration and edits, the pages its warm-up stored."""
    report = json.loads(Path(args.validate).read_text(encoding="utf-8"))
    edge = report["edge"]
    reads = edge["hits"] + edge["misses"]
    seconds = report["duration_s"]
    stored = set(mix.warm_pages(catalogue))
    warmed = np.array([page in stored for page in pages])
    # Refreshed in place, a purged page stays stored: only the pages no warm-up stored miss.
    purges = np.zeros_like(mu) if args.refreshed_in_place else mu
    misses = warm_window(share, purges, warmed, reads / seconds, seconds)
    predicted = 1 - misses / reads
    return {"reads": reads, "seconds": seconds, "measured_misses": edge["misses"],
            "predicted_misses": round(misses, 1), "measured_hit_ratio": edge["hit_ratio"],
            "predicted_hit_ratio": round(predicted, 5), "margin": args.margin,
            "ok": abs(predicted - edge["hit_ratio"]) <= args.margin}


def summary(result):
    lines = [f"{result['entities']:,} entities, {result['catalogue']:,} in the catalogue, "
             f"{result['pages']:,} pages read ({result['seconds']} s)"]
    if "validation" in result:
        v = result["validation"]
        lines.append(f"load run: {v['reads']:,} reads in {v['seconds']} s; edge hit ratio "
                     f"measured {v['measured_hit_ratio']}, modelled {v['predicted_hit_ratio']} "
                     f"(misses {v['measured_misses']} / {v['predicted_misses']}); "
                     f"{'within' if v['ok'] else 'OUTSIDE'} ±{v['margin']}")
        return "\n".join(lines)
    s, settings = result["steady"], result["settings"]
    lines.append(f"at {settings['rps']:,.0f} req/s over {settings['locations']} locations "
                 f"(upper tiers {settings['upper_tiers']}): edge hit ratio "
                 f"{s['edge_hit_ratio']:.5f}, {s['edge_fetches_per_s']:,.0f} fetches/s from "
                 f"the locations, origin {s['origin_rps']:,.0f} req/s ({s['origin_pods']} pods), "
                 f"database "
                 f"{s['db_queries_per_s']:,.0f} queries/s; purge API "
                 f"{result['purge_api_calls_per_s']:.2f} calls/s at most")
    for cost in result["costs"]:
        lines.append(f"  {cost['rps']:,.0f} req/s: edge hit ratio {cost['edge_hit_ratio']:.5f}, "
                     f"origin {cost['origin_rps']:,.0f} req/s; ${cost['usd_per_month']:,.2f} a "
                     f"month ({cost['worker_requests_per_month'] / 1e9:,.1f} G requests, "
                     f"{cost['worker_cpu_ms_per_month'] / 1e9:,.1f} G CPU ms)")
    return "\n".join(lines)


def main(argv=None):
    args = arguments(argv)
    result = model(args)
    print(summary(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if result.get("validation", {}).get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
