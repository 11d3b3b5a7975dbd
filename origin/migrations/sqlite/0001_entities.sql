-- The navigation hierarchy. `path` is the materialized path of ids from the root
-- ("/world/m49-150/FR/"), so ancestors are read from one row and a subtree is one index range.
CREATE TABLE entities (
    id          TEXT PRIMARY KEY NOT NULL,
    parent_id   TEXT REFERENCES entities (id),
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    -- lower-cased name, for case-insensitive search
    search_name TEXT NOT NULL,
    path        TEXT NOT NULL UNIQUE,
    depth       INTEGER NOT NULL,
    attributes  TEXT NOT NULL DEFAULT '{}',
    version     INTEGER NOT NULL DEFAULT 1,
    updated_at  TEXT NOT NULL
);

CREATE INDEX entities_children ON entities (parent_id, name, id);
CREATE INDEX entities_levels ON entities (depth, path);
CREATE INDEX entities_by_name ON entities (name, id);
