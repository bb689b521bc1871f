-- kray-watcher store, schema 4: challenge markers seen on L1 (`OP_RETURN "KRAY" "C" || batch_id || proof_hash`,
-- docs/protocol.md §13.3), by anyone. Derived from L1 blocks: rolled back with them.
CREATE TABLE challenges (
    txid        TEXT   NOT NULL,
    vout        BIGINT NOT NULL,
    height      BIGINT NOT NULL,
    block_hash  TEXT   NOT NULL,
    batch_id    BIGINT NOT NULL,
    proof_hash  TEXT   NOT NULL,
    PRIMARY KEY (txid, vout)
);
CREATE INDEX challenges_height ON challenges (height);
CREATE INDEX challenges_batch ON challenges (batch_id);
