//! Loop-owned groups of equal receive buffers ([`BufferGroup`]) for [`Op::RecvMulti`], and
//! the lease ([`GroupBuf`]) a receive hands to its callback.
//!
//! **Ownership.** A group's memory (its buffers, and on io_uring the provided-buffer ring
//! the kernel picks them from) is owned by one `Rc` shared by the loop, every operation
//! that names the group and every lease. A buffer is in exactly one place at a time: free
//! (in the kernel's ring, or in the group's free list on the poll backend), being filled
//! by one receive, or lent to one [`GroupBuf`]. The kernel only fills buffers that are in
//! its ring, so the bytes of a lease are never written while the lease exists; dropping
//! the lease puts the buffer back (a user-space store to the ring's tail on io_uring, no
//! syscall). The loop unregisters the ring when it is dropped, after every operation is
//! reaped; leases that outlive the loop keep the memory alive and free it with the last.
//!
//! [`Op::RecvMulti`]: crate::Op::RecvMulti

use std::alloc::Layout;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest buffer size of a group: a result packs the length in 16 bits.
pub const MAX_GROUP_BUFFER: u32 = 65535;
/// Most buffers in a group (the kernel's limit for one provided-buffer ring).
pub const MAX_GROUP_BUFFERS: u16 = 32768;

/// A new process-unique token naming one loop's driver (a group works only there).
pub(crate) fn next_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A group of `count` receive buffers of `size` bytes each, owned by the loop that
/// registered it ([`Loop::register_buffer_group`](crate::Loop::register_buffer_group)).
///
/// A [`Op::RecvMulti`](crate::Op::RecvMulti) receives into whichever buffer of the group is
/// free when data arrives, so sockets that wait cost no buffer. Cloning the handle is
/// cheap (a reference count); the group lives as long as its loop, its operations or its
/// leases.
///
/// ```
/// let mut lp = xev::Loop::new(Default::default())?;
/// let group = lp.register_buffer_group(8, 2048)?;
/// assert_eq!((group.count(), group.buffer_size(), group.available()), (8, 2048, 8));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct BufferGroup(pub(crate) Rc<Group>);

pub(crate) struct Group {
    /// The driver this group belongs to.
    pub(crate) owner: u64,
    /// The group id the kernel knows (io_uring).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) bgid: u16,
    count: u16,
    size: u32,
    mem: NonNull<u8>,
    mem_layout: Layout,
    /// Buffers out of the group (lent, or handed to a receive's result).
    out: Cell<u32>,
    /// The loop is gone (or the ring unregistered): returned buffers are only counted.
    dead: Cell<bool>,
    place: Place,
}

enum Place {
    /// Free buffers, for the poll backend's receives.
    Free(RefCell<Vec<u16>>),
    /// The provided-buffer ring io_uring picks from.
    #[cfg(target_os = "linux")]
    Ring(Ring),
}

#[cfg(target_os = "linux")]
pub(crate) struct Ring {
    base: NonNull<io_uring::types::BufRingEntry>,
    layout: Layout,
    tail: Cell<u16>,
    mask: u16,
}

/// Check a group's shape.
fn validate(count: u16, size: u32) -> io::Result<()> {
    if count == 0 || size == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a buffer group needs at least one buffer of at least one byte",
        ));
    }
    if !count.is_power_of_two() || count > MAX_GROUP_BUFFERS || size > MAX_GROUP_BUFFER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a buffer group holds a power of two of at most {MAX_GROUP_BUFFERS} buffers \
                 of at most {MAX_GROUP_BUFFER} bytes (asked: {count} x {size})"
            ),
        ));
    }
    Ok(())
}

impl Group {
    fn alloc_mem(count: u16, size: u32) -> io::Result<(NonNull<u8>, Layout)> {
        let bytes = count as usize * size as usize;
        let layout = Layout::from_size_align(bytes, 64)
            .map_err(|_| io::Error::from_raw_os_error(libc::ENOMEM))?;
        // Zeroed: the kernel's writes are invisible to memory checkers, which would
        // otherwise see reads of never-written bytes.
        // SAFETY: `layout` has a non-zero size (count, size >= 1).
        let mem = unsafe { std::alloc::alloc_zeroed(layout) };
        let mem = NonNull::new(mem).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok((mem, layout))
    }

    /// A group served from a free list (the poll backend).
    pub(crate) fn new_free(owner: u64, bgid: u16, count: u16, size: u32) -> io::Result<Group> {
        validate(count, size)?;
        let (mem, mem_layout) = Group::alloc_mem(count, size)?;
        Ok(Group {
            owner,
            bgid,
            count,
            size,
            mem,
            mem_layout,
            out: Cell::new(0),
            dead: Cell::new(false),
            place: Place::Free(RefCell::new((0..count).rev().collect())),
        })
    }

