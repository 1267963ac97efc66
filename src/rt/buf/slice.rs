//! [`Slice`] and [`SliceMut`]: a range of an owned buffer as a buffer of its own.
//!
//! In flight, the loop's [`Buffer`] is *narrowed* to the range (`Buffer::narrow`), so
//! the kernel sees exactly those bytes; before the buffer is handed back it is widened
//! again and rebuilt whole.

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::sealed::{Sealed, SealedMut};
use super::{IoBuf, IoBufMut, Token};
use crate::op::{Buffer, View};

/// The bytes `begin..end` of a buffer to write, made by [`IoBuf::slice`].
///
/// A write of a slice writes exactly its range; [`into_inner`](Self::into_inner) gives
/// the whole buffer back. It derefs to the bytes of its range.
///
/// ```
/// use xev::rt::IoBuf;
///
/// let s = b"hello, world".to_vec().slice(7..);
/// assert_eq!((s.begin(), s.end(), &s[..]), (7, 12, &b"world"[..]));
/// assert_eq!(s.get_ref().len(), 12);
/// assert_eq!(s.into_inner(), b"hello, world");
/// ```
pub struct Slice<T> {
    buf: T,
    begin: usize,
    end: usize,
}

/// The room `begin..end` of a buffer to read into, made by [`IoBufMut::slice_mut`].
///
/// A read into a slice fills it from `begin` (at most up to `end`) and leaves the rest
/// of the buffer untouched; [`into_inner`](Self::into_inner) gives the whole buffer
/// back. It derefs to the *initialised* bytes of its range: for a `Vec` whose range
/// reaches past its length, `begin..min(end, len)` (empty if `begin >= len`).
///
/// ```
/// use xev::rt::IoBufMut;
///
/// let mut buf = Vec::with_capacity(16);
/// buf.extend_from_slice(b"abcdef");
/// let s = buf.slice_mut(4..12); // up to the capacity
/// assert_eq!((s.begin(), s.end(), &s[..]), (4, 12, &b"ef"[..]));
/// assert_eq!(s.into_inner(), b"abcdef");
/// ```
pub struct SliceMut<T> {
    buf: T,
    begin: usize,
    end: usize,
}

macro_rules! accessors {
    ($ty:ident) => {
        impl<T> $ty<T> {
            pub(super) fn new(buf: T, begin: usize, end: usize) -> Self {
                $ty { buf, begin, end }
            }

            /// Where the range starts in the whole buffer.
            pub fn begin(&self) -> usize {
                self.begin
            }

            /// Where the range ends (exclusive) in the whole buffer.
            pub fn end(&self) -> usize {
                self.end
            }

            /// The whole buffer.
            pub fn get_ref(&self) -> &T {
                &self.buf
            }

            /// The whole buffer back.
            pub fn into_inner(self) -> T {
                self.buf
            }
        }

        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("begin", &self.begin)
                    .field("end", &self.end)
                    .finish_non_exhaustive()
            }
        }
    };
}
accessors!(Slice);
accessors!(SliceMut);

impl<T: IoBuf> Deref for Slice<T> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf.bytes(Token(()))[self.begin..self.end]
    }
}

/// `begin..end` clamped to the `len` initialised bytes.
fn init_range(begin: usize, end: usize, len: usize) -> std::ops::Range<usize> {
    begin.min(len)..end.min(len)
}

impl<T: IoBufMut> Deref for SliceMut<T> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let init = self.buf.init_bytes(Token(()));
        &init[init_range(self.begin, self.end, init.len())]
    }
}

impl<T: IoBufMut> DerefMut for SliceMut<T> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let init = self.buf.init_bytes_mut(Token(()));
        let r = init_range(self.begin, self.end, init.len());
        &mut init[r]
    }
}

impl<T: IoBuf> Sealed for Slice<T> {
    type Saved = (T::Saved, View, usize, usize);
    fn into_buffer(self, t: Token) -> (Buffer, Self::Saved) {
        let (mut b, saved) = self.buf.into_buffer(t);
        // In range: `slice` checked `end` against the bytes, and a buffer's bytes are
        // its loop buffer's (`narrow` checks again and panics, never reads past them).
        let view = b.narrow(self.begin, self.end);
        (b, (saved, view, self.begin, self.end))
    }
    fn from_buffer(mut b: Buffer, (saved, view, begin, end): Self::Saved, t: Token) -> Self {
        // SAFETY: `view` came from `narrow` on this buffer in `into_buffer`; a write
        // operation only reads it, and the runtime only advances and rewinds it.
        unsafe { b.widen(view) };
        Slice {
            buf: T::from_buffer(b, saved, t),
            begin,
            end,
        }
    }
    fn bytes(&self, _: Token) -> &[u8] {
        self
    }
}
impl<T: IoBuf> IoBuf for Slice<T> {}

