//! A streaming ZIP writer: entries stored, never deflated (M4A is already compressed),
//! each file's CRC-32, size and SHA-256 computed as its bytes pass, written after them
//! in a data descriptor, so nothing is held but the bytes not yet taken; ZIP64 records
//! where sizes or offsets need them (or everywhere, when forced). APPNOTE 6.3.10 is the
//! reference; Python's `zipfile` and Info-ZIP's `unzip` read what it writes.

use chrono::{DateTime, Datelike, Timelike, Utc};

const LOCAL_HEADER: u32 = 0x0403_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const ZIP64_END: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const END: u32 = 0x0605_4b50;
/// Version 4.5: ZIP64. 2.0: everything else we write.
const VERSION_ZIP64: u16 = 45;
const VERSION_PLAIN: u16 = 20;
/// Made by: Unix (permissions in the external attributes), spec 4.5.
const MADE_BY: u16 = (3 << 8) | VERSION_ZIP64;
/// Sizes in a data descriptor, and UTF-8 names.
const FLAGS: u16 = (1 << 3) | (1 << 11);
const STORED: u16 = 0;
const ZIP64_EXTRA: u16 = 0x0001;
/// The extended timestamp (Info-ZIP's "UT"): the modification time in Unix seconds,
/// UTC, so readers in every time zone show the real time (a DOS time has no zone).
const TIMESTAMP_EXTRA: u16 = 0x5455;
/// Its size: a flags byte (bit 0: the modification time follows) and the time.
const TIMESTAMP_SIZE: u16 = 5;
/// `-rw-r--r--`, a regular file.
const FILE_MODE: u32 = 0o100_644 << 16;
const MAX32: u64 = u32::MAX as u64;

/// What the ZIP says of one file, once written.
#[derive(Debug, Clone)]
pub struct Written {
    pub size: u64,
}

struct Entry {
    name: String,
    time: u16,
    date: u16,
    unix: u32,
    offset: u64,
    crc: u32,
    size: u64,
    zip64: bool,
}

struct Open {
    entry: Entry,
    crc: crc32fast::Hasher,
}

/// A ZIP being written into a buffer the caller drains ([`Zip::take`]).
pub struct Zip {
    buf: Vec<u8>,
    /// Bytes written so far, taken or not.
    offset: u64,
    entries: Vec<Entry>,
    open: Option<Open>,
    force_zip64: bool,
}

impl Zip {
    /// An empty ZIP whose buffer starts with room for `capacity` bytes (what the caller
    /// lets pile up before taking: it then never grows). `force_zip64` writes ZIP64
    /// records for every entry and the end, whatever their sizes (how the tests reach
    /// that path without 4 GiB).
    pub fn new(force_zip64: bool, capacity: usize) -> Self {
        Zip {
            buf: Vec::with_capacity(capacity),
            offset: 0,
            entries: Vec::new(),
            open: None,
            force_zip64,
        }
    }

    /// Bytes written and not yet taken.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes written in all.
    pub fn written(&self) -> u64 {
        self.offset
    }

