package bench

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"

	"rampart.dev/rampart/bench/vaultfile"
	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/vault/blob/azure"
)

// The weights-vault comparison (issue #6): Rampart's streaming encryption (package vault:
// AES-256-GCM over 1 MiB segments) against age v1.3.2 (ChaCha20-Poly1305 over 64 KiB chunks,
// X25519 recipient), the command and the library, each in the same run; against raw
// AES-256-GCM over the same buffers (the single-core limit); its peak resident memory while
// streaming 10 GiB; and the blob store's throughput against Azurite. See README.md.
//
// Sizes: $RAMPART_BENCH_VAULT_MIB (default 1024) for the in-memory and file comparisons,
// $RAMPART_BENCH_VAULT_STREAM_GIB (default 10) for the memory measurement,
// $RAMPART_BENCH_VAULT_AZURE_MIB (default 256) for the blob store; $RAMPART_BENCH_VAULT_ROUNDS
// (default 3) rounds per target, in rotating order, of which the median counts. The binaries
// are $VAULTFILE_BIN or bin/vaultfile and $AGE_BIN or bin/age (run.sh builds both).

// Targets from the issue.
const (
	vaultAgeTarget = 1.5      // Rampart ÷ age throughput, at least
	vaultRawTarget = 0.80     // Rampart ÷ raw AES-256-GCM throughput, at least
	vaultRSSTarget = 64 << 10 // peak resident memory streaming 10 GiB, KiB, below
)

func vaultBytes() int64       { return int64(envInt("RAMPART_BENCH_VAULT_MIB", 1024)) << 20 }
func vaultStreamBytes() int64 { return int64(envInt("RAMPART_BENCH_VAULT_STREAM_GIB", 10)) << 30 }
func vaultAzureBytes() int64  { return int64(envInt("RAMPART_BENCH_VAULT_AZURE_MIB", 256)) << 20 }
func vaultRounds() int        { return envInt("RAMPART_BENCH_VAULT_ROUNDS", 3) }

// vaultEnv is what every vault benchmark needs: a local keyring, an age identity, both
// written to files for the subprocesses, and the two binaries.
type vaultEnv struct {
	dir       string
	keyring   string
	kp        *vault.LocalProvider
	ageID     *age.X25519Identity
	ageIDFile string
	vaultBin  string
	ageBin    string
}

func newVaultEnv(tb testing.TB) *vaultEnv {
	tb.Helper()
	env := &vaultEnv{dir: tb.TempDir()}
	env.keyring = filepath.Join(env.dir, "keyring.json")
	var err error
	if env.kp, err = vault.InitLocalKeyring(env.keyring); err != nil {
		tb.Fatal(err)
	}
	if env.ageID, err = age.GenerateX25519Identity(); err != nil {
		tb.Fatal(err)
	}
	env.ageIDFile = filepath.Join(env.dir, "age-identity.txt")
	if err := os.WriteFile(env.ageIDFile, []byte(env.ageID.String()+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	bin := func(env, name, build string) string {
		p := os.Getenv(env)
		if p == "" {
			p = filepath.Join("bin", name)
		}
		if _, err := os.Stat(p); err != nil {
			tb.Fatalf("the %s binary is missing (%v); build it with: %s (run.sh does)", name, err, build)
		}
		abs, _ := filepath.Abs(p)
		return abs
	}
	env.vaultBin = bin("VAULTFILE_BIN", "vaultfile", "go build -o bin/vaultfile ./cmd/vaultfile")
	env.ageBin = bin("AGE_BIN", "age", "go build -o bin/age filippo.io/age/cmd/age")
	return env
}

// A vaultOp is one timed operation of a target, with what must be done first, untimed.
type vaultOp struct {
	name    string
	run     func() (procStats, error)
	prepare func()
}

// procStats is what a subprocess used (zero for in-process operations).
type procStats struct {
	cpu    time.Duration
	maxRSS int64 // KiB
}

// runProc runs a command to completion and returns its CPU time and peak resident memory.
func runProc(name string, args ...string) (procStats, error) {
	st, _, err := runProcOutput(name, args...)
	return st, err
}

// runProcOutput is runProc that also returns the command's standard output.
//
// The peak resident memory is the child's VmHWM, read from /proc/PID/status every 5 ms while
// it runs (the value is a high-water mark, so the last reading is the peak up to a few
// milliseconds before exit). The kernel's own figure (getrusage / wait4 ru_maxrss) cannot be
// used here: Go starts children with vfork, and exec carries the parent's high-water mark into
// the child's, so every child would report this (large) test process's peak.
func runProcOutput(name string, args ...string) (procStats, []byte, error) {
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return procStats{}, nil, err
	}
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	done := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		var hwm int64
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if b, err := os.ReadFile(status); err == nil {
				hwm = max(hwm, statusKiB(b, "VmHWM:"))
			}
			select {
			case <-done:
				peak <- hwm
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	st := procStats{maxRSS: <-peak}
	if err != nil {
		return st, nil, fmt.Errorf("%s %s: %v: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	st.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return st, stdout.Bytes(), nil
}

// statusKiB returns a "Field:   123 kB" value of /proc/PID/status, or 0.
func statusKiB(status []byte, field string) int64 {
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, field); ok {
			var n int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &n)
			return n
		}
	}
	return 0
}

// selfCPU is this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// vaultSample is one timed operation's outcome.
type vaultSample struct {
	mbps   float64 // plaintext MB (10^6 bytes) per second
	cpu    time.Duration
	maxRSS int64
}

// Results of the vault benchmarks, keyed "part/op/target"; guarded by resultsMu.
var (
	vaultResults = map[string][]vaultSample{}
	vaultLines   []string
)

func vaultRecord(key string, s vaultSample) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	vaultResults[key] = append(vaultResults[key], s)
}

