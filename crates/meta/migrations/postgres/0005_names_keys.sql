-- Coffer metadata schema, version 5 (PostgreSQL): names are unique per account and kind, enforced by the database (two racing creates cannot both win), and a disk or snapshot no longer stores the KEK of its DEK (it is read through the DEK). Keep in step with ../sqlite/0005_names_keys.sql.
-- Earlier versions checked names only before inserting, so a race could leave duplicates: the oldest keeps its name, each later one gets the first 73 characters of it, a dash and the last 6 characters of its id (80 characters at most, the name limit).
UPDATE disks SET name = substr(name, 1, 73) || '-' || right(id, 6) WHERE EXISTS (SELECT 1 FROM disks o WHERE o.account_id = disks.account_id AND o.name = disks.name AND (o.created_at < disks.created_at OR (o.created_at = disks.created_at AND o.id < disks.id)));
UPDATE snapshots SET name = substr(name, 1, 73) || '-' || right(id, 6) WHERE EXISTS (SELECT 1 FROM snapshots o WHERE o.account_id = snapshots.account_id AND o.name = snapshots.name AND (o.created_at < snapshots.created_at OR (o.created_at = snapshots.created_at AND o.id < snapshots.id)));
DROP INDEX disks_account_name;
CREATE UNIQUE INDEX disks_account_name ON disks(account_id, name);
DROP INDEX snapshots_account_name;
CREATE UNIQUE INDEX snapshots_account_name ON snapshots(account_id, name);
ALTER TABLE disks DROP COLUMN kek_id;
ALTER TABLE snapshots DROP COLUMN kek_id;
