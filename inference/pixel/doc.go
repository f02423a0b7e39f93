// Package pixel is the boundary where untrusted pixel bytes arrive: it checks
// a Part-10 file's structure with a bounded walk before any parser trusts its
// lengths, and turns its pixel data (native, RLE, JPEG baseline, JPEG
// lossless, JPEG-LS) into Slices of stored values with the header fields
// preprocessing needs. Every codec is written here, guarded against expansion
// and truncation, with its fuzz target and benchmark. It knows nothing of the
// model, NATS or the node's stages; errors say whether a file is invalid,
// unsupported or has bad pixels, so a caller can quarantine it.
package pixel
