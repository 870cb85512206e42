//! Which guests a frame received on one uplink rx queue may be flooded to (VMDq pools copy
//! broadcasts into every pool; see `control::vmdq`).

/// The flood scope of one uplink rx queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxScope {
    /// Any guest (a port without pools).
    All,
    /// The one guest whose pool this queue serves (a guest id).
    Guest(usize),
    /// The guests that have no pool (the default pool's queue).
    Unpooled,
}
