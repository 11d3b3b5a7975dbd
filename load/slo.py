"""SLO files and reports of the analyst load test.

An SLO file (YAML) lists objectives, each a metric of the report (a dotted path such as
`operations.ancestors.p95_ms` or `edge.hit_ratio`) with a `max` or a `min`:

    slos:
      - name: breadcrumbs p95
        metric: operations.ancestors.p95_ms
        max: 50

`evaluate` judges a report against them; a metric the run did not measure is a violation, so
an SLO can never pass by being forgotten.
"""

import json

import yaml


def load(path):
    with open(path, encoding="utf-8") as file:
        document = yaml.safe_load(file)
    slos = document.get("slos") if isinstance(document, dict) else None
    if not isinstance(slos, list) or not slos:
        raise ValueError(f"{path}: expected a non-empty `slos` list")
    for slo in slos:
        if not isinstance(slo, dict) or "name" not in slo or "metric" not in slo:
            raise ValueError(f"{path}: every SLO needs a `name` and a `metric`: {slo!r}")
        if ("max" in slo) == ("min" in slo):
            raise ValueError(f"{path}: SLO {slo['name']!r} needs exactly one of `max`, `min`")
    return slos


def lookup(report, metric):
    value = report
    for part in metric.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, (int, float)) else None


def evaluate(report, slos):
    """The verdict of each SLO: name, metric, target, actual value, ok."""
    verdicts = []
    for slo in slos:
        actual = lookup(report, slo["metric"])
        if "max" in slo:
            target, ok = f"<= {slo['max']}", actual is not None and actual <= slo["max"]
        else:
            target, ok = f">= {slo['min']}", actual is not None and actual >= slo["min"]
        verdicts.append(
            {"name": slo["name"], "metric": slo["metric"], "target": target,
             "actual": actual, "ok": ok}
        )
    return verdicts


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[round((len(ordered) - 1) * fraction)]


def worker_times(samples):
    """The Workers' own time per read, from their Server-Timing (whole ms: the runtime's clock
    moves only between I/O), by Worker and by hit or miss; and the edge's p95 for a hit over
    the JavaScript Worker's, the latter counted as at least 1 ms."""
    report = {}
    for kind in ("edge hit", "edge miss", "js hit", "js miss"):
        values = samples.get(kind, [])
        report[kind.replace(" ", "_")] = {
            "count": len(values),
            **{f"p{round(f * 100)}_ms": percentile(values, f) for f in (0.50, 0.95, 0.99)}}
    edge, js = report["edge_hit"]["p95_ms"], report["js_hit"]["p95_ms"]
    report["hit_p95_ratio"] = None if None in (edge, js) else round(edge / max(js, 1), 2)
    return report


def summary(report):
    """A few lines for a human: the operations, the cache, the verdicts."""
    lines = [f"{'operation':<16}{'count':>8}{'rps':>9}{'p50 ms':>9}{'p95 ms':>9}"
             f"{'p99 ms':>9}{'errors':>8}"]
    for name, op in sorted(report["operations"].items()):
        lines.append(
            f"{name:<16}{op['count']:>8}{op['rps']:>9.1f}{op['p50_ms']:>9.1f}"
            f"{op['p95_ms']:>9.1f}{op['p99_ms']:>9.1f}{op['errors']:>8}"
        )
    edge = report["edge"]
    lines.append(f"edge hit ratio {edge['hit_ratio']} ({edge['hits']} hits, "
                 f"{edge['misses']} misses)")
    for tier, stats in (report.get("origin") or {}).items():
        lines.append(f"origin {tier} hit ratio {stats['hit_ratio']} ({stats['hits']} hits, "
                     f"{stats['misses']} misses)")
    for route, stats in sorted(report.get("origin_latency", {}).items()):
        lines.append(f"origin {route}: {stats['count']} requests, p95 <= {stats['p95_ms_at_most']} "
                     f"ms, p99 <= {stats['p99_ms_at_most']} ms (server side)")
    purges = report["purges"]
    lines.append(f"purges {purges['count']} (p50 {purges['p50_ms']} ms, p99 {purges['p99_ms']} "
                 f"ms), stale reads after a completed purge: {purges['stale_reads']}")
    storm = report.get("storm")
    for name in ("before", "during", "after") if storm else ():
        window = storm[name]
        lines.append(
            f"storm {name}: edge hit ratio {window['edge_hit_ratio']} ({window['edge_misses']} "
            f"misses, {window.get('edge_stale_hits')} stale hits); reads p50 / p95 / p99 "
            f"{window.get('read_p50_ms')} / {window.get('read_p95_ms')} / "
            f"{window.get('read_p99_ms')} ms; database queries/s {window.get('db_queries_per_s')}, "
            f"refill renders {window.get('refill_renders')}, preload renders "
            f"{window.get('preload_renders')}")
    hostile = report.get("hostile")
    if hostile:
        lines.append(
            f"hostile: {hostile['requests']} requests ({hostile['share']} of all): "
            f"{hostile.get('answered_4xx', 0)} answered 4xx, {hostile.get('from_cache', 0)} from "
            f"the edge's cache, {hostile.get('first_asks', 0)} first asks, "
            f"{hostile.get('unabsorbed', 0)} repeats the origin answered; "
            f"{hostile['idle_sockets_opened']} idle sockets opened, "
            f"{hostile['streams_connected_peak']} streams at once at most; origin RSS "
            f"{hostile['origin_rss_before_mb']} -> {hostile['origin_rss_after_mb']} MB, Redis "
            f"{hostile['redis_used_before_mb']} -> {hostile['redis_used_after_mb']} MB")
    ws = report["websocket"]
    lines.append(f"websocket events {ws['events']} (p50 {ws['p50_ms']} ms, p95 {ws['p95_ms']} ms)")
    for verdict in report["slos"]:
        mark = "PASS" if verdict["ok"] else "FAIL"
        lines.append(f"{mark} {verdict['name']}: {verdict['metric']} = {verdict['actual']} "
                     f"(target {verdict['target']})")
    failed = [v["name"] for v in report["slos"] if not v["ok"]]
    lines.append("SLO verdict: " + ("PASS" if not failed else "FAIL — " + "; ".join(failed)))
    return "\n".join(lines)


def write(report, path):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2, sort_keys=True)
