//! `bytes::Bytes` as an [`IoBuf`] and `bytes::BytesMut` as an [`IoBuf`] and an
//! [`IoBufMut`] (the `bytes` feature).
//!
//! In flight, the handle itself is kept in the loop's [`Buffer`] (boxed, so that
//! `Buffer` and `Completion` stay their size: one small allocation per operation), and
//! the kernel gets a pointer into its memory. A `BytesMut` read works like a `Vec`'s:
//! the room between its length and its capacity is zero-filled first (so the kernel only
//! writes initialised memory that safe code may later see), the read fills from the
//! start, and the length becomes the larger of the old length and the bytes read. To
//! append instead, read into `buf.slice_mut(buf.len()..)`.
//!
//! With [`IoBuf`] in scope, `bytes.slice(range)` on a `Bytes` value is
//! [`IoBuf::slice`] (it takes `self`, so method lookup finds it before
//! `Bytes::slice(&self, ..)`); write `Bytes::slice(&bytes, range)` for the other.

use bytes::{Bytes, BytesMut};

use super::sealed::{Sealed, SealedMut};
use super::{IoBuf, IoBufMut, Token};
use crate::op::{Buffer, Owner};

impl Sealed for Bytes {
    type Saved = ();
    fn into_buffer(self, _: Token) -> (Buffer, ()) {
        let (ptr, len) = (self.as_ptr().cast_mut(), self.len());
        // SAFETY: `Bytes` is a refcounted handle to immutable memory: while this handle
        // lives (the buffer owns it, boxed, until the operation is over, orphans
        // included) the memory it points to is neither freed nor moved, and `ptr`/`len`
        // are this handle's view of it, which only changes through `&mut Bytes` (never
        // used while it is in the buffer). A `Bytes` is an `IoBuf` only, so its buffer
        // goes into write operations, which only read the memory; nothing writes it.
        let b = unsafe { Buffer::kept(ptr, len, Owner::Bytes(self)) };
        (b, ())
    }
    fn from_buffer(b: Buffer, _: (), _: Token) -> Self {
        match b.into_owner() {
            Some(Owner::Bytes(bytes)) => bytes,
            _ => unreachable!("a Bytes comes back as a kept Bytes buffer"),
        }
    }
    fn bytes(&self, _: Token) -> &[u8] {
        self
    }
}
impl IoBuf for Bytes {}

/// `b`'s memory as a loop buffer that owns `b`.
fn kept(mut b: BytesMut) -> Buffer {
    let (ptr, len) = (b.as_mut_ptr(), b.len());
    // SAFETY: a `BytesMut` uniquely owns `ptr..ptr + len` (parts split off it own
    // disjoint memory); the buffer owns the handle, boxed, until the operation is over
    // (orphans included), and nothing calls a method on it meanwhile, so the memory is
    // neither freed, moved nor accessed by anyone but the operation. All of it is
    // initialised (it is within the length).
    unsafe { Buffer::kept(ptr, len, Owner::BytesMut(b)) }
}

fn owner(b: Buffer) -> BytesMut {
    match b.into_owner() {
        Some(Owner::BytesMut(bytes)) => bytes,
        _ => unreachable!("a BytesMut comes back as a kept BytesMut buffer"),
    }
}

impl Sealed for BytesMut {
    type Saved = ();
    fn into_buffer(self, _: Token) -> (Buffer, ()) {
        (kept(self), ())
    }
    fn from_buffer(b: Buffer, _: (), _: Token) -> Self {
        owner(b)
    }
    fn bytes(&self, _: Token) -> &[u8] {
        self
    }
}
impl IoBuf for BytesMut {}

impl SealedMut for BytesMut {
    /// The length before the read.
    type ReadSaved = usize;
    fn read_room(&self, _: Token) -> usize {
        self.capacity()
    }
    fn into_read_buffer(mut self, room: usize, _: Token) -> (Buffer, usize) {
        let init = self.len();
        if room > init {
            // Within the capacity (`room <= capacity`): no reallocation, the memory
            // stays where it is; the new bytes are zeros.
            self.resize(room, 0);
        }
        (kept(self), init)
    }
    fn into_exact_buffer(self, _: Token) -> (Buffer, usize) {
        let len = self.len();
        (kept(self), len)
    }
    fn spare_capacity(&self, _: Token) -> usize {
        self.capacity() - self.len()
    }
    fn from_read_buffer(b: Buffer, init: usize, filled: usize, _: Token) -> Self {
        let mut bytes = owner(b);
        bytes.truncate(init.max(filled));
        bytes
    }
    fn init_bytes(&self, _: Token) -> &[u8] {
        self
    }
    fn init_bytes_mut(&mut self, _: Token) -> &mut [u8] {
        self
    }
}
impl IoBufMut for BytesMut {}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use super::super::{from_buffer, from_read_buffer, into_buffer, into_read_buffer};
    use super::super::{into_exact_buffer, spare_capacity, IoBuf, IoBufMut, Slice, SliceMut};

    #[test]
    fn bytes_round_trip_whole_and_sliced() {
        let shared = Bytes::from(b"shared bytes".to_vec());
        let other = shared.clone();
        let (mut b, s) = into_buffer(shared);
        assert_eq!(b.as_slice(), b"shared bytes");
        assert_eq!(b.as_ptr().cast_const(), other.as_ptr(), "no copy");
        b.advance(7);
        b.rewind();
        let back: Bytes = from_buffer(b, s);
        assert_eq!(back, other);

        let (b, s) = into_buffer(Bytes::from_static(b"static").slice(1..3));
        assert_eq!(b.as_slice(), b"ta");
        let back: Slice<Bytes> = from_buffer(b, s);
        assert_eq!(back.into_inner(), Bytes::from_static(b"static"));
    }

    #[test]
    fn bytes_mut_reads_like_a_vec() {
        let mut m = BytesMut::with_capacity(16);
        m.extend_from_slice(b"ab");
        let cap = m.capacity();
        assert_eq!(spare_capacity(&m), cap - 2);
        let (mut b, init) = into_read_buffer(m);
        assert_eq!((b.len(), init), (cap, 2));
        b.as_mut_slice()[..3].copy_from_slice(b"xyz");
        let m: BytesMut = from_read_buffer(b, init, 3);
        assert_eq!(&m[..], b"xyz");
        let (b, init) = into_exact_buffer(m);
        assert_eq!(b.len(), 3);
        let m: BytesMut = from_read_buffer(b, init, 3);

        // Appending through a slice.
        let at = m.len();
        let (mut b, saved) = into_read_buffer(m.slice_mut(at..));
        b.as_mut_slice()[..2].copy_from_slice(b"!!");
        let m = from_read_buffer::<SliceMut<BytesMut>>(b, saved, 2).into_inner();
        assert_eq!(&m[..], b"xyz!!");

        let (b, s) = into_buffer(m.slice(1..));
        assert_eq!(b.as_slice(), b"yz!!");
        let m = from_buffer::<Slice<BytesMut>>(b, s).into_inner();
        assert_eq!(&m[..], b"xyz!!");
    }
}
