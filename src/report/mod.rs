//! Reports computed from what sekisho recorded: the work report draft of a
//! work request (`work`). Offline code, like `replay/`: the gateways never
//! import it.

pub mod work;

pub use work::{ReportError, WorkReport};
