//! The protector's configuration.

use std::fmt;
use std::path::PathBuf;

use zeroize::Zeroizing;

/// Where the token is and how to log in to it.
///
/// Holds the user PIN, so it derives neither `Debug` nor `Clone`; its
/// `Debug` redacts the PIN.
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The label of the token holding Keywarden's keys.
    pub token_label: String,
    /// The token's user PIN.
    pub pin: Zeroizing<String>,
    /// At most this many sessions are open at once (at least one is used).
    pub sessions: usize,
    /// The protector id recorded with each key version this protector makes.
    pub protector_id: String,
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("pin", &"<redacted>")
            .field("sessions", &self.sessions)
            .field("protector_id", &self.protector_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_pin() {
        let config = Pkcs11Config {
            module: PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
            token_label: "kw".into(),
            pin: Zeroizing::new("s3cret-pin-4711".into()),
            sessions: 4,
            protector_id: "hsm".into(),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("4711"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains("kw"), "{shown}");
    }
}
