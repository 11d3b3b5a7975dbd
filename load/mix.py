"""The analyst mix: which pages an analyst's session reads, as pure functions of a catalogue.

One definition for the two users of it: the Locust analysts (`locustfile.py`), who fetch the
pages, and the global model (`model.py`), which samples sessions to learn how often each page
is read. A session is a list of steps; a step is `(operation, page)`, where a page is
`(kind, entity)` for a hierarchy page, `("descendants", entity)` for the first of up to
`DESCENDANT_PAGES` pages of descendants (the next ones follow the answer's cursor), or
`("search", query)`; `THINK` between two steps is an analyst's pause.
"""

import itertools
import random
from bisect import bisect_left
from urllib.parse import quote

API = "/api/v1"
# Pages of descendants an analyst reads, following the cursors.
DESCENDANT_PAGES = 3
DESCENDANT_PAGE_SIZE = 50
THINK = None


class Catalogue:
    """The entities analysts browse, most popular first, with a Zipf popularity: the entity
    of rank n is read in proportion to 1 / (n + 1) ** exponent."""

    def __init__(self, order, by_parent, names, kinds, exponent):
        self.entities = order
        self.by_parent = by_parent
        self.names = names
        self.kinds = kinds
        self.rank = {entity: n for n, entity in enumerate(order)}
        self.weights = [1.0 / (n + 1) ** exponent for n in range(len(order))]
        self.cum_weights = list(itertools.accumulate(self.weights))
        self.parents = [entity for entity in order if by_parent.get(entity)]
        # id of a population -> (the population, ranked, cumulative weights); holding the
        # population keeps its id from being reused by another list.
        self._cumulative = {}
        self._kinds_of = {}  # what leaves(), editable() and countries() found

    def _ranked(self, population):
        """`population` (None: the catalogue) most popular first, with the Zipf weight of each
        place: a pick ranks within the population, not over the whole catalogue."""
        if population is None:
            return self.entities, self.weights
        ranked = sorted(population, key=self.rank.get)
        return ranked, self.weights[: len(ranked)]

    def pick(self, population=None, rng=random):
        """An entity of `population` (default: the catalogue), Zipf-weighted by popularity."""
        if population is None:
            ranked, cumulative = self.entities, self.cum_weights
        else:
            cached = self._cumulative.get(id(population))
            if cached is None or cached[0] is not population:
                ranked, weights = self._ranked(population)
                cached = (population, ranked, list(itertools.accumulate(weights)))
                self._cumulative[id(population)] = cached
            _, ranked, cumulative = cached
        point = rng.random() * cumulative[-1]
        return ranked[min(bisect_left(cumulative, point), len(ranked) - 1)]

    def _found(self, name, wanted):
        if name not in self._kinds_of:
            self._kinds_of[name] = [e for e in self.entities if wanted(e)]
        return self._kinds_of[name]

    def leaves(self):
        """Subdivisions without children, which the editor moves."""
        return self._found("leaves", lambda e: self.kinds.get(e) == "subdivision"
                           and not self.by_parent.get(e))

    def editable(self):
        """Entities below the countries, which the editor renames."""
        return self._found("editable", lambda e: self.kinds.get(e)
                           not in ("world", "region", "country"))

    def countries(self):
        return self._found("countries", lambda e: self.kinds.get(e) == "country")

    def distribution(self, population):
        """`(entity, probability)` of each entity `pick` can draw from `population`."""
        ranked, weights = self._ranked(population)
        total = sum(weights)
        return [(entity, weight / total) for entity, weight in zip(ranked, weights)]

    def move(self, entity, parent):
        """`entity` now under `parent` (an editor moved it)."""
        for children in self.by_parent.values():
            if entity in children:
                children.remove(entity)
        self.by_parent.setdefault(parent, []).append(entity)
        self._cumulative.clear()
        self._kinds_of.clear()


def breadth_first(children_of, expand=("region", "country"), limit=-1):
    """The catalogue's order, as analysts meet entities: breadth first from `world`, each
    parent's children in the API's order, descending into the kinds of `expand` (`None`: all),
    at most `limit` entities (-1: all). `children_of(parent)` yields `(id, name, kind)`."""
    order, queue = ["world"], ["world"]
    by_parent, names, kinds = {}, {}, {"world": "world"}
    while queue and (limit < 0 or len(order) < limit):
        parent = queue.pop(0)
        for entity, name, kind in children_of(parent):
            by_parent.setdefault(parent, []).append(entity)
            names[entity] = name
            kinds[entity] = kind
            order.append(entity)
            if expand is None or kind in expand:
                queue.append(entity)
    if limit > 0:
        order = order[:limit]
        kept = set(order)
        by_parent = {parent: [c for c in children if c in kept]
                     for parent, children in by_parent.items() if parent in kept}
    return order, by_parent, names, kinds


