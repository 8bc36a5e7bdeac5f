//! The Yahoo Streaming Benchmark: ad events, filtered to views, joined with their campaign
//! through a static table, counted per campaign in 10 s tumbling windows.
//!
//! As in the original benchmark, 100 campaigns own 10 ads each; the ad-to-campaign table is
//! static and identical on every worker (the original kept it in Redis). Events are generated
//! from a seeded splitmix64 stream, so runs are reproducible.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

use super::{bounded, worker_seed, Baseline, FlagError, Registered, SharedFlags, Workload};
use crate::incremental::{to_consolidated_updates, WindowedCollection};
use crate::keyed::{filter_map, KeyByWith};
use crate::partition::{Partitioner, Scheme};
use crate::stash::Checkpoints;
use crate::window::{Count, WindowAssigner};
use differential_dataflow::VecCollection;

/// What a user did with an ad.
pub const VIEW: u8 = 0;
/// Event types cycle through view, click, purchase.
const EVENT_TYPES: u64 = 3;

/// One ad event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdEvent {
    /// The user.
    pub user_id: u64,
    /// The page the ad was shown on.
    pub page_id: u64,
    /// The ad.
    pub ad_id: u32,
    /// `VIEW`, click (1) or purchase (2).
    pub event_type: u8,
    /// Event time (ns).
    pub event_time: u64,
    /// The user's address.
    pub ip: u32,
}

/// The most YSB campaigns (`--campaigns`): each worker keeps a table of 10 ads per campaign.
pub const MAX_CAMPAIGNS: u32 = 1_000_000;

/// `tidemark bench ysb`'s own flags (with the shared `--window` and `--partitioner`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct YsbFlags {
    /// YSB: number of campaigns (10 ads each), 1 to 1 000 000 [default: 100].
    #[arg(long)]
    pub campaigns: Option<u32>,
}

impl Registered for Ysb {
    type Flags = YsbFlags;
    const SHARED: &'static [&'static str] = &["window", "partitioner"];

    fn given(flags: &YsbFlags) -> Vec<&'static str> {
        flags.campaigns.map(|_| "campaigns").into_iter().collect()
    }

    /// The benchmark's 10 s windows and 100 campaigns of 10 ads unless given.
    fn from_flags(flags: &YsbFlags, shared: &SharedFlags) -> Result<Ysb, FlagError> {
        if let Some(window) = shared.window {
            // The same bounds as every window.
            WindowAssigner::Tumbling(window)
                .validate()
                .map_err(|e| FlagError(format!("--window: {e}")))?;
        }
        let campaigns = bounded("campaigns", flags.campaigns, MAX_CAMPAIGNS)?;
        let mut ysb = Ysb::new(
            shared.window.unwrap_or(Ysb::DEFAULT_WINDOW_NS),
            campaigns.unwrap_or(100),
            10,
        );
        ysb.partitioner = shared.partitioner;
        Ok(ysb)
    }
}

/// The YSB workload.
#[derive(Clone, Debug)]
pub struct Ysb {
    /// Tumbling window size (ns).
    pub window_ns: u64,
    /// Number of campaigns.
    pub campaigns: u32,
    /// Ads per campaign.
    pub ads_per_campaign: u32,
    /// How campaigns are spread over workers (range: evenly over the campaign ids).
    pub partitioner: Scheme,
    table: Arc<Vec<u32>>,
}

impl Ysb {
    /// The benchmark's window: 10 s.
    pub const DEFAULT_WINDOW_NS: u64 = 10_000_000_000;

    /// YSB with the given window and campaign counts (the benchmark's are 10 s, 100, 10).
    pub fn new(window_ns: u64, campaigns: u32, ads_per_campaign: u32) -> Ysb {
        let table = (0..campaigns * ads_per_campaign)
            .map(|ad| ad / ads_per_campaign)
            .collect();
        Ysb {
            window_ns,
            campaigns,
            ads_per_campaign,
            partitioner: Scheme::Hash,
            table: Arc::new(table),
        }
    }
}

impl Default for Ysb {
    fn default() -> Ysb {
        Ysb::new(Ysb::DEFAULT_WINDOW_NS, 100, 10)
    }
}

/// splitmix64: a fast, well-mixed, seedable stream of random numbers.
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A worker's ad events.
pub struct AdEvents {
    state: u64,
    ads: u64,
}

impl Iterator for AdEvents {
    type Item = AdEvent;
    fn next(&mut self) -> Option<AdEvent> {
        let r = splitmix(&mut self.state);
        Some(AdEvent {
            user_id: r >> 40,
            page_id: (r >> 20) & 0xF_FFFF,
            ad_id: ((r & 0xFFFF_FFFF) % self.ads) as u32,
            event_type: ((r >> 32) % EVENT_TYPES) as u8,
            event_time: 0,
            ip: (r >> 8) as u32,
        })
    }
}

/// One result row: (window end, campaign, views).
pub type YsbRow = (u64, u32, u64);

impl Workload for Ysb {
    type Event = AdEvent;
    type Output = YsbRow;
    const NAME: &'static str = "ysb";

