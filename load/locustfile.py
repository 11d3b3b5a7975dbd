"""The analyst load test: Locust users that browse Forecastin as analysts do.

- `Analyst` sessions browse top-down (world -> region -> country -> subdivision), open entity
  pages with their breadcrumbs (ancestors), drill down from an entity into its children (the
  click that likely-next preloading anticipates), page through descendants and search by name,
  with entities drawn from a Zipf distribution (`--zipf-exponent`) and think times between
  steps.
- An `Editor` makes admin edits (renames, and every third edit a move) at
  `--edits-per-minute`, which purge the CDN for real while the reads run; after each it waits
  for the purge to be delivered and reads the entity through the edge: an older version there
  is a stale read after a completed purge.
- `StreamWatcher` users hold a websocket open on an origin and time each change event from
  the write's commit to its arrival.
- `Attacker` users (`--attackers N`, `HOSTILE=1 ./scripts/load`) send what an attacker of a
  public CDN-fronted API sends, beside the analysts: cursors of 11 KB, padded parameters,
  control bytes, made-up ids, a flood of junk searches, `Upgrade` headers on pages, idle
  websockets, and requests straight at the origin without the edge's credential. Each is
  expected to be answered with a 4xx or from the edge's cache; the report's `hostile` section
  counts what was not, the share of requests they made, and how much the origin's memory and
  Redis's grew over the run.
- A purge storm (`--storm-at`): the hottest sub-region (one whose children are countries, the
  most visited pages after the regions) is moved under another region and back,
  `--storm-moves` times, which purges the breadcrumbs of its whole subtree, both regions' lists
  and, the subtree being large, every search. The report's `storm` section gives the
  edge hit ratio and the origin's database reads per second before, during and after it.

Before the measured run the catalogue of entities is read from the API and the edge is warmed
with one pass over the hottest pages (`--warm-entities`). When the run stops, `slo_report.json`
is written (see `slo.py`) and the process exits non-zero if an SLO is violated, naming it.

Run it with `./scripts/load` (the local stack) or `locust -f load/locustfile.py --host <edge>`.
"""

import base64
import collections
import itertools
import json
import random
import re
import subprocess
import threading
import time

import gevent
import gevent.pool
import websocket
from locust import HttpUser, User, between, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner
from locust.util.timespan import parse_timespan

# After locust, which monkey-patches the standard library for gevent before requests loads it.
import requests  # noqa: E402

import mix
import slo

API = mix.API


@events.init_command_line_parser.add_listener
def _options(parser):
    parser.add_argument("--origin-url", default="http://127.0.0.1:8080",
                        help="an origin instance: its /metrics, admin API and /ws (empty: "
                             "none; the report then has no origin section)")
    parser.add_argument("--admin-token", default="", env_var="ADMIN_TOKEN",
                        help="bearer token of the admin API (edits are skipped without it)")
    parser.add_argument("--zipf-exponent", type=float, default=1.1)
    parser.add_argument("--edits-per-minute", type=float, default=12,
                        help="admin edits while the analysts read (0: none)")
    parser.add_argument("--think-min", type=float, default=0.2)
    parser.add_argument("--think-max", type=float, default=1.0)
    parser.add_argument("--catalogue-size", type=int, default=-1,
                        help="analysts browse the N most popular entities (-1: all)")
    parser.add_argument("--warm-entities", type=int, default=-1,
                        help="hottest entities whose pages are fetched once before the run "
                             "(-1: all)")
    parser.add_argument("--storm-at", type=float, default=0,
                        help="seconds into the measured run to start a purge storm (0: none)")
    parser.add_argument("--storm-moves", type=int, default=6)
    parser.add_argument("--storm-interval", type=float, default=2.0)
    parser.add_argument("--attackers", type=int, default=0,
                        help="Attacker users beside the analysts (0: none)")
    parser.add_argument("--origin-pid", type=int, default=0,
                        help="the origin's process, whose memory the hostile report follows")
    parser.add_argument("--stream-url", default="",
                        help="where StreamWatchers open /ws (default: --origin-url)")
    parser.add_argument("--measure", default="3m",
                        help="how long the measured run lasts, after the warm-up (e.g. 90s, 5m)")
    parser.add_argument("--js-worker-url", default="",
                        help="the minimal JavaScript Worker (bench/js-cache-worker, TIMING set) "
                             "that analysts read a share of their pages from too, to set its "
                             "Server-Timing beside the edge's (empty: none)")
    parser.add_argument("--js-share", type=float, default=0.1,
                        help="the share of analysts' reads repeated at --js-worker-url")
    parser.add_argument("--slo-file", default="load/slo.yaml")
    parser.add_argument("--report", default="slo_report.json")


