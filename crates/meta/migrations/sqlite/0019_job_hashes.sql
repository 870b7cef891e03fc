-- Copy jobs verify with BLAKE3 (coffer-crypto's Blake3): the two hash
-- columns are renamed for what they hold, and each value names its
-- algorithm ("blake3:<hex>"); jobs verified before this hold SHA-256.
ALTER TABLE jobs RENAME COLUMN source_sha256 TO source_hash;
ALTER TABLE jobs RENAME COLUMN target_sha256 TO target_hash;
UPDATE jobs SET source_hash = 'sha256:' || source_hash WHERE source_hash IS NOT NULL;
UPDATE jobs SET target_hash = 'sha256:' || target_hash WHERE target_hash IS NOT NULL;