func vaultMedian(key string) float64 {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	var xs []float64
	for _, s := range vaultResults[key] {
		xs = append(xs, s.mbps)
	}
	return median(xs)
}

func vaultHave(key string) bool {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	return len(vaultResults[key]) > 0
}

// vaultMetrics are the metrics each benchmark without sub-benchmarks reported, by name; guarded
// by resultsMu. The framework calls a benchmark again, with a larger b.N, when a call took
// less than -benchtime: the measurement runs once and later calls report the same numbers.
var vaultMetrics = map[string][]vaultMetric{}

type vaultMetric struct {
	value float64
	unit  string
}

// vaultReplay reports what b measured before and returns true, or marks b as measured and
// returns false on its first call.
func vaultReplay(b *testing.B) bool {
	resultsMu.Lock()
	ms, done := vaultMetrics[b.Name()]
	if !done {
		vaultMetrics[b.Name()] = nil
	}
	resultsMu.Unlock()
	if done {
		b.ReportMetric(0, "ns/op")
		for _, m := range ms {
			b.ReportMetric(m.value, m.unit)
		}
	}
	return done
}

// vaultReport reports a metric and keeps it for vaultReplay.
func vaultReport(b *testing.B, value float64, unit string) {
	b.ReportMetric(value, unit)
	resultsMu.Lock()
	defer resultsMu.Unlock()
	vaultMetrics[b.Name()] = append(vaultMetrics[b.Name()], vaultMetric{value, unit})
}

func vaultLine(format string, args ...any) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	vaultLines = append(vaultLines, fmt.Sprintf(format, args...))
}

// printVault prints and clears the summary, with how busy the machine was since mach0 and how
// much of it this process and its waited-for children took since own0.
func printVault(title string, mach0 cpuTicks, own0 int64) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	fmt.Printf("\n=== %s ===\n", title)
	fmt.Printf("machine: %d CPUs (GOMAXPROCS %d), %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), loadAverage())
	for _, l := range vaultLines {
		fmt.Println(l)
	}
	vaultLines = nil
	if mach1, own1 := machineCPU(), ownCPU(); mach1.total > mach0.total {
		total, busy, own := float64(mach1.total-mach0.total), mach1.busy-mach0.busy, own1-own0
		fmt.Printf("machine CPU during this benchmark: %.0f%% busy, of which this process and its children %.0f%% and other processes %.0f%%; %.1f%% stolen by the hypervisor\n",
			100*float64(busy)/total, 100*float64(own)/total, 100*float64(max(0, busy-own))/total, 100*float64(mach1.steal-mach0.steal)/total)
	}
	fmt.Println()
}

// runVaultRounds runs every op vaultRounds times in rotating order, timing each, and records
// the plaintext MB/s under part/op. check, if not nil, runs untimed after each op.
func runVaultRounds(b *testing.B, part string, n int64, ops []vaultOp, check func(op string) error) {
	b.Helper()
	for round := range vaultRounds() {
		for j := range ops {
			op := ops[(round+j)%len(ops)]
			if op.prepare != nil {
				op.prepare()
			}
			runtime.GC()
			cpu0 := selfCPU()
			t0 := time.Now()
			st, err := op.run()
			d := time.Since(t0)
			if err != nil {
				b.Fatalf("%s %s: %v", part, op.name, err)
			}
			if st.cpu == 0 {
				st.cpu = selfCPU() - cpu0
			}
			vaultRecord(part+"/"+op.name, vaultSample{mbps: float64(n) / 1e6 / d.Seconds(), cpu: st.cpu, maxRSS: st.maxRSS})
			if check != nil {
				if err := check(op.name); err != nil {
					b.Fatalf("%s %s: %v", part, op.name, err)
				}
			}
		}
	}
}

// vaultRow prints one target's median and rounds, with its ratio to a reference if given.
func vaultRow(part, op, label string) string {
	resultsMu.Lock()
	ss := vaultResults[part+"/"+op]
	resultsMu.Unlock()
	if len(ss) == 0 {
		return ""
	}
	var rounds []string
	var xs []float64
	var cpu time.Duration
	var rss int64
	for _, s := range ss {
		rounds = append(rounds, fmt.Sprintf("%.0f", s.mbps))
		xs = append(xs, s.mbps)
		cpu += s.cpu
		rss = max(rss, s.maxRSS)
	}
	line := fmt.Sprintf("vault %-52s %6.0f MB/s  cpu %5.2fs  rounds [%s]", label, median(xs), (cpu / time.Duration(len(ss))).Seconds(), strings.Join(rounds, " "))
	if rss > 0 {
		line += fmt.Sprintf("  peak RSS %.1f MiB", float64(rss)/1024)
	}
	return line
}

// vaultRatio prints a ratio of medians against its target ("x" or "%").
func vaultRatio(what string, num, den string, target float64, pct bool) string {
	r := vaultMedian(num) / vaultMedian(den)
	if pct {
		return fmt.Sprintf("vault %s = %.0f%% (target >= %.0f%%: %s)", what, 100*r, 100*target, verdict(r >= target))
	}
	return fmt.Sprintf("vault %s = %.2fx (target >= %.1fx: %s)", what, r, target, verdict(r >= target))
}

// ---------------------------------------------------------------------------------------------
// Agreement

