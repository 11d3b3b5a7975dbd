"""Unit tests of the SLO evaluation (run by ./scripts/test)."""

import os
import tempfile
import unittest

import slo

REPORT = {
    "overall": {"error_rate": 0.0},
    "edge": {"hit_ratio": 0.98},
    "operations": {"ancestors": {"p95_ms": 12.0}},
    "websocket": {"p95_ms": None},
}


class Evaluate(unittest.TestCase):
    def verdicts(self, slos):
        return {v["name"]: v["ok"] for v in slo.evaluate(REPORT, slos)}

    def test_max_and_min_targets(self):
        verdicts = self.verdicts([
            {"name": "errors", "metric": "overall.error_rate", "max": 0},
            {"name": "hits", "metric": "edge.hit_ratio", "min": 0.99},
            {"name": "p95", "metric": "operations.ancestors.p95_ms", "max": 50},
        ])
        self.assertEqual(verdicts, {"errors": True, "hits": False, "p95": True})

    def test_an_unmeasured_metric_is_a_violation(self):
        verdicts = self.verdicts([
            {"name": "ws", "metric": "websocket.p95_ms", "max": 200},
            {"name": "typo", "metric": "edge.hit_rate", "min": 0.5},
        ])
        self.assertEqual(verdicts, {"ws": False, "typo": False})

    def test_files_must_name_a_metric_and_one_bound(self):
        for body in ("slos: []", "slos:\n  - {name: a, metric: b}",
                     "slos:\n  - {name: a, metric: b, max: 1, min: 0}", "x: 1"):
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
                file.write(body)
            try:
                with self.assertRaises(ValueError, msg=body):
                    slo.load(file.name)
            finally:
                os.unlink(file.name)

    def test_the_shipped_slo_files_load(self):
        here = os.path.dirname(os.path.abspath(__file__))
        for name in ("slo.yaml", "slo-smoke.yaml", "slo-origin.yaml", "slo-faults.yaml"):
            self.assertTrue(slo.load(os.path.join(here, name)))


if __name__ == "__main__":
    unittest.main()


class WorkerTimes(unittest.TestCase):
    def test_percentiles_by_worker_and_the_hit_ratio(self):
        times = slo.worker_times({"edge hit": [0] * 90 + [3] * 10, "js hit": [0] * 100,
                                  "edge miss": [7, 9]})
        self.assertEqual(times["edge_hit"], {"count": 100, "p50_ms": 0, "p95_ms": 3, "p99_ms": 3})
        self.assertEqual(times["edge_miss"]["count"], 2)
        self.assertEqual(times["js_miss"], {"count": 0, "p50_ms": None, "p95_ms": None,
                                            "p99_ms": None})
        # The JavaScript Worker's p95 of 0 ms counts as 1 ms.
        self.assertEqual(times["hit_p95_ratio"], 3.0)

    def test_no_ratio_without_both_workers(self):
        self.assertIsNone(slo.worker_times({"edge hit": [1]})["hit_p95_ratio"])
