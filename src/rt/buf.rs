//! Owned buffers for async operations: [`IoBuf`] (bytes to write) and [`IoBufMut`]
//! (room to read into).
//!
//! An async read or write takes its buffer by value and hands it back with the result,
//! `(io::Result<usize>, B)`, because the kernel may still be using the memory after the
//! future is dropped; the buffer then stays with the runtime until the operation ends.
//! Both traits are sealed: the conversions they hide are what make this sound (a
//! `&'static [u8]` may only ever be written *from*).

use crate::op::Buffer;

mod sealed {
    use crate::op::Buffer;

    /// Proof of being inside xev: users cannot build one, so they cannot call the
    /// conversions below.
    pub struct Token(pub(crate) ());

    pub trait Sealed: Sized {
        /// The buffer as loop memory that operations will only read.
        fn into_buffer(self, _: Token) -> Buffer;
        /// Back from the loop (the same memory, whole again).
        fn from_buffer(b: Buffer, _: Token) -> Self;
    }

    pub trait SealedMut: Sized {
        /// The buffer as loop memory to read into, plus what `from_read_buffer` needs.
        fn into_read_buffer(self, _: Token) -> (Buffer, usize);
        /// The buffer as loop memory that `read_exact` fills completely: its length,
        /// never a `Vec`'s spare capacity.
        fn into_exact_buffer(self, t: Token) -> (Buffer, usize) {
            self.into_read_buffer(t)
        }
        /// Capacity past the length that only single reads use (a `Vec`'s).
        fn spare_capacity(&self, _: Token) -> usize {
            0
        }
        /// Back from the loop after `filled` bytes were read into its start.
        fn from_read_buffer(b: Buffer, prep: usize, filled: usize, _: Token) -> Self;
    }
}

pub(crate) use sealed::Token;

/// A buffer an async write can take by value and hand back: `Vec<u8>`, `Box<[u8]>`,
/// `String`, `&'static [u8]`, `&'static str`, and [`Buffer`].
///
/// Its bytes are written from the start; after a partial write the caller gets the
/// whole buffer back and decides what to do (`write_all` continues for you).
pub trait IoBuf: sealed::Sealed + 'static {}

/// A buffer an async read can fill and hand back: `Vec<u8>`, `Box<[u8]>` and
/// [`Buffer`].
///
/// How much of it a read may fill depends on the kind of read:
///
/// | | `Vec<u8>` | `Box<[u8]>`, `Buffer` |
/// |---|---|---|
/// | one read (`read`, `read_at`, `recv_from`) | from the start up to its **capacity**: `Ok(n)`, and `&buf[..n]` is what arrived | its whole length |
/// | `read_exact`, `read_exact_at` | exactly its **length** (like `std` and tokio), never its spare capacity | its whole length |
///
/// After a single read into a `Vec`, its length is the larger of its old length and the
/// bytes read, so both `vec![0; 4096]` and `Vec::with_capacity(4096)` work. A single
/// read into zero bytes of room is an `InvalidInput` error (an `Ok(0)` would look like
/// end of file).
///
/// `read_exact` never changes a `Vec`'s length: a reused `Vec` truncated (or resized) to
/// the size of the next message reads exactly that message, and the bytes after it stay
/// for the next read. A `Vec` of length 0 with spare capacity (`Vec::with_capacity(n)`)
/// is an `InvalidInput` error for `read_exact` (its length, 0, is what it would fill);
/// size it first with `vec![0; n]` or `resize`.
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
/// The room past a `Vec`'s length is zero-filled before each single read (the kernel's
/// bytes must land in initialised memory that safe code may later see), so in a hot loop
/// reuse a buffer whose length is already its capacity (`vec![0; n]`, a `Box<[u8]>`)
/// and slice `&buf[..n]`.
pub trait IoBufMut: sealed::SealedMut + 'static {}

impl sealed::Sealed for Vec<u8> {
    fn into_buffer(self, _: Token) -> Buffer {
        Buffer::from(self)
    }
    fn from_buffer(b: Buffer, _: Token) -> Self {
        b.into_vec().expect("a Vec<u8> comes back as a Vec buffer")
    }
}
impl IoBuf for Vec<u8> {}

impl sealed::SealedMut for Vec<u8> {
    fn into_read_buffer(mut self, _: Token) -> (Buffer, usize) {
        let init = self.len();
        self.resize(self.capacity(), 0);
        (Buffer::from(self), init)
    }
    fn into_exact_buffer(self, _: Token) -> (Buffer, usize) {
        let len = self.len();
        (Buffer::from(self), len)
    }
    fn spare_capacity(&self, _: Token) -> usize {
        self.capacity() - self.len()
    }
    fn from_read_buffer(b: Buffer, init: usize, filled: usize, _: Token) -> Self {
        let mut v = b.into_vec().expect("a Vec<u8> comes back as a Vec buffer");
        v.truncate(init.max(filled));
        v
    }
}
impl IoBufMut for Vec<u8> {}