// TestVaultPeersAgree checks, before any number is believed, that every path the benchmarks
// time encrypts and decrypts correctly, file to file, on plaintexts of 0 bytes, one segment,
// and several segments plus a partial one: the vaultfile command and the age command, both
// libraries in process, and each tool's command and library on each other's ciphertexts; that
// every path refuses a ciphertext with one bit flipped; and that the streaming runs that
// measure memory round-trip.
func TestVaultPeersAgree(t *testing.T) {
	env := newVaultEnv(t)
	ctx := context.Background()
	// The four ways to encrypt and decrypt that the benchmarks time.
	cmd := func(name string, args ...string) error { _, err := runProc(name, args...); return err }
	rampartCmdEnc := func(in, out string) error { return cmd(env.vaultBin, "encrypt", "-keyring", env.keyring, in, out) }
	rampartCmdDec := func(in, out string) error { return cmd(env.vaultBin, "decrypt", "-keyring", env.keyring, in, out) }
	rampartLibEnc := func(in, out string) error { _, err := vaultfile.EncryptFile(ctx, env.kp, in, out); return err }
	rampartLibDec := func(in, out string) error { _, err := vaultfile.DecryptFile(ctx, env.kp, in, out); return err }
	ageCmdEnc := func(in, out string) error {
		return cmd(env.ageBin, "-r", env.ageID.Recipient().String(), "-o", out, in)
	}
	ageCmdDec := func(in, out string) error { return cmd(env.ageBin, "-d", "-i", env.ageIDFile, "-o", out, in) }
	ageLibEnc := func(in, out string) error { return vaultfile.AgeEncryptFile(env.ageID.Recipient(), in, out) }
	ageLibDec := func(in, out string) error { _, err := vaultfile.AgeDecryptFile(env.ageID, in, out); return err }
	type encDec = func(in, out string) error
	pairs := []struct {
		name     string
		enc, dec encDec
	}{
		{"rampart command", rampartCmdEnc, rampartCmdDec},
		{"rampart library", rampartLibEnc, rampartLibDec},
		{"rampart command → library", rampartCmdEnc, rampartLibDec},
		{"rampart library → command", rampartLibEnc, rampartCmdDec},
		{"age command", ageCmdEnc, ageCmdDec},
		{"age library", ageLibEnc, ageLibDec},
		{"age command → library", ageCmdEnc, ageLibDec},
		{"age library → command", ageLibEnc, ageCmdDec},
	}
	for _, size := range []int{0, vault.DefaultSegmentSize, 3*vault.DefaultSegmentSize + 12345} {
		plain := make([]byte, size)
		_, _ = rand.NewChaCha8([32]byte{byte(size)}).Read(plain)
		in := filepath.Join(env.dir, fmt.Sprintf("plain-%d", size))
		if err := os.WriteFile(in, plain, 0o600); err != nil {
			t.Fatal(err)
		}
		for i, p := range pairs {
			ct, out := fmt.Sprintf("%s.ct%d", in, i), fmt.Sprintf("%s.out%d", in, i)
			if err := p.enc(in, ct); err != nil {
				t.Fatalf("%d bytes, %s: encrypt: %v", size, p.name, err)
			}
			if err := p.dec(ct, out); err != nil {
				t.Fatalf("%d bytes, %s: decrypt: %v", size, p.name, err)
			}
			if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, plain) {
				t.Errorf("%d bytes, %s: the plaintext differs (%d bytes, %v)", size, p.name, len(got), err)
			}
			flipByte(t, ct)
			if err := p.dec(ct, out+".bad"); err == nil {
				t.Errorf("%d bytes, %s: decrypted a ciphertext with a flipped bit without an error", size, p.name)
			}
		}
	}
	for _, tool := range []string{"rampart", "age"} {
		_, out, err := runProcOutput(env.vaultBin, "stream", "-tool", tool, "-keyring", env.keyring, "-identity", env.ageIDFile, "-size", fmt.Sprint(3<<20+5))
		var res vaultfile.StreamResult
		if err == nil {
			err = json.Unmarshal(out, &res)
		}
		if err != nil || res.Bytes != 3<<20+5 || res.RoundTripPeakKiB <= 0 {
			t.Errorf("vaultfile stream -tool %s: %+v, %v", tool, res, err)
		}
	}
}

// flipByte inverts one bit in the middle of a file (after any header).
func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		t.Fatalf("flip a byte of %s: %v", path, err)
	}
	b[len(b)*2/3] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------------------------------------
// In memory: the libraries against raw AEADs over the same buffers

// onlyReader and onlyWriter hide WriteTo and ReadFrom, so io.Copy moves data as it does
// between files and network bodies: in 32 KiB reads and writes.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

// memSink appends into a preallocated buffer (a ciphertext kept for the decrypt benchmarks).
type memSink struct{ b []byte }

func (m *memSink) Write(p []byte) (int, error) { m.b = append(m.b, p...); return len(p), nil }

// vaultMem holds the buffers of the in-memory comparison: about 4 × the plaintext size.
type vaultMem struct {
	plain     []byte
	raw       []byte // raw AEAD output, also the raw decrypt's input
	rawLayout string // what raw holds: "gcm-1MiB", "chacha-64KiB", ...
	scratch   []byte
	rampart   memSink
	rampartH  *vault.Header
	age       memSink
	gcm       cipher.AEAD
	chacha    cipher.AEAD
}

var (
	vaultMemOnce sync.Once
	vaultMemData *vaultMem
)