    fn parameters(&self) -> String {
        format!(
            "window_ns={} campaigns={} ads_per_campaign={} partitioner={}",
            self.window_ns,
            self.campaigns,
            self.ads_per_campaign,
            self.partitioner.name()
        )
    }
    fn generator(
        &self,
        seed: u64,
        worker: usize,
        workers: usize,
    ) -> impl Iterator<Item = AdEvent> + use<> {
        AdEvents {
            state: worker_seed(seed, worker, workers),
            ads: self.table.len() as u64,
        }
    }
    fn event_time(event: &AdEvent) -> u64 {
        event.event_time
    }
    fn set_event_time(event: &mut AdEvent, time_ns: u64) {
        event.event_time = time_ns;
    }

    /// `filter(view) . map(campaign of ad) . key_by(campaign) . window(tumbling) . count`, the
    /// window operator snapshotting its open windows at each cut.
    fn checkpointed<'scope>(
        &self,
        events: StreamVec<'scope, u64, AdEvent>,
        checkpoints: &Checkpoints,
    ) -> StreamVec<'scope, u64, YsbRow> {
        let table = Arc::clone(&self.table);
        let partitioner = self
            .partitioner
            .for_domain(u64::from(self.campaigns), events.scope().peers());
        // The filter and the campaign lookup run inside the window operator's input (on one
        // worker: no pass of their own).
        events
            .key_by_with(partitioner, campaign_view(table))
            .checkpoints(checkpoints)
            .named(&format!(
                "ysb views per campaign, {}",
                WindowAssigner::Tumbling(self.window_ns).describe(1)
            ))
            .window(WindowAssigner::Tumbling(self.window_ns))
            .local_aggregation()
            .aggregate(|time: &u64| *time, Count)
            .results
            .map(|row| (row.window.end, row.key, row.value))
    }

    fn has_incremental(&self) -> bool {
        true
    }

    fn has_checkpoints(&self) -> bool {
        true
    }

    /// The same count as an incremental view. Each batch of views is consolidated per
    /// (campaign, window) before it enters differential (exact local pre-aggregation, the
    /// combiner every competent implementation uses), then maintained by
    /// [`WindowedCollection::window_view`] with expired windows retired.
    fn incremental<'scope>(
        &self,
        events: StreamVec<'scope, u64, AdEvent>,
    ) -> Option<VecCollection<'scope, u64, YsbRow>> {
        let window = self.window_ns;
        let view = campaign_view(Arc::clone(&self.table));
        let views = filter_map(events, "ViewsToCampaigns", move |event| {
            view(event).map(|(campaign, time)| ((campaign, time - time % window), 1))
        });
        let view = to_consolidated_updates(views).window_view(
            Partitioner::Hash,
            WindowAssigner::Tumbling(window),
            0,
            |start: &u64| *start,
            Count,
        );
        Some(
            view.results
                .map(|(w, campaign, views)| (w.end, campaign, views)),
        )
    }

    fn baseline(&self) -> Box<dyn Baseline<AdEvent, YsbRow>> {
        Box::new(YsbBaseline {
            table: Arc::clone(&self.table),
            window_ns: self.window_ns,
            counts: Vec::new(),
            open: None,
        })
    }
}

/// A view's campaign and event time; `None` for clicks and purchases.
fn campaign_view(table: Arc<Vec<u32>>) -> impl Fn(AdEvent) -> Option<(u32, u64)> + Clone {
    move |event| (event.event_type == VIEW).then(|| (table[event.ad_id as usize], event.event_time))
}

/// The hand-written YSB: a dense count array per open window (campaign ids are small).
pub struct YsbBaseline {
    table: Arc<Vec<u32>>,
    window_ns: u64,
    counts: Vec<u64>,
    /// End of the open window.
    open: Option<u64>,
}

impl YsbBaseline {
    fn emit(&mut self, out: &mut Vec<YsbRow>) {
        if let Some(end) = self.open.take() {
            for (campaign, count) in self.counts.iter_mut().enumerate() {
                if *count > 0 {
                    out.push((end, campaign as u32, *count));
                    *count = 0;
                }
            }
        }
    }
}

impl Baseline<AdEvent, YsbRow> for YsbBaseline {
    fn process(&mut self, events: &mut Vec<AdEvent>, out: &mut Vec<YsbRow>) {
        for e in events.drain(..) {
            if e.event_type != VIEW {
                continue;
            }
            let end = e.event_time - e.event_time % self.window_ns + self.window_ns;
            if self.open != Some(end) {
                // Events arrive in time order: a new window means the old one is complete.
                self.emit(out);
                self.open = Some(end);
            }
            let campaign = self.table[e.ad_id as usize] as usize;
            if campaign >= self.counts.len() {
                self.counts.resize(campaign + 1, 0);
            }
            self.counts[campaign] += 1;
        }
    }

    fn advance(&mut self, frontier: u64, out: &mut Vec<YsbRow>) {
        if self.open.is_some_and(|end| end <= frontier) {
            self.emit(out);
        }
    }
}
