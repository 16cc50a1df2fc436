package main_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
)

// Hostile calls of each kind in TestHostileCallsBounded.
const hostileCalls = 10_000

// Invariant 11 against the real binary: 10,000 requests filed by one person past the cap on
// pending requests, and 10,000 break-glass attempts by another within the cooldown after a
// rejected review, through the HTTP API of `rampart dev`. Each is refused with 429 and a
// message that says how to go on; the ledger grows by exactly the honest requests made
// meanwhile by someone else, and those succeed promptly.
func TestHostileCallsBounded(t *testing.T) {
	addr := freeAddr(t)
	startServer(t, addr, "dev", "--addr", addr, "--data", filepath.Join(t.TempDir(), "data"), "--egress-addr", "")
	ctx := context.Background()
	transport := &http.Transport{MaxIdleConnsPerHost: 32}
	t.Cleanup(transport.CloseIdleConnections)
	as := func(user string) *api.Client {
		tok, err := api.NewClient(addr, "").DevLogin(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		c := api.NewClient(addr, tok.Token)
		c.HTTP = &http.Client{Transport: transport, Timeout: time.Minute}
		return c
	}
	alice, bob, carol, dave, erin := as("alice"), as("bob"), as("carol"), as("dave"), as("erin")

	// alice reaches the demo's cap of 20 pending requests.
	dataset := api.CreateRequestBody{Role: "dataset-reader-eval-suite-v3", Reason: "nightly evals"}
	for i := 0; i < 20; i++ {
		if _, err := alice.CreateRequest(ctx, dataset); err != nil {
			t.Fatalf("request %d of 20: %v", i+1, err)
		}
	}
	// dave takes break-glass; the steward rejects it after the fact.
	bg := api.CreateRequestBody{Role: "dataset-reader-eval-suite-v3", Reason: "incident 7: eval pipeline down", BreakGlass: true}
	c, err := dave.CreateRequest(ctx, bg)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := carol.Review(ctx, c.Request.ID, access.Deny, api.ReviewBody{Comment: "no incident"}); err != nil || v.Request.PostReview != access.PostReviewRejected {
		t.Fatalf("rejecting dave's break-glass: %+v %v", v.Request, err)
	}
	size := func() uint64 {
		cp, err := erin.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return cp.Size
	}
	before := size()

	// The flood, from 8 connections at once, while bob files honest requests.
	var next, unexpected atomic.Int64
	var firstMsg [2]atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= 2*hostileCalls || unexpected.Load() > 100 {
					return // done, or the bound is broken: stop writing
				}
				kind, who, body := 0, alice, dataset
				if i%2 == 1 {
					kind, who, body = 1, dave, bg
				}
				_, err := who.CreateRequest(ctx, body)
				var se *api.ServerError
				if !errors.As(err, &se) || se.Status != http.StatusTooManyRequests || se.Code != "rate_limited" {
					if unexpected.Add(1) <= 3 {
						t.Errorf("hostile call %d: %v, want 429 rate_limited", i, err)
					}
					continue
				}
				firstMsg[kind].CompareAndSwap(nil, se.Message)
			}
		}()
	}
	var honest []time.Duration
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for flooding := true; flooding; {
		select {
		case <-done:
			flooding = false
		case <-time.After(200 * time.Millisecond):
		}
		if len(honest) == 10 {
			continue
		}
		t0 := time.Now()
		if _, err := bob.CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Reason: "eval run 4411"}); err != nil {
			t.Fatalf("bob's honest request during the flood: %v", err)
		}
		honest = append(honest, time.Since(t0))
	}
	flood := time.Since(start)
	if n := unexpected.Load(); n > 0 {
		t.Fatalf("%d hostile calls were not refused with 429 (the flood stops after 100)", n)
	}

	// The ledger holds bob's requests and nothing of the flood.
	if grew := size() - before; grew != uint64(len(honest)) {
		t.Fatalf("the ledger grew by %d entries during the flood; bob made %d requests", grew, len(honest))
	}
	if m, _ := firstMsg[0].Load().(string); !strings.Contains(m, "alice has 20 pending requests") || !strings.Contains(m, "rampart request cancel ID") {
		t.Fatalf("the refusal of alice's requests: %q", m)
	}
	if m, _ := firstMsg[1].Load().(string); !strings.Contains(m, "dave may not take break-glass access until ") {
		t.Fatalf("the refusal of dave's break-glass: %q", m)
	}
	sort.Slice(honest, func(i, j int) bool { return honest[i] < honest[j] })
	t.Logf("%d hostile calls refused in %s (%.0f/s); %d honest requests meanwhile: median %s, slowest %s",
		2*hostileCalls, flood.Round(time.Millisecond), float64(2*hostileCalls)/flood.Seconds(), len(honest),
		honest[len(honest)/2].Round(time.Millisecond), honest[len(honest)-1].Round(time.Millisecond))
	// Promptly: a generous bound that holds on a busy two-core machine, far below what being
	// queued behind the flood would take.
	if slowest := honest[len(honest)-1]; slowest > 5*time.Second {
		t.Fatalf("an honest request took %s during the flood", slowest)
	}
	// A normal request is what dave can still make.
	if _, err := dave.CreateRequest(ctx, dataset); err != nil {
		t.Fatalf("dave's normal request during the cooldown: %v", err)
	}
}