    /// A group served from a provided-buffer ring, every buffer in it. The caller
    /// registers [`ring_addr`](Self::ring_addr) with the kernel.
    #[cfg(target_os = "linux")]
    pub(crate) fn new_ring(owner: u64, bgid: u16, count: u16, size: u32) -> io::Result<Group> {
        use io_uring::types::BufRingEntry;
        validate(count, size)?;
        let (mem, mem_layout) = Group::alloc_mem(count, size)?;
        let layout = Layout::from_size_align(count as usize * size_of::<BufRingEntry>(), 4096)
            .map_err(|_| io::Error::from_raw_os_error(libc::ENOMEM))?;
        // SAFETY: non-zero size; zeroed memory is a valid array of entries (and tail 0).
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(base.cast::<BufRingEntry>()) else {
            // SAFETY: allocated above with this layout.
            unsafe { std::alloc::dealloc(mem.as_ptr(), mem_layout) };
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        };
        let g = Group {
            owner,
            bgid,
            count,
            size,
            mem,
            mem_layout,
            out: Cell::new(count as u32),
            dead: Cell::new(false),
            place: Place::Ring(Ring {
                base,
                layout,
                tail: Cell::new(0),
                mask: count - 1,
            }),
        };
        for bid in 0..count {
            g.give_back(bid);
        }
        Ok(g)
    }

    /// The ring's address, for `IORING_REGISTER_PBUF_RING`.
    #[cfg(target_os = "linux")]
    pub(crate) fn ring_addr(&self) -> Option<u64> {
        match &self.place {
            Place::Ring(r) => Some(r.base.as_ptr() as u64),
            Place::Free(_) => None,
        }
    }

    pub(crate) fn is_ring(&self) -> bool {
        !matches!(self.place, Place::Free(_))
    }

    /// The loop is done with the group: stop feeding the (unregistered) ring.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn set_dead(&self) {
        self.dead.set(true);
    }

    /// The address and length of buffer `bid`.
    #[inline]
    pub(crate) fn buffer(&self, bid: u16) -> (*mut u8, usize) {
        assert!(bid < self.count, "buffer id {bid} out of the group");
        // SAFETY: `bid < count`, so the offset stays inside the allocation.
        let p = unsafe { self.mem.as_ptr().add(bid as usize * self.size as usize) };
        (p, self.size as usize)
    }

    /// Take a free buffer (poll backend), or `None` when all are out.
    pub(crate) fn take(&self) -> Option<u16> {
        match &self.place {
            Place::Free(f) => {
                let bid = f.borrow_mut().pop()?;
                self.out.set(self.out.get() + 1);
                Some(bid)
            }
            #[cfg(target_os = "linux")]
            Place::Ring(_) => None,
        }
    }

    /// Put buffer `bid` back where receives find it.
    pub(crate) fn give_back(&self, bid: u16) {
        self.out.set(self.out.get().saturating_sub(1));
        if self.dead.get() {
            return;
        }
        match &self.place {
            Place::Free(f) => f.borrow_mut().push(bid),
            #[cfg(target_os = "linux")]
            Place::Ring(r) => {
                let (addr, len) = self.buffer(bid);
                let t = r.tail.get();
                // SAFETY: the ring holds `count` entries and `t & mask < count`; the
                // kernel reads only entries between its head and our published tail, and
                // this one is past the tail until the store below publishes it.
                unsafe {
                    let e = &mut *r.base.as_ptr().add((t & r.mask) as usize);
                    e.set_addr(addr as u64);
                    e.set_len(len as u32);
                    e.set_bid(bid);
                }
                let t = t.wrapping_add(1);
                r.tail.set(t);
                // SAFETY: the tail field lies inside the first entry of our live ring; the
                // kernel reads it concurrently, hence the atomic release store.
                unsafe {
                    let tail = io_uring::types::BufRingEntry::tail(r.base.as_ptr()) as *mut u16;
                    (*tail.cast::<std::sync::atomic::AtomicU16>()).store(t, Ordering::Release);
                }
            }
        }
    }

    /// A buffer picked for a result: now lent.
    pub(crate) fn picked(&self) {
        if self.is_ring() {
            // Ring buffers leave the group when the kernel picks them, seen here.
            self.out.set(self.out.get() + 1);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: allocated in the constructors with these layouts; the last owner is
        // going, so no lease, operation or kernel ring (unregistered by then) uses them.
        unsafe {
            std::alloc::dealloc(self.mem.as_ptr(), self.mem_layout);
            #[cfg(target_os = "linux")]
            if let Place::Ring(r) = &self.place {
                std::alloc::dealloc(r.base.as_ptr().cast(), r.layout);
            }
        }
    }
}

impl BufferGroup {
    /// How many buffers the group has.
    pub fn count(&self) -> u16 {
        self.0.count
    }

