//! Lease stores (filled by the lease-store work).