impl<T: IoBufMut> SealedMut for SliceMut<T> {
    type ReadSaved = (T::ReadSaved, View, usize, usize);
    fn read_room(&self, _: Token) -> usize {
        self.end - self.begin
    }
    fn into_read_buffer(self, room: usize, t: Token) -> (Buffer, Self::ReadSaved) {
        let upto = self.begin + room;
        let (mut b, saved) = self.buf.into_read_buffer(upto, t);
        // `upto <= end <=` the inner buffer's read room (checked by `slice_mut`), and
        // the inner buffer made at least `upto` bytes available.
        let view = b.narrow(self.begin, upto);
        (b, (saved, view, self.begin, self.end))
    }
    fn from_read_buffer(
        mut b: Buffer,
        (saved, view, begin, end): Self::ReadSaved,
        filled: usize,
        t: Token,
    ) -> Self {
        // SAFETY: `view` came from `narrow` on this buffer in `into_read_buffer`; since
        // then the kernel only wrote bytes inside it and the runtime only advanced and
        // rewound it.
        unsafe { b.widen(view) };
        // The inner buffer counts from its own start; nothing read leaves it as it was.
        let filled = if filled > 0 { begin + filled } else { 0 };
        SliceMut {
            buf: T::from_read_buffer(b, saved, filled, t),
            begin,
            end,
        }
    }
    fn init_bytes(&self, _: Token) -> &[u8] {
        self
    }
    fn init_bytes_mut(&mut self, _: Token) -> &mut [u8] {
        self
    }
}
impl<T: IoBufMut> IoBufMut for SliceMut<T> {}

#[cfg(test)]
mod tests {
    use super::super::{from_buffer, from_read_buffer, into_buffer, into_read_buffer};
    use super::super::{into_exact_buffer, IoBuf, IoBufMut};
    use crate::op::Buffer;

    /// A write of `s` sends exactly `want`, and the whole `T` comes back equal to `whole`.
    fn write_round_trip<T: IoBuf + PartialEq + std::fmt::Debug>(
        s: super::Slice<T>,
        want: &[u8],
        whole: &T,
    ) {
        let (mut b, saved) = into_buffer(s);
        assert_eq!(b.as_slice(), want);
        // What write_all does after a partial write, then at the end.
        if !b.is_empty() {
            b.advance(1);
            assert_eq!(b.as_slice(), &want[1..]);
        }
        b.rewind();
        let back: super::Slice<T> = from_buffer(b, saved);
        assert_eq!(&back[..], want);
        assert_eq!(back.get_ref(), whole);
    }

    #[test]
    fn every_write_buffer_round_trips_through_a_slice() {
        let v = b"0123456789".to_vec();
        write_round_trip(v.clone().slice(2..5), b"234", &v);
        write_round_trip(v.clone().slice(..), b"0123456789", &v);
        write_round_trip(v.clone().slice(10..), b"", &v);
        let bx: Box<[u8]> = v.clone().into();
        write_round_trip(bx.clone().slice(8..), b"89", &bx);
        write_round_trip(
            String::from("héllo").slice(1..3),
            "é".as_bytes(),
            &"héllo".into(),
        );
        let st: &'static [u8] = b"static";
        write_round_trip(st.slice(1..=2), b"ta", &st);
        write_round_trip("str".slice(..1), b"s", &"str");
        // Nested: a slice of a slice is relative to the outer range.
        let (b, saved) = into_buffer(v.clone().slice(2..8).slice(1..3));
        assert_eq!(b.as_slice(), b"34");
        let back: super::Slice<super::Slice<Vec<u8>>> = from_buffer(b, saved);
        assert_eq!((&back[..], back.get_ref().get_ref()), (&b"34"[..], &v));
        assert_eq!(back.into_inner().into_inner(), v);
    }

    #[test]
    fn buffers_round_trip_through_a_slice() {
        // A `Buffer` (no PartialEq): inline, Vec and raw.
        let cases = [
            (Buffer::copy_from(b"inline!"), &b"li"[..], &b"inline!"[..]),
            (Buffer::from(b"vector!".to_vec()), b"ct", b"vector!"),
        ];
        for (b, want, whole) in cases {
            let (lb, saved) = into_buffer(b.slice(2..4));
            assert_eq!(lb.as_slice(), want);
            let back: super::Slice<Buffer> = from_buffer(lb, saved);
            assert_eq!(back.into_inner().as_slice(), whole);
        }
        let mut mem = *b"rawbytes";
        // SAFETY: `mem` outlives the buffer, which nothing else touches meanwhile.
        let raw = unsafe { Buffer::from_raw(mem.as_mut_ptr(), mem.len()) };
        let (lb, saved) = into_buffer(raw.slice(3..));
        assert_eq!(lb.as_slice(), b"bytes");
        let back: super::Slice<Buffer> = from_buffer(lb, saved);
        assert_eq!(back.into_inner().as_slice(), b"rawbytes");
        // An advanced Buffer is sliced relative to what it still holds.
        let mut adv = Buffer::from(b"skip-keep".to_vec());
        adv.advance(5);
        let (lb, _) = into_buffer(adv.slice(..2));
        assert_eq!(lb.as_slice(), b"ke");
    }

