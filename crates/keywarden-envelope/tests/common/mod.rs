//! Test keyrings.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use keywarden_envelope::{
    AlgorithmSuite, DecryptionRequest, EncryptedDataKey, EncryptionContext, Error, Keyring,
};
use zeroize::Zeroizing;

/// A keyring with one fixed data key: it "encrypts" it into `copies`
/// dummy encrypted data keys and returns it for any of them. Counts
/// decryption calls.
pub struct StaticKeyring {
    pub data_key: Vec<u8>,
    pub copies: usize,
    pub decrypt_calls: AtomicUsize,
}

impl StaticKeyring {
    pub fn new(data_key: Vec<u8>) -> Self {
        StaticKeyring {
            data_key,
            copies: 1,
            decrypt_calls: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl Keyring for StaticKeyring {
    async fn on_encrypt(
        &self,
        _suite: AlgorithmSuite,
        _context: &EncryptionContext,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<EncryptedDataKey>), Error> {
        let edk = EncryptedDataKey {
            provider_id: "static".into(),
            provider_info: b"static".to_vec(),
            ciphertext: vec![0; 4],
        };
        Ok((
            Zeroizing::new(self.data_key.clone()),
            vec![edk; self.copies],
        ))
    }

    async fn on_decrypt(
        &self,
        _request: DecryptionRequest<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.decrypt_calls.fetch_add(1, Ordering::SeqCst);
        Ok(Zeroizing::new(self.data_key.clone()))
    }
}
