//! Every statement the PostgreSQL store runs, one module per table, so that a column added
//! in a migration is changed here and in the shared `store::columns` only, whose lists
//! (`columns!`) the `SELECT`s read.

pub(super) mod clients {
    use crate::store::columns::select;

    pub(crate) const INSERT: &str = "INSERT INTO clients (id, secret_hash, auth_method, name, \
        redirect_uris, grant_types, registered_by, created_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    pub(crate) const BY_ID: &str = select!(client, "FROM clients WHERE id = $1");
    pub(crate) const ALL: &str = select!(client, "FROM clients ORDER BY id");
    pub(crate) const DELETE: &str = "DELETE FROM clients WHERE id = $1";
}

pub(super) mod api_keys {
    use crate::store::columns::select;

    pub(crate) const INSERT: &str =
        "INSERT INTO api_keys (hash, permissions, created_at) VALUES ($1, $2, $3)";
    pub(crate) const BY_HASH: &str = select!(api_key, "FROM api_keys WHERE hash = $1");
}

pub(super) mod grants {
    use crate::store::columns::select;

    pub(crate) const INSERT: &str = r#"INSERT INTO grants (id, "user", client_id, scope, created_at, revoked_at, resource) VALUES ($1, $2, $3, $4, $5, $6, $7)"#;
    pub(crate) const BY_ID: &str = select!(grant, "FROM grants WHERE id = $1");
    pub(crate) const REVOKE: &str =
        "UPDATE grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
    pub(crate) const REVOKE_OF_CLIENT: &str =
        "UPDATE grants SET revoked_at = $2 WHERE client_id = $1 AND revoked_at IS NULL";
    /// Revoked more than the grace ago (their refresh tokens go first, see `SWEEP`).
    pub(crate) const SWEEP_REVOKED: &str = "DELETE FROM grants WHERE revoked_at < $1";
    /// Old and without a refresh token left.
    pub(crate) const SWEEP_ORPHANED: &str = "DELETE FROM grants WHERE created_at < $1 AND \
        NOT EXISTS (SELECT 1 FROM refresh_tokens WHERE refresh_tokens.grant_id = grants.id)";
}

pub(super) mod codes {
    use crate::store::columns::select;

    pub(crate) const INSERT: &str = r#"INSERT INTO codes (hash, "user", client_id, redirect_uri, code_challenge, scope, expires_at, failed_attempts, grant_id, resource) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"#;
    pub(crate) const BY_HASH: &str = select!(code, "FROM codes WHERE hash = $1");
    pub(crate) const FAILED: &str = "UPDATE codes SET failed_attempts = failed_attempts + 1 \
        WHERE hash = $1 RETURNING failed_attempts";
    /// Only the first redemption changes a row: the single winner.
    pub(crate) const REDEEM: &str =
        "UPDATE codes SET grant_id = $2 WHERE hash = $1 AND grant_id IS NULL";
    pub(crate) const DELETE: &str = "DELETE FROM codes WHERE hash = $1";
    pub(crate) const DELETE_OF_CLIENT: &str = "DELETE FROM codes WHERE client_id = $1";
    pub(crate) const SWEEP: &str = "DELETE FROM codes WHERE expires_at < $1";
}

pub(super) mod refresh_tokens {
    use crate::store::columns::select;

    pub(crate) const INSERT: &str = "INSERT INTO refresh_tokens (hash, grant_id, expires_at, \
        spent_at) VALUES ($1, $2, $3, $4)";
    pub(crate) const BY_HASH: &str = select!(refresh, "FROM refresh_tokens WHERE hash = $1");
    /// Only the first rotation changes a row: the single winner.
    pub(crate) const SPEND: &str =
        "UPDATE refresh_tokens SET spent_at = $2 WHERE hash = $1 AND spent_at IS NULL";
    /// Expired past the grace, or of a grant revoked past it (explicitly rather than by
    /// cascade, so that they are counted).
    pub(crate) const SWEEP: &str = "DELETE FROM refresh_tokens WHERE expires_at < $1 OR \
        grant_id IN (SELECT id FROM grants WHERE revoked_at < $1)";
}

