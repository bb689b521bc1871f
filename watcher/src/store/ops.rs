//! The operations, written once as SQL valid on both SQLite and PostgreSQL (`$n` placeholders,
//! `ON CONFLICT`, `excluded.`), and instantiated per backend by [`backend_ops!`] with concrete
//! sqlx types (no `Any` driver, no generic trait bounds).

/// Generates a module of operations for one sqlx backend.
macro_rules! backend_ops {
    ($module:ident, $db:ty, $conn:ty, $begin:expr) => {
        pub(crate) mod $module {
            use sqlx::{Pool, QueryBuilder};

            use crate::store::error::{to_i64, to_u64, Result, StoreError};
            use crate::store::types::*;

            type Db = $db;
            type Conn = $conn;

            /// The statement opening write transactions (SQLite: `BEGIN IMMEDIATE`, so a writer waits
            /// for the lock up front instead of failing with `SQLITE_BUSY` when upgrading a read).
            const BEGIN: &str = $begin;

            /// Rows per multi-row `INSERT` (5 binds each: far below both backends' limits).
            const BATCH_CHUNK: usize = 500;

            type DepositRow =
                (String, i64, i64, String, String, Option<String>, Option<i64>, Option<String>, Option<String>, i64);
            type RuneOutputRow =
                (String, i64, i64, String, String, i64, String, Option<String>, Option<i64>, Option<String>);
            type BridgeSpendRow = (String, i64, String, i64, String, Option<String>, i64, String, String);
            type PayoutRow = (String, i64, String, Option<String>, i64, String);
            /// A `batches` row without its body.
            #[derive(sqlx::FromRow)]
            struct CopyRefRow {
                batch_id: i64,
                content_hash: String,
                seq: i64,
                size: Option<i64>,
            }

            /// A `batches` row's first bytes.
            #[derive(sqlx::FromRow)]
            struct CopyHeadRow {
                batch_id: i64,
                content_hash: String,
                source: String,
                head: Option<Vec<u8>>,
            }

            /// A `verdicts` row.
            #[derive(sqlx::FromRow)]
            struct VerdictDbRow {
                batch_id: i64,
                content_hash: String,
                seq: i64,
                batch_hash: String,
                l1_height: i64,
                tx_count: i64,
                outcome: String,
                header: String,
                signature: String,
                proof: Option<String>,
                judged_at: i64,
            }

            /// A `replay_checkpoints` row.
            #[derive(sqlx::FromRow)]
            struct CheckpointDbRow {
                batch_id: i64,
                seq_floor: i64,
                state_root: String,
                bytes: Vec<u8>,
                created_at: i64,
            }

            type FindingRow = (
                String,
                String,
                String,
                Option<i64>,
                Option<String>,
                i64,
                Option<i64>,
                Option<i64>,
                String,
                Option<i64>,
                Option<String>,
            );

            fn vout(v: i64) -> Result<u32> {
                u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("vout {v}")))
            }

            fn header(row: (i64, String, String)) -> Result<L1Header> {
                Ok(L1Header { height: to_u64(row.0, "height")?, hash: row.1, prev_hash: row.2 })
            }

            fn amount(text: &str) -> Result<u128> {
                text.parse::<u128>().map_err(|_| StoreError::Corrupt(format!("amount {text:?}")))
            }

            fn sats(v: i64) -> Result<u64> {
                to_u64(v, "value")
            }

            fn rune_output_row(r: RuneOutputRow) -> Result<RuneOutput> {
                Ok(RuneOutput {
                    outpoint: Outpoint { txid: r.0, vout: vout(r.1)? },
                    height: to_u64(r.2, "height")?,
                    block_hash: r.3,
                    script_pubkey: r.4,
                    value: sats(r.5)?,
                    amount: amount(&r.6)?,
                    spent_by: r.7,
                    spent_height: r.8.map(|h| to_u64(h, "spent_height")).transpose()?,
                    spent_block_hash: r.9,
                })
            }

            fn deposit_row(r: DepositRow) -> Result<Deposit> {
                let amount = amount(&r.4)?;
                Ok(Deposit {
                    outpoint: Outpoint { txid: r.0, vout: vout(r.1)? },
                    height: to_u64(r.2, "height")?,
                    block_hash: r.3,
                    amount,
                    spent_by: r.5,
                    spent_height: r.6.map(|h| to_u64(h, "spent_height")).transpose()?,
                    spent_block_hash: r.7,
                    recipient: r.8,
                    from_bridge: r.9 != 0,
                })
            }

            fn finding(r: FindingRow) -> Result<Finding> {
                let evidence =
                    serde_json::from_str(&r.8).map_err(|e| StoreError::Corrupt(format!("evidence of {}: {e}", r.0)))?;
                Ok(Finding {
                    id: r.0,
                    kind: crate::finding_kind::FindingKind::parse(&r.1),
                    severity: r.2.parse()?,
                    batch_id: r.3.map(|b| to_u64(b, "batch_id")).transpose()?,
                    outpoint: r.4.map(|o| o.parse()).transpose()?,
                    first_seen: r.5,
                    resolved_at: r.6,
                    deadline_height: r.7.map(|h| to_u64(h, "deadline_height")).transpose()?,
                    evidence,
                    height: r.9.map(|h| to_u64(h, "height")).transpose()?,
                    block_hash: r.10,
                })
            }

            const FINDING_COLS: &str = "id, kind, severity, batch_id, outpoint, first_seen, resolved_at, \
                 deadline_height, evidence, height, block_hash";
            const DEPOSIT_COLS: &str = "txid, vout, height, block_hash, amount, spent_by, spent_height, \
                 spent_block_hash, recipient, from_bridge";
            const RUNE_OUTPUT_COLS: &str = "txid, vout, height, block_hash, script_pubkey, value, amount, \
                 spent_by, spent_height, spent_block_hash";

            /// Txids per `IN (...)` list when looking up outpoints in bulk.
            const LOOKUP_CHUNK: usize = 500;

            pub(crate) async fn migrate(pool: &Pool<Db>) -> Result<()> {
                crate::store::MIGRATOR.run(pool).await?;
                Ok(())
            }

            pub(crate) async fn header_at(pool: &Pool<Db>, height: u64) -> Result<Option<L1Header>> {
                let row: Option<(i64, String, String)> =
                    sqlx::query_as("SELECT height, hash, prev_hash FROM l1_headers WHERE height = $1")
                        .bind(to_i64(height)?)
                        .fetch_optional(pool)
                        .await?;
                row.map(header).transpose()
            }

            pub(crate) async fn tip_header(pool: &Pool<Db>) -> Result<Option<L1Header>> {
                let row: Option<(i64, String, String)> =
                    sqlx::query_as("SELECT height, hash, prev_hash FROM l1_headers ORDER BY height DESC LIMIT 1")
                        .fetch_optional(pool)
                        .await?;
                row.map(header).transpose()
            }

            pub(crate) async fn headers_from(pool: &Pool<Db>, height: u64) -> Result<Vec<L1Header>> {
                let rows: Vec<(i64, String, String)> =
                    sqlx::query_as("SELECT height, hash, prev_hash FROM l1_headers WHERE height >= $1 ORDER BY height")
                        .bind(to_i64(height)?)
                        .fetch_all(pool)
                        .await?;
                rows.into_iter().map(header).collect()
            }

            pub(crate) async fn header_count(pool: &Pool<Db>) -> Result<u64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM l1_headers").fetch_one(pool).await?;
                to_u64(n, "count")
            }

            async fn cursor_in(conn: &mut Conn, stage: &str) -> Result<Option<Cursor>> {
                let row: Option<(String, i64, String)> =
                    sqlx::query_as("SELECT stage, height, hash FROM cursors WHERE stage = $1")
                        .bind(stage)
                        .fetch_optional(&mut *conn)
                        .await?;
                row.map(|(stage, h, hash)| Ok(Cursor { stage, height: to_u64(h, "cursor height")?, hash })).transpose()
            }

            async fn set_cursor_in(conn: &mut Conn, cursor: &Cursor) -> Result<()> {
                sqlx::query(
                    "INSERT INTO cursors (stage, height, hash) VALUES ($1, $2, $3) \
                     ON CONFLICT (stage) DO UPDATE SET height = excluded.height, hash = excluded.hash",
                )
                .bind(&cursor.stage)
                .bind(to_i64(cursor.height)?)
                .bind(&cursor.hash)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            pub(crate) async fn cursor(pool: &Pool<Db>, stage: &str) -> Result<Option<Cursor>> {
                let mut conn = pool.acquire().await?;
                cursor_in(&mut conn, stage).await
            }

            pub(crate) async fn set_cursor(pool: &Pool<Db>, cursor: &Cursor) -> Result<()> {
                let mut conn = pool.acquire().await?;
                set_cursor_in(&mut conn, cursor).await
            }

            async fn insert_finding_in(conn: &mut Conn, f: &Finding) -> Result<bool> {
                let evidence =
                    serde_json::to_string(&f.evidence).map_err(|e| StoreError::Encode(format!("evidence: {e}")))?;
                let done = sqlx::query(
                    "INSERT INTO findings (id, kind, severity, batch_id, outpoint, first_seen, resolved_at, \
                     deadline_height, evidence, height, block_hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&f.id)
                .bind(f.kind.as_str())
                .bind(f.severity.as_str())
                .bind(f.batch_id.map(to_i64).transpose()?)
                .bind(f.outpoint.as_ref().map(|o| o.to_string()))
                .bind(f.first_seen)
                .bind(f.resolved_at)
                .bind(f.deadline_height.map(to_i64).transpose()?)
                .bind(evidence)
                .bind(f.height.map(to_i64).transpose()?)
                .bind(&f.block_hash)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn apply_effect(conn: &mut Conn, block: &L1Header, effect: &Effect) -> Result<()> {
                let height = to_i64(block.height)?;
                match effect {
                    Effect::Anchor { outpoint, root } => {
                        sqlx::query(
                            "INSERT INTO anchors (txid, vout, height, block_hash, root) VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(&outpoint.txid)
                        .bind(i64::from(outpoint.vout))
                        .bind(height)
                        .bind(&block.hash)
                        .bind(root)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Effect::Challenge { outpoint, batch_id, proof_hash } => {
                        sqlx::query(
                            "INSERT INTO challenges (txid, vout, height, block_hash, batch_id, proof_hash) \
                             VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(&outpoint.txid)
                        .bind(i64::from(outpoint.vout))
                        .bind(height)
                        .bind(&block.hash)
                        .bind(to_i64(*batch_id)?)
                        .bind(proof_hash)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Effect::Deposit { outpoint, amount, recipient, from_bridge } => {
                        sqlx::query(
                            "INSERT INTO deposits (txid, vout, height, block_hash, amount, recipient, from_bridge) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind(&outpoint.txid)
                        .bind(i64::from(outpoint.vout))
                        .bind(height)
                        .bind(&block.hash)
                        .bind(amount.to_string())
                        .bind(recipient)
                        .bind(i64::from(*from_bridge))
                        .execute(&mut *conn)
                        .await?;
                    }
                    Effect::RuneOutput { outpoint, script_pubkey, value, amount } => {
                        sqlx::query(
                            "INSERT INTO rune_outputs (txid, vout, height, block_hash, script_pubkey, value, amount) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind(&outpoint.txid)
                        .bind(i64::from(outpoint.vout))
                        .bind(height)
                        .bind(&block.hash)
                        .bind(script_pubkey)
                        .bind(to_i64(*value)?)
                        .bind(amount.to_string())
                        .execute(&mut *conn)
                        .await?;
                    }
                    Effect::RuneSpend { outpoint, spent_by } => {
                        let done = sqlx::query(
                            "UPDATE rune_outputs SET spent_by = $1, spent_height = $2, spent_block_hash = $3 \
                             WHERE txid = $4 AND vout = $5 AND spent_by IS NULL",
                        )
                        .bind(spent_by)
                        .bind(height)
                        .bind(&block.hash)
                        .bind(&outpoint.txid)
                        .bind(i64::from(outpoint.vout))
                        .execute(&mut *conn)
                        .await?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::UnknownOutpoint(outpoint.clone()));
                        }
                    }
                    Effect::BridgeSpend { outpoint, spent_by, input_index, path, leaf_script } => {
                        sqlx::query(
                            "INSERT INTO bridge_spends (txid, vout, spent_by, input_index, path, leaf_script, \
                             height, block_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        )
                        .bind(&outpoint.txid)
                        .bind(i64::from(outpoint.vout))
                        .bind(spent_by)
                        .bind(i64::from(*input_index))
                        .bind(path.as_str())
                        .bind(leaf_script)
                        .bind(height)
                        .bind(&block.hash)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Effect::PayoutOutput(p) => {
                        sqlx::query(
                            "INSERT INTO payout_outputs (txid, vout, height, block_hash, script_pubkey, address, \
                             value, amount) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        )
                        .bind(&p.outpoint.txid)
                        .bind(i64::from(p.outpoint.vout))
                        .bind(height)
                        .bind(&block.hash)
                        .bind(&p.script_pubkey)
                        .bind(&p.address)
                        .bind(to_i64(p.value)?)
                        .bind(p.amount.to_string())
                        .execute(&mut *conn)
                        .await?;
                    }
                    Effect::Spend { outpoint, spent_by } => {
                        let done = sqlx::query(
                            "UPDATE deposits SET spent_by = $1, spent_height = $2, spent_block_hash = $3 \
                             WHERE txid = $4 AND vout = $5 AND spent_by IS NULL",
                        )
                        .bind(spent_by)
                        .bind(height)
                        .bind(&block.hash)
                        .bind(&outpoint.txid)
                        .bind(i64::from(outpoint.vout))
                        .execute(&mut *conn)
                        .await?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::UnknownOutpoint(outpoint.clone()));
                        }
                    }
                    Effect::Finding(f) => {
                        let mut f = f.clone();
                        f.height = Some(block.height);
                        f.block_hash = Some(block.hash.clone());
                        insert_finding_in(conn, &f).await?;
                    }
                }
                Ok(())
            }

            pub(crate) async fn apply_block(
                pool: &Pool<Db>,
                block: &L1Header,
                effects: &[Effect],
                headers_kept: u64,
            ) -> Result<()> {
                let mut tx = pool.begin_with(BEGIN).await?;
                if let Some(c) = cursor_in(&mut tx, CHAIN_STAGE).await? {
                    if c.height.checked_add(1) != Some(block.height) || c.hash != block.prev_hash {
                        return Err(StoreError::NotExtending {
                            height: block.height,
                            prev_hash: block.prev_hash.clone(),
                            cursor_height: c.height,
                            cursor_hash: c.hash,
                        });
                    }
                }
                let height = to_i64(block.height)?;
                sqlx::query("INSERT INTO l1_headers (height, hash, prev_hash) VALUES ($1, $2, $3)")
                    .bind(height)
                    .bind(&block.hash)
                    .bind(&block.prev_hash)
                    .execute(&mut *tx)
                    .await?;
                for effect in effects {
                    apply_effect(&mut tx, block, effect).await?;
                }
                let cursor = Cursor { stage: CHAIN_STAGE.to_string(), height: block.height, hash: block.hash.clone() };
                set_cursor_in(&mut tx, &cursor).await?;
                let keep = i64::try_from(headers_kept).unwrap_or(i64::MAX);
                if let Some(oldest) = height.checked_sub(keep) {
                    sqlx::query("DELETE FROM l1_headers WHERE height <= $1").bind(oldest).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            pub(crate) async fn rollback_above(pool: &Pool<Db>, height: u64) -> Result<Rollback> {
                let h = to_i64(height)?;
                let mut tx = pool.begin_with(BEGIN).await?;
                let fork: Option<(String,)> = sqlx::query_as("SELECT hash FROM l1_headers WHERE height = $1")
                    .bind(h)
                    .fetch_optional(&mut *tx)
                    .await?;
                let mut r = Rollback::default();
                let (above,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM cursors WHERE height > $1")
                    .bind(h)
                    .fetch_one(&mut *tx)
                    .await?;
                if above > 0 {
                    let Some((fork_hash,)) = fork else {
                        return Err(StoreError::UnknownForkPoint(height));
                    };
                    r.cursors = sqlx::query("UPDATE cursors SET height = $1, hash = $2 WHERE height > $1")
                        .bind(h)
                        .bind(fork_hash)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                r.headers = sqlx::query("DELETE FROM l1_headers WHERE height > $1")
                    .bind(h)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                r.anchors = sqlx::query("DELETE FROM anchors WHERE height > $1")
                    .bind(h)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                r.challenges = sqlx::query("DELETE FROM challenges WHERE height > $1")
                    .bind(h)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                r.deposits = sqlx::query("DELETE FROM deposits WHERE height > $1")
                    .bind(h)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                r.unspent = sqlx::query(
                    "UPDATE deposits SET spent_by = NULL, spent_height = NULL, spent_block_hash = NULL \
                     WHERE spent_height > $1",
                )
                .bind(h)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                r.findings = sqlx::query("DELETE FROM findings WHERE height > $1")
                    .bind(h)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                r.rune_outputs = sqlx::query("DELETE FROM rune_outputs WHERE height > $1")
                    .bind(h)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                r.rune_unspent = sqlx::query(
                    "UPDATE rune_outputs SET spent_by = NULL, spent_height = NULL, spent_block_hash = NULL \
                     WHERE spent_height > $1",
                )
                .bind(h)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                r.bridge_spends = sqlx::query("DELETE FROM bridge_spends WHERE height > $1")
                    .bind(h)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                r.payout_outputs = sqlx::query("DELETE FROM payout_outputs WHERE height > $1")
                    .bind(h)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(r)
            }

            pub(crate) async fn anchors(pool: &Pool<Db>) -> Result<Vec<Anchor>> {
                let rows: Vec<(String, i64, i64, String, String)> = sqlx::query_as(
                    "SELECT txid, vout, height, block_hash, root FROM anchors ORDER BY height, txid, vout",
                )
                .fetch_all(pool)
                .await?;
                rows.into_iter()
                    .map(|(txid, v, h, block_hash, root)| {
                        Ok(Anchor {
                            outpoint: Outpoint { txid, vout: vout(v)? },
                            height: to_u64(h, "height")?,
                            block_hash,
                            root,
                        })
                    })
                    .collect()
            }

            pub(crate) async fn challenges(pool: &Pool<Db>) -> Result<Vec<ChallengeMarker>> {
                let rows: Vec<(String, i64, i64, String, i64, String)> = sqlx::query_as(
                    "SELECT txid, vout, height, block_hash, batch_id, proof_hash FROM challenges \
                     ORDER BY height, txid, vout",
                )
                .fetch_all(pool)
                .await?;
                rows.into_iter()
                    .map(|(txid, v, h, block_hash, b, proof_hash)| {
                        Ok(ChallengeMarker {
                            outpoint: Outpoint { txid, vout: vout(v)? },
                            height: to_u64(h, "height")?,
                            block_hash,
                            batch_id: to_u64(b, "batch_id")?,
                            proof_hash,
                        })
                    })
                    .collect()
            }

            pub(crate) async fn deposits(pool: &Pool<Db>) -> Result<Vec<Deposit>> {
                let sql = format!("SELECT {DEPOSIT_COLS} FROM deposits ORDER BY height, txid, vout");
                let rows: Vec<DepositRow> = sqlx::query_as(&sql).fetch_all(pool).await?;
                rows.into_iter().map(deposit_row).collect()
            }

            pub(crate) async fn deposit(pool: &Pool<Db>, outpoint: &Outpoint) -> Result<Option<Deposit>> {
                let sql = format!("SELECT {DEPOSIT_COLS} FROM deposits WHERE txid = $1 AND vout = $2");
                let row: Option<DepositRow> = sqlx::query_as(&sql)
                    .bind(&outpoint.txid)
                    .bind(i64::from(outpoint.vout))
                    .fetch_optional(pool)
                    .await?;
                row.map(deposit_row).transpose()
            }

            pub(crate) async fn rune_output(pool: &Pool<Db>, outpoint: &Outpoint) -> Result<Option<RuneOutput>> {
                let sql = format!("SELECT {RUNE_OUTPUT_COLS} FROM rune_outputs WHERE txid = $1 AND vout = $2");
                let row: Option<RuneOutputRow> = sqlx::query_as(&sql)
                    .bind(&outpoint.txid)
                    .bind(i64::from(outpoint.vout))
                    .fetch_optional(pool)
                    .await?;
                row.map(rune_output_row).transpose()
            }

            pub(crate) async fn unspent_rune_outputs_of_txids(
                pool: &Pool<Db>,
                txids: &[String],
            ) -> Result<Vec<RuneOutput>> {
                let mut out = Vec::new();
                for chunk in txids.chunks(LOOKUP_CHUNK) {
                    let mut qb: QueryBuilder<'_, Db> = QueryBuilder::new(format!(
                        "SELECT {RUNE_OUTPUT_COLS} FROM rune_outputs WHERE spent_by IS NULL AND txid IN ("
                    ));
                    let mut list = qb.separated(", ");
                    for txid in chunk {
                        list.push_bind(txid);
                    }
                    qb.push(")");
                    let rows: Vec<RuneOutputRow> = qb.build_query_as().fetch_all(pool).await?;
                    for row in rows {
                        out.push(rune_output_row(row)?);
                    }
                }
                Ok(out)
            }

            pub(crate) async fn unspent_rune_outputs_of_script(
                pool: &Pool<Db>,
                script_pubkey: &str,
            ) -> Result<Vec<RuneOutput>> {
                let sql = format!(
                    "SELECT {RUNE_OUTPUT_COLS} FROM rune_outputs WHERE script_pubkey = $1 AND spent_by IS NULL \
                     ORDER BY height, txid, vout"
                );
                let rows: Vec<RuneOutputRow> = sqlx::query_as(&sql).bind(script_pubkey).fetch_all(pool).await?;
                rows.into_iter().map(rune_output_row).collect()
            }

            pub(crate) async fn bridge_spends(pool: &Pool<Db>) -> Result<Vec<BridgeSpend>> {
                let spends: Vec<BridgeSpendRow> = sqlx::query_as(
                    "SELECT s.txid, s.vout, s.spent_by, s.input_index, s.path, s.leaf_script, s.height, \
                     s.block_hash, d.amount FROM bridge_spends s \
                     JOIN deposits d ON d.txid = s.txid AND d.vout = s.vout \
                     ORDER BY s.height, s.spent_by, s.input_index",
                )
                .fetch_all(pool)
                .await?;
                let payouts: Vec<PayoutRow> = sqlx::query_as(
                    "SELECT txid, vout, script_pubkey, address, value, amount FROM payout_outputs ORDER BY txid, vout",
                )
                .fetch_all(pool)
                .await?;
                let mut by_tx: std::collections::BTreeMap<String, Vec<PayoutOutput>> = Default::default();
                for (txid, v, script_pubkey, address, value, amt) in payouts {
                    let p = PayoutOutput {
                        outpoint: Outpoint { txid: txid.clone(), vout: vout(v)? },
                        script_pubkey,
                        address,
                        value: sats(value)?,
                        amount: amount(&amt)?,
                    };
                    by_tx.entry(txid).or_default().push(p);
                }
                spends
                    .into_iter()
                    .map(|r| {
                        let input_index =
                            u32::try_from(r.3).map_err(|_| StoreError::Corrupt(format!("input index {}", r.3)))?;
                        Ok(BridgeSpend {
                            outpoint: Outpoint { txid: r.0, vout: vout(r.1)? },
                            amount: amount(&r.8)?,
                            outputs: by_tx.get(&r.2).cloned().unwrap_or_default(),
                            spent_by: r.2,
                            input_index,
                            path: r.4.parse()?,
                            leaf_script: r.5,
                            height: to_u64(r.6, "height")?,
                            block_hash: r.7,
                        })
                    })
                    .collect()
            }

            pub(crate) async fn insert_batches(pool: &Pool<Db>, copies: &[BatchCopy]) -> Result<u64> {
                let ids = copies.iter().map(|c| to_i64(c.batch_id)).collect::<Result<Vec<i64>>>()?;
                let mut tx = pool.begin_with(BEGIN).await?;
                // Arrival numbers, assigned inside the writing transaction (one writer at a time).
                let (max_seq,): (Option<i64>,) =
                    sqlx::query_as("SELECT MAX(seq) FROM batches").fetch_one(&mut *tx).await?;
                let mut next_seq = max_seq.unwrap_or(0);
                let mut inserted = 0;
                for (chunk, ids) in copies.chunks(BATCH_CHUNK).zip(ids.chunks(BATCH_CHUNK)) {
                    let mut qb: QueryBuilder<'_, Db> = QueryBuilder::new(
                        "INSERT INTO batches (batch_id, content_hash, source, raw, received_at, seq) ",
                    );
                    qb.push_values(chunk.iter().zip(ids), |mut b, (c, id)| {
                        next_seq += 1;
                        b.push_bind(*id)
                            .push_bind(c.content_hash.as_str())
                            .push_bind(c.source.as_str())
                            .push_bind(c.raw.as_slice())
                            .push_bind(c.received_at)
                            .push_bind(next_seq);
                    });
                    qb.push(" ON CONFLICT (batch_id, content_hash) DO NOTHING");
                    inserted += qb.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(inserted)
            }

            pub(crate) async fn batch_copies(pool: &Pool<Db>, batch_id: u64) -> Result<Vec<BatchCopy>> {
                let rows: Vec<(i64, String, String, Vec<u8>, i64)> = sqlx::query_as(
                    "SELECT batch_id, source, content_hash, raw, received_at FROM batches WHERE batch_id = $1 \
                     ORDER BY received_at, content_hash",
                )
                .bind(to_i64(batch_id)?)
                .fetch_all(pool)
                .await?;
                rows.into_iter()
                    .map(|(id, source, content_hash, raw, received_at)| {
                        Ok(BatchCopy { batch_id: to_u64(id, "batch_id")?, source, content_hash, raw, received_at })
                    })
                    .collect()
            }

            pub(crate) async fn copies_after(pool: &Pool<Db>, seq: u64, span: u64) -> Result<Vec<CopyRef>> {
                let rows: Vec<CopyRefRow> = sqlx::query_as(
                    "SELECT batch_id, content_hash, seq, CAST(LENGTH(raw) AS BIGINT) AS size FROM batches \
                     WHERE seq > $1 AND seq < (SELECT COALESCE(MIN(seq), 0) FROM batches WHERE seq > $1) + $2 \
                     ORDER BY seq, batch_id, content_hash",
                )
                .bind(to_i64(seq)?)
                .bind(to_i64(span.max(1))?)
                .fetch_all(pool)
                .await?;
                rows.into_iter()
                    .map(|r| {
                        Ok(CopyRef {
                            batch_id: to_u64(r.batch_id, "batch_id")?,
                            content_hash: r.content_hash,
                            seq: to_u64(r.seq, "seq")?,
                            size: to_u64(r.size.unwrap_or(0), "size")?,
                        })
                    })
                    .collect()
            }

            pub(crate) async fn copy_heads(pool: &Pool<Db>, head_len: u64) -> Result<Vec<CopyHead>> {
                let rows: Vec<CopyHeadRow> = sqlx::query_as(
                    "SELECT batch_id, content_hash, source, SUBSTR(raw, 1, $1) AS head FROM batches \
                     ORDER BY batch_id, received_at, content_hash",
                )
                .bind(i32::try_from(head_len).map_err(|_| StoreError::OutOfRange(head_len))?)
                .fetch_all(pool)
                .await?;
                rows.into_iter()
                    .map(|r| {
                        Ok(CopyHead {
                            batch_id: to_u64(r.batch_id, "batch_id")?,
                            content_hash: r.content_hash,
                            source: r.source,
                            head: r.head.unwrap_or_default(),
                        })
                    })
                    .collect()
            }

            pub(crate) async fn batch_copy(
                pool: &Pool<Db>,
                batch_id: u64,
                content_hash: &str,
            ) -> Result<Option<BatchCopy>> {
                let row: Option<(i64, String, String, Vec<u8>, i64)> = sqlx::query_as(
                    "SELECT batch_id, source, content_hash, raw, received_at FROM batches \
                     WHERE batch_id = $1 AND content_hash = $2",
                )
                .bind(to_i64(batch_id)?)
                .bind(content_hash)
                .fetch_optional(pool)
                .await?;
                row.map(|(id, source, content_hash, raw, received_at)| {
                    Ok(BatchCopy { batch_id: to_u64(id, "batch_id")?, source, content_hash, raw, received_at })
                })
                .transpose()
            }

            pub(crate) async fn insert_verdict(pool: &Pool<Db>, v: &VerdictRow) -> Result<bool> {
                let done = sqlx::query(
                    "INSERT INTO verdicts (batch_id, content_hash, seq, batch_hash, l1_height, tx_count, outcome, \
                     header, signature, proof, judged_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                     ON CONFLICT (batch_id, content_hash) DO NOTHING",
                )
                .bind(to_i64(v.batch_id)?)
                .bind(v.content_hash.as_str())
                .bind(to_i64(v.seq)?)
                .bind(v.batch_hash.as_str())
                .bind(to_i64(v.l1_height)?)
                .bind(to_i64(v.tx_count)?)
                .bind(v.outcome.as_str())
                .bind(v.header.as_str())
                .bind(v.signature.as_str())
                .bind(v.proof.as_deref())
                .bind(v.judged_at)
                .execute(pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            pub(crate) async fn verdicts(pool: &Pool<Db>) -> Result<Vec<VerdictRow>> {
                let rows: Vec<VerdictDbRow> = sqlx::query_as(
                    "SELECT batch_id, content_hash, seq, batch_hash, l1_height, tx_count, outcome, header, \
                     signature, proof, judged_at FROM verdicts ORDER BY batch_id, seq, content_hash",
                )
                .fetch_all(pool)
                .await?;
                rows.into_iter()
                    .map(|r| {
                        Ok(VerdictRow {
                            batch_id: to_u64(r.batch_id, "batch_id")?,
                            content_hash: r.content_hash,
                            seq: to_u64(r.seq, "seq")?,
                            batch_hash: r.batch_hash,
                            l1_height: to_u64(r.l1_height, "l1_height")?,
                            tx_count: to_u64(r.tx_count, "tx_count")?,
                            outcome: r.outcome,
                            header: r.header,
                            signature: r.signature,
                            proof: r.proof,
                            judged_at: r.judged_at,
                        })
                    })
                    .collect()
            }

            pub(crate) async fn save_replay_checkpoint(
                pool: &Pool<Db>,
                name: &str,
                c: &ReplayCheckpointRow,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO replay_checkpoints (name, batch_id, seq_floor, state_root, bytes, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET \
                     batch_id = excluded.batch_id, seq_floor = excluded.seq_floor, \
                     state_root = excluded.state_root, bytes = excluded.bytes, created_at = excluded.created_at",
                )
                .bind(name)
                .bind(to_i64(c.batch_id)?)
                .bind(to_i64(c.seq_floor)?)
                .bind(c.state_root.as_str())
                .bind(c.bytes.as_slice())
                .bind(c.created_at)
                .execute(pool)
                .await?;
                Ok(())
            }

            pub(crate) async fn replay_checkpoint(pool: &Pool<Db>, name: &str) -> Result<Option<ReplayCheckpointRow>> {
                let row: Option<CheckpointDbRow> = sqlx::query_as(
                    "SELECT batch_id, seq_floor, state_root, bytes, created_at FROM replay_checkpoints WHERE name = $1",
                )
                .bind(name)
                .fetch_optional(pool)
                .await?;
                row.map(|r| {
                    Ok(ReplayCheckpointRow {
                        batch_id: to_u64(r.batch_id, "batch_id")?,
                        seq_floor: to_u64(r.seq_floor, "seq_floor")?,
                        state_root: r.state_root,
                        bytes: r.bytes,
                        created_at: r.created_at,
                    })
                })
                .transpose()
            }

            pub(crate) async fn conflicting_batch_ids(pool: &Pool<Db>) -> Result<Vec<u64>> {
                let rows: Vec<(i64,)> = sqlx::query_as(
                    "SELECT batch_id FROM batches GROUP BY batch_id HAVING COUNT(*) > 1 ORDER BY batch_id",
                )
                .fetch_all(pool)
                .await?;
                rows.into_iter().map(|(id,)| to_u64(id, "batch_id")).collect()
            }

            pub(crate) async fn max_batch_id(pool: &Pool<Db>) -> Result<Option<u64>> {
                let (id,): (Option<i64>,) = sqlx::query_as("SELECT MAX(batch_id) FROM batches").fetch_one(pool).await?;
                id.map(|id| to_u64(id, "batch_id")).transpose()
            }

            pub(crate) async fn insert_finding(pool: &Pool<Db>, f: &Finding) -> Result<bool> {
                let mut conn = pool.acquire().await?;
                insert_finding_in(&mut conn, f).await
            }

            pub(crate) async fn resolve_finding(pool: &Pool<Db>, id: &str, at: i64) -> Result<bool> {
                let done = sqlx::query("UPDATE findings SET resolved_at = $1 WHERE id = $2 AND resolved_at IS NULL")
                    .bind(at)
                    .bind(id)
                    .execute(pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            pub(crate) async fn set_finding_deadline(pool: &Pool<Db>, id: &str, deadline: i64) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE findings SET deadline_height = $1 \
                     WHERE id = $2 AND (deadline_height IS NULL OR deadline_height <> $1)",
                )
                .bind(deadline)
                .bind(id)
                .execute(pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            pub(crate) async fn mark_notified(pool: &Pool<Db>, id: &str, at: i64) -> Result<bool> {
                let done = sqlx::query("UPDATE findings SET notified_at = $1 WHERE id = $2 AND notified_at IS NULL")
                    .bind(at)
                    .bind(id)
                    .execute(pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            pub(crate) async fn unnotified_findings(pool: &Pool<Db>) -> Result<Vec<Finding>> {
                let sql = format!(
                    "SELECT {FINDING_COLS} FROM findings WHERE resolved_at IS NULL AND notified_at IS NULL \
                     ORDER BY first_seen, id"
                );
                let rows: Vec<FindingRow> = sqlx::query_as(&sql).fetch_all(pool).await?;
                rows.into_iter().map(finding).collect()
            }

            pub(crate) async fn finding_by_id(pool: &Pool<Db>, id: &str) -> Result<Option<Finding>> {
                let sql = format!("SELECT {FINDING_COLS} FROM findings WHERE id = $1");
                let row: Option<FindingRow> = sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?;
                row.map(finding).transpose()
            }

            pub(crate) async fn findings(pool: &Pool<Db>, open_only: bool) -> Result<Vec<Finding>> {
                let filter = if open_only { "WHERE resolved_at IS NULL " } else { "" };
                let sql = format!("SELECT {FINDING_COLS} FROM findings {filter}ORDER BY first_seen, id");
                let rows: Vec<FindingRow> = sqlx::query_as(&sql).fetch_all(pool).await?;
                rows.into_iter().map(finding).collect()
            }
        }
    };
}

backend_ops!(sqlite, sqlx::Sqlite, sqlx::SqliteConnection, "BEGIN IMMEDIATE");
backend_ops!(postgres, sqlx::Postgres, sqlx::PgConnection, "BEGIN");
