-- Risk memory of the processor group. Observations feed the velocity and amount rules,
-- locations the impossible-travel rule (read cache-aside through Redis), and each
-- decision is kept with its explanation so a redelivered event gets the same answer.
CREATE TABLE consumer.risk_observations (
    payment_id       uuid        PRIMARY KEY,
    user_id          uuid        NOT NULL,
    card_fingerprint text        NOT NULL DEFAULT '',
    currency_code    char(3)     NOT NULL,
    amount_minor     bigint      NOT NULL,
    occur_time       timestamptz NOT NULL
);
CREATE INDEX risk_observations_user_idx ON consumer.risk_observations (user_id, occur_time);
CREATE INDEX risk_observations_card_idx ON consumer.risk_observations (card_fingerprint, occur_time)
    WHERE card_fingerprint <> '';

-- The last known card-present location per subject ("user:<id>" or "card:<fingerprint>").
CREATE TABLE consumer.risk_locations (
    subject      text             PRIMARY KEY,
    latitude     double precision NOT NULL,
    longitude    double precision NOT NULL,
    city         text             NOT NULL DEFAULT '',
    country_code text             NOT NULL DEFAULT '',
    payment_id   uuid             NOT NULL,
    seen_time    timestamptz      NOT NULL
);

CREATE TABLE consumer.risk_decisions (
    payment_id  uuid        PRIMARY KEY,
    user_id     uuid        NOT NULL,
    decision    text        NOT NULL CHECK (decision IN ('APPROVE', 'REVIEW', 'DENY')),
    rule        text        NOT NULL DEFAULT '',
    explanation text        NOT NULL,
    findings    jsonb       NOT NULL DEFAULT '[]',
    decide_time timestamptz NOT NULL DEFAULT now()
);
