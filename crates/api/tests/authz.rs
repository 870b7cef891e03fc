//! The authorization matrix: every route of the API, enumerated from the
//! route table the router is built from, called by nine kinds of caller,
//! with the expected status of each call asserted, and `iam explain`
//! asked to account for every outcome of an action-guarded route.
//!
//! Callers: the deployment admin; the Owner, a Reader and a principal with
//! no role (a "stranger") of one account; the Owner of another account of
//! the same tenant; the Owner of another tenant; and an expired, a revoked
//! and no token. A route added to the router without a row here fails
//! [`every_route_has_a_row_and_the_openapi_document_agrees`]; a route
//! whose policy lets the wrong caller through fails the matrix.
//!
//! Runs on a real server (axum on 127.0.0.1, real SQLite or PostgreSQL, a
//! real object directory, the built-in key vault).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use coffer_api::{Policy, RouteSpec, router, routes};
use coffer_keyvault::{FileRootKey, KeyVault};
use coffer_meta::Meta;
use coffer_service::{Service, ServiceConfig};
use coffer_store::{LocalStore, ObjectStore};
use coffer_testkit::TestMetadata;
use serde_json::{Value, json};

/// A fresh name: disk and snapshot names are unique per account, and the
/// matrix creates many.
fn uniq(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{n}")
}

/// The callers, in the column order of [`expected`].
const CALLERS: [&str; 9] = [
    "admin",
    "owner",
    "reader",
    "stranger",
    "other_account",
    "other_tenant",
    "expired",
    "revoked",
    "no_token",
];

