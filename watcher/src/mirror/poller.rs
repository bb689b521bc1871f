//! Polling one source: its cursor (the next batch id to list), exponential backoff with a cap after a
//! failed poll, re-validation of copies it served (to catch a source that serves different batches
//! for one id on different requests), and its health for metrics.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::index::BatchIndex;
use super::source::{ChainIdentity, FetchOutcome, Fetched, SourceClient, SourceError, LIST_LIMIT};

/// Most copies waiting for re-validation per source (the oldest are dropped beyond it, e.g. during
/// a long initial sync).
pub const MAX_RECHECK_QUEUE: usize = 10_000;

/// The wait before the next poll after `failures` failed polls in a row: `base · 2^(failures−1)`,
/// at most `cap`; zero after a success.
pub fn backoff_delay(failures: u32, base: Duration, cap: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(failures.saturating_sub(1).min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(cap).min(cap)
}

/// How sources are polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSettings {
    /// First backoff after a failed poll.
    pub backoff_base: Duration,
    /// Longest backoff.
    pub backoff_cap: Duration,
    /// Most listing pages (of up to 100 headers) fetched from one source in one poll.
    pub max_pages_per_poll: u32,
    /// Most re-validations (conditional GETs of copies the source served before) in one poll.
    pub max_rechecks_per_poll: usize,
    /// Re-validate every new copy once on the source's next poll.
    pub recheck: bool,
    /// Most body bytes fetched from one source in one poll: a long backlog is caught up in bounded
    /// steps (each stored before the next is fetched), so catch-up memory does not grow with it.
    pub max_bytes_per_poll: u64,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            max_pages_per_poll: 10,
            max_rechecks_per_poll: 200,
            recheck: true,
            max_bytes_per_poll: 64 << 20,
        }
    }
}

/// A source's health, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceHealth {
    /// The source's name.
    pub name: String,
    /// Its base URL.
    pub url: String,
    /// The next batch id the mirror will list from it.
    pub next_id: u64,
    /// Failed polls in a row (0: the last poll succeeded).
    pub consecutive_failures: u32,
    /// The current backoff (zero when healthy).
    pub backoff: Duration,
    /// The last error, if the last poll failed.
    pub last_error: Option<String>,
    /// Verified copies received (`200`s), including copies identical to stored ones.
    pub copies_received: u64,
    /// `304` answers (the source confirmed a copy we hold).
    pub confirmations: u64,
    /// Errors ever recorded for this source.
    pub errors: u64,
    /// Polls done.
    pub polls: u64,
}

/// What one poll of one source produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcePoll {
    /// The source's name.
    pub source: String,
    /// Not polled: in backoff or polled too recently.
    pub skipped: bool,
    /// Verified copies.
    pub copies: Vec<Fetched>,
    /// Errors (the poll went on after content errors, stopped at the first unavailability).
    pub errors: Vec<SourceError>,
}

/// The state of one source between polls.
#[derive(Debug)]
pub(crate) struct SourceState {
    pub(crate) client: SourceClient,
    pub(crate) next_id: u64,
    failures: u32,
    not_before: Option<Instant>,
    last_poll: Option<Instant>,
    /// Copies this source served once, to ask again with `If-None-Match` (id, content hash).
    recheck: VecDeque<(u64, String)>,
    last_error: Option<String>,
    copies_received: u64,
    confirmations: u64,
    errors: u64,
    polls: u64,
}