// vaultMemFor builds the buffers once per test binary: the plaintext (ChaCha8 bytes) and a
// Rampart and an age ciphertext of it, so that the decrypt benchmark can run alone.
func vaultMemFor(b *testing.B, env *vaultEnv) *vaultMem {
	vaultMemOnce.Do(func() {
		n := vaultBytes()
		m := &vaultMem{plain: make([]byte, n), scratch: make([]byte, 0, vault.DefaultSegmentSize+16)}
		_, _ = rand.NewChaCha8([32]byte{'p', 'l', 'a', 'i', 'n'}).Read(m.plain)
		m.raw = make([]byte, 0, n+(n/(64<<10)+1)*16)
		m.rampart.b = make([]byte, 0, vault.CiphertextSize(n, vault.DefaultSegmentSize))
		m.age.b = make([]byte, 0, n+(n/(64<<10)+1)*16+4096)
		// Touch every page of the output buffers now: the first write to a fresh page faults
		// (the kernel zeroes it), which would otherwise be charged to whichever target wrote
		// there first.
		for _, buf := range [][]byte{m.raw, m.rampart.b, m.age.b} {
			buf = buf[:cap(buf)]
			for i := 0; i < len(buf); i += 4096 {
				buf[i] = 1
			}
		}
		key := make([]byte, 32)
		blk, _ := aes.NewCipher(key)
		m.gcm, _ = cipher.NewGCM(blk)
		m.chacha, _ = chacha20poly1305.New(key)
		vaultMemData = m
	})
	m := vaultMemData
	if len(m.rampart.b) == 0 {
		if err := m.rampartEncrypt(env, true); err != nil {
			b.Fatal(err)
		}
		if err := m.ageEncrypt(env); err != nil {
			b.Fatal(err)
		}
	}
	return m
}

// releaseVaultMem drops the in-memory buffers (several GiB) and returns them to the system.
func releaseVaultMem() {
	vaultMemData = nil
	vaultMemOnce = sync.Once{}
	runtime.GC()
	debug.FreeOSMemory()
}

func (m *vaultMem) rampartEncrypt(env *vaultEnv, digest bool) error {
	m.rampart.b = m.rampart.b[:0]
	src := onlyReader{bytes.NewReader(m.plain)}
	if !digest {
		// What Encrypt does, minus the plaintext's SHA-256.
		h, dek, err := vaultfile.NewObject(context.Background(), env.kp)
		if err != nil {
			return err
		}
		w, err := vault.NewWriter(&m.rampart, h, dek)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, src); err != nil {
			return err
		}
		m.rampartH = h
		return w.Close()
	}
	h, d, err := vault.Encrypt(context.Background(), env.kp, vaultfile.ObjectID, vaultfile.Version, 0, src, &m.rampart)
	if err != nil {
		return err
	}
	if d.Size != int64(len(m.plain)) {
		return fmt.Errorf("vault.Encrypt read %d bytes of %d", d.Size, len(m.plain))
	}
	m.rampartH = h
	return nil
}

func (m *vaultMem) rampartDecrypt(env *vaultEnv) (int64, error) {
	r, err := vault.Decrypt(context.Background(), env.kp, m.rampartH, onlyReader{bytes.NewReader(m.rampart.b)})
	if err != nil {
		return 0, err
	}
	return io.Copy(onlyWriter{io.Discard}, r)
}

func (m *vaultMem) ageEncrypt(env *vaultEnv) error {
	m.age.b = m.age.b[:0]
	w, err := age.Encrypt(&m.age, env.ageID.Recipient())
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, onlyReader{bytes.NewReader(m.plain)}); err != nil {
		return err
	}
	return w.Close()
}

func (m *vaultMem) ageDecrypt(env *vaultEnv) (int64, error) {
	r, err := age.Decrypt(onlyReader{bytes.NewReader(m.age.b)}, env.ageID)
	if err != nil {
		return 0, err
	}
	return io.Copy(onlyWriter{io.Discard}, r)
}

// rawSeal seals the plaintext in chunks with a counter nonce, no framing, into m.raw.
func (m *vaultMem) rawSeal(a cipher.AEAD, chunk int, layout string) {
	var nonce [12]byte
	dst, src := m.raw[:0], m.plain
	for i := uint64(0); len(src) > 0; i++ {
		n := min(chunk, len(src))
		binary.BigEndian.PutUint64(nonce[4:], i)
		dst = a.Seal(dst, nonce[:], src[:n], nil)
		src = src[n:]
	}
	m.raw, m.rawLayout = dst, layout
}

// rawOpen opens what rawSeal wrote, chunk by chunk, into one reused buffer.
func (m *vaultMem) rawOpen(a cipher.AEAD, chunk int) (int64, error) {
	var nonce [12]byte
	var total int64
	ct, seg := m.raw, chunk+a.Overhead()
	for i := uint64(0); len(ct) > 0; i++ {
		n := min(seg, len(ct))
		binary.BigEndian.PutUint64(nonce[4:], i)
		out, err := a.Open(m.scratch[:0], nonce[:], ct[:n], nil)
		if err != nil {
			return total, fmt.Errorf("raw open of chunk %d: %w", i, err)
		}
		total += int64(len(out))
		ct = ct[n:]
	}
	return total, nil
}

