//! Built-in, seeded Nexmark event generator (pipeline file: `type = "nexmark"`).
//!
//! Produces the three Nexmark event kinds (person, auction, bid) interleaved in event-time order as
//! Arrow record batches with one flat schema (see [`NexmarkGenerator::schema`]): a `type` column
//! tells the kind, and every column a kind lacks is null on that kind's rows.
//!
//! The rules follow the reference generator (nexmark/nexmark, `NexmarkConfiguration` defaults and
//! `generator/model/*`): out of every 50 events 1 person, 3 auctions and 46 bids, decided by the
//! event number modulo 50; ids sequential per kind from 1000; about 100 auctions in flight and
//! 1,000 people active (plus 10 ids of lead); 5 categories (10..=14); half of the bids go to the
//! hot auction (the first id of the current block of 100 auctions), 3/4 come from the hot bidder
//! (the second person of the current block of 100) and 3/4 of the auctions from the hot seller
//! (the first person of that block); prices `round(10^(U·6) · 100)` cents and reserve = initial
//! bid + another such price; an auction expires 1..=2·h ms after it starts, h being the event time
//! until the 100th next auction; half of the bids come from the 4 hot channels, the others from
//! 10,000 `channel-<i>` channels whose urls carry `&channel_id=<|Integer.reverse(i)|>` 9 times in
//! 10; names, emails, credit cards, cities and states as in `PersonGenerator`.
//!
//! Deviations from the reference:
//! - the random numbers come from `SmallRng` (re-seeded from the seed and the block number at
//!   the start of every block of 50 events), not Java's `SplittableRandom`: same distributions,
//!   different values; integer picks use multiply-shift (bias below 10^-4);
//! - `extra` is always `""` (the reference pads events to 100/200/500 bytes on average);
//! - item names, descriptions and email parts are trimmed slices of a 64 KiB random text with the
//!   reference's letters (space 1 in 13, else a-z) rather than freshly drawn characters;
//! - the hot channels' urls are derived from the seed (the reference draws them unseeded);
//! - a bid's bidder is offset by the first person id once (the current reference adds it twice,
//!   so its bidders would not match person ids);
//! - `date_time` is `start_time_ms + floor(n · 1000 / rate)` (the reference goes through a
//!   floating-point inter-event delay; equal for the default rate), with no out-of-order events
//!   (the reference default);
//! - prices use `U` in steps of 1 / (3072 · 2^24) and a table-and-polynomial `10^x` (at most 1
//!   cent from the exact formula).
//!
//! Speed: events are written straight into Arrow buffers, strings as fixed-size chunks from pools
//! built once per generator, with no per-event allocation or formatting and no unpredictable
//! branch in the bid loop; the `type` column and the validity bitmaps follow from the event
//! numbers alone. The output does not depend on how the events are split into batches.

use std::f64::consts::LN_10;
use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

fn default_seed() -> u64 {
    42
}

fn default_rate() -> u64 {
    10_000
}

fn default_start() -> i64 {
    1_700_000_000_000
}

/// Configuration of the built-in Nexmark generator (pipeline file: type = "nexmark").
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NexmarkConfig {
    /// Number of events to generate (all three kinds together).
    pub events: u64,
    /// Seed of the deterministic generator. Default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Events per second of *event time* (spacing of date_time). Default 10_000.
    /// A rate of 0 is treated as 1.
    #[serde(default = "default_rate")]
    pub rate: u64,
    /// date_time of the first event, epoch ms. Default 1_700_000_000_000.
    #[serde(default = "default_start")]
    pub start_time_ms: i64,
}

// ---- Reference constants (NexmarkConfiguration defaults and generator/model/*) ----

/// Events in one block: 1 person, 3 auctions, 46 bids.
const PROPORTION_TOTAL: u64 = 50;
/// Block positions `1..=LAST_AUCTION_PHASE` are auctions; 0 is the person; the rest are bids.
const LAST_AUCTION_PHASE: u32 = 3;
const AUCTION_PROPORTION: u64 = 3;
const FIRST_PERSON_ID: u64 = 1000;
const FIRST_AUCTION_ID: u64 = 1000;
const FIRST_CATEGORY_ID: u64 = 10;
const NUM_CATEGORIES: u64 = 5;
const NUM_IN_FLIGHT_AUCTIONS: u64 = 100;
const NUM_ACTIVE_PEOPLE: u64 = 1000;
/// Number of yet-to-be-created people and auction ids allowed (PERSON_ID_LEAD, AUCTION_ID_LEAD).
const ID_LEAD: u64 = 10;
/// Hot auctions / bidders / sellers are the first of a block of this many ids.
const HOT_BLOCK: u64 = 100;
/// Events until the `NUM_IN_FLIGHT_AUCTIONS`-th next auction (100 · 50 / 3).
const AUCTION_HORIZON_EVENTS: u64 = NUM_IN_FLIGHT_AUCTIONS * PROPORTION_TOTAL / AUCTION_PROPORTION;
const CHANNELS_NUMBER: u32 = 10_000;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

// ---- Implementation constants ----

/// Size of the pool that random strings (item names, descriptions, emails) are sliced from.
const TEXT_POOL_LEN: usize = 1 << 16;
/// Upper bound on rows per batch, so that every Utf8 column's offsets fit in `i32`.
const MAX_BATCH_ROWS: usize = 1 << 20;
/// Strings are appended as fixed-size chunks (at most this long) and cut back to their length;
/// every byte buffer reserves this much room past its longest possible content, so appending
/// never reallocates.
const SLACK: usize = 128;
/// Steps per decade of the price table.
const PRICE_STEPS: usize = 512;
/// Entries of the price table: 6 decades.
const PRICE_TABLE_LEN: usize = 6 * PRICE_STEPS;
/// Salt of the random stream that builds the string pools.
const POOL_SALT: u64 = 0x6e65_786d_6172_6b21;
/// Period, in events, of the kind pattern over whole 64-bit validity words: lcm(50, 64).
const MASK_PERIOD: usize = 1600;
/// Words of one validity pattern: one period plus one word, so any 64-bit window can be read.
const MASK_WORDS: usize = MASK_PERIOD / 64 + 1;

/// SplitMix64 finaliser: a fast, well-mixing 64-bit hash.
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Uniform integer in `[0, n)` from 32 random bits (multiply-shift; bias below n / 2^32).
#[inline(always)]
fn below32(r: u32, n: u64) -> u64 {
    debug_assert!(n <= u64::from(u32::MAX));
    (u64::from(r) * n) >> 32
}

/// Uniform integer in `[0, n)` from the low 24 bits of `r`, for small `n` (bias below n / 2^24).
#[inline(always)]
fn below24(r: u64, n: u64) -> u64 {
    debug_assert!(n <= 1 << 16);
    ((r & 0xff_ffff) * n) >> 24
}

/// `if cond { a } else { b }` without a branch: the conditions are coin flips, which a branch
/// would mispredict half of the time.
#[inline(always)]
fn select(cond: bool, a: u64, b: u64) -> u64 {
    let mask = u64::from(cond).wrapping_neg();
    (a & mask) | (b & !mask)
}

