//! The CPU time a component server spends while tool calls are in flight.
//!
//! Wasmtime reports every crossing between guest and host; the time
//! between entering the guest and leaving it is guest time, and waiting
//! in a host call (for stdin, a timer, a response) is not. Each call
//! notes the guest time at its start; once the guest has run for more
//! than its budget since the oldest call in flight began, the epoch
//! callback stops it. A loop that never crosses into the host is caught
//! the same way, since the callback runs inside it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::CallHook;

/// What the host side shares with the store: guest time so far and the
/// calls in flight.
#[derive(Default)]
pub struct CallClock {
    /// Guest time up to the last crossing, in nanoseconds.
    guest_nanos: AtomicU64,
    /// Each call in flight, by id, with the guest time at its start.
    calls: Mutex<BTreeMap<u64, u64>>,
    next_call: AtomicU64,
}

impl CallClock {
    /// Marks a tool call in flight until the guard is dropped.
    pub fn call_started(self: &Arc<Self>) -> CallInFlight {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let start = self.guest_nanos.load(Ordering::Relaxed);
        self.lock().insert(id, start);
        CallInFlight {
            clock: self.clone(),
            id,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, u64>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Guest time since the oldest call in flight began, if one is.
    fn charged(&self, guest_nanos: u64) -> Option<Duration> {
        let oldest = self.lock().values().min().copied()?;
        Some(Duration::from_nanos(guest_nanos.saturating_sub(oldest)))
    }
}

pub struct CallInFlight {
    clock: Arc<CallClock>,
    id: u64,
}

impl Drop for CallInFlight {
    fn drop(&mut self) {
        self.clock.lock().remove(&self.id);
    }
}

/// The store's side: when the guest last started running.
pub struct CpuMeter {
    clock: Arc<CallClock>,
    budget: Duration,
    running_since: Option<Instant>,
}

impl CpuMeter {
    pub fn new(clock: Arc<CallClock>, budget: Duration) -> CpuMeter {
        CpuMeter {
            clock,
            budget,
            running_since: None,
        }
    }

    /// Follows the guest in and out of wasm.
    pub fn crossed(&mut self, hook: CallHook) {
        match hook {
            CallHook::CallingWasm | CallHook::ReturningFromHost => {
                self.running_since = Some(Instant::now());
            }
            CallHook::CallingHost | CallHook::ReturningFromWasm => {
                if let Some(since) = self.running_since.take() {
                    let ran = since.elapsed().as_nanos() as u64;
                    self.clock.guest_nanos.fetch_add(ran, Ordering::Relaxed);
                }
            }
        }
    }

    /// Why the guest must stop now, if it must.
    pub fn overrun(&self) -> Option<String> {
        let running = self
            .running_since
            .map_or(0, |since| since.elapsed().as_nanos() as u64);
        let guest_nanos = self.clock.guest_nanos.load(Ordering::Relaxed) + running;
        let charged = self.clock.charged(guest_nanos)?;
        (charged > self.budget).then(|| {
            format!(
                "it used more than its {} ms of CPU time on a tool call",
                self.budget.as_millis()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_guest_time_during_a_call_is_charged() {
        let clock = Arc::new(CallClock::default());
        let mut meter = CpuMeter::new(clock.clone(), Duration::from_millis(20));
        meter.crossed(CallHook::CallingWasm);
        std::thread::sleep(Duration::from_millis(30));
        meter.crossed(CallHook::CallingHost);
        assert_eq!(meter.overrun(), None, "no call was in flight");

        let call = clock.call_started();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(meter.overrun(), None, "waiting in the host is not charged");
        meter.crossed(CallHook::ReturningFromHost);
        std::thread::sleep(Duration::from_millis(30));
        let overrun = meter.overrun().expect("30 ms of guest time is over 20");
        assert!(overrun.contains("20 ms of CPU time"), "{overrun}");

        drop(call);
        assert_eq!(meter.overrun(), None, "the call ended");
    }
}