// BenchmarkVaultCipher compares, on the same buffers in memory, vault.Encrypt and
// vault.Decrypt (as the weights service calls them) with age's library and with raw AES-256-GCM
// and ChaCha20-Poly1305 over the same plaintext: no files, no processes.
func BenchmarkVaultCipher(b *testing.B) {
	env := newVaultEnv(b)
	mach0, own0 := machineCPU(), ownCPU()
	defer func() {
		releaseVaultMem()
		printVault(fmt.Sprintf("Weights vault in memory: Rampart vs age v1.3.2 vs raw AEADs, %d MiB", vaultBytes()>>20), mach0, own0)
	}()
	m := vaultMemFor(b, env)
	n := int64(len(m.plain))
	sealOp := func(name string, a cipher.AEAD, chunk int) vaultOp {
		return vaultOp{name: name, run: func() (procStats, error) { m.rawSeal(a, chunk, name); return procStats{}, nil }}
	}
	// A raw open reads what the matching raw seal wrote: it seals first, untimed.
	openOp := func(name string, a cipher.AEAD, chunk int) vaultOp {
		return vaultOp{name: name, prepare: func() { m.rawSeal(a, chunk, name) }, run: func() (procStats, error) {
			got, err := m.rawOpen(a, chunk)
			if err == nil && got != n {
				err = fmt.Errorf("raw open gave %d bytes of %d", got, n)
			}
			return procStats{}, err
		}}
	}
	checkN := func(got int64, err error) (procStats, error) {
		if err == nil && got != n {
			err = fmt.Errorf("decrypted %d bytes of %d", got, n)
		}
		return procStats{}, err
	}
	b.Run("encrypt", func(b *testing.B) {
		if !vaultHave("mem-enc/rampart") {
			runVaultRounds(b, "mem-enc", n, []vaultOp{
				{name: "rampart", run: func() (procStats, error) { return procStats{}, m.rampartEncrypt(env, true) }},
				{name: "age", run: func() (procStats, error) { return procStats{}, m.ageEncrypt(env) }},
				sealOp("raw-gcm-1MiB", m.gcm, vault.DefaultSegmentSize),
				sealOp("raw-gcm-64KiB", m.gcm, 64<<10),
				sealOp("raw-chacha-64KiB", m.chacha, 64<<10),
				{name: "rampart-no-digest", run: func() (procStats, error) { return procStats{}, m.rampartEncrypt(env, false) }},
				{name: "sha256", run: func() (procStats, error) { _ = sha256.Sum256(m.plain); return procStats{}, nil }},
			}, nil)
		}
		reportVaultPair(b, "mem-enc", "raw-gcm-1MiB")
	})
	b.Run("decrypt", func(b *testing.B) {
		if !vaultHave("mem-dec/rampart") {
			runVaultRounds(b, "mem-dec", n, []vaultOp{
				{name: "rampart", run: func() (procStats, error) { return checkN(m.rampartDecrypt(env)) }},
				{name: "age", run: func() (procStats, error) { return checkN(m.ageDecrypt(env)) }},
				openOp("raw-gcm-1MiB", m.gcm, vault.DefaultSegmentSize),
				openOp("raw-chacha-64KiB", m.chacha, 64<<10),
			}, nil)
		}
		reportVaultPair(b, "mem-dec", "raw-gcm-1MiB")
	})
	vaultLine("vault in memory: %d MiB, %d rounds per target in rotating order, median; MB = 10^6 plaintext bytes; 32 KiB reads and writes as io.Copy does between files",
		n>>20, vaultRounds())
	for _, row := range []struct{ part, op, label string }{
		{"mem-enc", "rampart", "rampart vault.Encrypt"},
		{"mem-enc", "rampart-no-digest", "rampart vault.NewWriter (no SHA-256)"},
		{"mem-enc", "age", "age.Encrypt"},
		{"mem-enc", "raw-gcm-1MiB", "raw AES-256-GCM seal, 1 MiB"},
		{"mem-enc", "raw-gcm-64KiB", "raw AES-256-GCM seal, 64 KiB"},
		{"mem-enc", "raw-chacha-64KiB", "raw ChaCha20-Poly1305 seal, 64 KiB"},
		{"mem-enc", "sha256", "SHA-256 alone"},
		{"mem-dec", "rampart", "rampart vault.Decrypt"},
		{"mem-dec", "age", "age.Decrypt"},
		{"mem-dec", "raw-gcm-1MiB", "raw AES-256-GCM open, 1 MiB"},
		{"mem-dec", "raw-chacha-64KiB", "raw ChaCha20-Poly1305 open, 64 KiB"},
	} {
		if l := vaultRow(row.part, row.op, row.label); l != "" {
			vaultLine("%s", l)
		}
	}
	for _, p := range []struct{ part, what string }{{"mem-enc", "encrypt"}, {"mem-dec", "decrypt"}} {
		if !vaultHave(p.part + "/rampart") {
			continue
		}
		l1 := vaultRatio("in memory "+p.what+": Rampart/age", p.part+"/rampart", p.part+"/age", vaultAgeTarget, false)
		l2 := vaultRatio("in memory "+p.what+": Rampart/raw AES-256-GCM (1 MiB)", p.part+"/rampart", p.part+"/raw-gcm-1MiB", vaultRawTarget, true)
		vaultLine("%s", l1)
		vaultLine("%s", l2)
	}
	if vaultHave("mem-enc/sha256") {
		g, s := vaultMedian("mem-enc/raw-gcm-1MiB"), vaultMedian("mem-enc/sha256")
		vaultLine("vault in memory encrypt: AES-256-GCM then SHA-256 of every byte, one after the other on one core, can reach at most %.0f MB/s (%.0f%% of raw AES-256-GCM); without the digest Rampart reaches %.0f%% of raw",
			1/(1/g+1/s), 100/(1+g/s), 100*vaultMedian("mem-enc/rampart-no-digest")/g)
	}
}

// reportVaultPair reports a part's MB/s per target and Rampart's ratios to age and to ref.
func reportVaultPair(b *testing.B, part, ref string) {
	b.ReportMetric(0, "ns/op")
	resultsMu.Lock()
	var names []string
	for k := range vaultResults {
		if name, ok := strings.CutPrefix(k, part+"/"); ok {
			names = append(names, name)
		}
	}
	resultsMu.Unlock()
	for _, name := range names {
		b.ReportMetric(vaultMedian(part+"/"+name), name+"-MB/s")
	}
	b.ReportMetric(vaultMedian(part+"/rampart")/vaultMedian(part+"/age"), "rampart/age-x")
	if ref != "" {
		b.ReportMetric(100*vaultMedian(part+"/rampart")/vaultMedian(part+"/"+ref), "rampart/raw-%")
	}
}

