"""The global model's formulas against a simulation of the same caches, its tags against the
cases of shared/src/tags.rs, and the analyst mix it shares with the Locust analysts."""

import random
import sqlite3
import tempfile
import unittest
from pathlib import Path

import numpy as np

import mix
import model


def simulate_fetches(rate, purge_rate, ttl, seconds, rng):
    """Fetches of one cache, read at `rate` and purged at `purge_rate`, event by event."""
    now, fetched, stored_until = 0.0, 0, -1.0
    next_purge = rng.expovariate(purge_rate) if purge_rate else float("inf")
    while now < seconds:
        now += rng.expovariate(rate)
        while next_purge < now:
            stored_until = min(stored_until, next_purge)
            next_purge += rng.expovariate(purge_rate)
        if now >= stored_until:
            fetched += 1
            stored_until = now + ttl
    return fetched / seconds


def simulate_window(rate, purge_rate, stored, seconds, rng):
    """Misses of one cache over `seconds` from a start `stored` or empty, no expiry."""
    events = [(rng.expovariate(rate), "read")] if rate else []
    if purge_rate:
        events.append((rng.expovariate(purge_rate), "purge"))
    misses = 0
    while events:
        events.sort()
        at, what = events.pop(0)
        if at >= seconds:
            continue
        if what == "read":
            misses += not stored
            stored = True
            events.append((at + rng.expovariate(rate), "read"))
        else:
            stored = False
            events.append((at + rng.expovariate(purge_rate), "purge"))
    return misses


class Formulas(unittest.TestCase):
    def test_fetch_rate_matches_a_simulated_cache(self):
        rng = random.Random(7)
        for rate, purge_rate, ttl in [(0.5, 0.0, 10.0), (2.0, 0.05, 30.0), (0.01, 0.001, 60.0),
                                      (5.0, 1.0, 3600.0)]:
            simulated = simulate_fetches(rate, purge_rate, ttl, 200_000, rng)
            life = model.lifetime(np.array([purge_rate]), ttl)
            modelled = float(model.fetches(np.array([rate]), life)[0])
            self.assertAlmostEqual(simulated / modelled, 1.0, delta=0.05,
                                   msg=f"λ={rate} μ={purge_rate} T={ttl}")

    def test_warm_window_matches_a_simulated_cache(self):
        rng = random.Random(11)
        for rate, purge_rate, stored in [(0.2, 0.01, True), (0.2, 0.0, False),
                                         (0.01, 0.02, True), (3.0, 0.1, False)]:
            runs = 3_000
            simulated = sum(simulate_window(rate, purge_rate, stored, 100.0, rng)
                            for _ in range(runs)) / runs
            modelled = model.warm_window(np.array([1.0]), np.array([purge_rate]),
                                         np.array([stored]), rate, 100.0)
            self.assertAlmostEqual(simulated, modelled, delta=max(0.05 * modelled, 0.02),
                                   msg=f"λ={rate} μ={purge_rate} stored={stored}")

    def test_tiers_and_locations_move_the_origin_as_they_should(self):
        share = np.array([0.5, 0.3, 0.15, 0.05])
        mu = np.array([0.0, 0.001, 0.01, 0.0])
        args = model.arguments(["--tree", "-", "--rps", "100", "--s-maxage", "3600"])

        def origin(**changes):
            return model.steady_state(share, mu, _with(args, **changes))["origin_rps"]

        one = origin(locations=1, upper_tiers=0)
        many = origin(locations=300, upper_tiers=0)
        tiered = origin(locations=300, upper_tiers=1)
        self.assertGreater(many, 10 * one, "each location fills its own cache")
        self.assertLess(tiered, many / 10, "the upper tier fills once for all locations")
        self.assertAlmostEqual(origin(locations=1, upper_tiers=1) / one, 1.0, delta=0.3)


def _with(args, **changes):
    copy = model.argparse.Namespace(**vars(args))
    for key, value in changes.items():
        setattr(copy, key, value)
    return copy


def tree_database(rows):
    """A SQLite file with the origin's entity columns."""
    directory = tempfile.mkdtemp()
    path = Path(directory) / "tree.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE entities (id TEXT PRIMARY KEY, parent_id TEXT, kind TEXT, "
                       "name TEXT, path TEXT, depth INTEGER)")
    connection.executemany("INSERT INTO entities VALUES (?, ?, ?, ?, ?, ?)", rows)
    connection.commit()
    connection.close()
    return path


EUROPE = [
    ("world", None, "world", "World", "/world", 0),
    ("m49-150", "world", "region", "Europe", "/world/m49-150", 1),
    ("m49-155", "m49-150", "region", "Western Europe", "/world/m49-150/m49-155", 2),
    ("FR", "m49-155", "country", "France", "/world/m49-150/m49-155/FR", 3),
    ("DE", "m49-155", "country", "Germany", "/world/m49-150/m49-155/DE", 3),
    ("FR-IDF", "FR", "subdivision", "Île-de-France", "/world/m49-150/m49-155/FR/FR-IDF", 4),
    ("FR-75", "FR-IDF", "subdivision", "Paris", "/world/m49-150/m49-155/FR/FR-IDF/FR-75", 5),
    ("DE-BE", "DE", "subdivision", "Berlin", "/world/m49-150/m49-155/DE/DE-BE", 4),
]