class Run:
    """What the run measures beside Locust's own request statistics."""

    # What the users measure, in whichever process they run: a worker sends its tallies to
    # the master with each stats report (`drain`), the master adds them up (`absorb`).
    # - edge_by_second: per second of the run, the edge's [hits, misses, stale hits];
    # - edge_ms_by_second: per second, how long each read through the edge took, in ms;
    # - edge_missed: every edge miss, [second, operation, path, why the edge forwarded it];
    # - purges: [when it was delivered, ms from the write];
    # - hostile: attackers' requests, by how each was answered;
    # - worker_ms: the Workers' own time (Server-Timing `edge;dur`), by "edge hit", "edge miss",
    #   "js hit", "js miss".
    TALLIES = {"edge_hits": int, "edge_misses": int, "edge_by_operation": dict,
               "edge_by_second": dict, "edge_ms_by_second": dict, "edge_missed": list,
               "purges": list, "undelivered_purges": int, "stale_reads": int, "ws_ms": list,
               "hostile": collections.Counter, "hostile_sockets": int, "worker_ms": dict}

    def __init__(self):
        self.lock = threading.Lock()
        self.catalogue = None  # a mix.Catalogue, read before the run
        for name, kind in self.TALLIES.items():
            setattr(self, name, kind())
        self.origin_before = {}
        self.edits = itertools.count()
        self.measured = None  # (start, end) of the measured run, after the warm-up
        self.origin_samples = []  # (time, the origin's counters), once a second
        self.storm = None  # (started, ended) once the storm ran
        self.hostile_seen = set()  # the URLs attackers asked for, in this process
        self.memory_before = None

    def drain(self):
        """The tallies since the last call, reset (msgpack-safe: string keys)."""
        with self.lock:
            data = {name: getattr(self, name) for name in self.TALLIES}
            for name, kind in self.TALLIES.items():
                setattr(self, name, kind())
        for name in ("edge_by_second", "edge_ms_by_second"):
            data[name] = {str(second): value for second, value in data[name].items()}
        data["hostile"] = dict(data["hostile"])
        return data

    def absorb(self, data):
        """Adds a worker's tallies."""
        with self.lock:
            for name, value in data.items():
                current = getattr(self, name)
                if name == "hostile":
                    current.update(value)
                elif isinstance(current, int):
                    setattr(self, name, current + value)
                elif isinstance(current, list):
                    current.extend(value)
                elif name == "edge_by_operation":
                    for operation, counts in value.items():
                        mine = current.setdefault(operation, {"hits": 0, "misses": 0})
                        for key in mine:
                            mine[key] += counts[key]
                elif name == "worker_ms":
                    for kind, values in value.items():
                        current.setdefault(kind, []).extend(values)
                elif name == "edge_by_second":
                    for second, counts in value.items():
                        mine = current.setdefault(int(second), [0, 0, 0])
                        for index, count in enumerate(counts):
                            mine[index] += count
                else:
                    for second, values in value.items():
                        current.setdefault(int(second), []).extend(values)



RUN = Run()


def _get_json(session, url):
    response = session.get(url, timeout=10)
    response.raise_for_status()
    return response.json()


ROUTE_BUCKET = re.compile(
    r'^http_request_duration_seconds_bucket\{route="/api/v1/entities/\{id\}(/?[a-z]*)",'
    r'method="GET",le="([^"]+)"\} (\S+)$')


def origin_counters(origin_url):
    """The origin's cache counters (summed over label sets) and the buckets of its latency
    histogram per entity route (`(route, le)` -> count), from its /metrics."""
    wanted = ("l1_cache_hits_total", "l1_cache_misses_total", "l2_cache_hits_total",
              "l2_cache_misses_total", "db_public_reads_total",
              'origin_renders_total{cause="request"}', 'origin_renders_total{cause="preload"}',
              "websocket_clients_connected")
    counters = dict.fromkeys(wanted, 0.0)
    for line in requests.get(f"{origin_url}/metrics", timeout=10).text.splitlines():
        series = line.rsplit(" ", 1)[0]
        name = series if series in counters else line.split("{")[0].split(" ")[0]
        if name in counters:
            counters[name] += float(line.rsplit(" ", 1)[1])
        elif match := ROUTE_BUCKET.match(line):
            route = match.group(1).lstrip("/") or "entity"
            counters[(route, match.group(2))] = float(match.group(3))
    return counters


