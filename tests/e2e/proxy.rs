//! A TCP relay in front of Keycloak that a test can cut and restore: "Keycloak down"
//! without stopping the Keycloak the other tests share. Cut, the port refuses
//! connections and every relayed connection is closed.

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub struct Proxy {
    /// `http://127.0.0.1:<port>`: Keycloak's URL through the relay.
    pub url: String,
    listen: SocketAddr,
    target: SocketAddr,
    relay: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    /// A relay to the Keycloak at `target_url` (`http://host:port`).
    pub async fn start(target_url: &str) -> Proxy {
        let authority = target_url
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let target = tokio::net::lookup_host(authority)
            .await
            .expect("Keycloak's address")
            .next()
            .expect("Keycloak's address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("relay port");
        let listen = listener.local_addr().expect("relay address");
        let proxy = Proxy {
            url: format!("http://{listen}"),
            listen,
            target,
            relay: Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let target = self.target;
        let task = tokio::spawn(async move {
            // Dropped with the task when cut: every relayed connection ends.
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        if let Some(old) = self.relay.lock().expect("relay").replace(task) {
            old.abort();
        }
    }

    /// Keycloak is unreachable through the relay until [`Proxy::restore`].
    pub async fn cut(&self) {
        let task = self.relay.lock().expect("relay").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    pub async fn restore(&self) {
        let listener = TcpListener::bind(self.listen)
            .await
            .expect("relay port again");
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(mut relay) = self.relay.lock() {
            if let Some(task) = relay.take() {
                task.abort();
            }
        }
    }
}
