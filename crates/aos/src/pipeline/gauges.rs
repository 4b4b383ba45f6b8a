//! Sampling the gauges of [`crate::metrics`]: each step queue's and its poison queue's
//! approximate message count (the count `aos poison list` shows, `Queue::approximate_count`),
//! and the Maskinporten certificate's days left. The reconciler timer samples after each run;
//! `aos run` samples on an interval. Only when metrics are on: each sample is six requests.

use super::Pipeline;
use super::messages::QueueStep;
use crate::queue::{QueueAccount, poison_queue_name};

impl Pipeline {
    /// Samples every gauge once; a queue that cannot be counted is left out (logged at debug).
    pub async fn sample_gauges(&self) {
        if !crate::metrics::enabled() {
            return;
        }
        crate::metrics::sample_certificate();
        let account = match QueueAccount::from_settings(&self.settings.queues, "metrics") {
            Ok(account) => account,
            Err(e) => {
                tracing::debug!(error = %e, "metrics: no queue account to sample");
                return;
            }
        };
        for step in QueueStep::ALL {
            let name = self.queue_of(step);
            let poison = poison_queue_name(name);
            for (queue, is_poison) in [(name, false), (poison.as_str(), true)] {
                let count = match account.queue(queue) {
                    Ok(queue) => queue.approximate_count().await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match count {
                    Ok(n) if is_poison => crate::metrics::poison_depth(queue, n),
                    Ok(n) => crate::metrics::queue_depth(queue, n),
                    Err(e) => tracing::debug!(queue, error = %e, "metrics: cannot count the queue"),
                }
            }
        }
    }
}
