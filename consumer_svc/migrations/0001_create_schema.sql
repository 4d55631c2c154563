-- consumer_svc owns the `consumer` schema: consumer inboxes, risk, loyalty and benefits state.
CREATE SCHEMA IF NOT EXISTS consumer;
