//! The devnet runner: starts a regtest bitcoind, funds the devnet wallet, etches a rune, creates the
//! 2-of-3 bridge from the regtest profile's federation keys, writes the effective profile and genesis
//! into a data dir, funds users with the rune on L1 and makes their deposits, then, every tick, seals
//! a batch (deposits with enough confirmations + the mempool), publishes it (API + batch file),
//! anchors its hash on L1, mines a block (auto-mine) and pays matured withdrawals, committing the
//! faults switched on.

use crate::api::{admin_router, router, AppState};
use crate::bitcoind::{BitcoindError, BitcoindOptions, BitcoindProcess};
use crate::faults::{FaultKind, FaultPlan, FaultSpec};
use crate::flood::{self, FloodReport};
use crate::l1tx::build_anchor_tx;
use crate::node_facts::{profile_bridge, NodeFacts, NodeFactsError};
use crate::rpc::{RpcClient, RpcError};
use crate::runes::{self, DepositSpec, PayoutSpec, RuneLedger, RunesError};
use crate::sequencer::{AnchorInfo, Published, Sequencer, WithdrawalState, WithdrawalStatus};
use crate::wallet::{TxRequest, Wallet, WalletError, DEFAULT_FEE_RATE};
use crate::workload::{producer_key, user_key};
use bitcoin::key::Keypair;
use bitcoin::secp256k1::SecretKey;
use bitcoin::{Address, Amount, FeeRate, Network, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use kray_replayer::address::{account_key_of, format_l2_address, secp};
use kray_replayer::bridge::BridgeDescriptor;
use kray_replayer::genesis::{Genesis, GenesisAccount};
use kray_replayer::hash::{hex32, sha256, Hash32};
use kray_replayer::l1facts::L1Facts;
use kray_replayer::profile::{InternalKeyKind, Profile};
use kray_replayer::seal::Sealer;
use kray_replayer::tx::{OutPointRef, Tx};
use ordinals::RuneId;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use thiserror::Error;

/// Rune units the etching premines to the devnet wallet.
pub const PREMINE: u128 = 1_000_000_000;
/// Consecutive failed ticks after which [`Devnet::run`] gives up.
pub const MAX_FAILED_TICKS: u32 = 5;
/// Satoshis each user receives for L1 fees.
pub const USER_SATS: u64 = 100_000_000;

/// How to run a devnet.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// Data dir (profile, genesis, batches).
    pub data_dir: PathBuf,
    /// Users funded and depositing.
    pub users: usize,
    /// Seed of the producer and user keys.
    pub seed: u64,
    /// Rune units each user deposits.
    pub deposit_units: u64,
    /// Time between batches.
    pub batch_interval: Duration,
    /// Seal early as soon as this many user txs wait (0: only on the interval).
    pub batch_max_txs: usize,
    /// Mine a block after every batch.
    pub auto_mine: bool,
    /// Public API port (0: any free port).
    pub port: u16,
    /// Admin port (0: any free port).
    pub admin_port: u16,
    /// Faults to commit.
    pub faults: Vec<FaultSpec>,
    /// Bridge with the first signer's key as internal key (key-path spendable), as the JavaScript.
    pub legacy_internal_key: bool,
    /// The bitcoind executable (default: `BITCOIND_EXE` or the install cache).
    pub bitcoind_exe: Option<PathBuf>,
    /// Largest block the node mines, in weight units (`-blockmaxweight`; `None`: Core's 4,000,000).
    /// Core keeps `-blockreservedweight` (8,000) of it for the header and coinbase, so 16,000 leaves
    /// room for about 2,000 vB of transactions: small blocks that a [`Devnet::flood_mempool`] fills.
    pub block_max_weight: Option<u64>,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("devnet-data"),
            users: 3,
            seed: 1,
            deposit_units: 10_000,
            batch_interval: Duration::from_secs(2),
            batch_max_txs: 0,
            auto_mine: true,
            port: 0,
            admin_port: 0,
            faults: Vec::new(),
            legacy_internal_key: false,
            bitcoind_exe: None,
            block_max_weight: None,
        }
    }
}

