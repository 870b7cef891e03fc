-- Coffer metadata schema, version 17 (PostgreSQL): a token minted from another (a console session, a sign-in link, and the session a link opens) names the token it came from. Keep in step with ../sqlite/0017_token_parent.sql.
-- parent_id: the token signed in with (for a link's session, the token that made the link), NULL for every other token. A token whose parent is revoked does not authenticate: revoking a leaked token ends the sessions and links made with it.
ALTER TABLE tokens ADD COLUMN parent_id TEXT;
CREATE INDEX tokens_parent ON tokens(parent_id);
