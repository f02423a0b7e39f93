package synth

import (
	"crypto/sha256"
	"encoding/binary"

	"anomalynode/internal/dcm"
)

// deriveUID returns "2.25." followed by a 128-bit integer hashed from the
// seed and the parts naming the UID's role, so the same seed always gives the
// same UIDs and different seeds or roles give different ones.
func deriveUID(seed uint64, parts ...string) string {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seed)
	h.Write([]byte("anomalynode/synth/uid\x00"))
	h.Write(b[:])
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return dcm.UUIDUID(h.Sum(nil)[:16])
}

// seedFor derives an independent random stream seed from the seed and parts.
func seedFor(seed uint64, parts ...string) (uint64, uint64) {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seed)
	h.Write([]byte("anomalynode/synth/rng\x00"))
	h.Write(b[:])
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	sum := h.Sum(nil)
	return binary.BigEndian.Uint64(sum[0:]), binary.BigEndian.Uint64(sum[8:])
}