    #[test]
    fn a_read_into_a_slice_fills_its_range_only() {
        // A Vec with length 4, capacity 16: the range may reach into the capacity.
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(b"HEAD");
        let (mut b, saved) = into_read_buffer(v.slice_mut(4..10));
        assert_eq!(b.len(), 6);
        b.as_mut_slice()[..3].copy_from_slice(b"abc");
        let s: super::SliceMut<Vec<u8>> = from_read_buffer(b, saved, 3);
        assert_eq!(&s[..], b"abc");
        let v = s.into_inner();
        assert_eq!((&v[..], v.capacity()), (&b"HEADabc"[..], 16));

        // Nothing read: the length stays.
        let (b, saved) = into_read_buffer(v.slice_mut(12..));
        assert_eq!(b.len(), 4);
        let v: Vec<u8> = from_read_buffer::<super::SliceMut<Vec<u8>>>(b, saved, 0).into_inner();
        assert_eq!(v, b"HEADabc");

        // Past the length, with a gap: the gap is zeros.
        let (mut b, saved) = into_read_buffer(v.slice_mut(9..11));
        b.as_mut_slice().copy_from_slice(b"xy");
        let v = from_read_buffer::<super::SliceMut<Vec<u8>>>(b, saved, 2).into_inner();
        assert_eq!(v, b"HEADabc\0\0xy");

        // Inside a longer initialised Vec: the bytes after the range stay.
        let (mut b, saved) = into_read_buffer(v.slice_mut(1..3));
        b.as_mut_slice()[..1].copy_from_slice(b"e");
        let v = from_read_buffer::<super::SliceMut<Vec<u8>>>(b, saved, 1).into_inner();
        assert_eq!(v, b"HeADabc\0\0xy");

        // read_exact into a slice fills its whole range.
        let (b, saved) = into_exact_buffer(v.slice_mut(2..14));
        assert_eq!(b.len(), 12);
        let v = from_read_buffer::<super::SliceMut<Vec<u8>>>(b, saved, 12).into_inner();
        assert_eq!(v.len(), 14);

        // Box<[u8]> and Buffer: the range is against the length.
        let bx: Box<[u8]> = vec![b'.'; 6].into();
        let (mut b, saved) = into_read_buffer(bx.slice_mut(2..4));
        b.as_mut_slice().copy_from_slice(b"ok");
        let bx = from_read_buffer::<super::SliceMut<Box<[u8]>>>(b, saved, 2).into_inner();
        assert_eq!(&*bx, b"..ok..");
        let (mut b, saved) = into_read_buffer(Buffer::inline(6).slice_mut(5..));
        b.as_mut_slice().copy_from_slice(b"!");
        let buf = from_read_buffer::<super::SliceMut<Buffer>>(b, saved, 1).into_inner();
        assert_eq!(buf.as_slice(), b"\0\0\0\0\0!");
    }

    #[test]
    fn a_slice_mut_derefs_to_its_initialised_bytes() {
        let mut v = Vec::with_capacity(8);
        v.extend_from_slice(b"abc");
        let mut s = v.slice_mut(1..6);
        assert_eq!(&s[..], b"bc");
        s[0] = b'B';
        assert_eq!(s.into_inner(), b"aBc");
        let s = Vec::<u8>::with_capacity(8).slice_mut(4..);
        assert!(s.is_empty());
    }

    #[test]
    #[should_panic(expected = "out of range for a buffer of 3 bytes")]
    fn a_slice_past_the_length_panics() {
        let _ = b"abc".to_vec().slice(..4);
    }

    #[test]
    #[should_panic(expected = "out of range for a buffer of 8 bytes")]
    fn a_slice_mut_past_the_capacity_panics() {
        let _ = Vec::<u8>::with_capacity(8).slice_mut(2..9);
    }

    #[test]
    #[should_panic(expected = "range start index 5 out of range for a buffer of 4 bytes")]
    fn a_slice_mut_of_a_box_past_its_length_panics() {
        let _ = Box::<[u8]>::from(vec![0u8; 4]).slice_mut(5..);
    }

    #[test]
    #[should_panic(expected = "starts at 2 but ends at 1")]
    fn a_backwards_slice_panics() {
        #[allow(clippy::reversed_empty_ranges)]
        let _ = "static".slice(2..1);
    }

    #[test]
    #[should_panic(expected = "out of range for a buffer of 2 bytes")]
    fn a_nested_slice_is_bounded_by_the_outer_range() {
        let _ = b"abcdef".to_vec().slice(2..4).slice(..3);
    }
}