def origin_latency(delta):
    """Per entity route, the origin's own p50/p95/p99 over the run, as the upper bound of the
    histogram bucket the quantile falls in (server side: no client or network time)."""
    routes = {}
    for (route, le), count in ((k, v) for k, v in delta.items() if isinstance(k, tuple)):
        routes.setdefault(route, []).append((float(le), count))
    latency = {}
    for route, buckets in routes.items():
        buckets.sort()
        total = buckets[-1][1]
        if total <= 0:
            continue
        def quantile(fraction):
            bound = next(le for le, count in buckets if count >= fraction * total)
            return None if bound == float("inf") else round(bound * 1000, 3)
        latency[route] = {"count": int(total), "p50_ms_at_most": quantile(0.50),
                          "p95_ms_at_most": quantile(0.95), "p99_ms_at_most": quantile(0.99)}
    return latency


@events.test_start.add_listener
def _prepare(environment, **_):
    """Reads the catalogue (breadth first from the root, so popularity follows the tree:
    regions and countries are the hottest pages), hands it to the workers, warms the edge, and
    starts the measured run's clock (`--measure`): Locust's own `--run-time` would count the
    warm-up too. On the master, or the only process; the users spawn when it returns."""
    if isinstance(environment.runner, WorkerRunner):
        return
    options, host = environment.parsed_options, environment.host
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))

    def children_of(parent):
        url = f"{host}{API}/entities/{parent}/children?limit=500"
        while url:
            page = _get_json(session, url)
            for item in page["items"]:
                yield item["id"], item["name"], item["kind"]
            cursor = page.get("next_cursor")
            url = f"{host}{API}/entities/{parent}/children?limit=500&cursor={cursor}" \
                if cursor else None
    RUN.catalogue = mix.Catalogue(*mix.breadth_first(children_of, limit=options.catalogue_size),
                                  options.zipf_exponent)
    catalogue = RUN.catalogue.entities
    if isinstance(environment.runner, MasterRunner):
        environment.runner.send_message("catalogue", {
            "order": catalogue, "by_parent": RUN.catalogue.by_parent,
            "names": RUN.catalogue.names, "kinds": RUN.catalogue.kinds,
            "exponent": options.zipf_exponent})
    # A CDN in service has seen the popular pages before: warm the edge with them, 32 at a time.
    paths = [mix.path(page) for page in mix.warm_pages(RUN.catalogue, options.warm_entities)]
    started = time.time()
    gevent.pool.Pool(32).map(lambda path: session.get(f"{host}{path}", timeout=30), paths)
    print(f"catalogue of {len(catalogue)} entities; warmed {len(paths)} pages in "
          f"{time.time() - started:.1f} s")
    if options.origin_url:
        RUN.origin_before = origin_counters(options.origin_url)
        gevent.spawn(_sample_origin, options.origin_url)
    RUN.memory_before = memory(options.origin_pid)
    if options.storm_at > 0:
        gevent.spawn_later(options.storm_at, _storm, host, options)
    RUN.measured = (time.time(), None)
    gevent.spawn_later(parse_timespan(options.measure), environment.runner.quit)


