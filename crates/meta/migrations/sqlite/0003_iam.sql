-- Coffer metadata schema, version 3 (SQLite): identity and access. Keep in step with ../postgres/0003_iam.sql.
-- Folders: a tree per tenant (parent_id NULL: at the tenant's root).
CREATE TABLE folders (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), parent_id TEXT REFERENCES folders(id), name TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX folders_tenant ON folders(tenant_id);
CREATE INDEX folders_parent ON folders(parent_id);
-- The folder an account sits in (NULL: the tenant's root).
ALTER TABLE accounts ADD COLUMN folder_id TEXT REFERENCES folders(id);
CREATE INDEX accounts_tenant ON accounts(tenant_id);
CREATE INDEX accounts_folder ON accounts(folder_id);
-- A label for a token, chosen by its creator (never the token itself).
ALTER TABLE tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
CREATE INDEX tokens_principal ON tokens(principal_id);
CREATE INDEX principals_account ON principals(account_id);
-- Role assignments: principal + built-in role name + scope ('/' for the deployment, else a tenant, folder, account or resource id).
CREATE TABLE role_assignments (id TEXT PRIMARY KEY, principal_id TEXT NOT NULL REFERENCES principals(id), role TEXT NOT NULL, scope TEXT NOT NULL, created_by TEXT, created_at TEXT NOT NULL);
CREATE UNIQUE INDEX role_assignments_unique ON role_assignments(principal_id, role, scope);
CREATE INDEX role_assignments_scope ON role_assignments(scope);
-- The deployment admins of version 2 become Owners of the deployment, under random assignment ids (an id derived from the principal's would tell who was an admin).
INSERT INTO role_assignments (id, principal_id, role, scope, created_by, created_at) SELECT 'ra-' || lower(hex(randomblob(8))), id, 'Owner', '/', NULL, created_at FROM principals WHERE is_admin = 1;
