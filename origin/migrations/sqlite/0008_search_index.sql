-- Search on SQLite, as on PostgreSQL (0004, 0006): pages are ordered by (search_name, id), so a
-- prefix or a common substring is found walking this index in order; a rarer substring is
-- found through trigrams (FTS5's trigram tokenizer, over the lowercased name), and checked
-- against the name with LIKE. The trigram table keeps the entity's rowid, which triggers
-- follow; nothing here runs VACUUM, which could renumber the rowids of a table keyed by text.
CREATE INDEX entities_search ON entities (search_name, id);
CREATE VIRTUAL TABLE entities_trigrams USING fts5 (
    search_name,
    content = 'entities',
    content_rowid = 'rowid',
    tokenize = 'trigram'
);
INSERT INTO entities_trigrams (entities_trigrams) VALUES ('rebuild');
CREATE TRIGGER entities_trigrams_insert AFTER INSERT ON entities BEGIN
    INSERT INTO entities_trigrams (rowid, search_name) VALUES (new.rowid, new.search_name);
END;
CREATE TRIGGER entities_trigrams_delete AFTER DELETE ON entities BEGIN
    INSERT INTO entities_trigrams (entities_trigrams, rowid, search_name)
    VALUES ('delete', old.rowid, old.search_name);
END;
CREATE TRIGGER entities_trigrams_update AFTER UPDATE OF search_name ON entities BEGIN
    INSERT INTO entities_trigrams (entities_trigrams, rowid, search_name)
    VALUES ('delete', old.rowid, old.search_name);
    INSERT INTO entities_trigrams (rowid, search_name) VALUES (new.rowid, new.search_name);
END;
