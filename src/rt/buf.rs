//! Owned buffers for async operations: [`IoBuf`] (bytes to write) and [`IoBufMut`]
//! (room to read into), and [`Slice`] / [`SliceMut`] to use part of one.
//!
//! An async read or write takes its buffer by value and hands it back with the result,
//! `(io::Result<usize>, B)`, because the kernel may still be using the memory after the
//! future is dropped; the buffer then stays with the runtime until the operation ends.
//! Both traits are sealed: the conversions they hide are what make this sound (a
//! `&'static [u8]` may only ever be written *from*).
//!
//! Which bytes of a `Vec` a read fills (its length or its capacity) is in [`IoBufMut`].

use std::ops::{Bound, RangeBounds};

use crate::op::Buffer;

#[cfg(feature = "bytes")]
mod bytes;
mod slice;

pub use slice::{Slice, SliceMut};

mod sealed {
    use crate::op::Buffer;

    /// Proof of being inside xev: users cannot build one, so they cannot call the
    /// conversions below.
    pub struct Token(pub(crate) ());

    pub trait Sealed: Sized {
        /// What `from_buffer` needs besides the buffer (a slice's range, ...).
        type Saved;
        /// The buffer as loop memory that operations will only read.
        fn into_buffer(self, _: Token) -> (Buffer, Self::Saved);
        /// Back from the loop (the same memory, whole again).
        fn from_buffer(b: Buffer, saved: Self::Saved, _: Token) -> Self;
        /// The bytes a write would send.
        fn bytes(&self, _: Token) -> &[u8];
    }

    pub trait SealedMut: Sized {
        /// What `from_read_buffer` needs besides the buffer.
        type ReadSaved;
        /// How many bytes from the start one read may fill (a `Vec`'s capacity).
        fn read_room(&self, _: Token) -> usize;
        /// The buffer as loop memory to read into: at least its first `room` bytes
        /// (`room <= read_room()`), all initialised.
        fn into_read_buffer(self, room: usize, _: Token) -> (Buffer, Self::ReadSaved);
        /// The buffer as loop memory that `read_exact` fills completely: its length,
        /// never a `Vec`'s spare capacity.
        fn into_exact_buffer(self, t: Token) -> (Buffer, Self::ReadSaved) {
            let room = self.read_room(Token(()));
            self.into_read_buffer(room, t)
        }
        /// Capacity past the length that only single reads use (a `Vec`'s).
        fn spare_capacity(&self, _: Token) -> usize {
            0
        }
        /// The memory one read may fill in place, without a conversion: `(start, room)`,
        /// `room` being [`read_room`](Self::read_room) writable bytes (a `Vec`'s spare
        /// capacity among them, uninitialised: only a receive may write there, followed
        /// by [`area_filled`](Self::area_filled)). `None`: the type has no such access;
        /// convert it with `into_read_buffer`.
        fn read_area(&mut self, _: Token) -> Option<(*mut u8, usize)> {
            None
        }
        /// After a receive wrote `filled` bytes at the start of `read_area`'s memory:
        /// they are the buffer's now (a `Vec`'s length grows to cover them).
        ///
        /// # Safety
        /// `filled <= room`, and those bytes were written.
        unsafe fn area_filled(&mut self, _filled: usize, _: Token) {}
        /// Back from the loop after bytes were read into its start, up to `filled`.
        fn from_read_buffer(b: Buffer, saved: Self::ReadSaved, filled: usize, _: Token) -> Self;
        /// The initialised bytes.
        fn init_bytes(&self, _: Token) -> &[u8];
        /// The initialised bytes, mutably.
        fn init_bytes_mut(&mut self, _: Token) -> &mut [u8];
    }
}

pub(crate) use sealed::Token;

