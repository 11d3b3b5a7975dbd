-- Search pages are ordered by (search_name, id). `name_rank` numbers the names in that order,
-- with gaps so a new name usually fits between its neighbours (hierarchy::ranks assigns it on
-- each write, and renumbers every row loaded in bulk). A row without a rank is not searched.
--
-- The GIN trigram index cannot hand its matches over in that order (it returns a bitmap), so
-- a common substring was found walking the name index: 79 ms p95 at 1,000,000 entities when
-- the matches sort late. `search_postings` is an inverted index in rank order: for each
-- trigram of the names (3 characters, as `substr` counts them), the ranks of the names holding
-- it, sorted, in chunks keyed by a lower bound of their ranks. A page merges the lists of the
-- query's trigrams from its position on and stops at its last match (hierarchy::postings). It
-- serves every substring. The GIN index stays for one release: instances of the version before
-- search through it while a rolling deploy replaces them.

ALTER TABLE entities ADD COLUMN name_rank BIGINT;
CREATE UNIQUE INDEX entities_name_rank ON entities (name_rank);

CREATE TABLE search_postings (
    trigram TEXT COLLATE "C" NOT NULL,
    -- No rank of the chunk is below it, and none reaches the next chunk's.
    chunk BIGINT NOT NULL,
    ranks BIGINT[] NOT NULL,
    PRIMARY KEY (trigram, chunk)
);

-- The distinct trigrams of a name.
CREATE FUNCTION search_trigrams(name TEXT) RETURNS SETOF TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT DISTINCT substr(name, i, 3) FROM generate_series(1, char_length(name) - 2) AS i
$$;

-- Ranks per chunk at most; a fuller chunk splits in two.
CREATE FUNCTION search_chunk_max() RETURNS INT LANGUAGE sql IMMUTABLE AS 'SELECT 256';

CREATE FUNCTION search_postings_add(name TEXT, rank BIGINT) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t TEXT;
    found_chunk BIGINT;
    merged BIGINT[];
    half INT;
BEGIN
    FOR t IN SELECT search_trigrams(name) LOOP
        SELECT chunk, ranks INTO found_chunk, merged FROM search_postings
        WHERE trigram = t AND chunk <= rank ORDER BY chunk DESC LIMIT 1 FOR UPDATE;
        IF NOT FOUND THEN
            -- Below every chunk: the first one takes it, its key lowered to the rank.
            SELECT chunk, ranks INTO found_chunk, merged FROM search_postings
            WHERE trigram = t ORDER BY chunk LIMIT 1 FOR UPDATE;
            IF NOT FOUND THEN
                INSERT INTO search_postings VALUES (t, rank, ARRAY[rank]);
                CONTINUE;
            END IF;
            UPDATE search_postings SET chunk = rank WHERE trigram = t AND chunk = found_chunk;
            found_chunk := rank;
        END IF;
        -- A rank a large delete left behind may come back.
        CONTINUE WHEN rank = ANY(merged);
        merged := ARRAY(SELECT r FROM unnest(merged || rank) AS r ORDER BY r);
        IF cardinality(merged) <= search_chunk_max() THEN
            UPDATE search_postings SET ranks = merged WHERE trigram = t AND chunk = found_chunk;
        ELSE
            half := cardinality(merged) / 2;
            UPDATE search_postings SET ranks = merged[1:half]
            WHERE trigram = t AND chunk = found_chunk;
            INSERT INTO search_postings
            VALUES (t, merged[half + 1], merged[half + 1:cardinality(merged)]);
        END IF;
    END LOOP;
END $$;

CREATE FUNCTION search_postings_remove(name TEXT, rank BIGINT) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t TEXT;
    found_chunk BIGINT;
    remaining INT;
