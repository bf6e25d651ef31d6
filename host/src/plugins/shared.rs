//! Plugin instances that streams share, one resource per stream.
//!
//! An instance of its own per stream costs an instantiation per chat and
//! about seven kernel memory mappings per open stream (linear memory, its
//! copy-on-write image, the fiber stack and their guards); at thousands
//! of open streams that meets `vm.max_map_count`. So each plugin keeps a
//! few live instances, and a stream holds only its state, a resource of
//! the plugin's world (an encoder's response stream, a provider's
//! decoder), inside one of them: at most `streams_per_instance` at once.
//!
//! What sharing costs, and how it is bounded: an instance that traps,
//! overruns its deadline or is cancelled mid-call is broken; it takes no
//! new streams and the streams it holds fail with
//! [`PluginFailure::Lost`]. An instance is retired after
//! [`LIFETIME_STREAMS`] streams, so whatever a guest leaks per stream
//! cannot pile up. Streams of one plugin can meet in its memory; with
//! `plugin_streams_per_instance = 1` each stream has an instance to itself
//! while it runs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::PluginFailure;
use super::sandbox::{PluginState, Sandbox};
use crate::metrics::PluginCounters;
use crate::wasm::ticks_for;

/// Streams an instance serves over its life before it is retired.
const LIFETIME_STREAMS: usize = 1_000;

/// A store and the typed exports of the component instantiated in it.
pub(super) struct Live<A> {
    store: Store<PluginState>,
    api: A,
}

struct Instance<A> {
    live: tokio::sync::Mutex<Live<A>>,
    /// Streams holding a lease now.
    streams: AtomicUsize,
    /// Leases ever handed out.
    served: AtomicUsize,
    broken: AtomicBool,
    /// Resources of streams that ended, dropped on the next call: a
    /// stream can end (its client gone) where no call can be made.
    orphans: Mutex<Vec<ResourceAny>>,
}

impl<A> Instance<A> {
    fn takes_streams(&self) -> bool {
        !self.broken.load(Ordering::Acquire)
            && self.served.load(Ordering::Relaxed) < LIFETIME_STREAMS
    }
}

/// The live instances of one plugin.
pub(super) struct InstancePool<A> {
    plugin: String,
    counters: PluginCounters,
    sandbox: Arc<Sandbox>,
    instances: Mutex<Vec<Arc<Instance<A>>>>,
    /// Instances kept, and filled first, so calls spread over the cores.
    spread: usize,
}

impl<A> InstancePool<A> {
    pub(super) fn new(plugin: &str, sandbox: Arc<Sandbox>) -> Arc<InstancePool<A>> {
        Self::counted(plugin, PluginCounters::of(plugin), sandbox)
    }

    /// A pool for asking a component being loaded what it is, known by
    /// its file until it names itself; its calls are not counted.
    pub(super) fn probing(origin: &str, sandbox: Arc<Sandbox>) -> Arc<InstancePool<A>> {
        Self::counted(origin, PluginCounters::none(), sandbox)
    }

