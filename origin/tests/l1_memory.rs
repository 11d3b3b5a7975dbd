//! L1's byte bound against the memory the process really allocates: entries with the longest
//! keys the shared parameter bounds allow and the most tags a page carries, many more than
//! fit, must leave L1 holding no more than `L1_MAX_BYTES` beyond the entry table it allocates
//! up front (its stated overhead, measured here too).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    num::NonZeroUsize,
    sync::{
        atomic::{AtomicIsize, Ordering},
        Arc,
    },
};

use axum::http::{HeaderValue, StatusCode};
use bytes::Bytes;
use forecastin_origin::cache::l1::{Rendered, L1};
use forecastin_shared::{
    ids::MAX_ID_LEN,
    params::MAX_CURSOR_CHARS,
    tags::{self, MAX_ITEM_TAGS},
};

/// Counts the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The longest id.
fn id(n: usize) -> String {
    format!("{n:0width$}", width = MAX_ID_LEN)
}

/// A page of descendants as heavy in keys and tags as the bounds allow, with a small body:
/// the case where bookkeeping, not bodies, fills the cache.
fn heaviest_page(n: usize) -> (String, Arc<Rendered>) {
    let cursor = "A".repeat(MAX_CURSOR_CHARS);
    let key = format!(
        "descendants/{}?max_depth=32&limit=500&cursor={cursor}",
        id(n)
    );
    let ancestors: Vec<String> = (0..32).map(|level| id(1_000_000 + level)).collect();
    let listed: Vec<String> = (0..MAX_ITEM_TAGS)
        .map(|item| id(n * 1_000 + item))
        .collect();
    let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
    let tags = tags::for_descendants_page(&id(n), ancestors.iter().map(String::as_str), &listed);
    let rendered = Rendered {
        status: StatusCode::OK,
        body: Bytes::from(format!(r#"{{"items":[],"next_cursor":"{n}"}}"#)),
        etag: HeaderValue::from_str(&format!("\"{n:064x}\"")).unwrap(),
        cache_tag: HeaderValue::from_str(&tags::cache_tag_header(&tags)).unwrap(),
        surrogate_key: HeaderValue::from_str(&tags::surrogate_key_header(&tags)).unwrap(),
        tags,
        preloads: None,
    };
    (key, Arc::new(rendered))
}

#[test]
fn real_memory_stays_within_the_byte_bound() {
    const MAX_BYTES: usize = 16 * 1024 * 1024;
    const CAPACITY: usize = 50_000;
    let (_, sample) = heaviest_page(0);
    assert!(
        sample.tags.len() > MAX_ITEM_TAGS,
        "the page carries the most tags: {}",
        sample.tags.len()
    );
    drop(sample);

    let before = live();
    let cache = L1::new(NonZeroUsize::new(CAPACITY).unwrap(), MAX_BYTES);
    let table = live() - before;
    let mut most = 0;
    for n in 0..2_000 {
        let (key, page) = heaviest_page(n);
        let epoch = cache.epoch();
        cache.insert_if_current(key, page, epoch);
        most = most.max(live() - before - table);
    }
    let held = live() - before - table;
    println!(
        "L1 of {MAX_BYTES} B: {} entries, counted {} B, allocated {held} B (most {most} B), \
         entry table {table} B",
        cache.len(),
        cache.bytes()
    );
    assert!(
        cache.len() >= 50,
        "the bound admits a fair number of entries"
    );
    assert!(
        cache.bytes() <= MAX_BYTES,
        "the counter keeps to the bound: {}",
        cache.bytes()
    );
    assert!(
        most <= MAX_BYTES as isize,
        "real memory beyond the entry table ({most} B) stays within {MAX_BYTES} B"
    );
    assert!(
        held as usize <= cache.bytes(),
        "the counter ({} B) is not below what the entries hold ({held} B)",
        cache.bytes()
    );
}
