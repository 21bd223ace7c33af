//! What tokenward recorded to the [`metrics`](https://docs.rs/metrics) facade while a
//! closure ran (feature `metrics`), for tests of your own dashboards and alerts.
//!
//! [`record`] installs a debugging recorder for the calling thread only (no global state),
//! so run the code under test on that thread: a current-thread Tokio runtime's `block_on`
//! inside the closure.
//!
//! ```
//! use tokenward::{Token, TokenCache, grant::from_fn, metrics::TOKEN_REQUESTS};
//! use tokenward_testkit::metrics::record;
//!
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! let ((), recorded) = record(|| {
//!     runtime.block_on(async {
//!         let cache = TokenCache::new(from_fn(|| async { Token::builder("t").build() }));
//!         cache.header().await.unwrap();
//!     })
//! });
//! assert_eq!(recorded.counter(TOKEN_REQUESTS, &[("outcome", "success")]), 1);
//! ```

use std::collections::BTreeMap;
use std::fmt;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// Runs `f` with a recorder for this thread, and returns what it recorded.
pub fn record<R>(f: impl FnOnce() -> R) -> (R, Recorded) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let output = metrics::with_local_recorder(&recorder, f);
    let all = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    (output, Recorded { all })
}

/// Everything recorded: each metric's name, labels and value. See [`record`].
pub struct Recorded {
    all: Vec<(String, BTreeMap<String, String>, DebugValue)>,
}

impl Recorded {
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a DebugValue> + 'a {
        self.all
            .iter()
            .filter(move |(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
    }

    /// The sum of the counters named `name` that carry these labels (among others); 0 if
    /// there are none.
    ///
    /// # Panics
    /// If a metric of that name is not a counter.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.matching(name, labels)
            .map(|v| match v {
                DebugValue::Counter(n) => *n,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    }

    /// The value of the one gauge named `name` that carries these labels.
    ///
    /// # Panics
    /// If there is not exactly one, or it is not a gauge.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let values: Vec<f64> = self
            .matching(name, labels)
            .map(|v| match v {
                DebugValue::Gauge(g) => g.0,
                other => panic!("{name} is not a gauge: {other:?}"),
            })
            .collect();
        assert_eq!(values.len(), 1, "gauges {name} {labels:?}: {values:?}");
        values[0]
    }

    /// Every sample of the histograms named `name` that carry these labels.
    ///
    /// # Panics
    /// If a metric of that name is not a histogram.
    pub fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.matching(name, labels)
            .flat_map(|v| match v {
                DebugValue::Histogram(h) => h.iter().map(|x| x.0).collect::<Vec<_>>(),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .collect()
    }

    /// Every label of every metric, as `key=value`.
    pub fn labels(&self) -> Vec<String> {
        self.all
            .iter()
            .flat_map(|(_, l, _)| l.iter().map(|(k, v)| format!("{k}={v}")))
            .collect()
    }

    /// The names of the metrics recorded.
    pub fn names(&self) -> Vec<&str> {
        self.all.iter().map(|(n, ..)| n.as_str()).collect()
    }
}

impl fmt::Debug for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (name, labels, value) in &self.all {
            list.entry(&(name, labels, value));
        }
        list.finish()
    }
}
