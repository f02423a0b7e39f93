package dcm

import (
	"crypto/sha256"
	"math/big"
	"strconv"
)

// DeriveUID returns a UID of the form 2.25.<128-bit decimal> derived from
// namespace and parts (PS3.5 B.2). It is built like a name-based UUID (RFC
// 9562 version 5, here with SHA-256 truncated to 128 bits and the version
// and variant bits set), so the same parts always give the same UID and
// different parts (or namespaces) give different UIDs with overwhelming
// probability. The namespace separates one producer's UIDs from anyone else
// hashing the same strings; it is part of every UID, so it never changes.
func DeriveUID(namespace string, parts ...string) string {
	h := sha256.New()
	h.Write([]byte(namespace))
	for _, p := range parts {
		// Length-prefixing makes ("ab","c") and ("a","bc") hash differently.
		h.Write([]byte{0})
		h.Write([]byte(strconv.Itoa(len(p))))
		h.Write([]byte{':'})
		h.Write([]byte(p))
	}
	sum := h.Sum(nil)[:16]
	sum[6] = sum[6]&0x0f | 0x50 // version 5 (name-based)
	sum[8] = sum[8]&0x3f | 0x80 // RFC 4122/9562 variant
	return UUIDUID(sum)
}

// UUIDUID returns the UID 2.25.<decimal> of a 128-bit value (big endian, at
// most 16 bytes), the UUID-derived form of PS3.5 B.2. Zero, which is not a
// valid UID component there, becomes 1.
func UUIDUID(b []byte) string {
	n := new(big.Int).SetBytes(b)
	if n.Sign() == 0 {
		n.SetInt64(1)
	}
	return "2.25." + n.String()
}
