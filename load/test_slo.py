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