// ---------------------------------------------------------------------------------------------
// File to file

// BenchmarkVaultFile encrypts a plaintext file (1 GiB by default) to a ciphertext file and
// decrypts it to a third file, with Rampart and with age:
//
//   - process: each operation is its own process, bin/vaultfile (vault.Encrypt / vault.Decrypt,
//     package vaultfile) against the age command (`age -r` / `age -d -i`, X25519);
//   - in-process: the same functions of package vaultfile, and age's library, in this process.
//
// The files stay in the page cache (vaultFileDir), so this measures the tools and the kernel's
// copies, not the disk. Every decrypted file is compared with the plaintext, untimed, and a
// target's files are deleted before the next target runs.
func BenchmarkVaultFile(b *testing.B) {
	env := newVaultEnv(b)
	mach0, own0 := machineCPU(), ownCPU()
	defer printVault(fmt.Sprintf("Weights vault file to file: Rampart vs age v1.3.2, %d MiB", vaultBytes()>>20), mach0, own0)
	n := vaultBytes()
	dir := vaultFileDir(b)
	plain := filepath.Join(dir, "plain")
	t0 := time.Now()
	if err := writePlainFile(plain, n); err != nil {
		b.Fatal(err)
	}
	vaultLine("vault file: wrote the %d MiB plaintext in %s (in %s); %d rounds per target in rotating order, median; MB = 10^6 plaintext bytes",
		n>>20, time.Since(t0).Round(time.Millisecond), dir, vaultRounds())
	ctx := context.Background()
	rcpt := env.ageID.Recipient()
	ct := func(tool string) string { return filepath.Join(dir, "ct-"+tool) }
	out := func(tool string) string { return filepath.Join(dir, "out-"+tool) }
	modes := []struct {
		name     string
		enc, dec []vaultOp
	}{
		{"process", []vaultOp{
			{name: "rampart", run: func() (procStats, error) {
				return runProc(env.vaultBin, "encrypt", "-keyring", env.keyring, plain, ct("rampart"))
			}},
			{name: "age", run: func() (procStats, error) { return runProc(env.ageBin, "-r", rcpt.String(), "-o", ct("age"), plain) }},
		}, []vaultOp{
			{name: "rampart", run: func() (procStats, error) {
				return runProc(env.vaultBin, "decrypt", "-keyring", env.keyring, ct("rampart"), out("rampart"))
			}},
			{name: "age", run: func() (procStats, error) {
				return runProc(env.ageBin, "-d", "-i", env.ageIDFile, "-o", out("age"), ct("age"))
			}},
		}},
		{"in-process", []vaultOp{
			{name: "rampart", run: func() (procStats, error) {
				_, err := vaultfile.EncryptFile(ctx, env.kp, plain, ct("rampart"))
				return procStats{}, err
			}},
			{name: "age", run: func() (procStats, error) { return procStats{}, vaultfile.AgeEncryptFile(rcpt, plain, ct("age")) }},
		}, []vaultOp{
			{name: "rampart", run: func() (procStats, error) {
				_, err := vaultfile.DecryptFile(ctx, env.kp, ct("rampart"), out("rampart"))
				return procStats{}, err
			}},
			{name: "age", run: func() (procStats, error) {
				_, err := vaultfile.AgeDecryptFile(env.ageID, ct("age"), out("age"))
				return procStats{}, err
			}},
		}},
	}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			part := "file-" + mode.name
			if !vaultHave(part + "-enc/rampart") {
				// Each round, each target in rotating order encrypts the plaintext, decrypts its
				// ciphertext, and (untimed) has its output compared with the plaintext and its
				// files removed, so that at most two of them exist at a time.
				for round := range vaultRounds() {
					for j := range mode.enc {
						k := (round + j) % len(mode.enc)
						tool := mode.enc[k].name
						for _, ph := range []struct {
							suffix string
							op     vaultOp
						}{{"-enc", mode.enc[k]}, {"-dec", mode.dec[k]}} {
							runtime.GC()
							cpu0 := selfCPU()
							t0 := time.Now()
							st, err := ph.op.run()
							d := time.Since(t0)
							if err != nil {
								b.Fatalf("%s%s %s: %v", part, ph.suffix, tool, err)
							}
							if st.cpu == 0 {
								st.cpu = selfCPU() - cpu0
							}
							vaultRecord(part+ph.suffix+"/"+tool, vaultSample{mbps: float64(n) / 1e6 / d.Seconds(), cpu: st.cpu, maxRSS: st.maxRSS})
						}
						if err := sameFiles(plain, out(tool)); err != nil {
							b.Fatalf("%s %s: %v", part, tool, err)
						}
						for _, f := range []string{ct(tool), ct(tool) + vaultfile.HeaderSuffix, out(tool)} {
							_ = os.Remove(f)
						}
					}
				}
			}
			b.ReportMetric(0, "ns/op")
			for _, ph := range []string{"enc", "dec"} {
				for _, tool := range []string{"rampart", "age"} {
					b.ReportMetric(vaultMedian(part+"-"+ph+"/"+tool), ph+"-"+tool+"-MB/s")
				}
				b.ReportMetric(vaultMedian(part+"-"+ph+"/rampart")/vaultMedian(part+"-"+ph+"/age"), ph+"-rampart/age-x")
			}
		})
	}
	labels := map[string][2]string{ // what Rampart and age are, per mode
		"process":    {"vaultfile command", "age command"},
		"in-process": {"package vaultfile", "age library"},
	}
	for _, mode := range modes {
		for _, ph := range []struct{ suffix, what string }{{"-enc", "encrypt"}, {"-dec", "decrypt"}} {
			part := "file-" + mode.name + ph.suffix
			if !vaultHave(part + "/rampart") {
				continue
			}
			vaultLine("%s", vaultRow(part, "rampart", fmt.Sprintf("%s %s: rampart (%s)", mode.name, ph.what, labels[mode.name][0])))
			vaultLine("%s", vaultRow(part, "age", fmt.Sprintf("%s %s: age (%s)", mode.name, ph.what, labels[mode.name][1])))
			l := vaultRatio(fmt.Sprintf("file %s %s: Rampart/age", mode.name, ph.what), part+"/rampart", part+"/age", vaultAgeTarget, false)
			vaultLine("%s", l)
		}
	}
}

