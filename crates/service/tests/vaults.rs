//! Key vaults and customer keys through the service, on real SQLite or
//! PostgreSQL and the built-in key vault: the lifecycle rules (soft delete,
//! recover, purge refused under purge protection, a purge destroys the
//! material), keys generated and imported (raw AES, PKCS#8 RSA, and
//! wrapped under the vault's import key), rotation, and the audit record
//! each step leaves, verified as a chain.

mod common;

use std::sync::Arc;

use base64::Engine;
use coffer_crypto::keys::{KeyAlgorithm, KeyMaterial, pem, pem_body, wrap_for_import};
use coffer_service::model::{CreateKey, CreateVault, RotateKey, UpdateKey, UpdateVault};
use coffer_service::{ErrorCode, Service};
use coffer_testkit::TestMetadata;
use coffer_types::{KeyState, Lifecycle};
use coffer_wire::{AuditQuery, ListParams};

struct World {
    _dir: tempfile::TempDir,
    db: TestMetadata,
    svc: Arc<Service>,
    admin: coffer_service::Caller,
}

async fn world() -> World {
    let (dir, db, svc, admin) = common::world().await;
    World {
        _dir: dir,
        db,
        svc,
        admin,
    }
}

fn vault_req(name: &str, purge_protection: bool) -> CreateVault {
    CreateVault {
        name: name.into(),
        region: None,
        account_id: None,
        soft_delete: None,
        retention_days: Some(7),
        purge_protection: Some(purge_protection),
        external: None,
    }
}

fn key_req(name: &str) -> CreateKey {
    CreateKey {
        name: name.into(),
        key_type: None,
        material: None,
        wrapped_material: None,
        disabled: None,
        not_before: None,
        expires_at: None,
        rotation_days: None,
    }
}

/// A vault with purge protection, a key in it, an encryption set of
/// `kind` for the key, and the set's identity given the role on the key:
/// (key, set).
async fn key_and_set(
    svc: &Service,
    admin: &coffer_service::Caller,
    name: &str,
    kind: Option<coffer_types::EncryptionType>,
) -> (
    coffer_service::model::Key,
    coffer_service::model::EncryptionSet,
) {
    use coffer_service::model::{CreateEncryptionSet, CreateRoleAssignment};
    let v = svc
        .create_vault(admin, vault_req(name, true))
        .await
        .unwrap();
    let k = svc.create_key(admin, &v.id, key_req("k")).await.unwrap();
    let set = svc
        .create_encryption_set(
            admin,
            CreateEncryptionSet {
                name: format!("{name}-des"),
                key_id: k.id.clone(),
                key_version: None,
                encryption_type: kind,
                account_id: None,
            },
        )
        .await
        .unwrap();
    svc.create_role_assignment(
        admin,
        CreateRoleAssignment {
            principal_id: set.identity_id.clone(),
            role: "Key Vault Crypto Service Encryption User".into(),
            scope: k.id.clone(),
        },
    )
    .await
    .unwrap();
    (k, set)
}

