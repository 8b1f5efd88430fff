-- Issue #14: the message history. A message whose deliveries are all done
-- is kept (row, chunks, jobs with their final state and attempts, verdicts)
-- for POSTERN_HISTORY_RETENTION with `finished_at` set, then swept; with
-- retention 0 it is deleted when done, as before. What the list shows
-- without reading content is recorded at commit: `direction` (NULL for
-- event messages, which are neither listed nor kept) and `subject`.
--
-- The claim never sees finished messages: their jobs are 'delivered', and
-- the claim scans `jobs_due`, a partial index of pending jobs only.
ALTER TABLE messages
    ADD COLUMN direction   text CHECK (direction IN ('inbound', 'outbound')),
    ADD COLUMN subject     text,
    ADD COLUMN finished_at timestamptz;

-- Messages committed before this migration: direction from the envelope
-- (their subject stays unknown).
UPDATE messages SET direction = CASE
    WHEN envelope->'outbound' IS NOT NULL THEN 'outbound'
    WHEN jsonb_array_length(envelope->'deliveries') > 0 AND NOT EXISTS (
        SELECT 1 FROM jsonb_array_elements(envelope->'deliveries') d
        WHERE coalesce(d->>'kind', 'webhook') <> 'event') THEN NULL
    ELSE 'inbound' END;

-- The list, newest first by id (ids sort by arrival).
CREATE INDEX messages_listed ON messages (id) WHERE committed AND direction IS NOT NULL;
-- The history sweep.
CREATE INDEX messages_finished ON messages (finished_at) WHERE finished_at IS NOT NULL;
