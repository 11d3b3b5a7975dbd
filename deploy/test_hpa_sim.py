"""The origin's autoscaling as deployed (run by ./scripts/test): the HPA spec and the Prometheus
adapter's rules read from deploy/k8s, run by hpa_sim.py on a ramp to ten times the load, a spike
and a drop, under every phasing of the HPA's sync and Prometheus's scrapes."""

import unittest
from pathlib import Path

import hpa_sim

MANIFESTS = Path(__file__).resolve().parent / "k8s"
WITHIN_S = 30
DOWN_AFTER_S = 300


class Autoscaling(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.runs = {name: list(hpa_sim.runs(MANIFESTS, curve))
                    for name, curve in hpa_sim.CURVES.items()}

    def test_scale_up_reaches_the_needed_pods_within_30_s_of_a_breach(self):
        for name, runs in self.runs.items():
            slowest = max(max(hpa_sim.reaction_times(MANIFESTS, run), default=0) for run in runs)
            print(f"{name}: slowest reaction {slowest} s")
            self.assertLessEqual(slowest, WITHIN_S, name)

    def test_no_flapping_and_scale_down_only_after_300_s(self):
        for name, runs in self.runs.items():
            for run in runs:
                self.assertLessEqual(hpa_sim.reversals(run), 1, f"{name}: {run.changes}")
                last_up = None
                for t, change in run.changes:
                    if change > 0:
                        last_up = t
                    elif last_up is not None:
                        self.assertGreaterEqual(t - last_up, DOWN_AFTER_S, f"{name}: {run.changes}")

    def test_the_pods_come_back_down_after_the_load_falls(self):
        spec = hpa_sim.hpa_spec(MANIFESTS)
        for run in self.runs["spike"] + self.runs["drop"]:
            self.assertEqual(max(run.replicas), spec["maxReplicas"])
            self.assertLessEqual(run.replicas[-1], spec["minReplicas"] + 1, run.changes)

    def test_every_metric_falls_as_pods_are_added(self):
        spec, rules = hpa_sim.hpa_spec(MANIFESTS), hpa_sim.adapter_rules(MANIFESTS)
        seen = {}
        for pods in (4, 8):
            cluster = hpa_sim.Cluster(pods=[hpa_sim.Pod(ready_at=-1) for _ in range(pods)])
            for t in range(120):
                cluster.step(t, 20_000, 0)
            for name, value, target, kind in hpa_sim.metric_values(spec, rules, cluster):
                seen.setdefault(name, []).append(hpa_sim.proposal(pods, value, target, kind) / pods)
        self.assertEqual(len(seen), len(spec["metrics"]))
        for name, (fewer, more) in seen.items():
            self.assertLess(more, fewer, f"{name} does not fall as pods are added")

    def test_the_adapter_serves_every_metric_the_hpa_reads(self):
        rules = hpa_sim.adapter_rules(MANIFESTS)
        for metric in hpa_sim.hpa_spec(MANIFESTS)["metrics"]:
            if metric["type"] == "Object":
                self.assertIn(metric["object"]["metric"]["name"], rules)


if __name__ == "__main__":
    unittest.main()
