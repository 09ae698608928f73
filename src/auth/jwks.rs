//! The keys of a JWKS URL: fetched on first use, kept for the refresh interval, fetched again
//! early when a token names a key id the set does not have (at most every
//! [`Jwks::MIN_REFETCH`]), and kept when a refresh fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::Mutex;

use super::AuthError;

/// One usable key of the set.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

#[derive(Default)]
struct Cached {
    keys: Arc<Vec<Key>>,
    /// When the set was last fetched.
    fetched: Option<Instant>,
    /// When a fetch was last tried, whether or not it worked.
    tried: Option<Instant>,
}

/// A cached JWKS.
pub struct Jwks {
    url: String,
    refresh: Duration,
    client: reqwest::Client,
    cached: std::sync::Mutex<Cached>,
    /// Held by the one fetch in flight: others wait for it, then use what it got.
    fetching: Mutex<()>,
}

impl Jwks {
    /// The shortest time between two fetches of the set.
    pub const MIN_REFETCH: Duration = Duration::from_secs(2);

    /// The set at `url`, refreshed every `refresh`.
    pub fn new(url: String, refresh: Duration) -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self { url, refresh, client, cached: std::sync::Mutex::default(), fetching: Mutex::new(()) }
    }

    /// The cached key for `kid`, when the set is fresh and has it.
    fn cached_key(&self, kid: Option<&str>, fresh_only: bool) -> Option<Key> {
        let c = self.cached.lock().expect("jwks lock");
        let fresh = c.fetched.is_some_and(|t| t.elapsed() < self.refresh);
        (fresh || !fresh_only).then(|| find(&c.keys, kid).cloned()).flatten()
    }

    /// The key a token with this `kid` and `alg` is verified with, and the algorithms it may use.
    /// At most one fetch runs at a time, and none within [`Jwks::MIN_REFETCH`] of the last
    /// attempt: a burst of tokens with unknown key ids, or an unreachable JWKS, costs one fetch.
    pub(super) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(DecodingKey, Vec<Algorithm>), AuthError> {
        let key = match self.cached_key(kid, true) {
            Some(k) => k,
            None => self.fetch_for(kid).await?,
        };
        if key.alg.is_some_and(|a| a != alg) {
            return Err(AuthError::Algorithm);
        }
        Ok((key.key, vec![alg]))
    }

    async fn fetch_for(&self, kid: Option<&str>) -> Result<Key, AuthError> {
        let _flight = self.fetching.lock().await;
        // a fetch that ran while this one waited may have brought the key
        if let Some(k) = self.cached_key(kid, true) {
            return Ok(k);
        }
        let recently = self.cached.lock().expect("jwks lock").tried.is_some_and(|t| t.elapsed() < Self::MIN_REFETCH);
        if !recently {
            let fetched = self.fetch().await;
            let mut c = self.cached.lock().expect("jwks lock");
            c.tried = Some(Instant::now());
            match fetched {
                Ok(keys) => {
                    c.keys = Arc::new(keys);
                    c.fetched = Some(Instant::now());
                }
                Err(e) if c.fetched.is_none() => return Err(AuthError::KeysUnavailable(e)),
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, "refreshing the JWKS failed; keeping the cached keys");
                }
            }
        }
        let c = self.cached.lock().expect("jwks lock");
        if c.fetched.is_none() {
            return Err(AuthError::KeysUnavailable("the last fetch failed".into()));
        }
        find(&c.keys, kid).cloned().ok_or(AuthError::UnknownKey)
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let set: JwkSet = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| format!("not a JWKS: {e}"))?;
        let keys: Vec<Key> = set
            .keys
            .iter()
            // a symmetric key in a public set would let anyone who reads it sign
            .filter(|k| !matches!(k.algorithm, AlgorithmParameters::OctetKey(_)))
            .filter_map(|k| {
                let key = DecodingKey::from_jwk(k).ok()?;
                let alg = k.common.key_algorithm.and_then(|a| Algorithm::try_from(a).ok());
                Some(Key { kid: k.common.key_id.clone(), alg, key })
            })
            .collect();
        tracing::info!(url = %self.url, keys = keys.len(), "JWKS fetched");
        Ok(keys)
    }
}

/// The key with this id; with no id, the set's only key.
fn find<'a>(keys: &'a [Key], kid: Option<&str>) -> Option<&'a Key> {
    match kid {
        Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
}
