-- Tracing and a traceable payment.
--
-- The outbox row keeps the id of the request that caused it, so the relay can publish it
-- as the record's x-request-id header and every consumer can log it (NULL for rows
-- written before, or by work nobody requested).
ALTER TABLE payments.outbox
    ADD COLUMN request_id text CHECK (request_id IS NULL OR length(request_id) BETWEEN 1 AND 64);

-- Where the payment went: the gateway it was dispatched to, the attempt (re-dispatches
-- after a callback timeout count up), and the gateway's own reference for the charge
-- once it reported. Copied onto the payment so GetPayment, ListPayments and every event
-- show them without a join; payments.dispatches still owns the callback deadline.
ALTER TABLE payments.payments
    ADD COLUMN gateway_id        text,
    ADD COLUMN gateway_reference text    NOT NULL DEFAULT ''
        CHECK (length(gateway_reference) <= 200),
    ADD COLUMN dispatch_attempt  integer NOT NULL DEFAULT 0 CHECK (dispatch_attempt >= 0);

UPDATE payments.payments p SET gateway_id = d.gateway_id, dispatch_attempt = d.attempt
    FROM payments.dispatches d WHERE d.payment_id = p.id;
