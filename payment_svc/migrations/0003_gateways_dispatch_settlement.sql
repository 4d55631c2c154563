-- Gateway registry, dispatch records and applied gateway callbacks.

CREATE TABLE payments.gateways (
    id                       text        PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    wire_format              text        NOT NULL CHECK (wire_format IN ('json', 'soap', 'protobuf')),
    topic                    text        NOT NULL,
    kinds                    text[]      NOT NULL,
    currency_codes           text[]      NOT NULL,
    priority                 integer     NOT NULL DEFAULT 0,
    enabled                  boolean     NOT NULL DEFAULT true,
    -- X25519 public key (32 raw bytes) the card is sealed to.
    public_key               bytea       NOT NULL CHECK (length(public_key) = 32),
    callback_timeout_seconds integer     NOT NULL DEFAULT 30 CHECK (callback_timeout_seconds > 0),
    create_time              timestamptz NOT NULL DEFAULT now()
);

-- HMAC secrets for callbacks; two may be active while one rotates.
CREATE TABLE payments.gateway_secrets (
    gateway_id  text        NOT NULL REFERENCES payments.gateways (id),
    secret_id   text        NOT NULL,
    secret      bytea       NOT NULL CHECK (length(secret) >= 32),
    active      boolean     NOT NULL DEFAULT true,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, secret_id)
);

-- Where and when a payment was handed to a gateway; attempt grows on re-dispatch.
CREATE TABLE payments.dispatches (
    payment_id        uuid        PRIMARY KEY REFERENCES payments.payments (id),
    gateway_id        text        NOT NULL REFERENCES payments.gateways (id),
    attempt           integer     NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    callback_deadline timestamptz NOT NULL,
    update_time       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dispatches_deadline_idx ON payments.dispatches (callback_deadline);

-- Every callback event applied, so a replay has no effect (the primary key decides).
CREATE TABLE payments.callback_events (
    event_id    text        PRIMARY KEY CHECK (length(event_id) BETWEEN 1 AND 200),
    gateway_id  text        NOT NULL REFERENCES payments.gateways (id),
    payment_id  uuid        NOT NULL REFERENCES payments.payments (id),
    outcome     text        NOT NULL,
    apply_time  timestamptz NOT NULL DEFAULT now()
);
