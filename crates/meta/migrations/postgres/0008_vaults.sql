-- Coffer metadata schema, version 8 (PostgreSQL): key vaults of accounts and the customer keys and secrets in them, with versions, soft delete and purge, and disk encryption sets. Keep in step with ../sqlite/0008_vaults.sql.
-- soft_delete, purge_protection: 0 or 1, each only ever turned on, retention_days: 7 to 90, deleted_at, purge_after: set while soft-deleted, purged_at: set once purged (the row stays as a tombstone, its name free again), import_key: the vault's RSA key for BYOK import blobs, wrapped by the root key, made on first use.
CREATE TABLE vaults (id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(id), name TEXT NOT NULL, region TEXT NOT NULL, soft_delete BIGINT NOT NULL, retention_days BIGINT NOT NULL, purge_protection BIGINT NOT NULL, deleted_at TEXT, purge_after TEXT, purged_at TEXT, import_key BYTEA, created_at TEXT NOT NULL);
CREATE UNIQUE INDEX vaults_account_name ON vaults(account_id, name) WHERE purged_at IS NULL;
-- A customer key belongs to a vault (vault_id), platform keys to none. key_type: AES256, RSA2048, RSA3072 or RSA4096, not_before, expires_at: optional validity (RFC 3339), rotation_days: rotate automatically this many days after the newest version, deleted_at, purge_after, purged_at: as for vaults (a purged key's material is destroyed, its row a tombstone).
ALTER TABLE vault_keys ADD COLUMN vault_id TEXT REFERENCES vaults(id);
ALTER TABLE vault_keys ADD COLUMN key_type TEXT NOT NULL DEFAULT 'AES256';
ALTER TABLE vault_keys ADD COLUMN not_before TEXT;
ALTER TABLE vault_keys ADD COLUMN expires_at TEXT;
ALTER TABLE vault_keys ADD COLUMN rotation_days BIGINT;
ALTER TABLE vault_keys ADD COLUMN deleted_at TEXT;
ALTER TABLE vault_keys ADD COLUMN purge_after TEXT;
ALTER TABLE vault_keys ADD COLUMN purged_at TEXT;
CREATE UNIQUE INDEX vault_keys_vault_name ON vault_keys(vault_id, name) WHERE vault_id IS NOT NULL AND purged_at IS NULL;
-- public_key: an RSA version's public key (SubjectPublicKeyInfo DER), NULL for AES, origin: generated or imported.
ALTER TABLE vault_key_versions ADD COLUMN public_key BYTEA;
ALTER TABLE vault_key_versions ADD COLUMN origin TEXT NOT NULL DEFAULT 'generated';
-- Secrets of a vault (e.g. a LUKS passphrase for in-guest encryption), versioned, deleted, recovered and purged as keys are. A value is stored only wrapped by the root key (wrapped_value), emptied on purge.
CREATE TABLE vault_secrets (id TEXT PRIMARY KEY, vault_id TEXT NOT NULL REFERENCES vaults(id), account_id TEXT NOT NULL, name TEXT NOT NULL, current_version BIGINT NOT NULL, content_type TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, deleted_at TEXT, purge_after TEXT, purged_at TEXT);
CREATE UNIQUE INDEX vault_secrets_name ON vault_secrets(vault_id, name) WHERE purged_at IS NULL;
CREATE TABLE vault_secret_versions (secret_id TEXT NOT NULL REFERENCES vault_secrets(id), version BIGINT NOT NULL, wrapped_value BYTEA NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (secret_id, version));
-- Disk encryption sets: a customer key (key_version NULL: always the key's current version) and the managed identity created with the set, which needs wrap, unwrap and read on the key. encryption_type: customer or double.
CREATE TABLE encryption_sets (id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(id), name TEXT NOT NULL, region TEXT NOT NULL, key_id TEXT NOT NULL REFERENCES vault_keys(id), key_version BIGINT, encryption_type TEXT NOT NULL, identity_id TEXT NOT NULL REFERENCES principals(id), created_at TEXT NOT NULL);
CREATE UNIQUE INDEX encryption_sets_account_name ON encryption_sets(account_id, name);
-- The disk encryption set a DEK was made through (NULL: a platform-key DEK): disks and snapshots report their set through their volume's DEK, as their KEK.
ALTER TABLE deks ADD COLUMN encryption_set_id TEXT;
