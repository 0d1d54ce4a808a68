//! aws-lc-rs's random generator behind the `rand_core` traits the
//! RustCrypto crates (sm2, ml-kem, ed25519-dalek) take, so every random
//! byte in Keywarden comes from one source.

use core::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};

/// aws-lc-rs's DRBG as a `rand_core` generator. Filling cannot fail in
/// practice; if aws-lc ever reports a failure, this panics rather than
/// hand out predictable bytes.
pub(crate) struct AwsLcRng;

impl TryRng for AwsLcRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        #[allow(clippy::expect_used)]
        aws_lc_rs::rand::fill(dst).expect("aws-lc random generator failed");
        Ok(())
    }
}

impl TryCryptoRng for AwsLcRng {}
