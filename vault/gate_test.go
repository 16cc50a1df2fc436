package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
)

// Gate is asked once per segment, in order, before the segment's plaintext is released, with
// last set for the final one (an empty object has one, empty); an error stops the stream
// exactly at that boundary, through Read and through WriteTo.
func TestGateAtEverySegment(t *testing.T) {
	kp := newKeyring(t)
	errStop := errors.New("grant ended")
	for _, n := range []int{0, 1, seg, seg + 1, 3*seg + 17} {
		plain := random(n)
		h, ct := encrypt(t, kp, "weights/frontier-7", 1, plain)
		segments := int(CiphertextSize(int64(n), seg)+seg+TagSize-1) / (seg + TagSize)
		for stopAt := 0; stopAt <= segments; stopAt++ {
			for _, via := range []string{"Read", "WriteTo"} {
				r, err := Decrypt(context.Background(), kp, h, bytes.NewReader(ct))
				if err != nil {
					t.Fatal(err)
				}
				var asked []string
				r.Gate = func(i uint32, last bool) error {
					asked = append(asked, fmt.Sprintf("%d/%v", i, last))
					if int(i) == stopAt {
						return errStop
					}
					return nil
				}
				var out bytes.Buffer
				if via == "Read" {
					_, err = out.ReadFrom(struct{ io.Reader }{r}) // hides WriteTo
				} else {
					_, err = r.WriteTo(&out)
				}
				wantLen := min(stopAt*seg, n)
				switch {
				case stopAt < segments && !errors.Is(err, errStop):
					t.Fatalf("%d bytes, stop at %d, %s: %v, want the gate's error", n, stopAt, via, err)
				case stopAt == segments && err != nil:
					t.Fatalf("%d bytes, %s: %v", n, via, err)
				case out.Len() != wantLen || !bytes.Equal(out.Bytes(), plain[:wantLen]):
					t.Fatalf("%d bytes, stop at %d, %s: released %d bytes, want %d", n, stopAt, via, out.Len(), wantLen)
				}
				var want []string
				for i := 0; i < min(stopAt+1, segments); i++ {
					want = append(want, fmt.Sprintf("%d/%v", i, i == segments-1))
				}
				if fmt.Sprint(asked) != fmt.Sprint(want) {
					t.Fatalf("%d bytes, stop at %d, %s: gate asked %v, want %v", n, stopAt, via, asked, want)
				}
			}
		}
	}
}
