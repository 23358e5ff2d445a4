#![no_main]
//! See `ciba_fuzz::qr_jwe`.
libfuzzer_sys::fuzz_target!(
    init: {
        // Keys and the store state, before the first input's timeout starts.
        ciba_fuzz::world();
    },
    |data: &[u8]| {
        let _ = ciba_fuzz::qr_jwe(data);
    }
);
