-- Event ids are chosen by each gateway and unique only within it: two gateways may use
-- the same id, and each of their results must be applied. The replay guard is therefore
-- (gateway_id, event_id), not event_id alone. Existing rows were unique by event_id, so
-- they are unique by the pair too.
ALTER TABLE payments.callback_events DROP CONSTRAINT callback_events_pkey;
ALTER TABLE payments.callback_events ADD PRIMARY KEY (gateway_id, event_id);
