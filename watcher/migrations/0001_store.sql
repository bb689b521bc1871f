-- kray-watcher store, schema 1. One schema for SQLite and PostgreSQL: only BIGINT, TEXT and BYTEA
-- columns (SQLite stores BYTEA values as blobs as bound), no autoincrement, no booleans, no
-- backend-specific functions. Hashes, txids and roots are lowercase hex TEXT; amounts that may
-- exceed i64 are decimal TEXT; times are unix seconds (BIGINT).
--
-- Every row derived from an L1 block carries that block's height and hash, so a reorg deletes
-- exactly the rows above the fork point (`rollback_above`).

-- The L1 header chain as followed (the last >= 1,008 headers are kept for fork detection).
CREATE TABLE l1_headers (
    height     BIGINT PRIMARY KEY,
    hash       TEXT   NOT NULL,
    prev_hash  TEXT   NOT NULL
);

-- Progress of each pipeline stage: the last L1 block (height, hash) whose effects are applied.
CREATE TABLE cursors (
    stage   TEXT   PRIMARY KEY,
    height  BIGINT NOT NULL,
    hash    TEXT   NOT NULL
);

-- KRAY anchors seen on L1 (`OP_RETURN "KRAY" || root32`).
CREATE TABLE anchors (
    txid        TEXT   NOT NULL,
    vout        BIGINT NOT NULL,
    height      BIGINT NOT NULL,
    block_hash  TEXT   NOT NULL,
    root        TEXT   NOT NULL,
    PRIMARY KEY (txid, vout)
);
CREATE INDEX anchors_height ON anchors (height);
CREATE INDEX anchors_root ON anchors (root);

-- Batch copies from the publication API, one row per distinct content: a second, different copy
-- for one batch id is kept as evidence (equivocation). Not derived from L1, never rolled back.
CREATE TABLE batches (
    batch_id      BIGINT NOT NULL,
    content_hash  TEXT   NOT NULL,
    source        TEXT   NOT NULL,
    raw           BYTEA  NOT NULL,
    received_at   BIGINT NOT NULL,
    PRIMARY KEY (batch_id, content_hash)
);

-- Bridge outpoints (deposits into the 2-of-3 bridge) and who spent them.
CREATE TABLE deposits (
    txid              TEXT   NOT NULL,
    vout              BIGINT NOT NULL,
    height            BIGINT NOT NULL,
    block_hash        TEXT   NOT NULL,
    amount            TEXT   NOT NULL,
    spent_by          TEXT,
    spent_height      BIGINT,
    spent_block_hash  TEXT,
    PRIMARY KEY (txid, vout)
);
CREATE INDEX deposits_height ON deposits (height);
CREATE INDEX deposits_spent_height ON deposits (spent_height);

-- Findings, keyed by a caller-chosen de-duplication key (`id`): the same fault found twice is
-- one row. `height`/`block_hash` name the L1 block that produced the finding (NULL for findings
-- from L2 data alone, which no reorg can undo).
CREATE TABLE findings (
    id               TEXT   PRIMARY KEY,
    kind             TEXT   NOT NULL,
    severity         TEXT   NOT NULL,
    batch_id         BIGINT,
    outpoint         TEXT,
    first_seen       BIGINT NOT NULL,
    resolved_at      BIGINT,
    deadline_height  BIGINT,
    evidence         TEXT   NOT NULL,
    height           BIGINT,
    block_hash       TEXT
);
CREATE INDEX findings_height ON findings (height);
