-- Feature flags with gradual rollout: a flag is on for a key when the key's bucket (a stable
-- hash of flag and key, 0-99) is below the rollout percentage, so raising the percentage only
-- ever turns keys on.
CREATE TABLE feature_flags (
    name            TEXT PRIMARY KEY,
    rollout_percent BIGINT NOT NULL CHECK (rollout_percent BETWEEN 0 AND 100),
    description     TEXT NOT NULL,
    updated_at_ms   BIGINT NOT NULL
);

INSERT INTO feature_flags (name, rollout_percent, description, updated_at_ms) VALUES
    ('ff.horizontal_scaling', 100, 'instances coordinate their caches through Redis (per instance)', 0),
    ('ff.cdn_integration', 100, 'data changes purge the CDN providers (per entity)', 0),
    ('ff.auto_scaling', 100, 'instances report load for autoscaling in /metrics (per instance)', 0);
