-- kray-watcher store, schema 2: KRAY rune tracking and bridge indexing (issue #4). Same rules as
-- schema 1: BIGINT, TEXT and BYTEA only; amounts as decimal TEXT; every row derived from an L1 block
-- carries that block's height and hash, and `rollback_above` deletes/reverts what lies above a fork.

-- The L2 recipient named by the `KRAY D` tag of the transaction creating a bridge outpoint (NULL when
-- the transaction has no tag, e.g. a payout's change back to the bridge), and whether that
-- transaction itself spent a bridge outpoint (1: bridge change, 0: a deposit from outside).
ALTER TABLE deposits ADD COLUMN recipient TEXT;
ALTER TABLE deposits ADD COLUMN from_bridge BIGINT NOT NULL DEFAULT 0;

-- Every outpoint holding the tracked rune (any owner), plus every bridge outpoint (even with 0 runes),
-- with its spend. `height`/`block_hash` name the creating block (or the first indexed block for rows
-- seeded from a checkpoint).
CREATE TABLE rune_outputs (
    txid              TEXT   NOT NULL,
    vout              BIGINT NOT NULL,
    height            BIGINT NOT NULL,
    block_hash        TEXT   NOT NULL,
    script_pubkey     TEXT   NOT NULL,
    value             BIGINT NOT NULL,
    amount            TEXT   NOT NULL,
    spent_by          TEXT,
    spent_height      BIGINT,
    spent_block_hash  TEXT,
    PRIMARY KEY (txid, vout)
);
CREATE INDEX rune_outputs_height ON rune_outputs (height);
CREATE INDEX rune_outputs_spent_height ON rune_outputs (spent_height);
CREATE INDEX rune_outputs_script ON rune_outputs (script_pubkey);

-- Each spend of a bridge outpoint: which input of which transaction, and by which path
-- ('key', 'script' or 'other'); `leaf_script` is the revealed tapscript of a script-path spend.
CREATE TABLE bridge_spends (
    txid          TEXT   NOT NULL,
    vout          BIGINT NOT NULL,
    spent_by      TEXT   NOT NULL,
    input_index   BIGINT NOT NULL,
    path          TEXT   NOT NULL,
    leaf_script   TEXT,
    height        BIGINT NOT NULL,
    block_hash    TEXT   NOT NULL,
    PRIMARY KEY (txid, vout)
);
CREATE INDEX bridge_spends_height ON bridge_spends (height);
CREATE INDEX bridge_spends_spent_by ON bridge_spends (spent_by);

-- The outputs of every transaction that spends a bridge outpoint (payouts, sweeps, thefts), with the
-- rune amount each received, so payouts can be compared with withdrawals.
CREATE TABLE payout_outputs (
    txid           TEXT   NOT NULL,
    vout           BIGINT NOT NULL,
    height         BIGINT NOT NULL,
    block_hash     TEXT   NOT NULL,
    script_pubkey  TEXT   NOT NULL,
    address        TEXT,
    value          BIGINT NOT NULL,
    amount         TEXT   NOT NULL,
    PRIMARY KEY (txid, vout)
);
CREATE INDEX payout_outputs_height ON payout_outputs (height);
