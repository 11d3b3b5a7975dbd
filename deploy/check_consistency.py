"""Checks that the deploy configs agree with each other and with the code, offline.

    python deploy/check_consistency.py [repo root]

Reads wrangler.toml, the Terraform (python-hcl2), the Kubernetes manifests, the Prometheus
config, the origin's Dockerfile and the origin's own config (the `env = "…"` names of
origin/src/config.rs, the routes of origin/src/http/ops.rs, its version and subcommands), and
asserts that the Worker's names and routes, the origin's hostname, environment variable names,
ports, image, user and toolchain agree. Each disagreement is printed naming both places;
the exit status is 1 if there is any.
"""

import re
import sys
import tomllib
from pathlib import Path

import hcl2
import yaml

ENVIRONMENTS = ("staging", "production")


class Repo:
    def __init__(self, root):
        self.root = Path(root)
        self.problems = []

    def text(self, path):
        return (self.root / path).read_text(encoding="utf-8")

    def expect(self, ok, message):
        if not ok:
            self.problems.append(message)

    # --- sources -------------------------------------------------------------------------

    def wrangler(self):
        return tomllib.loads(self.text("wrangler.toml"))

    def terraform(self):
        merged = {}
        for path in sorted((self.root / "terraform").glob("*.tf")):
            with open(path, encoding="utf-8") as file:
                for key, blocks in hcl2.load(file).items():
                    merged.setdefault(key, []).extend(plain(blocks))
        return merged

    def r2_backend(self):
        with open(self.root / "terraform/r2.s3.tfbackend", encoding="utf-8") as file:
            return plain(hcl2.load(file))

    def manifests(self):
        documents = []
        for path in sorted((self.root / "deploy/k8s").glob("*.yaml")):
            for document in yaml.safe_load_all(self.text(path.relative_to(self.root))):
                if document:
                    documents.append((f"deploy/k8s/{path.name}", document))
        return documents

    def origin_env_names(self):
        return set(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', self.text("origin/src/config.rs")))

    def origin_routes(self):
        # Each handler's `#[utoipa::path(method, path = "…", …)]`, which routes it.
        return set(re.findall(r'#\[utoipa::path\(\s*\w+,\s*path = "([^"]+)"',
                              self.text("origin/src/http/ops.rs")))

    def origin_subcommands(self):
        """The subcommands of origin/src/main.rs, as clap names them (kebab case)."""
        body = re.search(r"enum Command \{(.*?)\n\}", self.text("origin/src/main.rs"), re.S)
        names = re.findall(r"^    ([A-Z]\w*)", body.group(1), re.M) if body else []
        return {re.sub(r"(?<!^)([A-Z])", r"-\1", name).lower() for name in names}

    def dockerfile(self):
        """The Dockerfile's instructions, continuation lines joined, as (keyword, arguments)."""
        text = re.sub(r"\\\n\s*", " ", self.text("Dockerfile"))
        return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
                for line in text.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]


