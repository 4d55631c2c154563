-- Loyalty and benefits: the state of consumer_svc's insights process (python -m
-- consumer_svc.insights). Each consumer group writes its inbox row (consumer.inbox) in
-- the transaction of its effect, and each effect is keyed by payment id as well, so
-- neither a redelivered event nor a second event about the same payment counts twice.

-- One row per completed purchase counted as a visit.
CREATE TABLE consumer.loyalty_visits (
    payment_id  text        PRIMARY KEY,
    user_id     text        NOT NULL,
    merchant_id text        NOT NULL,
    event_id    text        NOT NULL,
    visit_time  timestamptz NOT NULL
);

-- The running count per (user, merchant); tiers are derived from visits when read, so
-- changing the thresholds needs no backfill.
CREATE TABLE consumer.loyalty_standings (
    user_id         text        NOT NULL,
    merchant_id     text        NOT NULL,
    merchant_name   text        NOT NULL,
    visits          bigint      NOT NULL CHECK (visits > 0),
    last_visit_time timestamptz NOT NULL,
    PRIMARY KEY (user_id, merchant_id)
);
-- ListLoyaltyStandings pages by (visits DESC, merchant_id).
CREATE INDEX loyalty_standings_page_idx
    ON consumer.loyalty_standings (user_id, visits DESC, merchant_id);

-- The admin-managed catalog: what a card brand earns in a merchant category ("*" = any
-- category without an entry of its own).
CREATE TABLE consumer.benefit_catalog (
    brand         text        NOT NULL
        CHECK (brand IN ('VISA', 'MASTERCARD', 'AMERICAN_EXPRESS', 'DISCOVER')),
    category_code text        NOT NULL CHECK (category_code ~ '^([0-9]{4}|\*)$'),
    reward_kind   text        NOT NULL CHECK (reward_kind IN ('CASHBACK', 'POINTS')),
    rate_bps      integer     NOT NULL CHECK (rate_bps BETWEEN 1 AND 10000),
    description   text        NOT NULL DEFAULT '' CHECK (length(description) <= 200),
    update_time   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (brand, category_code)
);

-- Cards a user has paid purchases with, identified by brand and masked number (never
-- the number itself).
CREATE TABLE consumer.benefit_cards (
    user_id        text        NOT NULL,
    brand          text        NOT NULL,
    masked_number  text        NOT NULL,
    first_use_time timestamptz NOT NULL,
    last_use_time  timestamptz NOT NULL,
    PRIMARY KEY (user_id, brand, masked_number)
);

-- At most one tip per purchase.
CREATE TABLE consumer.benefit_tips (
    tip_id               uuid        PRIMARY KEY,
    payment_id           text        NOT NULL UNIQUE,
    user_id              text        NOT NULL,
    merchant_id          text        NOT NULL,
    merchant_name        text        NOT NULL,
    category_code        text        NOT NULL,
    used_brand           text        NOT NULL,
    used_masked_number   text        NOT NULL,
    used_rate_bps        integer     NOT NULL CHECK (used_rate_bps BETWEEN 0 AND 10000),
    better_brand         text        NOT NULL,
    better_masked_number text        NOT NULL,
    better_rate_bps      integer     NOT NULL CHECK (better_rate_bps BETWEEN 1 AND 10000),
    currency_code        text        NOT NULL,
    extra_reward_minor   bigint      NOT NULL CHECK (extra_reward_minor > 0),
    message              text        NOT NULL,
    create_time          timestamptz NOT NULL DEFAULT now()
);
-- ListBenefitTips pages by (create_time DESC, tip_id DESC).
CREATE INDEX benefit_tips_page_idx ON consumer.benefit_tips (user_id, create_time DESC, tip_id DESC);
