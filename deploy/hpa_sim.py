"""The origin's HorizontalPodAutoscaler, run on load curves: the Kubernetes HPA algorithm applied
to the spec in deploy/k8s/origin.yaml (read from the manifest, not copied) and to the metrics
the Prometheus adapter serves it (deploy/k8s/prometheus-adapter.yaml, its rate windows read
too), over a model of the pods.

    python deploy/hpa_sim.py [deploy/k8s]     # prints each curve's replicas over time

The algorithm (kubernetes.io, "Horizontal Pod Autoscaling", and the controller's source): every
sync period each metric proposes ceil(replicas x value / target), or the current replicas when
the ratio is within the tolerance; the largest proposal wins; scale-up takes the smallest and
scale-down the largest recommendation of its stabilization window; the behavior policies cap
the change per period (selectPolicy over the policies); min/max bound it.

The pods (docs/capacity.md): a pod serves up to CAPACITY requests a second on the database
path with its 2 vCPU limit, costs CPU_MS_PER_REQUEST of CPU each (utilization counted against
its 1-CPU request), and answers in SERVICE_MS at no load, longer as it fills (an M/M/1 queue);
an overloaded pod queues what it cannot serve, up to QUEUE_LIMIT in flight. New pods serve once
ready, STARTUP_S after the scale-up. Prometheus scrapes every SCRAPE_S; the HPA reads the last
scrape.
"""

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CAPACITY = 14_000.0
CPU_MS_PER_REQUEST = 2_000.0 / CAPACITY
SERVICE_MS = 2.0
QUEUE_LIMIT = 1_000.0
STARTUP_S = 10
SCRAPE_S = 15
SYNC_S = 15
TOLERANCE = 0.1


def documents(directory):
    for path in sorted(Path(directory).glob("*.yaml")):
        yield from (d for d in yaml.safe_load_all(path.read_text()) if d)


def hpa_spec(directory):
    """The origin's HPA spec from the manifests."""
    for document in documents(directory):
        if document["kind"] == "HorizontalPodAutoscaler":
            return document["spec"]
    raise ValueError(f"no HorizontalPodAutoscaler in {directory}")


def adapter_rules(directory):
    """The Prometheus adapter's rules, by the metric name they serve."""
    for document in documents(directory):
        if document["kind"] == "ConfigMap" and "config.yaml" in document.get("data", {}):
            rules = yaml.safe_load(document["data"]["config.yaml"])["rules"]
            return {rule["name"]["as"]: rule for rule in rules}
    raise ValueError(f"no Prometheus adapter rules in {directory}")


def rate_window_s(rule):
    """The range of the rule's rate(), in seconds; 0 for a gauge read as it is."""
    query = rule["metricsQuery"]
    if "rate(" not in query:
        return 0
    window = query.split("[", 1)[1].split("]", 1)[0]
    unit = {"s": 1, "m": 60}[window[-1]]
    return int(window[:-1]) * unit


@dataclass
class Pod:
    ready_at: int


@dataclass
class Cluster:
    """The pods and what Prometheus last scraped of them."""
    pods: list
    served: list = field(default_factory=list)       # (t, requests served that second)
    scraped: dict = field(default_factory=dict)

    def ready(self, t):
        return [pod for pod in self.pods if pod.ready_at <= t]

    def step(self, t, load, scrape_phase):
        """One second of `load` requests a second spread over the ready pods."""
        ready = max(len(self.ready(t)), 1)
        per_pod = load / ready
        served = min(per_pod, CAPACITY)
        rho = served / CAPACITY
        if per_pod >= CAPACITY:
            inflight = QUEUE_LIMIT
        else:
            inflight = min(QUEUE_LIMIT, per_pod * SERVICE_MS / 1_000 / (1 - rho))
        self.served.append((t, served * ready))
        if (t + scrape_phase) % SCRAPE_S == 0:
            self.scraped = {
                "cpu": served * CPU_MS_PER_REQUEST / 1_000 * 100,
                "inflight_per_pod": inflight,
                "at": t,
            }


def metric_values(spec, rules, cluster):
    """Each HPA metric's value as the HPA reads it: (name, value, target, kind). A metric the
    model does not know is an error: show how it moves with the load before scaling on it."""
    scraped = cluster.scraped
    for metric in spec["metrics"]:
        if metric["type"] == "Resource":
            name = metric["resource"]["name"]
            if name != "cpu":
                raise ValueError(f"no model of the {name} resource")
            target = metric["resource"]["target"]["averageUtilization"]
            yield name, scraped["cpu"], float(target), "utilization"
            continue
        name = metric["object"]["metric"]["name"]
        target = float(metric["object"]["target"]["averageValue"])
        if name == "forecastin_http_requests_per_second":
            # rate() over the adapter's window, up to the last scrape.
            window, at = rate_window_s(rules[name]), scraped["at"]
            points = [s for t, s in cluster.served if at - window < t <= at]
            value = sum(points) / max(len(points), 1)
        elif name == "forecastin_inflight_requests":
            value = scraped["inflight_per_pod"] * len(cluster.ready(scraped["at"]))
        else:
            raise ValueError(f"no model of {name}")
        yield name, value, target, "total"


def proposal(replicas, value, target, kind):
    """One metric's replica count (the HPA's formula with its tolerance)."""
    if kind == "utilization":
        ratio = value / target
    else:
        ratio = value / (target * replicas)
    if abs(ratio - 1) <= TOLERANCE:
        return replicas
    return math.ceil(replicas * ratio)


