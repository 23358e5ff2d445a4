#![no_main]
//! See `ciba_fuzz::device_api`.
libfuzzer_sys::fuzz_target!(
    init: {
        // Keys and the store state, before the first input's timeout starts.
        ciba_fuzz::world();
    },
    |data: &[u8]| {
        let _ = ciba_fuzz::device_api(data);
    }
);
