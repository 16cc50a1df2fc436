package audit

import "testing"

func TestValidOrigin(t *testing.T) {
	for _, ok := range []string{"rampart", "rampart.example.com", "ledger-2"} {
		if err := ValidOrigin(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
		if _, _, err := GenerateKey(ok); err != nil {
			t.Errorf("GenerateKey(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "two words", "a+b", "tab\there", "nbsp\u00a0x"} {
		if err := ValidOrigin(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
		if _, _, err := GenerateKey(bad); err == nil {
			t.Errorf("GenerateKey(%q) accepted", bad)
		}
	}
}
