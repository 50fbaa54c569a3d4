-- Search (db/search.py) chooses how to find a broad query's newest matches from the planner's
-- row estimate. For a tsvector that estimate comes from the column's most common lexemes,
-- 10 × the statistics target of them: at the default target (100) a word outside the 1,000
-- most common, and a prefix matching such words, is guessed (`fio:*`: 10,763 expected, 69,909
-- found at 1,000,000 documents), and a wrong choice cost 40–65 ms. At 1000 the estimate was
-- within 2 % for the prefixes tried; ANALYZE of 1,000,000 rows took 7–10 s (2 s at 100).
ALTER TABLE documents ALTER COLUMN search_vector SET STATISTICS 1000;
