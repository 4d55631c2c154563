-- Re-drives: dead letters are not a dead end, and a payment whose creation event was
-- never processed does not wait until it expires.

-- One row per dead letter an operator re-drove with `python -m consumer_svc.dlq redrive`,
-- keyed by its place in the dead-letter topic, so `list` shows it and `redrive --all`
-- does not send it twice (unless told to with --again, which counts up).
CREATE TABLE consumer.dead_letter_redrives (
    dlq_topic     text        NOT NULL,
    dlq_partition integer     NOT NULL,
    dlq_offset    bigint      NOT NULL,
    source_topic  text        NOT NULL,
    redrive_time  timestamptz NOT NULL DEFAULT now(),
    redrive_count integer     NOT NULL DEFAULT 1,
    reason        text        NOT NULL DEFAULT '',
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);

-- One row per stranded PENDING payment the janitor re-published the creation event of.
-- A janitor claims a payment by inserting (or, once the re-drive interval has passed,
-- updating) its row, so several janitors never re-drive one payment twice per interval.
CREATE TABLE consumer.stranded_redrives (
    payment_id    text        PRIMARY KEY,
    event_id      text        NOT NULL,
    redrive_time  timestamptz NOT NULL DEFAULT now(),
    redrive_count integer     NOT NULL DEFAULT 1
);
CREATE INDEX stranded_redrives_time_idx ON consumer.stranded_redrives (redrive_time);
