"""Checks that every PromQL query of the dashboard and the rules names a metric that exists.

    python deploy/check_metrics.py <scrape.txt> deploy/grafana/forecastin.json deploy/prometheus/rules.yml [deploy/k8s/prometheus-adapter.yaml]

A name must be exported by the origin (present in the live `/metrics` scrape given, a
histogram by its base name or its `_bucket`/`_count`/`_sum` series), be a recording rule of the
rules file, or be one of the EXTERNAL series (Prometheus's own `up`, the Cloudflare exporter's).
Prints every query naming something else and exits 1, so renaming a metric in the origin fails
the test command.
"""

import json
import re
import sys

import yaml

EXTERNAL = {"up", "cloudflare_zone_requests_cached", "cloudflare_zone_requests_total"}
FUNCTIONS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "absent", "by", "without", "and", "or", "unless", "on", "ignoring", "group_left",
    "group_right", "bool", "offset", "time", "vector", "scalar", "clamp_min", "clamp_max",
    "topk", "bottomk", "delta", "deriv", "abs", "humanizeDuration", "humanizePercentage",
}


def names_in(expr):
    """The metric and recording-rule names a PromQL expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)        # strings (label values)
    expr = re.sub(r"\{[^}]*\}", "", expr)                # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)               # range durations
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    tokens = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr)
    return {t for t in tokens if t not in FUNCTIONS and not re.fullmatch(r"\d+[smhdwy]?", t)}


def exported(scrape):
    names = set()
    for line in scrape.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, 1)[0])
    for name in list(names):
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix):
                names.add(name[: -len(suffix)])
    return names


def queries(dashboard, rules, adapter=()):
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            yield f"dashboard panel {panel['title']!r}", target["expr"]
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield f"rule {rule.get('record') or rule.get('alert')!r}", rule["expr"]
    for rule in adapter:
        # The series the autoscaler's custom metric is made of.
        yield f"adapter metric {rule['name']['as']!r}", rule["seriesQuery"]


def adapter_rules(manifest):
    """The Prometheus adapter's rules from its ConfigMap manifest."""
    for document in yaml.safe_load_all(manifest):
        if document and "config.yaml" in document.get("data", {}):
            return yaml.safe_load(document["data"]["config.yaml"])["rules"]
    return []


def problems(scrape, dashboard, rules, adapter=()):
    known = exported(scrape) | EXTERNAL
    known |= {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    found = []
    for where, expr in queries(dashboard, rules, adapter):
        for name in sorted(names_in(expr) - known):
            found.append(f"{where}: `{name}` is neither exported by the origin nor recorded "
                         f"nor external (query: {expr.strip()})")
    return found


def main(scrape_path, dashboard_path, rules_path, adapter_path=None):
    adapter = []
    if adapter_path:
        with open(adapter_path, encoding="utf-8") as manifest:
            adapter = adapter_rules(manifest.read())
    with open(scrape_path, encoding="utf-8") as scrape, \
            open(dashboard_path, encoding="utf-8") as dashboard, \
            open(rules_path, encoding="utf-8") as rules:
        found = problems(scrape.read(), json.load(dashboard), yaml.safe_load(rules), adapter)
    for problem in found:
        print(problem)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
