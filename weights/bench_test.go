package weights_test

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// BenchmarkDownload measures a whole download through the vault (read from the filesystem
// store, decrypted, verified, grant re-checked at every segment of 1 MiB) into io.Discard,
// through Read (as the API's io.Copy into the response does) and through WriteTo.
func BenchmarkDownload(b *testing.B) {
	e := newEnv(b)
	e.v.SegmentSize = 0 // the default, 1 MiB
	e.grant("alice", "weights-writer-frontier-7", 8*time.Hour)
	const size = 64 << 20
	if _, err := e.v.Put(e.ctx, person("alice"), "frontier-7", bytes.NewReader(random(size))); err != nil {
		b.Fatal(err)
	}
	for _, via := range []string{"Read", "WriteTo"} {
		b.Run(via, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				dl, err := e.v.Get(e.ctx, person("alice"), "frontier-7", 0)
				if err != nil {
					b.Fatal(err)
				}
				var n int64
				if via == "Read" {
					n, err = io.Copy(io.Discard, struct{ io.Reader }{dl})
				} else {
					n, err = io.Copy(io.Discard, dl)
				}
				if err != nil || n != size {
					b.Fatal(n, err)
				}
				_ = dl.Close()
			}
		})
	}
}