/// A buffer an async write can take by value and hand back: `Vec<u8>`, `Box<[u8]>`,
/// `String`, `&'static [u8]`, `&'static str`, [`Buffer`], a [`Slice`] of any of them,
/// and, with the `bytes` feature, `bytes::Bytes` and `bytes::BytesMut`.
///
/// Its bytes are written from the start; after a partial write the caller gets the
/// whole buffer back and decides what to do (`write_all` continues for you). To write
/// part of a buffer without copying it, write a [`slice`](Self::slice) of it.
pub trait IoBuf: sealed::Sealed + 'static {
    /// The bytes `range` of this buffer as a buffer of its own: a write of the slice
    /// writes exactly those bytes, and [`Slice::into_inner`] gives the whole buffer
    /// back. The range is against the bytes a write would send (a `Vec`'s length, not
    /// its capacity). No copy, no allocation.
    ///
    /// ```
    /// use xev::net::{TcpListener, TcpStream};
    /// use xev::rt::IoBuf;
    ///
    /// xev::block_on(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0")?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (server, _) = listener.accept().await?;
    ///
    ///     let msg = b"hello, world".to_vec();
    ///     let (res, slice) = client.write_all(msg.slice(7..)).await;
    ///     res?;
    ///     assert_eq!(&slice[..], b"world");
    ///     let msg = slice.into_inner(); // the whole Vec again
    ///     assert_eq!(msg.len(), 12);
    ///
    ///     let (res, got) = server.read_exact(vec![0u8; 5]).await;
    ///     res?;
    ///     assert_eq!(got, b"world");
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Panics
    /// Like slice indexing: if the range starts after it ends or ends past the buffer's
    /// bytes (`range.end > len`).
    fn slice(self, range: impl RangeBounds<usize>) -> Slice<Self> {
        let len = sealed::Sealed::bytes(&self, Token(())).len();
        let (begin, end) = bounds(&range, len);
        Slice::new(self, begin, end)
    }
}