// vaultFileDir is where the file comparison keeps its files: $RAMPART_BENCH_VAULT_DIR, or a
// temporary directory. With at most two 1 GiB files written before they are deleted, the
// kernel does not start writing them back (its background threshold is 10% of the available
// memory, about 2.2 GB here), so the files stay in the page cache and this measures the tools
// and the kernel's copies, not the disk.
func vaultFileDir(b *testing.B) string {
	if d := os.Getenv("RAMPART_BENCH_VAULT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o700); err != nil {
			b.Fatal(err)
		}
		return d
	}
	return b.TempDir()
}

// writePlainFile writes n pseudo-random bytes (ChaCha8) to path.
func writePlainFile(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, io.LimitReader(rand.NewChaCha8([32]byte{'f', 'i', 'l', 'e'}), n)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// sameFiles reports whether two files hold the same bytes.
func sameFiles(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	ba, bb := make([]byte, 4<<20), make([]byte, 4<<20)
	var off int64
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return fmt.Errorf("%s differs from %s within bytes %d..%d", b, a, off, off+int64(max(na, nb)))
		}
		off += int64(na)
		if ea != nil || eb != nil {
			if (ea == io.EOF || ea == io.ErrUnexpectedEOF) && (eb == io.EOF || eb == io.ErrUnexpectedEOF) {
				return nil
			}
			return errors.Join(ea, eb)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Resident memory

// BenchmarkVaultMemory measures the peak resident memory of a process streaming 10 GiB (by
// default) through the vault with nothing on disk: bin/vaultfile stream, which runs
// vault.Encrypt from a generator into a counting sink, then a vault.Writer through an io.Pipe
// into vault.Decrypt and a checker of the plaintext (vaultfile.StreamRampart). It reports the
// process's peak (VmHWM, sampled by this process, see runProcOutput) and each phase's own, as
// the child read it, at 1 GiB and at the full size, to show the peak does not grow with the
// object; and age's at 1 GiB, for reference.
func BenchmarkVaultMemory(b *testing.B) {
	if vaultReplay(b) {
		return
	}
	env := newVaultEnv(b)
	mach0, own0 := machineCPU(), ownCPU()
	defer printVault(fmt.Sprintf("Weights vault resident memory, streaming %d GiB", vaultStreamBytes()>>30), mach0, own0)
	big := vaultStreamBytes()
	type run struct {
		tool string
		size int64
	}
	runs := []run{{"rampart", 1 << 30}, {"age", 1 << 30}}
	if big != 1<<30 {
		runs = append(runs, run{"rampart", big})
	}
	var peak int64
	vaultReport(b, 0, "ns/op")
	for _, r := range runs {
		t0 := time.Now()
		st, out, err := runProcOutput(env.vaultBin, "stream", "-tool", r.tool, "-keyring", env.keyring, "-identity", env.ageIDFile, "-size", fmt.Sprint(r.size))
		if err != nil {
			b.Fatal(err)
		}
		wall := time.Since(t0)
		var res vaultfile.StreamResult
		if err := json.Unmarshal(out, &res); err != nil {
			b.Fatalf("vaultfile stream: %v: %q", err, out)
		}
		maxRSS, cpu := max(st.maxRSS, res.EncryptPeakKiB, res.RoundTripPeakKiB), st.cpu
		gib := float64(r.size) / (1 << 30)
		vaultLine("vault memory %-7s %5.1f GiB: peak RSS %5.1f MiB (encrypt phase %.1f MiB, round-trip phase %.1f MiB); encrypt %.0f MB/s, encrypt→pipe→decrypt %.0f MB/s; process %s wall, %s CPU",
			r.tool, gib, float64(maxRSS)/1024, float64(res.EncryptPeakKiB)/1024, float64(res.RoundTripPeakKiB)/1024,
			float64(r.size)/1e6/res.EncryptSeconds, float64(r.size)/1e6/res.RoundTripSeconds, wall.Round(10*time.Millisecond), cpu.Round(10*time.Millisecond))
		vaultReport(b, float64(maxRSS)/1024, fmt.Sprintf("%s-%.0fGiB-peak-MiB", r.tool, gib))
		if r.tool == "rampart" && r.size == big {
			peak = maxRSS
		}
	}
	if peak > 0 {
		vaultLine("vault memory: Rampart's peak RSS streaming %d GiB = %.1f MiB (target < %d MiB: %s)", big>>30, float64(peak)/1024, vaultRSSTarget>>10, verdict(peak < vaultRSSTarget))
	}
}

// ---------------------------------------------------------------------------------------------
// Blob store against Azurite

// BenchmarkVaultAzure measures the vault's Azure blob store (azure.New, default block size
// and concurrency) against Azurite on loopback, with 256 MiB (by default) objects:
//
//   - put / get: the plaintext bytes stored and read back as they are;
//   - encrypt+upload: what the weights service does on upload: vault.Encrypt in a goroutine
//     writing into an io.Pipe that blob Put reads, then the header as its own blob;
//   - download+decrypt: the header blob, then blob Get into vault.Decrypt.
//
// MB/s counts plaintext bytes. Azurite is a single Node.js process writing to disk; its CPU
// time per operation is printed, since it, not Rampart, sets these numbers.
func BenchmarkVaultAzure(b *testing.B) {
	if vaultReplay(b) {
		return
	}
	env := newVaultEnv(b)
	mach0, own0 := machineCPU(), ownCPU()
	defer printVault(fmt.Sprintf("Weights vault blob store: Azure store against Azurite %s, %d MiB objects", azuriteVersion, vaultAzureBytes()>>20), mach0, own0)
	az, err := startAzurite(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer az.stop()
	ctx := context.Background()
	store, err := azure.New(ctx, azure.Config{AccountURL: az.url, AccountName: azuriteAccount, AccountKey: azuriteKey, Container: "rampart-bench", CreateContainer: true})
	if err != nil {
		b.Fatal(err)
	}
	n := vaultAzureBytes()
	plain := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{'a', 'z'}).Read(plain)
	const rawKey, dataKey, headerKey = "objects/bench/raw", "objects/bench/1/data", "objects/bench/1/header"
	azCPU := map[string][]time.Duration{}
	check := func(r io.Reader) error {
		got, err := io.Copy(&plainChecker{want: plain}, r)
		if err == nil && got != n {
			err = fmt.Errorf("read %d bytes of %d", got, n)
		}
		return err
	}
	ops := []vaultOp{
		{name: "put", run: func() (procStats, error) {
			_, err := store.Put(ctx, rawKey, onlyReader{bytes.NewReader(plain)})
			return procStats{}, err
		}},
		{name: "get", run: func() (procStats, error) {
			rc, _, err := store.Get(ctx, rawKey)
			if err != nil {
				return procStats{}, err
			}
			defer rc.Close()
			return procStats{}, check(rc)
		}},
		{name: "encrypt+upload", run: func() (procStats, error) {
			pr, pw := io.Pipe()
			type result struct {
				h   *vault.Header
				err error
			}
			done := make(chan result, 1)
			go func() {
				h, _, err := vault.Encrypt(ctx, env.kp, vaultfile.ObjectID, vaultfile.Version, 0, onlyReader{bytes.NewReader(plain)}, pw)
				pw.CloseWithError(err)
				done <- result{h, err}
			}()
			if _, err := store.Put(ctx, dataKey, pr); err != nil {
				pr.CloseWithError(err)
				<-done
				return procStats{}, err
			}
			res := <-done
			if res.err != nil {
				return procStats{}, res.err
			}
			hb, err := res.h.MarshalBinary()
			if err == nil {
				_, err = store.Put(ctx, headerKey, bytes.NewReader(hb))
			}
			return procStats{}, err
		}},
		{name: "download+decrypt", run: func() (procStats, error) {
			rc, _, err := store.Get(ctx, headerKey)
			if err != nil {
				return procStats{}, err
			}
			h, err := vault.ReadHeader(rc)
			rc.Close()
			if err != nil {
				return procStats{}, err
			}
			rc, _, err = store.Get(ctx, dataKey)
			if err != nil {
				return procStats{}, err
			}
			defer rc.Close()
			r, err := vault.Decrypt(ctx, env.kp, h, rc)
			if err != nil {
				return procStats{}, err
			}
			return procStats{}, check(r)
		}},
	}
	// Azurite's CPU is read around each operation.
	for i := range ops {
		op := ops[i]
		ops[i].run = func() (procStats, error) {
			c0, _ := cpuTime([]int{az.pid()})
			st, err := op.run()
			c1, _ := cpuTime([]int{az.pid()})
			azCPU[op.name] = append(azCPU[op.name], c1-c0)
			return st, err
		}
	}
	// The first operations of a fresh Azurite are slower (its metadata store warming up):
	// one untimed put and get first.
	if _, err := ops[0].run(); err != nil {
		b.Fatal(err)
	}
	if _, err := ops[1].run(); err != nil {
		b.Fatal(err)
	}
	clear(azCPU)
	runVaultRounds(b, "azure", n, ops, nil)
	vaultReport(b, 0, "ns/op")
	for _, op := range ops {
		vaultReport(b, vaultMedian("azure/"+op.name), op.name+"-MB/s")
	}
	vaultLine("vault azure: %d MiB objects, block size %d MiB, %d blocks in flight; %d rounds in rotating order, median; MB = 10^6 plaintext bytes; cpu = this process",
		n>>20, store.BlockSize()>>20, store.Concurrency(), vaultRounds())
	for _, op := range ops {
		var az time.Duration
		for _, c := range azCPU[op.name] {
			az += c
		}
		vaultLine("%s  Azurite cpu %.2fs", vaultRow("azure", op.name, op.name), (az / time.Duration(max(1, len(azCPU[op.name])))).Seconds())
	}
	vaultLine("vault azure: encrypt+upload reaches %.0f%% of a plain put, download+decrypt %.0f%% of a plain get",
		100*vaultMedian("azure/encrypt+upload")/vaultMedian("azure/put"), 100*vaultMedian("azure/download+decrypt")/vaultMedian("azure/get"))
}

// plainChecker checks that what it is written is want, from its start.
type plainChecker struct {
	want []byte
	off  int
}

func (c *plainChecker) Write(p []byte) (int, error) {
	if len(p) > len(c.want)-c.off || !bytes.Equal(p, c.want[c.off:c.off+len(p)]) {
		return 0, fmt.Errorf("the bytes read differ from those written, within bytes %d..%d", c.off, c.off+len(p))
	}
	c.off += len(p)
	return len(p), nil
}