@events.init.add_listener
def _distribute(environment, **_):
    """Workers take the master's catalogue and send their tallies with each stats report."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        def take_catalogue(msg, **_):
            data = msg.data
            RUN.catalogue = mix.Catalogue(data["order"], data["by_parent"], data["names"],
                                          data["kinds"], data["exponent"])
        runner.register_message("catalogue", take_catalogue)
        environment.events.report_to_master.add_listener(
            lambda data, **_: data.update(forecastin=RUN.drain()))
    elif isinstance(runner, MasterRunner):
        environment.events.worker_report.add_listener(
            lambda data, **_: RUN.absorb(data["forecastin"]) if "forecastin" in data else None)


def memory(origin_pid):
    """The origin's resident memory and Redis's `used_memory`, in MB (None: not known)."""
    rss = None
    if origin_pid:
        try:
            with open(f"/proc/{origin_pid}/status", encoding="utf-8") as status:
                kb = next(line.split()[1] for line in status if line.startswith("VmRSS:"))
            rss = int(kb) / 1024
        except (OSError, StopIteration):
            pass
    redis = None
    try:
        info = subprocess.run(["redis-cli", "-p", "6379", "info", "memory"], check=True,
                              capture_output=True, text=True, timeout=10).stdout
        used = next(line.split(":")[1] for line in info.splitlines()
                    if line.startswith("used_memory:"))
        redis = int(used) / (1024 * 1024)
    except (OSError, subprocess.SubprocessError, StopIteration, ValueError):
        pass
    return {"origin_rss_mb": rss, "redis_used_mb": redis}


def _sample_origin(origin_url):
    """The origin's counters once a second, for the storm's per-second rates."""
    while True:
        try:
            RUN.origin_samples.append((time.time(), origin_counters(origin_url)))
        except requests.RequestException:
            pass
        gevent.sleep(1)


def _storm(host, options):
    """Moves the hottest sub-region under another region and back, each move followed, as the
    Editor's are, by a read through the edge once its purge is delivered."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {options.admin_token}", "If-Match": "*"}
    origin = options.origin_url
    catalogue = RUN.catalogue
    by_parent, kinds = catalogue.by_parent, catalogue.kinds
    regions = [r for r in catalogue.entities if kinds.get(r) == "region"]
    subtree = next(r for r in regions
                   if by_parent.get(r) and kinds.get(by_parent[r][0]) == "country")
    home = next(p for p, children in by_parent.items() if subtree in children)
    away = next(r for r in by_parent.get("world", []) if r != home)
    print(f"purge storm: {subtree} moves between {home} and {away}, "
          f"{options.storm_moves} times")
    started = time.time()
    for move in range(options.storm_moves):
        parent = away if move % 2 == 0 else home
        response = session.patch(f"{origin}/admin/v1/entities/{subtree}", headers=headers,
                                 json={"parent_id": parent}, timeout=30)
        response.raise_for_status()
        version = response.json()["version"]
        purge_id = response.headers.get("forecastin-purge-id")
        gevent.spawn(_check_after_purge, session, host, origin, headers, subtree, version,
                     purge_id)
        gevent.sleep(options.storm_interval)
    RUN.storm = (started, time.time())


def _check_after_purge(session, host, origin, headers, entity, version, purge_id):
    follow_purge(
        lambda: session.get(f"{origin}/admin/v1/purge/{purge_id}", headers=headers,
                            timeout=10).json(),
        lambda: session.get(f"{host}{API}/entities/{entity}", timeout=10).json(),
        version)


def follow_purge(purge_status, read_entity, version):
    """Waits for a purge to be delivered, then reads the entity through the edge: an older
    version there is a stale read after a completed purge."""
    deadline = time.time() + 30
    while time.time() < deadline:
        status = purge_status()
        deliveries = status.get("deliveries", [])
        # No deliveries: no CDN provider is configured (a run straight at an origin), and
        # the origin's own tiers were purged before the write answered.
        if all(d["status"] != "pending" for d in deliveries):
            delivered = max((d.get("delivered_at_ms") or 0 for d in deliveries),
                            default=status["created_at_ms"])
            with RUN.lock:
                RUN.purges.append([delivered / 1000, delivered - status["created_at_ms"]])
            served = read_entity()
            if served is not None and served["version"] < version:
                with RUN.lock:
                    RUN.stale_reads += 1
            return
        gevent.sleep(0.05)
    with RUN.lock:
        RUN.undelivered_purges += 1


@events.init.add_listener
def _choose_users(environment, **_):
    """Attackers take part only when asked for, with their own fixed count."""
    attackers = environment.parsed_options.attackers
    if attackers > 0:
        Attacker.fixed_count = attackers
    else:
        environment.user_classes = [user for user in environment.user_classes
                                    if user is not Attacker]


@events.request.add_listener
def _cache_status(request_type, name, response_time, exception, response=None, **_):
    if request_type != "GET" or exception is not None or response is None:
        return
    if name.startswith("hostile"):
        return
    status = response.headers.get("Cache-Status", "")
    if not status or name.startswith("admin") or name == "check after purge":
        return
    hit = "; hit" in status
    worker = "js" if name == JS_WORKER else "edge"
    timing = re.search(r"(?:^|,)\s*edge;dur=(\d+)", response.headers.get("Server-Timing", ""))
    if timing:
        with RUN.lock:
            RUN.worker_ms.setdefault(f"{worker} {'hit' if hit else 'miss'}", []).append(
                int(timing.group(1)))
    if worker == "js":
        return
    now = int(time.time())
    with RUN.lock:
        if hit:
            RUN.edge_hits += 1
        else:
            RUN.edge_misses += 1
        second = RUN.edge_by_second.setdefault(now, [0, 0, 0])
        second[0 if hit else 1] += 1
        if "detail=stale-while-revalidate" in status:
            second[2] += 1
        RUN.edge_ms_by_second.setdefault(now, []).append(response_time)
        counts = RUN.edge_by_operation.setdefault(name, {"hits": 0, "misses": 0})
        counts["hits" if hit else "misses"] += 1
        if not hit:
            forwarded = re.search(r"fwd=([a-z-]+)", status)
            RUN.edge_missed.append([now, name, response.request.path_url,
                                    forwarded.group(1) if forwarded else "none"])