/// Why the devnet failed.
#[derive(Debug, Error)]
pub enum DevnetError {
    /// bitcoind.
    #[error("bitcoind: {0}")]
    Bitcoind(#[from] BitcoindError),
    /// RPC.
    #[error("bitcoind RPC: {0}")]
    Rpc(#[from] RpcError),
    /// Wallet.
    #[error("wallet: {0}")]
    Wallet(#[from] WalletError),
    /// Runes.
    #[error("runes: {0}")]
    Runes(#[from] RunesError),
    /// Files.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// L1 facts.
    #[error("L1 facts: {0}")]
    Facts(#[from] NodeFactsError),
    /// Anything else in setting up.
    #[error("{0}")]
    Setup(String),
}

fn setup(e: impl std::fmt::Display) -> DevnetError {
    DevnetError::Setup(e.to_string())
}

/// Where everything is.
#[derive(Debug, Clone)]
pub struct DevnetInfo {
    /// Public API base URL.
    pub api_url: String,
    /// Admin base URL.
    pub admin_url: String,
    /// bitcoind RPC URL with credentials.
    pub bitcoind_url: String,
    /// Data dir.
    pub data_dir: PathBuf,
    /// Effective profile file.
    pub profile_path: PathBuf,
    /// Genesis file.
    pub genesis_path: PathBuf,
    /// Batch files directory.
    pub batches_dir: PathBuf,
    /// The etched rune.
    pub rune_id: String,
    /// Bridge address.
    pub bridge_address: String,
    /// Users' L2 (= L1 BIP-86) addresses.
    pub user_addresses: Vec<String>,
}

impl DevnetInfo {
    /// The `kray-guardian replay` command over this devnet's published batches.
    pub fn replay_command(&self) -> String {
        format!(
            "kray-guardian replay --profile {} --genesis {} --batches {} --bitcoind {}",
            self.profile_path.display(),
            self.genesis_path.display(),
            self.batches_dir.display(),
            self.bitcoind_url
        )
    }
}

/// A running devnet.
pub struct Devnet {
    node: BitcoindProcess,
    rpc: RpcClient,
    wallet: Wallet,
    user_wallets: Vec<Wallet>,
    users: Vec<Keypair>,
    ledger: RuneLedger,
    scanned: u32,
    bridge: BridgeDescriptor,
    signers: Vec<Keypair>,
    rune: RuneId,
    profile: Profile,
    facts: Arc<NodeFacts>,
    bridge_outputs: BTreeMap<OutPoint, u32>,
    credited: HashSet<OutPoint>,
    not_deposits: HashSet<OutPoint>,
    bridge_spent: HashSet<OutPoint>,
    anchor_txids: HashMap<Txid, u64>,
    config: DevnetConfig,
    /// Shared with the API.
    pub state: AppState,
    /// Where things are.
    pub info: DevnetInfo,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        for s in &self.servers {
            s.abort();
        }
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), DevnetError> {
    std::fs::write(path, bytes).map_err(|e| DevnetError::Io(path.display().to_string(), e))
}

/// The devnet's sequencer for `profile`: a genesis of the Treasury alone, produced by the seed's key.
fn sequencer_for(
    profile: &Profile,
    seed: u64,
    users: Vec<Keypair>,
) -> Result<(Sequencer, Genesis, Hash32), DevnetError> {
    let producer = producer_key(seed);
    let genesis = Genesis::new(
        profile.network,
        vec![hex::encode(producer.x_only_public_key().0.serialize())],
        vec![GenesisAccount { address: profile.treasury.clone(), balance: 0 }],
    );
    let (chain, state) = genesis.build(profile).map_err(setup)?;
    let chain_id = chain.chain_id();
    let sealer = Sealer::new(chain, state, None, producer).map_err(setup)?;
    Ok((Sequencer::new(sealer, users), genesis, chain_id))
}

/// `http://user:password@127.0.0.1:port` of `node` (the generated credentials are URL-safe tokens).
fn url_with_credentials(node: &BitcoindProcess) -> String {
    format!("http://{}:{}@127.0.0.1:{}", node.rpc_user(), node.rpc_password(), node.rpc_port())
}

fn federation_keys() -> Result<Vec<Keypair>, DevnetError> {
    (1u8..=3)
        .map(|i| {
            let mut b = [0u8; 32];
            b[31] = i;
            SecretKey::from_slice(&b).map(|sk| Keypair::from_secret_key(secp(), &sk)).map_err(setup)
        })
        .collect()
}

async fn serve(router: axum::Router, port: u16) -> Result<(String, tokio::task::JoinHandle<()>), DevnetError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| DevnetError::Io(format!("bind 127.0.0.1:{port}"), e))?;
    let addr = listener.local_addr().map_err(|e| DevnetError::Io("local_addr".into(), e))?;
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok((format!("http://{addr}"), handle))
}

impl Devnet {
    /// Set everything up (bitcoind, rune, bridge, users, deposits, API); the chain has no batch yet.
    pub async fn start(config: DevnetConfig) -> Result<Self, DevnetError> {
        if config.users < 2 {
            return Err(setup("a devnet needs at least 2 users"));
        }
        let batches_dir = config.data_dir.join("batches");
        std::fs::create_dir_all(&batches_dir).map_err(|e| DevnetError::Io(batches_dir.display().to_string(), e))?;
        // A new chain: batch files of an earlier run would be replayed with it.
        let old = std::fs::read_dir(&batches_dir).map_err(|e| DevnetError::Io(batches_dir.display().to_string(), e))?;
        for entry in old.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("batch-") && name.ends_with(".json") {
                std::fs::remove_file(entry.path()).map_err(|e| DevnetError::Io(name.to_string(), e))?;
            }
        }
        let extra_args = config.block_max_weight.map(|w| vec![format!("-blockmaxweight={w}")]).unwrap_or_default();
        let node = BitcoindProcess::start_with(BitcoindOptions {
            exe: config.bitcoind_exe.clone(),
            extra_args,
            ..Default::default()
        })
        .await?;
        let rpc = node.rpc_client();
        let wallet = Wallet::from_seed(format!("kray-devnet-{}", config.seed).as_bytes(), Network::Regtest)?;
        let users: Vec<Keypair> = (0..config.users as u64).map(|i| user_key(config.seed, i)).collect();
        let user_wallets = users.iter().map(|k| Wallet::from_secret_key(k.secret_key(), Network::Regtest)).collect();
        let mut profile = Profile::load("regtest").map_err(setup)?;
        if let Some(b) = profile.bridge.as_mut() {
            b.internal_key = if config.legacy_internal_key { InternalKeyKind::Legacy } else { InternalKeyKind::Nums };
        }
        let bridge = profile_bridge(&profile)?.ok_or_else(|| setup("the regtest profile names no bridge"))?;
        let fed = federation_keys()?;
        let signers = bridge
            .keys()
            .iter()
            .map(|k| fed.iter().find(|kp| kp.public_key() == *k).copied().ok_or_else(|| setup("federation key")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut d = Self {
            rpc,
            wallet,
            user_wallets,
            users,
            ledger: RuneLedger::new(),
            scanned: 0,
            bridge,
            signers,
            rune: RuneId { block: 0, tx: 0 },
            facts: Arc::new(NodeFacts::connect(&url_with_credentials(&node), &profile)?),
            profile: profile.clone(),
            bridge_outputs: BTreeMap::new(),
            credited: HashSet::new(),
            not_deposits: HashSet::new(),
            bridge_spent: HashSet::new(),
            anchor_txids: HashMap::new(),
            state: AppState {
                seq: Arc::new(Mutex::new(sequencer_for(&profile, config.seed, vec![])?.0)),
                published: Arc::new(RwLock::new(Published::default())),
                faults: Arc::new(Mutex::new(FaultPlan::default())),
                facts: None,
                chain_id: [0; 32],
            },
            info: DevnetInfo {
                api_url: String::new(),
                admin_url: String::new(),
                bitcoind_url: url_with_credentials(&node),
                data_dir: config.data_dir.clone(),
                profile_path: config.data_dir.join("profile.toml"),
                genesis_path: config.data_dir.join("genesis.json"),
                batches_dir,
                rune_id: String::new(),
                bridge_address: String::new(),
                user_addresses: vec![],
            },
            node,
            config,
            servers: vec![],
        };
        d.mine(101).await?;

        // Etch the rune (a reserved name: no commit-reveal).
        let etch = runes::build_etch_tx(&d.wallet, &d.ledger, PREMINE, Some('K'), DEFAULT_FEE_RATE)?;
        d.confirm(&etch).await?;
        let rune = d.ledger.etched_by(&etch.compute_txid()).ok_or_else(|| setup("the etching was not seen"))?.id;
        d.rune = rune;
        d.profile.rune_id = rune.to_string();
        let profile = d.profile.clone();
        let toml = toml::to_string(&profile).map_err(setup)?;
        write(&d.info.profile_path, toml.as_bytes())?;
        Profile::load(&d.info.profile_path.display().to_string()).map_err(setup)?;
        d.facts = Arc::new(NodeFacts::connect(&url_with_credentials(&d.node), &profile)?);

        // Genesis: the Treasury and the producer.
        let (seq, genesis, chain_id) = sequencer_for(&profile, d.config.seed, d.users.clone())?;
        write(&d.info.genesis_path, serde_json::to_string_pretty(&genesis).map_err(setup)?.as_bytes())?;
        d.state.seq = Arc::new(Mutex::new(seq));
        d.state.chain_id = chain_id;
        d.state.facts = Some(d.facts.clone() as Arc<dyn L1Facts + Send + Sync>);
        {
            let mut plan = d.state.faults.lock().map_err(|_| setup("fault plan lock"))?;
            for f in &d.config.faults {
                plan.add(*f);
            }
        }

        // Fund users: runes, then coins for their fees.
        let units = u128::from(d.config.deposit_units);
        let rune_sends: Vec<(ScriptBuf, u128)> =
            d.user_wallets.iter().map(|w| (w.script_pubkey().clone(), units * 2)).collect();
        let fund = runes::build_transfer_tx(&d.wallet, &d.ledger, rune, &rune_sends, DEFAULT_FEE_RATE)?;
        d.confirm(&fund).await?;
        let coins: Vec<TxOut> = d
            .user_wallets
            .iter()
            .map(|w| TxOut { value: Amount::from_sat(USER_SATS), script_pubkey: w.script_pubkey().clone() })
            .collect();
        let mut req = TxRequest::pay(coins, DEFAULT_FEE_RATE);
        req.exclude = d.ledger.rune_outpoints();
        let pay = d.wallet.build(&req)?;
        d.confirm(&pay).await?;

        // Each user deposits to the bridge for its own L2 account.
        for i in 0..d.users.len() {
            let spec = DepositSpec {
                rune,
                amount: units,
                l2_account: account_key_of(&d.users[i].x_only_public_key().0).0,
                bridge_value: runes::RUNE_OUTPUT_VALUE,
            };
            let tx = runes::build_deposit_tx(&d.user_wallets[i], &d.ledger, &d.bridge, &spec, DEFAULT_FEE_RATE)?;
            d.broadcast(&tx).await?;
        }
        let confs = u64::from(profile.confirmations.max(1));
        d.mine(confs).await?;

        let (api_url, h1) = serve(router(d.state.clone()), d.config.port).await?;
        let (admin_url, h2) = serve(admin_router(d.state.clone()), d.config.admin_port).await?;
        d.servers = vec![h1, h2];
        d.info.api_url = api_url;
        d.info.admin_url = admin_url;
        d.info.rune_id = rune.to_string();
        d.info.bridge_address = d.bridge.address(Network::Regtest).to_string();
        d.info.user_addresses = d.user_wallets.iter().map(|w| w.address().to_string()).collect();
        tracing::info!(api = %d.info.api_url, rune = %d.info.rune_id, "devnet up");
        Ok(d)
    }

    /// The OS process id of the devnet's bitcoind, while it runs.
    pub fn bitcoind_pid(&self) -> Option<u32> {
        self.node.pid()
    }

    /// Stops the devnet's bitcoind: SIGTERM, up to `grace` for its clean shutdown, then SIGKILL.
    /// (Dropping the devnet kills it at once.)
    pub fn stop_bitcoind(&mut self, grace: Duration) {
        self.node.terminate(grace);
    }

    /// The RPC client of the devnet's node.
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    /// The effective profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The bridge.
    pub fn bridge(&self) -> &BridgeDescriptor {
        &self.bridge
    }

    /// The etched rune.
    pub fn rune(&self) -> RuneId {
        self.rune
    }

    /// Height scanned so far.
    pub fn height(&self) -> u32 {
        self.scanned
    }

    /// User key `i`.
    pub fn user(&self, i: usize) -> Option<&Keypair> {
        self.users.get(i)
    }

    /// Scan blocks up to the node's tip: wallets, rune ledger, bridge outputs, anchor heights.
    pub async fn sync(&mut self) -> Result<(), DevnetError> {
        let tip = u32::try_from(self.rpc.get_block_count().await?).map_err(setup)?;
        let bridge_spk = self.bridge.script_pubkey();
        for height in self.scanned + 1..=tip {
            let hash = self.rpc.get_block_hash(height.into()).await?;
            let block = self.rpc.get_block(&hash).await?;
            self.wallet.scan_block(&block, height);
            for w in &mut self.user_wallets {
                w.scan_block(&block, height);
            }
            self.ledger.apply_block(&block, height.into());
            for tx in &block.txdata {
                let txid = tx.compute_txid();
                for input in &tx.input {
                    self.bridge_spent.remove(&input.previous_output);
                    self.bridge_outputs.remove(&input.previous_output);
                }
                for (vout, out) in tx.output.iter().enumerate() {
                    if out.script_pubkey == bridge_spk {
                        self.bridge_outputs.insert(OutPoint { txid, vout: vout as u32 }, height);
                    }
                }
                if let Some(batch_id) = self.anchor_txids.remove(&txid) {
                    if let Ok(mut p) = self.state.published.write() {
                        if let Some(a) = p.anchors.get_mut(&batch_id) {
                            a.height = Some(height);
                        }
                        let payable = height + self.profile.challenge_window_blocks + 1;
                        for w in p.withdrawals.iter_mut().filter(|w| w.batch_id == batch_id) {
                            w.payable_at = Some(payable);
                        }
                    }
                }
            }
        }
        self.scanned = tip;
        Ok(())
    }

    /// Mine `n` blocks to the devnet wallet and scan them.
    pub async fn mine(&mut self, n: u64) -> Result<(), DevnetError> {
        self.rpc.generate_to_address(n, self.wallet.address()).await?;
        self.sync().await
    }

    /// Pays `amount` from the devnet wallet to `script_pubkey` (e.g. a guardian's key, so it can pay
    /// for its own anchors and challenge commitments) and mines the payment.
    pub async fn fund_script(
        &mut self,
        script_pubkey: bitcoin::ScriptBuf,
        amount: bitcoin::Amount,
    ) -> Result<Txid, DevnetError> {
        let tx = self
            .wallet
            .pay_to(script_pubkey, amount, bitcoin::FeeRate::from_sat_per_vb_u32(2))
            .map_err(|e| setup(format!("funding: {e}")))?;
        self.confirm(&tx).await
    }

    /// Floods the mempool with `n_txs` independent transactions paying `fee_rate` (see
    /// [`crate::flood`]): a split from the devnet wallet's confirmed coins is mined alone in one new
    /// block, then every flood transaction is broadcast. With a small `block_max_weight` the next
    /// blocks are full of them and a transaction paying less waits. Call again to top the flood up.
    pub async fn flood_mempool(&mut self, n_txs: usize, fee_rate: FeeRate) -> Result<FloodReport, DevnetError> {
        self.sync().await?;
        let flood = flood::flood_wallet(Network::Regtest).map_err(setup)?;
        // Only confirmed coins: the split is mined alone, so it cannot spend an unconfirmed output.
        let mut exclude = self.ledger.rune_outpoints();
        exclude.extend(self.wallet.utxos().filter(|u| u.height.is_none()).map(|u| u.outpoint));
        let split = flood::build_split(&self.wallet, &flood, n_txs, fee_rate, DEFAULT_FEE_RATE, &exclude)
            .map_err(|e| setup(format!("flood split: {e}")))?;
        let split_txid = split.compute_txid();
        let raw = bitcoin::consensus::encode::serialize_hex(&split);
        let address = self.wallet.address().to_string();
        let _: serde_json::Value = self.rpc.call("generateblock", serde_json::json!([address, [raw]])).await?;
        self.sync().await?;
        let split_height = self.scanned;
        let txs = flood::build_flood_txs(&flood, &split, fee_rate).map_err(|e| setup(format!("flood: {e}")))?;
        let mut txids = Vec::with_capacity(txs.len());
        let mut vsize = 0;
        for tx in &txs {
            txids.push(self.rpc.send_raw_transaction(tx).await?);
            vsize += tx.vsize() as u64;
        }
        tracing::info!(%split_txid, txs = txids.len(), vsize, %fee_rate, "mempool flooded");
        Ok(FloodReport { split_txid, split_height, txids, fee_rate, vsize })
    }

    async fn broadcast(&mut self, tx: &Transaction) -> Result<Txid, DevnetError> {
        let txid = self.rpc.send_raw_transaction(tx).await?;
        self.wallet.apply_unconfirmed(tx);
        for w in &mut self.user_wallets {
            w.apply_unconfirmed(tx);
        }
        Ok(txid)
    }

    async fn confirm(&mut self, tx: &Transaction) -> Result<Txid, DevnetError> {
        let txid = self.broadcast(tx).await?;
        self.mine(1).await?;
        Ok(txid)
    }

    /// Deposit txs for bridge outputs that reached the profile's confirmations, each credited once.
    fn ready_deposits(&mut self) -> Vec<Tx> {
        let confs = self.profile.confirmations.max(1);
        let unit = self.profile.credits_per_rune_unit();
        let ready: Vec<OutPoint> = self
            .bridge_outputs
            .iter()
            .filter(|(op, h)| {
                self.scanned + 1 >= **h + confs && !self.credited.contains(op) && !self.not_deposits.contains(op)
            })
            .map(|(op, _)| *op)
            .collect();
        let mut txs = Vec::new();
        for op in ready {
            let Some(txid) = hex32(&op.txid.to_string()) else { continue };
            let r = OutPointRef { txid, vout: op.vout };
            match self.facts.deposit(&r) {
                Ok(Some(f)) if f.to_bridge && f.rune_amount > 0 && f.recipient.is_some() => {
                    let Some(to) = f.recipient else { continue };
                    let Some(amount) = f.rune_amount.checked_mul(unit) else {
                        self.not_deposits.insert(op);
                        continue;
                    };
                    self.credited.insert(op);
                    txs.push(Tx::unsigned(
                        "deposit",
                        r.to_string(),
                        format_l2_address(&to, self.profile.network),
                        amount,
                        0,
                    ));
                }
                Ok(_) => {
                    self.not_deposits.insert(op);
                }
                Err(e) => tracing::warn!(outpoint = %r, error = %e, "deposit fact unavailable, retrying later"),
            }
        }
        txs
    }

    fn plan<T>(&self, f: impl FnOnce(&mut FaultPlan) -> T) -> Result<T, DevnetError> {
        let mut plan = self.state.faults.lock().map_err(|_| setup("fault plan lock poisoned"))?;
        Ok(f(&mut plan))
    }

    /// One step: seal, publish, anchor, (mine), pay matured withdrawals, commit due L1 faults.
    /// Returns the id of the batch sealed.
    pub async fn tick(&mut self) -> Result<u64, DevnetError> {
        self.sync().await?;
        let deposits = self.ready_deposits();
        let l1_height = self.scanned;
        let batch_id = {
            let seq = self.state.seq.lock().map_err(|_| setup("sequencer lock poisoned"))?;
            seq.sealer().tip().batch_id + 1
        };
        let fault = self.plan(|p| p.batch_fault(batch_id))?;
        let sealed = {
            let mut seq = self.state.seq.lock().map_err(|_| setup("sequencer lock poisoned"))?;
            seq.seal(deposits, l1_height, self.facts.as_ref(), fault)
        };
        for r in &sealed.rejected {
            tracing::info!(batch = batch_id, index = r.index, reason = %r.reason, "candidate refused");
        }
        if let Some(c) = sealed.committed {
            tracing::warn!(batch = batch_id, fault = %c, "fault committed");
            self.plan(|p| p.commit(FaultKind::Batch(c), batch_id, None))?;
        }
        if let (Some(c), Some(why)) = (fault, &sealed.not_committed) {
            tracing::warn!(batch = batch_id, fault = %c, reason = %why, "fault postponed to a later batch");
        }
        let batch = sealed.batch;
        let withhold = self.plan(|p| p.is_due(FaultKind::Withhold, batch_id))?;
        if withhold {
            self.plan(|p| p.commit(FaultKind::Withhold, batch_id, None))?;
        } else {
            let path = self.info.batches_dir.join(format!("batch-{batch_id:06}.json"));
            write(&path, batch.to_json().as_bytes())?;
            if let Some(e) = &sealed.extra {
                let path = self.info.batches_dir.join(format!("batch-{batch_id:06}~equivocation.json"));
                write(&path, e.to_json().as_bytes())?;
            }
        }
        let state_withdrawals: Vec<WithdrawalStatus> = {
            let seq = self.state.seq.lock().map_err(|_| setup("sequencer lock poisoned"))?;
            seq.sealer()
                .state()
                .withdrawals()
                .iter()
                .filter(|w| w.batch_id == batch_id)
                .map(|w| WithdrawalStatus {
                    tx_id: hex::encode(w.tx_id),
                    batch_id,
                    l1_address: w.l1_address.clone(),
                    amount: w.amount,
                    status: WithdrawalState::Queued,
                    payable_at: None,
                    payout_txid: None,
                })
                .collect()
        };
        let hash = batch.signed.header.hash();
        {
            let mut p = self.state.published.write().map_err(|_| setup("publication lock poisoned"))?;
            p.batches.insert(batch_id, batch);
            if let Some(e) = sealed.extra {
                p.equivocations.insert(batch_id, e);
            }
            if withhold {
                p.withheld.insert(batch_id);
            }
            let frozen = p.frozen_from.is_some_and(|f| f <= batch_id);
            for mut w in state_withdrawals {
                if frozen {
                    w.status = WithdrawalState::Frozen;
                }
                p.withdrawals.push(w);
            }
        }

        // Anchor.
        if self.plan(|p| p.is_due(FaultKind::StopAnchoring, batch_id))? {
            self.plan(|p| p.commit(FaultKind::StopAnchoring, batch_id, None))?;
        } else {
            let mut root = hash;
            if self.plan(|p| p.is_due(FaultKind::WrongAnchor, batch_id))? {
                root = sha256(&hash);
                self.plan(|p| p.commit(FaultKind::WrongAnchor, batch_id, None))?;
            }
            let tx = build_anchor_tx(&self.wallet, &root, DEFAULT_FEE_RATE, &self.ledger.rune_outpoints())?;
            let txid = self.broadcast(&tx).await?;
            self.anchor_txids.insert(txid, batch_id);
            let mut p = self.state.published.write().map_err(|_| setup("publication lock poisoned"))?;
            p.anchors.insert(batch_id, AnchorInfo { txid: txid.to_string(), root: hex::encode(root), height: None });
        }

        self.l1_faults(batch_id).await?;
        if self.config.auto_mine {
            self.mine(1).await?;
        }
        self.pay_matured().await?;
        Ok(batch_id)
    }

    fn free_bridge_utxo(&self, units: u128) -> Option<(OutPoint, u128)> {
        self.ledger
            .outputs_of_script(&self.bridge.script_pubkey(), self.rune)
            .into_iter()
            .filter(|(op, a)| *a >= units && !self.bridge_spent.contains(op))
            .max_by_key(|(_, a)| *a)
    }

    async fn payout(&mut self, units: u128, destination: ScriptBuf) -> Result<Txid, DevnetError> {
        let (utxo, _) = self
            .free_bridge_utxo(units)
            .ok_or_else(|| setup(format!("no confirmed bridge output holds {units} rune units")))?;
        let spec = PayoutSpec { bridge_utxo: utxo, rune: self.rune, amount: units, destination };
        let signers = [self.signers[0], self.signers[1]];
        let tx =
            runes::build_bridge_payout_tx(&self.wallet, &self.ledger, &self.bridge, &signers, &spec, DEFAULT_FEE_RATE)?;
        let txid = self.broadcast(&tx).await?;
        self.bridge_spent.insert(utxo);
        Ok(txid)
    }

    fn destination(&self, l1_address: &str) -> Option<ScriptBuf> {
        Address::from_str(l1_address).ok()?.require_network(Network::Regtest).ok().map(|a| a.script_pubkey())
    }

    async fn pay_withdrawal(&mut self, index: usize) -> Result<Option<Txid>, DevnetError> {
        let w = {
            let p = self.state.published.read().map_err(|_| setup("publication lock poisoned"))?;
            match p.withdrawals.get(index) {
                Some(w) => w.clone(),
                None => return Ok(None),
            }
        };
        let unit = self.profile.credits_per_rune_unit().max(1);
        let units = u128::from(w.amount / unit);
        let Some(dest) = self.destination(&w.l1_address) else {
            tracing::warn!(to = %w.l1_address, "withdrawal to an address this network cannot pay; skipped");
            return Ok(None);
        };
        if units == 0 {
            return Ok(None);
        }
        let txid = match self.payout(units, dest).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "withdrawal payout failed, retrying later");
                return Ok(None);
            }
        };
        let mut p = self.state.published.write().map_err(|_| setup("publication lock poisoned"))?;
        if let Some(w) = p.withdrawals.get_mut(index) {
            w.status = WithdrawalState::Paid;
            w.payout_txid = Some(txid.to_string());
        }
        tracing::info!(%txid, batch = w.batch_id, amount = w.amount, "withdrawal paid");
        Ok(Some(txid))
    }

    /// Pay every queued withdrawal whose batch's window is over, unless frozen.
    async fn pay_matured(&mut self) -> Result<(), DevnetError> {
        let due: Vec<usize> = {
            let p = self.state.published.read().map_err(|_| setup("publication lock poisoned"))?;
            p.withdrawals
                .iter()
                .enumerate()
                .filter(|(_, w)| {
                    w.status == WithdrawalState::Queued
                        && p.frozen_from.is_none_or(|f| w.batch_id < f)
                        && w.payable_at.is_some_and(|h| self.scanned + 1 >= h)
                })
                .map(|(i, _)| i)
                .collect()
        };
        for i in due {
            self.pay_withdrawal(i).await?;
        }
        Ok(())
    }

    async fn l1_faults(&mut self, batch_id: u64) -> Result<(), DevnetError> {
        if self.plan(|p| p.is_due(FaultKind::PayEarly, batch_id))? {
            let first = {
                let p = self.state.published.read().map_err(|_| setup("publication lock poisoned"))?;
                p.withdrawals.iter().position(|w| w.status != WithdrawalState::Paid)
            };
            if let Some(i) = first {
                if let Some(txid) = self.pay_withdrawal(i).await? {
                    self.plan(|p| p.commit(FaultKind::PayEarly, batch_id, Some(txid.to_string())))?;
                }
            }
        }
        if self.plan(|p| p.is_due(FaultKind::Theft, batch_id))? {
            let thief = Wallet::from_seed(b"kray-devnet-thief", Network::Regtest)?.script_pubkey().clone();
            let units = self.free_bridge_utxo(1).map(|(_, a)| a);
            if let Some(units) = units {
                match self.payout(units, thief).await {
                    Ok(txid) => self.plan(|p| p.commit(FaultKind::Theft, batch_id, Some(txid.to_string())))?,
                    Err(e) => tracing::warn!(error = %e, "theft postponed"),
                }
            }
        }
        if self.plan(|p| p.is_due(FaultKind::KeyPathSweep, batch_id))? {
            let thief = Wallet::from_seed(b"kray-devnet-thief", Network::Regtest)?.script_pubkey().clone();
            if let Some((utxo, _)) = self.free_bridge_utxo(1) {
                match runes::build_key_path_sweep_tx(
                    &self.wallet,
                    &self.ledger,
                    &self.bridge,
                    utxo,
                    &self.signers[0],
                    thief,
                    DEFAULT_FEE_RATE,
                ) {
                    Ok(tx) => {
                        let txid = self.broadcast(&tx).await?;
                        self.bridge_spent.insert(utxo);
                        self.plan(|p| p.commit(FaultKind::KeyPathSweep, batch_id, Some(txid.to_string())))?;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "key-path sweep impossible (needs --legacy-internal-key); dropped");
                        self.plan(|p| p.pending.retain(|s| s.kind != FaultKind::KeyPathSweep))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// True when `batch_max_txs` user txs (or more) wait in the mempool.
    fn mempool_full(&self) -> bool {
        self.config.batch_max_txs > 0
            && self.state.seq.lock().map(|s| s.mempool_len() >= self.config.batch_max_txs).unwrap_or(false)
    }

    /// Tick every `batch_interval`, or as soon as `batch_max_txs` txs wait, until `stop` resolves. A
    /// failed tick is logged and retried; after [`MAX_FAILED_TICKS`] failures in a row the error is
    /// returned.
    pub async fn run(&mut self, stop: impl std::future::Future<Output = ()>) -> Result<(), DevnetError> {
        tokio::pin!(stop);
        let mut interval = tokio::time::interval(self.config.batch_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        let mut failures = 0;
        loop {
            let due = tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = interval.tick() => true,
                _ = poll.tick() => self.mempool_full(),
            };
            if !due {
                continue;
            }
            interval.reset();
            match self.tick().await {
                Ok(id) => {
                    failures = 0;
                    tracing::info!(batch = id, height = self.scanned, "batch sealed and published");
                }
                Err(e) if failures + 1 < MAX_FAILED_TICKS => {
                    failures += 1;
                    tracing::error!(error = %e, failures, "devnet tick failed, retrying");
                }
                Err(e) => return Err(e),
            }
        }
    }
}