def search_query(name):
    """What an analyst types for `name`: its first four letters."""
    return name[:4].lower()


def path(page):
    """The first URL of a page."""
    kind, subject = page
    if kind == "search":
        return f"{API}/search?q={quote(subject)}"
    if kind == "entity":
        return f"{API}/entities/{subject}"
    if kind == "descendants":
        return f"{API}/entities/{subject}/descendants?limit={DESCENDANT_PAGE_SIZE}"
    return f"{API}/entities/{subject}/{kind}"


def warm_pages(catalogue, count=-1):
    """The pages a warm-up stores before a run, as a CDN in service has seen them: each of the
    `count` most popular entities' page, breadcrumb and children (-1: every entity's), and the
    searches analysts type for them."""
    entities = catalogue.entities if count < 0 else catalogue.entities[:count]
    pages = [(kind, entity) for entity in entities
             for kind in ("entity", "ancestors", "children")]
    searches = {search_query(catalogue.names.get(entity, entity)) for entity in entities}
    return pages + [("search", query) for query in sorted(searches)]


def _open_entity(entity, names=("entity", "ancestors")):
    return [(names[0], ("entity", entity)), (names[1], ("ancestors", entity))]


# Each workflow is a generator: it yields the population it picks an entity from (None: the
# whole catalogue), is sent the entity picked, and returns its steps. `sample` draws one run of
# it; `expand` lists every run with its probability, for the model's exact page rates.

def browse_top_down(catalogue):
    """world -> region -> country -> subdivision, reading each level's children."""
    steps, entity = [], "world"
    for _ in range(4):
        steps.append(("children", ("children", entity)))
        children = catalogue.by_parent.get(entity)
        if not children:
            break
        entity = yield children
    return steps + _open_entity(entity)


def open_entity_page(catalogue):
    return _open_entity((yield None))


def drill_down(catalogue):
    """An entity with children opened, read, then a click into them: their first page, then
    one child (those near the top of the list are the likelier clicks) with its breadcrumb.
    The click's pages are what likely-next preloading fetches ahead."""
    entity = yield catalogue.parents
    child = yield catalogue.by_parent[entity]
    return (_open_entity(entity) + [THINK, ("next children", ("children", entity))]
            + _open_entity(child, ("next entity", "next breadcrumb")))


def page_descendants(catalogue):
    region = yield catalogue.by_parent.get("world", ["world"])
    return [("descendants", ("descendants", region))]


def search_by_name(catalogue):
    name = catalogue.names.get((yield None), "world")
    return [("search", ("search", search_query(name)))]


# Each workflow and its weight in a session (the Locust analyst's task weights).
WORKFLOWS = {browse_top_down: 3, open_entity_page: 5, drill_down: 2, page_descendants: 1,
             search_by_name: 1}


def _run(workflow, catalogue, choose):
    """Runs `workflow`, each pick answered by `choose(population)`; returns its steps."""
    steps = workflow(catalogue)
    try:
        population = next(steps)
        while True:
            population = steps.send(choose(population))
    except StopIteration as done:
        return done.value


def sample(workflow, catalogue, rng=random):
    """The steps of one run of `workflow`, its picks drawn by popularity."""
    return _run(workflow, catalogue, lambda population: catalogue.pick(population, rng))


class _Open(Exception):
    """A pick past the chosen ones; its argument is the population."""


def expand(workflow, catalogue, chosen=(), probability=1.0):
    """Every run of `workflow`: `(probability, steps)`, the probabilities summing to 1."""
    picks = iter(chosen)

    def choose(population):
        picked = next(picks, _Open)
        if picked is _Open:
            raise _Open(population)
        return picked

    try:
        steps = _run(workflow, catalogue, choose)
    except _Open as pick:
        for entity, chance in catalogue.distribution(pick.args[0]):
            yield from expand(workflow, catalogue, (*chosen, entity), probability * chance)
        return
    yield probability, steps


def session(catalogue, rng=random):
    """The steps of one workflow, drawn by its weight."""
    workflow = rng.choices(list(WORKFLOWS), weights=list(WORKFLOWS.values()))[0]
    return sample(workflow, catalogue, rng)


def edit(catalogue, number, rng=random):
    """The editor's `number`th change: `(entity, "move", new parent)` every third time, a leaf
    subdivision going under one of the 40 most popular countries; otherwise `(entity,
    "rename", new name)`. Admins edit where the data changes, not where analysts look:
    uniformly among the entities below the countries (region and country names are ISO and UN
    standards)."""
    if number % 3 == 2:
        leaves = catalogue.leaves()
        if leaves:
            return rng.choice(leaves), "move", rng.choice(catalogue.countries()[:40])
    editable = catalogue.editable() or catalogue.entities[1:]
    entity = rng.choice(editable)
    return entity, "rename", f"{catalogue.names.get(entity, entity)} ({number})"
