-- Coffer metadata schema, version 2 (PostgreSQL): several nodes. Keep in step with ../sqlite/0002_nodes.sql.
-- One row per run of `coffer serve`. A node is alive while lease_expires_ms (Unix ms) is in the future.
CREATE TABLE nodes (id TEXT PRIMARY KEY, name TEXT NOT NULL, api_url TEXT NOT NULL, nbd_endpoint TEXT NOT NULL, started_at TEXT NOT NULL, lease_expires_ms BIGINT NOT NULL);
CREATE INDEX nodes_name ON nodes(name);
-- The node holding an attachment (NULL: held by none, e.g. its node died and was fenced), and the id of its current hold: every take (even by the same node) is a new hold, and writes of an earlier hold are refused.
ALTER TABLE attachments ADD COLUMN node_id TEXT;
ALTER TABLE attachments ADD COLUMN hold_id TEXT;
CREATE INDEX attachments_node ON attachments(node_id);
-- Nonce counters handed to a hold and not yet resolved: objects in these ranges may be in flight, so the orphan sweep leaves them while that hold is current.
CREATE TABLE counter_reservations (dek_id TEXT NOT NULL, start_counter BIGINT NOT NULL, end_counter BIGINT NOT NULL, hold_id TEXT NOT NULL, PRIMARY KEY (dek_id, start_counter));
CREATE INDEX counter_reservations_hold ON counter_reservations(hold_id);
