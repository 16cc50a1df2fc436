package deploy_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The image's binary, built as deploy/Dockerfile builds it: static (no program interpreter, no
// shared libraries), so it runs on an empty base image, and it starts.
//
// The build is a whole second compile of the module (about 90 s cold), so scripts/test.sh does
// it in a step of its own, after the race-enabled tests, and hands the binary over in
// $RAMPART_STATIC_BINARY; the test builds it itself when RAMPART_STATIC_BUILD=1 says to.
func TestStaticBuild(t *testing.T) {
	out := os.Getenv("RAMPART_STATIC_BINARY")
	switch {
	case out != "":
	case os.Getenv("RAMPART_STATIC_BUILD") == "1":
		out = filepath.Join(t.TempDir(), "rampart")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "../cmd/rampart")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, b)
		}
	default:
		t.Skip("checked in scripts/test.sh's static-build step; here: RAMPART_STATIC_BUILD=1 go test -run TestStaticBuild ./deploy")
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary needs a program interpreter: it would not run on an empty base image")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("the binary needs shared libraries: %v", libs)
	}
	b, err := exec.Command(out, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(b), "server") {
		t.Fatalf("rampart --help: %v\n%s", err, b)
	}
	df, err := os.ReadFile("Dockerfile")
	if err != nil || !strings.Contains(string(df), "CGO_ENABLED=0 go build -trimpath") || !strings.Contains(string(df), "USER 65532:65532") {
		t.Fatalf("the Dockerfile no longer builds what this test checks: %v", err)
	}
}