impl SourceState {
    pub(crate) fn new(client: SourceClient, next_id: u64) -> Self {
        SourceState {
            client,
            next_id,
            failures: 0,
            not_before: None,
            last_poll: None,
            recheck: VecDeque::new(),
            last_error: None,
            copies_received: 0,
            confirmations: 0,
            errors: 0,
            polls: 0,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.client.spec().name
    }

    pub(crate) fn health(&self, settings: &PollSettings) -> SourceHealth {
        SourceHealth {
            name: self.client.spec().name.clone(),
            url: self.client.spec().url.clone(),
            next_id: self.next_id,
            consecutive_failures: self.failures,
            backoff: backoff_delay(self.failures, settings.backoff_base, settings.backoff_cap),
            last_error: self.last_error.clone(),
            copies_received: self.copies_received,
            confirmations: self.confirmations,
            errors: self.errors,
            polls: self.polls,
        }
    }

    /// True when the source may be polled at `now` (backoff over and poll interval elapsed).
    pub(crate) fn due(&self, now: Instant) -> bool {
        let interval = self.client.spec().poll_interval;
        self.not_before.is_none_or(|t| now >= t) && self.last_poll.is_none_or(|t| now >= t + interval)
    }

    /// Moves the cursor back to `id` (copies from `id` on were not stored).
    pub(crate) fn rewind_to(&mut self, id: u64) {
        self.next_id = self.next_id.min(id);
    }

    /// One poll: re-validations first, then listing pages from the cursor, fetching each listed batch
    /// (conditionally when a copy is stored). Updates the cursor, the backoff and the counters.
    pub(crate) async fn poll(
        &mut self,
        index: &Arc<RwLock<BatchIndex>>,
        chain: &ChainIdentity,
        settings: &PollSettings,
    ) -> SourcePoll {
        let now = Instant::now();
        let mut out = SourcePoll { source: self.name().to_string(), ..SourcePoll::default() };
        if !self.due(now) {
            out.skipped = true;
            return out;
        }
        self.last_poll = Some(now);
        self.polls += 1;
        let available =
            self.revalidate(chain, settings, &mut out).await && self.follow(index, chain, settings, &mut out).await;
        if !available {
            tracing::debug!(source = %out.source, next_id = self.next_id, "source unavailable, poll stopped");
        }
        self.errors += out.errors.len() as u64;
        if let Some(e) = out.errors.last() {
            self.failures = self.failures.saturating_add(1);
            let delay = backoff_delay(self.failures, settings.backoff_base, settings.backoff_cap);
            self.not_before = Some(Instant::now() + delay);
            self.last_error = Some(e.to_string());
            let errors = out.errors.len();
            tracing::warn!(source = %out.source, errors, last = %e, backoff = ?delay, "source poll had errors");
        } else {
            self.failures = 0;
            self.not_before = None;
            self.last_error = None;
        }
        out
    }

    /// Asks again for copies this source served on an earlier poll. Returns false when the source
    /// became unavailable.
    async fn revalidate(&mut self, chain: &ChainIdentity, settings: &PollSettings, out: &mut SourcePoll) -> bool {
        for _ in 0..settings.max_rechecks_per_poll {
            let Some((id, hash)) = self.recheck.pop_front() else { break };
            match self.client.fetch(id, Some(&hash), None, chain).await {
                Ok(FetchOutcome::NotModified) => self.confirmations += 1,
                Ok(FetchOutcome::Copy(f)) => {
                    self.copies_received += 1;
                    if hex::encode(f.content_hash) != hash {
                        tracing::warn!(source = %out.source, batch = id, "a second request got a different copy");
                    }
                    out.errors.extend(f.mismatches.iter().cloned());
                    out.copies.push(f);
                }
                Ok(FetchOutcome::NotFound) => out.errors.push(SourceError::ListedNotServed { batch_id: id }),
                Err(e) if e.is_unavailable() => {
                    self.recheck.push_front((id, hash));
                    out.errors.push(e);
                    return false;
                }
                Err(e) => out.errors.push(e),
            }
        }
        true
    }

    /// Lists from the cursor and fetches what is listed. Returns false when the source became
    /// unavailable.
    async fn follow(
        &mut self,
        index: &Arc<RwLock<BatchIndex>>,
        chain: &ChainIdentity,
        settings: &PollSettings,
        out: &mut SourcePoll,
    ) -> bool {
        let mut fetched: u64 = 0;
        for _ in 0..settings.max_pages_per_poll.max(1) {
            let listing = match self.client.list(self.next_id, LIST_LIMIT).await {
                Ok(l) => l,
                Err(e) => {
                    let unavailable = e.is_unavailable();
                    out.errors.push(e);
                    return !unavailable;
                }
            };
            let Some(last) = listing.batches.last().map(|h| h.batch_id) else { return true };
            for h in &listing.batches {
                // The content hash of a copy we hold, to fetch conditionally (a 304 costs no body).
                let known =
                    index.read().ok().and_then(|i| i.copies(h.batch_id).first().map(|c| c.content_hash.clone()));
                match self.client.fetch(h.batch_id, known.as_deref(), Some(h), chain).await {
                    Ok(FetchOutcome::Copy(f)) => {
                        self.copies_received += 1;
                        out.errors.extend(f.mismatches.iter().cloned());
                        if settings.recheck {
                            if self.recheck.len() >= MAX_RECHECK_QUEUE {
                                self.recheck.pop_front();
                            }
                            self.recheck.push_back((f.batch_id, hex::encode(f.content_hash)));
                        }
                        fetched = fetched.saturating_add(f.raw.len() as u64);
                        out.copies.push(f);
                    }
                    Ok(FetchOutcome::NotModified) => self.confirmations += 1,
                    Ok(FetchOutcome::NotFound) => {
                        out.errors.push(SourceError::ListedNotServed { batch_id: h.batch_id })
                    }
                    Err(e) if e.is_unavailable() => {
                        out.errors.push(e);
                        self.next_id = h.batch_id;
                        return false;
                    }
                    Err(e) => out.errors.push(e),
                }
                self.next_id = h.batch_id.saturating_add(1);
                if fetched >= settings.max_bytes_per_poll {
                    // The rest on the next poll, once these are stored.
                    return true;
                }
            }
            // `next` is a claim: it only says whether to ask again, never where to jump.
            if listing.next.is_none() || self.next_id <= last {
                return true;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (base, cap) = (Duration::from_millis(500), Duration::from_secs(60));
        let d: Vec<u64> = (0..10).map(|f| backoff_delay(f, base, cap).as_millis() as u64).collect();
        assert_eq!(d, vec![0, 500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
        assert_eq!(backoff_delay(u32::MAX, base, cap), cap);
        assert_eq!(backoff_delay(40, Duration::from_secs(u64::MAX / 2), cap), cap);
        assert_eq!(backoff_delay(3, Duration::ZERO, cap), Duration::ZERO);
    }
}
