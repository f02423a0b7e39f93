package dpmm

import "math"

// expf is a float32 exp accurate to about 2 ulp (Cephes expf: range reduction by
// ln 2 split in two parts, degree-5 polynomial). Responsibilities need N*K of
// these per step, and math.Exp in float64 costs three times as much.
func expf(x float32) float32 {
	switch {
	case x < -87.3:
		return 0 // also -Inf: a component of weight 0
	case x > 88.7:
		return float32(math.Inf(1))
	case x != x:
		return x
	}
	z := x * 1.44269504088896341
	var n float32
	if z >= 0 {
		n = float32(int32(z + 0.5))
	} else {
		n = float32(int32(z - 0.5))
	}
	r := x - n*0.693359375 - n*(-2.12194440e-4)
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	y := p*r*r + r + 1
	if n > 127 { // e^x just below the float32 maximum: scale in two steps
		n--
		y *= 2
	}
	return y * math.Float32frombits(uint32(int32(n)+127)<<23)
}