/// A buffer an async read can fill and hand back: `Vec<u8>`, `Box<[u8]>`, [`Buffer`], a
/// [`SliceMut`] of any of them, and, with the `bytes` feature, `bytes::BytesMut`.
///
/// How much of it a read may fill depends on the kind of read:
///
/// | | `Vec<u8>`, `BytesMut` | `Box<[u8]>`, `Buffer` | [`SliceMut`] |
/// |---|---|---|---|
/// | one read (`read`, `read_at`, `recv_from`, each buffer of `read_vectored`) | from the start up to its **capacity**: `Ok(n)`, and `&buf[..n]` is what arrived | its whole length | its range |
/// | `read_exact`, `read_exact_at` | exactly its **length** (like `std` and tokio), never its spare capacity | its whole length | its range |
///
/// # `Vec::with_capacity(n)` or `vec![0; n]`?
///
/// After a single read into a `Vec`, its length is the larger of its old length and the
/// bytes read, so for one read both `vec![0; 4096]` (the length stays 4096: look at
/// `&buf[..n]`) and `Vec::with_capacity(4096)` (the length becomes `n`) work. A single
/// read into zero bytes of room is an `InvalidInput` error (an `Ok(0)` would look like
/// end of file).
///
/// `read_exact` never changes a `Vec`'s length: a reused `Vec` truncated (or resized) to
/// the size of the next message reads exactly that message, and the bytes after it stay
/// for the next read. **A `Vec` of length 0 with spare capacity (`Vec::with_capacity(n)`)
/// is an `InvalidInput` error for `read_exact`** (its length, 0, is what it would fill);
/// size it first with `vec![0; n]` or `resize`.
///
/// | buffer | one read | `read_exact` |
/// |---|---|---|
/// | `vec![0; 4096]` (length 4096) | up to 4096 bytes; the length stays 4096: use `&buf[..n]` | exactly 4096 bytes |
/// | `Vec::with_capacity(4096)` (length 0) | up to 4096 bytes (the **capacity**); the length becomes `n` | **`InvalidInput`** |
///
/// ```
/// use std::io::ErrorKind;
/// use xev::net::{TcpListener, TcpStream};
///
/// xev::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0")?;
///     let client = TcpStream::connect(listener.local_addr()?).await?;
///     let (server, _) = listener.accept().await?;
///
///     client.write_all(b"hello".to_vec()).await.0?;
///     // One read into capacity: the length becomes what arrived.
///     let (n, buf) = server.read(Vec::with_capacity(64)).await;
///     assert_eq!((n?, buf.len(), &buf[..]), (5, 5, &b"hello"[..]));
///
///     client.write_all(b"world".to_vec()).await.0?;
///     // One read into length: the length stays; the bytes are `&buf[..n]`.
///     let (n, buf) = server.read(vec![0u8; 64]).await;
///     let n = n?;
///     assert_eq!((n, buf.len(), &buf[..n]), (5, 64, &b"world"[..]));
///
///     // read_exact fills the length, so an empty Vec is refused, not read into.
///     let (res, _) = server.read_exact(Vec::with_capacity(8)).await;
///     assert_eq!(res.unwrap_err().kind(), ErrorKind::InvalidInput);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// A reused buffer:
///
/// ```
/// use xev::net::{TcpListener, TcpStream};
///
/// xev::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0")?;
///     let client = TcpStream::connect(listener.local_addr()?).await?;
///     let (server, _) = listener.accept().await?;
///     client.write_all(b"abcd, then more".to_vec()).await.0?;
///
///     // A buffer reused from a longer message: length 4, capacity 64.
///     let mut buf = vec![0u8; 64];
///     buf.truncate(4);
///     let (res, buf) = server.read_exact(buf).await;
///     res?;
///     assert_eq!(buf, b"abcd"); // its length, not its capacity
///
///     // One read fills up to the capacity; the length grows to what arrived.
///     let (n, buf) = server.read(buf).await;
///     assert_eq!(&buf[..n?], b", then more");
///
///     // read_exact into a Vec with no length is refused rather than reading nothing.
///     let (res, _) = server.read_exact(Vec::with_capacity(8)).await;
///     assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// A single read that an operation carries (io_uring, files, pipes) zero-fills the room
/// past a `Vec`'s length first (the operation's buffer is initialised memory), so in a
/// hot loop reuse a buffer whose length is already its capacity (`vec![0; n]`, a
/// `Box<[u8]>`) and slice `&buf[..n]`. On the poll backend a socket read goes straight
/// into the `Vec`'s capacity, without that fill; either way the `Vec`'s length only ever
/// covers initialised bytes.
pub trait IoBufMut: sealed::SealedMut + 'static {
    /// The bytes `range` of this buffer as room for a read of its own: a read into the
    /// slice fills it from `range.start` on (at most up to `range.end`), leaves the
    /// bytes outside the range untouched, and [`SliceMut::into_inner`] gives the whole
    /// buffer back.
    ///
    /// For a `Vec<u8>` (or `BytesMut`) the range is against its **capacity**, as for a
    /// plain read: after a read of `n > 0` bytes its length is the larger of its old
    /// length and `range.start + n` (bytes between the old length and `range.start`
    /// are zeros). So `buf.slice_mut(buf.len()..)` *appends* what arrives.
    ///
    /// ```
    /// use xev::net::{TcpListener, TcpStream};
    /// use xev::rt::IoBufMut;
    ///
    /// xev::block_on(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0")?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (server, _) = listener.accept().await?;
    ///     client.write_all(b"body".to_vec()).await.0?;
    ///
    ///     // Keep a 4-byte header, read the rest after it.
    ///     let mut buf = Vec::with_capacity(64);
    ///     buf.extend_from_slice(b"HDR:");
    ///     let (n, slice) = server.read(buf.slice_mut(4..)).await;
    ///     assert_eq!(n?, 4);
    ///     assert_eq!(&slice[..4], b"body"); // the slice derefs to its initialised range
    ///     let buf = slice.into_inner();
    ///     assert_eq!(buf, b"HDR:body");
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Panics
    /// If the range starts after it ends or ends past the room a read may fill (a
    /// `Vec`'s capacity, another buffer's length).
    fn slice_mut(self, range: impl RangeBounds<usize>) -> SliceMut<Self> {
        let room = sealed::SealedMut::read_room(&self, Token(()));
        let (begin, end) = bounds(&range, room);
        SliceMut::new(self, begin, end)
    }
}

/// `range` resolved against `len`, panicking like slice indexing.
fn bounds(range: &impl RangeBounds<usize>, len: usize) -> (usize, usize) {
    let begin = match range.start_bound() {
        Bound::Included(&b) => b,
        Bound::Excluded(&b) => b.checked_add(1).expect("range start overflows usize"),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1).expect("range end overflows usize"),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => len,
    };
    assert!(
        begin <= len,
        "range start index {begin} out of range for a buffer of {len} bytes"
    );
    assert!(
        begin <= end,
        "slice index starts at {begin} but ends at {end}"
    );
    assert!(
        end <= len,
        "range end index {end} out of range for a buffer of {len} bytes"
    );
    (begin, end)
}

impl sealed::Sealed for Vec<u8> {
    type Saved = ();
    fn into_buffer(self, _: Token) -> (Buffer, ()) {
        (Buffer::from(self), ())
    }
    fn from_buffer(b: Buffer, _: (), _: Token) -> Self {
        b.into_vec().expect("a Vec<u8> comes back as a Vec buffer")
    }
    fn bytes(&self, _: Token) -> &[u8] {
        self
    }
}
impl IoBuf for Vec<u8> {}

