-- Coffer metadata schema, version 9 (SQLite): DEKs found by their encryption set (rotation re-wraps every DEK of a set), the second data layer of a volume under double encryption, vaults whose keys live in an external transit engine, and grants on keys. Keep in step with ../postgres/0009_rewrap_double.sql.
CREATE INDEX deks_encryption_set ON deks(encryption_set_id);
-- dek2_id: under double encryption, the volume's layer-2 write DEK, wrapped by the region's platform key (dek_id is then the customer-wrapped layer 1), NULL with one layer.
ALTER TABLE volumes ADD COLUMN dek2_id TEXT REFERENCES deks(id);
-- A vault whose keys live in an external key store the customer runs (external_kind: transit, an OpenBao or HashiCorp Vault transit engine at external_address, mounted at external_mount), reached with the customer's token, stored only wrapped by the root key (external_token). All four NULL: the built-in backend. A key of such a vault is the transit key of the same name, and its material never enters Coffer.
ALTER TABLE vaults ADD COLUMN external_kind TEXT;
ALTER TABLE vaults ADD COLUMN external_address TEXT;
ALTER TABLE vaults ADD COLUMN external_mount TEXT;
ALTER TABLE vaults ADD COLUMN external_token BLOB;
-- Grants on keys (AWS KMS grants): grantee_id may use key_id for the operations listed (comma-separated: Describe, Encrypt, Decrypt, ReEncrypt, GenerateDataKey, WrapKey, UnwrapKey, CreateGrant) until the grant is retired (by its grantee or retiring principal, retiring_id) or revoked (by a key administrator), which sets retired_at or revoked_at. account_id: the key's account, created_by: the principal that made it, context_equals: the encryption context the grant's operations must name (NULL: any).
CREATE TABLE key_grants (id TEXT PRIMARY KEY, key_id TEXT NOT NULL REFERENCES vault_keys(id), account_id TEXT NOT NULL, grantee_id TEXT NOT NULL, operations TEXT NOT NULL, name TEXT, retiring_id TEXT, created_by TEXT NOT NULL, created_at TEXT NOT NULL, retired_at TEXT, revoked_at TEXT, context_equals TEXT);
CREATE INDEX key_grants_grantee ON key_grants(grantee_id);
CREATE INDEX key_grants_key ON key_grants(key_id);