/// Expected status per caller for each route, in [`CALLERS`] order. Public
/// routes answer everyone; every other route answers 401 to the last three.
fn expected(method: &str, path: &str) -> Option<[u16; 6]> {
    // admin, owner, reader, stranger, other_account, other_tenant
    Some(match (method, path) {
        ("GET", "/healthz" | "/openapi.json") => [200; 6],
        ("GET", "/v1/whoami" | "/v1/regions" | "/v1/roles") => [200; 6],
        // A sign-in link for oneself: any principal with a token.
        ("POST", "/v1/console/links") => [201; 6],
        ("GET", "/v1/disks" | "/v1/snapshots" | "/v1/tenants" | "/v1/accounts") => [200; 6],
        ("GET", "/v1/images" | "/v1/shares" | "/v1/jobs") => [200; 6],
        // A job is seen with the snapshots of its account; cancelled with
        // `snapshots/write` there.
        ("GET", "/v1/jobs/{id}") => [200, 200, 200, 404, 404, 404],
        // Exporting is using the snapshot or image, as a copy is.
        ("POST", "/v1/snapshots/{id}/exports" | "/v1/images/{id}/exports") => {
            [201, 201, 403, 404, 404, 404]
        }
        ("GET", "/v1/exports") => [200; 6],
        // An export is seen and revoked with `snapshots/write` in its
        // account (it lets data leave).
        ("GET" | "DELETE", "/v1/exports/{id}") => [200, 200, 403, 403, 404, 404],
        // A pull token's routes: no principal's token opens them.
        (
            "GET",
            "/v1/pull/{id}"
            | "/v1/pull/{id}/members/{role}/map"
            | "/v1/pull/{id}/members/{role}/data"
            | "/v1/pull/{id}/members/{role}/changed"
            | "/v1/pull/{id}/members/{role}/hash",
        ) => [401; 6],
        // Allowed, an import needs a client of other deployments, which
        // this test's service has none of.
        ("POST", "/v1/imports") => [503, 503, 403, 403, 503, 503],
        ("POST", "/v1/jobs/{id}/cancel") => [200, 200, 403, 403, 404, 404],
        // Seeing a snapshot is not using it: a Reader is told no.
        ("POST", "/v1/snapshots/{id}/copy") => [201, 201, 403, 404, 404, 404],
        ("GET", "/v1/permissions/{id}") => [200, 200, 200, 404, 404, 404],
        ("PATCH", "/v1/permissions/{id}") => [200, 200, 403, 404, 404, 404],
        ("POST", "/v1/images") => [201, 201, 403, 403, 404, 404],
        ("GET", "/v1/images/{id}") => [200, 200, 200, 404, 404, 404],
        ("DELETE", "/v1/images/{id}") => [200, 200, 403, 404, 404, 404],
        ("POST", "/v1/images/{id}/disks" | "/v1/images/{id}/copy") => {
            [201, 201, 403, 404, 404, 404]
        }
        ("POST", "/v1/shares") => [201, 201, 403, 403, 404, 404],
        ("GET", "/v1/shares/{id}") => [200, 200, 200, 404, 404, 404],
        ("PATCH" | "DELETE", "/v1/shares/{id}") => [200, 200, 403, 404, 404, 404],
        // An account's invitations: its role holders (a principal with no
        // role there sees the account, so it is told no).
        ("GET", "/v1/invitations") => [200, 200, 200, 403, 200, 200],
        ("POST", "/v1/invitations/{id}/accept" | "/v1/invitations/{id}/reject") => {
            [200, 200, 403, 403, 404, 404]
        }
        ("POST", "/v1/disks") => [201, 201, 403, 403, 404, 404],
        ("GET", "/v1/disks/{id}") => [200, 200, 200, 404, 404, 404],
        ("DELETE", "/v1/disks/{id}") => [200, 200, 403, 404, 404, 404],
        ("POST", "/v1/disks/{id}/resize") => [200, 200, 403, 404, 404, 404],
        ("POST", "/v1/disks/{id}/attach") => [201, 201, 403, 404, 404, 404],
        ("POST", "/v1/disks/{id}/detach") => [200, 200, 403, 404, 404, 404],
        ("POST", "/v1/snapshots") => [201, 201, 403, 404, 404, 404],
        ("GET", "/v1/snapshots/{id}") => [200, 200, 200, 404, 404, 404],
        ("DELETE", "/v1/snapshots/{id}") => [200, 200, 403, 404, 404, 404],
        // The deployment is no secret: 403, not 404.
        ("POST", "/v1/tenants") => [201, 403, 403, 403, 403, 403],
        // Everyone sees its home tenant (not its contents).
        ("GET", "/v1/tenants/{id}") => [200, 200, 200, 200, 200, 404],
        // A disk's tags change with `disks/write` on it.
        ("PATCH", "/v1/tags/{id}") => [200, 200, 403, 404, 404, 404],
        // Its policy is changed by `org/write` on the tenant.
        ("PATCH", "/v1/tenants/{id}") => [200, 403, 403, 403, 403, 404],
        ("POST", "/v1/folders") => [201, 403, 403, 403, 403, 404],
        ("GET", "/v1/folders") => [200, 200, 200, 200, 200, 404],
        // Folders are seen only by roles at the folder or above.
        ("GET", "/v1/folders/{id}") => [200, 404, 404, 404, 404, 404],
        ("DELETE", "/v1/folders/{id}") => [200, 404, 404, 404, 404, 404],
        ("POST", "/v1/accounts") => [201, 403, 403, 403, 403, 404],
        ("GET", "/v1/accounts/{id}") => [200, 200, 200, 200, 404, 404],
        // Usage adds up the account's disks and snapshots: read with them.
        ("GET", "/v1/accounts/{id}/usage") => [200, 200, 200, 403, 404, 404],
        // The account's Owner may not move it out of its tenant's root
        // without `org/write` there: that would take it from the tenant's
        // role holders.
        ("POST", "/v1/accounts/{id}/move") => [200, 403, 403, 403, 404, 404],
        ("POST", "/v1/principals") => [201, 201, 403, 403, 404, 404],
        ("GET", "/v1/principals") => [200, 200, 200, 200, 404, 404],
        ("GET", "/v1/principals/{id}") => [200, 200, 200, 404, 404, 404],
        ("DELETE", "/v1/principals/{id}") => [200, 200, 403, 404, 404, 404],
        ("POST", "/v1/principals/{id}/tokens") => [201, 201, 403, 404, 404, 404],
        ("GET", "/v1/principals/{id}/tokens") => [200, 200, 200, 404, 404, 404],
        ("POST", "/v1/tokens/{id}/revoke") => [200, 200, 403, 404, 404, 404],
        ("POST", "/v1/role-assignments") => [201, 201, 403, 404, 404, 404],
        // The stranger sees its home account, not who holds roles there.
        ("GET", "/v1/role-assignments") => [200, 200, 200, 403, 404, 404],
        ("DELETE", "/v1/role-assignments/{id}") => [200, 200, 403, 404, 404, 404],
        ("POST", "/v1/iam/explain") => [200, 200, 200, 404, 404, 404],
        ("GET", "/v1/admin/fsck" | "/v1/admin/nodes") => [200, 403, 403, 403, 403, 403],
        ("POST", "/v1/admin/gc") => [200, 403, 403, 403, 403, 403],
        ("POST", "/v1/vaults") => [201, 201, 403, 403, 404, 404],
        ("GET", "/v1/vaults") => [200; 6],
        ("GET", "/v1/vaults/{id}" | "/v1/vaults/{id}/keys") => [200, 200, 200, 404, 404, 404],
        ("PATCH" | "DELETE", "/v1/vaults/{id}") => [200, 200, 403, 404, 404, 404],
        ("POST", "/v1/vaults/{id}/recover" | "/v1/vaults/{id}/purge") => {
            [200, 200, 403, 404, 404, 404]
        }
        ("GET", "/v1/vaults/{id}/import-key") => [200, 200, 403, 404, 404, 404],
        ("POST", "/v1/vaults/{id}/keys") => [201, 201, 403, 404, 404, 404],
        ("GET", "/v1/keys/{id}" | "/v1/keys/{id}/versions") => [200, 200, 200, 404, 404, 404],
        ("PATCH" | "DELETE", "/v1/keys/{id}") => [200, 200, 403, 404, 404, 404],
        ("POST", "/v1/keys/{id}/rotate" | "/v1/keys/{id}/recover" | "/v1/keys/{id}/purge") => {
            [200, 200, 403, 404, 404, 404]
        }
        (
            "POST",
            "/v1/keys/{id}/encrypt"
            | "/v1/keys/{id}/decrypt"
            | "/v1/keys/{id}/wrap"
            | "/v1/keys/{id}/unwrap"
            | "/v1/keys/{id}/generate-data-key"
            | "/v1/keys/{id}/re-encrypt",
        ) => [200, 200, 403, 404, 404, 404],
        // Grants: `keys/grant` (Owner, Key Vault Administrator); a Reader
        // sees the key, so it is told no; a grant's parties may retire it.
        ("POST", "/v1/keys/{id}/grants") => [201, 201, 403, 404, 404, 404],
        ("GET", "/v1/keys/{id}/grants") => [200, 200, 403, 404, 404, 404],
        ("DELETE", "/v1/grants/{id}") | ("POST", "/v1/grants/{id}/retire") => {
            [200, 200, 403, 404, 404, 404]
        }
        ("POST", "/v1/vaults/{id}/secrets") => [201, 201, 403, 404, 404, 404],
        ("GET", "/v1/vaults/{id}/secrets" | "/v1/secrets/{id}") => [200, 200, 200, 404, 404, 404],
        // A Reader sees a secret, never its value.
        ("GET", "/v1/secrets/{id}/value") | ("DELETE", "/v1/secrets/{id}") => {
            [200, 200, 403, 404, 404, 404]
        }
        ("POST", "/v1/secrets/{id}/recover" | "/v1/secrets/{id}/purge") => {
            [200, 200, 403, 404, 404, 404]
        }
        ("POST", "/v1/encryption-sets") => [201, 201, 403, 403, 404, 404],
        ("GET", "/v1/encryption-sets") => [200; 6],
        ("GET", "/v1/encryption-sets/{id}") => [200, 200, 200, 404, 404, 404],
        ("PATCH" | "DELETE", "/v1/encryption-sets/{id}") => [200, 200, 403, 404, 404, 404],
        // The whole audit log is the deployment's operators' (no key named).
        ("GET", "/v1/audit") | ("POST", "/v1/audit/verify") => [200, 403, 403, 403, 403, 403],
        _ => return None,
    })
}