/// Uniform integer in `[0, n)` from 64 random bits.
#[inline(always)]
fn below64(r: u64, n: u64) -> u64 {
    ((u128::from(r) * u128::from(n)) >> 64) as u64
}

/// Strings of at most `W - 1` bytes, each stored zero-padded in a `W`-byte slot whose last byte
/// holds the length (so one random access fetches both).
struct FixedPool<const W: usize> {
    slots: Vec<[u8; W]>,
}

impl<const W: usize> FixedPool<W> {
    fn new() -> Self {
        Self { slots: Vec::new() }
    }

    fn push(&mut self, s: &str) {
        assert!(s.len() < W && W <= 256, "pool string too long: {s}");
        let mut slot = [0; W];
        slot[..s.len()].copy_from_slice(s.as_bytes());
        slot[W - 1] = s.len() as u8;
        self.slots.push(slot);
    }

    /// The slot of string `i` and the string's length.
    #[inline(always)]
    fn get(&self, i: usize) -> (&[u8; W], usize) {
        let slot = &self.slots[i];
        (slot, usize::from(slot[W - 1]))
    }

    fn max_len(&self) -> usize {
        self.slots
            .iter()
            .map(|s| usize::from(s[W - 1]))
            .max()
            .unwrap_or(0)
    }
}

/// Everything precomputed once per generator.
struct Pools {
    /// Random text: a space with probability 1/13, else a lowercase letter (as the reference's
    /// `nextString`), plus `SLACK` bytes of padding. Random strings are trimmed slices of it.
    text: Vec<u8>,
    /// "First Last" for every first × last name pair.
    names: FixedPool<16>,
    cities: FixedPool<16>,
    states: FixedPool<4>,
    /// The 4 hot channels, then `channel-0` .. `channel-9999`.
    channels: Vec<Channel>,
    /// Longest url of `channels`.
    max_url_len: usize,
    /// `100 · 10^(i / PRICE_STEPS)`.
    price: &'static [f64; PRICE_TABLE_LEN],
}

/// Start of every url.
const URL_HEAD: &[u8; 24] = b"https://www.nexmark.com/";
/// Follows the three url path parts.
const URL_ITEM: &[u8; 16] = b"item.htm?query=1";
/// Precedes the channel id, if the url has one (4 bytes of padding).
const URL_CHANNEL_ID: &[u8; 16] = b"&channel_id=\0\0\0\0";
const URL_CHANNEL_ID_LEN: usize = 12;

/// A short string zero-padded to 16 bytes; the last byte holds the length.
type Chunk16 = [u8; 16];

fn chunk16(s: &str) -> Chunk16 {
    assert!(s.len() < 16, "string too long for a 16-byte chunk: {s}");
    let mut chunk = [0; 16];
    chunk[..s.len()].copy_from_slice(s.as_bytes());
    chunk[15] = s.len() as u8;
    chunk
}

/// A channel and its url, which is `URL_HEAD` + `path` + `URL_ITEM` (+ `URL_CHANNEL_ID` + `id`
/// if `id` is not empty).
struct Channel {
    name: Chunk16,
    /// The three path parts, each followed by `/`.
    path: Chunk16,
    /// Decimal channel id; empty if the url has none.
    id: Chunk16,
}

impl Channel {
    fn url_len(&self) -> usize {
        let id = usize::from(self.id[15]);
        URL_HEAD.len()
            + usize::from(self.path[15])
            + URL_ITEM.len()
            + if id > 0 { URL_CHANNEL_ID_LEN + id } else { 0 }
    }
}

/// Reference `nextString(maxLength, special)`: 3..maxLength chars, each `special` with
/// probability 1/13 else a lowercase letter, trimmed of spaces.
fn pool_string(rng: &mut SmallRng, max_len: u64, special: u8, out: &mut String) {
    let len = 3 + below64(rng.next_u64(), max_len - 3);
    let mut s = String::new();
    for _ in 0..len {
        let r = rng.next_u64();
        if below32(r as u32, 13) == 0 {
            s.push(char::from(special));
        } else {
            s.push(char::from(b'a' + below32((r >> 32) as u32, 26) as u8));
        }
    }
    out.push_str(s.trim());
}

/// The three path parts of the reference `getBaseUrl`, each followed by `/`.
fn url_path(rng: &mut SmallRng) -> String {
    let mut path = String::new();
    for _ in 0..3 {
        pool_string(rng, 5, b'_', &mut path);
        path.push('/');
    }
    path
}

fn price_table() -> &'static [f64; PRICE_TABLE_LEN] {
    static TABLE: OnceLock<[f64; PRICE_TABLE_LEN]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [0.0; PRICE_TABLE_LEN];
        for (i, p) in table.iter_mut().enumerate() {
            *p = 100.0 * 10f64.powf(i as f64 / PRICE_STEPS as f64);
        }
        table
    })
}

impl Pools {
    fn new(seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(mix64(seed ^ POOL_SALT));

        let mut text: Vec<u8> = (0..TEXT_POOL_LEN)
            .map(|_| {
                let r = rng.next_u64();
                if below32(r as u32, 13) == 0 {
                    b' '
                } else {
                    b'a' + below32((r >> 32) as u32, 26) as u8
                }
            })
            .collect();
        text.resize(TEXT_POOL_LEN + SLACK, b' ');

        let mut names = FixedPool::new();
        for first in FIRST_NAMES {
            for last in LAST_NAMES {
                names.push(&format!("{first} {last}"));
            }
        }
        let mut cities = FixedPool::new();
        US_CITIES.iter().for_each(|c| cities.push(c));
        let mut states = FixedPool::new();
        US_STATES.iter().for_each(|s| states.push(s));

        let mut channels = Vec::new();
        for hot in HOT_CHANNELS {
            channels.push(Channel {
                name: chunk16(hot),
                path: chunk16(&url_path(&mut rng)),
                id: chunk16(""),
            });
        }
        for i in 0..CHANNELS_NUMBER {
            let path = url_path(&mut rng);
            // Reference: 9 in 10 urls carry Math.abs(Integer.reverse(i)), which keeps
            // Integer.MIN_VALUE.
            let id = if below64(rng.next_u64(), 10) > 0 {
                i.reverse_bits().cast_signed().wrapping_abs().to_string()
            } else {
                String::new()
            };
            channels.push(Channel {
                name: chunk16(&format!("channel-{i}")),
                path: chunk16(&path),
                id: chunk16(&id),
            });
        }
        let max_url_len = channels.iter().map(Channel::url_len).max().unwrap_or(0);

        Self {
            text,
            names,
            cities,
            states,
            channels,
            max_url_len,
            price: price_table(),
        }
    }

