//! Entry points for the fuzz targets (`fuzz/`) and the property tests: the code that reads
//! client bytes, reachable from outside the crate. Not part of the API.
