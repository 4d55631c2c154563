-- The payment system of record: payments, the card vault, client idempotency keys, a
-- double-entry ledger with holds, and the transactional outbox. One transaction writes
-- a payment, its vaulted card, its hold and its outbox row, or none of them.

CREATE TABLE payments.payments (
    id              uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('DEPOSIT', 'WITHDRAWAL', 'PURCHASE')),
    status          text        NOT NULL CHECK (status IN ('PENDING', 'REQUIRES_VERIFICATION',
                                    'PROCESSING', 'COMPLETED', 'FAILED', 'DENIED', 'CANCELED',
                                    'EXPIRED')),
    funding_source  text        CHECK (funding_source IN ('CARD', 'WALLET')),
    currency_code   char(3)     NOT NULL,
    amount_minor    bigint      NOT NULL CHECK (amount_minor > 0),
    description     text        NOT NULL DEFAULT '',
    -- Card display data only; the number itself lives encrypted in payments.cards.
    card_brand      text,
    card_masked     text,
    card_exp_month  smallint,
    card_exp_year   smallint,
    card_fingerprint text,
    merchant        jsonb,
    failure_code    text        NOT NULL DEFAULT '',
    failure_message text        NOT NULL DEFAULT '',
    version         bigint      NOT NULL DEFAULT 1 CHECK (version >= 1),
    create_time     timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now()
);
-- ListPayments: newest first per user, keyset-paginated on (create_time, id).
CREATE INDEX payments_user_time_idx ON payments.payments (user_id, create_time DESC, id DESC);
CREATE INDEX payments_status_time_idx ON payments.payments (status, update_time);

-- The vault: AES-256-GCM ciphertext of the PAN, bound to its payment by associated data.
CREATE TABLE payments.cards (
    payment_id  uuid  PRIMARY KEY REFERENCES payments.payments (id),
    key_id      text  NOT NULL,
    nonce       bytea NOT NULL,
    ciphertext  bytea NOT NULL,
    fingerprint text  NOT NULL
);
CREATE INDEX cards_fingerprint_idx ON payments.cards (fingerprint);

-- Client idempotency, scoped to the user; uniqueness is the database's job.
CREATE TABLE payments.idempotency_keys (
    user_id         uuid        NOT NULL,
    idempotency_key text        NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash    text        NOT NULL,
    -- Deferred: the key is inserted first, so a concurrent duplicate waits on it and
    -- then sees the committed winner, before the payment row exists.
    payment_id      uuid        NOT NULL REFERENCES payments.payments (id)
                                DEFERRABLE INITIALLY DEFERRED,
    create_time     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, idempotency_key)
);

-- Ledger: one account per (owner, purpose, currency). Wallets belong to users; the
-- external "world" account (card networks) and merchant settlement are system-owned.
CREATE TABLE payments.ledger_accounts (
    id            bigserial PRIMARY KEY,
    owner_user_id uuid,
    purpose       text    NOT NULL CHECK (purpose IN ('WALLET', 'EXTERNAL', 'MERCHANTS')),
    currency_code char(3) NOT NULL,
    -- Posted balance (sum of postings) and funds reserved by active holds. A wallet's
    -- available balance (balance - held) may never go negative.
    balance_minor bigint  NOT NULL DEFAULT 0,
    held_minor    bigint  NOT NULL DEFAULT 0 CHECK (held_minor >= 0),
    CONSTRAINT wallet_has_owner CHECK ((purpose = 'WALLET') = (owner_user_id IS NOT NULL)),
    CONSTRAINT wallet_available_not_negative
        CHECK (purpose <> 'WALLET' OR balance_minor - held_minor >= 0)
);
CREATE UNIQUE INDEX ledger_accounts_owner_key
    ON payments.ledger_accounts (coalesce(owner_user_id, '00000000-0000-0000-0000-000000000000'),
                                 purpose, currency_code);

CREATE TABLE payments.journal_entries (
    id          bigserial   PRIMARY KEY,
    payment_id  uuid        NOT NULL REFERENCES payments.payments (id),
    description text        NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payments.postings (
    id           bigserial PRIMARY KEY,
    entry_id     bigint    NOT NULL REFERENCES payments.journal_entries (id),
    account_id   bigint    NOT NULL REFERENCES payments.ledger_accounts (id),
    amount_minor bigint    NOT NULL CHECK (amount_minor <> 0)
);
CREATE INDEX postings_entry_idx ON payments.postings (entry_id);
CREATE INDEX postings_account_idx ON payments.postings (account_id);

-- A hold reserves wallet funds for a payment in flight: ACTIVE until the payment
-- settles (POSTED) or fails (RELEASED). One per payment.
CREATE TABLE payments.holds (
    payment_id   uuid        PRIMARY KEY REFERENCES payments.payments (id),
    account_id   bigint      NOT NULL REFERENCES payments.ledger_accounts (id),
    amount_minor bigint      NOT NULL CHECK (amount_minor > 0),
    status       text        NOT NULL CHECK (status IN ('ACTIVE', 'POSTED', 'RELEASED')),
    create_time  timestamptz NOT NULL DEFAULT now(),
    update_time  timestamptz NOT NULL DEFAULT now()
);

-- Transactional outbox: written in the same transaction as the change it announces,
-- published to Kafka by the relay, marked sent only after the broker acknowledged it.
CREATE TABLE payments.outbox (
    id           bigserial   PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    topic        text        NOT NULL,
    message_key  text        NOT NULL,
    event_type   text        NOT NULL,
    payload      bytea       NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT now(),
    sent_time    timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX outbox_unsent_idx ON payments.outbox (id) WHERE sent_time IS NULL;

-- Wake the relay as soon as a transaction that wrote outbox rows commits (NOTIFY is
-- delivered at commit, never for a rolled-back transaction).
CREATE FUNCTION payments.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('payments_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON payments.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION payments.notify_outbox();
