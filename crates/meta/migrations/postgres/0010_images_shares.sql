-- Coffer metadata schema, version 10 (PostgreSQL): images, provenance, tags, and the sharing engine (resource shares and the permissions of snapshots and images). Keep in step with ../sqlite/0010_images_shares.sql.
-- An image: one or more snapshots it owns (snapshots.image_id, role root, data1, data2 ...) to launch disks from. created_by: image (made from disks or snapshots) or copy, source_*: where a copy came from.
CREATE TABLE images (id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(id), name TEXT NOT NULL, region TEXT NOT NULL, description TEXT NOT NULL, created_by TEXT NOT NULL, source_account TEXT, source_region TEXT, source_id TEXT, created_at TEXT NOT NULL);
CREATE UNIQUE INDEX images_account_name ON images(account_id, name);
ALTER TABLE snapshots ADD COLUMN image_id TEXT REFERENCES images(id);
ALTER TABLE snapshots ADD COLUMN image_role TEXT;
CREATE INDEX snapshots_image ON snapshots(image_id);
-- How a snapshot or disk came to be (snapshot, image, copy, from-snapshot, from-image) and from what: the source's account, region and id, kept after the source is gone.
ALTER TABLE snapshots ADD COLUMN created_by TEXT NOT NULL DEFAULT 'snapshot';
ALTER TABLE snapshots ADD COLUMN source_account TEXT;
ALTER TABLE snapshots ADD COLUMN source_region TEXT;
ALTER TABLE snapshots ADD COLUMN source_id TEXT;
ALTER TABLE disks ADD COLUMN source_image_id TEXT;
ALTER TABLE disks ADD COLUMN source_account TEXT;
ALTER TABLE disks ADD COLUMN source_region TEXT;
-- User tags of any resource (key unique per resource).
CREATE TABLE tags (resource_id TEXT NOT NULL, tag_key TEXT NOT NULL, tag_value TEXT NOT NULL, PRIMARY KEY (resource_id, tag_key));
CREATE INDEX tags_key_value ON tags(tag_key, tag_value);
-- A share: kind share (a resource share, named by its owner) or permission (the one share behind a snapshot's or image's create-volume or launch permission, named after it). principal_scope: any (accounts anywhere, those outside the owner's tenant invited) or tenant (principals of the owner's tenant only).
CREATE TABLE shares (id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(id), name TEXT NOT NULL, region TEXT NOT NULL, kind TEXT NOT NULL, principal_scope TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE UNIQUE INDEX shares_account_name ON shares(account_id, name);
CREATE TABLE share_resources (share_id TEXT NOT NULL REFERENCES shares(id), resource_id TEXT NOT NULL, added_at TEXT NOT NULL, PRIMARY KEY (share_id, resource_id));
CREATE INDEX share_resources_resource ON share_resources(resource_id);
-- principal: an account, folder or tenant id, or * (every account: public). status: associated (in force), pending (an invitation the account has not answered), rejected. invitation_id names the invitation of a pending or answered row.
CREATE TABLE share_principals (share_id TEXT NOT NULL REFERENCES shares(id), principal TEXT NOT NULL, status TEXT NOT NULL, invitation_id TEXT, added_at TEXT NOT NULL, responded_at TEXT, PRIMARY KEY (share_id, principal));
CREATE INDEX share_principals_principal ON share_principals(principal);
