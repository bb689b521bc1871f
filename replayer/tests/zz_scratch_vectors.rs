// SCRATCH: computes the vectors for docs/protocol.md. Delete after use.
use bitcoin::key::Keypair;
use bitcoin::secp256k1::SecretKey;
use kray_replayer::address::*;
use kray_replayer::batch::*;
use kray_replayer::bridge::*;
use kray_replayer::execute::*;
use kray_replayer::fault::*;
use kray_replayer::genesis::*;
use kray_replayer::hash::*;
use kray_replayer::l1facts::*;
use kray_replayer::merkle::*;
use kray_replayer::profile::*;
use kray_replayer::proof::*;
use kray_replayer::replay::*;
use kray_replayer::signature::*;
use kray_replayer::state::*;
use kray_replayer::tx::*;

fn kp(i: u8) -> Keypair {
    let mut b = [0u8; 32];
    b[31] = i;
    Keypair::from_secret_key(secp(), &SecretKey::from_slice(&b).unwrap())
}

fn rfc6962(l: &[Hash32]) -> Hash32 {
    if l.len() == 1 {
        return l[0];
    }
    let mut k = 1;
    while k * 2 < l.len() {
        k *= 2;
    }
    node_hash(&rfc6962(&l[..k]), &rfc6962(&l[k..]))
}