impl sealed::Sealed for Box<[u8]> {
    fn into_buffer(self, _: Token) -> Buffer {
        Buffer::from(self)
    }
    fn from_buffer(b: Buffer, t: Token) -> Self {
        // A Vec made from a boxed slice has length == capacity: no reallocation here.
        Vec::from_buffer(b, t).into_boxed_slice()
    }
}
impl IoBuf for Box<[u8]> {}

impl sealed::SealedMut for Box<[u8]> {
    fn into_read_buffer(self, _: Token) -> (Buffer, usize) {
        (Buffer::from(self), 0)
    }
    fn from_read_buffer(b: Buffer, _: usize, _: usize, t: Token) -> Self {
        <Box<[u8]> as sealed::Sealed>::from_buffer(b, t)
    }
}
impl IoBufMut for Box<[u8]> {}

impl sealed::Sealed for String {
    fn into_buffer(self, _: Token) -> Buffer {
        Buffer::from(self.into_bytes())
    }
    fn from_buffer(b: Buffer, t: Token) -> Self {
        let v = Vec::from_buffer(b, t);
        // SAFETY: the bytes came from a String and were only ever written *from* (a
        // String is an IoBuf, never an IoBufMut), so they are still UTF-8.
        unsafe { String::from_utf8_unchecked(v) }
    }
}
impl IoBuf for String {}

impl sealed::Sealed for &'static [u8] {
    fn into_buffer(self, _: Token) -> Buffer {
        // SAFETY: static memory outlives any operation; it is only ever read: an
        // `IoBuf` goes into write operations only, and the `Buffer` never reaches users.
        unsafe { Buffer::from_raw(self.as_ptr().cast_mut(), self.len()) }
    }
    fn from_buffer(b: Buffer, _: Token) -> Self {
        let (ptr, len) = b
            .raw_parts()
            .expect("a static slice comes back as a raw buffer");
        // SAFETY: exactly the static slice `into_buffer` wrapped.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}
impl IoBuf for &'static [u8] {}

impl sealed::Sealed for &'static str {
    fn into_buffer(self, t: Token) -> Buffer {
        self.as_bytes().into_buffer(t)
    }
    fn from_buffer(b: Buffer, t: Token) -> Self {
        let bytes = <&'static [u8]>::from_buffer(b, t);
        // SAFETY: the bytes of a `&'static str`, never written to.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }
}
impl IoBuf for &'static str {}

impl sealed::Sealed for Buffer {
    fn into_buffer(self, _: Token) -> Buffer {
        self
    }
    fn from_buffer(b: Buffer, _: Token) -> Self {
        b
    }
}
impl IoBuf for Buffer {}

impl sealed::SealedMut for Buffer {
    fn into_read_buffer(self, _: Token) -> (Buffer, usize) {
        (self, 0)
    }
    fn from_read_buffer(b: Buffer, _: usize, _: usize, _: Token) -> Self {
        b
    }
}
impl IoBufMut for Buffer {}

/// Crate-side access to the sealed conversions.
pub(crate) fn into_buffer<B: IoBuf>(b: B) -> Buffer {
    b.into_buffer(Token(()))
}

pub(crate) fn from_buffer<B: IoBuf>(b: Buffer) -> B {
    B::from_buffer(b, Token(()))
}

pub(crate) fn into_read_buffer<B: IoBufMut>(b: B) -> (Buffer, usize) {
    b.into_read_buffer(Token(()))
}

pub(crate) fn from_read_buffer<B: IoBufMut>(b: Buffer, prep: usize, filled: usize) -> B {
    B::from_read_buffer(b, prep, filled, Token(()))
}

/// For `read_exact`: exactly the buffer's length (hand it back with `from_read_buffer`).
pub(crate) fn into_exact_buffer<B: IoBufMut>(b: B) -> (Buffer, usize) {
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
        let s: String = from_buffer(into_buffer(String::from("héllo")));
        assert_eq!(s, "héllo");
        let st: &'static [u8] = from_buffer({
            let mut b = into_buffer(&b"static"[..]);
            b.advance(3);
            b
        });
        assert_eq!(st, b"static");
        let bx: Box<[u8]> = from_buffer(into_buffer(Box::<[u8]>::from(&b"box"[..])));
        assert_eq!(&*bx, b"box");
    }
}
