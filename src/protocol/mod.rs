//! Pure protocol decoding that both sides need: the live gateways (`ssh/`,
//! `rdp/`) to relay and record, the offline replay (`replay/`) to turn an
//! archive into something a person watches or reads. No I/O, no archive, no
//! policy: bytes of the wire in, facts about them out.

pub mod rdp;
