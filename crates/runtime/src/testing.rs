//! Test support shared by the lab tests of several crates (feature `test-util`).

use std::os::fd::AsRawFd as _;

/// F_GETPIPE_SZ of a new pipe: the size the calling process gets now, `PIPE_DEF_BUFFERS`
/// pages unless a tunable changes it.
pub fn new_pipe_size() -> std::io::Result<i64> {
    let (reader, _writer) = std::io::pipe()?;
    // SAFETY: fcntl on a descriptor we own, with an operation that takes no argument.
    let size = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if size < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(i64::from(size))
}