def plain(value):
    """python-hcl2's output without its bookkeeping: attribute values come as one-element
    lists, and blocks carry `__start_line__`/`__end_line__`."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        items = [plain(v) for v in value]
        return items[0] if len(items) == 1 and not isinstance(items[0], dict) else items
    return value


def find(documents, kind, name):
    for where, document in documents:
        if document.get("kind") == kind and document["metadata"]["name"] == name:
            return where, document
    raise SystemExit(f"deploy/k8s: no {kind} named {name}")


def terraform_value(expression, environment, variables):
    """Evaluates the few expression forms the Terraform uses: string templates over
    var.environment and var.zone_name, and `var.environment == "production" ? a : b`."""
    expression = expression.strip()
    if expression.startswith("${") and expression.endswith("}") and "?" in expression:
        match = re.fullmatch(
            r'\$\{var\.environment == "production" \? (.+?) : (.+)\}', expression)
        if not match:
            raise SystemExit(f"terraform: cannot evaluate {expression}")
        branch = match.group(1) if environment == "production" else match.group(2)
        branch = branch.strip()
        if branch.startswith("var."):
            return variables[branch[4:]]
        return terraform_value(branch.strip('"'), environment, variables)
    values = {**variables, "environment": environment}
    return re.sub(r"\$\{var\.(\w+)\}", lambda m: str(values[m.group(1)]), expression)


# What the S3 backend needs to keep its state in Cloudflare R2 (no AWS region, account id,
# metadata API or checksums; addressed by path).
R2_BACKEND = {"region": "auto", "skip_credentials_validation": True,
              "skip_region_validation": True, "skip_requesting_account_id": True,
              "skip_metadata_api_check": True, "skip_s3_checksum": True, "use_path_style": True}


def check(root):
    repo = Repo(root)
    wrangler = repo.wrangler()
    terraform = repo.terraform()
    backend = repo.r2_backend()
    for key, wanted in R2_BACKEND.items():
        repo.expect(backend.get(key) == wanted,
                    f"State backend: terraform/r2.s3.tfbackend sets {key} = "
                    f"{backend.get(key)!r}; R2 needs {wanted!r}")
    endpoints = backend.get("endpoints") or [{}]  # an object: python-hcl2 lists it
    endpoint = endpoints[0].get("s3", "") if isinstance(endpoints, list) else ""
    repo.expect(endpoint.endswith(".r2.cloudflarestorage.com"),
                f"State backend: terraform/r2.s3.tfbackend endpoints.s3 = {endpoint!r} is not "
                "an R2 account endpoint")
    documents = repo.manifests()
    variables = {name: spec.get("default") for block in terraform["variable"]
                 for name, spec in block.items()}
    locals_ = {k: v for block in terraform["locals"] for k, v in block.items()}
    resources = {}
    for block in terraform["resource"]:
        for kind, named in block.items():
            for name, body in named.items():
                resources[(kind, name)] = body

    # The Worker: names, routes and the origin it forwards to, per environment. wrangler.toml
    # owns the route (a second owner in Terraform would fight each deploy over it).
    repo.expect(not any(kind == "cloudflare_workers_route" for kind, _ in resources),
                "Worker route: terraform/main.tf defines a cloudflare_workers_route, but "
                "wrangler.toml's routes own it")
    for environment in ENVIRONMENTS:
        section = wrangler["env"][environment]
        worker = terraform_value(locals_["worker_name"], environment, variables)
        repo.expect(section["name"] == worker,
                    f"Worker name: wrangler.toml [env.{environment}] name = {section['name']!r} "
                    f"but terraform/main.tf local.worker_name gives {worker!r}")
        host = terraform_value(locals_["public_host"], environment, variables)
        patterns = [r["pattern"] for r in section.get("routes", [])]
        repo.expect(f"{host}/*" in patterns,
                    f"Worker route: terraform/main.tf's public hostname {host!r} "
                    f"({environment}, local.public_host) is not routed by wrangler.toml "
                    f"[env.{environment}] routes {patterns}")
        origin_host = terraform_value(locals_["origin_host"], environment, variables)
        origin_url = section["vars"]["ORIGIN_URL"]
        repo.expect(origin_url == f"https://{origin_host}",
                    f"Origin hostname: wrangler.toml [env.{environment}.vars] ORIGIN_URL = "
                    f"{origin_url!r} but terraform/main.tf DNS record "
                    f"cloudflare_dns_record.origin is {origin_host!r}")

    # The origin's environment: every name the manifests set is one the origin reads.
    known = repo.origin_env_names()
    config_where, config = find(documents, "ConfigMap", "forecastin-origin")
    deploy_where, deployment = find(documents, "Deployment", "forecastin-origin")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    names = [(config_where, f"ConfigMap forecastin-origin key {key}", key)
             for key in config["data"] if key != "RUST_LOG"]
    names += [(deploy_where, f"Deployment forecastin-origin env {env['name']}", env["name"])
              for env in container.get("env", [])]
    for where, what, name in names:
        repo.expect(name in known,
                    f"Environment: {where} sets {what}, but origin/src/config.rs reads no "
                    f"`env = \"{name}\"`")

    # Ports: where the origin listens, the container port, the Services, Prometheus.
    listen_port = int(config["data"]["LISTEN_ADDR"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    repo.expect(ports.get("http") == listen_port,
                f"Origin port: {config_where} LISTEN_ADDR listens on {listen_port} but "
                f"{deploy_where} containerPort http is {ports.get('http')}")
    # Admin API, metrics and probes: on ADMIN_ADDR when set (kept off the public port), else
    # on LISTEN_ADDR.
    admin_addr = config["data"].get("ADMIN_ADDR")
    metrics_port = int(admin_addr.rsplit(":", 1)[1]) if admin_addr else listen_port
    metrics_source = "ADMIN_ADDR" if admin_addr else "LISTEN_ADDR"
    admin_port_name = "admin" if admin_addr else "http"
    if admin_addr:
        repo.expect(ports.get("admin") == metrics_port,
                    f"Admin port: {config_where} ADMIN_ADDR listens on {metrics_port} but "
                    f"{deploy_where} containerPort admin is {ports.get('admin')}")
    headless_where, headless = find(documents, "Service", "forecastin-origin-headless")
    service_port = headless["spec"]["ports"][0]["port"]
    repo.expect(service_port == metrics_port,
                f"Metrics port: {config_where} {metrics_source} listens on {metrics_port} but "
                f"{headless_where} Service forecastin-origin-headless port is {service_port}")
    # The public Service and the Ingress expose the public port only.
    public_where, public = find(documents, "Service", "forecastin-origin")
    exposed = {p["targetPort"] for p in public["spec"]["ports"]}
    repo.expect(exposed == {"http"},
                f"Exposure: {public_where} Service forecastin-origin exposes {sorted(exposed)}; "
                f"only the public port `http` may leave the cluster")
    prometheus = yaml.safe_load(repo.text("deploy/prometheus/prometheus.yml"))
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "forecastin-origin")
    discovery = job["dns_sd_configs"][0]
    repo.expect(discovery["port"] == metrics_port,
                f"Metrics port: {config_where} {metrics_source} listens on {metrics_port} but "
                f"deploy/prometheus/prometheus.yml scrapes port {discovery['port']}")
    namespace = headless["metadata"]["namespace"]
    expected_name = f"{headless['metadata']['name']}.{namespace}.svc.cluster.local"
    repo.expect(expected_name in discovery["names"],
                f"Prometheus discovery: deploy/prometheus/prometheus.yml resolves "
                f"{discovery['names']} but {headless_where} defines {expected_name}")
    policy_where, policy = find(documents, "NetworkPolicy", "forecastin-origin")
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports", [])}
    for source, port in (("LISTEN_ADDR", listen_port), (metrics_source, metrics_port)):
        repo.expect(port in allowed,
                    f"Origin port: {config_where} {source} listens on {port} but "
                    f"{policy_where} NetworkPolicy forecastin-origin admits {sorted(allowed)}")

    # Probes hit routes the origin serves.
    routes = repo.origin_routes()
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        request = container.get(probe, {}).get("httpGet", {})
        path = request.get("path")
        if path:
            repo.expect(path in routes,
                        f"Probe: {deploy_where} {probe} asks {path}, which "
                        f"origin/src/http/ops.rs does not route ({sorted(routes)})")
            repo.expect(request.get("port") == admin_port_name,
                        f"Probe: {deploy_where} {probe} asks port {request.get('port')}, but "
                        f"the probes are served on `{admin_port_name}` ({metrics_source})")

    # PgBouncer: its listen port, container port, Service and the origin's egress agree.
    ini_where, ini = find(documents, "ConfigMap", "pgbouncer")
    bouncer_port = int(re.search(r"listen_port\s*=\s*(\d+)", ini["data"]["pgbouncer.ini"]).group(1))
    bouncer_deploy_where, bouncer = find(documents, "Deployment", "pgbouncer")
    bouncer_container = bouncer["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    repo.expect(bouncer_container["containerPort"] == bouncer_port,
                f"PgBouncer port: {ini_where} listen_port is {bouncer_port} but "
                f"{bouncer_deploy_where} containerPort is {bouncer_container['containerPort']}")
    egress = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
    repo.expect(bouncer_port in egress,
                f"PgBouncer port: {ini_where} listen_port is {bouncer_port} but {policy_where} "
                f"lets the origin reach {sorted(egress)}")

    # The Cloudflare purge provider has its token.
    providers = config["data"].get("PURGE_PROVIDERS", "")
    env_names = {env["name"] for env in container.get("env", [])}
    if "cloudflare" in providers:
        for name in ("CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ZONE_ID"):
            repo.expect(name in env_names,
                        f"Purge: {config_where} PURGE_PROVIDERS includes cloudflare but "
                        f"{deploy_where} sets no {name}")
        repo.expect(("cloudflare_api_token", "purge") in resources,
                    "Purge: the origin purges Cloudflare but terraform/main.tf creates no "
                    "cloudflare_api_token.purge")
    check_image(repo, (config_where, config), (deploy_where, deployment), known)
    return repo.problems


def check_image(repo, configmap, deployment, known):
    """The Dockerfile against the manifests and the code: the image the manifests run is the
    one its build command tags, at the origin's version; the user, ports and environment match
    the pod's; it builds with the pinned toolchain; its health check runs a real subcommand."""
    config_where, config = configmap
    deploy_where, deploy = deployment
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    instructions = repo.dockerfile()
    stages = [i for i, (key, _) in enumerate(instructions) if key == "FROM"]
    # What the image is: its last stage (the build stages only make the binary).
    runtime = instructions[stages[-1]:] if stages else instructions
    of = lambda keyword: [args for key, args in runtime if key == keyword]

    image = container["image"].split("@", 1)[0]
    tags = re.findall(r"docker build -t (\S+) \.", repo.text("Dockerfile"))
    repo.expect(image in tags,
                f"Image: {deploy_where} runs {image} but the Dockerfile's build command tags "
                f"{tags}")
    version = re.search(r'^version\s*=\s*"([^"]+)"', repo.text("origin/Cargo.toml"), re.M)
    repo.expect(version and image.endswith(f":{version.group(1)}"),
                f"Image: {deploy_where} runs {image} but origin/Cargo.toml is version "
                f"{version.group(1) if version else None}")

    user = of("USER")[-1] if of("USER") else "root"
    security = pod.get("securityContext", {})
    pod_user = f"{security.get('runAsUser')}:{security.get('runAsGroup')}"
    repo.expect(user == pod_user,
                f"User: the Dockerfile runs as USER {user} but {deploy_where} runs as "
                f"runAsUser:runAsGroup {pod_user}")

    env = {}
    for args in of("ENV"):
        env.update(re.findall(r"(\w+)=(\S+)", args))
    for name, value in env.items():
        repo.expect(name in known,
                    f"Environment: the Dockerfile sets ENV {name}, but origin/src/config.rs "
                    f"reads no `env = \"{name}\"`")
        if name in config["data"]:
            repo.expect(config["data"][name] == value,
                        f"Environment: the Dockerfile sets {name}={value} but {config_where} "
                        f"sets {name}: {config['data'][name]}")
    exposed = {int(port.split("/")[0]) for args in of("EXPOSE") for port in args.split()}
    for port in container["ports"]:
        repo.expect(port["containerPort"] in exposed,
                    f"Ports: {deploy_where} containerPort {port['name']} is "
                    f"{port['containerPort']} but the Dockerfile exposes {sorted(exposed)}")

    channel = re.search(r'^channel\s*=\s*"([^"]+)"', repo.text("rust-toolchain.toml"), re.M)
    froms = [args.split()[0] for key, args in instructions if key == "FROM"]
    builders = [image for image in froms if "/rust:" in image or image.startswith("rust:")]
    repo.expect(channel and any(f"rust:{channel.group(1)}-" in image for image in builders),
                f"Toolchain: rust-toolchain.toml pins {channel.group(1) if channel else None} "
                f"but the Dockerfile builds FROM {builders}")
    # The binary links the build image's glibc: the runtime must be the same Debian release.
    releases = {"bookworm": "debian12", "trixie": "debian13"}
    for builder in builders:
        release = next((r for r in releases if r in builder), None)
        repo.expect(release is not None and releases[release] in froms[-1],
                    f"Toolchain: the Dockerfile builds on {builder} but runs on {froms[-1]}, "
                    f"another Debian release")

    health = of("HEALTHCHECK")
    command = re.findall(r'"([^"]+)"', health[-1].split("CMD", 1)[-1]) if health else []
    entrypoint = re.findall(r'"([^"]+)"', of("ENTRYPOINT")[-1]) if of("ENTRYPOINT") else []
    subcommands = repo.origin_subcommands()
    repo.expect(len(command) >= 2 and command[:1] == entrypoint[:1]
                and command[1] in subcommands,
                f"Health check: the Dockerfile's HEALTHCHECK runs {command}, not a subcommand "
                f"of origin/src/main.rs ({sorted(subcommands)}) run by its ENTRYPOINT "
                f"{entrypoint}")


def main(root="."):
    problems = check(root)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
