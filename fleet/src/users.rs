//! People who sign in to the console with a name and password. Passwords are kept as Argon2id
//! hashes (PHC strings, a random salt each, the OWASP-recommended parameters of the `argon2`
//! crate's default: 19 MiB, 2 passes). Five wrong passwords in a row lock the account for a
//! minute, doubling with each further failure up to an hour; a good sign-in or a new password
//! unlocks it. An unknown name costs the same work as a known one.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::db::Db;

/// Failures in a row allowed before the account locks.
pub const FREE_FAILURES: i64 = 5;
const LOCK_MS: i64 = 60_000;
const MAX_LOCK_MS: i64 = 3_600_000;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("a password is 12 to 1024 characters")]
    BadPassword,
    #[error("a user name is 1 to 64 of a-z, A-Z, 0-9, '.', '_', '@' and '-'")]
    BadName,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("wrong name or password")]
    Wrong,
    #[error("too many wrong passwords: the account is locked for {0} more seconds")]
    Locked(i64),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

pub fn check_name(name: &str) -> Result<(), UserError> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if ok { Ok(()) } else { Err(UserError::BadName) }
}

/// The PHC string of `password` with a fresh salt from the OS.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    let n = password.chars().count();
    if !(12..=1024).contains(&n) {
        return Err(UserError::BadPassword);
    }
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| UserError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| UserError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash nobody's password matches, verified against for unknown names.
fn decoy() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password(&crate::random_token(24)).unwrap_or_default())
}

/// How long an account stays locked after `failures` wrong passwords in a row.
pub fn lock_ms(failures: i64) -> i64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let doublings = (failures - FREE_FAILURES).min(6) as u32;
    (LOCK_MS << doublings).min(MAX_LOCK_MS)
}

/// Checks a sign-in; on success the person's role.
pub async fn sign_in(db: &Db, name: &str, password: &str, now: i64) -> Result<String, SignInError> {
    if check_name(name).is_err() || password.len() > 4096 {
        return Err(SignInError::Wrong);
    }
    let user = db.user(name).await?;
    if let Some(u) = &user
        && u.locked_until > now
    {
        return Err(SignInError::Locked((u.locked_until - now + 999) / 1000));
    }
    let phc = user.as_ref().map(|u| u.password.clone()).unwrap_or_else(|| decoy().to_owned());
    let pw = password.to_owned();
    let good = tokio::task::spawn_blocking(move || verify(&pw, &phc)).await.unwrap_or(false);
    let Some(u) = user else { return Err(SignInError::Wrong) };
    if good {
        db.user_attempt(name, 0, 0).await?;
        return Ok(u.role);
    }
    let failures = u.failures + 1;
    let lock = lock_ms(failures);
    db.user_attempt(name, failures, if lock > 0 { now + lock } else { 0 }).await?;
    Err(SignInError::Wrong)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_salted_argon2id_and_checked() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterY", &a));
        assert!(!verify("correct horse battery", "not a PHC string"));
        assert!(matches!(hash_password("short"), Err(UserError::BadPassword)));
    }

    #[test]
    fn the_lock_starts_at_the_fifth_failure_and_doubles_up_to_an_hour() {
        assert_eq!(lock_ms(4), 0);
        assert_eq!(lock_ms(5), 60_000);
        assert_eq!(lock_ms(6), 120_000);
        assert_eq!(lock_ms(50), 3_600_000);
        assert!(check_name("alice@example.org").is_ok());
        assert!(check_name("a b").is_err());
    }
}