    /// The size of each buffer.
    pub fn buffer_size(&self) -> u32 {
        self.0.size
    }

    /// How many buffers are free now (not lent to a [`GroupBuf`]).
    pub fn available(&self) -> u16 {
        (self.0.count as u32).saturating_sub(self.0.out.get()) as u16
    }

    /// Whether `self` and `other` are the same group.
    pub fn same(&self, other: &BufferGroup) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for BufferGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferGroup")
            .field("count", &self.count())
            .field("buffer_size", &self.buffer_size())
            .field("available", &self.available())
            .finish()
    }
}

/// Encode a receive into buffer `bid` of `len` bytes as a completion result.
pub(crate) fn encode(bid: u16, len: usize) -> isize {
    ((bid as isize + 1) << 16) | (len.min(MAX_GROUP_BUFFER as usize) as isize)
}

/// Decode a non-negative result: the buffer (if the receive used one) and the length.
pub(crate) fn decode(res: isize) -> (Option<u16>, usize) {
    let bid = (res >> 16) as usize;
    let len = (res & 0xffff) as usize;
    (bid.checked_sub(1).map(|b| b as u16), len)
}

/// One buffer of a [`BufferGroup`] holding received bytes, lent to its holder: the bytes
/// are its own until it is dropped, which returns the buffer to the group (so the next
/// receive can use it). Holding leases keeps buffers out of the group: a group with none
/// free makes [`Op::RecvMulti`](crate::Op::RecvMulti) fail with `ENOBUFS`.
pub struct GroupBuf {
    group: Rc<Group>,
    /// The buffer's id (a `u16`, or `NO_BUFFER`) and the bytes in it, each a word of its
    /// own: as narrower fields the lease is stored in parts and read back as a word when
    /// the result is built, which stalls (no store-to-load forwarding) on every datagram.
    bid: usize,
    len: usize,
}

impl GroupBuf {
    /// The lease of buffer `bid`, filled with `len` bytes.
    pub(crate) fn new(group: &BufferGroup, bid: u16, len: usize) -> GroupBuf {
        group.0.picked();
        GroupBuf {
            group: group.0.clone(),
            bid: usize::from(bid),
            len: len.min(group.0.size as usize),
        }
    }

    /// An empty datagram that took no buffer (io_uring picks none for 0 bytes): no
    /// bytes, nothing to give back.
    pub(crate) fn empty(group: &BufferGroup) -> GroupBuf {
        GroupBuf {
            group: group.0.clone(),
            bid: usize::from(NO_BUFFER),
            len: 0,
        }
    }

    /// The buffer's id in its group (`u16::MAX` for an empty datagram that took none).
    #[inline]
    pub fn id(&self) -> u16 {
        self.bid as u16
    }

    /// The received bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        if self.bid == usize::from(NO_BUFFER) {
            return &[];
        }
        let (p, _) = self.group.buffer(self.bid as u16);
        // SAFETY: the buffer is lent to us alone: no receive or kernel ring holds it
        // until we give it back, and the group's memory lives as long as our `Rc`.
        unsafe { std::slice::from_raw_parts(p, self.len) }
    }

    /// The received bytes, mutably.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.bid == usize::from(NO_BUFFER) {
            return &mut [];
        }
        let (p, _) = self.group.buffer(self.bid as u16);
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(p, self.len) }
    }

    /// Keep only the bytes `from..` (`from` past the end keeps none): for a consumer
    /// that used a prefix and keeps the rest for later.
    pub fn advance(&mut self, from: usize) {
        let from = from.min(self.len);
        if from == 0 {
            return;
        }
        let (p, _) = self.group.buffer(self.bid as u16);
        // SAFETY: both ranges lie in our lent buffer; `copy` handles the overlap.
        unsafe { std::ptr::copy(p.add(from), p, self.len - from) };
        self.len -= from;
    }
}

impl Deref for GroupBuf {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl DerefMut for GroupBuf {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl Drop for GroupBuf {
    #[inline]
    fn drop(&mut self) {
        if self.bid != usize::from(NO_BUFFER) {
            self.group.give_back(self.bid as u16);
        }
    }
}

/// The id of [`GroupBuf::empty`]'s lease: no group has that many buffers (at most 32,768).
const NO_BUFFER: u16 = u16::MAX;

impl fmt::Debug for GroupBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupBuf")
            .field("id", &self.bid)
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        assert_eq!(decode(0), (None, 0));
        for (bid, len) in [(0u16, 0usize), (0, 1), (32767, 65535), (5, 1500)] {
            assert_eq!(decode(encode(bid, len)), (Some(bid), len));
        }
    }

    #[test]
    fn shapes_are_checked() {
        for (c, s) in [(0, 1), (1, 0), (3, 16), (4, 65536)] {
            let e = Group::new_free(1, 0, c, s).err().expect("refused");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
    }
}
