//! Step deliveries under chaos: a chain that loses some of them (the tick's re-drive must finish
//! that work), and the wire between the API process and the worker process.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use shared::chain::{Chain, Delivery};
use shared::engine::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Drops a fraction of deliveries, as a lost EventBridge event or a crashed task would.
pub struct LossyChain {
    inner: Arc<dyn Chain>,
    drop_rate: f64,
    rng: Mutex<StdRng>,
    pub dropped: AtomicU64,
    on_drop: Box<dyn Fn(&Delivery) + Send + Sync>,
}

impl LossyChain {
    pub fn new(
        inner: Arc<dyn Chain>,
        drop_rate: f64,
        seed: u64,
        on_drop: impl Fn(&Delivery) + Send + Sync + 'static,
    ) -> Self {
        LossyChain {
            inner,
            drop_rate: drop_rate.clamp(0.0, 1.0),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            dropped: AtomicU64::new(0),
            on_drop: Box::new(on_drop),
        }
    }
}

#[async_trait]
impl Chain for LossyChain {
    async fn deliver(&self, delivery: Delivery) {
        let lose = self.rng.lock().expect("rng").random_bool(self.drop_rate);
        if lose {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            (self.on_drop)(&delivery);
            return;
        }
        self.inner.deliver(delivery).await;
    }
}

/// One delivery on the wire: a JSON line.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    id: String,
    hop: i32,
    delay_ms: u64,
}

/// The API process's chain: hands each delivery to the worker process over loopback TCP, as
/// the API Lambdas put step events on the bus for the step worker. While the worker is down
/// (port 0) or does not answer, the delivery is lost and the tick re-drives it.
pub struct RemoteChain {
    port: Arc<AtomicU16>,
    pub sent: AtomicU64,
    pub undelivered: AtomicU64,
}

impl RemoteChain {
    pub fn new(port: Arc<AtomicU16>) -> Self {
        RemoteChain { port, sent: AtomicU64::new(0), undelivered: AtomicU64::new(0) }
    }

    async fn send(&self, port: u16, delivery: &Delivery) -> std::io::Result<()> {
        let wire = Wire {
            id: delivery.instance_id.clone(),
            hop: delivery.hop,
            delay_ms: delivery.delay.as_millis() as u64,
        };
        let mut line = serde_json::to_vec(&wire).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let connect = TcpStream::connect(("127.0.0.1", port));
        let mut stream = tokio::time::timeout(Duration::from_millis(300), connect)
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        stream.write_all(&line).await?;
        stream.shutdown().await
    }
}

#[async_trait]
impl Chain for RemoteChain {
    async fn deliver(&self, delivery: Delivery) {
        let port = self.port.load(Ordering::SeqCst);
        let sent = port != 0 && self.send(port, &delivery).await.is_ok();
        if sent {
            self.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            self.undelivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The worker's end of the wire: runs every delivery it receives as a task, like the step
/// worker function runs each event.
pub async fn serve_deliveries(listener: TcpListener, engine: Weak<Engine>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(wire) = serde_json::from_str::<Wire>(&line) else { continue };
                let engine = engine.clone();
                tokio::spawn(async move {
                    if wire.delay_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(wire.delay_ms)).await;
                    }
                    let Some(engine) = engine.upgrade() else { return };
                    if let Err(err) = engine.run_step(&wire.id, wire.hop).await {
                        tracing::warn!(instance = %wire.id, error = %err, "step run failed; the tick retries it");
                    }
                });
            }
        });
    }
}
