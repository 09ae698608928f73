//! Who is asking: bearer JWTs verified against a shared secret (HS256) or the keys of a JWKS
//! URL (RS256, ES256, …; cached, refreshed, `kid` honoured), the role and scopes they carry, and
//! minting tokens with the shared secret (`tutor token`). With neither a secret nor a JWKS URL
//! the service runs in dev mode: no authentication, and only on a loopback address.

mod jwks;

use std::collections::BTreeSet;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;
use crate::content::text_enum;
use crate::ids::LearnerId;

pub use jwks::Jwks;

text_enum!(
    /// What a token lets its holder do.
    /// - `learner`: the subject is a learner id; their own data and chat only;
    /// - `educator`: the flags, analytics and flagged learners' evidence of the token's courses;
    /// - `admin`: everything;
    /// - `service`: a host platform posting events and asking for plans for the learners of the
    ///   token's courses.
    Role, "role" { Learner => "learner", Educator => "educator", Admin => "admin", Service => "service" }
);

/// The claims of a token: the registered ones checked here, and the service's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    /// Course scopes of an educator or a service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub courses: Vec<String>,
    /// A class or team, for group analytics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// A string, or an array of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
}

/// The caller of a request, once their token is verified (or anyone, in dev mode).
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub role: Role,
    pub sub: String,
    pub courses: BTreeSet<String>,
    pub group: Option<String>,
    /// No authentication is configured: the caller may do what an admin may.
    pub dev: bool,
}

impl Principal {
    /// The caller in dev mode.
    pub fn dev() -> Self {
        Self { role: Role::Admin, sub: "dev".into(), courses: BTreeSet::new(), group: None, dev: true }
    }

    /// The learner this caller is, for a learner token.
    pub fn learner(&self) -> Option<LearnerId> {
        (self.role == Role::Learner).then(|| LearnerId::parse(&self.sub).ok()).flatten()
    }

    /// Whether the caller is this learner, or an admin.
    pub fn is_or_admin(&self, learner: &LearnerId) -> bool {
        self.role == Role::Admin || self.learner().as_ref() == Some(learner)
    }

    /// Whether the caller's scopes cover `course`: an admin's cover every course, an educator's
    /// and a service's the courses of their token, a learner's none.
    pub fn covers(&self, course: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Educator | Role::Service => self.courses.contains(course),
            Role::Learner => false,
        }
    }

    /// A label for logs and rate limits: `role:sub`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.role, self.sub)
    }
}

/// Why a request's credentials were not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    #[error("send a bearer token: Authorization: Bearer <JWT>")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's algorithm is not accepted here")]
    Algorithm,
    #[error("the token's issuer is not accepted here")]
    Issuer,
    #[error("the token's audience is not this service")]
    Audience,
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    /// The keys could not be fetched, and none are cached (503, not 401).
    #[error("the signing keys are unavailable: {0}")]
    KeysUnavailable(String),
}

/// The leeway on `exp` and `nbf`, for clocks a little apart.
pub const LEEWAY_SECS: u64 = 30;

enum Keys {
    Secret(DecodingKey),
    Jwks(Jwks),
}

/// Verifies bearer tokens with the configured keys.
pub struct Verifier {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Verifier {
    /// The configured verifier, or `None` in dev mode (no secret, no JWKS URL).
    pub fn from_config(cfg: &AuthConfig) -> Option<Self> {
        let keys = if let Some(secret) = &cfg.jwt_secret {
            // the configuration checked it is at least 32 bytes: a valid HMAC key
            Keys::Secret(DecodingKey::from_secret(secret.as_bytes()).expect("an HMAC key"))
        } else {
            Keys::Jwks(Jwks::new(cfg.jwks_url.clone()?, Duration::from_secs(cfg.jwks_refresh_secs)))
        };
        Some(Self { keys, issuer: cfg.issuer.clone(), audience: cfg.audience.clone() })
    }

    /// What `/readyz` and the start-up log say about authentication.
    pub fn describe(v: Option<&Self>) -> &'static str {
        match v.map(|v| &v.keys) {
            None => "off (dev mode: loopback only)",
            Some(Keys::Secret(_)) => "jwt (HS256)",
            Some(Keys::Jwks(_)) => "jwt (JWKS)",
        }
    }

    /// The caller a token names, once its signature, algorithm, times, issuer and audience hold.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // "none" and unknown algorithms do not parse as a header
            ErrorKind::Json(_) if token.split('.').next().is_some_and(names_no_algorithm) => AuthError::Algorithm,
            _ => AuthError::Invalid(e.to_string()),
        })?;
        let (key, allowed) = match &self.keys {
            Keys::Secret(key) => (key.clone(), vec![Algorithm::HS256]),
            Keys::Jwks(jwks) => {
                if !ASYMMETRIC.contains(&header.alg) {
                    return Err(AuthError::Algorithm);
                }
                jwks.key_for(header.kid.as_deref(), header.alg).await?
            }
        };
        let mut v = Validation::new(header.alg);
        v.algorithms = allowed;
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::Algorithm,
            ErrorKind::InvalidIssuer => AuthError::Issuer,
            ErrorKind::InvalidAudience => AuthError::Audience,
            ErrorKind::MissingRequiredClaim(c) if c == "iss" => AuthError::Issuer,
            ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::Audience,
            ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
            _ => AuthError::Invalid(e.to_string()),
        })?;
        principal(data.claims)
    }
}