/// The resources one call acts on.
#[derive(Debug, Clone)]
struct Fixtures {
    disk: String,
    attached_disk: String,
    snapshot: String,
    folder: String,
    principal: String,
    token: String,
    assignment: String,
    vault: String,
    deleted_vault: String,
    key: String,
    deleted_key: String,
    ciphertext: String,
    wrapped: String,
    secret: String,
    deleted_secret: String,
    protected_key: String,
    set: String,
    grant: String,
    image: String,
    share: String,
    /// Pending, addressed to the first account by a share of another
    /// tenant's account.
    invitation: String,
    /// A re-encrypting copy, running (no runner in this test's service).
    job: String,
    /// An export of `snapshot`.
    export: String,
}

struct World {
    _dir: tempfile::TempDir,
    _db: TestMetadata,
    base: String,
    http: reqwest::Client,
    tokens: Vec<Option<String>>,
    admin: String,
    tenant: String,
    account: String,
    move_folder: String,
    /// An account of another tenant (its shares invite the first account).
    foreign_account: String,
}

impl World {
    async fn call(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// As the admin; the call must succeed.
    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self
            .call(Some(&self.admin), method, path, body.as_ref())
            .await;
        assert!((200..300).contains(&s), "{method} {path} as admin: {s} {v}");
        v
    }

