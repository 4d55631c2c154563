-- Step-up verification of payments the risk rules flag (REQUIRES_VERIFICATION).
-- The payment carries why it was flagged and whether its owner passed; the challenge
-- row keeps only a keyed hash of the one-time code, never the code.
ALTER TABLE payments.payments
    ADD COLUMN verification_reason text    NOT NULL DEFAULT '',
    ADD COLUMN verified            boolean NOT NULL DEFAULT false;

CREATE TABLE payments.verifications (
    payment_id      uuid        PRIMARY KEY REFERENCES payments.payments (id),
    -- HMAC-SHA256(key, payment id ":" code); replaced when the code is re-issued.
    code_hash       bytea       NOT NULL CHECK (length(code_hash) = 32),
    failed_attempts smallint    NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    issue_count     smallint    NOT NULL DEFAULT 1 CHECK (issue_count >= 1),
    issue_time      timestamptz NOT NULL,
    expire_time     timestamptz NOT NULL,
    -- Set once, when the challenge closes.
    outcome         text        CHECK (outcome IN ('VERIFIED', 'DECLINED', 'FAILED', 'EXPIRED')),
    answer_time     timestamptz
);
-- The janitor's question: which open challenges have expired?
CREATE INDEX verifications_open_expiry_idx ON payments.verifications (expire_time)
    WHERE outcome IS NULL;
