-- Coffer metadata schema, version 4 (PostgreSQL): role assignments alone decide who administers the deployment (the is_admin flag of version 2 became Owner assignments in version 3 and is dropped), and lists page on (created_at, id) and filter by name. Keep in step with ../sqlite/0004_lists.sql.
ALTER TABLE principals DROP COLUMN is_admin;
CREATE INDEX disks_order ON disks(created_at, id);
CREATE INDEX disks_account_name ON disks(account_id, name);
CREATE INDEX snapshots_order ON snapshots(created_at, id);
CREATE INDEX snapshots_account_name ON snapshots(account_id, name);
