-- Coffer metadata schema, version 13 (SQLite): how many objects were sealed under each DEK, so a volume moves to a fresh write DEK before its DEK nears its budget. Keep in step with ../postgres/0013_dek_budget.sql.
-- objects_sealed: format v2 objects committed under this DEK (each object has a key of its own derived from the DEK and a random 128-bit object id, so the budget bounds the chance of two ids colliding under one DEK). Counted by the commit that first names the object.
ALTER TABLE deks ADD COLUMN objects_sealed BIGINT NOT NULL DEFAULT 0;
