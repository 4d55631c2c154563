-- Consumer inbox: one row per (consumer group, event) whose effect is done, so a
-- redelivered Kafka event is recognised and skipped.
CREATE TABLE consumer.inbox (
    consumer_group text        NOT NULL,
    event_id       text        NOT NULL,
    topic          text        NOT NULL,
    process_time   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);
