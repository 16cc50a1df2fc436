package policy

import (
	"math/rand/v2"
	"testing"

	"cel.dev/cel-go/common/types"
)

// TestNativeMatchesCEL: on random events, every condition the native matcher compiles gives
// CEL's answer.
func TestNativeMatchesCEL(t *testing.T) {
	conds := []string{
		`event.code == "weights.read" && event.actor.startsWith("u1")`,
		`event.code in ["a", "b"] || !(event.actor in ["u1", "u2"])`,
		`event.resources.exists(x, x.contains("/m3/") || x == "r1") && event.dst_port >= 443`,
		`event.dst_host.endsWith(".d3.example") && event.message.matches("(?si)^.*ck.*$")`,
		`!event.failed && event.bytes_out > 100 && event.dst_port in [443, 8443] && event.seq != 7`,
		`"weights.read" == event.code && true`,
		`event.privileges.exists(p, p.matches("^r[0-9]$"))`,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	for _, c := range conds {
		d, err := compileDetection(c)
		if err != nil {
			t.Fatal(err)
		}
		if d.native == nil {
			t.Fatalf("%s: not compiled natively", c)
		}
		for i := range 5000 {
			ev := &DetectionEvent{Seq: int64(rng.IntN(10)), Code: pick("a", "b", "weights.read", "c"), Actor: pick("u1", "u12", "u2", "x"),
				Resources: []string{pick("r1", "frontier/m3/c", "r2")}[:rng.IntN(2)], Privileges: []string{pick("r1", "rr", "r9")},
				DstPort: []int{80, 443, 8443}[rng.IntN(3)], DstHost: pick("a.d3.example", "b.d4.example", ""), Message: pick("check", "CK", "none"),
				Failed: rng.IntN(2) == 0, BytesOut: int64(rng.IntN(200))}
			var a EventActivation
			a.Reset(ev)
			out, _, err := d.prg.Eval(&a)
			if err != nil {
				t.Fatal(err)
			}
			want := out.(types.Bool) == types.True
			if got := d.native(ev, ""); got != bool(want) {
				t.Fatalf("%s on event %d %+v: native %v, CEL %v", c, i, ev, got, want)
			}
		}
	}
}