/// The asymmetric algorithms a JWKS may sign with (never HMAC: a public key is not a secret).
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Whether a token's encoded header names `"alg": "none"` (or no algorithm we know).
fn names_no_algorithm(encoded: &str) -> bool {
    use base64::Engine;
    let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&raw)
        .ok()
        .and_then(|h| h.get("alg").and_then(|a| a.as_str()).map(str::to_owned))
        .is_some_and(|alg| alg.eq_ignore_ascii_case("none") || alg.parse::<Algorithm>().is_err())
}

fn principal(c: Claims) -> Result<Principal, AuthError> {
    if c.role == Role::Learner && LearnerId::parse(&c.sub).is_err() {
        return Err(AuthError::Invalid("a learner token's subject must be a learner id".into()));
    }
    if c.sub.is_empty() || c.sub.len() > 256 {
        return Err(AuthError::Invalid("the subject must be 1 to 256 characters".into()));
    }
    Ok(Principal { role: c.role, sub: c.sub, courses: c.courses.into_iter().collect(), group: c.group, dev: false })
}

/// What `tutor token` mints.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub role: Role,
    pub sub: String,
    pub courses: Vec<String>,
    pub group: Option<String>,
    pub ttl: Duration,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("set TUTOR_JWT_SECRET: tokens are minted with the shared secret")]
    NoSecret,
    #[error("a learner token's subject must be a learner id: {0}")]
    Subject(String),
    #[error("signing: {0}")]
    Sign(String),
}

/// A token signed with the configured secret, with the configured issuer and audience.
pub fn mint(cfg: &AuthConfig, req: &TokenRequest) -> Result<String, MintError> {
    let secret = cfg.jwt_secret.as_deref().ok_or(MintError::NoSecret)?;
    if req.role == Role::Learner {
        LearnerId::parse(&req.sub).map_err(|e| MintError::Subject(e.0))?;
    }
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: req.sub.clone(),
        role: req.role,
        courses: req.courses.clone(),
        group: req.group.clone(),
        exp: now + req.ttl.as_secs(),
        nbf: None,
        iat: Some(now),
        iss: cfg.issuer.clone(),
        aud: cfg.audience.clone().map(serde_json::Value::String),
    };
    let key = EncodingKey::from_secret(secret.as_bytes()).map_err(|e| MintError::Sign(e.to_string()))?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).map_err(|e| MintError::Sign(e.to_string()))
}

/// Parses a duration such as `90s`, `15m`, `1h`, `7d` (a bare number is seconds).
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a duration like 90s, 15m, 1h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("'{s}': the unit must be s, m, h or d")),
    };
    if secs == 0 {
        return Err("the lifetime must be above zero".into());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AuthConfig {
        AuthConfig { jwt_secret: Some("s3cret-s3cret-s3cret-s3cret-32b!".into()), ..AuthConfig::default() }
    }

    fn req(role: Role, sub: &str) -> TokenRequest {
        TokenRequest {
            role,
            sub: sub.into(),
            courses: vec!["fractions".into()],
            group: None,
            ttl: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn a_minted_token_verifies_to_its_principal() {
        let v = Verifier::from_config(&cfg()).unwrap();
        let p = v.verify(&mint(&cfg(), &req(Role::Educator, "ada")).unwrap()).await.unwrap();
        assert_eq!((p.role, p.sub.as_str(), p.dev), (Role::Educator, "ada", false));
        assert!(p.covers("fractions") && !p.covers("security"));
    }

    #[tokio::test]
    async fn another_secret_or_a_learner_sub_that_is_no_id_is_refused() {
        let token = mint(&cfg(), &req(Role::Admin, "root")).unwrap();
        let other = AuthConfig { jwt_secret: Some("another-secret-another-secret-xx".into()), ..AuthConfig::default() };
        let err = Verifier::from_config(&other).unwrap().verify(&token).await.unwrap_err();
        assert_eq!(err, AuthError::Invalid("bad signature".into()));
        assert!(matches!(mint(&cfg(), &req(Role::Learner, "no spaces")), Err(MintError::Subject(_))));
    }

    #[test]
    fn ttls_parse_with_units() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert!(parse_ttl("1y").is_err() && parse_ttl("0s").is_err() && parse_ttl("h").is_err());
    }
}
