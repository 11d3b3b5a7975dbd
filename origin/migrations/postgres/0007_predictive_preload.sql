-- Predictive preloading (see origin/src/warm.rs), on everywhere by default; roll it back or
-- out gradually through PUT /admin/v1/flags/ff.predictive_preload.
INSERT INTO feature_flags (name, rollout_percent, description, updated_at_ms) VALUES
    ('ff.predictive_preload', 100, 'instances re-render hot pages after purges, purge the CDN softly and warm up before ready (per instance)', 0);
