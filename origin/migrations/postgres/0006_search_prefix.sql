-- Searches of one or two characters match names by prefix (`search_name LIKE 'fr%'`), which the
-- trigram index cannot serve: an ordered index on the "C"-collated column can.
CREATE INDEX entities_search_prefix ON entities (search_name);
