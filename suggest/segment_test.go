package suggest

import (
	"slices"
	"testing"
)

// FuzzScanASCII: the byte-wise scanner for ASCII text cuts exactly as the general one.
func FuzzScanASCII(f *testing.F) {
	for _, s := range []string{"Read the Frontier-7 weights, don't write", "api.openai.com:443 p.s. x'", "a--b .c. d_ e/f:g", "'x' ,;.!?:"} {
		f.Add(s)
	}
	seg := defaultSegmenter()
	f.Fuzz(func(t *testing.T, text string) {
		if !ascii(text) {
			return
		}
		if a, b := scanASCII(text), seg.scanRunes(text); !slices.Equal(a, b) {
			t.Fatalf("%q: ascii %v, runes %v", text, a, b)
		}
	})
}