def limit(behavior, direction, replicas, changes, t):
    """The most (up) or fewest (down) replicas the policies allow now."""
    rules = behavior[direction]
    limits = []
    for policy in rules["policies"]:
        period = policy["periodSeconds"]
        moved = sum(d for when, d in changes if t - when < period and (d > 0) == (direction == "scaleUp"))
        start = replicas - moved
        if direction == "scaleUp":
            limits.append(start + policy["value"] if policy["type"] == "Pods"
                          else math.ceil(start * (1 + policy["value"] / 100)))
        else:
            limits.append(start - policy["value"] if policy["type"] == "Pods"
                          else math.ceil(start * (1 - policy["value"] / 100)))
    select = rules.get("selectPolicy", "Max")
    if direction == "scaleUp":
        return max(limits) if select == "Max" else min(limits)
    return min(limits) if select == "Max" else max(limits)


@dataclass
class Run:
    """A curve's run: replicas and load each second, and the decisions."""
    replicas: list
    load: list
    changes: list


def simulate(directory, curve, seconds, sync_phase=0, scrape_phase=0):
    """Runs the HPA of `directory` on `curve` (a function of the second, in requests a second)."""
    spec, rules = hpa_spec(directory), adapter_rules(directory)
    behavior = spec["behavior"]
    cluster = Cluster(pods=[Pod(ready_at=-1) for _ in range(spec["minReplicas"])])
    recommendations, changes, replicas_over_time, loads = [], [], [], []
    for t in range(seconds):
        load = curve(t)
        cluster.step(t, load, scrape_phase)
        replicas = len(cluster.pods)
        if t >= SCRAPE_S and (t - sync_phase) % SYNC_S == 0:
            proposals = [proposal(replicas, value, target, kind)
                         for _, value, target, kind in metric_values(spec, rules, cluster)]
            desired = max(proposals)
            recommendations.append((t, desired))
            up_window = behavior["scaleUp"].get("stabilizationWindowSeconds", 0)
            down_window = behavior["scaleDown"].get("stabilizationWindowSeconds", 300)
            if desired > replicas:
                desired = min(d for when, d in recommendations if t - when <= up_window)
                desired = min(desired, limit(behavior, "scaleUp", replicas, changes, t))
            elif desired < replicas:
                desired = max(d for when, d in recommendations if t - when <= down_window)
                desired = max(desired, limit(behavior, "scaleDown", replicas, changes, t))
            desired = max(spec["minReplicas"], min(spec["maxReplicas"], desired))
            if desired > replicas:
                cluster.pods += [Pod(ready_at=t + STARTUP_S) for _ in range(desired - replicas)]
            elif desired < replicas:
                cluster.pods = cluster.pods[: desired]
            if desired != replicas:
                changes.append((t, desired - replicas))
        replicas_over_time.append(len(cluster.pods))
        loads.append(load)
    return Run(replicas_over_time, loads, changes)


def needed(spec, load):
    """The replicas `load` needs: no pod past the request-rate target by more than the HPA's
    tolerance (below that, by design, no metric asks for more)."""
    per_pod = next(float(m["object"]["target"]["averageValue"]) for m in spec["metrics"]
                   if m["type"] == "Object"
                   and m["object"]["metric"]["name"] == "forecastin_http_requests_per_second")
    pods = math.ceil(load / (per_pod * (1 + TOLERANCE)))
    return max(spec["minReplicas"], min(spec["maxReplicas"], pods))


def reaction_times(directory, run):
    """For each breach (the load needs more pods than there are), how long until the replicas
    reach what it needs."""
    spec = hpa_spec(directory)
    times, breach = [], None
    for t, (load, replicas) in enumerate(zip(run.load, run.replicas)):
        if replicas < needed(spec, load):
            breach = t if breach is None else breach
        elif breach is not None:
            times.append(t - breach)
            breach = None
    if breach is not None:
        times.append(math.inf)
    return times


def reversals(run):
    """How often the replica count changed direction."""
    directions = [d > 0 for _, d in run.changes]
    return sum(1 for a, b in zip(directions, directions[1:]) if a != b)


BASE = 4_000.0


def ramp(t):
    """Growth to ten times the base over ten minutes, then steady."""
    return BASE * (1 + 9 * min(t / 600, 1))


def spike(t):
    """Ten times the base at once for three minutes, then back."""
    return BASE * (10 if 120 <= t < 300 else 1)


def drop(t):
    """Ten times the base, falling to the base at once after five minutes."""
    return BASE * (10 if t < 300 else 1)


def noisy(curve):
    """`curve` with a deterministic ±5 % wobble, as real traffic has."""
    return lambda t: curve(t) * (1 + 0.05 * math.sin(t * 0.7) * math.cos(t * 0.13))


CURVES = {"ramp": ramp, "spike": spike, "drop": drop}


def runs(directory, curve, seconds=1_200):
    """`curve` (with its wobble) under every combination of the sync's and the scrapes' phases
    (every 5 s): the worst case is a breach just after both."""
    for sync_phase in range(0, SYNC_S, 5):
        for scrape_phase in range(0, SCRAPE_S, 5):
            yield simulate(directory, noisy(curve), seconds, sync_phase, scrape_phase)


def main(directory="deploy/k8s"):
    for name, curve in CURVES.items():
        results = list(runs(directory, curve))
        slowest = max(max(reaction_times(directory, run), default=0) for run in results)
        flips = max(reversals(run) for run in results)
        marks = ", ".join(f"{t}s: {r}" for t, r in enumerate(results[0].replicas) if t % 60 == 0)
        print(f"{name}: slowest reaction {slowest} s, at most {flips} reversals over "
              f"{len(results)} phasings; replicas {marks}")


if __name__ == "__main__":
    main(*sys.argv[1:])
