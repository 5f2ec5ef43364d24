//! Helpers shared by the end-to-end tests and the swap benchmark (included
//! by both with `#[path]`): the admin address of a running `weir`, and a
//! component under a new content hash.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Waits (up to a minute) for a spawned `weir run` with a piped stderr to
/// print its admin API address. Its stderr lines keep going to `log`, so the
/// process never blocks on a full pipe and a failing test can show them.
pub fn admin_address(child: &mut Child, log: Arc<Mutex<Vec<String>>>) -> Option<SocketAddr> {
    let lines = BufReader::new(child.stderr.take()?).lines();
    let (sender, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Some(found) = line.strip_prefix("weir: admin API on http://") {
                let _ = sender.send(found.to_owned());
            }
            if let Ok(mut log) = log.lock() {
                log.push(line);
            }
        }
    });
    address
        .recv_timeout(Duration::from_secs(60))
        .ok()?
        .parse()
        .ok()
}

/// `component` with a custom section holding `tag`: the same code under a
/// new content hash, so no compiled-code cache entry can match it.
pub fn with_custom_section(component: &[u8], tag: &str) -> Vec<u8> {
    let name = b"weir-test";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = component.to_vec();
    out.push(0);
    let mut size = payload.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&payload);
    out
}
