-- kray-watcher store, schema 5: work proportional to what is new (issue #12).
--
-- `batches.seq` numbers the stored copies in arrival order (assigned by the store inside the inserting
-- transaction: max + 1), so the replay stage reads only the copies that arrived since its cursor
-- instead of walking every batch id. Copies stored before this migration are numbered by batch id
-- (copies of one id share a number; the reader treats a number as a unit).
ALTER TABLE batches ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
UPDATE batches SET seq = batch_id;
CREATE INDEX batches_seq ON batches (seq);

-- One verdict per judged batch copy (docs/protocol.md §12–§14), written as it is judged, so a restart
-- loads the verdicts instead of recomputing them. `outcome` is the verdict's JSON
-- (`{"verdict": "valid" | "fault" | "not-replayed", ...}`); `proof` the fraud proof's JSON for a fault.
CREATE TABLE verdicts (
    batch_id      BIGINT NOT NULL,
    content_hash  TEXT   NOT NULL,
    seq           BIGINT NOT NULL,
    batch_hash    TEXT   NOT NULL,
    l1_height     BIGINT NOT NULL,
    tx_count      BIGINT NOT NULL,
    outcome       TEXT   NOT NULL,
    header        TEXT   NOT NULL,
    signature     TEXT   NOT NULL,
    proof         TEXT,
    judged_at     BIGINT NOT NULL,
    PRIMARY KEY (batch_id, content_hash)
);

-- The replayer's state after batch `batch_id` (replayer checkpoint encoding), with the replay cursor it
-- belongs to: every batch copy with `seq <= seq_floor` is reflected in that state. One row per
-- checkpoint name (`replay`), replaced atomically: a restart loads it and replays only newer copies.
CREATE TABLE replay_checkpoints (
    name        TEXT   PRIMARY KEY,
    batch_id    BIGINT NOT NULL,
    seq_floor   BIGINT NOT NULL,
    state_root  TEXT   NOT NULL,
    bytes       BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL
);
