-- Issue #13's two records in the shared store, as the file spool keeps
-- them in auth/ and kept/.

-- The SPF/DKIM/DMARC/ARC verdicts of an inbound message (the file spool's
-- auth/<id>.json): written after its commit, before it is scheduled, and
-- removed with the message.
CREATE TABLE auth_results (
    message_id  text PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    record      bytea NOT NULL
);

-- The decoded bytes behind an attachment's signed `url` (the file spool's
-- kept/<id>.<k>): outlive their message (no foreign key on purpose) until
-- `expires` (unix s, the latest link's), then swept.
CREATE TABLE kept_parts (
    message_id  text NOT NULL,
    idx         integer NOT NULL CHECK (idx >= 0),
    expires     bigint NOT NULL,
    meta        jsonb NOT NULL,
    bytes       bytea NOT NULL,
    PRIMARY KEY (message_id, idx)
);
CREATE INDEX kept_parts_expires ON kept_parts (expires);
