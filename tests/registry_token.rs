//! placeholder until the bearer-token test lands