pub(super) mod devices {
    use crate::store::columns::select;

    pub(crate) const INSERT: &str = r#"INSERT INTO devices (device_hash, user_code, client_id, scope, expires_at, poll_interval, last_poll, status, "user", resource) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"#;
    pub(crate) const BY_HASH: &str = select!(device, "FROM devices WHERE device_hash = $1");
    pub(crate) const BY_USER_CODE: &str = select!(device, "FROM devices WHERE user_code = $1");
    /// Locks the row until the poll is recorded: two polls at once each see the other's.
    pub(crate) const LAST_POLL: &str =
        "SELECT last_poll FROM devices WHERE device_hash = $1 FOR UPDATE";
    pub(crate) const POLLED: &str =
        "UPDATE devices SET last_poll = $2, poll_interval = $3 WHERE device_hash = $1";
    pub(crate) const DECIDE: &str = r#"UPDATE devices SET status = $2, "user" = $3 WHERE user_code = $1 AND status = 'pending'"#;
    /// Only the first finish changes a row: the single winner.
    pub(crate) const FINISH: &str = "UPDATE devices SET status = 'finished' \
        WHERE device_hash = $1 AND status = 'approved'";
    pub(crate) const DELETE_OF_CLIENT: &str = "DELETE FROM devices WHERE client_id = $1";
    pub(crate) const SWEEP: &str = "DELETE FROM devices WHERE expires_at < $1";
}

pub(super) mod consents {
    pub(crate) const SCOPE: &str =
        r#"SELECT scope FROM consents WHERE "user" = $1 AND client_id = $2"#;
    pub(crate) const PUT: &str = r#"INSERT INTO consents ("user", client_id, scope, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT ("user", client_id) DO UPDATE SET scope = excluded.scope, updated_at = excluded.updated_at"#;
    pub(crate) const DELETE_OF_CLIENT: &str = "DELETE FROM consents WHERE client_id = $1";
}

pub(super) mod signing_keys {
    use crate::store::columns::select;

    /// Newest first; of two made in the same second, the one inserted last.
    pub(crate) const ALL: &str = select!(
        signing_key,
        "FROM signing_keys ORDER BY created_at DESC, seq DESC"
    );
    pub(crate) const INSERT: &str = "INSERT INTO signing_keys (kid, algorithm, private_pkcs8, \
        created_at, retired_at) VALUES ($1, $2, $3, $4, $5)";
    /// A key retired already keeps its first retirement time.
    pub(crate) const RETIRE: &str =
        "UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL";
    /// Every unretired key but the new one.
    pub(crate) const RETIRE_OTHERS: &str =
        "UPDATE signing_keys SET retired_at = $2 WHERE kid <> $1 AND retired_at IS NULL";
    /// A key not retired yet is kept: it may be the one signing now.
    pub(crate) const DELETE: &str =
        "DELETE FROM signing_keys WHERE kid = $1 AND retired_at IS NOT NULL";
    /// Rotations of several instances queue here; readers are not held up.
    pub(crate) const LOCK: &str = "LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE";
    /// Whether another rotation got there first.
    pub(crate) const YOUNG_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM signing_keys \
        WHERE retired_at IS NULL AND created_at > $1)";
}

pub(super) mod server_secrets {
    /// The first writer's secret stays.
    pub(crate) const INSERT_ABSENT: &str = "INSERT INTO server_secrets (name, secret) \
        VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
    pub(crate) const BY_NAME: &str = "SELECT secret FROM server_secrets WHERE name = $1";
}

/// Sweeps of several instances do not queue: the one that finds this taken leaves the work
/// to the other.
pub(super) const SWEEP_LOCK: &str = "SELECT pg_try_advisory_xact_lock($1)";
