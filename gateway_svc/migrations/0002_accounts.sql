-- Accounts: credentials and users in separate tables (a user has exactly one credential),
-- plus the durable half of sessions and refresh tokens. Live session state is in Redis.

CREATE TABLE auth.credentials (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    password_hash text        NOT NULL,
    register_time timestamptz NOT NULL DEFAULT now()
);
-- Unique without regard to case: the database enforces it, never a read-then-write.
CREATE UNIQUE INDEX credentials_email_lower_key ON auth.credentials (lower(email));

CREATE TABLE auth.users (
    id            uuid PRIMARY KEY,
    credential_id uuid NOT NULL UNIQUE REFERENCES auth.credentials (id),
    first_name    text NOT NULL CHECK (length(first_name) BETWEEN 1 AND 100),
    last_name     text NOT NULL CHECK (length(last_name) BETWEEN 1 AND 100),
    role          text NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'admin'))
);

CREATE TABLE auth.sessions (
    id            uuid        PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES auth.users (id),
    create_time   timestamptz NOT NULL DEFAULT now(),
    expire_time   timestamptz NOT NULL,
    revoke_time   timestamptz,
    revoke_reason text
);
CREATE INDEX sessions_user_idx ON auth.sessions (user_id);

-- Refresh tokens are stored only as SHA-256 digests. used_time is set when the token is
-- rotated; presenting a token whose used_time is set revokes its whole session.
CREATE TABLE auth.refresh_tokens (
    token_hash  bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id  uuid        NOT NULL REFERENCES auth.sessions (id),
    issue_time  timestamptz NOT NULL DEFAULT now(),
    expire_time timestamptz NOT NULL,
    used_time   timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON auth.refresh_tokens (session_id);