    /// Reference `PriceGenerator.nextPrice`: `round(10^(U·6) · 100)` with `U` uniform in
    /// `[0, 1)`.
    ///
    /// `U · 6 = (m + f) / 512` with `m` uniform in `0..3072` (top 32 bits of `r`) and `f` uniform
    /// in `[0, 1)` (next 24 bits), so `10^(U·6)` is the table entry `m` times `e^t` with
    /// `t = f · ln 10 / 512 < 0.0045`, whose degree-3 Taylor polynomial is within 2e-11.
    #[inline(always)]
    fn price(&self, r: u64) -> i64 {
        let m = below32((r >> 32) as u32, PRICE_TABLE_LEN as u64) as usize;
        let f = ((r >> 8) & 0xff_ffff) as f64;
        let t = f * (LN_10 / PRICE_STEPS as f64 / (1u64 << 24) as f64);
        let e = (1.0 + t) + (t * t) * (1.0 / 2.0 + t * (1.0 / 6.0));
        // Positive, so adding 0.5 and truncating is Java's Math.round.
        (self.price[m.min(PRICE_TABLE_LEN - 1)] * e + 0.5) as i64
    }

    /// Reference `nextString(maxLength)`: 3..maxLength characters of random text, trimmed.
    /// Returns the start in `self.text` and the length.
    #[inline(always)]
    fn string(&self, r: u64, max_len: u64) -> (usize, usize) {
        let len = 3 + below32(r as u32, max_len - 3) as usize;
        let start = below32((r >> 32) as u32, (TEXT_POOL_LEN - len + 1) as u64) as usize;
        let s = &self.text[start..start + len];
        let lead = s.iter().take_while(|&&b| b == b' ').count();
        let trail = s[lead..].iter().rev().take_while(|&&b| b == b' ').count();
        (start + lead, len - lead - trail)
    }
}

/// A Utf8 column being built: zeroed offsets for every row and the bytes so far.
struct StrCol {
    offsets: Vec<i32>,
    data: Vec<u8>,
}

impl StrCol {
    /// A column of `rows` rows holding at most `bytes` bytes.
    fn new(rows: usize, bytes: usize) -> Self {
        Self {
            offsets: vec![0; rows + 1],
            data: Vec::with_capacity(bytes + SLACK),
        }
    }

    /// Appends the first `len` bytes of `chunk`. Copying a whole fixed-size chunk and cutting
    /// it back is faster than a copy of variable length.
    #[inline(always)]
    fn put<const N: usize>(&mut self, chunk: &[u8; N], len: usize) {
        put(&mut self.data, chunk, len);
    }

    /// Appends `src[start..start + len]`, copying `N >= len` bytes from `src`.
    #[inline(always)]
    fn put_from<const N: usize>(&mut self, src: &[u8], start: usize, len: usize) {
        debug_assert!(len <= N);
        let chunk: &[u8; N] = src[start..start + N]
            .try_into()
            .expect("a slice of N bytes");
        put(&mut self.data, chunk, len);
    }

    /// Ends row `row` and the `gap - 1` (null) rows after it, up to the end of the batch.
    /// Batches are capped at `MAX_BATCH_ROWS` rows of at most a few hundred bytes, so offsets
    /// fit in `i32`.
    #[inline(always)]
    fn end(&mut self, row: usize, gap: usize) {
        let hi = (row + 1 + gap).min(self.offsets.len());
        let pos = self.data.len() as i32;
        self.offsets[row + 1..hi].fill(pos);
    }

    fn finish(self, nulls: Option<NullBuffer>) -> ArrayRef {
        string_array(self.offsets, self.data, nulls)
    }
}

/// Appends the first `len` bytes of `chunk` to `data`.
#[inline(always)]
fn put<const N: usize>(data: &mut Vec<u8>, chunk: &[u8; N], len: usize) {
    debug_assert!(len <= N);
    data.extend_from_slice(chunk);
    data.truncate(data.len() - (N - len));
}

/// A Utf8 array of generated strings.
///
/// Every string this module generates is ASCII (constant strings, digits and letters from the
/// pools) and every offsets vector starts at 0 and only grows, ending at `data.len()`; so
/// `StringArray::try_new` cannot fail. Debug builds check that; release builds skip the check,
/// which (a pass over every offset and byte of 11 columns) would take about as long as
/// generating the events: it halves the throughput.
fn string_array(offsets: Vec<i32>, data: Vec<u8>, nulls: Option<NullBuffer>) -> ArrayRef {
    let offsets = ScalarBuffer::from(offsets);
    let values = Buffer::from_vec(data);
    if cfg!(debug_assertions) {
        Arc::new(
            StringArray::try_new(OffsetBuffer::new(offsets), values, nulls)
                .expect("generated strings are ASCII with monotonic offsets"),
        )
    } else {
        // SAFETY: as above, the offsets are non-empty, start at 0, never decrease and end within
        // `values`, and `values` is ASCII, so it is valid UTF-8 split at character boundaries:
        // exactly the conditions `OffsetBuffer::new` and `StringArray::try_new` check.
        unsafe {
            Arc::new(StringArray::new_unchecked(
                OffsetBuffer::new_unchecked(offsets),
                values,
                nulls,
            ))
        }
    }
}

fn int_array(values: Vec<i64>, nulls: Option<NullBuffer>) -> ArrayRef {
    Arc::new(Int64Array::new(ScalarBuffer::from(values), nulls))
}

/// The columns of one batch that are written event by event (`type` and `extra` follow from
/// the event numbers alone). Null slots of the Int64 columns stay 0.
struct Columns {
    id: Vec<i64>,
    name: StrCol,
    email_address: StrCol,
    credit_card: StrCol,
    city: StrCol,
    state: StrCol,
    date_time: Vec<i64>,
    expires: Vec<i64>,
    item_name: StrCol,
    description: StrCol,
    initial_bid: Vec<i64>,
    reserve: Vec<i64>,
    seller: Vec<i64>,
    category: Vec<i64>,
    auction: Vec<i64>,
    bidder: Vec<i64>,
    price: Vec<i64>,
    channel: StrCol,
    url: StrCol,
}

/// Numbers of persons, auctions and bids among events `n0 .. n0 + len`.
fn kind_counts(n0: u64, len: usize) -> (usize, usize, usize) {
    let total = PROPORTION_TOTAL as usize;
    let full = len / total;
    let (mut p, mut a, mut b) = (full, full * 3, full * 46);
    let mut phase = (n0 % PROPORTION_TOTAL) as u32;
    for _ in 0..len % total {
        match phase {
            0 => p += 1,
            1..=LAST_AUCTION_PHASE => a += 1,
            _ => b += 1,
        }
        phase = (phase + 1) % PROPORTION_TOTAL as u32;
    }
    (p, a, b)
}

/// The `type` column of events `n0 .. n0 + len`: a slice of the repeating block pattern.
fn type_column(n0: u64, len: usize) -> ArrayRef {
    /// The `type` values of one block back to back, and the end of each.
    static BLOCK: OnceLock<(Vec<u8>, Vec<i32>)> = OnceLock::new();
    let (bytes, ends) = BLOCK.get_or_init(|| {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for phase in 0..PROPORTION_TOTAL as u32 {
            bytes.extend_from_slice(match phase {
                0 => b"person".as_slice(),
                1..=LAST_AUCTION_PHASE => b"auction",
                _ => b"bid",
            });
            ends.push(bytes.len() as i32);
        }
        (bytes, ends)
    });
    let mut data = Vec::with_capacity(len.div_ceil(PROPORTION_TOTAL as usize) * bytes.len());
    let mut offsets = Vec::with_capacity(len + 1);
    offsets.push(0);
    let mut phase = (n0 % PROPORTION_TOTAL) as usize;
    let mut row = 0;
    while row < len {
        let take = (ends.len() - phase).min(len - row);
        let start = if phase == 0 { 0 } else { ends[phase - 1] };
        let end = ends[phase + take - 1];
        let base = data.len() as i32 - start;
        data.extend_from_slice(&bytes[start as usize..end as usize]);
        offsets.extend(ends[phase..phase + take].iter().map(|&e| base + e));
        row += take;
        phase = 0;
    }
    string_array(offsets, data, None)
}

