package main

import (
	"errors"
	"fmt"
	"testing"

	"rampart.dev/rampart/api"
)

// exitCode follows the table of exitHelp. A server's answer is never a usage error, whatever its
// words: an unknown token's message ("the credential is not one Rampart accepts …") once exited
// 2 because isUsage matched "accepts ".
func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{&api.ServerError{Status: 403, Message: "alice may not read weights/frontier-7"}, exitDenied},
		{fmt.Errorf("%w; nothing was written to f", &api.ServerError{Status: 403}), exitDenied},
		{&api.OAuthError{Status: 403}, exitDenied},
		{&api.ServerError{Status: 401, Message: "unauthenticated: the credential is not one Rampart accepts"}, exitError},
		{&api.ServerError{Status: 404, Message: "unknown command"}, exitError},
		{&api.ServerError{Status: 429}, exitError},
		{&api.OAuthError{Status: 401}, exitError},
		{usageErr("--reason is required"), exitUsage},
		{&codeError{code: exitDenied}, exitDenied},
		{errors.New(`unknown flag: --bogus`), exitUsage},
		{errors.New("open x: permission denied"), exitError},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