class Tags(unittest.TestCase):
    def setUp(self):
        self.tree = model.Tree(tree_database(EUROPE))

    def purged(self, change, page, items=()):
        purged = model.purged_by(self.tree, change)
        return any(tag in purged for tag in model.page_tags(self.tree, page, items))

    def test_renaming_purges_breadcrumbs_below_and_the_parents_lists_not_siblings(self):
        rename = ("FR-IDF", "rename", "Île-de-France (1)")
        self.assertTrue(self.purged(rename, ("ancestors", "FR-75")))
        self.assertTrue(self.purged(rename, ("children", "FR")))
        self.assertTrue(self.purged(rename, ("entity", "FR-IDF")))
        self.assertTrue(self.purged(rename, ("descendants", "m49-150"), ["FR", "FR-IDF"]))
        self.assertTrue(self.purged(rename, ("search", "île-")))
        self.assertFalse(self.purged(rename, ("descendants", "m49-150"), ["DE", "DE-BE"]))
        self.assertFalse(self.purged(rename, ("entity", "FR-75")))
        self.assertFalse(self.purged(rename, ("children", "DE")))
        self.assertFalse(self.purged(rename, ("search", "berl")))

    def test_a_move_purges_both_parents_lists_and_both_ancestor_lines(self):
        move = ("FR-75", "move", "DE")
        self.assertTrue(self.purged(move, ("children", "FR-IDF")))
        self.assertTrue(self.purged(move, ("children", "DE")))
        self.assertTrue(self.purged(move, ("descendants", "m49-150")))
        self.assertTrue(self.purged(move, ("ancestors", "FR-75")))
        self.assertTrue(self.purged(move, ("children", "FR-75")), "a move to another depth")
        self.assertFalse(self.purged(move, ("entity", "DE-BE")))

    def test_descendants_are_listed_level_by_level_in_path_order(self):
        self.assertEqual(self.tree.descendants("m49-155", 10), ["DE", "FR", "DE-BE", "FR-IDF",
                                                               "FR-75"])
        self.assertEqual(self.tree.descendants("m49-155", 3), ["DE", "FR", "DE-BE"])


class Mix(unittest.TestCase):
    def setUp(self):
        tree = model.Tree(tree_database(EUROPE))
        self.catalogue = mix.Catalogue(*mix.breadth_first(tree.children_of, None), 1.1)

    def test_the_catalogue_is_breadth_first_with_zipf_popularity(self):
        self.assertEqual(self.catalogue.entities[:4], ["world", "m49-150", "m49-155", "FR"])
        rng = random.Random(3)
        picks = [self.catalogue.pick(None, rng) for _ in range(20_000)]
        first, fourth = picks.count("world"), picks.count("FR")
        self.assertAlmostEqual(first / fourth, 4 ** 1.1, delta=0.4)

    def test_sessions_read_pages_of_the_catalogue(self):
        rng = random.Random(5)
        for _ in range(500):
            for step in mix.session(self.catalogue, rng):
                if step is mix.THINK:
                    continue
                operation, (kind, subject) = step
                self.assertIn(kind, ("entity", "ancestors", "children", "descendants", "search"))
                self.assertTrue(mix.path((kind, subject)).startswith(mix.API), operation)

    def test_expanded_runs_are_what_sampling_draws(self):
        rng = random.Random(13)
        for workflow in mix.WORKFLOWS:
            runs = list(mix.expand(workflow, self.catalogue))
            self.assertAlmostEqual(sum(p for p, _ in runs), 1.0, places=9)
            expected = {}
            for probability, steps in runs:
                key = repr(steps)
                expected[key] = expected.get(key, 0.0) + probability
            draws = 4_000
            drawn = {}
            for _ in range(draws):
                key = repr(mix.sample(workflow, self.catalogue, rng))
                drawn[key] = drawn.get(key, 0) + 1
            self.assertLessEqual(set(drawn), set(expected), workflow.__name__)
            for key, probability in expected.items():
                self.assertAlmostEqual(drawn.get(key, 0) / draws, probability, delta=0.03,
                                       msg=f"{workflow.__name__}: {key}")

    def test_edits_rename_below_the_countries_and_move_leaf_subdivisions(self):
        rng = random.Random(9)
        for number in range(30):
            entity, change, value = mix.edit(self.catalogue, number, rng)
            self.assertNotIn(self.catalogue.kinds[entity], ("world", "region", "country"))
            if number % 3 == 2:
                self.assertEqual(change, "move")
                self.assertEqual(self.catalogue.kinds[value], "country")
            else:
                self.assertEqual((change, value), ("rename", f"{self.catalogue.names[entity]} "
                                                              f"({number})"))


if __name__ == "__main__":
    unittest.main()
