"""Unit tests of check_consistency.py (run by ./scripts/test): the shipped configs agree, and a
change in one place fails with a message naming both."""

import shutil
import tempfile
import unittest
from pathlib import Path

from check_consistency import check

ROOT = Path(__file__).resolve().parent.parent
FILES = ["wrangler.toml", "terraform", "deploy/k8s", "deploy/prometheus",
         "origin/src/config.rs", "origin/src/http/ops.rs", "origin/src/main.rs",
         "origin/Cargo.toml", "Dockerfile", "rust-toolchain.toml"]


class CheckConsistency(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.root = Path(self.dir.name)
        for name in FILES:
            source, target = ROOT / name, self.root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy(source, target)

    def tearDown(self):
        self.dir.cleanup()

    def edit(self, name, old, new):
        path = self.root / name
        text = path.read_text(encoding="utf-8")
        self.assertIn(old, text)
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def test_the_shipped_configs_agree(self):
        self.assertEqual(check(self.root), [])

    def test_moving_the_origin_port_in_one_place_names_both_places(self):
        self.edit("deploy/k8s/origin.yaml", 'LISTEN_ADDR: "0.0.0.0:8080"', 'LISTEN_ADDR: "0.0.0.0:9090"')
        problems = check(self.root)
        container = [p for p in problems if "containerPort http" in p]
        self.assertEqual(len(container), 1, problems)
        self.assertIn("deploy/k8s/origin.yaml LISTEN_ADDR listens on 9090", container[0])
        self.assertIn("containerPort http is 8080", container[0])

    def test_moving_the_admin_port_in_one_place_names_both_places(self):
        self.edit("deploy/k8s/origin.yaml", 'ADMIN_ADDR: "0.0.0.0:9091"', 'ADMIN_ADDR: "0.0.0.0:9092"')
        problems = check(self.root)
        scrape = [p for p in problems if "prometheus.yml" in p]
        self.assertEqual(len(scrape), 1, problems)
        self.assertIn("deploy/k8s/origin.yaml ADMIN_ADDR listens on 9092", scrape[0])
        self.assertIn("deploy/prometheus/prometheus.yml scrapes port 9091", scrape[0])

    def test_exposing_the_admin_port_publicly_fails(self):
        self.edit("deploy/k8s/origin.yaml", "      port: 8080\n      targetPort: http",
                  "      port: 9091\n      targetPort: admin")
        problems = check(self.root)
        self.assertTrue(any("only the public port" in p for p in problems), problems)

    def test_a_probe_on_the_public_port_fails(self):
        self.edit("deploy/k8s/origin.yaml", "httpGet: {path: /readyz, port: admin}",
                  "httpGet: {path: /readyz, port: http}")
        problems = check(self.root)
        self.assertTrue(any("readinessProbe asks port http" in p for p in problems), problems)

    def test_renaming_an_env_var_in_the_origin_fails(self):
        self.edit("origin/src/config.rs", 'env = "REDIS_NAMESPACE"', 'env = "REDIS_PREFIX"')
        problems = check(self.root)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("deploy/k8s/origin.yaml sets ConfigMap forecastin-origin key REDIS_NAMESPACE",
                      problems[0])
        self.assertIn("origin/src/config.rs", problems[0])

    def test_a_probe_of_a_path_the_origin_does_not_route_fails(self):
        self.edit("origin/src/http/ops.rs", 'path = "/readyz"', 'path = "/ready"')
        problems = check(self.root)
        probes = [p for p in problems if "/readyz" in p]
        self.assertTrue(probes, problems)
        self.assertIn("origin/src/http/ops.rs does not route", probes[0])

    def test_the_image_the_pods_run_is_the_one_the_dockerfile_builds(self):
        self.edit("deploy/k8s/origin.yaml", "ghcr.io/forecastin/forecastin-origin:0.1.0",
                  "ghcr.io/forecastin/origin:0.1.0")
        problems = check(self.root)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("runs ghcr.io/forecastin/origin:0.1.0", problems[0])
        self.assertIn("build command tags ['ghcr.io/forecastin/forecastin-origin:0.1.0']",
                      problems[0])

    def test_the_dockerfile_user_ports_toolchain_and_health_check_must_agree(self):
        shipped = (self.root / "Dockerfile").read_text(encoding="utf-8")
        # The build stage's settings are not the image's.
        self.edit("Dockerfile", "WORKDIR /src", "WORKDIR /src\nENV CARGO_TERM_COLOR=never\nUSER 1:1")
        self.assertEqual(check(self.root), [])
        (self.root / "Dockerfile").write_text(shipped, encoding="utf-8")
        for old, new, expected in [
            ("USER 10001:10001", "USER 65532:65532", "runAsUser:runAsGroup 10001:10001"),
            ("EXPOSE 8080 9091", "EXPOSE 8080", "exposes [8080]"),
            ("LISTEN_ADDR=0.0.0.0:8080", "LISTEN_ADDR=0.0.0.0:3000",
             "sets LISTEN_ADDR: 0.0.0.0:8080"),
            ("rust:1.95.0-slim", "rust:1.94.0-slim", "rust-toolchain.toml pins 1.95.0"),
            ("slim-bookworm", "slim-trixie", "another Debian release"),
            ('forecastin-origin", "healthcheck"]', 'origin", "healthcheck"]', "ENTRYPOINT"),
            ("USER 10001:10001\nWORKDIR", "WORKDIR", "runs as USER root"),
            ('"healthcheck"]', '"health"]', "not a subcommand"),
        ]:
            with self.subTest(new):
                self.edit("Dockerfile", old, new)
                problems = check(self.root)
                self.assertEqual(len(problems), 1, problems)
                self.assertIn(expected, problems[0])
                (self.root / "Dockerfile").write_text(shipped, encoding="utf-8")

    def test_the_routed_host_is_terraforms_public_host(self):
        self.edit("wrangler.toml", 'pattern = "forecastin.example/*"', 'pattern = "www.forecastin.example/*"')
        problems = check(self.root)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("terraform/main.tf's public hostname 'forecastin.example'", problems[0])
        self.assertIn("wrangler.toml [env.production]", problems[0])

    def test_the_r2_backend_keeps_what_r2_needs(self):
        self.edit("terraform/r2.s3.tfbackend", "use_path_style              = true",
                  "use_path_style              = false")
        problems = check(self.root)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("use_path_style = False; R2 needs True", problems[0])

    def test_terraform_may_not_own_the_route_too(self):
        self.edit("terraform/main.tf", 'resource "cloudflare_tiered_cache" "zone" {',
                  'resource "cloudflare_workers_route" "edge" {\n  zone_id = var.zone_id\n'
                  '  pattern = "${local.public_host}/*"\n  script  = local.worker_name\n}\n\n'
                  'resource "cloudflare_tiered_cache" "zone" {')
        problems = check(self.root)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("wrangler.toml's routes own it", problems[0])


if __name__ == "__main__":
    unittest.main()