    /// The first `n` buffered bytes (all of them when fewer); the buffer keeps its room.
    pub fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.buf.len());
        self.buf.drain(..n).collect()
    }

    /// Starts a file of about `size` bytes (the size decides whether it needs ZIP64;
    /// the bytes written decide what is recorded).
    pub fn start(&mut self, name: &str, modified: DateTime<Utc>, size: u64) {
        assert!(self.open.is_none(), "a file is already open");
        let (time, date) = dos_time(modified);
        let unix = u32::try_from(modified.timestamp().max(0)).unwrap_or(u32::MAX);
        let zip64 = self.force_zip64 || size >= MAX32 || self.offset >= MAX32;
        let entry = Entry {
            name: name.to_owned(),
            time,
            date,
            unix,
            offset: self.offset,
            crc: 0,
            size: 0,
            zip64,
        };
        let mut header = Vec::with_capacity(30 + name.len() + 20);
        put32(&mut header, LOCAL_HEADER);
        put16(
            &mut header,
            if zip64 { VERSION_ZIP64 } else { VERSION_PLAIN },
        );
        put16(&mut header, FLAGS);
        put16(&mut header, STORED);
        put16(&mut header, time);
        put16(&mut header, date);
        // CRC and sizes follow the data, in the descriptor.
        put32(&mut header, 0);
        let unknown = if zip64 { u32::MAX } else { 0 };
        put32(&mut header, unknown);
        put32(&mut header, unknown);
        put16(&mut header, len16(name.len()));
        put16(&mut header, if zip64 { 20 } else { 0 } + 4 + TIMESTAMP_SIZE);
        header.extend_from_slice(name.as_bytes());
        if zip64 {
            put16(&mut header, ZIP64_EXTRA);
            put16(&mut header, 16);
            put64(&mut header, 0);
            put64(&mut header, 0);
        }
        put_timestamp(&mut header, unix);
        self.push(&header);
        self.open = Some(Open {
            entry,
            crc: crc32fast::Hasher::new(),
        });
    }

    /// Appends bytes to the open file.
    pub fn write(&mut self, data: &[u8]) {
        let open = self.open.as_mut().expect("a file is open");
        open.crc.update(data);
        open.entry.size += data.len() as u64;
        self.push(data);
    }

    /// Ends the open file with its data descriptor.
    pub fn finish_file(&mut self) -> Written {
        let Open { mut entry, crc } = self.open.take().expect("a file is open");
        entry.crc = crc.finalize();
        // A file bigger than announced still gets the sizes it needs.
        entry.zip64 |= entry.size >= MAX32;
        let mut descriptor = Vec::with_capacity(24);
        put32(&mut descriptor, DATA_DESCRIPTOR);
        put32(&mut descriptor, entry.crc);
        if entry.zip64 {
            put64(&mut descriptor, entry.size);
            put64(&mut descriptor, entry.size);
        } else {
            put32(&mut descriptor, entry.size as u32);
            put32(&mut descriptor, entry.size as u32);
        }
        self.push(&descriptor);
        let written = Written { size: entry.size };
        self.entries.push(entry);
        written
    }

    /// A whole small file at once.
    pub fn file(&mut self, name: &str, modified: DateTime<Utc>, data: &[u8]) -> Written {
        self.start(name, modified, data.len() as u64);
        self.write(data);
        self.finish_file()
    }

    /// The central directory and the end records; the ZIP is complete.
    pub fn finish(&mut self) {
        assert!(self.open.is_none(), "a file is still open");
        let start = self.offset;
        let entries = std::mem::take(&mut self.entries);
        for entry in &entries {
            let mut header = Vec::with_capacity(46 + entry.name.len() + 28);
            let zip64 = entry.zip64 || entry.offset >= MAX32;
            put32(&mut header, CENTRAL_HEADER);
            put16(&mut header, MADE_BY);
            put16(
                &mut header,
                if zip64 { VERSION_ZIP64 } else { VERSION_PLAIN },
            );
            put16(&mut header, FLAGS);
            put16(&mut header, STORED);
            put16(&mut header, entry.time);
            put16(&mut header, entry.date);
            put32(&mut header, entry.crc);
            let (size, offset) = if zip64 {
                (u32::MAX, u32::MAX)
            } else {
                (entry.size as u32, entry.offset as u32)
            };
            put32(&mut header, size);
            put32(&mut header, size);
            put16(&mut header, len16(entry.name.len()));
            put16(&mut header, if zip64 { 28 } else { 0 } + 4 + TIMESTAMP_SIZE);
            put16(&mut header, 0); // comment
            put16(&mut header, 0); // disk
            put16(&mut header, 0); // internal attributes
            put32(&mut header, FILE_MODE);
            put32(&mut header, offset);
            header.extend_from_slice(entry.name.as_bytes());
            if zip64 {
                put16(&mut header, ZIP64_EXTRA);
                put16(&mut header, 24);
                put64(&mut header, entry.size);
                put64(&mut header, entry.size);
                put64(&mut header, entry.offset);
            }
            put_timestamp(&mut header, entry.unix);
            self.push(&header);
        }
        let size = self.offset - start;
        let count = entries.len() as u64;
        let zip64 = self.force_zip64
            || entries.iter().any(|e| e.zip64)
            || count >= 0xFFFF
            || start >= MAX32
            || size >= MAX32;
        let mut end = Vec::with_capacity(98);
        if zip64 {
            let at = self.offset;
            put32(&mut end, ZIP64_END);
            put64(&mut end, 44); // the record's size after this field
            put16(&mut end, MADE_BY);
            put16(&mut end, VERSION_ZIP64);
            put32(&mut end, 0); // this disk
            put32(&mut end, 0); // the directory's disk
            put64(&mut end, count);
            put64(&mut end, count);
            put64(&mut end, size);
            put64(&mut end, start);
            put32(&mut end, ZIP64_LOCATOR);
            put32(&mut end, 0);
            put64(&mut end, at);
            put32(&mut end, 1); // disks
        }
        put32(&mut end, END);
        put16(&mut end, 0);
        put16(&mut end, 0);
        let (count16, size32, start32) = if zip64 {
            (u16::MAX, u32::MAX, u32::MAX)
        } else {
            (count as u16, size as u32, start as u32)
        };
        put16(&mut end, count16);
        put16(&mut end, count16);
        put32(&mut end, size32);
        put32(&mut end, start32);
        put16(&mut end, 0); // comment
        self.push(&end);
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.offset += data.len() as u64;
    }
}