/// Which rows a validity pattern marks valid.
#[derive(Clone, Copy)]
enum Rows {
    Persons = 0,
    Auctions = 1,
    Bids = 2,
    PersonsAndAuctions = 3,
}

/// Validity of the events `n0 .. n0 + len` for the fields of `rows`.
fn validity(n0: u64, len: usize, rows: Rows) -> NullBuffer {
    static PATTERNS: OnceLock<[[u64; MASK_WORDS]; 4]> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        let mut patterns = [[0; MASK_WORDS]; 4];
        for bit in 0..MASK_WORDS * 64 {
            let phase = (bit as u64 % PROPORTION_TOTAL) as u32;
            let kinds: &[Rows] = match phase {
                0 => &[Rows::Persons, Rows::PersonsAndAuctions],
                1..=LAST_AUCTION_PHASE => &[Rows::Auctions, Rows::PersonsAndAuctions],
                _ => &[Rows::Bids],
            };
            for &k in kinds {
                patterns[k as usize][bit / 64] |= 1 << (bit % 64);
            }
        }
        patterns
    });
    let pattern = &patterns[rows as usize];
    let mut bit = (n0 % MASK_PERIOD as u64) as usize;
    let words: Vec<u64> = (0..len.div_ceil(64))
        .map(|_| {
            let (w, shift) = (bit / 64, bit % 64);
            let word = if shift == 0 {
                pattern[w]
            } else {
                (pattern[w] >> shift) | (pattern[w + 1] << (64 - shift))
            };
            bit += 64;
            if bit >= MASK_PERIOD {
                bit -= MASK_PERIOD;
            }
            word
        })
        .collect();
    NullBuffer::new(BooleanBuffer::new(Buffer::from_vec(words), 0, len))
}

/// Event time: `date_time` of event `n` is `start_ms + floor(n · 1000 / rate)`, kept as quotient
/// and remainder so that advancing needs no division.
#[derive(Clone, Copy)]
struct Clock {
    start_ms: i64,
    rate: u64,
    /// `1000 / rate` and `1000 % rate`.
    step_ms: i64,
    step_rem: u64,
    /// `floor(n · 1000 / rate)` and `n · 1000 % rate` for the next event `n`.
    ms: i64,
    rem: u64,
}

impl Clock {
    /// A `rate` of 0 is taken as 1, and rates beyond 2^62 (where `date_time` stands still
    /// anyway) as 2^62, so that `rem + step_rem` cannot overflow.
    fn new(start_ms: i64, rate: u64) -> Self {
        let rate = rate.clamp(1, 1 << 62);
        Self {
            start_ms,
            rate,
            step_ms: i64::try_from(1000 / rate).expect("1000 / rate is at most 1000"),
            step_rem: 1000 % rate,
            ms: 0,
            rem: 0,
        }
    }

    /// The `date_time` of the next event; moves to the one after.
    #[inline(always)]
    fn tick(&mut self) -> i64 {
        let now = self.start_ms.wrapping_add(self.ms);
        self.ms = self.ms.wrapping_add(self.step_ms);
        self.rem += self.step_rem;
        if self.rem >= self.rate {
            self.rem -= self.rate;
            self.ms = self.ms.wrapping_add(1);
        }
        now
    }

    /// Milliseconds from the next event to the one `events` later.
    fn span_ms(&self, events: u64) -> u64 {
        self.rem.saturating_add(events.saturating_mul(1000)) / self.rate
    }
}

/// Deterministic Nexmark event generator producing Arrow record batches.
pub struct NexmarkGenerator {
    pools: Pools,
    /// Mixed seed; the random stream of block `e` is seeded from `mix64(key ^ e)`.
    key: u64,
    /// Random stream of the current block.
    rng: SmallRng,
    /// Number of the next event.
    next: u64,
    /// Number of events to produce.
    total: u64,
    clock: Clock,
}

impl NexmarkGenerator {
    /// Creates a generator for `config`; builds its string pools (about a millisecond).
    pub fn new(config: &NexmarkConfig) -> Self {
        let key = mix64(config.seed);
        Self {
            pools: Pools::new(config.seed),
            key,
            // Replaced at event 0, the start of the first block.
            rng: SmallRng::seed_from_u64(key),
            next: 0,
            total: config.events,
            clock: Clock::new(config.start_time_ms, config.rate),
        }
    }

    /// The schema every batch has.
    pub fn schema() -> SchemaRef {
        static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
        SCHEMA
            .get_or_init(|| {
                let utf8 = |name: &str| Field::new(name, DataType::Utf8, true);
                let int = |name: &str| Field::new(name, DataType::Int64, true);
                Arc::new(Schema::new(vec![
                    Field::new("type", DataType::Utf8, false),
                    int("id"),
                    utf8("name"),
                    utf8("email_address"),
                    utf8("credit_card"),
                    utf8("city"),
                    utf8("state"),
                    Field::new("date_time", DataType::Int64, false),
                    int("expires"),
                    utf8("item_name"),
                    utf8("description"),
                    int("initial_bid"),
                    int("reserve"),
                    int("seller"),
                    int("category"),
                    int("auction"),
                    int("bidder"),
                    int("price"),
                    utf8("channel"),
                    utf8("url"),
                    utf8("extra"),
                ]))
            })
            .clone()
    }

