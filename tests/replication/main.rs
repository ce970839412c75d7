//! Two real POP processes replicating over mTLS (rcgen certificates), bounded in time.
