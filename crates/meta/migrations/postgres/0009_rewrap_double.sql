-- Coffer metadata schema, version 9 (PostgreSQL): DEKs found by their encryption set (rotation re-wraps every DEK of a set), and the second data layer of a volume under double encryption. Keep in step with ../sqlite/0009_rewrap_double.sql.
CREATE INDEX deks_encryption_set ON deks(encryption_set_id);
-- dek2_id: under double encryption, the volume's layer-2 write DEK, wrapped by the region's platform key (dek_id is then the customer-wrapped layer 1), NULL with one layer.
ALTER TABLE volumes ADD COLUMN dek2_id TEXT REFERENCES deks(id);
