-- The navigation hierarchy. `path` is the materialized path of ids from the root
-- ("/world/m49-150/FR/"), so ancestors are read from one row and a subtree is one index range.
-- Text columns use the "C" collation so ordering and range scans are bytewise, exactly as on
-- SQLite: cursors and path ranges then mean the same thing on both backends.
CREATE TABLE entities (
    id          TEXT COLLATE "C" PRIMARY KEY,
    parent_id   TEXT COLLATE "C" REFERENCES entities (id),
    kind        TEXT NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    -- lower-cased name, for case-insensitive search
    search_name TEXT COLLATE "C" NOT NULL,
    path        TEXT COLLATE "C" NOT NULL UNIQUE,
    depth       BIGINT NOT NULL,
    attributes  TEXT NOT NULL DEFAULT '{}',
    version     BIGINT NOT NULL DEFAULT 1,
    updated_at  TEXT NOT NULL
);

CREATE INDEX entities_children ON entities (parent_id, name, id);
CREATE INDEX entities_levels ON entities (depth, path);
CREATE INDEX entities_by_name ON entities (name, id);
