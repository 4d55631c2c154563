-- The operator audit trail: every admin call the edge forwards or serves that changes
-- something or reads across users (gateway_svc/api/operators.py), recorded before it
-- runs (outcome 'STARTED') and completed with its gRPC status code after. A call whose
-- record cannot be written is refused, so no operator action goes unrecorded.
CREATE TABLE auth.operator_actions (
    id            bigserial   PRIMARY KEY,
    actor_user_id uuid        NOT NULL,
    method        text        NOT NULL CHECK (length(method) BETWEEN 1 AND 200),
    request_json  text        NOT NULL CHECK (length(request_json) <= 8000),
    outcome       text        NOT NULL DEFAULT 'STARTED' CHECK (length(outcome) <= 40),
    create_time   timestamptz NOT NULL DEFAULT now(),
    finish_time   timestamptz
);
CREATE INDEX operator_actions_actor_idx ON auth.operator_actions (actor_user_id, id);
