-- The purge outbox: every data change records, in the same transaction, what must be purged
-- (`purges`) and one delivery per CDN provider (`purge_deliveries`), which the dispatcher
-- drains. Nothing is deleted: delivered and failed rows are the record of every purge.
CREATE TABLE purges (
    id            TEXT PRIMARY KEY NOT NULL,
    -- 'write' (caused by a data change) or 'admin' (POST /admin/v1/purge)
    source        TEXT NOT NULL,
    -- the PurgeRequest, as JSON
    request       TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE purge_deliveries (
    purge_id           TEXT NOT NULL REFERENCES purges (id),
    provider           TEXT NOT NULL,
    -- 'pending', 'delivered' or 'failed'
    status             TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    -- when the dispatcher may (next) try it; a claim pushes it forward by the lease
    next_attempt_at_ms INTEGER NOT NULL,
    last_error         TEXT,
    delivered_at_ms    INTEGER,
    PRIMARY KEY (purge_id, provider)
);

CREATE INDEX purge_deliveries_due ON purge_deliveries (status, next_attempt_at_ms);
CREATE INDEX purges_by_age ON purges (created_at_ms, id);