impl sealed::SealedMut for Vec<u8> {
    /// The length before the read.
    type ReadSaved = usize;
    fn read_room(&self, _: Token) -> usize {
        self.capacity()
    }
    fn into_read_buffer(mut self, room: usize, _: Token) -> (Buffer, usize) {
        let init = self.len();
        if room > init {
            // Within the capacity: no reallocation.
            self.resize(room, 0);
        }
        (Buffer::from(self), init)
    }
    fn into_exact_buffer(self, _: Token) -> (Buffer, usize) {
        let len = self.len();
        (Buffer::from(self), len)
    }
    fn spare_capacity(&self, _: Token) -> usize {
        self.capacity() - self.len()
    }
    fn read_area(&mut self, _: Token) -> Option<(*mut u8, usize)> {
        Some((self.as_mut_ptr(), self.capacity()))
    }
    unsafe fn area_filled(&mut self, filled: usize, _: Token) {
        if filled > self.len() {
            // SAFETY: `filled <= capacity`, and the bytes up to it are initialised: the
            // first `len` were, the receive wrote the rest (the caller's contract).
            unsafe { self.set_len(filled) };
        }
    }
    fn from_read_buffer(b: Buffer, init: usize, filled: usize, _: Token) -> Self {
        let mut v = b.into_vec().expect("a Vec<u8> comes back as a Vec buffer");
        v.truncate(init.max(filled));
        v
    }
    fn init_bytes(&self, _: Token) -> &[u8] {
        self
    }
    fn init_bytes_mut(&mut self, _: Token) -> &mut [u8] {
        self
    }
}
impl IoBufMut for Vec<u8> {}

impl sealed::Sealed for Box<[u8]> {
    type Saved = ();
    fn into_buffer(self, _: Token) -> (Buffer, ()) {
        (Buffer::from(self), ())
    }
    fn from_buffer(b: Buffer, _: (), t: Token) -> Self {
        // A Vec made from a boxed slice has length == capacity: no reallocation here.
        Vec::from_buffer(b, (), t).into_boxed_slice()
    }
    fn bytes(&self, _: Token) -> &[u8] {
        self
    }
}
impl IoBuf for Box<[u8]> {}

impl sealed::SealedMut for Box<[u8]> {
    type ReadSaved = ();
    fn read_room(&self, _: Token) -> usize {
        self.len()
    }
    fn read_area(&mut self, _: Token) -> Option<(*mut u8, usize)> {
        Some((self.as_mut_ptr(), self.len()))
    }
    fn into_read_buffer(self, _: usize, _: Token) -> (Buffer, ()) {
        (Buffer::from(self), ())
    }
    fn from_read_buffer(b: Buffer, _: (), _: usize, t: Token) -> Self {
        <Box<[u8]> as sealed::Sealed>::from_buffer(b, (), t)
    }
    fn init_bytes(&self, _: Token) -> &[u8] {
        self
    }
    fn init_bytes_mut(&mut self, _: Token) -> &mut [u8] {
        self
    }
}
impl IoBufMut for Box<[u8]> {}

impl sealed::Sealed for String {
    type Saved = ();
    fn into_buffer(self, _: Token) -> (Buffer, ()) {
        (Buffer::from(self.into_bytes()), ())
    }
    fn from_buffer(b: Buffer, _: (), t: Token) -> Self {
        let v = Vec::from_buffer(b, (), t);
        // SAFETY: the bytes came from a String and were only ever written *from* (a
        // String is an IoBuf, never an IoBufMut, and a slice of it only an IoBuf), so
        // they are still UTF-8.
        unsafe { String::from_utf8_unchecked(v) }
    }
    fn bytes(&self, _: Token) -> &[u8] {
        self.as_bytes()
    }
}
impl IoBuf for String {}

impl sealed::Sealed for &'static [u8] {
    type Saved = ();
    fn into_buffer(self, _: Token) -> (Buffer, ()) {
        // SAFETY: static memory outlives any operation; it is only ever read: an
        // `IoBuf` goes into write operations only, and the `Buffer` never reaches users.
        (
            unsafe { Buffer::from_raw(self.as_ptr().cast_mut(), self.len()) },
            (),
        )
    }
    fn from_buffer(b: Buffer, _: (), _: Token) -> Self {
        let (ptr, len) = b
            .raw_parts()
            .expect("a static slice comes back as a raw buffer");
        // SAFETY: exactly the static slice `into_buffer` wrapped.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
    fn bytes(&self, _: Token) -> &[u8] {
        self
    }
}
impl IoBuf for &'static [u8] {}

