//! Keep-alive connections for bursts: each request of a burst on its own connection, every
//! one of them written at the same moment (a barrier after each connection is ready), so the
//! server sees them overlap as concurrent clients would make them.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Barrier;

use crate::load::{self, Req, Sample, Sender};

/// A worker's connections: connection `i` goes to instance `i mod n`; the sequential calls
/// take the instances in turn (one instance: always the first connection).
pub struct Pool {
    authorities: Vec<String>,
    conns: Vec<Option<Sender>>,
    /// Sequential calls made so far.
    calls: usize,
}

impl Pool {
    /// No connection yet; they open when first needed. `authorities` (`host:port`, at least
    /// one) are instances sharing one store.
    pub fn new(authorities: &[String]) -> Self {
        Self {
            authorities: authorities.to_vec(),
            conns: Vec::new(),
            calls: 0,
        }
    }

    fn authority(&self, i: usize) -> &str {
        self.authorities
            .get(i % self.authorities.len().max(1))
            .map_or("", String::as_str)
    }

    /// Connection `i`, open and ready (a closed one is opened again).
    async fn take(&mut self, i: usize) -> anyhow::Result<Sender> {
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
        }
        if let Some(mut s) = self.conns[i].take()
            && !s.is_closed()
            && s.ready().await.is_ok()
        {
            return Ok(s);
        }
        load::connect(self.authority(i)).await
    }

    /// One request, on the next instance's first connection.
    pub async fn one(&mut self, req: &Req) -> anyhow::Result<Sample> {
        let i = self.calls % self.authorities.len().max(1);
        self.calls += 1;
        let mut sender = self.take(i).await?;
        let t0 = std::time::Instant::now();
        let authority = self.authority(i).to_string();
        let (status, body) = load::send(&mut sender, &authority, req).await?;
        self.conns[i] = Some(sender);
        Ok(Sample {
            latency: t0.elapsed(),
            status,
            body,
        })
    }

    /// Every request of `reqs` at once, each on its own connection; the samples in the order
    /// of `reqs`. A transport failure is a sample with status 0 (the request may or may not
    /// have reached the server).
    pub async fn burst(&mut self, reqs: Vec<Req>) -> anyhow::Result<Vec<Sample>> {
        let barrier = Arc::new(Barrier::new(reqs.len()));
        let mut tasks = Vec::with_capacity(reqs.len());
        for (i, req) in reqs.into_iter().enumerate() {
            let mut sender = self.take(i).await?;
            let (barrier, authority) = (barrier.clone(), self.authority(i).to_string());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let t0 = std::time::Instant::now();
                let result = load::send(&mut sender, &authority, &req).await;
                let latency = t0.elapsed();
                match result {
                    Ok((status, body)) => (
                        Some(sender),
                        Sample {
                            latency,
                            status,
                            body,
                        },
                    ),
                    Err(e) => (
                        None,
                        Sample {
                            latency,
                            status: 0,
                            body: Bytes::from(format!("{e:#}")),
                        },
                    ),
                }
            }));
        }
        let mut out = Vec::with_capacity(tasks.len());
        for (i, task) in tasks.into_iter().enumerate() {
            let (sender, sample) = task.await?;
            self.conns[i] = sender;
            out.push(sample);
        }
        Ok(out)
    }
}
