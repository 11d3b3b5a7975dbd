"""Unit tests of check_metrics.py (run by ./scripts/test)."""

import unittest

from check_metrics import names_in, problems

SCRAPE = """# TYPE http_requests_total counter
http_requests_total{route="/x",method="GET",status="200"} 3
http_request_duration_seconds_bucket{route="/x",method="GET",le="0.001"} 3
http_request_duration_seconds_count{route="/x",method="GET"} 3
db_pool_utilization_ratio{pool="primary"} 0.25
"""
RULES = {"groups": [{"name": "g", "rules": [
    {"record": "forecastin:rps", "expr": "sum(rate(http_requests_total[5m]))"},
    {"alert": "Slow", "expr": 'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{route=~"a|b"}[5m]))) > 1'},
]}]}


def dashboard(*exprs):
    return {"panels": [{"title": "p", "targets": [{"expr": e} for e in exprs]}]}


class CheckMetrics(unittest.TestCase):
    def test_names_skip_functions_labels_strings_and_durations(self):
        self.assertEqual(
            names_in('max by (instance, pool) (rate(a_total{x="y z",le="0.1"}[5m])) > 0.9 and b'),
            {"a_total", "b"})

    def test_known_metrics_recording_rules_and_external_series_pass(self):
        board = dashboard("forecastin:rps", "max(db_pool_utilization_ratio)",
                          "sum(rate(http_request_duration_seconds_count[1m]))", "up",
                          "rate(cloudflare_zone_requests_total[5m])")
        self.assertEqual(problems(SCRAPE, board, RULES), [])

    def test_a_renamed_metric_is_reported_with_where_it_is_used(self):
        found = problems(SCRAPE, dashboard("sum(db_pool_utilisation_ratio)"), RULES)
        self.assertEqual(len(found), 1)
        self.assertIn("db_pool_utilisation_ratio", found[0])
        self.assertIn("dashboard panel 'p'", found[0])

    def test_an_adapter_series_the_origin_does_not_export_is_reported(self):
        adapter = [{"seriesQuery": 'instance_inflight_requests{namespace!=""}',
                    "name": {"as": "forecastin_inflight_requests"}}]
        found = problems(SCRAPE, dashboard(), RULES, adapter)
        self.assertEqual(len(found), 1)
        self.assertIn("adapter metric 'forecastin_inflight_requests'", found[0])


if __name__ == "__main__":
    unittest.main()