impl sealed::Sealed for &'static str {
    type Saved = ();
    fn into_buffer(self, t: Token) -> (Buffer, ()) {
        self.as_bytes().into_buffer(t)
    }
    fn from_buffer(b: Buffer, _: (), t: Token) -> Self {
        let bytes = <&'static [u8]>::from_buffer(b, (), t);
        // SAFETY: the bytes of a `&'static str`, never written to.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }
    fn bytes(&self, _: Token) -> &[u8] {
        self.as_bytes()
    }
}
impl IoBuf for &'static str {}

impl sealed::Sealed for Buffer {
    type Saved = ();
    fn into_buffer(self, _: Token) -> (Buffer, ()) {
        (self, ())
    }
    fn from_buffer(b: Buffer, _: (), _: Token) -> Self {
        b
    }
    fn bytes(&self, _: Token) -> &[u8] {
        self.as_slice()
    }
}
impl IoBuf for Buffer {}

impl sealed::SealedMut for Buffer {
    type ReadSaved = ();
    fn read_room(&self, _: Token) -> usize {
        self.len()
    }
    fn read_area(&mut self, _: Token) -> Option<(*mut u8, usize)> {
        let s = self.as_mut_slice();
        Some((s.as_mut_ptr(), s.len()))
    }
    fn into_read_buffer(self, _: usize, _: Token) -> (Buffer, ()) {
        (self, ())
    }
    fn from_read_buffer(b: Buffer, _: (), _: usize, _: Token) -> Self {
        b
    }
    fn init_bytes(&self, _: Token) -> &[u8] {
        self.as_slice()
    }
    fn init_bytes_mut(&mut self, _: Token) -> &mut [u8] {
        self.as_mut_slice()
    }
}
impl IoBufMut for Buffer {}

/// What a write hands back to rebuild `B` from its loop buffer.
pub(crate) type Saved<B> = <B as sealed::Sealed>::Saved;
/// What a read hands back to rebuild `B` from its loop buffer.
pub(crate) type ReadSaved<B> = <B as sealed::SealedMut>::ReadSaved;

/// Crate-side access to the sealed conversions.
pub(crate) fn into_buffer<B: IoBuf>(b: B) -> (Buffer, Saved<B>) {
    b.into_buffer(Token(()))
}

pub(crate) fn from_buffer<B: IoBuf>(b: Buffer, saved: Saved<B>) -> B {
    B::from_buffer(b, saved, Token(()))
}

/// For a single read: all the room one read may fill (a `Vec`'s capacity).
pub(crate) fn into_read_buffer<B: IoBufMut>(b: B) -> (Buffer, ReadSaved<B>) {
    let room = b.read_room(Token(()));
    b.into_read_buffer(room, Token(()))
}

pub(crate) fn from_read_buffer<B: IoBufMut>(b: Buffer, saved: ReadSaved<B>, filled: usize) -> B {
    B::from_read_buffer(b, saved, filled, Token(()))
}

/// For `read_exact`: exactly the buffer's length (hand it back with `from_read_buffer`).
pub(crate) fn into_exact_buffer<B: IoBufMut>(b: B) -> (Buffer, ReadSaved<B>) {
    b.into_exact_buffer(Token(()))
}

/// Capacity past the buffer's length (a `Vec`'s), which `read_exact` does not fill.
pub(crate) fn spare_capacity<B: IoBufMut>(b: &B) -> usize {
    b.spare_capacity(Token(()))
}

