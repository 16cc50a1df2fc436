package secrets

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"rampart.dev/rampart/vault"
)

// The name and version are the associated data of the value and of the data key's wrap: a
// sealed version opened as any other (name, version) fails, and so does any flipped bit.
func TestWrongAADFails(t *testing.T) {
	ctx := context.Background()
	kp, err := vault.InitLocalKeyring(filepath.Join(t.TempDir(), "k.json"))
	if err != nil {
		t.Fatal(err)
	}
	kid, wrapped, ct, err := seal(ctx, kp, "ci/deploy-key", 3, []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	good := Sealed{Meta: Version{Name: "ci/deploy-key", Version: 3, State: StateActive, KeyID: kid}, WrappedDEK: wrapped, Ciphertext: ct}
	if v, err := open(ctx, kp, good); err != nil || string(v) != "hunter2" {
		t.Fatalf("open: %q %v", v, err)
	}
	for name, change := range map[string]func(*Sealed){
		"other name":         func(s *Sealed) { s.Meta.Name = "ci/deploy-keys" },
		"other version":      func(s *Sealed) { s.Meta.Version = 4 },
		"name/version split": func(s *Sealed) { s.Meta.Name = "ci/deploy-key\x00" }, // never a valid name; still distinct
		"value bit": func(s *Sealed) {
			s.Ciphertext = append([]byte(nil), s.Ciphertext...)
			s.Ciphertext[len(s.Ciphertext)-1] ^= 1
		},
		"wrapped bit": func(s *Sealed) { s.WrappedDEK = append([]byte(nil), s.WrappedDEK...); s.WrappedDEK[15] ^= 1 },
		"truncated":   func(s *Sealed) { s.Ciphertext = s.Ciphertext[:10] },
	} {
		s := good
		change(&s)
		if v, err := open(ctx, kp, s); !errors.Is(err, ErrCorrupt) || v != nil {
			t.Errorf("%s: %q %v", name, v, err)
		}
	}
	// Independent of the code above: the binding is the documented byte string.
	if got, want := string(binding("a/b", 258)), "rampart-secret-v1\x00a/b\x00\x00\x00\x00\x00\x00\x00\x01\x02"; got != want {
		t.Fatalf("binding %q, want %q", got, want)
	}
}