    fn counted(
        plugin: &str,
        counters: PluginCounters,
        sandbox: Arc<Sandbox>,
    ) -> Arc<InstancePool<A>> {
        Arc::new(InstancePool {
            plugin: plugin.to_owned(),
            counters,
            sandbox,
            instances: Mutex::new(Vec::new()),
            spread: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }

    fn instances(&self) -> MutexGuard<'_, Vec<Arc<Instance<A>>>> {
        // The list stays consistent whatever a panicking holder did.
        self.instances.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for one stream: in the least busy instance with room, or
    /// in a new one made by `instantiate`.
    pub(super) async fn lease(
        self: &Arc<Self>,
        instantiate: impl AsyncFnOnce(&mut Store<PluginState>) -> wasmtime::Result<A>,
    ) -> Result<Lease<A>, PluginFailure> {
        let limits = self.sandbox.limits();
        let instance = match self.pick() {
            Some(instance) => instance,
            None => {
                let mut store = self.sandbox.new_store();
                store.set_epoch_deadline(ticks_for(limits.call_timeout.as_millis()));
                let api = instantiate(&mut store)
                    .await
                    .map_err(|e| failure(&self.plugin, limits.call_timeout.as_millis(), e))?;
                let instance = Arc::new(Instance {
                    live: tokio::sync::Mutex::new(Live { store, api }),
                    streams: AtomicUsize::new(1),
                    served: AtomicUsize::new(1),
                    broken: AtomicBool::new(false),
                    orphans: Mutex::new(Vec::new()),
                });
                self.instances().push(instance.clone());
                instance
            }
        };
        Ok(Lease {
            pool: self.clone(),
            instance,
            resources: Vec::new(),
            output_left: limits.output_bytes,
        })
    }

    /// Counts a stream into the least busy instance that has room, unless
    /// a new instance would spread the load better.
    fn pick(&self) -> Option<Arc<Instance<A>>> {
        let instances = self.instances();
        let open = instances.iter().filter(|i| i.takes_streams());
        let best = open.min_by_key(|i| i.streams.load(Ordering::Relaxed))?;
        let busy = best.streams.load(Ordering::Relaxed);
        let room = self.sandbox.limits().streams_per_instance;
        if busy >= room || (busy > 0 && instances.len() < self.spread) {
            return None;
        }
        best.streams.fetch_add(1, Ordering::Relaxed);
        best.served.fetch_add(1, Ordering::Relaxed);
        Some(best.clone())
    }

    /// Lets go of broken and retired instances, and of idle ones beyond
    /// `spread`; each is freed when its last stream ends.
    fn tidy(&self) {
        let mut instances = self.instances();
        instances.retain(|i| i.takes_streams());
        let mut idle = 0;
        instances.retain(|i| {
            if i.streams.load(Ordering::Relaxed) > 0 {
                return true;
            }
            idle += 1;
            idle <= self.spread
        });
    }
}

/// One stream's place in a shared instance. Calls through it run one at
/// a time per instance, each under a fresh deadline; output is counted
/// per stream.
pub(super) struct Lease<A> {
    pool: Arc<InstancePool<A>>,
    instance: Arc<Instance<A>>,
    /// The stream's resources in the instance, dropped with the lease.
    resources: Vec<ResourceAny>,
    output_left: usize,
}

impl<A> Lease<A> {
    pub(super) fn plugin(&self) -> &str {
        &self.pool.plugin
    }

    /// Ties `resource` to this stream, to be dropped when it ends.
    pub(super) fn own(&mut self, resource: ResourceAny) {
        self.resources.push(resource);
    }

    /// Drops a resource of this stream now.
    pub(super) async fn release(&mut self, resource: ResourceAny) -> Result<(), PluginFailure> {
        self.resources.retain(|r| *r != resource);
        self.call(async |store, _| resource.resource_drop_async(store).await)
            .await
    }

    /// Runs one call into the guest under a fresh deadline. A call that
    /// fails, or is dropped before it finishes, breaks the instance: its
    /// guest state can no longer be trusted.
    pub(super) async fn call<R>(
        &mut self,
        f: impl AsyncFnOnce(&mut Store<PluginState>, &A) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFailure> {
        let instance = &self.instance;
        let mut live = instance.live.lock().await;
        if instance.broken.load(Ordering::Acquire) {
            return Err(PluginFailure::Lost {
                plugin: self.pool.plugin.clone(),
            });
        }
        let Live { store, api } = &mut *live;
        self.pool.counters.calls.increment(1);
        let timeout_ms = self.pool.sandbox.limits().call_timeout.as_millis();
        store.set_epoch_deadline(ticks_for(timeout_ms));
        let mut unfinished = BreakUnlessFinished {
            broken: &instance.broken,
            finished: false,
        };
        let orphans =
            std::mem::take(&mut *instance.orphans.lock().unwrap_or_else(|e| e.into_inner()));
        let mut result = Ok(());
        for orphan in orphans {
            result = result.and(orphan.resource_drop_async(&mut *store).await);
        }
        let result = match result {
            Ok(()) => f(store, api).await,
            Err(e) => Err(e),
        };
        unfinished.finished = true;
        result.map_err(|e| {
            instance.broken.store(true, Ordering::Release);
            let failure = failure(&self.pool.plugin, timeout_ms, e);
            match &failure {
                PluginFailure::Timeout { .. } => self.pool.counters.timeouts.increment(1),
                _ => self.pool.counters.traps.increment(1),
            }
            failure
        })
    }

    /// Counts `bytes` of output against the stream's budget.
    pub(super) fn charge(&mut self, bytes: usize) -> Result<(), PluginFailure> {
        let Some(left) = self.output_left.checked_sub(bytes) else {
            return Err(PluginFailure::Output {
                plugin: self.pool.plugin.clone(),
                mib: self.pool.sandbox.limits().output_bytes >> 20,
            });
        };
        self.output_left = left;
        Ok(())
    }
}

impl<A> Drop for Lease<A> {
    fn drop(&mut self) {
        self.instance
            .orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&mut self.resources);
        if self.instance.streams.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.pool.tidy();
        }
    }
}

/// Marks an instance broken if dropped, i.e. if the call future holding
/// it was dropped mid-call (its client went away).
struct BreakUnlessFinished<'a> {
    broken: &'a AtomicBool,
    finished: bool,
}