/// The error of `read_exact` into a `Vec` of length 0 with `spare` bytes of capacity.
pub(crate) fn exact_into_capacity(spare: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "read_exact fills the buffer's length, not its capacity: this Vec has length 0 \
             (capacity {spare}); size it first, e.g. vec![0; n] or resize"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_reads_into_its_capacity_and_keeps_its_length() {
        let (mut b, init) = into_read_buffer(Vec::with_capacity(8));
        assert_eq!((b.len(), init), (8, 0));
        b.as_mut_slice()[..3].copy_from_slice(b"abc");
        let v: Vec<u8> = from_read_buffer(b, init, 3);
        assert_eq!(v, b"abc");

        let (b, init) = into_read_buffer(vec![7u8; 5]);
        let v: Vec<u8> = from_read_buffer(b, init, 2);
        assert_eq!(v.len(), 5, "a longer initialised Vec keeps its length");
    }

    /// The direct path's in-place access: what a receive writes at `read_area` becomes
    /// the buffer's after `area_filled`; a `Vec`'s length grows to cover it, never shrinks.
    #[test]
    fn read_area_then_area_filled() {
        fn receive<B: IoBufMut>(b: &mut B, data: &[u8]) -> usize {
            let (ptr, room) = b.read_area(Token(())).expect("in-place access");
            let n = data.len().min(room);
            // SAFETY: `ptr..ptr + room` is writable; `n <= room`.
            unsafe {
                std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, n);
                b.area_filled(n, Token(()));
            }
            n
        }
        let mut v = Vec::with_capacity(8);
        assert_eq!(receive(&mut v, b"abc"), 3);
        assert_eq!((&v[..], v.capacity()), (&b"abc"[..], 8));
        let mut v = vec![7u8; 5];
        assert_eq!(receive(&mut v, b"xy"), 2);
        assert_eq!(v, [b'x', b'y', 7, 7, 7], "a longer Vec keeps its length");
        let mut v = Vec::with_capacity(4);
        assert_eq!(receive(&mut v, b"too long"), 4, "at most the capacity");
        assert_eq!(v, b"too ");
        let mut bx: Box<[u8]> = vec![0u8; 4].into_boxed_slice();
        receive(&mut bx, b"box");
        assert_eq!(&bx[..], b"box\0");
        let mut b = Buffer::from(vec![0u8; 4]);
        receive(&mut b, b"buf!");
        assert_eq!(b.as_slice(), b"buf!");
        let mut inline = Buffer::copy_from(b"....");
        receive(&mut inline, b"in");
        assert_eq!(inline.as_slice(), b"in..");
        let mut s = vec![0u8; 4].slice_mut(1..);
        assert!(
            sealed::SealedMut::read_area(&mut s, Token(())).is_none(),
            "slices convert instead"
        );
    }

    #[test]
    fn exact_reads_use_the_length_of_a_vec() {
        let mut v = vec![1u8; 64];
        v.truncate(4);
        assert_eq!(spare_capacity(&v), 60);
        let (mut b, init) = into_exact_buffer(v);
        assert_eq!((b.len(), init), (4, 4));
        b.as_mut_slice().copy_from_slice(b"abcd");
        let v: Vec<u8> = from_read_buffer(b, init, 4);
        assert_eq!((&v[..], v.capacity()), (&b"abcd"[..], 64));
        let bx = Box::<[u8]>::from(vec![0u8; 3]);
        assert_eq!(spare_capacity(&bx), 0);
        assert_eq!(into_exact_buffer(bx).0.len(), 3);
    }

    #[test]
    fn write_buffers_round_trip() {
        let (b, s) = into_buffer(String::from("héllo"));
        let st: String = from_buffer(b, s);
        assert_eq!(st, "héllo");
        let st: &'static [u8] = from_buffer(
            {
                let mut b = into_buffer(&b"static"[..]).0;
                b.advance(3);
                b
            },
            (),
        );
        assert_eq!(st, b"static");
        let (b, s) = into_buffer(Box::<[u8]>::from(&b"box"[..]));
        let bx: Box<[u8]> = from_buffer(b, s);
        assert_eq!(&*bx, b"box");
    }

    #[test]
    fn bounds_resolve_like_slice_indexing() {
        assert_eq!(bounds(&.., 5), (0, 5));
        assert_eq!(bounds(&(1..3), 5), (1, 3));
        assert_eq!(bounds(&(1..=3), 5), (1, 4));
        assert_eq!(bounds(&(..=4), 5), (0, 5));
        assert_eq!(bounds(&(5..), 5), (5, 5));
        let excl = (Bound::Excluded(1), Bound::Unbounded);
        assert_eq!(bounds(&excl, 5), (2, 5));
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn bounds_past_the_end_panic() {
        bounds(&(0..6), 5);
    }

    #[test]
    #[should_panic(expected = "starts at 3 but ends at 2")]
    fn bounds_backwards_panic() {
        #[allow(clippy::reversed_empty_ranges)]
        bounds(&(3..2), 5);
    }

    #[test]
    #[should_panic(expected = "overflows")]
    fn bounds_inclusive_max_panics() {
        bounds(&(0..=usize::MAX), 5);
    }
}
