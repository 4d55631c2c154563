-- Tell WatchPayment streams at once when a payment changes: NOTIFY on commit with
-- "<payment id>:<version>". Watchers re-read the payment; the payload only says which.
CREATE FUNCTION payments.notify_payment_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('payment_changes', NEW.id::text || ':' || NEW.version::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER payment_change_notify AFTER UPDATE OF version ON payments.payments
    FOR EACH ROW EXECUTE FUNCTION payments.notify_payment_change();
