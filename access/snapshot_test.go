package access_test

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/internal/clocktest"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/internal/testenv"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/postgres"
	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
)

// stores opens each real store kind for a test.
var stores = map[string]func(t *testing.T) *sqlstore.DB{
	"SQLite": func(t *testing.T) *sqlstore.DB {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rampart.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	},
	"PostgreSQL": func(t *testing.T) *sqlstore.DB {
		s, err := postgres.Open(context.Background(), testenv.PostgresDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	},
}

// hookStore is a real store whose transactions call onPutReview after storing a review: the
// moment, inside a review, at which a concurrent policy reload can land.
type hookStore struct {
	*sqlstore.DB
	onPutReview func(access.Review)
}

func (h *hookStore) Update(ctx context.Context, fn func(access.Tx) error) error {
	return h.DB.Update(ctx, func(tx access.Tx) error { return fn(hookTx{tx, h}) })
}

type hookTx struct {
	access.Tx
	h *hookStore
}

func (t hookTx) PutReview(ctx context.Context, rv access.Review) error {
	err := t.Tx.PutReview(ctx, rv)
	if err == nil && t.h.onPutReview != nil {
		t.h.onPutReview(rv)
	}
	return err
}

// demoWithout returns the demo policy with the document of the named approval policy removed.
func demoWithout(t *testing.T, approvalPolicy string) *policy.Policy {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(demo.Policy(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(demo.Policy(), p)
		if err != nil {
			return err
		}
		var keep []string
		for _, doc := range strings.Split(string(b), "\n---\n") {
			if !strings.Contains(doc, "kind: ApprovalPolicy\nmetadata:\n  name: "+approvalPolicy+"\n") {
				keep = append(keep, doc)
			}
		}
		m[p] = &fstest.MapFile{Data: []byte(strings.Join(keep, "\n---\n"))}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pol.Requirement("weights-reader-frontier-7"); err == nil && approvalPolicy == "critical-weights" {
		t.Fatal("the reduced policy still covers the weights reader")
	}
	return pol
}

// A policy reload that lands in the middle of a review must not mix two policies in one
// decision. Before each operation took one snapshot, the approval that completed the quorum was
// checked under one policy and activated under another, whose pol.Requirement error was ignored:
// the nil requirement was dereferenced and the server panicked.
func TestReviewJudgedUnderOneSnapshot(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			pol, err := policy.Load(demo.Policy())
			if err != nil {
				t.Fatal(err)
			}
			reduced := demoWithout(t, "critical-weights")
			st := &hookStore{DB: open(t)}
			clock := clocktest.New(time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC))
			svc := access.New(st, pol, access.Options{Now: clock.Now})
			c, err := svc.Create(ctx, access.CreateInput{Requester: "alice", Role: "weights-reader-frontier-7", Reason: "eval run 4411", Duration: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Review(ctx, access.ReviewInput{RequestID: c.Request.ID, Approver: "bob", Decision: access.Approve}); err != nil {
				t.Fatal(err)
			}
			// dave's approval completes the quorum; the reload lands just after it is stored.
			st.onPutReview = func(rv access.Review) {
				if rv.Approver == "dave" {
					access.SwapPolicy(svc, reduced)
				}
			}
			var r access.Request
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("a reload in the middle of a review crashed it: %v", p)
					}
				}()
				r, err = svc.Review(ctx, access.ReviewInput{RequestID: c.Request.ID, Approver: "dave", Decision: access.Approve})
			}()
			if err != nil {
				t.Fatal(err)
			}
			// The whole review was judged under the policy in force when it began.
			if r.State != access.Approved || r.GrantID == "" {
				t.Fatalf("after the completing approval: %+v", r)
			}
		})
	}
}
