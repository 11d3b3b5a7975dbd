-- Search pages are ordered by (search_name, id). A query of one or two characters matches names
-- by prefix (`search_name LIKE 'fr%'`), which the trigram index cannot serve: on this index its
-- first page is one short range scan, however many names share the prefix.
CREATE INDEX entities_search_prefix ON entities (search_name, id);