impl Drop for BreakUnlessFinished<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.broken.store(true, Ordering::Release);
        }
    }
}

/// Maps a wasmtime error to what the client is told.
fn failure(plugin: &str, timeout_ms: u128, error: wasmtime::Error) -> PluginFailure {
    if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
        return PluginFailure::Timeout {
            plugin: plugin.to_owned(),
            ms: timeout_ms,
        };
    }
    PluginFailure::Trap {
        plugin: plugin.to_owned(),
        message: format!("{error:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{sharing_runtime, simple_stream};
    use super::super::{ChatEvent, FinishReason, TurnEnd};
    use super::*;

    impl<A> InstancePool<A> {
        /// Streams in each instance that takes new ones.
        fn loads(&self) -> Vec<usize> {
            self.instances()
                .iter()
                .map(|i| i.streams.load(Ordering::Relaxed))
                .collect()
        }
    }

    impl<A> Lease<A> {
        fn shares_instance_with(&self, other: &Lease<A>) -> bool {
            Arc::ptr_eq(&self.instance, &other.instance)
        }

        fn break_instance(&self) {
            self.instance.broken.store(true, Ordering::Release);
        }
    }

    fn turn_end_and_done() -> [ChatEvent; 2] {
        [
            ChatEvent::TurnEnd(TurnEnd {
                iteration: 1,
                reason: FinishReason::Stop,
            }),
            ChatEvent::Done,
        ]
    }

    #[tokio::test]
    async fn streams_share_instances_up_to_the_limit_and_keep_their_own_state() {
        let runtime = sharing_runtime(2).await;
        let pool = &runtime.encoder("simple").unwrap().instances;
        let mut streams = Vec::new();
        for _ in 0..5 {
            streams.push(simple_stream(&runtime).await);
        }
        let loads = pool.loads();
        assert!(loads.iter().all(|&n| n <= 2), "{loads:?}");
        assert_eq!(loads.iter().sum::<usize>(), 5, "{loads:?}");

        // Interleaved, each stream's text stays its own.
        for (i, stream) in streams.iter_mut().enumerate() {
            let held = stream
                .encode(&[ChatEvent::TextDelta(format!("stream {i}"))])
                .await
                .unwrap();
            assert_eq!(
                held, b"",
                "the simple format holds text until the turn ends"
            );
        }
        for (i, stream) in streams.iter_mut().enumerate() {
            let mut out = stream.encode(&turn_end_and_done()).await.unwrap();
            out.extend(stream.finish().await.unwrap());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!(
                    "data: {{\"type\": \"text\", \"content\": \"stream {i}\"}}\n\ndata: [DONE]\n\n"
                )
            );
        }

        // Ended streams leave at most `spread` idle instances behind.
        drop(streams);
        assert!(pool.loads().len() <= pool.spread, "{:?}", pool.loads());
        assert!(pool.loads().iter().all(|&n| n == 0));
    }

    #[tokio::test]
    async fn a_broken_instance_fails_the_streams_it_holds_and_takes_no_more() {
        let runtime = sharing_runtime(32).await;
        let pool = &runtime.encoder("simple").unwrap().instances;
        // One more stream than instances are spread over: two must share.
        let mut streams = Vec::new();
        for _ in 0..=pool.spread {
            streams.push(simple_stream(&runtime).await);
        }
        let broken = streams.pop().unwrap();
        broken.lease().break_instance();

        let mut lost = 0;
        for stream in &mut streams {
            let result = stream.encode(&turn_end_and_done()).await;
            if stream.lease().shares_instance_with(broken.lease()) {
                lost += 1;
                assert_eq!(
                    result.unwrap_err().to_string(),
                    "plugin `simple` crashed while serving another stream; retry"
                );
            } else {
                assert!(result.is_ok(), "{result:?}");
            }
        }
        assert!(lost >= 1);

        // New streams go to working instances.
        let mut fresh = simple_stream(&runtime).await;
        assert!(!fresh.lease().shares_instance_with(broken.lease()));
        fresh.encode(&turn_end_and_done()).await.unwrap();
    }
}
