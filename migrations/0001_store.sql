-- The shared store (issue #12): what every replica must see. Applied once,
-- in order, by the migration runner (src/spool/pg/migrate.rs). Ids, JSON
-- shapes and state words are the file spool's (src/spool/file/), so the
-- two backends describe a message the same way. Times the delivery policy
-- computes (`next_at`) are unix milliseconds, as in the file spool's state
-- files; lease expiry uses the database's clock, so replicas whose clocks
-- drift still agree on when a lease ends.

-- A message: envelope and content. Content is in message_chunks; a
-- message is visible to everything else only once `committed` (set by the
-- transaction that also creates its jobs and its idempotency key), so the
-- chunks of a large message can be written as they arrive without ever
-- being seen before the commit. Rows never committed are orphans of an
-- interrupted receive and are swept.
CREATE TABLE messages (
    id          text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{32}$'),
    envelope    jsonb NOT NULL,
    size        bigint NOT NULL DEFAULT 0,
    committed   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_uncommitted ON messages (created_at) WHERE NOT committed;

CREATE TABLE message_chunks (
    message_id  text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq         integer NOT NULL CHECK (seq >= 0),
    bytes       bytea NOT NULL,
    PRIMARY KEY (message_id, seq)
);

-- One delivery of a message (the file spool's state/<id>.<k>.json; what
-- it delivers is the envelope's deliveries[k]). Dead letters are jobs in
-- state 'dead'; pending events are messages with an 'event' job like any
-- other.
--
-- Claiming: a pending job that is due and whose lease is free or expired
-- is taken with FOR UPDATE SKIP LOCKED; the claim sets lease_owner,
-- lease_until and a new lease_token. An attempt's outcome is written with
-- "WHERE lease_token = $claimed", so it is refused once an operator change
-- (delete, retry; each bumps lease_token) or another replica's claim after
-- the lease expired has happened.
CREATE TABLE jobs (
    message_id  text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    idx         integer NOT NULL CHECK (idx >= 0),
    state       text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'dead', 'delivered')),
    attempts    integer NOT NULL DEFAULT 0,
    -- unix ms
    next_at     bigint NOT NULL DEFAULT 0,
    last_error  text,
    recipients  jsonb NOT NULL DEFAULT '[]',
    history     jsonb NOT NULL DEFAULT '[]',
    lease_owner text,
    lease_until timestamptz,
    lease_token bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, idx)
);
-- The claim query's scan: due pending jobs in due order.
CREATE INDEX jobs_due ON jobs (next_at, message_id, idx) WHERE state = 'pending';
-- The dead-letter retention sweep and /v1/deliveries?state=dead.
CREATE INDEX jobs_dead ON jobs (updated_at) WHERE state = 'dead';

-- What GET /v1/messages/{id} shows (the file spool's outbox/<id>.json);
-- outlives its message for the status retention (no foreign key on
-- purpose).
CREATE TABLE outbox (
    name        text PRIMARY KEY,
    record      bytea NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_updated ON outbox (updated_at);

-- Idempotency-Key records (the file spool's idem/<sha256>.json), inserted
-- in the transaction that commits their message: the primary key makes two
-- concurrent requests with one key (on any replicas) create one message;
-- the loser's transaction rolls back and it answers from the winner's row.
CREATE TABLE idempotency_keys (
    name        text PRIMARY KEY,
    record      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