/// MS-DOS time and date (two-second steps, 1980 at the earliest).
fn dos_time(at: DateTime<Utc>) -> (u16, u16) {
    let year = at.year().clamp(1980, 2107) as u16;
    let time = ((at.hour() as u16) << 11) | ((at.minute() as u16) << 5) | (at.second() as u16 / 2);
    let date = ((year - 1980) << 9) | ((at.month() as u16) << 5) | at.day() as u16;
    (time, date)
}

/// The extended timestamp field, with the modification time only.
fn put_timestamp(out: &mut Vec<u8>, unix: u32) {
    put16(out, TIMESTAMP_EXTRA);
    put16(out, TIMESTAMP_SIZE);
    out.push(1);
    put32(out, unix);
}

fn len16(n: usize) -> u16 {
    u16::try_from(n).expect("names are shorter than 64 KiB")
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read32(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
    }

    fn zip(force_zip64: bool) -> (Vec<u8>, Written) {
        let mut zip = Zip::new(force_zip64, 0);
        let at = "2026-03-14T18:30:00Z".parse().expect("a time");
        let written = zip.file("Family/a.txt", at, b"hello");
        zip.file("Family/b.txt", at, b"");
        zip.finish();
        let bytes = zip.take(usize::MAX);
        assert_eq!(bytes.len() as u64, zip.written());
        (bytes, written)
    }

    #[test]
    fn a_plain_zip_ends_with_the_directory_it_points_at() {
        let (bytes, written) = zip(false);
        assert_eq!(written.size, 5);
        let end = bytes.len() - 22;
        assert_eq!(read32(&bytes, end), END);
        let directory = read32(&bytes, end + 16) as usize;
        assert_eq!(read32(&bytes, directory), CENTRAL_HEADER);
        // hello's CRC-32, as every implementation computes it.
        assert_eq!(read32(&bytes, directory + 16), 0x3610_a686);
        assert!(!bytes.windows(4).any(|w| w == ZIP64_END.to_le_bytes()));
    }

    #[test]
    fn forced_zip64_writes_its_records_and_the_locator_points_at_them() {
        let (bytes, _) = zip(true);
        let end = bytes.len() - 22;
        assert_eq!(read32(&bytes, end), END);
        assert_eq!(read32(&bytes, end + 16), u32::MAX);
        let locator = end - 20;
        assert_eq!(read32(&bytes, locator), ZIP64_LOCATOR);
        let record = u64::from_le_bytes(
            bytes[locator + 8..locator + 16]
                .try_into()
                .expect("4 bytes"),
        );
        assert_eq!(read32(&bytes, record as usize), ZIP64_END);
    }

    #[test]
    fn take_hands_out_exactly_what_was_asked_in_order() {
        let mut zip = Zip::new(false, 0);
        zip.start("x", Utc::now(), 10);
        zip.write(&[1; 10]);
        let before = zip.buffered();
        let first = zip.take(7);
        assert_eq!(first.len(), 7);
        assert_eq!(zip.buffered(), before - 7);
        assert_eq!(read32(&first, 0), LOCAL_HEADER);
    }

    #[test]
    fn every_entry_carries_its_time_in_utc() {
        let (bytes, _) = zip(false);
        let at: DateTime<Utc> = "2026-03-14T18:30:00Z".parse().expect("a time");
        let mut field = vec![0x55, 0x54, 5, 0, 1];
        field.extend_from_slice(&(at.timestamp() as u32).to_le_bytes());
        let count = bytes.windows(field.len()).filter(|w| *w == field).count();
        assert_eq!(
            count, 4,
            "two entries, each in its header and the directory"
        );
    }

    #[test]
    fn dos_times_count_from_1980_in_two_second_steps() {
        let (time, date) = dos_time("2026-03-14T18:30:59Z".parse().expect("a time"));
        assert_eq!(time, (18 << 11) | (30 << 5) | 29);
        assert_eq!(date, (46 << 9) | (3 << 5) | 14);
        assert_eq!(
            dos_time("1970-01-01T00:00:00Z".parse().expect("a time")).1 >> 9,
            0
        );
    }
}
