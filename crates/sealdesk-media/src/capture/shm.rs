//! A MIT-SHM segment backed by a memfd that this process maps read-only and the X server maps
//! read-write (`ShmAttachFd`, MIT-SHM 1.2: no SysV shared memory, no `/dev/shm` permissions).

use std::fs::File;
use std::os::fd::OwnedFd;

use memmap2::{Mmap, MmapOptions};
use rustix::fs::{fcntl_add_seals, ftruncate, memfd_create, MemfdFlags, SealFlags};
use x11rb::connection::Connection;
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;

use super::CaptureError;

/// The segment: its X id and our read-only view of it.
pub(super) struct ShmSegment {
    seg: shm::Seg,
    map: Mmap,
}

impl ShmSegment {
    /// Create a `len`-byte memfd, map it, and attach it to the X server.
    pub(super) fn new(conn: &RustConnection, len: usize) -> Result<Self, CaptureError> {
        let len = len.max(4);
        let fd = memfd_create(
            "sealdesk-capture",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .map_err(|e| CaptureError::SharedMemory(e.into()))?;
        let size = u64::try_from(len).map_err(|_| CaptureError::SharedMemory(too_big()))?;
        ftruncate(&fd, size).map_err(|e| CaptureError::SharedMemory(e.into()))?;
        // Nobody can shrink the file under the mapping (which would turn reads into SIGBUS),
        // and the seals themselves are final.
        fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
            .map_err(|e| CaptureError::SharedMemory(e.into()))?;
        let file = File::from(fd);

        #[allow(
            unsafe_code,
            reason = "mapping the capture memfd is the one unsafe operation this crate needs"
        )]
        // SAFETY: `memmap2` requires that the mapped file is not truncated or modified in ways
        // that break Rust's aliasing rules while the map is borrowed.
        // * Truncation: the memfd is private to this process and the X server, and sealed
        //   against shrinking and growing above, so the `len` bytes stay backed.
        // * Modification: the only writer is the X server, and it writes only while executing a
        //   `ShmGetImage` that this crate sent. `Capturer::grab` waits for that request's reply
        //   before it creates a `&[u8]` over the map, and the returned `Frame` borrows the
        //   `Capturer` mutably, so no further `ShmGetImage` can be sent while the slice lives.
        //   (X11 has no per-client resource isolation: another client on the same display could
        //   name this segment's XID in its own `ShmGetImage`. Such a client can already read the
        //   screen and inject input; the worst it can do here is change pixel bytes under a
        //   live frame — any byte value is a valid `u8`.)
        let map = unsafe { MmapOptions::new().len(len).map(&file) }
            .map_err(CaptureError::SharedMemory)?;

        let seg = conn.generate_id()?;
        let server_fd: OwnedFd = file.into();
        // read_only = false: the server must write the image into the segment.
        conn.shm_attach_fd(seg, server_fd, false)?.check()?;
        Ok(Self { seg, map })
    }

    /// The segment's X id.
    pub(super) fn seg(&self) -> shm::Seg {
        self.seg
    }

    /// Capacity in bytes.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// The first `len` bytes, or `None` if the segment is smaller.
    pub(super) fn bytes(&self, len: usize) -> Option<&[u8]> {
        self.map.get(..len)
    }

    /// Tell the server to drop the segment (the mapping goes with `self`).
    pub(super) fn detach(self, conn: &RustConnection) -> Result<(), CaptureError> {
        conn.shm_detach(self.seg)?;
        Ok(())
    }
}

fn too_big() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "capture segment size does not fit in u64",
    )
}
