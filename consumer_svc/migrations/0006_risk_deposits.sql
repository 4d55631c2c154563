-- Card deposits as the risk rules know them, for the withdrawal_card rule: a withdrawal
-- is paid out only to a card with a COMPLETED deposit of the same user. A deposit is
-- OPEN from the processor's (non-DENY) decision until its final status event says
-- COMPLETED or FAILED (FAILED, DENIED, CANCELED and EXPIRED alike). Deposits settled
-- before this table existed are not known: a withdrawal to their card is refused until
-- the card funds the wallet again.
CREATE TABLE consumer.risk_deposits (
    payment_id       uuid        PRIMARY KEY,
    user_id          uuid        NOT NULL,
    card_fingerprint text        NOT NULL,
    status           text        NOT NULL DEFAULT 'OPEN'
                                 CHECK (status IN ('OPEN', 'COMPLETED', 'FAILED')),
    create_time      timestamptz NOT NULL,
    settle_time      timestamptz
);
CREATE INDEX risk_deposits_user_card_idx ON consumer.risk_deposits (user_id, card_fingerprint);
