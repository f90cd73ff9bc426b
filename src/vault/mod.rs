//! The token vault's cryptography: the key ring, sealing and opening. Imports nothing of
//! ours; the rows themselves are written and read by `store` (the apply path seals
//! before its transaction, `store::vault` reads them back).

mod keyring;
mod legacy;

pub use keyring::{KeyRing, KeyRingError, RowIdentity, SealError, Sealed};
pub use legacy::{LegacyError, LegacyFormat, LegacyKey};