    async fn fixtures(&self) -> Fixtures {
        let disk = self
            .admin(
                "POST",
                "/v1/disks",
                Some(json!({"name": uniq("d"), "zone": "local-a", "size": "1MiB"})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let attached_disk = self
            .admin(
                "POST",
                "/v1/disks",
                Some(json!({"name": uniq("a"), "zone": "local-a", "size": "1MiB"})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        self.admin("POST", &format!("/v1/disks/{attached_disk}/attach"), None)
            .await;
        let snapshot = self
            .admin(
                "POST",
                "/v1/snapshots",
                Some(json!({"name": uniq("s"), "disk_id": disk})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let folder = self
            .admin(
                "POST",
                "/v1/folders",
                Some(json!({"name": "f", "tenant_id": self.tenant})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let principal = self
            .admin(
                "POST",
                "/v1/principals",
                Some(json!({"name": "x", "account_id": self.account})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let token = self
            .admin(
                "POST",
                &format!("/v1/principals/{principal}/tokens"),
                Some(json!({"name": "t"})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let assignment = self
            .admin(
                "POST",
                "/v1/role-assignments",
                Some(json!({"principal_id": principal, "role": "Reader", "scope": disk})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let new_vault = |name: String| async move {
            self.admin(
                "POST",
                "/v1/vaults",
                Some(json!({"name": name, "account_id": self.account, "retention_days": 7})),
            )
            .await["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let vault = new_vault(uniq("v")).await;
        let deleted_vault = new_vault(uniq("v")).await;
        self.admin("DELETE", &format!("/v1/vaults/{deleted_vault}"), None)
            .await;
        let new_key = || async {
            self.admin(
                "POST",
                &format!("/v1/vaults/{vault}/keys"),
                Some(json!({"name": uniq("k")})),
            )
            .await["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let key = new_key().await;
        let ciphertext = self
            .admin(
                "POST",
                &format!("/v1/keys/{key}/encrypt"),
                Some(json!({"plaintext": "c2VjcmV0", "context": "c"})),
            )
            .await["ciphertext"]
            .as_str()
            .unwrap()
            .to_string();
        let wrapped = self
            .admin(
                "POST",
                &format!("/v1/keys/{key}/wrap"),
                Some(json!({"key": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="})),
            )
            .await["ciphertext"]
            .as_str()
            .unwrap()
            .to_string();
        let deleted_key = new_key().await;
        let new_secret = || async {
            self.admin(
                "POST",
                &format!("/v1/vaults/{vault}/secrets"),
                Some(json!({"name": uniq("s"), "value": "c2VjcmV0"})),
            )
            .await["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let secret = new_secret().await;
        let protected = self
            .admin(
                "POST",
                "/v1/vaults",
                Some(json!({"name": uniq("pv"), "account_id": self.account, "purge_protection": true})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let protected_key = self
            .admin(
                "POST",
                &format!("/v1/vaults/{protected}/keys"),
                Some(json!({"name": uniq("k")})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let set = self
            .admin(
                "POST",
                "/v1/encryption-sets",
                Some(json!({"name": uniq("des"), "key_id": protected_key, "account_id": self.account})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let deleted_secret = new_secret().await;
        self.admin("DELETE", &format!("/v1/secrets/{deleted_secret}"), None)
            .await;
        self.admin("DELETE", &format!("/v1/keys/{deleted_key}"), None)
            .await;
        let grant = self
            .admin(
                "POST",
                &format!("/v1/keys/{key}/grants"),
                Some(json!({"grantee_id": principal, "operations": ["Decrypt"]})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let image = self
            .admin(
                "POST",
                "/v1/images",
                Some(json!({"name": uniq("i"), "snapshot_ids": [snapshot], "account_id": self.account})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let share = self
            .admin(
                "POST",
                "/v1/shares",
                Some(json!({"name": uniq("rs"), "account_id": self.account, "resources": [snapshot]})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let invitation = self
            .admin(
                "POST",
                "/v1/shares",
                Some(json!({"name": uniq("inv"), "account_id": self.foreign_account, "principals": [self.account]})),
            )
            .await["principals"][0]["invitation_id"]
            .as_str()
            .unwrap()
            .to_string();
        let job = self
            .admin(
                "POST",
                &format!("/v1/snapshots/{snapshot}/copy"),
                Some(json!({"name": uniq("j"), "rekey": true})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let export = self
            .admin(
                "POST",
                &format!("/v1/snapshots/{snapshot}/exports"),
                Some(json!({})),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        Fixtures {
            export,
            job,
            image,
            share,
            invitation,
            disk,
            attached_disk,
            snapshot,
            folder,
            principal,
            token,
            assignment,
            vault,
            deleted_vault,
            key,
            deleted_key,
            ciphertext,
            wrapped,
            secret,
            deleted_secret,
            protected_key,
            set,
            grant,
        }
    }
}

/// A principal in `account` holding `role` at `scope` (if any), and a token.
async fn member(
    w: &World,
    name: &str,
    account: &str,
    role: Option<(&str, &str)>,
) -> (String, String) {
    let p = w
        .admin(
            "POST",
            "/v1/principals",
            Some(json!({"name": name, "account_id": account})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    if let Some((role, scope)) = role {
        w.admin(
            "POST",
            "/v1/role-assignments",
            Some(json!({"principal_id": p, "role": role, "scope": scope})),
        )
        .await;
    }
    let secret = w
        .admin(
            "POST",
            &format!("/v1/principals/{p}/tokens"),
            Some(json!({})),
        )
        .await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    (p, secret)
}

async fn world() -> (World, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestMetadata::new(dir.path());
    let meta = Meta::open(db.url()).await.unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::open(dir.path().join("objects")).unwrap());
    let root = Arc::new(FileRootKey::load_or_create(&dir.path().join("root.key")).unwrap());
    let vault = KeyVault::open(meta.clone(), root).await.unwrap();
    let config = ServiceConfig {
        lease_ttl: Duration::from_secs(3600),
        // Every fixture set makes shares in the first account.
        quotas: coffer_service::ShareQuotas {
            shares_per_account: 100_000,
            ..coffer_service::ShareQuotas::default()
        },
        ..ServiceConfig::default()
    };
    let svc = Service::new(meta, store, vault, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    svc.join("matrix", &format!("http://{addr}"), "127.0.0.1:1")
        .await
        .unwrap();
    let admin = svc.bootstrap().await.unwrap().unwrap().to_string();
    let limits = coffer_api::Limits::default();
    let app = router(svc, &limits, None);
    tokio::spawn(coffer_api::serve(
        listener,
        app,
        limits,
        None,
        std::future::pending(),
    ));
    let mut w = World {
        _dir: dir,
        _db: db,
        base: format!("http://{addr}"),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        tokens: vec![],
        admin: admin.clone(),
        tenant: String::new(),
        account: String::new(),
        move_folder: String::new(),
        foreign_account: String::new(),
    };
    let who = w.admin("GET", "/v1/whoami", None).await;
    w.tenant = who["tenant_id"].as_str().unwrap().to_string();
    w.account = who["account_id"].as_str().unwrap().to_string();
    w.move_folder = w
        .admin(
            "POST",
            "/v1/folders",
            Some(json!({"name": "moves", "tenant_id": w.tenant})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a1 = w.account.clone();
    let (owner, owner_t) = member(&w, "owner", &a1, Some(("Owner", &a1))).await;
    let (reader, reader_t) = member(&w, "reader", &a1, Some(("Reader", &a1))).await;
    let (stranger, stranger_t) = member(&w, "stranger", &a1, None).await;
    let a2 = w
        .admin(
            "POST",
            "/v1/accounts",
            Some(json!({"name": "second", "tenant_id": w.tenant})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (other_account, other_account_t) = member(&w, "neighbour", &a2, Some(("Owner", &a2))).await;
    let t2 = w
        .admin("POST", "/v1/tenants", Some(json!({"name": "elsewhere"})))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b1 = w
        .admin(
            "POST",
            "/v1/accounts",
            Some(json!({"name": "theirs", "tenant_id": t2})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (other_tenant, other_tenant_t) = member(&w, "foreigner", &b1, Some(("Owner", &t2))).await;
    w.foreign_account = b1.clone();
    // A token lives at least a minute: make one, then put its expiry in
    // the past in the database, as if the minute had passed.
    let expiring = w
        .admin(
            "POST",
            &format!("/v1/principals/{owner}/tokens"),
            Some(json!({"expires_in": "1m"})),
        )
        .await;
    let expired = expiring["secret"].as_str().unwrap().to_string();
    assert_eq!(
        w._db.execute(&format!(
            "UPDATE tokens SET expires_at = '2000-01-01T00:00:00.000Z' WHERE id = '{}'",
            expiring["id"].as_str().unwrap()
        )),
        1
    );
    let revoked = w
        .admin(
            "POST",
            &format!("/v1/principals/{owner}/tokens"),
            Some(json!({})),
        )
        .await;
    w.admin(
        "POST",
        &format!("/v1/tokens/{}/revoke", revoked["id"].as_str().unwrap()),
        None,
    )
    .await;
    let admin_id = who["principal_id"].as_str().unwrap().to_string();
    w.tokens = vec![
        Some(admin),
        Some(owner_t),
        Some(reader_t),
        Some(stranger_t),
        Some(other_account_t),
        Some(other_tenant_t),
        Some(expired),
        Some(revoked["secret"].as_str().unwrap().to_string()),
        None,
    ];
    let ids = vec![
        admin_id,
        owner,
        reader,
        stranger,
        other_account,
        other_tenant,
    ];
    (w, ids)
}

/// The concrete request for a route: path, body, and the (action, target)
/// `iam explain` is asked about (`None` when the route has no single target:
/// lists, or a move that also needs the destination).
fn request(w: &World, spec: &RouteSpec, fx: &Fixtures) -> (String, Option<Value>, Option<String>) {
    let id = match spec.path.as_str() {
        p if p.starts_with("/v1/disks/{id}/detach") => fx.attached_disk.clone(),
        p if p.starts_with("/v1/disks/{id}") => fx.disk.clone(),
        p if p.starts_with("/v1/snapshots/{id}") => fx.snapshot.clone(),
        p if p.starts_with("/v1/tenants/{id}") => w.tenant.clone(),
        p if p.starts_with("/v1/folders/{id}") => fx.folder.clone(),
        p if p.starts_with("/v1/accounts/{id}") => w.account.clone(),
        p if p.starts_with("/v1/principals/{id}") => fx.principal.clone(),
        p if p.starts_with("/v1/tokens/{id}") => fx.token.clone(),
        p if p.starts_with("/v1/role-assignments/{id}") => fx.assignment.clone(),
        "/v1/vaults/{id}/recover" | "/v1/vaults/{id}/purge" => fx.deleted_vault.clone(),
        p if p.starts_with("/v1/vaults/{id}") => fx.vault.clone(),
        "/v1/keys/{id}/recover" | "/v1/keys/{id}/purge" => fx.deleted_key.clone(),
        p if p.starts_with("/v1/keys/{id}") => fx.key.clone(),
        "/v1/secrets/{id}/recover" | "/v1/secrets/{id}/purge" => fx.deleted_secret.clone(),
        p if p.starts_with("/v1/secrets/{id}") => fx.secret.clone(),
        p if p.starts_with("/v1/encryption-sets/{id}") => fx.set.clone(),
        p if p.starts_with("/v1/grants/{id}") => fx.grant.clone(),
        p if p.starts_with("/v1/images/{id}") => fx.image.clone(),
        p if p.starts_with("/v1/permissions/{id}") => fx.snapshot.clone(),
        p if p.starts_with("/v1/shares/{id}") => fx.share.clone(),
        p if p.starts_with("/v1/invitations/{id}") => fx.invitation.clone(),
        p if p.starts_with("/v1/jobs/{id}") => fx.job.clone(),
        p if p.starts_with("/v1/exports/{id}") || p.starts_with("/v1/pull/{id}") => {
            fx.export.clone()
        }
        p if p.starts_with("/v1/tags/{id}") => fx.disk.clone(),
        _ => String::new(),
    };
    let mut path = spec.path.replace("{id}", &id).replace("{role}", "root");
    if spec.path.ends_with("/map") || spec.path.ends_with("/data") {
        path += "?offset=0&length=4096";
    } else if spec.path.ends_with("/changed") {
        path += "?after=0&from=0&to=4";
    }
    let (path, body, target) = match (spec.method, spec.path.as_str()) {
        ("POST", "/v1/disks") => (
            path,
            Some(
                json!({"name": uniq("n"), "zone": "local-a", "size": "1MiB", "account_id": w.account}),
            ),
            Some(w.account.clone()),
        ),
        ("POST", "/v1/disks/{id}/resize") => (path, Some(json!({"size": "2MiB"})), Some(id)),
        ("POST", "/v1/snapshots") => (
            path,
            Some(json!({"name": uniq("n"), "disk_id": fx.disk})),
            Some(fx.disk.clone()),
        ),
        ("POST", "/v1/snapshots/{id}/copy" | "/v1/images/{id}/copy") => {
            (path, Some(json!({"name": uniq("c")})), Some(id))
        }
        ("PATCH", "/v1/permissions/{id}" | "/v1/shares/{id}") => {
            (path, Some(json!({"add_principals": []})), Some(id))
        }
        ("POST", "/v1/images") => (
            path,
            Some(
                json!({"name": uniq("i"), "snapshot_ids": [fx.snapshot], "account_id": w.account}),
            ),
            Some(w.account.clone()),
        ),
        ("POST", "/v1/images/{id}/disks") => (
            path,
            Some(json!({"name": uniq("l"), "zone": "local-a", "account_id": w.account})),
            Some(id),
        ),
        ("POST", "/v1/shares") => (
            path,
            Some(json!({"name": uniq("rs"), "account_id": w.account})),
            Some(w.account.clone()),
        ),
        // A job is acted on through its account; its 404s and 403s differ
        // from the account's, so explain is not asked. So is an export.
        (_, "/v1/jobs/{id}" | "/v1/jobs/{id}/cancel" | "/v1/exports/{id}") => (path, None, None),
        ("POST", "/v1/snapshots/{id}/exports" | "/v1/images/{id}/exports") => {
            (path, Some(json!({"expires_in_hours": 1})), Some(id))
        }
        // Allowed, an import then needs a client of other deployments,
        // which this test's service has none of (503).
        ("POST", "/v1/imports") => (
            path,
            Some(json!({
                "name": uniq("imp"),
                "endpoint": "https://127.0.0.1:9",
                "export_id": fx.export,
                "token": "coffer_pull_x",
            })),
            None,
        ),
        // An invitation is answered for the account it invites.
        ("POST", "/v1/invitations/{id}/accept" | "/v1/invitations/{id}/reject") => {
            (path, None, Some(w.account.clone()))
        }
        ("POST", "/v1/tenants") => (path, Some(json!({"name": "n"})), Some("/".into())),
        ("PATCH", "/v1/tags/{id}") => (
            path,
            Some(json!({"set": {"env": "test"}, "remove": ["old"]})),
            None,
        ),
        ("PATCH", "/v1/tenants/{id}") => (
            path,
            Some(json!({"allow_cross_tenant_key_grants": false})),
            Some(w.tenant.clone()),
        ),
        ("POST", "/v1/folders" | "/v1/accounts") => (
            path,
            Some(json!({"name": "n", "tenant_id": w.tenant})),
            Some(w.tenant.clone()),
        ),
        ("GET", "/v1/folders") => (
            format!("{path}?tenant={}", w.tenant),
            None,
            Some(w.tenant.clone()),
        ),
        ("POST", "/v1/accounts/{id}/move") => {
            (path, Some(json!({"folder_id": w.move_folder})), None)
        }
        ("POST", "/v1/principals") => (
            path,
            Some(json!({"name": "n", "account_id": w.account})),
            Some(w.account.clone()),
        ),
        ("GET", "/v1/principals") => (
            format!("{path}?account={}", w.account),
            None,
            Some(w.account.clone()),
        ),
        ("POST", "/v1/principals/{id}/tokens") => (path, Some(json!({})), Some(id)),
        ("POST", "/v1/tokens/{id}/revoke") => (path, None, Some(fx.principal.clone())),
        ("POST", "/v1/role-assignments") => (
            path,
            Some(json!({"principal_id": fx.principal, "role": "Reader", "scope": fx.snapshot})),
            Some(fx.snapshot.clone()),
        ),
        ("GET", "/v1/role-assignments") => (
            format!("{path}?scope={}", w.account),
            None,
            Some(w.account.clone()),
        ),
        ("DELETE", "/v1/role-assignments/{id}") => (path, None, Some(fx.disk.clone())),
        ("POST", "/v1/iam/explain") => (
            path,
            Some(
                json!({"principal_id": fx.principal, "action": "disks/read", "resource_id": fx.disk}),
            ),
            None,
        ),
        ("GET" | "POST", p) if p.starts_with("/v1/admin/") => (path, None, Some("/".into())),
        ("POST", "/v1/vaults") => (
            path,
            Some(json!({"name": uniq("v"), "account_id": w.account})),
            Some(w.account.clone()),
        ),
        ("PATCH", "/v1/vaults/{id}") => (path, Some(json!({"retention_days": 30})), Some(id)),
        ("POST", "/v1/vaults/{id}/keys") => (path, Some(json!({"name": uniq("k")})), Some(id)),
        ("POST", "/v1/encryption-sets") => (
            path,
            Some(json!({"name": uniq("des"), "key_id": fx.protected_key, "account_id": w.account})),
            Some(w.account.clone()),
        ),
        ("PATCH", "/v1/encryption-sets/{id}") => (path, Some(json!({"key_version": 1})), Some(id)),
        ("POST", "/v1/vaults/{id}/secrets") => (
            path,
            Some(json!({"name": uniq("s"), "value": "dmFsdWU="})),
            Some(id),
        ),
        ("PATCH", "/v1/keys/{id}") => (path, Some(json!({"enabled": true})), Some(id)),
        ("POST", "/v1/keys/{id}/rotate" | "/v1/keys/{id}/generate-data-key") => {
            (path, Some(json!({})), Some(id))
        }
        ("POST", "/v1/keys/{id}/encrypt") => {
            (path, Some(json!({"plaintext": "aGVsbG8="})), Some(id))
        }
        ("POST", "/v1/keys/{id}/decrypt") => (
            path,
            Some(json!({"ciphertext": fx.ciphertext, "context": "c"})),
            Some(id),
        ),
        ("POST", "/v1/keys/{id}/wrap") => (
            path,
            Some(json!({"key": "MDEyMzQ1Njc4OWFiY2RlZg=="})),
            Some(id),
        ),
        ("POST", "/v1/keys/{id}/unwrap") => {
            (path, Some(json!({"ciphertext": fx.wrapped})), Some(id))
        }
        ("POST", "/v1/keys/{id}/re-encrypt") => (
            path,
            Some(
                json!({"ciphertext": fx.ciphertext, "context": "c", "destination_key_id": fx.key}),
            ),
            Some(id),
        ),
        ("POST", "/v1/audit/verify") => (path, None, Some("/".into())),
        ("POST", "/v1/keys/{id}/grants") => (
            path,
            Some(json!({"grantee_id": fx.principal, "operations": ["Decrypt", "Describe"]})),
            Some(id),
        ),
        // A grant is acted on through its key.
        ("DELETE", "/v1/grants/{id}") => (path, None, Some(fx.key.clone())),
        (_, p) if p.contains("{id}") => (path, None, Some(id)),
        _ => (path, None, None),
    };
    let target = match spec.policy {
        Policy::Action(_) => target,
        _ => None,
    };
    (path, body, target)
}

#[test]
fn every_route_has_a_row_and_the_openapi_document_agrees() {
    let mut missing = vec![];
    for r in routes() {
        if expected(r.method, &r.path).is_none() {
            missing.push(format!("{} {}", r.method, r.path));
        }
        let public = matches!(r.policy, Policy::Public);
        assert_eq!(
            public,
            matches!(r.path.as_str(), "/healthz" | "/openapi.json"),
            "{} {} is {:?}: only health and the OpenAPI document are public",
            r.method,
            r.path,
            r.policy
        );
    }
    assert!(
        missing.is_empty(),
        "routes without an expected row in the matrix: {missing:?}"
    );
    let doc = serde_json::to_value(coffer_api::openapi()).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    // Every route, public ones included, is in the document, with its
    // policy as `x-coffer-policy`.
    let routed: BTreeSet<String> = routes()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    for r in routes() {
        let op = &doc["paths"][&r.path][r.method.to_lowercase()];
        assert_eq!(
            op["x-coffer-policy"].as_str(),
            Some(r.policy.label().as_str()),
            "{} {}: the document's policy",
            r.method,
            r.path
        );
    }
    assert_eq!(
        routed, documented,
        "the router and the OpenAPI document differ"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix() {
    let (w, ids) = world().await;
    let shared = w.fixtures().await;
    let mut failures = vec![];
    let mut explained = 0;
    for spec in routes() {
        let row = expected(spec.method, &spec.path).expect("row (checked by the other test)");
        for (c, caller) in CALLERS.iter().enumerate() {
            let want = if c < 6 {
                row[c]
            } else if matches!(spec.policy, Policy::Public) {
                200
            } else {
                401
            };
            let mutates = spec.method != "GET";
            let fx = if mutates && (200..300).contains(&want) {
                w.fixtures().await
            } else {
                shared.clone()
            };
            let (path, body, target) = request(&w, &spec, &fx);
            // The reason for every outcome of an action-guarded route, from
            // `iam explain`, asked by the admin about this caller before the
            // call (a delete removes its target).
            let explanation = match (spec.policy, &target, c < 6) {
                (Policy::Action(a), Some(target), true) => Some(
                    w.admin(
                        "POST",
                        "/v1/iam/explain",
                        Some(json!({"principal_id": ids[c], "action": a.as_str(), "resource_id": target})),
                    )
                    .await,
                ),
                _ => None,
            };
            let (got, v) = w
                .call(w.tokens[c].as_deref(), spec.method, &path, body.as_ref())
                .await;
            let case = format!("{} {} as {caller}", spec.method, spec.path);
            if got != want {
                failures.push(format!("{case}: want {want}, got {got} {v}"));
                continue;
            }
            let code = v["error"]["code"].as_str().unwrap_or("");
            let message = v["error"]["message"].as_str().unwrap_or("");
            match got {
                401 => assert_eq!(code, "Unauthenticated", "{case}: {v}"),
                404 => {
                    assert!(code.ends_with("NotFound"), "{case}: {v}");
                    assert!(
                        !message.contains("holds"),
                        "{case}: a 404 must not explain roles: {v}"
                    );
                }
                403 => {
                    assert_eq!(code, "AuthorizationFailed", "{case}: {v}");
                    // The missing action is named, with what to do next.
                    if let Policy::Action(a) = spec.policy {
                        assert!(
                            message.contains(&format!("'{a}'")),
                            "{case}: 403 must name '{a}': {v}"
                        );
                    }
                    assert!(message.contains("ask an Owner"), "{case}: {v}");
                }
                _ => {}
            }
            if let Some(e) = explanation {
                let status = e["status"].as_u64().unwrap();
                let agree = match got {
                    200 | 201 => status == 200 && e["decision"] == "allow",
                    s => status == u64::from(s) && e["decision"] == "deny",
                };
                let reasons = e["reasons"].as_array().unwrap();
                if !agree || reasons.is_empty() {
                    failures.push(format!("{case}: explain disagrees with {got}: {e}"));
                    continue;
                }
                if got == 403 {
                    assert_eq!(
                        reasons[0].as_str().unwrap(),
                        message,
                        "{case}: the 403 and explain give one reason"
                    );
                }
                if e["decision"] == "allow" {
                    let why = reasons[0].as_str().unwrap();
                    assert!(why.starts_with("allowed: "), "{case}: {e}");
                    if why.contains("role assignment") {
                        assert!(e["assignment_id"].is_string(), "{case}: {e}");
                    }
                }
                explained += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(explained > 100, "only {explained} outcomes explained");

    // Lists show each caller exactly what it may read.
    // Lists answer a page: `{"items": [...], "next": ...}`.
    let sees = |v: &Value, id: &str| {
        v["items"]
            .as_array()
            .unwrap_or_else(|| panic!("not a page: {v}"))
            .iter()
            .any(|x| x["id"] == id)
    };
    for (c, caller) in CALLERS.iter().enumerate().take(6) {
        let (_, disks) = w
            .call(w.tokens[c].as_deref(), "GET", "/v1/disks", None)
            .await;
        let (_, snaps) = w
            .call(w.tokens[c].as_deref(), "GET", "/v1/snapshots", None)
            .await;
        let (_, accounts) = w
            .call(w.tokens[c].as_deref(), "GET", "/v1/accounts", None)
            .await;
        let inside = c < 3;
        assert_eq!(
            sees(&disks, &shared.disk),
            inside,
            "{caller} disks: {disks}"
        );
        assert_eq!(
            sees(&snaps, &shared.snapshot),
            inside,
            "{caller} snapshots: {snaps}"
        );
        assert_eq!(
            sees(&accounts, &w.account),
            c < 4,
            "{caller} accounts: {accounts}"
        );
    }
    // Nothing the denied calls touched was changed or lost.
    for p in [
        format!("/v1/disks/{}", shared.disk),
        format!("/v1/snapshots/{}", shared.snapshot),
        format!("/v1/folders/{}", shared.folder),
        format!("/v1/principals/{}", shared.principal),
    ] {
        w.admin("GET", &p, None).await;
    }
    let tokens = w
        .admin(
            "GET",
            &format!("/v1/principals/{}/tokens", shared.principal),
            None,
        )
        .await;
    assert_eq!(tokens["items"][0]["state"], "active", "{tokens}");
    let d = w
        .admin("GET", &format!("/v1/disks/{}", shared.disk), None)
        .await;
    assert_eq!(
        d["size_bytes"],
        1 << 20,
        "a denied resize changed the disk: {d}"
    );
    let a = w
        .admin("GET", &format!("/v1/disks/{}", shared.attached_disk), None)
        .await;
    assert_eq!(a["state"], "attached", "a denied detach detached: {a}");
    let ra = w
        .admin(
            "GET",
            &format!("/v1/role-assignments?scope={}", shared.disk),
            None,
        )
        .await;
    assert!(sees(&ra, &shared.assignment), "{ra}");
}
