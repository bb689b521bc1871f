// The guardian's web page: withdrawal lookup and network status. No external resources; every
// value from the API is inserted as text (never as HTML).
"use strict";

const VERDICT_CLASS = { "SAFE": "v-safe", "PENDING": "v-pending", "AT RISK": "v-risk", "UNKNOWN": "v-unknown" };

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

async function getJson(path) {
  const r = await fetch(path, { headers: { "Accept": "application/json" } });
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (!r.ok) throw new Error((body && body.error) || ("HTTP " + r.status));
  return body;
}

function renderWithdrawal(w) {
  const s = el("section", "wd");
  s.dataset.verdict = w.verdict;
  s.dataset.id = w.id;
  s.appendChild(el("p", "verdict " + (VERDICT_CLASS[w.verdict] || "v-unknown"), w.verdict));
  s.appendChild(el("p", "reason", w.reason));
  s.appendChild(el("p", "meta", "withdrawal " + w.id + " · " + w.amount + " credits from " + w.from +
    " to " + w.l1_address + " · batch " + w.batch_id));
  const ol = el("ol", "evidence");
  for (const step of w.evidence || []) {
    const li = el("li", "s-" + step.status);
    li.dataset.check = step.check;
    li.appendChild(el("span", "tag", step.status));
    li.appendChild(document.createTextNode(step.detail));
    ol.appendChild(li);
  }
  s.appendChild(ol);
  const windowStep = (w.evidence || []).find((x) => x.check === "window");
  if (w.window_ends_approx && windowStep && windowStep.status === "waiting") {
    const when = new Date(w.window_ends_approx * 1000);
    const text = "challenge window ends at block " + w.window_ends_at + " (≈ " + when.toUTCString() + ")";
    s.appendChild(el("p", "meta", text));
  }
  return s;
}

async function lookup(q) {
  const out = document.getElementById("result");
  out.replaceChildren(el("p", "meta", "checking…"));
  q = q.trim();
  if (!q) { out.replaceChildren(); return; }
  try {
    let list;
    if (/^[0-9a-fA-F]{64}$/.test(q)) {
      list = [await getJson("/v1/withdrawals/" + encodeURIComponent(q))];
    } else {
      const r = await getJson("/v1/withdrawals?address=" + encodeURIComponent(q));
      list = r.withdrawals || [];
    }
    out.replaceChildren();
    if (list.length === 0) out.appendChild(el("p", "meta", "no withdrawal found for " + q));
    for (const w of list) out.appendChild(renderWithdrawal(w));
    out.dataset.done = "1";
  } catch (e) {
    out.replaceChildren(el("p", "error", e.message));
    out.dataset.done = "1";
  }
}

async function status() {
  const dl = document.getElementById("status");
  try {
    const s = await getJson("/v1/status");
    const rows = [
      ["guardian", s.synced ? "synced" : "catching up (verdicts are UNKNOWN)"],
      ["mode", s.mode],
      ["L1 height", s.l1_blocks && s.l1_blocks.height],
      ["batches replayed", s.replayed && s.replayed.height],
      ["open findings", s.open_findings],
      ["version", s.version],
    ];
    dl.replaceChildren();
    for (const [k, v] of rows) {
      if (v === undefined || v === null) continue;
      dl.appendChild(el("dt", null, k));
      dl.appendChild(el("dd", null, v));
    }
    dl.dataset.synced = s.synced ? "1" : "0";
  } catch (e) {
    dl.replaceChildren(el("dt", null, "status"), el("dd", "error", e.message));
  }
}

document.getElementById("lookup-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = document.getElementById("q").value;
  history.replaceState(null, "", "?q=" + encodeURIComponent(q.trim()));
  lookup(q);
});

const initial = new URLSearchParams(location.search).get("q");
if (initial) {
  document.getElementById("q").value = initial;
  lookup(initial);
}
status();
setInterval(status, 15000);
