//! placeholder until the TLS test lands