BEGIN
    FOR t IN SELECT search_trigrams(name) LOOP
        SELECT chunk INTO found_chunk FROM search_postings
        WHERE trigram = t AND chunk <= rank ORDER BY chunk DESC LIMIT 1 FOR UPDATE;
        CONTINUE WHEN NOT FOUND;
        UPDATE search_postings SET ranks = array_remove(ranks, rank)
        WHERE trigram = t AND chunk = found_chunk
        RETURNING cardinality(ranks) INTO remaining;
        IF remaining = 0 THEN
            DELETE FROM search_postings WHERE trigram = t AND chunk = found_chunk;
        END IF;
    END LOOP;
END $$;

-- A bulk renumbering (hierarchy::ranks::reindex) rebuilds the postings whole instead.
CREATE FUNCTION search_reindexing() RETURNS BOOLEAN LANGUAGE sql STABLE AS
$$ SELECT current_setting('forecastin.search_reindex', true) IS NOT DISTINCT FROM 'on' $$;

CREATE FUNCTION search_postings_follow() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF search_reindexing() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.name_rank IS NOT NULL THEN
        PERFORM search_postings_remove(OLD.search_name, OLD.name_rank);
    END IF;
    IF NEW.name_rank IS NOT NULL THEN
        PERFORM search_postings_add(NEW.search_name, NEW.name_rank);
    END IF;
    RETURN NULL;
END $$;

-- A delete's postings go chunk by chunk, not name by name. A search checks every candidate
-- against its name, so a rank left behind costs a scan a little and changes no result: a
-- delete of more than a thousand names (a country's subtree: 27,190 names rewrote most chunks
-- in 12-17 s at 1,000,000 entities, inside the serialized write) leaves its postings until the
-- next full numbering.
CREATE FUNCTION search_postings_forget() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    emptied RECORD;
BEGIN
    IF search_reindexing() OR (SELECT COUNT(*) FROM gone) > 1000 THEN
        RETURN NULL;
    END IF;
    FOR emptied IN
        WITH removed AS (
            SELECT trigram, gone.name_rank, (
                SELECT MAX(chunk) FROM search_postings s
                WHERE s.trigram = t.trigram AND s.chunk <= gone.name_rank
            ) AS chunk
            FROM gone, search_trigrams(gone.search_name) AS t (trigram)
            WHERE gone.name_rank IS NOT NULL
        ), grouped AS (
            SELECT trigram, chunk, array_agg(name_rank) AS ranks FROM removed
            GROUP BY trigram, chunk
        )
        UPDATE search_postings p
        SET ranks = ARRAY(SELECT r FROM unnest(p.ranks) AS r WHERE r <> ALL (g.ranks) ORDER BY r)
        FROM grouped g WHERE p.trigram = g.trigram AND p.chunk = g.chunk
        RETURNING p.trigram, p.chunk, cardinality(p.ranks) AS remaining
    LOOP
        IF emptied.remaining = 0 THEN
            DELETE FROM search_postings WHERE trigram = emptied.trigram AND chunk = emptied.chunk;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

-- A rename that does not also set the rank (one by an instance of the previous release, during
-- a rolling deploy) leaves the row unranked rather than out of order; writes place it again.
CREATE FUNCTION search_rank_forget() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.name_rank := NULL;
    RETURN NEW;
END $$;

CREATE TRIGGER search_rank_forget BEFORE UPDATE OF search_name ON entities
FOR EACH ROW
WHEN (OLD.search_name IS DISTINCT FROM NEW.search_name AND OLD.name_rank IS NOT DISTINCT FROM NEW.name_rank)
EXECUTE FUNCTION search_rank_forget();

CREATE TRIGGER search_postings_insert AFTER INSERT ON entities
FOR EACH ROW EXECUTE FUNCTION search_postings_follow();
CREATE TRIGGER search_postings_update AFTER UPDATE OF search_name, name_rank ON entities
FOR EACH ROW
WHEN (OLD.search_name IS DISTINCT FROM NEW.search_name OR OLD.name_rank IS DISTINCT FROM NEW.name_rank)
EXECUTE FUNCTION search_postings_follow();
CREATE TRIGGER search_postings_delete AFTER DELETE ON entities
REFERENCING OLD TABLE AS gone
FOR EACH STATEMENT EXECUTE FUNCTION search_postings_forget();