    /// Next batch of up to `max_rows` events, None when all `events` were produced.
    ///
    /// A `max_rows` of 0 is treated as 1, and batches hold at most 2^20 rows. The events do not
    /// depend on how they are split into batches.
    pub fn next_batch(&mut self, max_rows: usize) -> Option<RecordBatch> {
        let remaining = self.total - self.next;
        if remaining == 0 {
            return None;
        }
        let len = max_rows
            .clamp(1, MAX_BATCH_ROWS)
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n0 = self.next;
        let (persons, auctions, bids) = kind_counts(n0, len);
        let p = &self.pools;
        let mut c = Columns {
            id: vec![0; len],
            name: StrCol::new(len, persons * p.names.max_len()),
            // At most 6 + 1 + 4 + 4 bytes.
            email_address: StrCol::new(len, persons * 15),
            credit_card: StrCol::new(len, persons * 19),
            city: StrCol::new(len, persons * p.cities.max_len()),
            state: StrCol::new(len, persons * 2),
            date_time: vec![0; len],
            expires: vec![0; len],
            item_name: StrCol::new(len, auctions * 19),
            description: StrCol::new(len, auctions * 99),
            initial_bid: vec![0; len],
            reserve: vec![0; len],
            seller: vec![0; len],
            category: vec![0; len],
            auction: vec![0; len],
            bidder: vec![0; len],
            price: vec![0; len],
            channel: StrCol::new(len, bids * 15),
            url: StrCol::new(len, bids * p.max_url_len),
        };
        self.fill(&mut c, len);

        let person = validity(n0, len, Rows::Persons);
        let auction = validity(n0, len, Rows::Auctions);
        let bid = validity(n0, len, Rows::Bids);
        let person_or_auction = validity(n0, len, Rows::PersonsAndAuctions);
        let extra = string_array(vec![0; len + 1], Vec::new(), None);
        let columns = vec![
            type_column(n0, len),
            int_array(c.id, Some(person_or_auction)),
            c.name.finish(Some(person.clone())),
            c.email_address.finish(Some(person.clone())),
            c.credit_card.finish(Some(person.clone())),
            c.city.finish(Some(person.clone())),
            c.state.finish(Some(person)),
            int_array(c.date_time, None),
            int_array(c.expires, Some(auction.clone())),
            c.item_name.finish(Some(auction.clone())),
            c.description.finish(Some(auction.clone())),
            int_array(c.initial_bid, Some(auction.clone())),
            int_array(c.reserve, Some(auction.clone())),
            int_array(c.seller, Some(auction.clone())),
            int_array(c.category, Some(auction)),
            int_array(c.auction, Some(bid.clone())),
            int_array(c.bidder, Some(bid.clone())),
            int_array(c.price, Some(bid.clone())),
            c.channel.finish(Some(bid.clone())),
            c.url.finish(Some(bid)),
            extra,
        ];
        Some(
            RecordBatch::try_new(Self::schema(), columns)
                .expect("columns are built to match the schema"),
        )
    }

    /// Generates events `self.next .. self.next + len` into `c` (sized for `len` rows).
    ///
    /// Each row writes the fields of its own kind. The offsets of null string fields are written
    /// in runs: a person row ends the person fields up to the next person and the bid fields up
    /// to the first bid of its block; the last auction of a block ends the auction fields up to
    /// the next auction. Rows before the first writer of a column in the batch keep offset 0.
    fn fill(&mut self, c: &mut Columns, len: usize) {
        let pools = &self.pools;
        // Local copies, so that they live in registers rather than behind `self`.
        let mut rng = self.rng.clone();
        let mut clock = self.clock;
        let mut epoch = self.next / PROPORTION_TOTAL;
        let mut phase = (self.next % PROPORTION_TOTAL) as u32;
        let mut row = 0;
        while row < len {
            if phase == 0 {
                rng = SmallRng::seed_from_u64(mix64(self.key ^ epoch));
                person(pools, &mut rng, c, row, epoch, clock.tick());
                row += 1;
                phase = 1;
            } else if phase <= LAST_AUCTION_PHASE {
                auction(pools, &mut rng, c, row, epoch, phase, &mut clock);
                row += 1;
                phase += 1;
            } else {
                let run = ((PROPORTION_TOTAL as u32 - phase) as usize).min(len - row);
                bids(pools, &mut rng, c, row, run, epoch, &mut clock);
                row += run;
                phase += run as u32;
                if phase == PROPORTION_TOTAL as u32 {
                    phase = 0;
                    epoch += 1;
                }
            }
        }
        self.next += len as u64;
        self.rng = rng;
        self.clock = clock;
    }
}

/// Reference `nextBase0PersonId` parameters in block `epoch`: the first active person and the
/// number of ids to pick from (the active people plus a few leads).
#[inline(always)]
fn active_people(epoch: u64) -> (u64, u64) {
    // Reference lastBase0PersonId: the person of this block.
    let num_people = epoch + 1;
    let active = num_people.min(NUM_ACTIVE_PEOPLE);
    (num_people - active, active + ID_LEAD)
}