#[test]
fn vectors() {
    // RFC 6962 shape equivalence
    for n in 1..=300usize {
        let l: Vec<Hash32> = (0..n).map(|i| leaf_hash(&(i as u32).to_be_bytes())).collect();
        assert_eq!(root_of(&l), rfc6962(&l), "n={n}");
    }
    println!("RFC6962 shape equal for 1..=300");

    // hashing
    let msg = "kray_bc11ec6ee659d2364a91e60e7d485dfa:kray_0d735c11a128792366fba42861b69777:10000:0:transfer";
    println!("NOTE signing hash {}", hex::encode(sha256(msg.as_bytes())));

    // profiles
    let reg = Profile::load("regtest").unwrap();
    let main = Profile::load("mainnet").unwrap();
    println!("MAINNET profile json {}", serde_json::to_string(&main).unwrap());
    println!("REGTEST profile json {}", serde_json::to_string(&reg).unwrap());
    let tk4 = account_key_of(&kp(4).x_only_public_key().0);
    println!(
        "key4 bip86 regtest {} (treasury {})",
        format_l2_address(&tk4, L1Network::Regtest),
        reg.treasury
    );

    // addresses (mainnet)
    for i in [1u8, 5, 6, 7] {
        let pk = kp(i).x_only_public_key().0;
        let ak = account_key_of(&pk);
        println!(
            "key{i}: xonly {} account_key {} mainnet {} regtest {}",
            hex::encode(pk.serialize()),
            hex::encode(ak.0),
            format_l2_address(&ak, L1Network::Mainnet),
            format_l2_address(&ak, L1Network::Regtest)
        );
    }

    // sample transfer on regtest: key5 -> key6, 10000 credits, nonce 0
    let net = L1Network::Regtest;
    let s_pk = kp(5).x_only_public_key().0;
    let r_pk = kp(6).x_only_public_key().0;
    let s_addr = address_of_pubkey(&s_pk, net);
    let r_addr = address_of_pubkey(&r_pk, net);
    let mut tx = Tx {
        tx_type: "transfer".into(),
        from: s_addr.clone(),
        to: r_addr.clone(),
        amount: 10_000,
        nonce: 0,
        gas_fee: 1000,
        from_index: Some(1),
        to_index: Some(2),
        pubkey: s_pk.serialize(),
        signature: [0; 64],
        memo: Some("hi".into()),
        data: None,
    };
    println!("TX signing message {}", tx.signing_message());
    println!("TX signing hash {}", hex::encode(tx.signing_hash()));
    tx.signature = sign(&kp(5), &tx.signing_hash());
    println!("TX signature {}", hex::encode(tx.signature));
    let bytes = tx.encode().unwrap();
    println!("TX bytes len {} hex {}", bytes.len(), hex::encode(&bytes));
    println!("TX id {}", hex::encode(tx_id(&bytes)));
    println!("TX leaf {}", hex::encode(tx_leaf(&bytes)));
    println!("TX json {}", serde_json::to_string(&TxJson::from_bytes(&bytes)).unwrap());

    // genesis: treasury (key4) 0, sender (key5) 1_000_000
    let producer = kp(7);
    let g = Genesis {
        format: "kray-genesis".into(),
        version: 1,
        network: net,
        producers: vec![hex::encode(producer.x_only_public_key().0.serialize())],
        accounts: vec![
            GenesisAccount { address: reg.treasury.clone(), balance: 0 },
            GenesisAccount { address: s_addr.clone(), balance: 1_000_000 },
        ],
    };
    println!("GENESIS json {}", serde_json::to_string(&g).unwrap());
    let (chain, state) = g.build(&reg).unwrap();
    for a in state.accounts() {
        println!(
            "ACCOUNT leaf bytes {} hash {}",
            hex::encode(a.leaf_bytes()),
            hex::encode(a.leaf_hash())
        );
    }
    let roots = state.roots();
    println!(
        "GENESIS acc root {} count {}; wd root {} ; dep root {}",
        hex::encode(roots.accounts.0),
        roots.accounts.1,
        hex::encode(roots.withdrawals.0),
        hex::encode(roots.deposits.0)
    );
    println!("GENESIS state root {}", hex::encode(state.state_root()));
    let pj = serde_json::to_vec(&chain.profile).unwrap();
    println!("CHAIN profile json len {}", pj.len());
    println!("CHAIN id {}", hex::encode(chain.chain_id()));

    // 3-leaf merkle over the accounts after the transfer + explicit nodes
    let l: Vec<Hash32> = vec![leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")];
    println!(
        "MERKLE3 leaves a {} b {} c {} node01 {} root {}",
        hex::encode(l[0]),
        hex::encode(l[1]),
        hex::encode(l[2]),
        hex::encode(node_hash(&l[0], &l[1])),
        hex::encode(root_of(&l))
    );
    println!("MERKLE1 root {}", hex::encode(root_of(&l[..1])));
    println!("MERKLE0 root {}", hex::encode(root_of(&[])));

    // execute batch 1 = [tx]
    let facts = FileFacts::from(L1FactsFile { tip_height: 200, deposits: vec![] });
    let mut keys = KeyCache::default();
    let prepared = prepare_txs(std::slice::from_ref(&bytes), &reg, &mut keys);
    let ctx = ExecContext {
        profile: &reg,
        treasury: reg.treasury_key().unwrap(),
        batch_id: 1,
        l1_height: 150,
        semantics: Semantics::Reference,
        deposits: DepositCheck::Facts(&facts),
    };
    let mut st2 = state.clone();
    let mut ov = Overlay::new(&state);
    execute_all(&mut ov, &ctx, &prepared).unwrap();
    st2.apply(ov.into_changes());
    for (i, a) in st2.accounts().iter().enumerate() {
        println!("AFTER account {i} bal {} nonce {} leaf {}", a.balance, a.nonce, hex::encode(a.leaf_hash()));
    }
    println!("AFTER acc root {}", hex::encode(st2.roots().accounts.0));
    println!("AFTER state root {}", hex::encode(st2.state_root()));
    let header = BatchHeader {
        chain_id: chain.chain_id(),
        batch_id: 1,
        prev_batch_hash: chain.chain_id(),
        prev_state_root: state.state_root(),
        new_state_root: st2.state_root(),
        tx_root: root_of(&[tx_leaf(&bytes)]),
        tx_count: 1,
        total_gas: 1000,
        l1_height: 150,
        producer: producer.x_only_public_key().0.serialize(),
    };
    let enc = header.encode();
    println!("HEADER len {} hex {}", enc.len(), hex::encode(&enc));
    println!("BATCH hash {}", hex::encode(header.hash()));
    let signed = SignedHeader::sign(header.clone(), &producer);
    println!("HEADER sig {}", hex::encode(signed.signature));
    let batch = Batch { signed: signed.clone(), txs: vec![bytes.clone()] };
    println!("BATCH json {}", batch.to_json());
    let raw = batch.to_raw();
    println!("BATCH raw len {} hex {}", raw.len(), hex::encode(&raw));
    println!("BATCH content hash {}", hex::encode(batch.content_hash()));
    let mut anchor = vec![0x6a, 36];
    anchor.extend_from_slice(b"KRAY");
    anchor.extend_from_slice(&header.hash());
    println!("ANCHOR script {}", hex::encode(&anchor));

    let mut rp = Replayer::new(chain.clone(), state.clone()).unwrap();
    let v = rp.replay(&batch, &facts).unwrap();
    println!("REPLAY verdict {}", serde_json::to_string(&v).unwrap());

    // withdrawal + deposit leaf vectors
    let w = WithdrawalEntry {
        tx_id: tx_id(&bytes),
        batch_id: 2,
        from: account_key_of(&s_pk),
        l1_address: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into(),
        amount: 5000,
    };
    println!("WD leaf bytes {} hash {}", hex::encode(w.leaf_bytes()), hex::encode(w.leaf_hash()));
    let d = DepositEntry {
        outpoint: OutPointRef::parse(&format!("{}:0", "ab".repeat(32))).unwrap(),
        to: account_key_of(&r_pk),
        amount: 7000,
        batch_id: 2,
    };
    println!("DEP leaf bytes {} hash {}", hex::encode(d.leaf_bytes()), hex::encode(d.leaf_hash()));
    let mut tag = vec![0x6a, 37];
    tag.extend_from_slice(b"KRAYD");
    tag.extend_from_slice(&account_key_of(&r_pk).0);
    println!("DEPOSIT tag script {}", hex::encode(&tag));

    // faulty batch 1': the same tx with a bad signature -> invalid-signature Tx proof
    let mut bad = tx.clone();
    bad.signature[63] ^= 1;
    let bbytes = bad.encode().unwrap();
    let bh = BatchHeader {
        tx_root: root_of(&[tx_leaf(&bbytes)]),
        ..header.clone()
    };
    let bbatch = Batch { signed: SignedHeader::sign(bh, &producer), txs: vec![bbytes] };
    let mut rp2 = Replayer::new(chain.clone(), state.clone()).unwrap();
    let v2 = rp2.replay(&bbatch, &facts).unwrap();
    println!("BAD verdict {}", serde_json::to_string(&v2).unwrap());
    let Verdict::Fault(f) = v2 else { panic!() };
    let p = build_proof(&chain, &state, None, None, &bbatch, &f).unwrap();
    let compact = serde_json::to_string(&p).unwrap();
    println!("PROOF compact {}", compact);
    println!("PROOF hash {}", hex::encode(p.proof_hash()));
    assert_eq!(p.proof_hash(), sha256(compact.as_bytes()));
    let proven = verify_proof(&p, None).unwrap();
    println!("PROVEN {}", serde_json::to_string(&proven).unwrap());
    let mut ch = vec![0x6a, 45];
    ch.extend_from_slice(b"KRAYC");
    ch.extend_from_slice(&1u64.to_be_bytes());
    ch.extend_from_slice(&p.proof_hash());
    println!("CHALLENGE script {}", hex::encode(&ch));

    // wrong-state-root proof (execution evidence), e.g. treasury not credited
    let mut st3 = state.clone();
    let ctx3 = ExecContext { semantics: Semantics::TreasuryNotCredited, deposits: DepositCheck::Skip, ..ctx };
    let mut ov3 = Overlay::new(&state);
    execute_all(&mut ov3, &ctx3, &prepared).unwrap();
    st3.apply(ov3.into_changes());
    let gh = BatchHeader { new_state_root: st3.state_root(), ..header.clone() };
    let gbatch = Batch { signed: SignedHeader::sign(gh, &producer), txs: vec![bytes.clone()] };
    let mut rp3 = Replayer::new(chain.clone(), state.clone()).unwrap();
    let v3 = rp3.replay(&gbatch, &facts).unwrap();
    println!("GAS verdict {}", serde_json::to_string(&v3).unwrap());
    let Verdict::Fault(f3) = v3 else { panic!() };
    let p3 = build_proof(&chain, &state, None, None, &gbatch, &f3).unwrap();
    println!("GAS proof evidence {}", serde_json::to_string(&p3.evidence).unwrap());
    println!("GAS proven {}", serde_json::to_string(&verify_proof(&p3, None).unwrap()).unwrap());

    // chain proof for batch without previous
    let cb = BatchHeader { prev_state_root: [7; 32], ..header.clone() };
    let cbatch = Batch { signed: SignedHeader::sign(cb, &producer), txs: vec![bytes.clone()] };
    let mut rp4 = Replayer::new(chain.clone(), state.clone()).unwrap();
    let v4 = rp4.replay(&cbatch, &facts).unwrap();
    let Verdict::Fault(f4) = v4 else { panic!() };
    let p4 = build_proof(&chain, &state, None, None, &cbatch, &f4).unwrap();
    println!("CHAIN evidence {}", serde_json::to_string(&p4.evidence).unwrap());
    println!("CHAIN proven {}", serde_json::to_string(&verify_proof(&p4, None).unwrap()).unwrap());

    // bridge
    let keys: Vec<_> = [1u8, 2, 3].iter().map(|i| kp(*i).public_key()).collect();
    for ik in [InternalKey::Legacy, InternalKey::Nums] {
        let d = BridgeDescriptor::new(&keys, ik).unwrap();
        println!(
            "BRIDGE {:?}: script {} leaf {} internal {} output {} parity {:?} spk {} main {} regtest {} cb {}",
            ik,
            hex::encode(d.leaf_script().as_bytes()),
            d.leaf_hash(),
            d.internal_key(),
            d.output_key(),
            d.output_key_parity(),
            hex::encode(d.script_pubkey().as_bytes()),
            d.address(bitcoin::Network::Bitcoin),
            d.address(bitcoin::Network::Regtest),
            hex::encode(d.control_block().serialize())
        );
        println!("AUDIT {}", serde_json::to_string(&d.audit()).unwrap());
    }
    let _ = FaultClass::ALL;
}
