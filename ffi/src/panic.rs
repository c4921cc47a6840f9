//! The kernel build's panic handler. The core is written not to panic;
//! if it does anyway (a bug), the message goes to the shim's `panic`,
//! which does not return. Nothing unwinds.

use crate::ops::ops;
use crate::os::Line;
use core::fmt::Write;
use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if let Some(o) = ops() {
        let mut line = Line::default();
        let _ = write!(line, "ptnet_rs: {info}");
        let text = line.as_bytes();
        // SAFETY: `text` is valid for its length during the call.
        unsafe { (o.panic)(text.as_ptr(), text.len()) };
    }
    loop {
        core::hint::spin_loop();
    }
}