/// Writes the person of block `epoch` at `row` (reference `PersonGenerator.nextPerson`).
fn person(p: &Pools, rng: &mut SmallRng, c: &mut Columns, row: usize, epoch: u64, now: i64) {
    c.date_time[row] = now;
    c.id[row] = (epoch + FIRST_PERSON_ID) as i64;
    let r = rng.next_u64();
    let first = below32(r as u32, FIRST_NAMES.len() as u64);
    let last = below32((r >> 32) as u32, LAST_NAMES.len() as u64);
    let (name, l) = p
        .names
        .get((first * LAST_NAMES.len() as u64 + last) as usize);
    c.name.put(name, l);
    let (s, l) = p.string(rng.next_u64(), 7);
    c.email_address.put_from::<8>(&p.text, s, l);
    c.email_address.put(b"@", 1);
    let (s, l) = p.string(rng.next_u64(), 5);
    c.email_address.put_from::<8>(&p.text, s, l);
    c.email_address.put(b".com", 4);
    let mut card = [b' '; 19];
    for pair in 0..2 {
        let r = rng.next_u64();
        for half in 0..2 {
            let mut v = below32((r >> (32 * half)) as u32, 10_000);
            let at = (pair * 2 + half) * 5;
            for d in card[at..at + 4].iter_mut().rev() {
                *d = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
    }
    c.credit_card.put(&card, card.len());
    let r = rng.next_u64();
    let (city, l) = p
        .cities
        .get(below32(r as u32, US_CITIES.len() as u64) as usize);
    c.city.put(city, l);
    let state = below32((r >> 32) as u32, US_STATES.len() as u64) as usize;
    let (state, l) = p.states.get(state);
    c.state.put(state, l);
    let until_next_person = PROPORTION_TOTAL as usize;
    c.name.end(row, until_next_person);
    c.email_address.end(row, until_next_person);
    c.credit_card.end(row, until_next_person);
    c.city.end(row, until_next_person);
    c.state.end(row, until_next_person);
    let until_first_bid = LAST_AUCTION_PHASE as usize + 1;
    c.channel.end(row, until_first_bid);
    c.url.end(row, until_first_bid);
}

/// Writes auction `phase` (1..=3) of block `epoch` at `row` (reference
/// `AuctionGenerator.nextAuction`).
fn auction(
    p: &Pools,
    rng: &mut SmallRng,
    c: &mut Columns,
    row: usize,
    epoch: u64,
    phase: u32,
    clock: &mut Clock,
) {
    // Reference nextAuctionLengthMs: uniform in 1..=2·horizon, where horizon is the event time
    // until the NUM_IN_FLIGHT_AUCTIONS-th next auction.
    let horizon = clock.span_ms(AUCTION_HORIZON_EVENTS);
    let now = clock.tick();
    c.date_time[row] = now;
    // Reference lastBase0AuctionId for an auction event.
    let id = epoch * AUCTION_PROPORTION + u64::from(phase - 1);
    c.id[row] = (id + FIRST_AUCTION_ID) as i64;
    let r = rng.next_u64();
    // P(hot seller) = 3/4 (hotSellersRatio 4): the first person of the last block of 100.
    let seller = if r & 3 != 0 {
        (epoch / HOT_BLOCK) * HOT_BLOCK
    } else {
        let (first_active, span) = active_people(epoch);
        first_active + below32((r >> 32) as u32, span)
    };
    c.seller[row] = (seller + FIRST_PERSON_ID) as i64;
    c.category[row] = (FIRST_CATEGORY_ID + below24(r >> 8, NUM_CATEGORIES)) as i64;
    let initial_bid = p.price(rng.next_u64());
    c.initial_bid[row] = initial_bid;
    let length = 1 + below64(rng.next_u64(), horizon.saturating_mul(2).max(1));
    c.expires[row] = now.wrapping_add(length.min(i64::MAX as u64) as i64);
    let (s, l) = p.string(rng.next_u64(), 20);
    c.item_name.put_from::<24>(&p.text, s, l);
    let (s, l) = p.string(rng.next_u64(), 100);
    c.description.put_from::<104>(&p.text, s, l);
    c.reserve[row] = initial_bid.wrapping_add(p.price(rng.next_u64()));
    let until_next_auction = if phase == LAST_AUCTION_PHASE {
        PROPORTION_TOTAL as usize - 2
    } else {
        1
    };
    c.item_name.end(row, until_next_auction);
    c.description.end(row, until_next_auction);
}

/// Writes `run` bids of block `epoch` from `row` on (reference `BidGenerator.nextBid`).
fn bids(
    p: &Pools,
    rng: &mut SmallRng,
    c: &mut Columns,
    row: usize,
    run: usize,
    epoch: u64,
    clock: &mut Clock,
) {
    // Reference lastBase0AuctionId for a bid: the last auction of this block.
    let last_auction = epoch * AUCTION_PROPORTION + (AUCTION_PROPORTION - 1);
    let min_auction = last_auction.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
    let auction_span = last_auction - min_auction + 1 + ID_LEAD;
    // The first auction of the last block of 100.
    let hot_auction = (last_auction / HOT_BLOCK) * HOT_BLOCK + FIRST_AUCTION_ID;
    let any_auction = min_auction + FIRST_AUCTION_ID;
    // The second person of the last block of 100, so hot bidders and sellers differ.
    let hot_bidder = (epoch / HOT_BLOCK) * HOT_BLOCK + 1 + FIRST_PERSON_ID;
    let (first_active, people_span) = active_people(epoch);
    let any_bidder = first_active + FIRST_PERSON_ID;

    let rows = row..row + run;
    let date_times = &mut c.date_time[rows.clone()];
    let auctions = &mut c.auction[rows.clone()];
    let bidders = &mut c.bidder[rows.clone()];
    let prices = &mut c.price[rows];
    let channel_ends = &mut c.channel.offsets[row + 1..row + 1 + run];
    let url_ends = &mut c.url.offsets[row + 1..row + 1 + run];
    let (channel_data, url_data) = (&mut c.channel.data, &mut c.url.data);
    let mut local_clock = *clock;
    for k in 0..run {
        date_times[k] = local_clock.tick();
        // r0: bit 0 hot auction, bits 1-2 hot bidder, bit 3 hot channel, bits 4-5 hot channel,
        // bits 8..32 bidder pick, bits 32..64 auction pick. r1: price. r2: channel pick.
        let r0 = rng.next_u64();
        let r1 = rng.next_u64();
        let r2 = rng.next_u64();
        // P(hot auction) = 1/2 (hotAuctionRatio 2); else reference nextBase0AuctionId.
        let any = any_auction + below32((r0 >> 32) as u32, auction_span);
        auctions[k] = select(r0 & 1 != 0, hot_auction, any) as i64;
        // P(hot bidder) = 3/4 (hotBiddersRatio 4); else reference nextBase0PersonId.
        let any = any_bidder + below24(r0 >> 8, people_span);
        bidders[k] = select((r0 >> 1) & 3 != 0, hot_bidder, any) as i64;
        prices[k] = p.price(r1);
        // P(hot channel) = 1/2 (HOT_CHANNELS_RATIO 2); else one of the cached channels.
        let any = HOT_CHANNELS.len() as u64 + below32(r2 as u32, u64::from(CHANNELS_NUMBER));
        let channel = select((r0 >> 3) & 1 != 0, (r0 >> 4) & 3, any) as usize;
        let Channel { name, path, id } = &p.channels[channel];
        put(channel_data, name, usize::from(name[15]));
        channel_ends[k] = channel_data.len() as i32;
        url_data.extend_from_slice(URL_HEAD);
        put(url_data, path, usize::from(path[15]));
        url_data.extend_from_slice(URL_ITEM);
        let id_len = usize::from(id[15]);
        let head_len = if id_len > 0 { URL_CHANNEL_ID_LEN } else { 0 };
        put(url_data, URL_CHANNEL_ID, head_len);
        put(url_data, id, id_len);
        url_ends[k] = url_data.len() as i32;
    }
    *clock = local_clock;
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::compute::concat_batches;
    use arrow::datatypes::Int64Type;

    fn config(events: u64, seed: u64) -> NexmarkConfig {
        NexmarkConfig {
            events,
            seed,
            rate: default_rate(),
            start_time_ms: default_start(),
        }
    }

    /// All batches of a generator, checking each against the schema and the Arrow invariants.
    fn batches(config: &NexmarkConfig, max_rows: usize) -> Vec<RecordBatch> {
        let mut generator = NexmarkGenerator::new(config);
        let mut out = Vec::new();
        while let Some(batch) = generator.next_batch(max_rows) {
            assert!(batch.num_rows() > 0 && batch.num_rows() <= max_rows.max(1));
            assert_eq!(batch.schema(), NexmarkGenerator::schema());
            for column in batch.columns() {
                column.to_data().validate_full().expect("valid Arrow data");
            }
            out.push(batch);
        }
        assert!(generator.next_batch(max_rows).is_none(), "stays exhausted");
        out
    }

    fn generate(config: &NexmarkConfig, max_rows: usize) -> RecordBatch {
        concat_batches(&NexmarkGenerator::schema(), &batches(config, max_rows))
            .expect("batches share the schema")
    }

    fn ints<'a>(batch: &'a RecordBatch, name: &str) -> &'a Int64Array {
        batch
            .column_by_name(name)
            .expect("column exists")
            .as_primitive::<Int64Type>()
    }

    fn strs<'a>(batch: &'a RecordBatch, name: &str) -> &'a StringArray {
        batch
            .column_by_name(name)
            .expect("column exists")
            .as_string::<i32>()
    }

    /// Values of `name` on the rows of kind `kind`.
    fn kind_ints(batch: &RecordBatch, kind: &str, name: &str) -> Vec<i64> {
        let kinds = strs(batch, "type");
        let values = ints(batch, name);
        (0..batch.num_rows())
            .filter(|&i| kinds.value(i) == kind)
            .map(|i| values.value(i))
            .collect()
    }

    fn kind_strs<'a>(batch: &'a RecordBatch, kind: &str, name: &str) -> Vec<&'a str> {
        let kinds = strs(batch, "type");
        let values = strs(batch, name);
        (0..batch.num_rows())
            .filter(|&i| kinds.value(i) == kind)
            .map(|i| values.value(i))
            .collect()
    }

    fn expected_kind(n: u64) -> &'static str {
        match n % 50 {
            0 => "person",
            1..=3 => "auction",
            _ => "bid",
        }
    }

    #[test]
    fn kinds_follow_the_block_pattern() {
        let batch = generate(&config(10_000, 42), 1000);
        let kinds = strs(&batch, "type");
        assert_eq!(kinds.null_count(), 0);
        for block in 0..200 {
            let mut counts = (0, 0, 0);
            for n in block * 50..(block + 1) * 50 {
                let kind = kinds.value(n as usize);
                assert_eq!(kind, expected_kind(n), "event {n}");
                match kind {
                    "person" => counts.0 += 1,
                    "auction" => counts.1 += 1,
                    _ => counts.2 += 1,
                }
            }
            assert_eq!(counts, (1, 3, 46), "block {block}");
        }
    }

    #[test]
    fn ids_start_at_1000_and_are_sequential_per_kind() {
        let batch = generate(&config(10_000, 7), 777);
        let persons = kind_ints(&batch, "person", "id");
        let auctions = kind_ints(&batch, "auction", "id");
        assert_eq!(persons, (1000..1200).collect::<Vec<_>>());
        assert_eq!(auctions, (1000..1600).collect::<Vec<_>>());
    }

    #[test]
    fn same_config_gives_same_events_whatever_the_batch_size() {
        let config = config(10_000, 42);
        let a = generate(&config, 1024);
        let b = generate(&config, 333);
        let c = generate(&config, 1);
        let d = generate(&config, 50_000);
        assert_eq!(a.num_rows(), 10_000);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a, d);
        // Identical bytes too, including the values under nulls.
        for (x, y) in a.columns().iter().zip(b.columns()) {
            assert_eq!(x.to_data().buffers(), y.to_data().buffers());
        }
    }

    #[test]
    fn different_seeds_give_different_events() {
        let a = generate(&config(5_000, 42), 1024);
        let b = generate(&config(5_000, 43), 1024);
        assert_eq!(strs(&a, "type"), strs(&b, "type"));
        assert_eq!(ints(&a, "date_time"), ints(&b, "date_time"));
        for column in [
            "price",
            "bidder",
            "auction",
            "description",
            "url",
            "credit_card",
        ] {
            assert_ne!(
                a.column_by_name(column),
                b.column_by_name(column),
                "column {column}"
            );
        }
        let (pa, pb) = (ints(&a, "price"), ints(&b, "price"));
        let same = (0..a.num_rows())
            .filter(|&i| pa.is_valid(i) && pa.value(i) == pb.value(i))
            .count();
        assert!(same < 50, "{same} equal prices");
    }

    #[test]
    fn date_time_follows_the_rate() {
        for (rate, start) in [
            (10_000, 1_700_000_000_000),
            (7, 0),
            (3_000, -5),
            (1_000_000, 1),
        ] {
            let config = NexmarkConfig {
                events: 3_000,
                seed: 1,
                rate,
                start_time_ms: start,
            };
            let batch = generate(&config, 256);
            let times = ints(&batch, "date_time");
            assert_eq!(times.null_count(), 0);
            for n in 0..3_000u64 {
                let expected = start + (u128::from(n) * 1000 / u128::from(rate)) as i64;
                assert_eq!(times.value(n as usize), expected, "rate {rate} event {n}");
            }
            assert!(times.values().windows(2).all(|w| w[0] <= w[1]));
        }
        // Rate 0 is taken as 1 event per second.
        let batch = generate(
            &NexmarkConfig {
                rate: 0,
                ..config(3, 1)
            },
            10,
        );
        assert_eq!(
            ints(&batch, "date_time").values(),
            &[
                default_start(),
                default_start() + 1000,
                default_start() + 2000
            ]
        );
    }

    #[test]
    fn nulls_exactly_where_the_kind_lacks_the_field() {
        let fields = |kind: &str| -> &'static [&'static str] {
            match kind {
                "person" => &[
                    "type",
                    "id",
                    "name",
                    "email_address",
                    "credit_card",
                    "city",
                    "state",
                    "date_time",
                    "extra",
                ],
                "auction" => &[
                    "type",
                    "id",
                    "item_name",
                    "description",
                    "initial_bid",
                    "reserve",
                    "date_time",
                    "expires",
                    "seller",
                    "category",
                    "extra",
                ],
                _ => &[
                    "type",
                    "auction",
                    "bidder",
                    "price",
                    "channel",
                    "url",
                    "date_time",
                    "extra",
                ],
            }
        };
        // Odd batch sizes start batches at every position in the block.
        for max_rows in [1, 7, 333, 4096] {
            for batch in batches(&config(2_000, 3), max_rows) {
                let kinds = strs(&batch, "type");
                for (field, column) in NexmarkGenerator::schema()
                    .fields()
                    .iter()
                    .zip(batch.columns())
                {
                    for row in 0..batch.num_rows() {
                        let has = fields(kinds.value(row)).contains(&field.name().as_str());
                        assert_eq!(column.is_valid(row), has, "{} row {row}", field.name());
                    }
                }
            }
        }
        let batch = generate(&config(1_000, 3), 100);
        assert!(strs(&batch, "extra").iter().all(|e| e == Some("")));
    }

    #[test]
    fn prices_and_categories_are_in_range() {
        let batch = generate(&config(100_000, 11), 8192);
        let prices = kind_ints(&batch, "bid", "price");
        assert_eq!(prices.len(), 92_000);
        assert!(prices.iter().all(|&p| (100..=100_000_000).contains(&p)));
        // log10(price / 100) is uniform in [0, 6).
        let mean = prices
            .iter()
            .map(|&p| (p as f64 / 100.0).log10())
            .sum::<f64>()
            / 92_000.0;
        assert!((mean - 3.0).abs() < 0.05, "mean decade {mean}");
        assert!(prices.iter().any(|&p| p < 200) && prices.iter().any(|&p| p > 50_000_000));

        let initial = kind_ints(&batch, "auction", "initial_bid");
        let reserve = kind_ints(&batch, "auction", "reserve");
        assert!(initial.iter().all(|&p| (100..=100_000_000).contains(&p)));
        assert!(initial.iter().zip(&reserve).all(|(i, r)| r - i >= 100));

        let categories = kind_ints(&batch, "auction", "category");
        assert!(categories.iter().all(|c| (10..=14).contains(c)));
        for c in 10..=14 {
            let share = categories.iter().filter(|&&x| x == c).count() as f64 / 6000.0;
            assert!((share - 0.2).abs() < 0.03, "category {c}: {share}");
        }
    }

    #[test]
    fn price_matches_the_reference_formula() {
        let pools = Pools::new(1);
        let mut rng = SmallRng::seed_from_u64(5);
        for _ in 0..100_000 {
            let r = rng.next_u64();
            // The U the generator uses.
            let m = below32((r >> 32) as u32, PRICE_TABLE_LEN as u64) as f64;
            let f = ((r >> 8) & 0xff_ffff) as f64 / (1u64 << 24) as f64;
            let u = (m + f) / PRICE_TABLE_LEN as f64;
            let exact = (10f64.powf(u * 6.0) * 100.0).round() as i64;
            let got = pools.price(r);
            assert!((got - exact).abs() <= 1, "{got} vs {exact}");
        }
    }

    #[test]
    fn counts_equal_events() {
        for events in [0, 1, 49, 50, 51, 1234] {
            for max_rows in [0, 1, 50, 64, 1000] {
                let total: usize = batches(&config(events, 9), max_rows)
                    .iter()
                    .map(RecordBatch::num_rows)
                    .sum();
                assert_eq!(total as u64, events, "events {events} max_rows {max_rows}");
            }
        }
        assert!(
            NexmarkGenerator::new(&config(0, 1))
                .next_batch(10)
                .is_none()
        );
    }

    #[test]
    fn hot_keys_and_id_ranges_follow_the_reference() {
        let events = 200_000u64;
        let batch = generate(&config(events, 5), 8192);
        let kinds = strs(&batch, "type");
        let (auction, bidder) = (ints(&batch, "auction"), ints(&batch, "bidder"));
        let seller = ints(&batch, "seller");
        let (mut bids, mut hot_auctions, mut hot_bidders) = (0, 0, 0);
        let (mut auctions, mut hot_sellers) = (0, 0);
        for row in 0..batch.num_rows() {
            let epoch = row as i64 / 50;
            match kinds.value(row) {
                "bid" => {
                    bids += 1;
                    let last_auction = epoch * 3 + 2;
                    let a = auction.value(row) - 1000;
                    assert!(
                        a <= last_auction + 10 && a >= last_auction - 100,
                        "auction {a}"
                    );
                    hot_auctions += i32::from(a == last_auction / 100 * 100);
                    let b = bidder.value(row) - 1000;
                    assert!(b <= epoch + 10 && b >= epoch + 1 - 1000, "bidder {b}");
                    hot_bidders += i32::from(b == epoch / 100 * 100 + 1);
                }
                "auction" => {
                    auctions += 1;
                    let s = seller.value(row) - 1000;
                    assert!(s <= epoch + 10 && s >= epoch + 1 - 1000, "seller {s}");
                    hot_sellers += i32::from(s == epoch / 100 * 100);
                }
                _ => {}
            }
        }
        let share = |n: i32, of: i32| f64::from(n) / f64::from(of);
        assert!((0.49..0.53).contains(&share(hot_auctions, bids)));
        assert!((0.74..0.77).contains(&share(hot_bidders, bids)));
        assert!((0.72..0.79).contains(&share(hot_sellers, auctions)));
    }

    #[test]
    fn strings_look_like_the_reference() {
        let batch = generate(&config(20_000, 8), 4096);
        for name in kind_strs(&batch, "person", "name") {
            let (first, last) = name.split_once(' ').expect("first and last name");
            assert!(
                FIRST_NAMES.contains(&first) && LAST_NAMES.contains(&last),
                "{name}"
            );
        }
        for email in kind_strs(&batch, "person", "email_address") {
            // As in the reference, the user part can be empty (3 spaces, trimmed).
            let (user, host) = email.split_once('@').expect("an @");
            assert!(
                host.ends_with(".com") && user.len() <= 6 && host.len() <= 8,
                "{email}"
            );
        }
        for card in kind_strs(&batch, "person", "credit_card") {
            let groups: Vec<&str> = card.split(' ').collect();
            assert_eq!(groups.len(), 4, "{card}");
            assert!(
                groups
                    .iter()
                    .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_digit()))
            );
        }
        assert!(
            kind_strs(&batch, "person", "city")
                .iter()
                .all(|c| US_CITIES.contains(c))
        );
        assert!(
            kind_strs(&batch, "person", "state")
                .iter()
                .all(|s| US_STATES.contains(s))
        );
        for (text, max) in [("item_name", 19), ("description", 99)] {
            for s in kind_strs(&batch, "auction", text) {
                assert!(s.len() <= max && s.trim() == s, "{text} {s:?}");
                assert!(
                    s.bytes().all(|b| b == b' ' || b.is_ascii_lowercase()),
                    "{s:?}"
                );
            }
        }
        let channels = kind_strs(&batch, "bid", "channel");
        let urls = kind_strs(&batch, "bid", "url");
        let mut hot = 0;
        for (channel, url) in channels.iter().zip(&urls) {
            let rest = url
                .strip_prefix("https://www.nexmark.com/")
                .expect("url head");
            let parts: Vec<&str> = rest.split('/').collect();
            assert_eq!(parts.len(), 4, "{url}");
            assert!(
                parts[..3].iter().all(|p| (3..=4).contains(&p.len())),
                "{url}"
            );
            if HOT_CHANNELS.contains(channel) {
                hot += 1;
                assert_eq!(parts[3], "item.htm?query=1");
            } else {
                let i: u32 = channel
                    .strip_prefix("channel-")
                    .and_then(|i| i.parse().ok())
                    .expect("channel-<n>");
                assert!(i < CHANNELS_NUMBER);
                let id = i.reverse_bits().cast_signed().wrapping_abs();
                let with_id = format!("item.htm?query=1&channel_id={id}");
                assert!(
                    parts[3] == "item.htm?query=1" || parts[3] == with_id,
                    "{url}"
                );
            }
        }
        let share = f64::from(hot) / channels.len() as f64;
        assert!((0.47..0.53).contains(&share), "hot channels {share}");
        assert!(urls.iter().any(|u| u.contains("&channel_id=")));
    }

    #[test]
    fn auctions_expire_within_twice_the_horizon() {
        let batch = generate(&config(50_000, 2), 4096);
        let times = kind_ints(&batch, "auction", "date_time");
        let expires = kind_ints(&batch, "auction", "expires");
        // 1666 events at 10,000 events/s is about 166 ms.
        let lengths: Vec<i64> = times.iter().zip(&expires).map(|(t, e)| e - t).collect();
        assert!(lengths.iter().all(|l| (1..=334).contains(l)), "{lengths:?}");
        let mean = lengths.iter().sum::<i64>() as f64 / lengths.len() as f64;
        assert!((mean - 167.0).abs() < 10.0, "mean length {mean}");
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        use serde::Deserialize;
        use serde::de::value::{Error, MapDeserializer};
        let parse = |pairs: Vec<(&'static str, u64)>| {
            NexmarkConfig::deserialize(MapDeserializer::<_, Error>::new(pairs.into_iter()))
        };
        let c = parse(vec![("events", 5)]).expect("events alone is enough");
        assert_eq!(
            (c.events, c.seed, c.rate, c.start_time_ms),
            (5, 42, 10_000, 1_700_000_000_000)
        );
        let c = parse(vec![
            ("events", 5),
            ("seed", 1),
            ("rate", 2),
            ("start_time_ms", 3),
        ])
        .expect("all fields");
        assert_eq!((c.events, c.seed, c.rate, c.start_time_ms), (5, 1, 2, 3));
        assert!(parse(vec![("events", 5), ("speed", 1)]).is_err());
        assert!(parse(vec![("seed", 1)]).is_err());
    }
}