/// A disk `data` of `size` bytes in zone local-a under encryption set
/// `set`.
async fn disk_under(
    svc: &Service,
    admin: &coffer_service::Caller,
    set: &coffer_service::model::EncryptionSet,
    size: u64,
) -> coffer_service::model::Disk {
    svc.create_disk(
        admin,
        coffer_service::model::CreateDisk {
            name: "data".into(),
            zone: "local-a".into(),
            size: Some(coffer_types::ByteSize(size)),
            source_snapshot_id: None,
            account_id: None,
            encryption_set_id: Some(set.id.clone()),
            tags: Default::default(),
        },
    )
    .await
    .unwrap()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_deleted_softly_recovered_and_purged_only_when_allowed() {
    let w = world().await;
    let (svc, admin) = (&w.svc, &w.admin);
    let v = svc
        .create_vault(admin, vault_req("vault1", true))
        .await
        .unwrap();
    assert!(v.soft_delete && v.purge_protection);
    assert_eq!(v.state, Lifecycle::Active);
    // Names are unique per account; protection only turns on.
    let e = svc
        .create_vault(admin, vault_req("vault1", false))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NameTaken);
    let e = svc
        .update_vault(
            admin,
            &v.id,
            UpdateVault {
                soft_delete: None,
                retention_days: None,
                purge_protection: Some(false),
                transit_token: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Irreversible);
    let mut bad = vault_req("vault2", false);
    bad.retention_days = Some(6);
    assert_eq!(
        svc.create_vault(admin, bad).await.unwrap_err().code,
        ErrorCode::InvalidRetention
    );

    let k = svc.create_key(admin, &v.id, key_req("k1")).await.unwrap();
    assert_eq!((k.key_type.as_str(), k.current_version), ("AES256", 1));
    // Disable and enable.
    let off = UpdateKey {
        enabled: Some(false),
        not_before: None,
        expires_at: None,
        rotation_days: None,
    };
    assert_eq!(
        svc.update_key(admin, &k.id, off).await.unwrap().enabled,
        KeyState::Disabled
    );
    let on = UpdateKey {
        enabled: Some(true),
        not_before: None,
        expires_at: Some("2099-01-01T00:00:00Z".into()),
        rotation_days: Some(90),
    };
    let k2 = svc.update_key(admin, &k.id, on).await.unwrap();
    assert_eq!(k2.enabled, KeyState::Enabled);
    assert_eq!(k2.expires_at.as_deref(), Some("2099-01-01T00:00:00.000Z"));
    // Rotate twice: three versions, the newest current.
    for n in 2..=3 {
        let r = svc
            .rotate_key(admin, &k.id, RotateKey::default())
            .await
            .unwrap();
        assert_eq!(r.current_version, n);
    }
    let versions = svc.key_versions(admin, &k.id).await.unwrap().items;
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );

    // Delete: soft, listed as deleted, purge refused, recover.
    let d = svc.delete_key(admin, &k.id).await.unwrap();
    assert_eq!(d.state, Lifecycle::Deleted);
    assert!(d.purge_after.is_some());
    let live = svc
        .list_keys(admin, &v.id, ListParams::default())
        .await
        .unwrap();
    assert!(live.items.is_empty());
    let deleted = svc
        .list_keys(
            admin,
            &v.id,
            ListParams {
                state: Some("deleted".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(deleted.items.len(), 1);
    let e = svc
        .rotate_key(admin, &k.id, RotateKey::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ResourceDeleted);
    let e = svc.purge_key(admin, &k.id).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::PurgeProtected, "{}", e.message);
    assert!(e.message.contains("purge protection"), "{}", e.message);
    let r = svc.recover_key(admin, &k.id).await.unwrap();
    assert_eq!(r.state, Lifecycle::Active);
    assert_eq!(
        svc.recover_key(admin, &k.id).await.unwrap_err().code,
        ErrorCode::NotDeleted
    );

    // Once the retention period has passed (moved into the past here, as
    // time would), the purge goes through and destroys the material.
    svc.delete_key(admin, &k.id).await.unwrap();
    w.db.execute(&format!(
        "UPDATE vault_keys SET purge_after = '2000-01-01T00:00:00.000Z' WHERE id = '{}'",
        k.id
    ));
    let p = svc.purge_key(admin, &k.id).await.unwrap();
    assert_eq!(p.state, Lifecycle::Purged);
    let e = svc.get_key(admin, &k.id).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KeyUnusable);
    assert!(e.message.contains("purged"), "{}", e.message);
    let meta = svc.meta();
    let id = k.id.parse().unwrap();
    for v in 1..=3 {
        assert!(
            meta.key_version_material(id, v).await.unwrap().is_empty(),
            "version {v}'s material survived the purge"
        );
    }
    // The name is free again once purged.
    svc.create_key(admin, &v.id, key_req("k1")).await.unwrap();

    // Every step is in the audit log, in order, and the chain verifies.
    let log = svc
        .list_audit(
            admin,
            AuditQuery {
                key: Some(k.id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let actions: Vec<&str> = log.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "key.create",
            "key.disable",
            "key.enable",
            "key.rotate",
            "key.rotate",
            "key.delete",
            "key.purge",
            "key.recover",
            "key.delete",
            "key.purge"
        ]
    );
    assert_eq!(log.items[6].outcome, "denied");
    assert_eq!(log.items[4].key_version, Some(3));
    let verified = svc.verify_audit(admin).await.unwrap();
    assert!(verified.ok, "{verified:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_without_purge_protection_purges_its_keys_and_frees_its_name() {
    let w = world().await;
    let (svc, admin) = (&w.svc, &w.admin);
    let v = svc
        .create_vault(admin, vault_req("scratch", false))
        .await
        .unwrap();
    let k = svc.create_key(admin, &v.id, key_req("k")).await.unwrap();
    let d = svc.delete_vault(admin, &v.id).await.unwrap();
    assert_eq!(d.state, Lifecycle::Deleted);
    // Its keys are unusable while it is deleted, and no key is made in it.
    assert_eq!(
        svc.rotate_key(admin, &k.id, RotateKey::default())
            .await
            .unwrap_err()
            .code,
        ErrorCode::ResourceDeleted
    );
    assert_eq!(
        svc.create_key(admin, &v.id, key_req("k2"))
            .await
            .unwrap_err()
            .code,
        ErrorCode::ResourceDeleted
    );
    svc.recover_vault(admin, &v.id).await.unwrap();
    svc.rotate_key(admin, &k.id, RotateKey::default())
        .await
        .unwrap();
    svc.delete_vault(admin, &v.id).await.unwrap();
    let p = svc.purge_vault(admin, &v.id).await.unwrap();
    assert_eq!(p.state, Lifecycle::Purged);
    assert_eq!(
        svc.get_vault(admin, &v.id).await.unwrap_err().code,
        ErrorCode::VaultNotFound
    );
    let id = k.id.parse().unwrap();
    assert!(
        svc.meta()
            .key_version_material(id, 2)
            .await
            .unwrap()
            .is_empty()
    );
    svc.create_vault(admin, vault_req("scratch", false))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_keys_raw_pkcs8_and_wrapped_under_the_import_key() {
    let w = world().await;
    let (svc, admin) = (&w.svc, &w.admin);
    let v = svc
        .create_vault(admin, vault_req("byok", true))
        .await
        .unwrap();
    // Raw AES-256.
    let mut req = key_req("aes");
    req.material = Some(b64(&[9u8; 32]));
    let k = svc.create_key(admin, &v.id, req).await.unwrap();
    let versions = svc.key_versions(admin, &k.id).await.unwrap().items;
    assert_eq!(versions[0].origin, "imported");
    // The wrong size, or not base64: a clear 400, nothing stored.
    let mut req = key_req("short");
    req.material = Some(b64(&[9u8; 16]));
    let e = svc.create_key(admin, &v.id, req).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidKeyMaterial);
    assert!(e.message.contains("32 bytes"), "{}", e.message);
    let mut req = key_req("junk");
    req.material = Some("not base64!".into());
    assert_eq!(
        svc.create_key(admin, &v.id, req).await.unwrap_err().code,
        ErrorCode::InvalidKeyMaterial
    );
    // An RSA key as PEM: the public part comes back.
    let theirs = KeyMaterial::generate(KeyAlgorithm::Rsa2048).unwrap();
    let stored = theirs.to_secret_bytes().unwrap();
    let der = &stored[b"rsa-pkcs8:".len()..];
    let mut req = key_req("rsa");
    req.key_type = Some("RSA2048".into());
    req.material = Some(pem("PRIVATE KEY", der));
    let k = svc.create_key(admin, &v.id, req).await.unwrap();
    let pub_pem = svc.key_versions(admin, &k.id).await.unwrap().items[0]
        .public_key
        .clone()
        .unwrap();
    assert_eq!(
        pem_body(pub_pem.as_bytes(), "PUBLIC KEY").unwrap().to_vec(),
        theirs.public_key_der().unwrap().unwrap()
    );
    // Wrapped under the vault's import key (BYOK transfer), also as a
    // new version of an existing key.
    let ik = svc.vault_import_key(admin, &v.id).await.unwrap();
    assert_eq!(
        ik.public_key,
        svc.vault_import_key(admin, &v.id).await.unwrap().public_key,
        "one import key per vault"
    );
    let spki = pem_body(ik.public_key.as_bytes(), "PUBLIC KEY").unwrap();
    let mut req = key_req("wrapped");
    req.wrapped_material = Some(b64(&wrap_for_import(&spki, &[5u8; 32]).unwrap()));
    let k = svc.create_key(admin, &v.id, req).await.unwrap();
    let r = svc
        .rotate_key(
            admin,
            &k.id,
            RotateKey {
                material: None,
                wrapped_material: Some(b64(&wrap_for_import(&spki, &[6u8; 32]).unwrap())),
            },
        )
        .await
        .unwrap();
    assert_eq!(r.current_version, 2);
    // A blob for another vault's import key is refused.
    let other = svc
        .create_vault(admin, vault_req("other", true))
        .await
        .unwrap();
    let mut req = key_req("stolen");
    req.wrapped_material = Some(b64(&wrap_for_import(&spki, &[7u8; 32]).unwrap()));
    assert_eq!(
        svc.create_key(admin, &other.id, req)
            .await
            .unwrap_err()
            .code,
        ErrorCode::InvalidKeyMaterial
    );
    // No key material in plaintext in the metadata (PostgreSQL's contents;
    // the SQLite file is scanned by the at-rest test with the data dir).
    let all = w.db.contents();
    for needle in [[9u8; 32], [5u8; 32], [6u8; 32]] {
        assert!(
            !all.windows(32).any(|win| win == needle),
            "imported material stored in plaintext"
        );
    }
}

/// Encrypt, decrypt, wrap, unwrap, data keys and re-encrypt through the
/// API's operations: contexts bind, old versions still open what they
/// made, a disabled key refuses with its reason, and what an imported key
/// wraps opens with the same material outside Coffer (and the reverse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_operations_round_trip_and_interoperate_with_imported_material() {
    use coffer_service::model::{
        DecryptRequest, EncryptRequest, GenerateDataKeyRequest, ReEncryptRequest, UnwrapRequest,
        WrapRequest,
    };
    let w = world().await;
    let (svc, admin) = (&w.svc, &w.admin);
    let v = svc
        .create_vault(admin, vault_req("ops", true))
        .await
        .unwrap();
    let k = svc.create_key(admin, &v.id, key_req("aes")).await.unwrap();
    let enc = |ctx: &str| EncryptRequest {
        plaintext: b64(b"attack at dawn"),
        context: Some(ctx.into()),
    };
    let c1 = svc.key_encrypt(admin, &k.id, enc("disk=1")).await.unwrap();
    let ct1 = c1.ciphertext.clone().unwrap();
    assert!(ct1.starts_with("coffer:v1:"), "{ct1}");
    let dec = |ct: &str, ctx: &str| DecryptRequest {
        ciphertext: ct.into(),
        context: Some(ctx.into()),
    };
    let p = svc
        .key_decrypt(admin, &k.id, dec(&ct1, "disk=1"))
        .await
        .unwrap();
    assert_eq!(p.plaintext.unwrap(), b64(b"attack at dawn"));
    let e = svc
        .key_decrypt(admin, &k.id, dec(&ct1, "disk=2"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidCiphertext);
    // A flipped byte is detected, not returned as data.
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(&ct1["coffer:v1:".len()..])
        .unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let bad = format!("coffer:v1:{}", b64(&raw));
    assert_eq!(
        svc.key_decrypt(admin, &k.id, dec(&bad, "disk=1"))
            .await
            .unwrap_err()
            .code,
        ErrorCode::InvalidCiphertext
    );
    // After a rotation, new ciphertexts name version 2; version 1's still open.
    svc.rotate_key(admin, &k.id, RotateKey::default())
        .await
        .unwrap();
    let c2 = svc.key_encrypt(admin, &k.id, enc("x")).await.unwrap();
    assert!(c2.ciphertext.as_deref().unwrap().starts_with("coffer:v2:"));
    svc.key_decrypt(admin, &k.id, dec(&ct1, "disk=1"))
        .await
        .unwrap();
    // Disabled: refused with the reason; enabled: works again.
    let set = |on| UpdateKey {
        enabled: Some(on),
        not_before: None,
        expires_at: None,
        rotation_days: None,
    };
    svc.update_key(admin, &k.id, set(false)).await.unwrap();
    let e = svc
        .key_decrypt(admin, &k.id, dec(&ct1, "disk=1"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::KeyUnusable);
    assert!(e.message.contains("disabled"), "{}", e.message);
    svc.update_key(admin, &k.id, set(true)).await.unwrap();
    // A data key: its encrypted copy decrypts to its plaintext.
    let dk = svc
        .key_generate_data_key(admin, &k.id, GenerateDataKeyRequest::default())
        .await
        .unwrap();
    let back = svc
        .key_decrypt(admin, &k.id, dec(dk.ciphertext.as_deref().unwrap(), ""))
        .await
        .unwrap();
    assert_eq!(back.plaintext, dk.plaintext);
    // Re-encrypt under an RSA key, then decrypt there.
    let mut rreq = key_req("rsa");
    rreq.key_type = Some("RSA2048".into());
    let r = svc.create_key(admin, &v.id, rreq).await.unwrap();
    let moved = svc
        .key_re_encrypt(
            admin,
            &k.id,
            ReEncryptRequest {
                ciphertext: ct1.clone(),
                context: Some("disk=1".into()),
                destination_key_id: r.id.clone(),
                destination_context: Some("copy".into()),
            },
        )
        .await
        .unwrap();
    let p = svc
        .key_decrypt(
            admin,
            &r.id,
            dec(moved.ciphertext.as_deref().unwrap(), "copy"),
        )
        .await
        .unwrap();
    assert_eq!(p.plaintext.unwrap(), b64(b"attack at dawn"));

    // An imported AES key and the same material outside Coffer wrap and
    // unwrap each other's blobs (AES-KWP, RFC 5649).
    let raw_key = [0x42u8; 32];
    let mut ireq = key_req("imported");
    ireq.material = Some(b64(&raw_key));
    let ik = svc.create_key(admin, &v.id, ireq).await.unwrap();
    let mine = KeyMaterial::import_aes(&raw_key).unwrap();
    let dek = [7u8; 32];
    let wrapped = svc
        .key_wrap(admin, &ik.id, WrapRequest { key: b64(&dek) })
        .await
        .unwrap()
        .ciphertext
        .unwrap();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(&wrapped["coffer:v1:".len()..])
        .unwrap();
    assert_eq!(&mine.unwrap(&blob).unwrap()[..], &dek);
    let theirs = format!("coffer:v1:{}", b64(&mine.wrap(&[8u8; 32]).unwrap()));
    let un = svc
        .key_unwrap(admin, &ik.id, UnwrapRequest { ciphertext: theirs })
        .await
        .unwrap();
    assert_eq!(un.plaintext.unwrap(), b64(&[8u8; 32]));
    // The same for an imported RSA key: Coffer unwraps what the holder of
    // the public key wrapped.
    let rsa = KeyMaterial::generate(KeyAlgorithm::Rsa2048).unwrap();
    let stored = rsa.to_secret_bytes().unwrap();
    let mut rreq = key_req("imported-rsa");
    rreq.key_type = Some("RSA2048".into());
    rreq.material = Some(b64(&stored[b"rsa-pkcs8:".len()..]));
    let rk = svc.create_key(admin, &v.id, rreq).await.unwrap();
    let theirs = format!("coffer:v1:{}", b64(&rsa.wrap(&[9u8; 32]).unwrap()));
    let un = svc
        .key_unwrap(admin, &rk.id, UnwrapRequest { ciphertext: theirs })
        .await
        .unwrap();
    assert_eq!(un.plaintext.unwrap(), b64(&[9u8; 32]));
    // Every use is audited, the failures too.
    let log = svc
        .list_audit(
            admin,
            AuditQuery {
                key: Some(k.id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let failed = log.items.iter().filter(|e| e.outcome == "failed").count();
    assert_eq!(failed, 3, "two bad decrypts and one while disabled");
}

/// Secrets: versions, the size rule, soft delete and recover, purge refused
/// under purge protection, and a purge that destroys every version's
/// value; nothing of a value stored in the clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_keep_versions_and_follow_the_vault_rules() {
    use coffer_service::model::SetSecret;
    use coffer_wire::SecretValueQuery;
    let w = world().await;
    let (svc, admin) = (&w.svc, &w.admin);
    let v = svc.create_vault(admin, vault_req("s", true)).await.unwrap();
    let set = |value: &[u8]| SetSecret {
        name: "luks".into(),
        value: b64(value),
        content_type: Some("text/plain".into()),
    };
    let s1 = svc
        .set_secret(admin, &v.id, set(b"first passphrase"))
        .await
        .unwrap();
    let s2 = svc
        .set_secret(admin, &v.id, set(b"second passphrase"))
        .await
        .unwrap();
    assert_eq!((s1.id.as_str(), s2.current_version), (s2.id.as_str(), 2));
    let get = |version| SecretValueQuery { version };
    let latest = svc
        .get_secret_value(admin, &s1.id, get(None))
        .await
        .unwrap();
    assert_eq!(
        (latest.version, latest.value.as_str()),
        (2, b64(b"second passphrase").as_str())
    );
    let old = svc
        .get_secret_value(admin, &s1.id, get(Some(1)))
        .await
        .unwrap();
    assert_eq!(old.value, b64(b"first passphrase"));
    assert_eq!(
        svc.get_secret_value(admin, &s1.id, get(Some(3)))
            .await
            .unwrap_err()
            .code,
        ErrorCode::SecretNotFound
    );
    for bad in [&b""[..], &[0u8; 25 * 1024 + 1][..]] {
        assert_eq!(
            svc.set_secret(admin, &v.id, set(bad))
                .await
                .unwrap_err()
                .code,
            ErrorCode::InvalidSecret
        );
    }
    // Deleted: its value is refused, its name blocked; recover; purge
    // refused under purge protection, then (retention passed) done.
    svc.delete_secret(admin, &s1.id).await.unwrap();
    assert_eq!(
        svc.get_secret_value(admin, &s1.id, get(None))
            .await
            .unwrap_err()
            .code,
        ErrorCode::ResourceDeleted
    );
    assert_eq!(
        svc.set_secret(admin, &v.id, set(b"x"))
            .await
            .unwrap_err()
            .code,
        ErrorCode::ResourceDeleted
    );
    assert_eq!(
        svc.purge_secret(admin, &s1.id).await.unwrap_err().code,
        ErrorCode::PurgeProtected
    );
    svc.recover_secret(admin, &s1.id).await.unwrap();
    svc.get_secret_value(admin, &s1.id, get(None))
        .await
        .unwrap();
    svc.delete_secret(admin, &s1.id).await.unwrap();
    w.db.execute(&format!(
        "UPDATE vault_secrets SET purge_after = '2000-01-01T00:00:00.000Z' WHERE id = '{}'",
        s1.id
    ));
    svc.purge_secret(admin, &s1.id).await.unwrap();
    assert_eq!(
        svc.get_secret(admin, &s1.id).await.unwrap_err().code,
        ErrorCode::SecretNotFound
    );
    let id = s1.id.parse().unwrap();
    for version in 1..=2 {
        assert_eq!(
            svc.meta().secret_value(id, version).await.unwrap(),
            Some(vec![]),
            "version {version}'s value survived the purge"
        );
    }
    // The name is free again.
    let s3 = svc.set_secret(admin, &v.id, set(b"third")).await.unwrap();
    assert_eq!(s3.current_version, 1);
    assert_ne!(s3.id, s1.id);
    let all = w.db.contents();
    for needle in [&b"first passphrase"[..], b"second passphrase"] {
        assert!(
            !all.windows(needle.len()).any(|x| x == needle),
            "a secret value stored in the clear"
        );
    }
}

/// Seed 004's rules for a disk encryption set: refused on a vault without
/// soft delete or purge protection, with a disabled key, or a version the
/// key lacks; its managed identity is a real principal that reaches the key
/// only once given the role, cannot be deleted on its own, and goes with
/// the set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encryption_set_needs_a_protected_vault_and_its_identity_a_role() {
    use coffer_service::model::{CreateEncryptionSet, CreateRoleAssignment, UpdateEncryptionSet};
    let w = world().await;
    let (svc, admin) = (&w.svc, &w.admin);
    let set_req = |key: &str, version| CreateEncryptionSet {
        name: "des1".into(),
        key_id: key.into(),
        key_version: version,
        encryption_type: None,
        account_id: None,
    };
    // Unprotected vaults are refused, naming what is missing.
    let loose = svc
        .create_vault(admin, vault_req("loose", false))
        .await
        .unwrap();
    let lk = svc
        .create_key(admin, &loose.id, key_req("k"))
        .await
        .unwrap();
    let e = svc
        .create_encryption_set(admin, set_req(&lk.id, None))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::VaultNotProtected);
    assert!(e.message.contains("purge protection"), "{}", e.message);
    // A protected vault: the set is made, its identity without access yet.
    let v = svc
        .create_vault(admin, vault_req("cmk", true))
        .await
        .unwrap();
    let k = svc.create_key(admin, &v.id, key_req("k")).await.unwrap();
    assert_eq!(
        svc.create_encryption_set(admin, set_req(&k.id, Some(2)))
            .await
            .unwrap_err()
            .code,
        ErrorCode::InvalidKeyOperation
    );
    let s = svc
        .create_encryption_set(admin, set_req(&k.id, None))
        .await
        .unwrap();
    assert_eq!(s.encryption_type, coffer_types::EncryptionType::Customer);
    assert!(!s.identity_has_key_access);
    let mut double = set_req(&k.id, None);
    double.name = "des-double".into();
    double.encryption_type = Some(coffer_types::EncryptionType::Double);
    let d = svc.create_encryption_set(admin, double).await.unwrap();
    assert_eq!(d.encryption_type, coffer_types::EncryptionType::Double);
    assert_ne!(d.identity_id, s.identity_id, "an identity per set");
    let identity = svc.get_principal(admin, &s.identity_id).await.unwrap();
    assert_eq!(identity.kind, coffer_types::PrincipalKind::Managed);
    // The role on the key gives it access.
    svc.create_role_assignment(
        admin,
        CreateRoleAssignment {
            principal_id: s.identity_id.clone(),
            role: "Key Vault Crypto Service Encryption User".into(),
            scope: k.id.clone(),
        },
    )
    .await
    .unwrap();
    assert!(
        svc.get_encryption_set(admin, &s.id)
            .await
            .unwrap()
            .identity_has_key_access
    );
    // Pin a version, then a disabled key is refused.
    svc.rotate_key(admin, &k.id, RotateKey::default())
        .await
        .unwrap();
    let pinned = svc
        .update_encryption_set(
            admin,
            &s.id,
            UpdateEncryptionSet {
                key_id: None,
                key_version: Some(2),
            },
        )
        .await
        .unwrap();
    assert_eq!(pinned.key_version, Some(2));
    svc.update_key(
        admin,
        &k.id,
        UpdateKey {
            enabled: Some(false),
            not_before: None,
            expires_at: None,
            rotation_days: None,
        },
    )
    .await
    .unwrap();
    let mut other = set_req(&k.id, None);
    other.name = "des2".into();
    assert_eq!(
        svc.create_encryption_set(admin, other)
            .await
            .unwrap_err()
            .code,
        ErrorCode::KeyUnusable
    );
    // The identity is not deleted on its own; it goes with its set.
    assert_eq!(
        svc.delete_principal(admin, &s.identity_id)
            .await
            .unwrap_err()
            .code,
        ErrorCode::ManagedIdentity
    );
    svc.delete_encryption_set(admin, &s.id).await.unwrap();
    assert_eq!(
        svc.get_principal(admin, &s.identity_id)
            .await
            .unwrap_err()
            .code,
        ErrorCode::PrincipalNotFound
    );
}

/// Revocation of a disk that is open: disabling its key, or taking the
/// set's identity's role away, cuts the open volume off at the next
/// re-check (every half second; called directly here): reads and writes
/// fail, a new connection is refused, and once the key is usable again a
/// new connection opens the disk and reads every flushed byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_disk_is_cut_off_when_its_key_is_revoked_and_opens_again_after() {
    use bytes::Bytes;
    use coffer_nbd::ExportResolver;
    use coffer_service::ExportResolverImpl;
    use coffer_service::model::CreateRoleAssignment;
    let w = world().await;
    let (svc, admin) = (&w.svc, &w.admin);
    svc.join("revoke", "http://revoke.invalid", "127.0.0.1:10809")
        .await
        .unwrap();
    let (k, set) = key_and_set(svc, admin, "cmk", None).await;
    let grant = || CreateRoleAssignment {
        principal_id: set.identity_id.clone(),
        role: "Key Vault Crypto Service Encryption User".into(),
        scope: k.id.clone(),
    };
    let disk = disk_under(svc, admin, &set, 1 << 20).await;
    let resolver = ExportResolverImpl::new(svc.clone());
    let att = svc.attach_disk(admin, &disk.id).await.unwrap();
    let export = att.uri.unwrap().rsplit('/').next().unwrap().to_string();
    let dev = resolver
        .open(&export)
        .await
        .expect("opens under a usable key");
    let data = Bytes::from(vec![0x5au8; 64 * 1024]);
    dev.write(0, data.clone(), true).await.unwrap();
    assert_eq!(dev.read(0, 64 * 1024).await.unwrap(), data);
    assert!(
        svc.recheck_open_keys().await.unwrap().is_empty(),
        "nothing to cut"
    );

    let set_enabled = |on| UpdateKey {
        enabled: Some(on),
        not_before: None,
        expires_at: None,
        rotation_days: None,
    };
    for cause in ["disable", "role"] {
        match cause {
            "disable" => {
                svc.update_key(admin, &k.id, set_enabled(false))
                    .await
                    .unwrap();
            }
            _ => {
                svc.delete_role_assignment(admin, &ra_id(svc, admin, &set.identity_id).await)
                    .await
                    .unwrap();
            }
        }
        let dev = resolver
            .open(&export)
            .await
            .expect("still open until re-checked");
        assert_eq!(
            svc.recheck_open_keys().await.unwrap(),
            vec![disk.id.parse().unwrap()],
            "{cause}: the disk is cut off"
        );
        assert!(
            dev.read(0, 4096).await.is_err(),
            "{cause}: a read after the cut"
        );
        assert!(
            dev.write(0, Bytes::from(vec![1u8; 4096]), true)
                .await
                .is_err(),
            "{cause}: a write after the cut"
        );
        assert!(
            resolver.open(&export).await.is_none(),
            "{cause}: no new connection"
        );
        match cause {
            "disable" => {
                svc.update_key(admin, &k.id, set_enabled(true))
                    .await
                    .unwrap();
            }
            _ => {
                svc.create_role_assignment(admin, grant()).await.unwrap();
            }
        }
        let dev = resolver.open(&export).await.expect("opens again");
        assert_eq!(
            dev.read(0, 64 * 1024).await.unwrap(),
            data,
            "{cause}: data intact"
        );
    }
}

/// The id of the principal's role assignment (the test's only one).
async fn ra_id(
    svc: &std::sync::Arc<coffer_service::Service>,
    admin: &coffer_service::Caller,
    principal: &str,
) -> String {
    let l = svc
        .list_role_assignments(
            admin,
            ListParams {
                principal: Some(principal.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    l.items[0].id.clone()
}

/// Every object in the store, by key.
async fn store_contents(
    svc: &coffer_service::Service,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut all = std::collections::BTreeMap::new();
    for k in svc.store().list("").await.unwrap() {
        let v = svc.store().get(&k).await.unwrap();
        all.insert(k, v.to_vec());
    }
    all
}

/// How many audit entries of `action` name `resource` (any resource if
/// empty).
async fn audit_count(
    svc: &coffer_service::Service,
    admin: &coffer_service::Caller,
    action: &str,
    resource: &str,
) -> usize {
    let q = AuditQuery {
        limit: Some(1000),
        resource: (!resource.is_empty()).then(|| resource.to_string()),
        ..Default::default()
    };
    let page = svc.list_audit(admin, q).await.unwrap();
    page.items.iter().filter(|e| e.action == action).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_three_times_while_attached_rewraps_and_rewrites_nothing() {
    use bytes::Bytes;
    use coffer_nbd::ExportResolver;
    use coffer_service::ExportResolverImpl;
    use coffer_service::model::{CreateDisk, CreateSnapshot};
    let w = world().await;
    let (svc, admin) = (&w.svc, &w.admin);
    svc.join("rotate", "http://rotate.invalid", "127.0.0.1:10809")
        .await
        .unwrap();
    let (k, set) = key_and_set(svc, admin, "cmk", None).await;
    let disk_req = |name: &str, source: Option<String>| CreateDisk {
        name: name.into(),
        zone: "local-a".into(),
        size: Some(coffer_types::ByteSize(4 << 20)),
        source_snapshot_id: source.clone(),
        account_id: None,
        encryption_set_id: source.is_none().then(|| set.id.clone()),
        tags: Default::default(),
    };
    let disk = svc
        .create_disk(admin, disk_req("data", None))
        .await
        .unwrap();
    assert_eq!(audit_count(svc, admin, "key.wrap", &disk.id).await, 1);

    let resolver = ExportResolverImpl::new(svc.clone());
    let att = svc.attach_disk(admin, &disk.id).await.unwrap();
    let export = att.uri.unwrap().rsplit('/').next().unwrap().to_string();
    let dev = resolver.open(&export).await.expect("opens");
    assert_eq!(
        audit_count(svc, admin, "key.unwrap", &disk.id).await,
        1,
        "one unwrap recorded per open, none per block"
    );
    // Region r of the disk holds pattern r: whole chunks and scattered
    // 4 KiB writes (segments), so both object kinds are covered.
    let pattern = |r: u8, len: usize| {
        Bytes::from(
            (0..len)
                .map(|i| u8::try_from(i % 256).unwrap().wrapping_mul(31) ^ r)
                .collect::<Vec<_>>(),
        )
    };
    let mut written: Vec<(u64, Bytes)> = Vec::new();
    let write = async |r: u8| {
        let whole = (u64::from(r) * 1024 * 1024, pattern(r, 256 * 1024));
        let small = (
            u64::from(r) * 1024 * 1024 + 512 * 1024,
            pattern(r ^ 0x80, 4096),
        );
        for (off, data) in [&whole, &small] {
            dev.write(*off, data.clone(), false).await.unwrap();
        }
        dev.flush().await.unwrap();
        [whole, small]
    };
    written.extend(write(0).await);
    let snap = svc
        .create_snapshot(
            admin,
            CreateSnapshot {
                disk_id: disk.id.clone(),
                name: "before".into(),
                tags: Default::default(),
            },
        )
        .await
        .unwrap();
    let before_records = audit_count(svc, admin, "key.wrap", "").await
        + audit_count(svc, admin, "key.unwrap", "").await;
    let child = svc
        .create_disk(admin, disk_req("child", Some(snap.id.clone())))
        .await
        .unwrap();
    assert_eq!(
        audit_count(svc, admin, "key.wrap", &child.id).await,
        1,
        "a disk from the snapshot wraps its own DEK under the set's key"
    );
    assert_eq!(
        audit_count(svc, admin, "key.wrap", "").await
            + audit_count(svc, admin, "key.unwrap", "").await,
        before_records + 1,
        "the snapshot itself used no key"
    );
    let stored = store_contents(svc).await;
    assert!(!stored.is_empty());

    for round in 1..=3u32 {
        let rotated = svc
            .rotate_key(admin, &k.id, RotateKey::default())
            .await
            .unwrap();
        assert_eq!(rotated.current_version, round + 1);
        let pending = svc.get_encryption_set(admin, &set.id).await.unwrap();
        assert_eq!(pending.rewrap.key_version, round + 1);
        assert_eq!(pending.rewrap.data_keys, 2, "the disk's and the child's");
        assert!(
            !pending.rewrap.complete,
            "round {round}: not re-wrapped yet"
        );
        assert_eq!(svc.rewrap_pass().await.unwrap(), 2, "round {round}");
        assert_eq!(svc.rewrap_pass().await.unwrap(), 0, "nothing left");
        let done = svc.get_encryption_set(admin, &set.id).await.unwrap();
        assert!(done.rewrap.complete, "round {round}: {:?}", done.rewrap);
        assert_eq!(done.rewrap.data_keys_current, 2);
        assert_eq!(
            audit_count(svc, admin, "key.rewrap", &set.id).await,
            round as usize,
            "one re-wrap record per set per rotation"
        );
        // The open disk keeps working: what was written reads back, and
        // new writes land.
        written.extend(write(u8::try_from(round).unwrap()).await);
        for (off, data) in &written {
            assert_eq!(
                dev.read(*off, u32::try_from(data.len()).unwrap())
                    .await
                    .unwrap(),
                data,
                "round {round}: at {off}"
            );
        }
        // No object stored before the rotations changed or went away.
        let now = store_contents(svc).await;
        for (key, bytes) in &stored {
            assert_eq!(now.get(key), Some(bytes), "round {round}: object {key}");
        }
    }
    assert_eq!(audit_count(svc, admin, "key.rotate", &k.id).await, 3);
    for d in [&disk, &child] {
        let id = coffer_types::Id::parse_kind(&d.id, coffer_types::Kind::Disk).unwrap();
        let row = svc.meta().disk(id).await.unwrap().unwrap();
        let vol = svc.meta().volume(row.volume_id).await.unwrap();
        let dek = svc.meta().dek(vol.dek_id).await.unwrap();
        assert_eq!(dek.kek_version, 4, "{}: DEK wrapped under v4", d.id);
    }
    // Reopen: the DEK now unwraps under version 4 alone.
    svc.detach_disk(admin, &disk.id).await.unwrap();
    let att = svc.attach_disk(admin, &disk.id).await.unwrap();
    let export = att.uri.unwrap().rsplit('/').next().unwrap().to_string();
    let dev = resolver.open(&export).await.expect("opens again");
    for (off, data) in &written {
        assert_eq!(
            dev.read(*off, u32::try_from(data.len()).unwrap())
                .await
                .unwrap(),
            data
        );
    }
    let entries = svc
        .list_audit(
            admin,
            AuditQuery {
                limit: Some(1000),
                resource: Some(disk.id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let last = entries
        .items
        .iter()
        .rfind(|e| e.action == "key.unwrap")
        .unwrap();
    assert_eq!(last.key_version, Some(4), "the reopen unwrapped under v4");
    assert!(svc.verify_audit(admin).await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_encryption_disk_reads_only_while_both_keys_are_usable() {
    use bytes::Bytes;
    use coffer_nbd::ExportResolver;
    use coffer_service::ExportResolverImpl;
    use coffer_service::model::{CreateDisk, CreateSnapshot};
    use coffer_types::EncryptionType;
    let w = world().await;
    let (svc, admin) = (&w.svc, &w.admin);
    svc.join("double", "http://double.invalid", "127.0.0.1:10809")
        .await
        .unwrap();
    let (k, set) = key_and_set(svc, admin, "cmk", Some(EncryptionType::Double)).await;
    assert_eq!(set.encryption_type, EncryptionType::Double);
    let req = |name: &str, source: Option<String>| CreateDisk {
        name: name.into(),
        zone: "local-a".into(),
        size: Some(coffer_types::ByteSize(2 << 20)),
        source_snapshot_id: source.clone(),
        account_id: None,
        encryption_set_id: source.is_none().then(|| set.id.clone()),
        tags: Default::default(),
    };
    let disk = svc.create_disk(admin, req("data", None)).await.unwrap();
    assert_eq!(disk.encryption.kind, EncryptionType::Double);
    assert_eq!(disk.encryption.key_id, k.id, "the customer key is named");
    let disk_id = coffer_types::Id::parse_kind(&disk.id, coffer_types::Kind::Disk).unwrap();
    let vol = svc
        .meta()
        .volume(svc.meta().disk(disk_id).await.unwrap().unwrap().volume_id)
        .await
        .unwrap();
    let outer = svc
        .meta()
        .dek(vol.dek2_id.expect("a second layer"))
        .await
        .unwrap();
    let platform = svc.meta().vault_key(outer.kek_id).await.unwrap();
    assert_eq!(platform.purpose, "platform", "the outer layer's KEK");
    assert_eq!(
        svc.meta().dek(vol.dek_id).await.unwrap().kek_id.to_string(),
        k.id,
        "the inner layer's KEK"
    );

    let resolver = ExportResolverImpl::new(svc.clone());
    let att = svc.attach_disk(admin, &disk.id).await.unwrap();
    let export = att.uri.unwrap().rsplit('/').next().unwrap().to_string();
    let dev = resolver.open(&export).await.expect("opens");
    let data = Bytes::from(
        (0..256 * 1024u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    );
    dev.write(0, data.clone(), false).await.unwrap();
    dev.write(1 << 20, data.slice(..4096), false).await.unwrap();
    dev.flush().await.unwrap();
    assert_eq!(dev.read(0, 256 * 1024).await.unwrap(), data);

    // Every stored object has two layers (header byte 6), each slot two
    // tags, and holds no plaintext.
    let objects = svc.store().list("objects/").await.unwrap();
    assert!(!objects.is_empty());
    for key in &objects {
        let bytes = svc.store().get(key).await.unwrap();
        let h = coffer_crypto::object::ObjectHeader::decode(&bytes[..64]).unwrap();
        assert_eq!(h.layers(), 2, "{key}");
        assert_eq!(h.deks, (vol.dek_id.value(), vol.dek2_id.map(|d| d.value())));
        assert!(!bytes.windows(64).any(|w| w == &data[4096..4160]), "{key}");
    }

    // The customer key disabled: cut off, and no new open.
    let enabled = |on| UpdateKey {
        enabled: Some(on),
        not_before: None,
        expires_at: None,
        rotation_days: None,
    };
    svc.update_key(admin, &k.id, enabled(false)).await.unwrap();
    assert_eq!(svc.recheck_open_keys().await.unwrap(), vec![disk_id]);
    assert!(dev.read(0, 4096).await.is_err());
    assert!(resolver.open(&export).await.is_none());
    svc.update_key(admin, &k.id, enabled(true)).await.unwrap();
    let dev = resolver.open(&export).await.expect("opens again");
    assert_eq!(dev.read(0, 256 * 1024).await.unwrap(), data);

    // The platform key disabled (an operator's act; no API does it): the
    // same, through the outer layer.
    let set_platform = async |state| {
        svc.meta()
            .update_key(platform.id, state, None, None, None)
            .await
            .unwrap();
    };
    set_platform(KeyState::Disabled).await;
    assert_eq!(svc.recheck_open_keys().await.unwrap(), vec![disk_id]);
    assert!(dev.read(0, 4096).await.is_err());
    assert!(resolver.open(&export).await.is_none());
    set_platform(KeyState::Enabled).await;
    let dev = resolver.open(&export).await.expect("opens again");
    assert_eq!(dev.read(0, 256 * 1024).await.unwrap(), data);

    // A snapshot and a disk from it keep both layers.
    let snap = svc
        .create_snapshot(
            admin,
            CreateSnapshot {
                disk_id: disk.id.clone(),
                name: "s".into(),
                tags: Default::default(),
            },
        )
        .await
        .unwrap();
    assert_eq!(snap.encryption.kind, EncryptionType::Double);
    let child = svc
        .create_disk(admin, req("child", Some(snap.id.clone())))
        .await
        .unwrap();
    assert_eq!(child.encryption.kind, EncryptionType::Double);
    let att = svc.attach_disk(admin, &child.id).await.unwrap();
    let export = att.uri.unwrap().rsplit('/').next().unwrap().to_string();
    let cdev = resolver.open(&export).await.expect("child opens");
    assert_eq!(cdev.read(0, 256 * 1024).await.unwrap(), data);
    cdev.write(8192, data.slice(..4096), true).await.unwrap();
    cdev.flush().await.unwrap();
    assert_eq!(cdev.read(8192, 4096).await.unwrap(), data.slice(..4096));
    drop(dev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_grants_allow_what_they_name_and_end_when_retired_or_revoked() {
    use coffer_service::model::{
        CreateAccount, CreateGrant, CreatePrincipal, CreateTenant, CreateToken, DecryptRequest,
        EncryptRequest,
    };
    let w = world().await;
    let (svc, admin) = (&w.svc, &w.admin);
    let v = svc
        .create_vault(admin, vault_req("grants", true))
        .await
        .unwrap();
    let k = svc.create_key(admin, &v.id, key_req("k")).await.unwrap();
    // A principal of another account of the tenant, one of another tenant.
    let other = svc
        .create_account(
            admin,
            CreateAccount {
                name: "other".into(),
                tenant_id: None,
                folder_id: None,
            },
        )
        .await
        .unwrap();
    let tenant2 = svc
        .create_tenant(admin, CreateTenant { name: "t2".into() })
        .await
        .unwrap();
    let abroad = svc
        .create_account(
            admin,
            CreateAccount {
                name: "abroad".into(),
                tenant_id: Some(tenant2.id.clone()),
                folder_id: None,
            },
        )
        .await
        .unwrap();
    let person = async |name: &str, account: &str| {
        let p = svc
            .create_principal(
                admin,
                CreatePrincipal {
                    name: name.into(),
                    account_id: Some(account.into()),
                    kind: None,
                },
            )
            .await
            .unwrap();
        let t = svc
            .create_token(admin, &p.id, CreateToken::default())
            .await
            .unwrap();
        (p.id.clone(), t.secret)
    };
    // The API authenticates every request afresh: so does this test after
    // each grant change.
    let auth = async |secret: &str| svc.authenticate(secret).await.unwrap();
    let (bob, bob_t) = person("bob", &other.id).await;
    let bob_c = auth(&bob_t).await;
    let (eve, _) = person("eve", &abroad.id).await;
    let enc = |_: ()| EncryptRequest {
        plaintext: b64(b"hello"),
        context: None,
    };

    // No grant: the key does not exist for bob.
    let e = svc.key_encrypt(&bob_c, &k.id, enc(())).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KeyNotFound);
    let req = |grantee: &str, ops: &[&str]| CreateGrant {
        grantee_id: grantee.into(),
        operations: ops.iter().map(|o| (*o).to_string()).collect(),
        name: None,
        retiring_principal_id: None,
        context_equals: None,
    };
    // Unknown operations and other tenants are refused.
    let e = svc
        .create_grant(admin, &k.id, req(&bob, &["Sign"]))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidKeyOperation, "{}", e.message);
    let e = svc
        .create_grant(admin, &k.id, req(&eve, &["Encrypt"]))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::CrossTenantGrant, "{}", e.message);

    // Encrypt and CreateGrant for bob: he encrypts (and a fresh caller
    // sees the grant at once), but may not decrypt.
    let g = svc
        .create_grant(
            admin,
            &k.id,
            req(&bob, &["Encrypt", "Describe", "CreateGrant"]),
        )
        .await
        .unwrap();
    assert_eq!(g.operations, ["Describe", "Encrypt", "CreateGrant"]);
    let bob_c = auth(&bob_t).await;
    let ct = svc.key_encrypt(&bob_c, &k.id, enc(())).await.unwrap();
    let ct = ct.ciphertext.expect("a ciphertext");
    let e = svc
        .key_decrypt(
            &bob_c,
            &k.id,
            DecryptRequest {
                ciphertext: ct.clone(),
                context: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::AuthorizationFailed, "{}", e.message);
    // He may pass on what he holds, not more.
    let (carol, carol_t) = person("carol", &other.id).await;
    let e = svc
        .create_grant(&bob_c, &k.id, req(&carol, &["Decrypt"]))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::AuthorizationFailed, "{}", e.message);
    let cg = svc
        .create_grant(&bob_c, &k.id, req(&carol, &["Encrypt"]))
        .await
        .unwrap();
    // Carol retires her own grant; bob's is revoked by the key's admin.
    let carol_c = auth(&carol_t).await;
    svc.key_encrypt(&carol_c, &k.id, enc(())).await.unwrap();
    assert_eq!(
        svc.retire_grant(&carol_c, &cg.id).await.unwrap().state,
        "retired"
    );
    let carol_c = auth(&carol_t).await;
    assert!(svc.key_encrypt(&carol_c, &k.id, enc(())).await.is_err());
    // Bob may not revoke his own grant (only retire it).
    let e = svc.revoke_grant(&bob_c, &g.id).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::AuthorizationFailed, "{}", e.message);
    let listed = svc.list_grants(admin, &k.id).await.unwrap();
    assert_eq!(listed.items.len(), 1, "only bob's is active");
    assert_eq!(
        svc.revoke_grant(admin, &g.id).await.unwrap().state,
        "revoked"
    );
    let e = svc.revoke_grant(admin, &g.id).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::GrantNotFound);
    let bob_c = auth(&bob_t).await;
    let e = svc.key_encrypt(&bob_c, &k.id, enc(())).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::KeyNotFound, "the key is hidden again");
    // A grant constrained to an encryption context: only with it, and
    // never for operations that take none.
    let mut constrained = req(&bob, &["Encrypt", "Decrypt"]);
    constrained.context_equals = Some("tenant=blue".into());
    let mut bad = constrained.clone();
    bad.operations.push("UnwrapKey".into());
    let e = svc.create_grant(admin, &k.id, bad).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidKeyOperation, "{}", e.message);
    let cg2 = svc.create_grant(admin, &k.id, constrained).await.unwrap();
    assert_eq!(cg2.context_equals.as_deref(), Some("tenant=blue"));
    let bob_c = auth(&bob_t).await;
    let e = svc.key_encrypt(&bob_c, &k.id, enc(())).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::AuthorizationFailed, "{}", e.message);
    assert!(e.message.contains("tenant=blue"), "{}", e.message);
    let blue = |_: ()| EncryptRequest {
        plaintext: b64(b"hello"),
        context: Some("tenant=blue".into()),
    };
    let ct = svc
        .key_encrypt(&bob_c, &k.id, blue(()))
        .await
        .unwrap()
        .ciphertext
        .unwrap();
    let dec = |context: &str| DecryptRequest {
        ciphertext: ct.clone(),
        context: Some(context.into()),
    };
    assert!(
        svc.key_decrypt(&bob_c, &k.id, dec("tenant=red"))
            .await
            .is_err()
    );
    let plain = svc
        .key_decrypt(&bob_c, &k.id, dec("tenant=blue"))
        .await
        .unwrap()
        .plaintext
        .unwrap();
    assert_eq!(plain, b64(b"hello"));
    svc.revoke_grant(admin, &cg2.id).await.unwrap();
    // Each step is in the audit log.
    let page = svc
        .list_audit(
            admin,
            AuditQuery {
                key: Some(k.id.clone()),
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let count = |a: &str, o: &str| {
        page.items
            .iter()
            .filter(|e| e.action == a && e.outcome == o)
            .count()
    };
    assert_eq!(count("grant.create", "allowed"), 3);
    assert_eq!(count("grant.create", "denied"), 1, "the other tenant's");
    assert_eq!(count("grant.retire", "allowed"), 1);
    assert_eq!(count("grant.revoke", "allowed"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_policy_rotates_a_key_once_its_period_has_passed() {
    let w = world().await;
    let (svc, admin) = (&w.svc, &w.admin);
    let v = svc
        .create_vault(admin, vault_req("policy", true))
        .await
        .unwrap();
    let mut req = key_req("yearly");
    req.rotation_days = Some(30);
    let k = svc.create_key(admin, &v.id, req).await.unwrap();
    let plain = svc
        .create_key(admin, &v.id, key_req("never"))
        .await
        .unwrap();
    assert!(
        svc.rotate_due_keys().await.unwrap().is_empty(),
        "a fresh key is not due"
    );
    // Its newest version made 31 days ago, as if time had passed.
    assert_eq!(
        w.db.execute(&format!(
            "UPDATE vault_key_versions SET created_at = '2000-01-01T00:00:00.000Z' WHERE key_id IN ('{}', '{}')",
            k.id, plain.id
        )),
        2
    );
    let rotated = svc.rotate_due_keys().await.unwrap();
    assert_eq!(
        rotated.iter().map(ToString::to_string).collect::<Vec<_>>(),
        std::slice::from_ref(&k.id),
        "only the key with a policy"
    );
    assert_eq!(svc.get_key(admin, &k.id).await.unwrap().current_version, 2);
    assert_eq!(
        svc.get_key(admin, &plain.id).await.unwrap().current_version,
        1
    );
    assert!(
        svc.rotate_due_keys().await.unwrap().is_empty(),
        "the new version is fresh: not due again"
    );
    // A disabled key is left alone.
    assert_eq!(
        w.db.execute(&format!(
            "UPDATE vault_key_versions SET created_at = '2000-01-01T00:00:00.000Z' WHERE key_id = '{}'",
            k.id
        )),
        2
    );
    svc.update_key(
        admin,
        &k.id,
        UpdateKey {
            enabled: Some(false),
            not_before: None,
            expires_at: None,
            rotation_days: Some(30),
        },
    )
    .await
    .unwrap();
    assert!(svc.rotate_due_keys().await.unwrap().is_empty());
    let page = svc
        .list_audit(
            admin,
            AuditQuery {
                key: Some(k.id.clone()),
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let by_policy: Vec<_> = page
        .items
        .iter()
        .filter(|e| e.action == "key.rotate" && e.principal_id == "rotation-policy")
        .collect();
    assert_eq!(by_policy.len(), 1);
    assert_eq!(by_policy[0].key_version, Some(2));
    assert!(svc.verify_audit(admin).await.unwrap().ok);
}

/// A write DEK seals a bounded number of objects (docs/SECURITY.md): once
/// a volume's DEK has sealed its budget (3 here), the volume moves to a
/// fresh one without stopping I/O, wrapped as the old (under double
/// encryption: the inner one by the customer key through the set, audited
/// as the set's identity; the outer one by the platform key). Everything
/// written under the old DEKs reads back after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_moves_to_fresh_write_deks_once_its_deks_sealed_their_budget() {
    use bytes::Bytes;
    use coffer_nbd::ExportResolver;
    use coffer_service::ExportResolverImpl;
    use coffer_types::EncryptionType;
    const BUDGET: u64 = 3;
    const FLUSHES: u64 = 8;
    let (_dir, _db, svc, admin) = common::world_with(coffer_service::ServiceConfig {
        volume: coffer_volume::VolumeConfig {
            dek_object_budget: BUDGET,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (svc, admin) = (&svc, &admin);
    svc.join("budget", "http://budget.invalid", "127.0.0.1:10809")
        .await
        .unwrap();
    let (k, set) = key_and_set(svc, admin, "cmk", Some(EncryptionType::Double)).await;
    let disk = disk_under(svc, admin, &set, 2 << 20).await;
    let disk_id = coffer_types::Id::parse_kind(&disk.id, coffer_types::Kind::Disk).unwrap();
    let vol_id = svc.meta().disk(disk_id).await.unwrap().unwrap().volume_id;
    let first = svc.meta().volume(vol_id).await.unwrap();
    let resolver = ExportResolverImpl::new(svc.clone());
    let att = svc.attach_disk(admin, &disk.id).await.unwrap();
    let export = att.uri.unwrap().rsplit('/').next().unwrap().to_string();
    let dev = resolver.open(&export).await.expect("opens");
    // One 4 KiB write and one flush at a time: one object (a segment)
    // each commit, under both layers' DEKs.
    let block = |i: u64| Bytes::from(vec![u8::try_from(i + 1).unwrap(); 4096]);
    for i in 0..FLUSHES {
        dev.write(i * 65536, block(i), false).await.unwrap();
        dev.flush().await.unwrap();
    }
    let now = svc.meta().volume(vol_id).await.unwrap();
    assert_ne!(now.dek_id, first.dek_id, "a fresh inner DEK");
    assert_ne!(now.dek2_id, first.dek2_id, "a fresh outer DEK");
    let inner = svc.meta().dek(now.dek_id).await.unwrap();
    assert_eq!(
        inner.kek_id.to_string(),
        k.id,
        "wrapped by the customer key"
    );
    assert_eq!(
        inner.encryption_set_id.map(|s| s.to_string()),
        Some(set.id.clone()),
        "through the disk's set"
    );
    let outer = svc.meta().dek(now.dek2_id.unwrap()).await.unwrap();
    let first_outer = svc.meta().dek(first.dek2_id.unwrap()).await.unwrap();
    assert_eq!(outer.kek_id, first_outer.kek_id, "the same platform key");
    // The objects: FLUSHES of them, sealed under DEKs that each sealed at
    // most BUDGET (one object a commit, so a DEK is left the commit that
    // brings it to its budget; the last one may hold fewer), so
    // ceil(FLUSHES / BUDGET) inner DEKs in all.
    let objects: Vec<_> = svc
        .meta()
        .named_v2_objects()
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.writer == vol_id)
        .collect();
    assert_eq!(objects.len() as u64, FLUSHES);
    let inner_deks: std::collections::HashSet<_> = objects.iter().map(|o| o.dek).collect();
    assert_eq!(inner_deks.len() as u64, FLUSHES.div_ceil(BUDGET));
    for d in &inner_deks {
        let n = svc.meta().dek_objects_sealed(*d).await.unwrap();
        assert!(n <= BUDGET, "DEK {d} sealed {n} objects");
        let sealed_here = objects.iter().filter(|o| o.dek == *d).count() as u64;
        assert_eq!(n, sealed_here, "the count of DEK {d} is its objects'");
    }
    assert!(inner_deks.contains(&first.dek_id) && inner_deks.contains(&now.dek_id));
    // The set's identity wrapped each fresh inner DEK, on the record.
    assert_eq!(
        audit_count(svc, admin, "key.wrap", &vol_id.to_string()).await,
        inner_deks.len() - 1
    );
    // A reopen reads every block, each under the DEK that sealed it.
    drop(dev);
    svc.detach_disk(admin, &disk.id).await.unwrap();
    let att = svc.attach_disk(admin, &disk.id).await.unwrap();
    let export = att.uri.unwrap().rsplit('/').next().unwrap().to_string();
    let dev = resolver.open(&export).await.expect("opens again");
    for i in 0..FLUSHES {
        assert_eq!(
            dev.read(i * 65536, 4096).await.unwrap(),
            block(i),
            "block {i}"
        );
    }
}
