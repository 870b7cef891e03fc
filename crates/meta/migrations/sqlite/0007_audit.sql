-- Coffer metadata schema, version 7 (SQLite): the audit log of key use, one hash chain per deployment, and the key-state epoch. Keep in step with ../postgres/0007_audit.sql.
-- seq: the entry's place in the chain, from 1 and without gaps, hash: hex SHA-256 over the previous entry's hash and this entry's canonical bytes (coffer-keyvault's audit module computes it), key_id: NULL for an entry about no key, acting_for: the human or node behind the principal (a managed identity acts for whoever opened the disk).
CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, principal_id TEXT NOT NULL, acting_for TEXT NOT NULL, action TEXT NOT NULL, key_id TEXT, key_version INTEGER, resource TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX audit_log_key ON audit_log(key_id, seq);
CREATE INDEX audit_log_principal ON audit_log(principal_id, seq);
CREATE INDEX audit_log_resource ON audit_log(resource, seq);
-- The chain's head: the last seq and hash and a MAC over both under a key that only the root key unwraps, so a cut or rewritten tail is detected. Appends lock this row.
CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL, mac TEXT NOT NULL);
INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', '');
-- Bumped in the transaction of every key-state change (disable, delete, permission removed, grant revoked), polled by every node.
CREATE TABLE key_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), epoch INTEGER NOT NULL);
INSERT INTO key_epoch (id, epoch) VALUES (1, 0);
