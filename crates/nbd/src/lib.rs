//! Coffer's NBD server. It owns the Network Block Device protocol: the fixed
//! newstyle handshake, option haggling and the transmission phase
//! ([`server`]), over any [`BlockDevice`] found by an [`ExportResolver`]
//! ([`device`]). It knows nothing of disks, keys or metadata: the service
//! layer implements the two traits.

pub mod device;
#[doc(hidden)]
pub mod fuzz;
pub mod server;
mod structured;

pub use device::*;
pub use server::{NbdError, ServerConfig, handle_connection, serve};