# The name of the reads repeated at the JavaScript Worker (--js-worker-url).
JS_WORKER = "js worker"


class ApiUser(HttpUser):
    abstract = True

    def get(self, path, name):
        with self.client.get(path, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return None
            return response.json()


class Analyst(ApiUser):
    """An analyst's session: each task is one workflow of the analyst mix (`mix.py`), whose
    pages it reads in order, stopping at a failure. The clicks' pages (`next children`,
    `next entity`, `next breadcrumb`) are what likely-next preloading fetches ahead."""

    weight = 10

    def wait_time(self):
        options = self.environment.parsed_options
        return random.uniform(options.think_min, options.think_max)

    def read(self, steps):
        for step in steps:
            if step is mix.THINK:
                gevent.sleep(self.wait_time())
                continue
            operation, page = step
            body = self.get(mix.path(page), operation)
            if body is None:
                return
            self.mirror(mix.path(page))
            if page[0] == "descendants":
                self.follow_cursors(page[1], body)

    def mirror(self, path):
        """Reads `path` from the JavaScript Worker too, for a share of the reads: its own time
        under the same load as the edge's (its pages may be stale: only the time counts)."""
        options = self.environment.parsed_options
        if options.js_worker_url and random.random() < options.js_share:
            self.client.get(options.js_worker_url + path, name=JS_WORKER)

    def follow_cursors(self, entity, page):
        for _ in range(mix.DESCENDANT_PAGES - 1):
            if not page or not page.get("next_cursor"):
                return
            page = self.get(f"{mix.path(('descendants', entity))}&cursor={page['next_cursor']}",
                            "descendants")

    tasks = {(lambda user, workflow=workflow: user.read(mix.sample(workflow, RUN.catalogue))):
             weight for workflow, weight in mix.WORKFLOWS.items()}


class Editor(ApiUser):
    """An admin editing while the analysts read."""

    fixed_count = 1

    def wait_time(self):
        per_minute = self.environment.parsed_options.edits_per_minute
        return 60.0 / per_minute if per_minute > 0 else 3600.0

    def on_start(self):
        options = self.environment.parsed_options
        if not options.admin_token or options.edits_per_minute <= 0:
            raise StopUser()
        self.headers = {"Authorization": f"Bearer {options.admin_token}"}

    @task
    def edit(self):
        number = next(RUN.edits)
        entity, change, value = mix.edit(RUN.catalogue, number)
        if change == "move":
            body, name = {"parent_id": value}, "admin move"
        else:
            body, name = {"name": value}, "admin rename"
        # The one writer of the run overwrites whatever is there (`If-Match: *`): reading the
        # current ETag through the edge could see a copy a purge has yet to reach.
        with self.client.patch(f"/admin/v1/entities/{entity}", json=body,
                               headers={**self.headers, "If-Match": "*"},
                               name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            version = response.json()["version"]
            purge_id = response.headers.get("forecastin-purge-id")
        if change == "move":
            RUN.catalogue.move(entity, value)
        gevent.spawn(self.follow_purge, entity, version, purge_id)

    def follow_purge(self, entity, version, purge_id):
        follow_purge(
            lambda: self.client.get(f"/admin/v1/purge/{purge_id}", headers=self.headers,
                                    name="admin purge status").json(),
            lambda: self.get(f"{API}/entities/{entity}", "check after purge"),
            version)


class StreamWatcher(User):
    """Holds a websocket open on an origin and times each change event."""

    weight = 1
    fixed_count = 2

    def on_start(self):
        options = self.environment.parsed_options
        base = (options.stream_url or options.origin_url).replace("http", "ws", 1)
        self.socket = websocket.create_connection(f"{base}/ws", timeout=60)

    @task
    def listen(self):
        try:
            message = json.loads(self.socket.recv())
        except websocket.WebSocketTimeoutException:
            return
        except (websocket.WebSocketException, OSError) as error:
            raise StopUser() from error
        if message.get("type") == "event":
            latency = time.time() * 1000 - message["at_ms"]
            with RUN.lock:
                RUN.ws_ms.append(latency)
            self.environment.events.request.fire(
                request_type="WS", name="ws event", response_time=latency,
                response_length=0, exception=None, context={})

    def on_stop(self):
        self.socket.close()

    wait_time = between(0, 0)


# What attackers search for, over and over: made-up words, so each is one page to cache.
JUNK_SEARCHES = [f"zq{n}xv" for n in range(16)]
# The address an attacker's sockets come from, as Cloudflare names it to the Worker
# (`CF-Connecting-IP`; sent by the attacker here, as nothing in front of the local edge sets it).
ATTACKER_ADDRESS = "203.0.113.66"


def stable_pages(*kinds):
    """Entities of `kinds` in the catalogue (regions and countries: the analysts' hottest
    pages, which no edit of the run purges)."""
    catalogue = RUN.catalogue
    return [e for e in catalogue.entities if catalogue.kinds.get(e) in kinds] or ["world"]


class Attacker(HttpUser):
    """Hostile traffic: each task is one request an attacker sends, named `hostile …`, judged
    by how it was answered (see the module's doc)."""

    fixed_count = 0
    wait_time = between(0.02, 0.1)

    def on_start(self):
        self.sockets = []

    def on_stop(self):
        for socket in self.sockets:
            socket.close()

    def attack(self, name, path, expected, headers=None, url=None):
        """Sends one GET; `expected` is the status it must get (2xx: and from the cache, but
        the first time this URL is asked)."""
        target = url or f"{self.host}{path}"
        with self.client.get(target, name=f"hostile {name}", headers=headers or {},
                             catch_response=True) as response:
            hit = "; hit" in response.headers.get("Cache-Status", "")
            with RUN.lock:
                first = target not in RUN.hostile_seen
                RUN.hostile_seen.add(target)
                RUN.hostile["requests"] += 1
                if 400 <= response.status_code < 500:
                    RUN.hostile["answered_4xx"] += 1
                elif hit:
                    RUN.hostile["from_cache"] += 1
                elif first:
                    RUN.hostile["first_asks"] += 1
                else:
                    RUN.hostile["unabsorbed"] += 1
            if response.status_code != expected:
                response.failure(f"expected {expected}, got {response.status_code}")
            else:
                response.success()

    @task
    def long_cursor(self):
        key = f"1\x1f/world/{'!' * 11_000}{random.random()}".encode()
        cursor = base64.urlsafe_b64encode(key).rstrip(b"=").decode()
        self.attack("long cursor", f"{API}/entities/world/descendants?limit=100&cursor={cursor}",
                    400)

    @task
    def padded_parameters(self):
        """The default page size padded with zeros: the analysts' page, until the value is
        longer than any integer may be. A region's list of countries: the editor's changes
        (below the countries) purge no page an attack asks for, so every miss is the attack's."""
        entity = random.choice(stable_pages("region"))
        limit = "0" * random.randint(1, 40) + "50"
        self.attack("padded parameters", f"{API}/entities/{entity}/children?limit={limit}",
                    200 if len(limit) <= 32 else 400)

    @task
    def control_bytes(self):
        byte = random.choice(["%00", "%0A", "%1F", "%7F"])
        self.attack("control bytes", f"{API}/search?q=par{byte}is", 400)

    @task
    def made_up_ids(self):
        self.attack("made-up ids", f"{API}/entities/zz-{random.getrandbits(64):x}", 404)

    @task
    def search_flood(self):
        self.attack("search flood", f"{API}/search?q={random.choice(JUNK_SEARCHES)}", 200)

    @task
    def upgrade_header(self):
        entity = random.choice(stable_pages("region", "country"))
        self.attack("upgrade header", f"{API}/entities/{entity}", 200,
                    headers={"Upgrade": "websocket", "Connection": "Upgrade"})

    @task
    def straight_at_the_origin(self):
        origin = self.environment.parsed_options.origin_url
        self.attack("straight at the origin", "", 403,
                    url=f"{origin}{API}/entities/{RUN.catalogue.pick()}")

    @task
    def idle_socket(self):
        """Opens a websocket through the edge and never reads it; refused (429) once the
        address holds its share."""
        base = self.host.replace("http", "ws", 1)
        started = time.time()
        try:
            socket = websocket.create_connection(
                f"{base}/ws", timeout=10, header=[f"CF-Connecting-IP: {ATTACKER_ADDRESS}"])
        except websocket.WebSocketBadStatusException as refused:
            status, exception = refused.status_code, None
        except (websocket.WebSocketException, OSError) as error:
            status, exception = 0, error
        else:
            status, exception = 101, None
            self.sockets.append(socket)
            with RUN.lock:
                RUN.hostile_sockets += 1
        with RUN.lock:
            RUN.hostile["requests"] += 1
            if 400 <= status < 500:
                RUN.hostile["answered_4xx"] += 1
        if exception is None and status not in (101, 429):
            exception = RuntimeError(f"expected 101 or 429, got {status}")
        self.environment.events.request.fire(
            request_type="WS", name="hostile idle socket",
            response_time=(time.time() - started) * 1000, response_length=0,
            exception=exception, context={})


def hostile_report(total_requests, memory_before, memory_after):
    """How the attackers' requests were answered, and what the run cost the origin's memory
    and Redis's."""
    if not RUN.hostile["requests"]:
        return None
    report = {key: RUN.hostile[key]
              for key in ("requests", "answered_4xx", "from_cache", "first_asks", "unabsorbed")}
    report["share"] = round(RUN.hostile["requests"] / total_requests, 4) \
        if total_requests else None
    report["idle_sockets_opened"] = RUN.hostile_sockets
    # At once, on the origin: the attackers' address holds WS_MAX_PER_ADDRESS at most (the
    # instance drops idle ones after two unanswered pings, and they open others).
    report["streams_connected_peak"] = max(
        (sample.get("websocket_clients_connected", 0) for _, sample in RUN.origin_samples),
        default=None)
    for key, name in (("origin_rss_mb", "origin_rss_growth_mb"),
                      ("redis_used_mb", "redis_memory_growth_mb")):
        before, after = (memory_before or {}).get(key), memory_after.get(key)
        report[key.replace("_mb", "_before_mb")] = _round(before)
        report[key.replace("_mb", "_after_mb")] = _round(after)
        report[name] = _round(after - before) if None not in (before, after) else None
    return report


def _operation(entry, duration):
    def ms(fraction):
        return float(entry.get_response_time_percentile(fraction)) if entry.num_requests else 0.0
    return {
        "count": entry.num_requests,
        "rps": round(entry.num_requests / duration, 2) if duration else 0.0,
        "p50_ms": ms(0.50), "p95_ms": ms(0.95), "p99_ms": ms(0.99),
        "errors": entry.num_failures,
    }


def _ratio(hits, misses):
    return round(hits / (hits + misses), 5) if hits + misses else None


@events.quitting.add_listener
def _report(environment, **_):
    if isinstance(environment.runner, WorkerRunner) or RUN.measured is None:
        return
    options, stats = environment.parsed_options, environment.stats
    total = stats.total
    RUN.measured = (RUN.measured[0], time.time())
    duration = RUN.measured[1] - RUN.measured[0]
    operations = {entry.name: _operation(entry, duration) for entry in stats.entries.values()}
    analyst_errors = sum(entry.num_failures for entry in stats.entries.values()
                         if not entry.name.startswith("hostile"))
    origin, database, delta = None, None, {}
    if options.origin_url:
        after = origin_counters(options.origin_url)
        delta = {name: after[name] - RUN.origin_before.get(name, 0.0) for name in after}
        origin = {
            tier: {"hits": int(delta[f"{tier}_cache_hits_total"]),
                   "misses": int(delta[f"{tier}_cache_misses_total"]),
                   "hit_ratio": _ratio(delta[f"{tier}_cache_hits_total"],
                                       delta[f"{tier}_cache_misses_total"])}
            for tier in ("l1", "l2")
        }
        database = {"public_reads": int(delta["db_public_reads_total"])}
    purge_ms = [ms for _, ms in RUN.purges]
    report = {
        "duration_s": round(duration, 1),
        "overall": {"count": total.num_requests, "rps": round(total.total_rps, 2),
                    "errors": total.num_failures,
                    "error_rate": total.num_failures / total.num_requests
                    if total.num_requests else None,
                    "analyst_errors": analyst_errors},
        "operations": operations,
        "edge": {"hits": RUN.edge_hits, "misses": RUN.edge_misses,
                 "hit_ratio": _ratio(RUN.edge_hits, RUN.edge_misses),
                 "by_operation": RUN.edge_by_operation},
        "origin": origin,
        "origin_latency": origin_latency(delta),
        "database": database,
        "purges": {"count": len(purge_ms), "undelivered": RUN.undelivered_purges,
                   "stale_reads": RUN.stale_reads,
                   "p50_ms": slo.percentile(purge_ms, 0.50),
                   "p99_ms": slo.percentile(purge_ms, 0.99)},
        "websocket": {"events": len(RUN.ws_ms),
                      "p50_ms": _round(slo.percentile(RUN.ws_ms, 0.50)),
                      "p95_ms": _round(slo.percentile(RUN.ws_ms, 0.95)),
                      "p99_ms": _round(slo.percentile(RUN.ws_ms, 0.99))},
        "worker": slo.worker_times(RUN.worker_ms),
        "hostile": hostile_report(total.num_requests, RUN.memory_before,
                                  memory(options.origin_pid)),
        "timeline": timeline(*RUN.measured),
        "failures": failures(stats),
        "storm": storm_report(RUN.edge_by_second, RUN.edge_ms_by_second, RUN.edge_missed,
                              RUN.origin_samples, RUN.storm, time.time())
        if RUN.storm else None,
        "settings": {"zipf_exponent": options.zipf_exponent,
                     "edits_per_minute": options.edits_per_minute,
                     "users": options.num_users, "slo_file": options.slo_file},
    }
    report["slos"] = slo.evaluate(report, slo.load(options.slo_file))
    slo.write(report, options.report)
    print(slo.summary(report))
    print(f"report: {options.report}")
    if not all(verdict["ok"] for verdict in report["slos"]):
        environment.process_exit_code = 1


def failures(stats, most=20):
    """What the failed requests failed with, the most frequent first (at most `most` kinds):
    a run that fails on one request must say which and why."""
    kinds = sorted(stats.errors.values(), key=lambda error: -error.occurrences)[:most]
    return [{"method": error.method, "name": error.name, "error": str(error.error),
             "occurrences": error.occurrences} for error in kinds]


def timeline(start, end):
    """Per second of the measured run: the edge's hits and misses and the reads' p95; and
    each delivered purge, when and how long after its write (what `chart.py` draws)."""
    seconds = sorted(s for s in RUN.edge_by_second if start - 1 < s <= end)
    return {
        "seconds": [round(s - start, 1) for s in seconds],
        "edge_hits": [RUN.edge_by_second[s][0] for s in seconds],
        "edge_misses": [RUN.edge_by_second[s][1] for s in seconds],
        "read_p95_ms": [_round(slo.percentile(RUN.edge_ms_by_second.get(s, []), 0.95))
                        for s in seconds],
        "purges": [[round(at - start, 1), ms] for at, ms in sorted(RUN.purges)],
        "storm": [round(t - start, 1) for t in RUN.storm] if RUN.storm else None,
    }


def storm_report(edge_by_second, edge_ms_by_second, missed, samples, storm, ended):
    """Before, during (from the first move to 10 s after the last) and after the storm: the
    edge hit ratio (and how many hits were stale, served while revalidated), how long the reads
    through the edge took (the preloading's work shares the machine with them), the misses by
    operation and by why the edge forwarded them, the pages missed most, and the origin's
    database reads per second, with the responses it computed for requests (refills) and for
    its preloading."""
    started, last_move = storm
    windows = {"before": (0, started), "during": (started, last_move + 10),
               "after": (last_move + 10, ended)}
    report = {"started_at": started, "last_move_at": last_move}
    for name, (start, end) in windows.items():
        seconds = [s for s in edge_by_second if start <= s < end]
        hits = sum(edge_by_second[s][0] for s in seconds)
        misses = sum(edge_by_second[s][1] for s in seconds)
        inside = [(t, c) for t, c in samples if start <= t <= end]
        window = {"edge_hits": hits, "edge_misses": misses,
                  "edge_hit_ratio": _ratio(hits, misses),
                  # Hits answered from an entry past its freshness while it was revalidated:
                  # after a soft purge, the readers who got the page from before the write.
                  "edge_stale_hits": sum(edge_by_second[s][2] for s in seconds)}
        read_ms = [ms for s in seconds for ms in edge_ms_by_second.get(s, ())]
        for fraction in (0.50, 0.95, 0.99):
            window[f"read_p{round(fraction * 100)}_ms"] = _round(slo.percentile(read_ms, fraction))
        window_missed = [m for m in missed if start <= m[0] < end]
        for field, column in (("edge_misses_by_operation", 1), ("edge_misses_by_forward", 3),
                              ("edge_most_missed", 2)):
            counted = collections.Counter(m[column] for m in window_missed)
            window[field] = dict(counted.most_common(200))
        if len(inside) >= 2:
            (t0, first), (t1, last) = inside[0], inside[-1]
            span = max(t1 - t0, 1e-9)
            for key, series in (("db_queries", "db_public_reads_total"),
                                ("refill_renders", 'origin_renders_total{cause="request"}'),
                                ("preload_renders", 'origin_renders_total{cause="preload"}')):
                count = last.get(series, 0.0) - first.get(series, 0.0)
                window[key] = int(count)
                window[f"{key}_per_s"] = round(count / span, 2)
        report[name] = window
    before, during = report["before"]["read_p95_ms"], report["during"]["read_p95_ms"]
    report["read_p95_growth"] = round(during / before, 2) if before and during else None
    return report


def _round(value):
    return None if value is None else round(value, 2)
