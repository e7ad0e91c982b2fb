//! RS256 signing rate of this machine for the server's key type (RSA-2048, PKCS#1 v1.5 SHA-256,
//! aws-lc-rs, key parsed once), one thread per core. Used by `bench/run.sh`:
//!
//!     cargo run --release -p bridgekeeper-crypto --example sign_rate [-- SECONDS]
//!
//! Prints `threads=N`, `seconds=S`, `signs=K` and `sign_rate_per_s=R`, one per line.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bridgekeeper_crypto::keyring::SigningKey;

fn main() {
    let seconds: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);

    let (key, _der) = SigningKey::generate().expect("generate RSA-2048 key");
    let key = Arc::new(key);
    // A JWT-like signing input (base64url header "." base64url claims), about 300 bytes.
    let message: Arc<Vec<u8>> = Arc::new({
        let header = "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IjAxSkMzWFhYWFhYWFhYWFhYWFhYWFhYWFhYIn0";
        let claims = "eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xOjgwODAiLCJzdWIiOiIwMUpDM1hYWFhYWFhYWFhYWFhYWFhYWFhYWCIsImF1ZCI6Imh0dHA6Ly8xMjcuMC4wLjE6ODA4MC9tY3AiLCJleHAiOjE3MzIzOTAwMDAsInNjb3BlIjoidW5pdmVyc2FsLW1jcC1yZWFkLXdyaXRlIn0";
        format!("{header}.{claims}").into_bytes()
    });
    assert!(key.verify_rs256(&message, &key.sign_rs256(&message).expect("sign")));

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (key, message, stop) = (key.clone(), message.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let sig = key.sign_rs256(&message).expect("sign");
                    std::hint::black_box(sig);
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let signs: u64 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    let elapsed = start.elapsed().as_secs_f64();

    println!("threads={threads}");
    println!("message_bytes={}", message.len());
    println!("seconds={elapsed:.3}");
    println!("signs={signs}");
    println!("sign_rate_per_s={:.1}", signs as f64 / elapsed);
}
