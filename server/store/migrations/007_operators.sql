-- Operators by name: accounts with roles, console sessions, scoped API tokens, and the audit
-- trail naming the person and whether a fresh code (step-up) confirmed the change.
CREATE TABLE operators (
    id                   bigserial PRIMARY KEY,
    email                text NOT NULL UNIQUE,
    role                 text NOT NULL CHECK (role IN ('owner', 'operator', 'viewer', 'door')),
    password_hash        text NOT NULL,
    must_change_password boolean NOT NULL DEFAULT true,
    totp_secret          text NOT NULL,
    totp_pending_secret  text,
    totp_last_step       bigint NOT NULL DEFAULT 0,
    disabled_at          timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    created_by           text NOT NULL
);

CREATE TABLE operator_recovery_codes (
    operator_id bigint NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    code_hash   text NOT NULL,
    used_at     timestamptz,
    PRIMARY KEY (operator_id, code_hash)
);

-- Console sessions: only a hash of the session id is stored.
CREATE TABLE operator_sessions (
    id_hash       text PRIMARY KEY,
    operator_id   bigint NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    csrf_token    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    step_up_until timestamptz,
    address       text NOT NULL
);
CREATE INDEX operator_sessions_operator ON operator_sessions (operator_id);

-- Scoped API tokens for automation: only a hash of the token is stored.
CREATE TABLE api_tokens (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    token_hash        text NOT NULL UNIQUE,
    scopes            text[] NOT NULL,
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    revoked_at        timestamptz,
    last_used_at      timestamptz,
    last_used_address text
);

-- Changes to operators and tokens belong to no event.
ALTER TABLE audit_log ALTER COLUMN event_id DROP NOT NULL;
ALTER TABLE audit_log ADD COLUMN step_up boolean NOT NULL DEFAULT false;
CREATE INDEX audit_log_accounts ON audit_log (id DESC) WHERE event_id IS NULL;
