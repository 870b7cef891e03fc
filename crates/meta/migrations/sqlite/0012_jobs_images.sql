-- Coffer metadata schema, version 12 (SQLite): a copy job's hold, images copied by jobs, and the tenant policy on cross-tenant key grants. Keep in step with ../postgres/0012_jobs_images.sql.
-- hold_id: set anew each time a node claims a running job. Every commit of the job's target volume, its counter reservations and the transaction that ends the job check that the job is still running with this node and hold (a node that lost the job, or a cancelled job, is fenced), as an attachment's hold does for a disk.
ALTER TABLE jobs ADD COLUMN hold_id TEXT;
-- image_id, image_role: a job copying one snapshot of an image under another key makes that snapshot of image image_id in role image_role (root, data1 ...), not a snapshot of its own.
ALTER TABLE jobs ADD COLUMN image_id TEXT;
ALTER TABLE jobs ADD COLUMN image_role TEXT;
CREATE INDEX jobs_image ON jobs(image_id);
-- state: available (launchable), pending (its copy jobs run: it holds the snapshots copied so far, and launches are refused) or failed (a job of its copy failed or was cancelled: delete it).
ALTER TABLE images ADD COLUMN state TEXT NOT NULL DEFAULT 'available';
-- allow_cross_tenant_key_grants: 1 when the tenant lets its customer keys be granted to principals of other tenants (and so its customer-key snapshots and images be shared with their accounts, each holding a grant), 0 (the default) when such grants are refused.
ALTER TABLE tenants ADD COLUMN allow_cross_tenant_key_grants INTEGER NOT NULL DEFAULT 0;
